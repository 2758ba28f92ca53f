"""Teacher training and inference cost on this machine: steps/s and peak RSS per worker for
ZeRO-2 vs ZeRO-3 (same backbone, data and seed, 2 Ray Train workers), and teacher inference
latency per patient. Writes reports/bench/teacher.json (flat dict)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="tiny-llama")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--out", default="reports/bench/teacher.json")
    a = ap.parse_args()

    from leader.data.cache import PrepareOptions, prepare
    from leader.data.prompts import build_prompts
    from leader.models.teacher import load_teacher
    from leader.ray_utils import ensure_ray
    from leader.train.teacher import TeacherTrainConfig, train_teacher

    ds = prepare("synthetic", None, PrepareOptions(n_patients=a.patients))
    ensure_ray(num_cpus=max(2, a.workers))
    out: dict[str, float | str] = {"backbone": a.backbone, "workers": a.workers, "steps": a.steps}
    storage = Path(tempfile.mkdtemp(prefix="bench_teacher_"))
    ckpt = None
    for zero in (2, 3):
        cfg = TeacherTrainConfig(backbone=a.backbone, workers=a.workers, zero_stage=zero, max_steps=a.steps,
                                 batch_size=4, max_length=128, eval_test=False, max_eval_samples=32)
        t0 = time.perf_counter()
        res = train_teacher(ds, cfg, storage, name=f"z{zero}")
        out[f"zero{zero}_wall_s"] = round(time.perf_counter() - t0, 2)
        out[f"zero{zero}_steps_per_s_per_worker"] = round(float(res.metrics["steps_per_s_per_worker"]), 3)
        out[f"zero{zero}_peak_rss_mb_per_worker"] = round(float(res.metrics["rss_mb_peak_worker"]), 1)
        ckpt = res.checkpoint_dir
    out["zero3_vs_zero2_step_time_ratio"] = round(out["zero2_steps_per_s_per_worker"] / out["zero3_steps_per_s_per_worker"], 3)

    teacher = load_teacher(ckpt)
    prompts = build_prompts(ds, ds.samples("test")["sample_id"].to_numpy()[:64])
    teacher.infer(prompts[:1])
    for bs in (1, 64):
        batch = [prompts[i % len(prompts)] for i in range(bs)]
        t0 = time.perf_counter()
        teacher.infer(batch, batch_size=bs)
        out[f"infer_latency_ms_per_patient_b{bs}"] = round(1000 * (time.perf_counter() - t0) / bs, 3)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
