"""The Tune trial: one student training. Sweep trials report every epoch (for ASHA); grid trials
(ablation / sensitivity / best) also evaluate on test and return the bootstrap rows and the
model as a Tune checkpoint, so the driver never retrains."""

from __future__ import annotations

import tempfile
from pathlib import Path


def trial_dirname(trial) -> str:
    """Short, data-free trial folder names (the default embeds the whole config)."""
    return f"t_{trial.trial_id}"


def student_trial(config: dict, *, ds=None, features_path: str | None = None, base: dict | None = None,
                  evaluation: dict | None = None, overrides: dict | None = None, cpus: float = 1) -> None:
    from ray import tune

    from leader.study.spec import student_config
    from leader.study.evaluation import align_to_test, score_test
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
        res = train_student(ds, cfg, features=features, report=lambda row: tune.report(row),
                            checkpoint_dir=Path(tmp) / "model")
        ids, probs = predict_proba(res.model, ds, "test")
        boot, per = score_test(ds, align_to_test(ds, ids, probs), threshold=cfg.threshold,
                               rounds=ev.get("bootstrap_rounds", 10), frac=ev.get("bootstrap_frac", 0.8), seed=run["seed"])
        boot.to_parquet(Path(tmp) / "bootstrap.parquet", index=False)
        per.to_parquet(Path(tmp) / "persample.parquet", index=False)  # by test position: paired tests
        overall = boot[boot["group"] == "overall"].groupby("metric")["value"].mean()
        final = {**{f"test_{k}": float(v) for k, v in overall.items()}, "final": 1}
        tune.report({**res.history[-1], **final}, checkpoint=tune.Checkpoint.from_directory(tmp))
