"""One module per unit kind: the function that runs one unit of it (named in leader.study.units.KINDS)."""
