"""A tuned baseline's Tune trial: one `train_baseline` run under the student's budget and
scheduler. Every epoch is reported for ASHA; the last report carries the test probabilities as a
checkpoint, so the driver evaluates the selected trial once without retraining."""

from __future__ import annotations

import tempfile
from pathlib import Path


def baseline_trial(config: dict, *, ds=None, name: str = "", fixed: dict | None = None, cpus: float = 1) -> None:
    import numpy as np
    from ray import tune

    from leader.baselines.train import train_baseline

    params = {**(fixed or {}), **config}
    res = train_baseline(
        ds,
        name,
        params,
        seed=int(params.pop("seed", 0)) if "seed" in params else 0,
        report=lambda row: tune.report(row),
        num_threads=max(1, int(cpus)),
    )
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "test_probs.npz", sample_ids=res.sample_ids, probs=res.probs)
        last = res.history[-1] if res.history else {}
        tune.report(
            {**last, "best_val_prauc": res.val_prauc, "n_params": res.n_params, "train_s": res.train_s, "final": 1},
            checkpoint=tune.Checkpoint.from_directory(tmp),
        )
