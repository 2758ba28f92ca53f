"""Student benchmark -> reports/bench/student.json: training throughput (samples/s), inference
latency per patient at batch 1 and 256, peak memory, on the synthetic cohort.

Usage: python scripts/bench_student.py [--patients 2000] [--epochs 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default="reports/bench/student.json")
    a = ap.parse_args()

    from leader.data.cache import PrepareOptions, prepare
    from leader.models.student import StudentConfig, encode_dataset
    from leader.train.student import StudentTrainConfig, measure_student_latency, train_student

    ds = prepare("synthetic", opts=PrepareOptions(n_patients=a.patients, synthetic_seed=0))
    cfg = StudentTrainConfig(
        student=StudentConfig(), kd="none", epochs=a.epochs, patience=a.epochs, num_threads=a.threads
    )
    t0 = time.perf_counter()
    encode_dataset(ds, cfg.student)
    t_enc = time.perf_counter() - t0
    res = train_student(ds, cfg)
    thr = [h["samples_per_s"] for h in res.history]
    lat = measure_student_latency(res.model, ds, batch_sizes=(1, 256), repeats=20)
    out = {
        "n_patients": a.patients,
        "n_samples": int(len(ds.visits)),
        "n_train_samples": int(ds.samples("train").shape[0]),
        "threads": a.threads,
        "encode_s": t_enc,
        "train_samples_per_s": max(thr),
        "train_samples_per_s_first_epoch": thr[0],
        "latency_ms_per_patient_b1": lat["latency_ms_per_patient_b1"],
        "latency_ms_per_patient_b256": lat["latency_ms_per_patient_b256"],
        "batch256_speedup_per_patient": lat["latency_ms_per_patient_b1"] / lat["latency_ms_per_patient_b256"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_traced_mb_b256": lat["peak_traced_mb"],
        "n_params": lat["n_params"],
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
