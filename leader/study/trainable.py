"""The Tune trial: one student training. Sweep trials report every epoch (for ASHA); grid trials
(ablation / sensitivity / best) also evaluate on test and return the bootstrap rows and the
model as a Tune checkpoint, so the driver never retrains."""

from __future__ import annotations

import tempfile
from pathlib import Path


def trial_dirname(trial) -> str:
    """Short, data-free trial folder names (the default embeds the whole config)."""
    return f"t_{trial.trial_id}"


def student_trial(
    config: dict,
    *,
    ds=None,
    features_path: str | None = None,
    base: dict | None = None,
    evaluation: dict | None = None,
    overrides: dict | None = None,
    cpus: float = 1,
) -> None:
    from ray import tune

    from leader.study.evaluation import align_to_test, score_test
    from leader.study.spec import student_config
    from leader.train.student import predict_proba, train_student

    params = {**(base or {}), **{k: v for k, v in config.items() if k != "run"}}
    run = config.get("run")
    if run:  # grid trial: variant switches, sensitivity value, seed
        params.update((overrides or {}).get(run["variant"], {}))
        if run["param"]:
            params[run["param"]] = run["value"]
        params["seed"] = run["seed"]
    cfg = student_config(params)
    cfg = cfg.model_copy(update={"num_threads": max(1, int(cpus))})
    features = None
    if features_path and cfg.loss.kd != "none":
        from leader.features.actor import fetch_features

        features = fetch_features(features_path)  # zero-copy from the object store
    if not run:
        train_student(ds, cfg, features=features, report=lambda row: tune.report(row))
        return
    ev = evaluation or {}
    with tempfile.TemporaryDirectory() as tmp:
        res = train_student(
            ds, cfg, features=features, report=lambda row: tune.report(row), checkpoint_dir=Path(tmp) / "model"
        )
        ids, probs = predict_proba(res.model, ds, "test")
        boot, per = score_test(
            ds,
            align_to_test(ds, ids, probs),
            threshold=cfg.threshold,
            rounds=ev.get("bootstrap_rounds", 10),
            frac=ev.get("bootstrap_frac", 0.8),
            seed=run["seed"],
        )
        boot.to_parquet(Path(tmp) / "bootstrap.parquet", index=False)
        per.to_parquet(Path(tmp) / "persample.parquet", index=False)  # by test position: paired tests
        overall = boot[boot["group"] == "overall"].groupby("metric")["value"].mean()
        final = {**{f"test_{k}": float(v) for k, v in overall.items()}, "final": 1}
        tune.report({**res.history[-1], **final}, checkpoint=tune.Checkpoint.from_directory(tmp))


def baseline_trial(config: dict, *, ds=None, name: str = "", fixed: dict | None = None, cpus: float = 1) -> None:
    """One Table III baseline training (the student's budget and scheduler): every epoch is
    reported for ASHA; the last report carries the test probabilities as a checkpoint, so the
    driver evaluates the selected trial once without retraining."""
    import numpy as np
    from ray import tune

    from leader.train.baselines import train_baseline

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
