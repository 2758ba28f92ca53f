"""Teacher quality and speed against the physical limit, through the platform's own trainer
(Ray Train + DeepSpeed, `train_teacher`), on one synthetic cohort. Writes
reports/bench/teacher.json (flat dict).

Quality: test PRAUC of the drug-frequency prior, the frozen-backbone linear probe (the LP stage)
and the LP-FT teacher (best validation state), MiniLM.
Speed: tokens/s, samples/s and achieved FLOP/s of teacher training per worker, against this
machine's fp32 matmul FLOP/s measured in the same run with the same thread count
(`*_train_mfu`). FLOPs per trained sample = 4 x non-embedding params x tokens (forward 2, the
activation gradients 2; LoRA freezes the base, so no weight gradients) + attention score/value
matmuls (6 x layers x tokens^2 x hidden forward+backward); LoRA's own FLOPs are < 1 %.

Usage: python scripts/bench_teacher.py [--patients 1200] [--steps 60] [--smollm2-steps 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def matmul_peak_gflops(threads: int, n: int = 1024, reps: int = 20) -> float:
    """Best-of fp32 GEMM throughput at `threads` intra-op threads (the same count a worker uses)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    torch.set_num_threads(old)
    return best / 1e9


def model_dims(backbone: str) -> dict:
    from transformers import AutoConfig

    from leader.models.backbones import resolve_backbone

    spec = resolve_backbone(backbone)
    path = spec.materialize()
    cfg = AutoConfig.from_pretrained(str(path), local_files_only=True)
    from transformers import AutoModel

    m = AutoModel.from_config(cfg)
    emb = sum(p.numel() for n, p in m.named_parameters() if "embed" in n)
    total = sum(p.numel() for p in m.parameters())
    return {
        "params": total,
        "non_embedding_params": total - emb,
        "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
        "path": path,
    }


def train_flops_per_sample(dims: dict, tokens: float) -> float:
    linear = 4 * dims["non_embedding_params"] * tokens
    attention = 6 * dims["layers"] * tokens**2 * dims["hidden"]
    return linear + attention


def mean_tokens(backbone_path, prompts: list[str], max_length: int) -> float:
    """Tokens the model actually processes per prompt (after truncation to max_length)."""
    from leader.models.backbones import load_tokenizer

    tok = load_tokenizer(backbone_path)
    return float(np.mean([min(len(x), max_length) for x in tok(prompts, add_special_tokens=True)["input_ids"]]))


def prior_prauc(ds) -> float:
    from leader.metrics import mean_metrics

    tr, te = ds.samples("train")["sample_id"].to_numpy(), ds.samples("test")["sample_id"].to_numpy()
    freq = ds.labels(tr).mean(0)
    return mean_metrics(ds.labels(te), np.tile(freq, (len(te), 1)))["prauc"]


def run_speed(out: dict, prefix: str, ds, cfg_kw: dict, storage: Path, peak: float, workers: int) -> dict:
    """Train a few steps and derive throughput / MFU; returns the run's metrics."""
    from leader.train.teacher import TeacherTrainConfig, _inputs_and_spec, train_teacher

    cfg = TeacherTrainConfig(**cfg_kw)
    dims = model_dims(cfg.backbone)
    data, _, _ = _inputs_and_spec(ds, cfg)
    toks = mean_tokens(dims["path"], data["train"]["prompts"], cfg.max_length)
    t0 = time.perf_counter()
    res = train_teacher(ds, cfg, storage, name=prefix)
    m = res.metrics
    sps = float(m["samples_per_s_per_worker"])
    flops = train_flops_per_sample(dims, toks)
    out.update(
        {
            f"{prefix}_wall_s": round(time.perf_counter() - t0, 1),
            f"{prefix}_mean_tokens": round(toks, 1),
            f"{prefix}_train_samples_per_s_per_worker": round(sps, 3),
            f"{prefix}_train_tokens_per_s_per_worker": round(sps * toks, 1),
            f"{prefix}_train_gflop_per_sample": round(flops / 1e9, 2),
            f"{prefix}_train_achieved_gflops_per_worker": round(sps * flops / 1e9, 2),
            f"{prefix}_train_mfu": round(sps * flops / 1e9 / peak, 3),
            f"{prefix}_epoch_wall_s": round(len(data["train"]["prompts"]) / (sps * workers), 1),
            f"{prefix}_non_embedding_params": dims["non_embedding_params"],
        }
    )
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60, help="LoRA steps after the linear probe (global batch 16)")
    ap.add_argument("--speed-steps", type=int, default=8, help="steps of the 'before' (truncation, no LP) speed run")
    ap.add_argument("--smollm2-steps", type=int, default=4, help="SmolLM2 speed-only steps (0 = skip)")
    ap.add_argument(
        "--speed-only",
        action="store_true",
        help="re-measure the speed figures only (on a quiet machine); keep the quality keys of --out",
    )
    ap.add_argument("--out", default="reports/bench/teacher.json")
    a = ap.parse_args()

    from leader.data.cache import PrepareOptions, prepare
    from leader.ray_utils import ensure_ray

    t_all = time.perf_counter()
    ds = prepare("synthetic", None, PrepareOptions(n_patients=a.patients))
    ensure_ray(num_cpus=max(2, a.workers))
    threads = 1  # train_teacher gives each worker cluster CPUs // workers threads: 1 here
    peak = matmul_peak_gflops(threads)
    out: dict = {
        "command": f"python scripts/bench_teacher.py --patients {a.patients} --workers {a.workers} --steps {a.steps}",
        "machine": platform.processor() or platform.machine(),
        "workers": a.workers,
        "threads_per_worker": threads,
        "fp32_matmul_peak_gflops_per_worker": round(peak, 1),
        "patients": a.patients,
        "train_samples": int(len(ds.samples("train"))),
        "test_samples": int(len(ds.samples("test"))),
        "prior_prauc": round(prior_prauc(ds), 4),
    }
    storage = Path(tempfile.mkdtemp(prefix="bench_teacher_"))
    base = dict(backbone="minilm", workers=a.workers, batch_size=8, max_length=256, eval_batch_size=32, eval_test=True)
    # speed, like for like: the same steps with left truncation (before) and with fitted prompts (after)
    quick = {"max_steps": a.speed_steps, "require_learning": False, "max_eval_samples": 16, "eval_test": False}
    run_speed(out, "minilm_before", ds, {**base, **quick, "fit_prompts": False}, storage, peak, a.workers)
    run_speed(out, "minilm", ds, {**base, **quick}, storage, peak, a.workers)
    out["minilm_epoch_speedup_vs_before"] = round(out["minilm_before_epoch_wall_s"] / out["minilm_epoch_wall_s"], 2)
    if a.smollm2_steps:
        try:
            run_speed(
                out,
                "smollm2",
                ds,
                {
                    **base,
                    **quick,
                    "backbone": "smollm2-135m",
                    "batch_size": 2,
                    "max_steps": a.smollm2_steps,
                    "max_train_samples": 64,
                },
                storage,
                peak,
                a.workers,
            )
        except Exception as e:  # the wheel may be absent: say so rather than fail the bench
            out["smollm2_skipped"] = f"{type(e).__name__}: {e}"[:300]
    if a.speed_only:
        old = json.loads(Path(a.out).read_text()) if Path(a.out).is_file() else {}
        out = {**{k: v for k, v in old.items() if k.startswith(QUALITY_PREFIXES)}, **out}
        out["command"] += " --speed-only (quality keys from the last full run)"
        return _write(out, a.out, t_all)
    # quality: LP-FT through the platform's trainer (Ray Train + DeepSpeed), best-validation state
    m = run_speed(
        out,
        "minilm_lpft",
        ds,
        {
            **base,
            "lp_epochs": 30,
            "lr": 1e-3,
            "head_lr_mult": 10,
            "max_steps": a.steps,
            "eval_every": max(1, a.steps // 3),
            "warmup": 0.1,
        },
        storage,
        peak,
        a.workers,
    )
    out.update(
        {
            "minilm_teacher_prauc": round(m["test_overall_prauc"], 4),
            "minilm_probe_prauc": round(m["probe_test_prauc"], 4),
            "minilm_teacher_single_prauc": round(m.get("test_single_prauc", float("nan")), 4),
            "minilm_teacher_multi_prauc": round(m.get("test_multi_prauc", float("nan")), 4),
            "minilm_probe_val_prauc": round(m["probe_val_prauc"], 4),
            "minilm_best_val_prauc": round(m["best_val_prauc"], 4),
            "minilm_best_step": m["best_step"],
            "minilm_final_train_loss": round(m["final_train_loss"], 4),
            "minilm_prior_bce": round(m["prior_bce"], 4),
            "minilm_frozen_pass_s": round(m["frozen_pass_s"], 1),
            "minilm_prompts_with_dropped_visits": m["prompt_prompts_with_dropped_visits"],
            "minilm_visits_dropped": m["prompt_visits_dropped"],
        }
    )
    _write(out, a.out, t_all)


QUALITY_PREFIXES = (
    "minilm_teacher",
    "minilm_probe",
    "minilm_best",
    "minilm_final",
    "minilm_prior",
    "minilm_frozen",
    "minilm_prompts",
    "minilm_visits",
    "minilm_lpft",
    "prior_prauc",
    "patients",
    "train_samples",
    "test_samples",
)


def _write(out: dict, path: str, t_all: float) -> None:
    out["wall_s"] = round(time.perf_counter() - t_all, 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
