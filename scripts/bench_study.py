"""Study throughput: student trials per hour with 1 vs 2 concurrent Tune trials, and Tune's
overhead vs the same trainings in a plain loop. Writes reports/bench/study.json.

All runs train the same N configs (fixed lr list, student-only, synthetic cohort) in one process
tree, so the ratios are measured in one run on one machine. The reference loop runs as a fresh
script (like a Tune trial actor, it pays the interpreter start and torch imports once); the loop in
the already-warm benchmark process is reported beside it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--out", default="reports/bench/study.json")
    ap.add_argument("--repeats", type=int, default=2, help="repeats of each arm (fastest kept)")
    ap.add_argument("--plain-only", action="store_true", help="internal: run only the plain loop")
    a = ap.parse_args()

    from leader.config.flat import student_config
    from leader.data.cache import PrepareOptions, prepare
    from leader.student.train import train_student

    ds = prepare("synthetic", None, PrepareOptions(n_patients=a.patients))
    base = {
        "epochs": a.epochs,
        "patience": a.epochs,
        "kd": "none",
        "d_model": 32,
        "d_embed": 32,
        "n_heads": 2,
        "batch_size": 32,
    }
    lrs = [1e-3 * (1.3**i) for i in range(a.trials)]

    def plain_loop() -> None:  # the same trainings with no Ray at all
        for lr in lrs:
            train_student(ds, student_config({**base, "lr": lr}), report=lambda row: None)

    if a.plain_only:  # child process: nothing imported beforehand
        plain_loop()
        return

    def plain_warm_run() -> float:  # in this (warm) process
        t0 = time.perf_counter()
        plain_loop()
        return time.perf_counter() - t0

    def plain_script_run() -> float:
        # The same loop as a fresh script: a Tune trial actor is a fresh process too, so both
        # pay the interpreter start and the torch/pandas imports once.
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--plain-only",
                "--trials",
                str(a.trials),
                "--epochs",
                str(a.epochs),
                "--patients",
                str(a.patients),
            ],
            check=True,
        )
        return time.perf_counter() - t0

    import tempfile

    from ray import tune

    from leader.ray_utils import ensure_ray
    from leader.security import trial_dirname
    from leader.student.train import student_trial

    def tune_run(conc: int) -> tuple[float, float]:
        trainable = tune.with_resources(tune.with_parameters(student_trial, ds=ds, base=base, cpus=1), {"cpu": 1})
        with tempfile.TemporaryDirectory() as tmp:
            tuner = tune.Tuner(
                trainable,
                param_space={"lr": tune.grid_search(lrs)},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=conc, trial_dirname_creator=trial_dirname, reuse_actors=True
                ),
                run_config=tune.RunConfig(name=f"bench{conc}", storage_path=tmp, verbose=0),
            )
            t0 = time.perf_counter()
            grid = tuner.fit()
            wall = time.perf_counter() - t0
            assert not grid.errors, grid.errors
            # time spent inside the trainings themselves (Tune's own per-trial clock)
            return wall, sum(float(r.metrics["time_total_s"]) for r in grid)

    ensure_ray(num_cpus=2)
    # Interleave the arms and keep each one's fastest repeat: on a shared 2-core machine the
    # run-to-run noise (~10 %) is as large as the overhead being measured.
    runs: dict[str, list] = {"warm": [], "script": [], 1: [], 2: []}
    for _ in range(a.repeats):
        runs["warm"].append(plain_warm_run())
        runs["script"].append(plain_script_run())
        runs[1].append(tune_run(1))
        runs[2].append(tune_run(2))
    plain_warm, plain = min(runs["warm"]), min(runs["script"])
    res, inside = {}, {}
    for conc in (1, 2):
        best = min(runs[conc])
        res[conc], inside[conc] = best
    out = {
        "trials": a.trials,
        "repeats": a.repeats,
        "epochs": a.epochs,
        "patients": a.patients,
        "cpus": os.cpu_count(),
        "plain_loop_s": round(plain, 2),
        "plain_loop_warm_process_s": round(plain_warm, 2),
        "tune_1_concurrent_s": round(res[1], 2),
        "tune_2_concurrent_s": round(res[2], 2),
        "trials_per_hour_plain": round(3600 * a.trials / plain, 1),
        "trials_per_hour_1_concurrent": round(3600 * a.trials / res[1], 1),
        "trials_per_hour_2_concurrent": round(3600 * a.trials / res[2], 1),
        "speedup_2_vs_1": round(res[1] / res[2], 3),
        "tune_overhead_vs_plain": round(res[1] / plain - 1, 4),
        "tune_overhead_vs_warm_process_loop": round(res[1] / plain_warm - 1, 4),
        # where the overhead goes (1 concurrent trial): the trainings themselves vs Tune's start-up
        # (first trial actor: process start + imports) and its between-trial bookkeeping
        "tune_inside_trials_s": round(inside[1], 2),
        "tune_outside_trials_s": round(res[1] - inside[1], 2),
        "tune_outside_per_trial_s": round((res[1] - inside[1]) / a.trials, 3),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
