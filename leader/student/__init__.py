"""LEADER(S), the distilled student: its model, losses, trainer and Tune trial."""
