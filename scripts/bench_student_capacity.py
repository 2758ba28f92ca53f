"""Is LEADER(S) under-trained or mis-specified at bench size? On a finished fidelity study's cohort
(`scripts/bench_fidelity.py`), the platform's student trainer (`train_student`, no KD, no teacher)
runs the grid's configuration and a few regularisation / capacity changes (dropout, weight decay,
width, a longer budget), beside the multi-hot logistic regression, all scored the same way on the
same test split (mean per-sample PRAUC). Writes reports/bench/student_capacity.json (flat dict):
per configuration the test PRAUC (mean and by seed), its best epoch and epoch budget, and the gap
to logistic regression.

Usage: python scripts/bench_student_capacity.py [--study-dir /tmp/leader_bench_fidelity/fidelity]
       [--seeds 2] [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import yaml
from bench_kd_target import _grid_full_config

CONFIGS = {  # name -> StudentTrainConfig overrides of the grid's 'no_kd' configuration
    "grid": {},
    "dropout_0.5": {"dropout": 0.5, "epochs": 60, "patience": 8},
    "weight_decay_1e-3": {"weight_decay": 1e-3, "epochs": 40},
    "d_model_128": {"d_model": 128, "d_embed": 128, "epochs": 40},
}


def _student(job: tuple) -> dict:
    import torch

    from leader.data.cache import PrepareOptions, prepare
    from leader.study.evaluation import align_to_test, score_test
    from leader.study.spec import student_config
    from leader.train.student import predict_proba, train_student

    prepare_opts, base, name, seed = job
    torch.set_num_threads(1)
    ds = prepare("synthetic", None, PrepareOptions(**prepare_opts))
    t0 = time.perf_counter()
    cfg = student_config({**base, "kd": "none", **CONFIGS[name], "seed": seed})
    res = train_student(ds, cfg)
    ids, probs = predict_proba(res.model, ds, "test")
    _, per = score_test(ds, align_to_test(ds, ids, probs), threshold=cfg.threshold, rounds=1, frac=0.8, seed=seed)
    return {
        "config": name,
        "seed": seed,
        "prauc": float(per["prauc"].mean()),
        "best_epoch": res.best_epoch,
        "epochs_run": len(res.history),
        "epochs": cfg.epochs,
        "seconds": time.perf_counter() - t0,
    }


def _logreg(ds, threshold: float) -> float:
    from leader.models.baselines.trivial import fit_logreg
    from leader.study.evaluation import score_test, test_frame

    ids = test_frame(ds)["sample_id"].to_numpy()
    probs = fit_logreg(ds, {}).predict(ids)
    _, per = score_test(ds, probs, threshold=threshold, rounds=1, frac=0.8)
    return float(per["prauc"].mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study-dir", default="/tmp/leader_bench_fidelity/fidelity")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", default="reports/bench/student_capacity.json")
    a = ap.parse_args()
    from leader.data.cache import PrepareOptions, prepare

    t_all = time.perf_counter()
    study_dir = Path(a.study_dir)
    spec = yaml.safe_load((study_dir / "spec.yaml").read_text())
    opts = spec["datasets"][0].get("prepare", {})
    base = _grid_full_config(study_dir)
    ds = prepare("synthetic", None, PrepareOptions(**opts))  # once here: pool workers only read the cache
    jobs = [(opts, base, name, s) for s in range(a.seeds) for name in CONFIGS]
    with get_context("spawn").Pool(a.processes) as pool:
        runs = pool.map(_student, jobs)
    lr = _logreg(ds, base.get("threshold", 0.5))
    out: dict = {
        "command": f"python scripts/bench_student_capacity.py --study-dir {a.study_dir} --seeds {a.seeds}",
        "study": str(study_dir),
        "seeds": a.seeds,
        "grid_lr": base.get("lr"),
        "logreg_prauc": round(lr, 4),
    }
    for name in CONFIGS:
        rs = [r for r in runs if r["config"] == name]
        p = np.array([r["prauc"] for r in rs])
        out[f"{name}_prauc"] = round(float(p.mean()), 4)
        out[f"{name}_prauc_by_seed"] = [round(float(x), 4) for x in p]
        out[f"{name}_minus_logreg"] = round(float(p.mean()) - lr, 4)
        out[f"{name}_best_epoch"] = [r["best_epoch"] for r in rs]
        out[f"{name}_epochs_run"] = [r["epochs_run"] for r in rs]
        out[f"{name}_epoch_budget"] = rs[0]["epochs"]
    best = max(CONFIGS, key=lambda n: out[f"{n}_prauc"])
    out["best_config"] = best
    out["best_reaches_logreg"] = bool(out[f"{best}_prauc"] >= lr)
    out["wall_s"] = round(time.perf_counter() - t_all, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
