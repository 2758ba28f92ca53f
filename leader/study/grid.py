"""The rows of a `grid/<dataset>/<backbone>` unit: every ablation variant and sensitivity weight
for every seed on the sweep's best config, and, for a study with a preset, the `released` rows
(the preset's configuration as written, over the same seeds), each row its own trial key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from leader.study.keys import digest

if TYPE_CHECKING:
    from leader.study.spec import StudySpec


def grid_rows(spec: StudySpec) -> list[dict]:
    """Every ablation and sensitivity run: (stage, variant, param, value, seed) applied to the best
    config. 'full' is always run (it is the 'best' row of the main table)."""
    rows = []
    variants = list(dict.fromkeys(["full", *spec.ablations.variants]))
    for v in variants:
        for s in spec.seeds:
            rows.append({"stage": "ablation", "variant": v, "param": "", "value": None, "seed": s})
    for param in ("alpha", "beta"):
        for x in getattr(spec.sensitivity, param):
            for s in spec.seeds:
                rows.append({"stage": "sensitivity", "variant": "full", "param": param, "value": float(x), "seed": s})
    if spec.preset:  # the released configuration as run, beside the tuned one, over the same seeds
        released = released_params(spec)
        for s in spec.seeds:
            rows.append(
                {"stage": "released", "variant": "full", "param": "", "value": None, "seed": s, "params": released}
            )
    return rows


def released_params(spec: StudySpec) -> dict:
    """The study's own values (preset + file) of every swept setting: a `released` grid row puts them
    back over the sweep's best, so it runs the paper's configuration, not the tuned one."""
    from leader.study.options import check_student

    opts = check_student(spec.student_params())
    out = {}
    for k in spec.search.space:
        name = k.removeprefix("student.")
        nested = opts.student is not None and name in opts.student.model_fields_set
        out[k] = getattr(opts.student if nested else opts, name)
    return out


def grid_trial_keys(spec: StudySpec, grid_key: str) -> dict[str, dict]:
    """Ablation/sensitivity rows keyed by (their grid's key, the row, the variant's switches)."""
    out = {}
    for row in grid_rows(spec):
        out[digest({"grid": grid_key, "row": row, "overrides": spec.ablations.overrides(row["variant"])})] = row
    return out
