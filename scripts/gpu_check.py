"""The teacher's GPU path, checked end to end on one device: the REAL worker loop
(`leader.teacher.train.train_teacher_in_process`: DeepSpeed ZeRO-2 / ZeRO-3, LP-FT frozen pass on
the engine's device, finite-loss checks, checkpoints, resume, final save) on a seeded LLaMA-shaped
model built here as a local folder, then the saved teacher reloaded and used for extraction.

Why one script with two modes: the GPU machine is lent rarely and briefly, so the day it is, this
must run first time. `--device cpu` is the same code path on a small LLaMA-shaped model (fp32,
gloo) and runs in CI (tests/integration/test_gpu_check.py); only the CUDA-only figures (memory)
are skipped there.

On the GPU machine (torch + transformers only: no Ray, DeepSpeed, peft, no package registry),
first, here: `bash scripts/gpu_wheelhouse.sh` (fills .whl/, git-ignored), then there:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
    PYTHONPATH=/tmp/site:. python3 scripts/gpu_check.py --device cuda

(without pip there: `python3 -c "import glob, zipfile; [zipfile.ZipFile(w).extractall('/tmp/site') for w in
glob.glob('.whl/*.whl')]"` installs the same files). Ray and pyarrow are not needed: the
in-process worker never imports Ray, and `skip_data_init_without_pyarrow` works around the one
library import that would pull pyarrow (leader/data/__init__.py).

`--device cuda` (< 10 min on one H200 / V100): hidden 4096, intermediate 11008, 32 heads, vocab
32000, fp16 weights, 4 layers (+ a 2-layer build for the memory slope), max_length 2048, ZeRO-2
(micro batch 2) then ZeRO-3 (micro batch 4), 8 steps each, checkpoint_every 2, lp_epochs 1,
gradient checkpointing. Writes reports/bench/gpu.json (or --out).
`--device cpu` (< 4 min on 2 cores): hidden 128, 2 layers, max_length 128, fp32; ZeRO-2, ZeRO-3
and ZeRO-3 + cpu_offload, all with gradient checkpointing. Writes --out (default: a temp folder).

Asserted per stage (one line per failure, exit 1): no exception; frozen_pass_device on the
device; all losses finite and the last below the first; fp16_skipped_steps < steps; a child that
crashes at step 3 ($LEADER_TEST_FAIL_AT_STEP) then a re-run that resumes reproduce the uninterrupted losses
(1e-3); `load_teacher` reproduces best_val_prauc (1e-3 fp16, 1e-4 fp32); `infer` gives finite
(N, M) / (N, d_h). CUDA only: peak `torch.cuda.max_memory_allocated()` of a training step and of
an eval forward at 2 and 4 layers, extrapolated linearly to 32 layers, within +-25 % of
`leader.study.budget`'s estimate for the same shapes (`compare_to_plan`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `leader` from this checkout when run as `python scripts/gpu_check.py`
    sys.path.insert(0, str(REPO))

GIB = 2**30
GPU_JSON = REPO / "reports" / "bench" / "gpu.json"
PLAN_LAYERS = 32  # LLaMA-7B's depth: what the memory figures are extrapolated to
PLAN_TOLERANCE = 0.25
CRASH_STEP = 3  # the child dies here; the newest checkpoint then is step 2 (checkpoint_every 2)
DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class Shape:
    """Model and run sizes of one mode."""

    hidden: int
    intermediate: int
    heads: int
    layers: int  # the model every stage trains
    mem_layers: int | None  # second build for the per-layer memory slope (CUDA only)
    vocab: int | None  # model vocab (None: the tokenizer's size)
    tok_vocab: int  # BPE merges target: small = ~1 token per character, prompts near max_length
    max_length: int
    steps: int
    n_eval: int
    eval_batch: int
    n_patients: int
    fp16: bool


@dataclass(frozen=True)
class Stage:
    name: str
    zero: int
    batch: int
    cpu_offload: bool = False


SHAPES = {
    "cuda": Shape(4096, 11008, 32, 4, 2, 32000, 300, 2048, 8, 16, 16, 80, True),
    "cpu": Shape(128, 344, 4, 2, None, None, 2000, 128, 6, 16, 16, 80, False),
}
STAGES = {
    "cuda": (Stage("zero2", 2, 2), Stage("zero3", 3, 4)),  # the micro batches of the V100 DeepSpeed files
    "cpu": (Stage("zero2", 2, 4), Stage("zero3", 3, 4), Stage("zero3_offload", 3, 4, cpu_offload=True)),
}


class Checks:
    """Failed assertions, one line each: the run goes on so one GPU slot reports every problem."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: bool, line: str) -> bool:
        if not ok:
            self.failures.append(line)
            print(f"FAIL {line}", flush=True)
        return ok


# ----------------------------------------------------------------------------- inputs
def build_dataset(shape: Shape):
    """A seeded cohort with real ICD-9 / ATC-3 names (leader/resources/curated.json) and long
    multi-visit histories, so that prompts reach 2048 tokens, built by `assemble` from pandas alone:
    `prepare('synthetic')` reads its CSVs with pyarrow (55 MiB: over the device's transfer limit)."""
    import numpy as np
    import pandas as pd

    from leader.data.assemble import assemble
    from leader.data.codes import load_curated

    cur, rng = load_curated(), np.random.default_rng(0)
    pools = {"diag": dict(cur["background_diag"]), "proc": dict(cur["background_proc"]), "med": dict(cur["atc3"])}
    keys = {k: sorted(v) for k, v in pools.items()}
    rows, vid = [], 100000
    for p in range(shape.n_patients):
        usual = rng.choice(keys["med"], 5, replace=False)  # a patient's regular drugs: something to learn
        profile = {"age": str(rng.choice(["18-39", "40-64", "65-79", "80+"])), "gender": str(rng.choice(["F", "M"]))}
        for k in range(int(rng.choice([1, 1, 2, 3, 4, 5, 6]))):
            vid += 1
            meds = set(rng.choice(usual, int(rng.integers(2, 6)), replace=False))
            meds |= set(rng.choice(keys["med"], int(rng.integers(1, 5)), replace=False))
            rows.append(
                {
                    "patient_id": f"P{p:05d}",
                    "visit_id": vid,
                    "admittime": pd.Timestamp("2100-01-01") + pd.Timedelta(days=60 * k),
                    "diag": list(rng.choice(keys["diag"], int(rng.integers(6, 15)), replace=False)),
                    "proc": list(rng.choice(keys["proc"], int(rng.integers(2, 6)), replace=False)),
                    "med": sorted(meds),
                    **profile,
                }
            )
    names = {k: {c: pools[k][c] for c in keys[k]} for k in pools}
    return assemble(
        "gpucheck", pd.DataFrame(rows), names, ["age", "gender"], seed=0, provenance={"source": "gpu_check"}
    )


def skip_data_init_without_pyarrow() -> None:
    """leader/data/__init__.py imports the CSV readers (pyarrow) although the teacher path needs only
    its prompts / dataset / assemble modules: where pyarrow is absent (the GPU machine), the package
    is registered without running its __init__, so those modules import on their own."""
    if "leader.data" in sys.modules or has_module("pyarrow"):
        return
    import types

    import leader

    pkg = types.ModuleType("leader.data")
    pkg.__path__ = [str(Path(leader.__file__).parent / "data")]
    pkg.__package__ = "leader.data"
    sys.modules["leader.data"] = leader.data = pkg


def build_backbones(ds, shape: Shape, out: Path) -> dict[int, Path]:
    """Seeded LLaMA-shaped folders (config + weights + tokenizer) that `resolve_backbone` takes as
    local paths, one per depth, sharing one tokenizer trained on the training prompts (as the tiny
    backbones' is). Never named tiny-*: that would send them down the tiny registry path."""
    from leader.data.prompts import build_prompts
    from leader.teacher.tokenizer import train_tokenizer

    tok = train_tokenizer(build_prompts(ds, ds.samples("train")["sample_id"].to_numpy()), vocab_size=shape.tok_vocab)
    depths = (shape.layers,) + ((shape.mem_layers,) if shape.mem_layers else ())
    return {n: build_llama(tok, shape, n, out / f"gpucheck-llama-h{shape.hidden}-l{n}") for n in depths}


def build_llama(tok, shape: Shape, layers: int, folder: Path) -> Path:
    """One folder: LlamaConfig at `shape`, weights from seed 0 (fp16 on the GPU shape, as a 7B
    checkpoint ships), the tokenizer beside them. The model vocab may exceed the tokenizer's
    (32000 on the GPU shape: LLaMA-7B's embedding memory; the extra rows are never read)."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    if (folder / "config.json").exists():
        return folder
    config = LlamaConfig(
        vocab_size=shape.vocab or len(tok),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=max(4096, shape.max_length),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaModel(config)
    if shape.fp16:
        model = model.half()
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    del model
    return folder


def plan_folder(src: Path, layers: int) -> Path:
    """The same config at `layers` deep, config.json only: what the plan estimate reads (it
    counts parameters on the meta device and never loads weights)."""
    cfg = json.loads((src / "config.json").read_text())
    out = src.with_name(f"{src.name}-plan{layers}")
    out.mkdir(exist_ok=True)
    (out / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": layers}, indent=1))
    return out


def teacher_config(shape: Shape, stage: Stage, backbone: Path, device: str, **over):
    """The run every stage makes: small enough for one device, the production switches on."""
    from leader.config.teacher import TeacherTrainConfig

    return TeacherTrainConfig(
        backbone=str(backbone),
        workers=1,
        use_gpu=device == "cuda",
        fp16=shape.fp16,
        precision="fp16" if shape.fp16 else "fp32",  # fp32 on CPU even where bf16 autocast exists
        zero_stage=stage.zero,
        cpu_offload=stage.cpu_offload,
        batch_size=stage.batch,
        max_steps=shape.steps,
        max_train_samples=stage.batch * shape.steps,  # one epoch: every prompt, the longest batch too
        max_length=shape.max_length,
        max_eval_samples=shape.n_eval,
        eval_batch_size=shape.eval_batch,
        lr=1e-3,
        head_lr_mult=10.0,
        head_init="default",  # starts at p = 0.5: a loss that must visibly fall in a few steps
        lp_epochs=1,
        checkpoint_every=2,
        gradient_checkpointing=True,
        require_learning=False,
        progress_every_s=60.0,
        **over,
    )


# ----------------------------------------------------------------------------- CUDA memory
@contextlib.contextmanager
def memory_probe(rec: dict):
    """Peak allocated CUDA memory of every training step and every eval forward (`evaluate.predict`)
    of the real worker, with their (batch, tokens), read by wrapping those two entry points for one
    run (leader/ stays unchanged). Appends (peak_bytes, batch, tokens) to rec['train'] / rec['eval']."""
    import torch

    from leader.teacher import evaluate, worker
    from leader.teacher.inputs import token_lengths

    step0, predict0 = worker.TeacherRun.train_step, evaluate.predict
    rec.setdefault("train", []), rec.setdefault("eval", [])

    def peak(fn):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        return out, torch.cuda.max_memory_allocated()

    def train_step(run, gb, y):
        L = int(token_lengths(run.model.tokenizer, [run.tr["prompts"][i] for i in gb], run.cfg.max_length).max())
        out, p = peak(lambda: step0(run, gb, y))
        rec["train"].append((p, len(gb), L))
        return out

    def predict(module, prompts, max_length, bs, device=None):
        L = int(token_lengths(module.tokenizer, prompts, max_length).max()) if prompts else 0
        out, p = peak(lambda: predict0(module, prompts, max_length, bs, device))
        rec["eval"].append((p, min(bs, len(prompts)), L))
        return out

    worker.TeacherRun.train_step, evaluate.predict = train_step, predict
    try:
        yield rec
    finally:
        worker.TeacherRun.train_step, evaluate.predict = step0, predict0


def peak_at_longest(rows: list[tuple[int, int, int]]) -> tuple[float, int, int]:
    """(peak GiB, batch, tokens) of the call with the most tokens: the shape the plan is asked about."""
    p, b, L = max(rows, key=lambda r: (r[1] * r[2], r[0]))
    return p / GIB, b, L


def extrapolate(at: dict[int, float], to: int) -> float:
    """Linear in layers through the two measured depths (each layer adds the same weights and
    activations; embeddings, head and ZeRO buffers are the intercept)."""
    (l1, m1), (l2, m2) = sorted(at.items())
    return m2 + (m2 - m1) / (l2 - l1) * (to - l2)


def compare_to_plan(folder: Path, cfg, n_meds: int, train_shape: tuple, eval_shape: tuple) -> dict | None:
    """`leader study plan`'s estimate (leader.study.budget) for this model and DeepSpeed config at
    the measured (batch, tokens): model states + training activations, model states + eval
    forward, in GiB (its runtime reserve excluded: max_memory_allocated has no CUDA context).
    None when the budget module is absent (the hook the plan plugs into)."""
    try:
        from leader.study import budget
    except ImportError:
        return None
    a = budget.with_head(budget.arch(str(folder), cfg.lora_rank), n_meds)
    res = SimpleNamespace(gpu_memory_gb=80.0, gpu_per_worker=1.0, gpu_peak_tflops=1.0, assumed_mfu=1.0)
    memory = getattr(budget, "teacher_memory", None)  # its earlier name: teacher_estimate(a, cfg, res, facts)
    estimate = memory or (lambda a, cfg, res, n: budget.teacher_estimate(a, cfg, res, {"n_meds": n}))
    tr = estimate(a, cfg.model_copy(update={"max_length": train_shape[1]}), res, n_meds)
    ev = estimate(
        a, cfg.model_copy(update={"max_length": eval_shape[1], "eval_batch_size": eval_shape[0]}), res, n_meds
    )
    return {
        "states": tr["states_gib"]["total"],
        "train": tr["states_gib"]["total"] + tr["activations_gib"]["train_total"],
        "eval": ev["states_gib"]["total"] + ev["activations_gib"]["eval"],
        "need_with_reserve": tr["need_gib"],
        "gathered": tr["states_gib"].get("zero3_gathered", 0.0),  # not linear in layers (see plan_figures)
    }


def allocated_gib() -> float:
    import torch

    return torch.cuda.memory_allocated() / GIB if torch.cuda.is_available() else 0.0


def free_device() -> None:
    """Engines of earlier runs hold reference cycles: collect them before the next measurement."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- one run
def crash_child(args: argparse.Namespace, cfg, out: Path) -> int:
    """The first attempt in a child process that `os._exit(1)`s at step CRASH_STEP, as a dying
    worker would; returns its exit code (1 expected)."""
    from leader.config.teacher import FAIL_AT_STEP_ENV

    spec = {"device": args.device, "cfg": cfg.model_dump(mode="json"), "out": str(out)}
    # the child sets up its own one-process group: none of this process's dist variables
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV} | {FAIL_AT_STEP_ENV: str(CRASH_STEP)}
    cmd = [sys.executable, *(["-S"] if sys.flags.no_site else []), __file__, "--child", json.dumps(spec)]
    try:
        return subprocess.run(cmd, cwd=REPO, env=env, timeout=args.child_timeout).returncode
    except subprocess.TimeoutExpired:
        return 124


def child_main(spec: dict) -> int:
    """Child side of `crash_child`: the same dataset (seeded), the same config, the crash asked for
    by $LEADER_TEST_FAIL_AT_STEP."""
    from leader.config.teacher import TeacherTrainConfig
    from leader.teacher.train import train_teacher_in_process

    ds = build_dataset(SHAPES[spec["device"]])
    train_teacher_in_process(ds, TeacherTrainConfig(**spec["cfg"]), spec["out"])
    return 0  # reached only when the crash did not happen: the parent reports it


def check_training(c: Checks, name: str, m: dict, device: str) -> dict:
    """The assertions every run must pass; returns its figures."""
    losses = [float(x) for x in m.get("losses", [])]
    T = int(m.get("step", len(losses)))
    finite = bool(losses) and all(math.isfinite(x) for x in losses)
    c.check(len(losses) == T and T > 0, f"{name}: {len(losses)} losses recorded for {T} steps")
    c.check(finite, f"{name}: non-finite losses {losses}")
    if finite:
        c.check(losses[-1] < losses[0], f"{name}: last loss {losses[-1]:.4f} is not below the first {losses[0]:.4f}")
    dev = str(m.get("frozen_pass_device", ""))
    c.check(dev.startswith(device), f"{name}: frozen pass ran on {dev!r}, not {device}")
    skipped = int(m.get("fp16_skipped_steps", 0))
    c.check(skipped < max(T, 1), f"{name}: {skipped} of {T} steps skipped by the fp16 loss scaler")
    return {
        "steps": T,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "steps_per_s": m.get("steps_per_s_per_worker"),
        "frozen_pass_device": dev,
        "fp16_skipped_steps": skipped,
        "nonfinite_steps": m.get("nonfinite_steps"),
        "zero_stage": m.get("zero_stage"),
        "precision": m.get("precision"),
        "best_val_prauc": m.get("best_val_prauc"),
        "probe_val_prauc": m.get("probe_val_prauc"),
    }


def check_resume(c: Checks, name: str, rc: int, ref: list[float], m: dict) -> dict:
    """Crashed child + re-run = the uninterrupted run, step for step."""
    c.check(rc == 1, f"{name}: the crashing child exited {rc}, expected 1 (os._exit at step {CRASH_STEP})")
    got = [float(x) for x in m.get("losses", [])]
    c.check(m.get("resumed_from") is not None, f"{name}: the re-run did not resume (resumed_from None)")
    diff = max((abs(a - b) for a, b in zip(ref, got, strict=False)), default=float("inf"))
    same = len(got) == len(ref) and diff <= 1e-3
    c.check(same, f"{name}: resumed losses {got} != uninterrupted {ref} (max diff {diff:.2e})")
    return {"resumed_from": m.get("resumed_from"), "resume_max_abs_diff": diff if math.isfinite(diff) else None}


def check_reload(c: Checks, name: str, ds, res, shape: Shape, device: str) -> dict:
    """The saved teacher, loaded as extraction loads it, gives the run's best validation PRAUC
    and finite (N, M) probabilities / (N, d_h) states."""
    import numpy as np
    import torch

    from leader.metrics import mean_metrics
    from leader.teacher.model import load_teacher

    # A registry 7B backbone loads fp16; this local folder would load fp32 (resolve_backbone), so
    # the dtype it was trained in is asked for: the PRAUC is then the same computation.
    t = load_teacher(res.checkpoint_dir, device=device, dtype=torch.float16 if shape.fp16 else None)
    val = ds.samples("val")["sample_id"].to_numpy()[: shape.n_eval]
    test = ds.samples("test")["sample_id"].to_numpy()[: shape.n_eval]
    probs, hid = t.infer(t.prompts(ds, val), batch_size=shape.eval_batch)
    prauc = mean_metrics(ds.labels(val), probs)["prauc"]
    best = res.metrics.get("best_val_prauc")
    tol = 1e-3 if shape.fp16 else 1e-4
    ok = best is not None and abs(prauc - best) <= tol
    c.check(ok, f"{name}: reloaded teacher val PRAUC {prauc:.5f} != best_val_prauc {best} (tol {tol:g})")
    p2, h2 = t.infer(t.prompts(ds, np.concatenate([val, test])), batch_size=shape.eval_batch)
    n, want = len(val) + len(test), ((len(val) + len(test), ds.n_meds), (len(val) + len(test), shape.hidden))
    c.check((p2.shape, h2.shape) == want, f"{name}: infer shapes {p2.shape}, {h2.shape} != {want}")
    fin = bool(np.isfinite(p2).all() and np.isfinite(h2.astype(np.float32)).all())
    c.check(fin, f"{name}: infer returned non-finite probabilities or states")
    del t
    free_device()
    return {
        "reload_val_prauc": prauc,
        "reload_prauc_abs_diff": abs(prauc - best) if best is not None else None,
        "infer_n": n,
        "infer_finite": fin,
    }


def train_run(c: Checks, name: str, ds, cfg, out: Path, rec: dict | None):
    """One call of the real worker (memory probed when `rec`); an exception is a failed check."""
    from leader.teacher.train import train_teacher_in_process

    free_device()
    leak, t0 = allocated_gib(), time.perf_counter()
    try:
        with memory_probe(rec) if rec is not None else contextlib.nullcontext():
            res = train_teacher_in_process(ds, cfg, out)
    except Exception as e:  # device / NCCL / DeepSpeed errors surface here
        traceback.print_exc()
        c.check(False, f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return None, time.perf_counter() - t0
    if rec is not None:
        rec["leak_gib"] = leak
    return res, time.perf_counter() - t0


# ----------------------------------------------------------------------------- stages
def run_stage(c: Checks, args: argparse.Namespace, ds, shape: Shape, stage: Stage, folders: dict, work: Path) -> dict:
    """Uninterrupted run (memory probed on CUDA) -> reload + extraction -> crash + resume; on CUDA
    also the shallower build for the memory slope. Figures are prefixed with the stage name."""
    name, cuda = stage.name, args.device == "cuda"
    cfg = teacher_config(shape, stage, folders[shape.layers], args.device)
    rec: dict | None = {} if cuda else None
    print(
        f"[gpu_check] {name}: ZeRO-{stage.zero}, micro batch {stage.batch} x {shape.max_length} tokens, "
        f"{shape.layers} layers, offload {stage.cpu_offload}",
        flush=True,
    )
    res, wall = train_run(c, name, ds, cfg, work / name / "full", rec)
    fig: dict = {"wall_s": wall, "cpu_offload": stage.cpu_offload, "micro_batch": stage.batch}
    if res is None:
        return {f"{name}_{k}": v for k, v in fig.items()}
    fig.update(check_training(c, name, res.metrics, args.device))
    fig.update(check_reload(c, name, ds, res, shape, args.device))
    t0 = time.perf_counter()
    rc = crash_child(args, cfg, work / name / "resumed")
    # the re-run without the crash: had the child left no checkpoint, a fresh start here would
    # otherwise kill this process at CRASH_STEP; it shows as resumed_from None instead
    res2, _ = train_run(c, f"{name} resume", ds, cfg, work / name / "resumed", None)
    fig["resume_wall_s"] = time.perf_counter() - t0
    if res2 is not None:
        fig.update(check_resume(c, name, rc, [float(x) for x in res.metrics["losses"]], res2.metrics))
    if cuda:
        fig.update(memory_figures(c, name, ds, shape, (cfg, rec), folders, work))
    else:  # memory is CUDA-only; the plan's API is still exercised
        fig.update(plan_figures(c, name, folders, cfg, ds.n_meds, {}))
    free_device()
    return {f"{name}_{k}": v for k, v in fig.items()}


def memory_figures(c: Checks, name: str, ds, shape: Shape, full: tuple, folders: dict, work: Path) -> dict:
    """Peaks of a training step and an eval forward at the two depths (minus what earlier runs left
    allocated), then `plan_figures` against the plan for the same shapes."""
    cfg, rec_full = full
    rec_mem: dict = {}
    cfg_mem = cfg.model_copy(update={"backbone": str(folders[shape.mem_layers])})
    res, _ = train_run(c, f"{name} {shape.mem_layers} layers", ds, cfg_mem, work / name / "memory", rec_mem)
    if res is not None:
        check_training(c, f"{name} {shape.mem_layers} layers", res.metrics, "cuda")
    fig: dict = {}
    shapes: dict[str, set] = {"train": set(), "eval": set()}
    for layers, rec in ((shape.layers, rec_full), (shape.mem_layers, rec_mem)):
        for kind in ("train", "eval"):
            if not c.check(bool(rec.get(kind)), f"{name}: no {kind} peak measured at {layers} layers"):
                return fig
            gib, b, L = peak_at_longest(rec[kind])
            fig[f"peak_gib_{kind}_L{layers}"] = gib - rec.get("leak_gib", 0.0)
            shapes[kind].add((b, L))
        fig[f"leak_gib_L{layers}"] = rec.get("leak_gib")
    for kind in ("train", "eval"):
        c.check(len(shapes[kind]) == 1, f"{name}: {kind} shapes differ between depths {shapes[kind]}")
        fig[f"{kind}_batch"], fig[f"{kind}_tokens"] = min(shapes[kind])
    fig.update(plan_figures(c, name, folders, cfg, ds.n_meds, fig))
    return fig


def plan_figures(c: Checks, name: str, folders: dict[int, Path], cfg, n_meds: int, fig: dict) -> dict:
    """The plan at each built depth and at PLAN_LAYERS; where peaks were measured, each within
    +-25 % of the plan at its own depth, and the 32-layer extrapolation within +-25 % of the plan
    there. The line through the two depths runs through the measured peaks minus the plan's ZeRO-3
    gathered parameters: with stage3_max_live_parameters 1e9 a 2- or 4-layer base stays gathered
    whole (that term doubles the per-layer slope) but a 32-layer one is capped, so it is not linear
    in layers; its value at each depth is checked by the same-depth comparisons."""
    shapes = [
        (fig.get(f"{k}_batch", b), fig.get(f"{k}_tokens", cfg.max_length))
        for k, b in (("train", cfg.batch_size), ("eval", cfg.eval_batch_size))
    ]
    try:
        plans = {n: compare_to_plan(f, cfg, n_meds, *shapes) for n, f in folders.items()}
        plans[PLAN_LAYERS] = compare_to_plan(plan_folder(folders[max(folders)], PLAN_LAYERS), cfg, n_meds, *shapes)
    except Exception as e:  # the plan's API moved: say so, keep the measured figures
        traceback.print_exc()
        c.check(False, f"{name}: plan estimate failed: {type(e).__name__}: {e}")
        return {}
    if any(p is None for p in plans.values()):
        return {"plan": "TODO compare_to_plan(): leader.study.budget not importable"}
    out: dict = {f"plan_gib_{k}_L{n}": p[k] for n, p in plans.items() for k in ("train", "eval", "states")}
    out[f"plan_gib_need_with_reserve_L{PLAN_LAYERS}"] = plans[PLAN_LAYERS]["need_with_reserve"]
    for kind in ("train", "eval"):
        measured = {n: fig[f"peak_gib_{kind}_L{n}"] for n in folders if f"peak_gib_{kind}_L{n}" in fig}
        for n, m in measured.items():
            out[f"ratio_{kind}_L{n}"] = ratio = m / plans[n][kind]
            c.check(
                abs(ratio - 1) <= PLAN_TOLERANCE,
                f"{name}: {kind} peak at {n} layers {m:.2f} GiB vs plan "
                f"{plans[n][kind]:.2f} GiB: ratio {ratio:.2f} outside 1 +- {PLAN_TOLERANCE}",
            )
        if len(measured) < 2:
            continue
        out[f"peak_gib_{kind}_L{PLAN_LAYERS}_linear"] = extrapolate(measured, PLAN_LAYERS)
        linear = {n: m - plans[n]["gathered"] for n, m in measured.items()}
        deep = extrapolate(linear, PLAN_LAYERS) + plans[PLAN_LAYERS]["gathered"]
        out[f"peak_gib_{kind}_L{PLAN_LAYERS}_extrapolated"] = deep
        out[f"ratio_{kind}_L{PLAN_LAYERS}"] = ratio = deep / plans[PLAN_LAYERS][kind]
        c.check(
            abs(ratio - 1) <= PLAN_TOLERANCE,
            f"{name}: {kind} peak at {PLAN_LAYERS} layers {deep:.2f} GiB "
            f"(extrapolated) vs plan {plans[PLAN_LAYERS][kind]:.2f} GiB: ratio {ratio:.2f} outside 1 +- 0.25",
        )
    return out


# ----------------------------------------------------------------------------- driver
def versions(device: str) -> dict:
    import platform

    import deepspeed
    import peft
    import torch
    import transformers

    cuda = device == "cuda" and torch.cuda.is_available()
    return {
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "deepspeed": deepspeed.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "gpu_name": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / GIB if cuda else None,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--out", type=Path, help=f"JSON figures (cuda default {GPU_JSON}; cpu default a temp folder)")
    ap.add_argument("--stages", help="comma-separated subset of the mode's stages (default: all)")
    ap.add_argument("--max-steps", type=int, help="override the steps per run (below 3 the resume check must fail)")
    ap.add_argument("--work", type=Path, help="folder for models and runs (default: a temp folder, removed)")
    ap.add_argument("--child-timeout", type=int, default=600)
    ap.add_argument("--child", help=argparse.SUPPRESS)  # internal: the crashing first attempt
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = GPU_JSON if args.device == "cuda" else Path(tempfile.mkdtemp(prefix="gpu_check_")) / "cpu.json"
    if args.device == "cpu" and args.out.resolve() == GPU_JSON.resolve():
        ap.error(f"--device cpu never writes {GPU_JSON.relative_to(REPO)}: that file holds GPU figures")
    return args


def set_env(device: str) -> None:
    """Offline, quiet, and for the CPU mode DeepSpeed's CPU accelerator even where a GPU is visible
    (select_ds_accelerator would pick cuda); children inherit it."""
    for k, v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    if device == "cpu":
        os.environ["DS_ACCELERATOR"] = "cpu"


def has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def selected(args: argparse.Namespace) -> tuple[Shape, tuple[Stage, ...]]:
    shape, stages = SHAPES[args.device], STAGES[args.device]
    if args.max_steps is not None:
        shape = replace(shape, steps=args.max_steps)
    if args.stages:
        want = [s.strip() for s in args.stages.split(",") if s.strip()]
        unknown = sorted(set(want) - {s.name for s in stages})
        if unknown:
            raise SystemExit(f"gpu_check: unknown stage(s) {unknown}; {args.device} has {[s.name for s in stages]}")
        stages = tuple(s for s in stages if s.name in want)
    return shape, stages


def run_all(c: Checks, args: argparse.Namespace, work: Path) -> dict:
    """Every stage of the mode on one dataset and one set of model folders."""
    shape, stages = selected(args)
    figures: dict = {**versions(args.device), **{f"shape_{k}": v for k, v in asdict(shape).items()}}
    ds = build_dataset(shape)
    t0 = time.perf_counter()
    folders = build_backbones(ds, shape, work)
    figures.update(build_s=time.perf_counter() - t0, n_meds=ds.n_meds, stages=",".join(s.name for s in stages))
    for stage in stages:
        figures.update(run_stage(c, args, ds, shape, stage, folders, work))
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_env(args.device)
    skip_data_init_without_pyarrow()
    if args.child:
        return child_main(json.loads(args.child))
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("FAIL cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
        return 1
    c, t0 = Checks(), time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check_work_")))
        try:
            figures = run_all(c, args, work)
        except Exception as e:  # outside any one run (dataset, model build): still one line
            traceback.print_exc()
            c.check(False, f"setup: {type(e).__name__}: {e}")
            figures = {"device": args.device}
    figures.update(wall_s=time.perf_counter() - t0, checks_failed=len(c.failures), failures=" | ".join(c.failures))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    print(f"[gpu_check] wrote {args.out} ({figures['wall_s']:.0f} s)")
    if c.failures:
        print(f"[gpu_check] {len(c.failures)} check(s) failed:\n" + "\n".join(f"FAIL {x}" for x in c.failures))
        return 1
    print("[gpu_check] all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
