"""Does feature-KD transfer, and does its target's scale decide it? On a finished fidelity study
(its dataset and its teacher's features), the platform's student trainer (`train_student`) runs
the grid's 'full' configuration four ways per seed: no KD, feature-KD to the raw teacher states
(the paper's Eq. 9), feature-KD to the states z-scored per dimension with train-split statistics
(`kd_target: standardized`), both with the projection started at the teacher's mean
(`kd_head_init: teacher_mean`, the default), and raw with torch's default projection init. Test
PRAUC and the paired patient-bootstrap test of each KD variant against no KD. Writes
reports/bench/kd_target.json (flat dict).

Usage: python scripts/bench_kd_target.py [--study-dir /tmp/leader_bench_fidelity/fidelity] [--seeds 2]
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import yaml

VARIANTS = {
    "no_kd": {"kd": "none"},
    "feature_raw": {"kd": "feature", "kd_target": "raw"},
    "feature_standardized": {"kd": "feature", "kd_target": "standardized"},
    # the projection's start before kd_head_init existed (torch's default Linear init)
    "feature_raw_default_init": {"kd": "feature", "kd_target": "raw", "kd_head_init": "default"},
}
FEATURE_VARIANTS = [v for v in VARIANTS if v != "no_kd"]


def _grid_full_config(study_dir: Path, dataset: str = "*") -> dict:
    """The configuration the study's ablation grid trained (the sweep's best + the study's student)."""
    for params in sorted((study_dir / "tune").glob(f"grid-{dataset}-*/*/params.json")):
        p = json.loads(params.read_text())
        if p.get("run", {}).get("variant") == "full":
            return {k: v for k, v in p.items() if k != "run"}
    raise SystemExit(f"{study_dir}: no grid trial of variant 'full' found")


def _one(job: tuple) -> dict:
    import torch

    from leader.config.flat import student_config
    from leader.data.cache import PrepareOptions, prepare
    from leader.evaluation import align_to_test, score_test
    from leader.features.store import load_features
    from leader.student.train import predict_proba, train_student

    study_dir, dataset, prepare_opts, base, variant, overrides, seed = job
    torch.set_num_threads(1)
    ds = prepare("synthetic", None, PrepareOptions(**prepare_opts))
    feats = next((study_dir / "features" / dataset).glob("*/manifest.json")).parent
    t0 = time.perf_counter()
    cfg = student_config({**base, **overrides, "seed": seed})
    res = train_student(ds, cfg, features=load_features(feats) if cfg.loss.kd != "none" else None)
    ids, probs = predict_proba(res.model, ds, "test")
    _, per = score_test(ds, align_to_test(ds, ids, probs), threshold=cfg.threshold, rounds=1, frac=0.8, seed=seed)
    kd = res.history[res.best_epoch].get("train_kd")
    return {
        "variant": variant,
        "seed": seed,
        "prauc": per["prauc"].to_numpy(),
        "best_epoch": res.best_epoch,
        "train_kd": kd,
        "seconds": time.perf_counter() - t0,
    }


def run_variants(study_dir: Path, dataset: str | None, variants: dict[str, dict], seeds: int, processes: int):
    """Train the study grid's 'full' configuration with each variant's overrides, `seeds` times, in
    parallel processes: (runs, dataset, base config, prepare options). Each run: variant, seed,
    per-test-sample PRAUC, best epoch, KD loss, seconds."""
    from leader.data.cache import PrepareOptions, prepare

    spec = yaml.safe_load((study_dir / "spec.yaml").read_text())
    entry = next(d for d in spec["datasets"] if d["source"] == "synthetic" and dataset in (None, d["name"]))
    opts, name = entry.get("prepare", {}), entry["name"]
    base = _grid_full_config(study_dir, name)
    # prepared once here: pool workers then only read the cache (two first-time prepares of the
    # same dataset in parallel race on its raw folder)
    ds = prepare("synthetic", None, PrepareOptions(**opts))
    jobs = [(study_dir, name, opts, base, v, o, s) for s in range(seeds) for v, o in variants.items()]
    with get_context("spawn").Pool(processes) as pool:
        runs = pool.map(_one, jobs)
    return runs, ds, base


def write_bench(out: dict, path: str, t_start: float) -> None:
    """Add the wall time since `t_start`, write the flat dict to `path` and print it."""
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study-dir", default="/tmp/leader_bench_fidelity/fidelity")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--dataset", default=None, help="The study's synthetic dataset (default: its first).")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", default="reports/bench/kd_target.json")
    a = ap.parse_args()
    from leader.evaluation import index_frame
    from leader.significance import paired_test

    t_all = time.perf_counter()
    study_dir = Path(a.study_dir)
    runs, ds, base = run_variants(study_dir, a.dataset, VARIANTS, a.seeds, a.processes)
    idx = index_frame(ds)
    per = {v: np.stack([r["prauc"] for r in runs if r["variant"] == v]) for v in VARIANTS}  # (seeds, N)
    out: dict = {
        "command": f"python scripts/bench_kd_target.py --study-dir {a.study_dir} --seeds {a.seeds}"
        + (f" --dataset {a.dataset} --out {a.out}" if a.dataset else ""),
        "study": str(study_dir),
        "seeds": a.seeds,
        "alpha": base.get("alpha"),
        "lr": base.get("lr"),
    }
    for v in VARIANTS:
        out[f"{v}_prauc"] = round(float(per[v].mean()), 4)
        out[f"{v}_prauc_by_seed"] = [round(float(x), 4) for x in per[v].mean(1)]
        kds = [r["train_kd"] for r in runs if r["variant"] == v and r["train_kd"] is not None]
        out[f"{v}_train_kd"] = round(float(np.mean(kds)), 4) if kds else None
    for v in FEATURE_VARIANTS:
        r = paired_test(per[v], per["no_kd"], idx["cluster"].to_numpy())
        out[f"{v}_vs_no_kd_diff"], out[f"{v}_vs_no_kd_p"] = round(r.diff, 4), r.p_bootstrap
    r = paired_test(per["feature_standardized"], per["feature_raw"], idx["cluster"].to_numpy())
    out["standardized_vs_raw_diff"], out["standardized_vs_raw_p"] = round(r.diff, 4), r.p_bootstrap
    write_bench(out, a.out, t_all)


if __name__ == "__main__":
    main()
