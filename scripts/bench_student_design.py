"""Why is the student below logistic regression, and which design choice closes the gap? On a
finished fidelity study (its dataset and split), the platform's student trainer runs the grid's
'full' configuration WITHOUT KD, changing one design choice at a time: how a code set is pooled
(mean vs sum), how a visit sequence is read out (mean over visits vs the output at the current
visit), dropout, and an optional linear multi-hot path (Wide & Deep). Every variant is compared
with the default (paired patient bootstrap) and with the multi-hot logistic regression trained on
the same split. Writes reports/bench/student_design.json (flat dict).

Usage: python scripts/bench_student_design.py [--study-dir /tmp/leader_bench_fidelity3/fidelity] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_kd_target import run_variants, write_bench

NO_KD = {"kd": "none"}
VARIANTS = {
    # the design before this bench: mean pooling everywhere, dropout 0.1
    "mean_mean_d01": {**NO_KD, "set_pooling": "mean", "visit_pooling": "mean", "dropout": 0.1},
    "sum_mean_d01": {**NO_KD, "set_pooling": "sum", "visit_pooling": "mean", "dropout": 0.1},
    "mean_current_d01": {**NO_KD, "set_pooling": "mean", "visit_pooling": "current", "dropout": 0.1},
    "sum_current_d01": {**NO_KD, "set_pooling": "sum", "visit_pooling": "current", "dropout": 0.1},
    "default": {**NO_KD, "set_pooling": "sum", "visit_pooling": "current", "dropout": 0.3},
    "default_wide": {**NO_KD, "set_pooling": "sum", "visit_pooling": "current", "dropout": 0.3, "wide": True},
}


def _logreg_per_sample(ds, threshold: float) -> np.ndarray:
    """Per-test-sample PRAUC of the study's `logreg` baseline (default C), in test order."""
    from leader.baselines.trivial import fit_logreg
    from leader.evaluation import align_to_test, score_test

    ids = ds.samples("test")["sample_id"].to_numpy()
    probs = fit_logreg(ds, {}).predict(ids)
    _, per = score_test(ds, align_to_test(ds, ids, probs), threshold=threshold, rounds=1, frac=0.8, seed=0)
    return per["prauc"].to_numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study-dir", default="/tmp/leader_bench_fidelity3/fidelity")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", default="reports/bench/student_design.json")
    a = ap.parse_args()
    from leader.evaluation import index_frame
    from leader.significance import paired_test

    t_all = time.perf_counter()
    runs, ds, base = run_variants(Path(a.study_dir), None, VARIANTS, a.seeds, a.processes)
    cluster = index_frame(ds)["cluster"].to_numpy()
    per = {v: np.stack([r["prauc"] for r in runs if r["variant"] == v]) for v in VARIANTS}  # (seeds, N)
    lr = _logreg_per_sample(ds, float(base.get("threshold", 0.3)))[None]  # (1, N)
    out: dict = {
        "command": f"python scripts/bench_student_design.py --study-dir {a.study_dir} --seeds {a.seeds}",
        "seeds": a.seeds,
        "test_samples": int(lr.shape[1]),
        "epochs": base.get("epochs"),
        "lr": base.get("lr"),
        "logreg_prauc": round(float(lr.mean()), 4),
    }
    for v in VARIANTS:
        out[f"{v}_prauc"] = round(float(per[v].mean()), 4)
        out[f"{v}_prauc_by_seed"] = [round(float(x), 4) for x in per[v].mean(1)]
        out[f"{v}_seed_spread"] = round(float(np.ptp(per[v].mean(1))), 4)
        out[f"{v}_best_epoch_mean"] = round(float(np.mean([r["best_epoch"] for r in runs if r["variant"] == v])), 1)
        r = paired_test(per[v], lr, cluster)
        out[f"{v}_vs_logreg_diff"], out[f"{v}_vs_logreg_p"] = round(r.diff, 4), r.p_bootstrap
        if v != "default":
            r = paired_test(per["default"], per[v], cluster)
            out[f"default_vs_{v}_diff"], out[f"default_vs_{v}_p"] = round(r.diff, 4), r.p_bootstrap
    write_bench(out, a.out, t_all)


if __name__ == "__main__":
    main()
