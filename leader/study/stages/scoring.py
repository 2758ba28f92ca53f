"""Test scoring every non-grid row shares (baselines, probe, teacher): the bootstrap of test
metrics as a result part and the per-sample scores the paired tests read, both keyed like the
report's rows."""

from __future__ import annotations

import pandas as pd

from leader.study.context import Study
from leader.study.state import write_frame


def part_name(key: str) -> str:
    return key.replace("/", "__")


def write_boot(study: Study, key: str, boot: pd.DataFrame, **keys) -> str:
    for k, v in {
        "run_id": key,
        "variant": "full",
        "param": "",
        "param_value": float("nan"),
        "seed": 0,
        "backbone": "",
        **keys,
    }.items():
        boot[k] = v
    path = study.parts / f"{part_name(key)}.boot.parquet"
    write_frame(boot, path)
    return str(path.relative_to(study.dir))


def score(
    study: Study, key: str, ds, probs, mask=None, seed: int = 0, threshold: float | None = None, **keys
) -> list[str]:
    """Test bootstrap + per-sample scores of probabilities in test order, written as parts; F1 and
    Jaccard at `threshold` (default: the study's student threshold, as every baseline)."""
    from leader.evaluation import score_test

    ev = study.spec.evaluation
    boot, per = score_test(
        ds,
        probs,
        threshold=study.spec.student.threshold if threshold is None else threshold,
        rounds=ev.bootstrap_rounds,
        frac=ev.bootstrap_frac,
        seed=seed,
        mask=mask,
    )
    part = write_boot(study, key, boot, **keys)
    for k, v in {"run_id": key, "variant": "full", "param": "", "seed": seed, "backbone": "", **keys}.items():
        per[k] = v
    pfile = study.dir / "persample" / f"{part_name(key)}.parquet"
    write_frame(per, pfile)
    return [part, str(pfile.relative_to(study.dir))]
