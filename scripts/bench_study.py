"""Study throughput: student trials per hour with 1 vs 2 concurrent Tune trials, and Tune's
overhead vs the same trainings in a plain loop. Writes reports/bench/study.json.

All three runs train the same N configs (fixed lr list, student-only, synthetic cohort) in one
process tree, so the ratios are measured in one run on one machine."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--out", default="reports/bench/study.json")
    a = ap.parse_args()

    from ray import tune

    from leader.data.cache import PrepareOptions, prepare
    from leader.ray_utils import ensure_ray
    from leader.study.spec import student_config
    from leader.study.trainable import student_trial, trial_dirname
    from leader.train.student import train_student

    ds = prepare("synthetic", None, PrepareOptions(n_patients=a.patients))
    base = {"epochs": a.epochs, "patience": a.epochs, "kd": "none", "d_model": 32, "d_embed": 32, "n_heads": 2,
            "batch_size": 32}
    lrs = [1e-3 * (1.3 ** i) for i in range(a.trials)]

    t0 = time.perf_counter()
    for lr in lrs:  # plain loop: the same trainings with no Ray at all
        train_student(ds, student_config({**base, "lr": lr}), report=lambda row: None)
    plain = time.perf_counter() - t0

    ensure_ray(num_cpus=2)
    import tempfile

    res = {}
    for conc in (1, 2):
        trainable = tune.with_resources(tune.with_parameters(student_trial, ds=ds, base=base, cpus=1), {"cpu": 1})
        with tempfile.TemporaryDirectory() as tmp:
            tuner = tune.Tuner(trainable, param_space={"lr": tune.grid_search(lrs)},
                               tune_config=tune.TuneConfig(max_concurrent_trials=conc, trial_dirname_creator=trial_dirname,
                                                           reuse_actors=True),
                               run_config=tune.RunConfig(name=f"bench{conc}", storage_path=tmp, verbose=0))
            t0 = time.perf_counter()
            grid = tuner.fit()
            res[conc] = time.perf_counter() - t0
            assert not grid.errors, grid.errors
    out = {
        "trials": a.trials, "epochs": a.epochs, "patients": a.patients, "cpus": os.cpu_count(),
        "plain_loop_s": round(plain, 2), "tune_1_concurrent_s": round(res[1], 2), "tune_2_concurrent_s": round(res[2], 2),
        "trials_per_hour_plain": round(3600 * a.trials / plain, 1),
        "trials_per_hour_1_concurrent": round(3600 * a.trials / res[1], 1),
        "trials_per_hour_2_concurrent": round(3600 * a.trials / res[2], 1),
        "speedup_2_vs_1": round(res[1] / res[2], 3),
        "tune_overhead_vs_plain": round(res[1] / plain - 1, 4),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
