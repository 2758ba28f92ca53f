"""`leader study plan`'s resource section: will each teacher fit its GPUs, and what will the study
cost in GPU-hours, answered before a GPU is spent.

Memory per GPU = model states + activations + a runtime reserve, every term printed.
- Model states. DeepSpeed's own estimators (`estimate_zero2_model_states_mem_needs`,
  `estimate_zero3_model_states_mem_needs`) assume FULL fine-tuning: every parameter trainable,
  each with an fp16 copy, fp16 + fp32 grads, an fp32 master and two Adam moments (2 + 18 bytes).
  LEADER trains only LoRA + the head on a FROZEN base, so the estimators get the trainable
  parameters only, and the base is stated here: one fp16 copy (DeepSpeed casts every parameter
  to fp16), replicated under ZeRO-2, sharded /world under ZeRO-3 plus what ZeRO-3 gathers (up
  to stage3_max_live_parameters). Fed all 6.6 B parameters of LLaMA-7B they would book ~14 GiB
  of optimizer state per GPU (on 8) that never exists. ZeRO's gradient-reduction buckets
  (reduce_bucket_size, twice with overlap_comm) are in neither; they come from the run's config.
- Activations: the bytes autograd keeps for backward, counted as Korthikanti et al. 2022
  ("Reducing Activation Recomputation in Large Transformer Models", Eq. 1) count them, redone
  for LLaMA/Qwen2 blocks: RMSNorm keeps its input in fp32 (2 x 4h), q/k/v input, Q, K, V,
  attention output and MLP input (6h in fp16), SwiGLU keeps gate, up, SiLU output and product
  (4i); LoRA dropout > 0 keeps a dropped copy + mask per adapted Linear instead of the shared
  input; SDPA (transformers' default) keeps no s^2 scores, only its additive mask. Checked to
  0.1 % against saved-tensor hooks on fp16 LLaMA blocks with and without LoRA dropout, and as an
  upper bound (within 25 %) of a step's peak (tests/unit/test_budget.py). Encoders: Eq. 1.
Parameter counts come from the backbone's config built on the meta device: no weights are read.
torch, transformers and deepspeed are imported inside functions: `study validate` stays torch-free.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leader.config.teacher import TeacherTrainConfig as Cfg
    from leader.study.spec import DatasetSpec, StudySpec, TeacherResourceSpec

GIB = 2**30
DEFAULT_N_MEDS = 300  # |meds| before the dataset is prepared (ATC-3 vocabularies of MIMIC are ~150-200)
RESERVE_GIB = 1.0  # CUDA context, cuBLAS workspace, allocator fragmentation
CONFIG_FIELDS = ("workers", "batch_size", "grad_accum", "max_length", "lora_rank", "eval_batch_size")
CONFIG_FIELDS += ("gradient_checkpointing", "cpu_offload")
# Published configs, used when the backbone's folder is not on this machine (the usual laptop case):
# name -> (transformers family, hidden, intermediate, layers, heads = KV heads, vocab). Qwen1's config.json
# says intermediate_size 22016 / 11008: its w1 + w2 halves together; a Qwen2Config (what transformers
# loads; the same shapes as Qwen1.5) takes one half, 11008 / 5504, and adds q/k/v biases.
PUBLISHED = {
    "llama-7b": ("llama", "published LLaMA-7B config", 4096, 11008, 32, 32, 32000),
    "qwen-7b": ("qwen2", "published Qwen-7B config as a Qwen2Config", 4096, 11008, 32, 32, 151936),
    "qwen-1.8b": ("qwen2", "published Qwen-1.8B config as a Qwen2Config", 2048, 5504, 24, 16, 151936),
}


@dataclass
class Arch:
    """A backbone's shape and parameter counts (the base is frozen; LoRA + head train)."""

    name: str
    source: str
    kind: str  # decoder | encoder
    attn: str  # transformers' attention implementation (sdpa keeps no s^2 scores)
    hidden: int
    layers: int
    heads: int
    intermediate: int
    base: int  # backbone parameters
    matmul: int  # Linear weights: the N of 2N FLOPs per token
    largest: int  # largest module's own parameters (DeepSpeed's ZeRO-3 gather unit)
    lora: int
    lora_modules: int
    head: int = 0

    @property
    def trainable(self) -> int:
        return self.lora + self.head


def backbone_config(name: str, path: str | None = None) -> tuple:
    """(transformers config, where it came from, LoRA targets, kind): the backbone's own
    config.json when its folder resolves (tiny models are built first), else the published one."""
    from transformers import AutoConfig, LlamaConfig, Qwen2Config

    from leader.errors import CheckpointError
    from leader.teacher.backbones import _LARGE, DECODER_TARGETS, resolve_backbone

    try:
        spec = resolve_backbone(name, path)
        folder = spec.materialize()
        cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        return cfg, f"{folder}/config.json", spec.lora_targets, spec.kind
    except (CheckpointError, OSError, ValueError):
        if name not in PUBLISHED:
            raise
        family, what, h, i, n_layers, heads, vocab = PUBLISHED[name]
        cfg = (LlamaConfig if family == "llama" else Qwen2Config)(
            hidden_size=h, intermediate_size=i, num_hidden_layers=n_layers, num_attention_heads=heads,
            num_key_value_heads=heads, vocab_size=vocab,
        )  # fmt: skip
        env = _LARGE[name][0]
        why = "has no loadable config.json" if path or os.environ.get(env) else "unset"
        where = f"${env}" if not path else "backbone_path"
        return cfg, f"{what} ({where} {why})", DECODER_TARGETS, "decoder"


@functools.lru_cache(maxsize=16)
def arch(name: str, rank: int, path: str | None = None) -> Arch:
    """A registry backbone's counts at LoRA rank `rank` (cached: plan asks once per dataset)."""
    config, source, targets, kind = backbone_config(name, path)
    return count_params(config, targets, kind, rank, name, source)


def count_params(config, targets, kind: str, rank: int, name: str = "", source: str = "") -> Arch:
    """Counts from the model built on the meta device (no weights read); LoRA as peft places it:
    r x (in + out) for every Linear whose dotted name ends in a target."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(config)
    matmul = lora = n = 0
    for mname, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            matmul += m.weight.numel()
            if any(mname == t or mname.endswith("." + t) for t in targets):
                lora, n = lora + rank * (m.in_features + m.out_features), n + 1
    c = model.config
    return Arch(
        name=name,
        source=source,
        kind=kind,
        attn=str(getattr(c, "_attn_implementation", None) or "eager"),
        hidden=c.hidden_size,
        layers=c.num_hidden_layers,
        heads=c.num_attention_heads,
        intermediate=c.intermediate_size,
        base=sum({id(p): p.numel() for p in model.parameters()}.values()),
        matmul=matmul,
        largest=max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()),
        lora=lora,
        lora_modules=n,
    )


def with_head(a: Arch, n_meds: int) -> Arch:
    """The Linear(hidden, |meds|) head added to the trainable count."""
    return Arch(**{**asdict(a), "head": a.hidden * n_meds + n_meds})


# ----------------------------------------------------------------------------- memory
def model_states(a: Arch, ds: dict, world: int, e: int) -> dict:
    """Bytes per GPU: frozen base (stated here), LoRA + head (DeepSpeed's estimator) and ZeRO's
    reduction buckets, for the DeepSpeed config `ds` on `world` ranks; e = bytes per element."""
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):  # its logger prints to the stdout it sees at import
        from deepspeed.runtime.zero.config import DeepSpeedZeroConfig  # (would corrupt `plan --json`)

    z = DeepSpeedZeroConfig(**ds.get("zero_optimization", {}))
    off_opt = z.offload_optimizer is not None and str(z.offload_optimizer.device) != "none"
    off_par = z.offload_param is not None and str(z.offload_param.device) != "none"
    if z.stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        # largest trainable module: the head (a LoRA A/B matrix is smaller)
        _, trainable, _ = estimate_zero3_model_states_mem_needs(a.trainable, max(a.head, 1), world, 1, off_opt, off_par)
        frozen = 0 if off_par else e * a.base / world
        gathered = e * max(a.largest, min(int(z.max_live_parameters), a.base))
        buckets = e * z.reduce_bucket_size if z.contiguous_gradients else 0
    else:
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        _, trainable = estimate_zero2_model_states_mem_needs(a.trainable, world, 1, off_opt)
        frozen, gathered = e * a.base, 0
        buckets = e * z.reduce_bucket_size * (2 if z.overlap_comm else 1) if z.contiguous_gradients else 0
    parts = {"frozen_base": frozen, "zero3_gathered": gathered, "trainable": trainable, "buckets": buckets}
    return {"stage": int(z.stage), "offload": off_opt, **parts, "total": sum(parts.values())}


def _layer_per_token(a: Arch, e: int, dropout: bool, r: int, mask: int = 1) -> float:
    """Bytes one block keeps for backward per (position x sequence), scores excluded. With LoRA
    dropout, q/k/v, o, gate/up and down each keep a dropped copy (e) and a mask (CUDA: bool)."""
    h, i = a.hidden, a.intermediate
    if a.kind == "encoder":
        return 34 * h * e / 2  # Korthikanti Eq. 1 (fp16), its 5as/h term in _scores
    if dropout:
        return h * (8 + 10 * e + 6 * mask) + i * (4 * e + mask) + 7 * e * r
    return h * (8 + 6 * e) + i * 4 * e + 7 * e * r


def _scores(a: Arch, s: int, e: int) -> float:
    """Attention bytes per sequence per block that scale with s^2: SDPA / flash keep no scores, only
    the additive mask they build from the boolean padding mask (e·s²) and the logsumexp (4·a·s)."""
    if a.kind == "encoder":
        return 5 * a.heads * s * s * e / 2
    if a.attn in ("sdpa", "flash_attention_2", "flash_attention_3"):
        return e * s * s + 4 * a.heads * s
    return a.heads * s * s * (4 + (e if e != 4 else 0))  # fp32 softmax + its copy in the compute dtype


def activations(a: Arch, cfg: Cfg, e: int, n_meds: int) -> dict:
    """Training activations at micro batch b x max_length s, and the eval forward's peak."""
    b, s, be, h, i = cfg.batch_size, cfg.max_length, cfg.eval_batch_size, a.hidden, a.intermediate
    layer = s * b * _layer_per_token(a, e, cfg.lora_dropout > 0, cfg.lora_rank) + b * _scores(a, s, e)
    if cfg.gradient_checkpointing:
        kept = {"layer_inputs": a.layers * e * s * b * h, "recomputed_layer": layer}
    else:
        kept = {"layers": a.layers * layer}
    train = {
        **kept,
        "final_norm_mask_head": s * b * (4 + e) * h + 2 * b * s * s + 8 * b * (h + n_meds),
        "backward_transients": s * b * e * (2 * h + 3 * i),  # gradients in flight
    }
    ev = s * be * e * (8 * h + 3 * i) + be * _scores(a, s, e) + 2 * be * s * s  # one block's live set
    return {"train": train, "train_total": sum(train.values()), "eval": ev}


def flops_per_token(a: Arch, cfg: Cfg, train: bool) -> float:
    """Frozen base, no weight grads: forward 2N, backward 2N (activation grads only), recompute
    2N with checkpointing; attention matmuls 4·L·s·h per forward (x2 in backward); LoRA 6-8x."""
    att = 4 * a.layers * cfg.max_length * a.hidden
    if not train:
        return 2 * a.matmul + att
    ck = cfg.gradient_checkpointing
    return (6 if ck else 4) * a.matmul + (4 if ck else 3) * att + (8 if ck else 6) * a.lora


def teacher_steps(cfg: Cfg, world: int, n_train: int | None) -> tuple[int | None, str]:
    """Optimizer steps as leader.teacher.schedule.total_steps counts them, and how they were known."""
    gb = cfg.batch_size * cfg.grad_accum * world
    if n_train:
        t = (n_train // gb) * cfg.epochs
        how = f"{cfg.epochs} epochs x {n_train} train samples // {gb}"
        return (cfg.max_steps, f"max_steps, before {how}") if cfg.max_steps and cfg.max_steps < t else (t, how)
    if cfg.max_steps:
        return cfg.max_steps, "max_steps; an upper bound until the dataset is prepared"
    return None, "unknown: no max_steps and the dataset is not prepared"


def inference_prompts(cfg: Cfg, steps: int, world: int, n: dict) -> int:
    """Frozen pass (LP stage), validation passes, test, and the features stage over all splits."""
    tr, va, te = n["train"], n["val"], n["test"]
    per_epoch = max(1, tr // (cfg.batch_size * cfg.grad_accum * world))
    frozen = tr + va + te * cfg.eval_test if cfg.lp_epochs else min(256, tr)
    every = range(cfg.eval_every, steps + 1, cfg.eval_every) if cfg.eval_every else ()
    evals = len({*range(per_epoch, steps + 1, per_epoch), *every, steps})  # the trainer's validation steps
    return frozen + evals * va + te * cfg.eval_test + tr + va + te


def dataset_facts(d: DatasetSpec, cfg: Cfg | None = None) -> dict:
    """|meds| and split sizes from the prepared dataset in the cache; else |meds| assumed."""
    from leader.paths import cache_dir
    from leader.study.keys import data_cache_key

    key = data_cache_key(d)
    folder = cache_dir() / "datasets" / f"{d.source}-{key}" if key else None
    if folder is None or not (folder / "meta.json").is_file():
        k = d.prepare.top_k_med
        how = f"prepare.top_k_med {k}" if k else "assumed: dataset not prepared"
        return {"prepared": None, "n_meds": k or DEFAULT_N_MEDS, "n_meds_from": how}
    import pandas as pd

    meta = json.loads((folder / "meta.json").read_text())
    pat = pd.read_parquet(folder / "patients.parquet", columns=["patient_id", "split"])
    vis = pd.read_parquet(folder / "visits.parquet", columns=["patient_id"])
    counts = vis.merge(pat, on="patient_id")["split"].value_counts()
    n = {s: int(counts.get(s, 0)) for s in ("train", "val", "test")}
    if cfg is not None and cfg.max_train_samples:
        n["train"] = min(n["train"], cfg.max_train_samples)
    if cfg is not None and cfg.max_eval_samples:
        n["val"], n["test"] = min(n["val"], cfg.max_eval_samples), min(n["test"], cfg.max_eval_samples)
    n_meds = len(meta["vocabs"]["med"]["codes"])
    return {"prepared": str(folder), "n_meds": n_meds, "n_meds_from": "from the dataset", **n}


def teacher_config(spec: StudySpec, backbone: str) -> Cfg:
    """TeacherTrainConfig as the teacher stage runs it (one function: plan and run agree): the
    study's validated options, workers / use_gpu / CPUs from teacher_resources where unset."""
    from leader.config.teacher import run_config

    tr = spec.teacher_resources
    unset = {"workers": tr.num_workers, "use_gpu": tr.gpu_per_worker > 0, "cpus_per_worker": tr.cpu_per_worker}
    return run_config(spec.teacher.options, backbone, **unset)


# ----------------------------------------------------------------------------- the section
def teacher_memory(a: Arch, cfg: Cfg, res: TeacherResourceSpec, n_meds: int) -> dict:
    """GiB per GPU of one teacher fine-tuning (training step and eval forward) against the GPU."""
    from leader.teacher.deepspeed_config import build_ds_config

    ds = build_ds_config(cfg, cfg.workers, cuda=True)  # the DeepSpeed config the run would use
    e = 2 if ds["fp16"].get("enabled") else 4
    st, act = model_states(a, ds, cfg.workers, e), activations(a, cfg, e, n_meds)
    need = (st.pop("total") + max(act["train_total"], act["eval"])) / GIB + RESERVE_GIB
    cap = res.gpu_memory_gb * min(1.0, res.gpu_per_worker)
    return {
        "zero_stage": st.pop("stage"),
        "optimizer_offload": bool(st.pop("offload")),  # a flag, not bytes
        "dtype_bytes": e,
        "states_gib": {k: v / GIB for k, v in st.items()} | {"total": sum(st.values()) / GIB},
        "activations_gib": {k: v / GIB for k, v in act["train"].items()}
        | {"train_total": act["train_total"] / GIB, "eval": act["eval"] / GIB},
        "binds": "eval forward" if act["eval"] > act["train_total"] else "training step",
        "reserve_gib": RESERVE_GIB,
        "need_gib": need,
        "capacity_gib": cap,
        "fits": need <= cap,
    }


def teacher_cost(a: Arch, cfg: Cfg, res: TeacherResourceSpec, facts: dict) -> dict:
    """GPU-hours of fine-tuning (tokens x FLOPs/token at peak x MFU) and of teacher inference."""
    steps, how = teacher_steps(cfg, cfg.workers, facts.get("train"))
    rate = res.gpu_peak_tflops * 1e12 * res.assumed_mfu * 3600  # FLOP per GPU-hour
    tokens = steps * cfg.batch_size * cfg.grad_accum * cfg.workers * cfg.max_length if steps else None
    prompts = inference_prompts(cfg, steps, cfg.workers, facts) if steps and "train" in facts else None
    per_prompt = cfg.max_length * flops_per_token(a, cfg, False) / rate
    return {
        "gpus": cfg.workers * res.gpu_per_worker,
        "steps": steps,
        "steps_from": how,
        "tokens": tokens,
        "flops_per_token": flops_per_token(a, cfg, True),
        "train_gpu_h": tokens * flops_per_token(a, cfg, True) / rate if tokens else None,
        "inference_prompts": prompts,
        "inference_gpu_h": prompts * per_prompt if prompts is not None else None,
        "inference_gpu_h_per_10k": 1e4 * per_prompt,
    }


def needs_budget(spec: StudySpec) -> bool:
    """A GPU-trained teacher or GPU student trials: else the plan stays torch-free and unchanged."""
    gpu_teacher = spec.teacher is not None and spec.teacher.train and spec.teacher_resources.gpu_per_worker > 0
    return gpu_teacher or spec.resources.gpu > 0


def budget(spec: StudySpec, study_dir: Path, rows: list[dict]) -> dict:
    """The resource section: per (dataset, teacher backbone) memory + cost, student trials, totals."""
    todo = {r["unit"] for r in rows if r["action"] != "reuse"}
    teachers = []
    if spec.teacher is not None and spec.teacher.train and spec.teacher_resources.gpu_per_worker > 0:
        for d in spec.datasets:
            for bb in spec.teacher.backbones:
                if bb in spec.teacher.checkpoints or f"{d.name}/{bb}" in spec.teacher.checkpoints:
                    continue  # reused checkpoint: nothing trains
                cfg = teacher_config(spec, bb)
                facts = dataset_facts(d, cfg)
                a = with_head(arch(bb, cfg.lora_rank, cfg.backbone_path), facts["n_meds"])
                res = spec.teacher_resources
                teachers.append(
                    {"dataset": d.name, "backbone": bb, "arch": asdict(a), "facts": facts}
                    | {"config": {k: getattr(cfg, k) for k in CONFIG_FIELDS}}
                    | {"to_run": f"teacher/{d.name}/{bb}" in todo}
                    | teacher_memory(a, cfg, res, facts["n_meds"])
                    | teacher_cost(a, cfg, res, facts)
                )
    from leader.study.plan import student_cost

    students = student_cost(spec, study_dir, rows)
    known = [((t["train_gpu_h"] or 0.0) + (t["inference_gpu_h"] or 0.0), t["to_run"]) for t in teachers]
    return {
        "teachers": teachers,
        "students": students,
        "total_gpu_h": sum(h for h, _ in known) + students["gpu_h"],
        "total_gpu_h_to_run": sum(h for h, run in known if run) + students["gpu_h_to_run"],
        "unknown": [f"{t['dataset']}/{t['backbone']}" for t in teachers if t["inference_gpu_h"] is None],
        "refused": [f"{t['dataset']}/{t['backbone']}" for t in teachers if not t["fits"] and t["to_run"]],
        "assumptions": assumptions(spec),
    }


def assumptions(spec: StudySpec) -> list[str]:
    """Every assumption behind the numbers, printed under them (they are estimates, not measurements)."""
    r = spec.teacher_resources
    return [
        f"GPU: {r.gpu_memory_gb:g} GiB (teacher_resources.gpu_memory_gb, read as GiB), {r.gpu_peak_tflops:g} TFLOP/s "
        f"peak x assumed MFU {r.assumed_mfu:g} (teacher_resources); one DeepSpeed rank per teacher worker",
        "model states: frozen base in the compute dtype (fp16: 2 B/param; replicated under ZeRO-2, /world under "
        "ZeRO-3 plus what ZeRO-3 gathers); LoRA + head through DeepSpeed's estimate_zero{2,3}_model_states_mem_needs "
        "(2 + 18 B/param, sharded as the stage says); ZeRO reduction buckets from the DeepSpeed config",
        "activations: LLaMA-style block keeps (8 + 6e)h + 4e·i (+7e·r) bytes per token, e = 2 (fp16), "
        "(8 + 10e + 6)h + (4e + 1)i with LoRA dropout; SDPA keeps no s^2 scores, only its e·s² mask (eager: "
        "a·s²·(4+e)); checkpointing keeps e·h per token per layer plus one recomputed layer; + backward "
        "transients e(2h + 3i); eval forward e(8h + 3i) at eval_batch_size",
        f"runtime reserve {RESERVE_GIB:g} GiB per GPU (CUDA context, cuBLAS workspace, fragmentation)",
        "tokens: every prompt counted at max_length (an upper bound: prompts are padded to their micro batch's "
        "longest, never beyond max_length)",
        "FLOPs/token, frozen base: train 6N (4N without checkpointing: forward 2N + activation grads 2N, no weight "
        "grads, + recompute 2N) + 16·L·s·h attention (12 without) + 8·N_lora; inference 2N + 4·L·s·h; "
        "N = Linear weights of the backbone",
        "inference: LP frozen pass + validation (every eval_every steps and at epoch ends) + test + the features "
        "stage over all splits, at the same MFU",
        "student trials: the plan's sweep + ablation/sensitivity counts x seconds per trial x resources.gpu; "
        "tuned baselines take the same resources (cpu, gpu)",
    ]
