"""Teacher quality and speed against the physical limit, through the platform's own trainer
(Ray Train + DeepSpeed, `train_teacher`), on one synthetic cohort. Writes
reports/bench/teacher.json (flat dict); every ratio comes from runs made in this one invocation.

Before / after (issue: bf16 on AVX512-BF16/AMX + length-bucketed batches): `before` = fp32 and
random global batches (each sorted into micro batches), `after` = `precision: auto` (bf16 autocast
on this CPU) and `length_buckets: true`; `upstream_kernels` = `after` with `cpu_kernels: false`
(transformers' own attention and dropout, autocast casting the fp32 base at every forward), so
`*_cpu_kernels_speedup` measures leader.teacher.cpu_kernels in the same run. Speed runs: MiniLM
(LP frozen pass + LoRA steps) and SmolLM2-135M (LoRA steps). Quality: a full LP-FT MiniLM run in
each mode, test PRAUC with a paired patient bootstrap (leader.significance) of bf16 vs fp32.

The limit: fp32 and bf16 matmul GFLOP/s measured in this run, on the worker's thread count, at the
model's real FFN shape (micro batch x mean tokens, hidden -> intermediate) and at 1024^3; MFU is
reported against each (against the bf16 one only on a CPU with bf16 instructions: elsewhere torch
emulates bf16 at ~1 GFLOP/s, `after` runs fp32, and its ratios measure the length buckets and the
kernels alone, teacher_zen3.json). FLOPs per trained sample = 4 x non-embedding params x tokens (forward 2,
activation gradients 2; LoRA freezes the base, so no weight gradients) + attention score/value
matmuls (6 x layers x tokens^2 x hidden); a frozen-pass sample costs a third of that.

Usage: python scripts/bench_teacher.py [--patients 1200] [--steps 60] [--speed-steps 8] [--smollm2-steps 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = {  # the TeacherTrainConfig fields that differ between the two sides of every ratio
    "before": {"precision": "fp32", "length_buckets": False},
    "after": {"precision": "auto", "length_buckets": True},
}
# speed runs add `after` with transformers' own CPU kernels instead of leader.teacher.cpu_kernels'
SPEED_MODES = {**MODES, "upstream_kernels": {**MODES["after"], "cpu_kernels": False}}


def matmul_gflops(threads: int, m: int, k: int, n: int, dtype: str, reps: int = 10) -> float:
    """Best-of GEMM throughput of (m, k) @ (k, n) at `threads` intra-op threads."""
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * m * k * n / (time.perf_counter() - t0))
    torch.set_num_threads(old)
    return best / 1e9


def peaks(threads: int, dims: dict, rows: int) -> dict:
    """fp32 / bf16 peaks at the model's FFN shape and at 1024^3 (the better one is the limit)."""
    out = {}
    for dt in ("fp32", "bf16"):
        at_shape = matmul_gflops(threads, rows, dims["hidden"], dims["intermediate"], dt)
        square = matmul_gflops(threads, 1024, 1024, 1024, dt)
        out[dt] = max(at_shape, square)
        out[f"{dt}_at_model_shape"], out[f"{dt}_square_1024"] = at_shape, square
    return out


def model_dims(backbone: str) -> dict:
    from transformers import AutoConfig

    from leader.teacher.backbones import resolve_backbone

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
        "intermediate": cfg.intermediate_size,
        "path": path,
    }


def train_flops_per_sample(dims: dict, tokens: float) -> float:
    linear = 4 * dims["non_embedding_params"] * tokens
    attention = 6 * dims["layers"] * tokens**2 * dims["hidden"]
    return linear + attention


def mean_tokens(backbone_path, prompts: list[str], max_length: int) -> float:
    """Tokens the model actually processes per prompt (after truncation to max_length)."""
    from leader.teacher.backbones import load_tokenizer

    tok = load_tokenizer(backbone_path)
    return float(np.mean([min(len(x), max_length) for x in tok(prompts, add_special_tokens=True)["input_ids"]]))


def prior_prauc(ds) -> float:
    from leader.metrics import mean_metrics

    tr, te = ds.samples("train")["sample_id"].to_numpy(), ds.samples("test")["sample_id"].to_numpy()
    freq = ds.labels(tr).mean(0)
    return mean_metrics(ds.labels(te), np.tile(freq, (len(te), 1)))["prauc"]


def run_speed(out: dict, prefix: str, ds, cfg_kw: dict, storage: Path, pk: dict, workers: int) -> dict:
    """Train a few steps (and the LP frozen pass when lp_epochs > 0); derive throughput and MFU
    against both peaks. Returns the run's metrics and checkpoint dir."""
    from leader.config.teacher import TeacherTrainConfig
    from leader.precision import cpu_bf16_flags
    from leader.teacher.inputs import inputs_and_spec
    from leader.teacher.train import train_teacher

    cfg = TeacherTrainConfig(**cfg_kw)
    dims = model_dims(cfg.backbone)
    data, _, _ = inputs_and_spec(ds, cfg)
    toks = mean_tokens(dims["path"], data["train"]["prompts"], cfg.max_length)
    t0 = time.perf_counter()
    res = train_teacher(ds, cfg, storage, name=prefix)
    m = res.metrics
    sps, flops = float(m["samples_per_s_per_worker"]), train_flops_per_sample(dims, toks)
    got = sps * flops / 1e9
    if cpu_bf16_flags():  # without bf16 instructions torch emulates bf16 (~1 GFLOP/s): not a limit
        out[f"{prefix}_train_mfu_vs_bf16_peak"] = round(got / pk["bf16"], 3)
    out.update(
        {
            f"{prefix}_precision": m.get("precision"),
            f"{prefix}_padding_share": round(float(m.get("padding_share", float("nan"))), 3),
            f"{prefix}_wall_s": round(time.perf_counter() - t0, 1),
            f"{prefix}_mean_tokens": round(toks, 1),
            f"{prefix}_train_samples_per_s_per_worker": round(sps, 3),
            f"{prefix}_train_tokens_per_s_per_worker": round(sps * toks, 1),
            f"{prefix}_train_gflop_per_sample": round(flops / 1e9, 2),
            f"{prefix}_train_achieved_gflops_per_worker": round(got, 2),
            f"{prefix}_train_mfu_vs_fp32_peak": round(got / pk["fp32"], 3),
            f"{prefix}_epoch_wall_s": round(len(data["train"]["prompts"]) / (sps * workers), 1),
        }
    )
    if m.get("frozen_pass_s"):
        n_frozen = (
            len(data["train"]["prompts"])
            + len(data["val"]["prompts"])
            + len(data["test"]["prompts"]) * bool(cfg.eval_test)
        )
        out[f"{prefix}_frozen_pass_s"] = round(float(m["frozen_pass_s"]), 1)
        out[f"{prefix}_frozen_samples_per_s"] = round(n_frozen / float(m["frozen_pass_s"]), 2)
    return {"metrics": m, "dir": res.checkpoint_dir}


def ratio(out: dict, name: str, num: str, den: str) -> None:
    if num in out and den in out and out[den]:
        out[name] = round(out[num] / out[den], 2)


def speed_runs(out: dict, ds, base: dict, storage: Path, pk: dict, a) -> None:
    """MiniLM (frozen pass + LoRA steps) and SmolLM2 (LoRA steps), before and after."""
    quick = {
        "max_steps": a.speed_steps,
        "require_learning": False,
        "lp_epochs": 1,
        "max_train_samples": 512,
        "max_eval_samples": 128,
        "eval_test": False,
    }
    for mode, kw in SPEED_MODES.items():
        run_speed(out, f"minilm_{mode}", ds, {**base, **quick, **kw}, storage, pk, a.workers)
    ratio(out, "minilm_epoch_speedup", "minilm_before_epoch_wall_s", "minilm_after_epoch_wall_s")
    ratio(out, "minilm_frozen_pass_speedup", "minilm_after_frozen_samples_per_s", "minilm_before_frozen_samples_per_s")
    kernel_ratios(out, "minilm")
    if not a.smollm2_steps:
        return
    smol = {**base, **quick, "backbone": "smollm2-135m", "batch_size": 2, "max_steps": a.smollm2_steps}
    smol.update(lp_epochs=0, max_train_samples=64)
    try:
        for mode, kw in SPEED_MODES.items():
            run_speed(out, f"smollm2_{mode}", ds, {**smol, **kw}, storage, pk, a.workers)
        ratio(out, "smollm2_epoch_speedup", "smollm2_before_epoch_wall_s", "smollm2_after_epoch_wall_s")
        kernel_ratios(out, "smollm2")
    except Exception as e:  # the wheel may be absent: say so rather than fail the bench
        out["smollm2_skipped"] = f"{type(e).__name__}: {e}"[:300]


def kernel_ratios(out: dict, model: str) -> None:
    """`after` with leader's CPU kernels over `after` with transformers' own, same run."""
    a, u = f"{model}_after", f"{model}_upstream_kernels"
    ratio(
        out,
        f"{model}_cpu_kernels_speedup",
        f"{a}_train_samples_per_s_per_worker",
        f"{u}_train_samples_per_s_per_worker",
    )
    ratio(out, f"{model}_cpu_kernels_frozen_speedup", f"{a}_frozen_samples_per_s", f"{u}_frozen_samples_per_s")


def test_scores(ds, teacher_dir: Path) -> np.ndarray:
    """Per-sample PRAUC of a saved teacher on the test split, in the format it was trained in."""
    from leader.metrics import sample_metrics
    from leader.teacher.model import load_teacher

    t = load_teacher(teacher_dir)
    ids = ds.samples("test")["sample_id"].to_numpy()
    probs, _ = t.infer(t.prompts(ds, ids), batch_size=32)
    return sample_metrics(ds.labels(ids), probs)["prauc"]


def quality_runs(out: dict, ds, base: dict, storage: Path, pk: dict, a) -> None:
    """Full LP-FT MiniLM in each mode; bf16 vs fp32 test PRAUC with a paired patient bootstrap."""
    from leader.significance import paired_test

    lpft = {**base, "lp_epochs": 30, "lr": 1e-3, "head_lr_mult": 10, "max_steps": a.steps}
    lpft.update(eval_every=max(1, a.steps // 3), warmup=0.1)
    scores = {}
    for mode, kw in MODES.items():
        r = run_speed(out, f"minilm_lpft_{mode}", ds, {**lpft, **kw}, storage, pk, a.workers)
        m = r["metrics"]
        out[f"minilm_lpft_{mode}_teacher_prauc"] = round(m["test_overall_prauc"], 4)
        out[f"minilm_lpft_{mode}_probe_prauc"] = round(m["probe_test_prauc"], 4)
        out[f"minilm_lpft_{mode}_best_step"] = m["best_step"]
        scores[mode] = test_scores(ds, r["dir"])
    patients = ds.samples("test")["patient_id"].to_numpy()
    t = paired_test(scores["after"][None], scores["before"][None], patients)
    # on a CPU without bf16 `after` is fp32 too: then the test compares the batching, not the formats
    diff = "bf16_minus_fp32" if out["minilm_lpft_after_precision"] == "bf16" else "after_minus_before"
    for k, v in {"prauc": t.diff, "ci_low": t.ci_low, "ci_high": t.ci_high, "p": t.p_bootstrap}.items():
        out[f"minilm_lpft_{diff}_{k}"] = round(v, 4)
    ratio(out, "minilm_lpft_epoch_speedup", "minilm_lpft_before_epoch_wall_s", "minilm_lpft_after_epoch_wall_s")
    ratio(
        out,
        "minilm_lpft_frozen_pass_speedup",
        "minilm_lpft_after_frozen_samples_per_s",
        "minilm_lpft_before_frozen_samples_per_s",
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60, help="LoRA steps of the quality runs (after the probe)")
    ap.add_argument("--speed-steps", type=int, default=8, help="LoRA steps of each speed run")
    ap.add_argument("--smollm2-steps", type=int, default=8, help="SmolLM2 speed-only steps (0 = skip)")
    ap.add_argument("--speed-only", action="store_true", help="skip the two full LP-FT quality runs")
    ap.add_argument("--out", default="reports/bench/teacher.json")
    a = ap.parse_args()

    from leader.data.cache import PrepareOptions, prepare
    from leader.precision import cpu_bf16_flags, cpu_identity
    from leader.ray_utils import ensure_ray

    t_all = time.perf_counter()
    ds = prepare("synthetic", None, PrepareOptions(n_patients=a.patients))
    ensure_ray(num_cpus=max(2, a.workers))
    threads = 1  # train_teacher gives each worker cluster CPUs // workers threads: 1 here
    base = dict(backbone="minilm", workers=a.workers, batch_size=8, max_length=256, eval_batch_size=32, eval_test=True)
    pk = peaks(threads, model_dims("minilm"), rows=base["batch_size"] * 145)
    out: dict = {
        "command": f"python scripts/bench_teacher.py --patients {a.patients} --workers {a.workers} --steps {a.steps}"
        + (" --speed-only" if a.speed_only else ""),
        "machine": platform.processor() or platform.machine(),
        **cpu_identity(),
        "cpu_bf16_flags": " ".join(cpu_bf16_flags()) or "none",
        "workers": a.workers,
        "threads_per_worker": threads,
        **{f"{k}_matmul_peak_gflops_per_worker": round(v, 1) for k, v in pk.items()},
        "patients": a.patients,
        "train_samples": int(len(ds.samples("train"))),
        "test_samples": int(len(ds.samples("test"))),
        "prior_prauc": round(prior_prauc(ds), 4),
    }
    storage = Path(tempfile.mkdtemp(prefix="bench_teacher_"))
    speed_runs(out, ds, base, storage, pk, a)
    if not a.speed_only:
        quality_runs(out, ds, base, storage, pk, a)
    _write(out, a.out, t_all)


def _write(out: dict, path: str, t_all: float) -> None:
    out["wall_s"] = round(time.perf_counter() - t_all, 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
