"""Fine-tuning LEADER(T) with Ray Train (TorchTrainer) + DeepSpeed ZeRO-2/3.

Why this shape:
- DeepSpeed gets a torch optimizer, never a DeepSpeed "optimizer" block (that compiles a C++
  Adam op, ~65 s on CPU); on CPU it runs over gloo with DS_ACCELERATOR=cpu, and the one comm op
  it compiles is cached in $TORCH_EXTENSIONS_DIR.
- Every worker reads the same seeded global batch order and takes its slice, so a run on W
  workers with per-worker batch B takes the same optimizer steps as one process with batch W*B
  (`train_teacher_local`, the reference the tests compare against).
- Checkpoints are DeepSpeed's own (each rank writes its ZeRO shard, frozen base excluded) in
  one Ray Train checkpoint folder per step; after a worker dies, FailureConfig restarts the
  group and the loop resumes from `ray.train.get_checkpoint()` at the saved step.
- Validation/test inference is sharded over ranks with equal batch counts (ZeRO-3 forwards are
  collective) and gathered on rank 0.

Contract: `TeacherTrainConfig`, `train_teacher(ds, cfg, storage_path, name=None) ->
TeacherTrainResult(checkpoint_dir, metrics)`; checkpoint_dir holds `save_teacher` output.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from leader.errors import ConfigError, LeaderError, read_json
from leader.paths import repo_root


class TeacherTrainConfig(BaseModel):
    backbone: str = Field(
        "tiny-llama",
        description="Registry name (llama-7b, qwen-7b, qwen-1.8b, tiny-llama, tiny-qwen2, minilm, smollm2-135m) "
        "or a local checkpoint folder.",
    )
    backbone_path: str | None = Field(
        None, description="Explicit local folder for a large backbone (else its $LEADER_*_PATH env var)."
    )
    workers: int = Field(2, ge=1, description="Ray Train workers (one process each; one GPU each when use_gpu).")
    use_gpu: bool = Field(False, description="Give each worker a GPU (NCCL); False = CPU/gloo.")
    zero_stage: Literal[2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    deepspeed_config: str | None = Field(
        None,
        description="DeepSpeed JSON (default: cluster/deepspeed/zero{2,3}_v100_fp16.json on GPUs, "
        "zero{2,3}_cpu.json on CPU); batch sizes, grad accumulation, precision and offload are then set from "
        "this config's fields.",
    )
    cpus_per_worker: float = Field(1, gt=0, description="CPUs Ray reserves for each training worker.")
    fp16: bool = Field(False, description="fp16 mixed precision with loss scaling (GPU only).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Backbone number format (leader.precision): auto = bf16 autocast on a CPU with AVX512-BF16/AMX, "
        "else fp32; on GPUs the fp16 flag (DeepSpeed loss scaling). Master weights, head and loss stay fp32.",
    )
    cpu_offload: bool = Field(False, description="Offload optimizer state (and ZeRO-3 params) to CPU memory.")
    epochs: int = Field(1, ge=1, description="Passes over the training split.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (across epochs).")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate (AdamW) of the LoRA weights.")
    head_lr_mult: float = Field(
        10.0,
        gt=0,
        description="The head's LR = lr x this (own parameter group): a fresh head "
        "must grow far faster than LoRA's small updates.",
    )
    head_init: Literal["prior", "default"] = Field(
        "prior",
        description="prior: head bias = logit(train frequency of each "
        "drug), weights 0; default: nn.Linear's init (p ~ 0.5 everywhere).",
    )
    lp_epochs: int = Field(
        0,
        ge=0,
        description="LP-FT: epochs of a linear probe on cached frozen features before "
        "LoRA fine-tuning (0 = off). Costs one forward pass over train + val.",
    )
    lp_lr: float = Field(1e-2, gt=0, description="Adam LR of the linear-probe stage.")
    lp_weight_decay: float = Field(0.0, ge=0, description="Weight decay of the linear-probe stage.")
    standardize: bool | None = Field(
        None,
        description="Fixed standardisation of the pooled state before the head, from "
        "frozen train features (default: on when lp_epochs > 0).",
    )
    keep_best: bool = Field(
        True, description="Save the best-validation-PRAUC state (the probe included), not the last."
    )
    eval_every: int = Field(0, ge=0, description="Also validate every N optimizer steps (0 = epoch ends only).")
    require_learning: bool = Field(
        True,
        description="Fail the run when the final training loss is not below the "
        "prior-level BCE (the teacher learned nothing about patients).",
    )
    length_buckets: bool = Field(
        True,
        description="Batch prompts of similar token length together across the epoch (shuffled buckets): less "
        "padding computed. False = random global batches (each still sorted into micro batches).",
    )
    fit_prompts: bool = Field(
        True,
        description="Drop the OLDEST whole past visits until a prompt fits max_length "
        "tokens (else the tokenizer cuts mid-visit on the left).",
    )
    progress_every_s: float = Field(15.0, ge=0, description="Worker 0 prints a progress line at most this often.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(4, ge=1, description="Micro batch per worker.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    grad_clip: float = Field(1.0, ge=0, description="Global gradient norm clip (0 = off).")
    max_length: int = Field(256, ge=8, description="Max prompt tokens (see fit_prompts; the rest is cut on the LEFT).")
    token_budget: int | None = Field(
        None, description="Word budget passed to build_prompts (drops oldest past visits first)."
    )
    schedule: Literal["cosine", "linear"] = Field("cosine", description="LR decay after warmup.")
    warmup: float = Field(0.0, ge=0, description="Warmup: fraction of total steps if < 1, else a step count.")
    checkpoint_every: int = Field(
        0, ge=0, description="Report a Ray Train checkpoint every N optimizer steps (0 = only at epoch ends)."
    )
    num_to_keep: int = Field(2, ge=1, description="Checkpoints kept by Ray Train.")
    seed: int = Field(0, description="Seed of init, LoRA, head and data order.")
    lora_rank: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the LoRA branch (the authors' release uses 0.1)."
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute backbone activations in backward: needed for 7B models with long prompts on "
        "32 GB V100s.",
    )
    max_failures: int = Field(
        3,
        ge=-1,
        description="Ray Train worker-group restarts after a failure (resume from the latest checkpoint); "
        "-1 = unlimited. Each preemption of a spot GPU node costs one.",
    )
    max_nonfinite_steps: int = Field(
        10,
        ge=1,
        description="Consecutive optimizer steps whose loss is NaN/inf (fp16 overflow in the forward) before the "
        "run fails; each such step is skipped on every rank and counted.",
    )
    max_train_samples: int | None = Field(
        None, ge=1, description="Use only the first N training samples (smoke tests)."
    )
    max_eval_samples: int | None = Field(None, ge=1, description="Use only the first N val/test samples.")
    eval_batch_size: int = Field(16, ge=1, description="Batch size of validation/test inference.")
    eval_test: bool = Field(True, description="Compute final test metrics by group.")
    fail_at_step: int | None = Field(
        None,
        description="Fault injection for tests: the last worker exits at this step on the first attempt "
        "(no checkpoint yet restored).",
    )

    @property
    def uses_standardization(self) -> bool:
        return self.lp_epochs > 0 if self.standardize is None else bool(self.standardize)

    def ds_config_path(self) -> Path:
        if self.deepspeed_config:
            p = Path(self.deepspeed_config)
            return p if p.is_absolute() else repo_root() / p
        kind = "v100_fp16" if self.use_gpu else "cpu"  # the GPU files carry the tuned ZeRO buckets
        return repo_root() / "cluster" / "deepspeed" / f"zero{self.zero_stage}_{kind}.json"


@dataclass
class TeacherTrainResult:
    checkpoint_dir: Path
    metrics: dict


# ----------------------------------------------------------------------------- shared pieces
def build_ds_config(cfg: TeacherTrainConfig, world: int, cuda: bool) -> dict:
    """Load any DeepSpeed JSON and make batch sizes / precision / offload agree with `cfg`."""
    ds = read_json(cfg.ds_config_path(), ConfigError, what="deepspeed_config")
    ds = {k: v for k, v in ds.items() if not k.startswith("_") and k not in ("optimizer", "scheduler")}
    ds["train_micro_batch_size_per_gpu"] = cfg.batch_size
    ds["gradient_accumulation_steps"] = cfg.grad_accum
    ds["train_batch_size"] = cfg.batch_size * cfg.grad_accum * world
    ds["gradient_clipping"] = cfg.grad_clip
    zo = dict(ds.get("zero_optimization", {}))
    if cfg.deepspeed_config is None or "stage" not in zo:
        zo["stage"] = cfg.zero_stage
    if cfg.cpu_offload:
        zo["offload_optimizer"] = {"device": "cpu", "pin_memory": cuda}
        if zo["stage"] == 3:
            zo["offload_param"] = {"device": "cpu", "pin_memory": cuda}
    ds["zero_optimization"] = zo
    if zo.get("offload_optimizer"):
        # we pass a torch AdamW (DeepSpeed's CPU Adam compiles a C++ op); DeepSpeed refuses any
        # optimizer but its own under offload unless told otherwise
        ds["zero_force_ds_cpu_optimizer"] = False
    fp16 = cuda and resolve_precision(cfg, "cuda") == "fp16"
    ds["fp16"] = {**ds.get("fp16", {}), "enabled": fp16} if fp16 else {"enabled": False}
    ds.setdefault("bf16", {"enabled": False})
    ds["steps_per_print"] = ds.get("steps_per_print", 10**9)
    return ds


def _build_model(cfg: TeacherTrainConfig, n_meds: int, backbone_path: str | None, corpus, *, train: bool = True):
    """The teacher as `cfg` describes it, the same in every worker, the ZeRO-3 save copy and the
    single-process reference run."""
    from leader.models.teacher import build_teacher, enable_gradient_checkpointing

    model = build_teacher(
        cfg.backbone,
        n_meds,
        cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        seed=cfg.seed,
        backbone_path=backbone_path,
        corpus=corpus,
    )
    if train and cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    dev = "cuda" if cfg.use_gpu else "cpu"
    model.set_precision(resolve_precision(cfg, dev), dev)
    return model


def resolve_precision(cfg: TeacherTrainConfig, device_type: str) -> str:
    from leader.precision import resolve

    return resolve(cfg.precision, device_type, fp16=cfg.fp16)


def lr_lambda(cfg: TeacherTrainConfig, total_steps: int):
    warm = int(cfg.warmup if cfg.warmup >= 1 else round(cfg.warmup * total_steps))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / max(1, warm)
        frac = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, frac))) if cfg.schedule == "cosine" else max(0.0, 1 - frac)

    return f


def global_batches(n: int, global_batch: int, seed: int, epoch: int, lens=None) -> list[np.ndarray]:
    """Seeded order of one epoch, cut into full global batches (a random remainder is dropped).
    With `lens` (token lengths) the batches are length buckets: the kept samples sorted by length,
    cut into global batches, and the batches shuffled, so each step pads to a length close to its
    prompts' (sorting inside a random global batch still pads every step to its longest prompt)."""
    rng = np.random.default_rng(seed + 1000 * epoch)
    perm = rng.permutation(n)[: (n // global_batch) * global_batch]
    if lens is not None:
        perm = perm[np.argsort(np.asarray(lens)[perm], kind="stable")]
    batches = [perm[i * global_batch : (i + 1) * global_batch] for i in range(n // global_batch)]
    return [batches[i] for i in rng.permutation(len(batches))] if lens is not None else batches


def token_lengths(tokenizer, prompts: list[str], max_length: int) -> np.ndarray:
    """Tokens each prompt costs (cut at max_length, as the batches are)."""
    ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    return np.minimum(np.array([len(x) for x in ids]), max_length)


def padding_share(batches: list[np.ndarray], lens: np.ndarray, micro: int) -> float:
    """Share of the tokens computed that are padding, over micro batches of `micro` prompts taken
    in order from each (length-sorted) global batch."""
    pad = total = 0
    for gb in batches:
        for i in range(0, len(gb), micro):
            m = lens[gb[i : i + micro]]
            pad, total = pad + int(m.max() * len(m) - m.sum()), total + int(m.max() * len(m))
    return pad / total if total else 0.0


def total_steps(cfg: TeacherTrainConfig, n_train: int, world: int) -> int:
    per_epoch = n_train // (cfg.batch_size * cfg.grad_accum * world)
    if per_epoch == 0:
        raise ConfigError(
            f"batch_size: {n_train} training samples < one global batch ({cfg.batch_size}x{cfg.grad_accum}x{world})"
        )
    t = per_epoch * cfg.epochs
    return min(t, cfg.max_steps) if cfg.max_steps else t


def _tok(tok, prompts: list[str], max_length: int, device=None):
    """Token ids and mask (B, L) on `device`: DeepSpeed moves the model, never the inputs."""
    enc = tok(prompts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    if device is None:
        return enc["input_ids"], enc["attention_mask"]
    return enc["input_ids"].to(device, non_blocking=True), enc["attention_mask"].to(device, non_blocking=True)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _prepare_inputs(ds, cfg: TeacherTrainConfig, tokenizer=None) -> dict:
    """Prompts, labels and groups per split; with `fit_prompts`, prompts are fitted to
    `tokenizer` and `max_length` by dropping the oldest whole visits."""
    from leader.data.prompts import teacher_prompts

    out = {}
    opts = prompt_options(cfg)
    for split in ("train", "val", "test"):
        s = ds.samples(split)
        lim = cfg.max_train_samples if split == "train" else cfg.max_eval_samples
        if lim:
            s = s.iloc[:lim]
        ids = s["sample_id"].to_numpy()
        prompts, dropped = teacher_prompts(ds, ids, tokenizer, **opts)
        out[split] = {
            "ids": ids.tolist(),
            "prompts": prompts,
            "dropped": dropped,
            "labels": ds.labels(ids),
            "groups": s["group"].astype(str).tolist(),
        }
    if not out["train"]["ids"]:
        raise ConfigError(f"dataset {ds.name}: empty training split")
    return out


def prompt_options(cfg: TeacherTrainConfig) -> dict:
    """Saved in the checkpoint's meta, so extraction and latency runs rebuild the same prompts."""
    return {"fit_max_length": cfg.max_length if cfg.fit_prompts else None, "token_budget": cfg.token_budget}


def prompt_stats(data: dict) -> dict:
    """How much history the length limit cost (the study results show it)."""
    d = [x for v in data.values() for x in v["dropped"]]
    return {"prompts": len(d), "prompts_with_dropped_visits": int(sum(x > 0 for x in d)), "visits_dropped": int(sum(d))}


def optimizer_groups(model, cfg: TeacherTrainConfig) -> list[dict]:
    """LoRA at `lr`, the head in its own group at `lr * head_lr_mult`."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("head.")]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    return [
        {"params": lora, "lr": cfg.lr, "name": "lora"},
        {"params": head, "lr": cfg.lr * cfg.head_lr_mult, "name": "head"},
    ]


def init_head(model, cfg: TeacherTrainConfig, y_train: np.ndarray) -> None:
    if cfg.head_init == "prior":
        model.init_head_from_prior(np.asarray(y_train, np.float64).mean(0))


class LearnedNothingError(LeaderError):
    """The teacher's training loss never went below what drug frequencies alone give."""


def check_learning(metrics: dict, cfg: TeacherTrainConfig) -> None:
    """The learned-nothing guard: a teacher at the prior-level BCE distils noise into every
    student downstream, so the stage fails loudly instead of passing its features on."""
    final, prior = metrics.get("final_train_loss"), metrics.get("prior_bce")
    if cfg.require_learning and final is not None and prior is not None and not final < prior:
        raise LearnedNothingError(
            f"teacher {cfg.backbone}: final training loss {final:.4f} is not below the prior-level BCE {prior:.4f} "
            f"(predicting each drug at its training frequency): it learned nothing about the patients. Try a higher "
            f"lr / head_lr_mult, more steps, or lp_epochs > 0 (set require_learning: false to keep it anyway)."
        )


def final_train_loss(losses: list[float]) -> float | None:
    """Mean of the last 10 % of step losses (one step is too noisy to judge); skipped non-finite
    steps are recorded as NaN and left out."""
    finite = [x for x in losses if x is not None and math.isfinite(x)]
    if not finite:
        return None
    k = max(1, len(finite) // 10)
    return float(np.mean(finite[-k:]))


class NonFiniteLossError(LeaderError):
    """Too many consecutive optimizer steps had a NaN/inf loss (fp16 overflow, a broken batch)."""


# ----------------------------------------------------------------------------- worker loop
def _shard_gather(fn, items: list, rank: int, world: int, dist) -> list:
    """Run `fn` on this rank's contiguous slice (equal sizes: ZeRO-3 forwards are collective,
    so the last rank repeats an item rather than run fewer batches) and gather every rank's
    outputs back in `items` order. `fn(list) -> np.ndarray` with one row per item."""
    n = len(items)
    per = math.ceil(n / world) if n else 0
    idx = [min(i, n - 1) for i in range(rank * per, (rank + 1) * per)] if n else []
    mine = (list(range(rank * per, (rank + 1) * per)), fn([items[j] for j in idx]) if idx else None)
    if world == 1:
        return list(mine[1][:n]) if n else []
    gathered = [None] * world
    dist.all_gather_object(gathered, mine)
    out = [None] * n
    for pos, rows in gathered:
        for k, j in enumerate(pos):
            if j < n and rows is not None:
                out[j] = rows[k]
    return out


def _predict(module, prompts: list[str], max_length: int, bs: int, device=None):
    """Sigmoid probabilities of `prompts` (in order), batched by token length."""
    import torch

    from leader.models.teacher import length_buckets

    tok = module.tokenizer
    out = np.zeros((len(prompts), module.cfg.n_meds), np.float32)
    with torch.no_grad():
        for idx in length_buckets(tok, prompts, bs):
            ii, mm = _tok(tok, [prompts[j] for j in idx], max_length, device)
            logits, _ = module(ii, mm)
            out[idx] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def _eval_sharded(engine, prompts, max_length, bs, rank, world, dist):
    engine.eval()
    fn = lambda ps: _predict(engine.module, ps, max_length, bs, engine.device)  # noqa: E731
    rows = _shard_gather(fn, prompts, rank, world, dist)
    engine.train()
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, engine.module.cfg.n_meds), np.float32)


def _group_metrics(y, p, groups, prefix: str) -> dict:
    from leader.metrics import bootstrap_metrics, summarize

    s = summarize(bootstrap_metrics(y, p, np.asarray(groups)))
    return {f"{prefix}_{r.group}_{r.metric}": float(r.mean) for r in s.itertuples()}


def _fit_probe_head(head, cfg: TeacherTrainConfig, H_tr, y_tr, H_va, y_va) -> dict:
    """Rank 0, on a CPU copy of the head: the standardisation of the frozen states, then the
    linear probe on them (LP of LP-FT)."""
    from leader.train.probe import fit_probe

    mean, std = H_tr.mean(0), H_tr.std(0)
    head.set_standardization(mean, std)
    res = None
    if cfg.lp_epochs and H_va is not None:
        res = fit_probe(
            head,
            H_tr,
            y_tr,
            H_va,
            np.asarray(y_va),
            epochs=cfg.lp_epochs,
            lr=cfg.lp_lr,
            weight_decay=cfg.lp_weight_decay,
            seed=cfg.seed,
        )
    return {
        "mean": mean,
        "std": std,
        "head": res.head_state if res else None,
        "probe_val_prauc": res.best_val_prauc if res else None,
        "probe_epoch": res.best_epoch if res else None,
        "probe_history": res.history if res else [],
    }


def _frozen_states(module, cfg: TeacherTrainConfig, data: dict, rank: int, world: int, dist, device) -> dict:
    """Pooled states of the frozen backbone (LoRA still at its zero init) for the prompts the LP
    stage needs, sharded over ranks and computed on the training device."""
    from leader.train.probe import frozen_features

    tr, va, te = data["train"], data["val"], data["test"]
    n_norm = len(tr["prompts"]) if cfg.lp_epochs else min(256, len(tr["prompts"]))
    feats = lambda ps: frozen_features(module, ps, cfg.max_length, cfg.eval_batch_size, device)  # noqa: E731
    want_val = bool(cfg.lp_epochs and va["prompts"])
    want_test = bool(cfg.lp_epochs and cfg.eval_test and te["prompts"])
    if rank == 0:
        n_all = n_norm + len(va["prompts"]) * want_val + len(te["prompts"]) * want_test
        print(
            f"[teacher] frozen pass over {n_all} prompts on {world} worker(s), {device} "
            f"(linear probe: {cfg.lp_epochs} epochs)",
            flush=True,
        )
    return {
        "n_norm": n_norm,
        "H_tr": np.stack(_shard_gather(feats, tr["prompts"][:n_norm], rank, world, dist)),
        "H_va": np.stack(_shard_gather(feats, va["prompts"], rank, world, dist)) if want_val else None,
        "H_te": np.stack(_shard_gather(feats, te["prompts"], rank, world, dist)) if want_test else None,
    }


def _probe_stage(module, cfg: TeacherTrainConfig, data: dict, rank: int, world: int, dist, device, head_state) -> dict:
    """Frozen pass (sharded over ranks, on `device`) -> standardisation -> linear probe, fitted on
    rank 0 on a CPU copy of the head (`head_state`: its current weights) and broadcast, so every
    rank starts fine-tuning from the same head. Returns the fitted norm and head ('mean', 'std',
    'head') and what the checkpoint must remember (probe metrics, probe test probabilities)."""
    import torch

    from leader.metrics import mean_metrics
    from leader.models.teacher import TeacherHead

    tr, te = data["train"], data["test"]
    t0 = time.perf_counter()
    H = _frozen_states(module, cfg, data, rank, world, dist, device)
    out: dict = {"frozen_pass_s": time.perf_counter() - t0, "frozen_pass_device": str(device)}
    payload: list = [None]
    if rank == 0:
        print(f"[teacher] frozen pass done in {out['frozen_pass_s']:.0f} s", flush=True)
        head = TeacherHead(H["H_tr"].shape[1], len(tr["labels"][0]), head_state)
        payload = [
            _fit_probe_head(
                head, cfg, H["H_tr"], np.asarray(tr["labels"])[: H["n_norm"]], H["H_va"], data["val"]["labels"]
            )
        ]
        if payload[0]["head"] is not None:
            head.head.load_state_dict(payload[0]["head"])
        if H["H_te"] is not None:
            with torch.no_grad():
                p_te = torch.sigmoid(head.head_logits(torch.from_numpy(H["H_te"]))).numpy()
            out["probe_test_probs"] = p_te
            out["probe_test_prauc"] = mean_metrics(np.asarray(te["labels"]), p_te)["prauc"]
            payload[0]["probe_test_prauc"] = out["probe_test_prauc"]
        fit = payload[0]
        if fit["probe_val_prauc"] is not None:
            print(
                f"[teacher] linear probe: val PRAUC {fit['probe_val_prauc']:.3f} (epoch {fit['probe_epoch']})",
                flush=True,
            )
    if world > 1:
        dist.broadcast_object_list(payload, src=0)
    got = payload[0]
    out.update({k: got.get(k) for k in ("mean", "std", "head", "probe_val_prauc", "probe_epoch", "probe_history")})
    if got.get("probe_test_prauc") is not None:
        out["probe_test_prauc"] = got["probe_test_prauc"]
    return out


def head_of(state: dict) -> dict:
    """The head's tensors of a trainable state (keys 'weight', 'bias'), e.g. to seed the LP copy."""
    return {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}


def _apply_probe(module, probe: dict) -> None:
    """A plain (single-process) module takes the fitted norm and head directly."""
    module.set_standardization(probe["mean"], probe["std"])
    if probe["head"] is not None:
        module.head.load_state_dict(probe["head"])


class _Progress:
    """One line from worker 0 at most every `every` seconds: never minutes of silence."""

    def __init__(self, total: int, every: float, rank: int):
        self.total, self.every, self.rank = total, every, rank
        self.t0 = self.last = time.perf_counter()
        self.start_step: int | None = None

    def __call__(self, step: int, loss: float, samples_per_step: int, val: float | None, force: bool = False) -> None:
        now = time.perf_counter()
        if self.start_step is None:
            self.start_step, self.t0 = step - 1, now
        if self.rank != 0 or not (force or now - self.last >= self.every):
            return
        self.last = now
        done = step - self.start_step
        rate = done * samples_per_step / max(now - self.t0, 1e-9)
        eta = (self.total - step) * samples_per_step / max(rate, 1e-9)
        vtxt = f" | val PRAUC {val:.3f}" if val is not None else ""
        print(
            f"[teacher] step {step}/{self.total} | loss {loss:.4f} | {rate:.2f} samples/s | "
            f"ETA {eta / 60:.1f} min{vtxt}",
            flush=True,
        )


def _trainable_state(engine) -> dict:
    """Full (gathered under ZeRO-3) copies of the trainable tensors, on CPU; collective."""
    import deepspeed

    names = [n for n, p in engine.module.named_parameters() if p.requires_grad]
    tparams = [p for p in engine.module.parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters(tparams, modifier_rank=None):
        return {n: p.detach().float().cpu().clone() for n, p in zip(names, tparams, strict=False)}


def _load_trainable(engine, state: dict, rank: int) -> None:
    """Put `state` (present on every rank) back into the engine's module. ZeRO-3 partitions the
    parameters, so rank 0 writes inside a gather and DeepSpeed re-partitions on exit; under
    ZeRO-2 every rank holds full parameters and writes its own."""
    import deepspeed
    import torch

    params = dict(engine.module.named_parameters())
    tparams = [params[n] for n in state]
    z3 = engine.zero_optimization_stage() == 3
    with deepspeed.zero.GatheredParameters(tparams, modifier_rank=0 if z3 else None):
        if rank == 0 or not z3:
            with torch.no_grad():
                for n, v in state.items():
                    params[n].data.copy_(v.to(params[n].dtype))


class _TeacherRun:
    """One worker's DeepSpeed run, step by step. State that a checkpoint must carry lives in
    `self.st` (step, losses, validation history, probe, best validation) plus `best_state`.
    `ctx` says where it runs (leader.train.teacher_context: Ray Train, or one local process)."""

    def __init__(self, config: dict, ctx=None):
        import torch
        import torch.distributed as dist

        from leader.console import captured_stdout
        from leader.ray_utils import select_ds_accelerator

        self.config, self.cfg, self.data = config, TeacherTrainConfig(**config["cfg"]), config["data"]
        select_ds_accelerator(self.cfg.use_gpu)  # before DeepSpeed is imported in this process
        import deepspeed

        if ctx is None:
            from leader.train.teacher_context import RayTrainContext

            ctx = RayTrainContext()
        self.ctx, self.rank, self.world, self.dist = ctx, ctx.rank, ctx.world, dist
        self.device = ctx.device(self.cfg.use_gpu)
        torch.set_num_threads(max(1, int(config.get("threads", 1))))
        with captured_stdout():
            deepspeed.init_distributed(dist_backend="nccl" if self.cfg.use_gpu else "gloo")
        self.model = _build_model(self.cfg, int(config["n_meds"]), config["backbone_path"], config["corpus"])
        self.tr = self.data["train"]
        self.T = total_steps(self.cfg, len(self.tr["prompts"]), self.world)
        init_head(self.model, self.cfg, self.tr["labels"])
        self.st: dict = {
            "step": 0,
            "losses": [],
            "history": [],
            "probe": {},
            "best_val": None,
            "best_step": None,
            "nonfinite_steps": 0,
            "nonfinite_run": 0,
        }
        self.best_state: dict | None = None
        self.probe_test_probs = None
        self.resumed_from = None

    def start(self) -> None:
        """DeepSpeed first (the model moves to the training device), then on a fresh run the probe
        stage runs there; a resumed run takes everything from its checkpoint."""
        import deepspeed
        import torch

        cfg, ckpt = self.cfg, self.ctx.latest_checkpoint()
        opt = torch.optim.AdamW(optimizer_groups(self.model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, self.T))
        self.engine, _, _, _ = deepspeed.initialize(
            model=self.model,
            optimizer=opt,
            lr_scheduler=sched,
            config=build_ds_config(cfg, self.world, self.device.type == "cuda"),
        )
        self.engine.module.restore_fp32_buffers()
        self.device = self.engine.device
        if ckpt is None and cfg.uses_standardization:
            self._run_probe()
        if self.st["best_step"] == 0 and cfg.keep_best:
            self.best_state = _trainable_state(self.engine)  # the probe: LoRA at its zero init + fitted head
        if ckpt is not None:
            self._restore(ckpt)

    def _run_probe(self) -> None:
        """LP of LP-FT on the engine's device; the fitted head is written into the engine (gathered
        under ZeRO-3) and DeepSpeed's fp32 master copies are refreshed from it."""
        head_state = head_of(_trainable_state(self.engine))
        probe = _probe_stage(
            self.engine.module, self.cfg, self.data, self.rank, self.world, self.dist, self.device, head_state
        )
        self.engine.module.set_standardization(probe.pop("mean"), probe.pop("std"))
        head = probe.pop("head")
        if head is not None:
            _load_trainable(self.engine, {f"head.{k}": v for k, v in head.items()}, self.rank)
            _refresh_master_weights(self.engine)
        self.probe_test_probs = probe.pop("probe_test_probs", None)
        self.st["probe"] = probe
        self.st["norm"] = {"mean": self.engine.module.feat_mean.tolist(), "std": self.engine.module.feat_scale.tolist()}
        if probe.get("probe_val_prauc") is not None:
            self.st["best_val"], self.st["best_step"] = probe["probe_val_prauc"], 0

    def _restore(self, ckpt) -> None:
        from safetensors.torch import load_file

        with ckpt as d:
            d = Path(d)
            self.engine.load_checkpoint(
                str(d), tag="ds", load_module_strict=False, load_optimizer_states=True, load_lr_scheduler_states=True
            )
            self.st = {"nonfinite_steps": 0, "nonfinite_run": 0, **json.loads((d / "state.json").read_text())}
            if (d / "best.safetensors").exists():
                self.best_state = load_file(str(d / "best.safetensors"))
            if (d / "probe_test_probs.npy").exists():
                self.probe_test_probs = np.load(d / "probe_test_probs.npy")
        if self.st.get("norm"):
            self.engine.module.set_standardization(
                np.asarray(self.st["norm"]["mean"]), np.asarray(self.st["norm"]["std"])
            )
        self.resumed_from = self.st["step"]

    def checkpoint(self, metrics: dict, name: str) -> None:
        from safetensors.torch import save_file

        with tempfile.TemporaryDirectory() as tmp:
            self.engine.save_checkpoint(tmp, tag="ds", exclude_frozen_parameters=True)
            if self.rank == 0:
                (Path(tmp) / "state.json").write_text(json.dumps(self.st))
                if self.best_state is not None:
                    save_file(
                        {k: v.contiguous() for k, v in self.best_state.items()}, str(Path(tmp) / "best.safetensors")
                    )
                if self.probe_test_probs is not None:  # the Probe baseline row survives a restart
                    np.save(Path(tmp) / "probe_test_probs.npy", self.probe_test_probs)
            self.ctx.report(metrics, tmp, name)

    def validate(self, epoch: int) -> float:
        from leader.metrics import mean_metrics

        va, cfg = self.data["val"], self.cfg
        p = _eval_sharded(
            self.engine, va["prompts"], cfg.max_length, cfg.eval_batch_size, self.rank, self.world, self.dist
        )
        v = mean_metrics(np.asarray(va["labels"]), p)["prauc"] if len(p) else float("nan")
        self.st["history"].append({"epoch": epoch, "step": self.st["step"], "val_prauc": v})
        if cfg.keep_best and len(p) and (self.st["best_val"] is None or v > self.st["best_val"]):
            self.st["best_val"], self.st["best_step"] = v, self.st["step"]
            self.best_state = _trainable_state(self.engine)
        return v

    def _all_finite(self, loss) -> bool:
        """Every rank's loss is finite (a MIN all-reduce on the backend's device): the skip decision
        must be the same everywhere, or the ranks' gradient collectives would no longer match."""
        import torch

        ok = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
        if self.world > 1:
            self.dist.all_reduce(ok, op=self.dist.ReduceOp.MIN)
        return bool(ok.item() > 0)

    def train_step(self, gb: np.ndarray, y: torch.Tensor) -> float:  # noqa: F821
        """One optimizer step over the global batch `gb` (this rank's micro batches). A micro batch
        whose loss is non-finite on any rank is skipped on all of them (no backward, no step) and
        counted; NaN is recorded when every micro batch of the step was skipped."""
        import torch

        cfg, tot, n_ok = self.cfg, 0.0, 0
        for m in range(cfg.grad_accum):
            lo = (m * self.world + self.rank) * cfg.batch_size
            idx = gb[lo : lo + cfg.batch_size]
            ii, mm = _tok(self.model.tokenizer, [self.tr["prompts"][i] for i in idx], cfg.max_length, self.device)
            logits, _ = self.engine(ii, mm)
            loss = self.model.loss(logits, y[idx].to(logits.device, non_blocking=True))
            if not self._all_finite(loss):
                continue
            self.engine.backward(loss)
            self.engine.step()
            tot, n_ok = tot + float(loss.detach()), n_ok + 1
        self._count_nonfinite(n_ok < cfg.grad_accum)
        lt = torch.tensor([tot / max(n_ok, 1)], dtype=torch.float64, device=self.device)
        self.dist.all_reduce(lt)  # on the backend's device: NCCL has no CPU tensors
        return float(lt.item()) / self.world if n_ok else float("nan")

    def _count_nonfinite(self, skipped: bool) -> None:
        st = self.st
        st["nonfinite_steps"] += int(skipped)
        st["nonfinite_run"] = st["nonfinite_run"] + 1 if skipped else 0
        if st["nonfinite_run"] >= self.cfg.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"teacher {self.cfg.backbone}: {st['nonfinite_run']} consecutive optimizer steps had a NaN/inf loss "
                f"(step {st['step'] + 1}, {st['nonfinite_steps']} in all): fp16 overflow in the forward (known for "
                f"Qwen on V100) or a broken batch. Try fp16: false (fp32), a lower lr, or check the prompts."
            )

    def train(self) -> dict:
        """All steps; returns throughput figures. Checkpoints at epoch ends / every N steps."""
        import torch

        cfg, st, n = self.cfg, self.st, len(self.tr["prompts"])
        G = cfg.batch_size * cfg.grad_accum * self.world
        lens = token_lengths(self.model.tokenizer, self.tr["prompts"], cfg.max_length)
        run: list[np.ndarray] = []  # the global batches this run computed (padding share)
        y = torch.from_numpy(np.array(self.tr["labels"], dtype=np.float32))  # writable copy
        spe = n // G
        t_train, n_timed, peak = 0.0, 0, _rss_mb()
        progress, last_val = _Progress(self.T, cfg.progress_every_s, self.rank), st["best_val"]
        self.engine.train()
        while st["step"] < self.T:
            epoch = st["step"] // spe
            batches = global_batches(n, G, cfg.seed, epoch, lens if cfg.length_buckets else None)
            for s in range(st["step"] % spe, spe):
                if st["step"] >= self.T:
                    break
                self._maybe_fail()
                t0 = time.perf_counter()
                # Sorting the global batch by length groups similar prompts into each micro batch:
                # less padding, and the same samples (hence the same mean gradient) per step.
                run.append(batches[s][np.argsort(lens[batches[s]], kind="stable")])
                st["losses"].append(self.train_step(run[-1], y))
                st["step"] += 1
                if st["step"] > 1:  # the first step pays warm-up costs
                    t_train += time.perf_counter() - t0
                    n_timed += 1
                peak = max(peak, _rss_mb())
                end_epoch = s == spe - 1 or st["step"] >= self.T
                metrics = {"step": st["step"], "epoch": epoch, "loss": st["losses"][-1]}
                if end_epoch or (cfg.eval_every and st["step"] % cfg.eval_every == 0):
                    metrics["val_prauc"] = last_val = self.validate(epoch)
                progress(st["step"], st["losses"][-1], G, last_val, force=end_epoch)
                if end_epoch or (cfg.checkpoint_every and st["step"] % cfg.checkpoint_every == 0):
                    self.checkpoint(metrics, f"checkpoint_{st['step']:06d}")
        per_s = (n_timed / t_train) if t_train > 0 else float("nan")
        return {
            "steps_per_s_per_worker": per_s,
            "samples_per_s_per_worker": per_s * cfg.batch_size * cfg.grad_accum,
            "rss_mb_peak_worker": peak,
            "padding_share": padding_share(run, lens, cfg.batch_size),
        }

    def _maybe_fail(self) -> None:
        cfg = self.cfg
        if (
            cfg.fail_at_step is not None
            and self.st["step"] == cfg.fail_at_step
            and self.resumed_from is None
            and self.rank == self.world - 1
        ):
            # Ray Train's controller polls worker reports every ~2 s: dying right after the
            # last report would lose that checkpoint (restart from scratch, then crash again).
            time.sleep(5)
            os._exit(1)  # simulated worker crash (first attempt only)

    def finish(self, speed: dict) -> None:
        """The best-validation state (probe included) -> test metrics by group -> save."""
        from leader.train.probe import prior_bce

        cfg, st, te = self.cfg, self.st, self.data["test"]
        if self.best_state is not None and st["best_step"] != st["step"]:
            _load_trainable(self.engine, self.best_state, self.rank)
        final = {
            "step": st["step"],
            "losses": st["losses"],
            "history": st["history"],
            "resumed_from": self.resumed_from,
            **speed,
            "world_size": self.world,
            "zero_stage": self.engine.zero_optimization_stage(),
            "precision": self.model.precision,
            "prior_bce": prior_bce(np.asarray(self.tr["labels"])),
            "final_train_loss": final_train_loss(st["losses"]),
            "best_val_prauc": st["best_val"],
            "best_step": st["best_step"],
            "nonfinite_steps": st.get("nonfinite_steps", 0),
            "fp16_skipped_steps": int(getattr(self.engine, "skipped_steps", 0) or 0),
            **{k: v for k, v in st["probe"].items() if k != "probe_history"},
        }
        if cfg.eval_test and te["prompts"]:
            p = _eval_sharded(
                self.engine, te["prompts"], cfg.max_length, cfg.eval_batch_size, self.rank, self.world, self.dist
            )
            final.update(_group_metrics(np.asarray(te["labels"]), p, te["groups"], "test"))
        if st["history"]:
            final["val_prauc"] = st["history"][-1]["val_prauc"]
        state = _trainable_state(self.engine)
        with tempfile.TemporaryDirectory() as tmp:
            if self.rank == 0:
                self._save(Path(tmp) / "teacher", final, state)
            self.ctx.report(final, tmp if self.rank == 0 else None, "final")

    def _save(self, out: Path, final: dict, state: dict) -> None:
        from leader.models.teacher import save_teacher

        cfg, config = self.cfg, self.config
        meta = {
            **config["meta"],
            "max_length": cfg.max_length,
            "probe_history": self.st["probe"].get("probe_history", []),
            "metrics": {k: v for k, v in final.items() if k not in ("losses",)},
            "train_config": cfg.model_dump(mode="json"),
        }
        # ZeRO-3 leaves the engine's module partitioned (empty tensors), so peft's
        # save_pretrained would write nothing: save through a fresh unpartitioned copy.
        target = self.engine.module
        if self.engine.zero_optimization_stage() == 3:
            target = _build_model(cfg, int(config["n_meds"]), config["backbone_path"], config["corpus"], train=False)
            m = self.engine.module
            target.set_standardization(m.feat_mean.float().cpu().numpy(), m.feat_scale.float().cpu().numpy())
        save_teacher(target, out, meta, trainable_state=state)
        if self.probe_test_probs is not None:
            np.savez(
                out / "probe_test.npz",
                sample_ids=np.asarray(self.data["test"]["ids"], np.int64),
                probs=np.asarray(self.probe_test_probs, np.float32),
            )


def _refresh_master_weights(engine) -> None:
    """After writing trainable parameters by hand: ZeRO keeps fp32 master copies (and under fp16
    the module holds fp16 ones), and the next optimizer step would start from the stale masters."""
    refresh = getattr(getattr(engine, "optimizer", None), "refresh_fp32_params", None)
    if callable(refresh):
        refresh()


def _train_loop(config: dict, ctx=None) -> dict:
    """What each Ray Train worker runs (`ctx` None), or one local process (a LocalContext)."""
    run = _TeacherRun(config, ctx)
    run.start()
    run.finish(run.train())
    return run.st


# ----------------------------------------------------------------------------- entry points
def _inputs_and_spec(ds, cfg: TeacherTrainConfig):
    """(prompts per split, backbone spec, tiny-model corpus). A tiny backbone's tokenizer is
    trained on the raw training prompts, so it is built before prompts are fitted to it."""
    from leader.data.prompts import build_prompts
    from leader.models.backbones import load_tokenizer, resolve_backbone

    spec = resolve_backbone(cfg.backbone, cfg.backbone_path, seed=cfg.seed)
    corpus = None
    if spec.is_tiny:
        ids = ds.samples("train")["sample_id"].to_numpy()
        corpus = build_prompts(ds, ids[: cfg.max_train_samples] if cfg.max_train_samples else ids)[:2000]
    path = spec.materialize(corpus)  # build the tiny model once, before workers race for it
    data = _prepare_inputs(ds, cfg, load_tokenizer(path) if cfg.fit_prompts else None)
    return data, spec, corpus


def prebuild_comm_op(use_gpu: bool) -> None:
    """Build DeepSpeed's CPU shared-memory comm op once in the driver: when every worker
    builds it at start-up, they race on the same $TORCH_EXTENSIONS_DIR and one of them can die
    with 'ninja: build stopped' (seen here), costing a worker-group restart."""
    from leader.ray_utils import select_ds_accelerator

    if use_gpu or select_ds_accelerator(use_gpu=False) != "cpu":
        return
    from deepspeed.comm.torch import build_shm_op

    from leader.console import captured_stdout

    with captured_stdout():
        build_shm_op()


def _loop_config(ds, cfg: TeacherTrainConfig, data: dict, spec, corpus, threads: int, stats: dict) -> dict:
    """What every worker's `_train_loop` receives (plain data: it travels through Ray)."""
    return {
        "cfg": cfg.model_dump(mode="json"),
        "data": data,
        "n_meds": ds.n_meds,
        "backbone_path": str(spec.path) if not spec.is_tiny else cfg.backbone_path,
        "corpus": corpus,
        "threads": threads,
        "meta": {
            "dataset": ds.name,
            "dataset_fingerprint": ds.fingerprint,
            "prompt_options": prompt_options(cfg),
            "prompt_stats": stats,
        },
    }


def train_teacher(
    ds, cfg: TeacherTrainConfig, storage_path: str | Path, name: str | None = None, out_dir: str | Path | None = None
) -> TeacherTrainResult:
    """Run Ray Train; copy the final adapter + head to `out_dir` (default <storage>/<name>/teacher).
    Raises LearnedNothingError when the teacher ends at the prior-level loss (see check_learning)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from leader.console import train_logging_config
    from leader.ray_utils import ensure_ray

    cfg.ds_config_path()  # validated in workers; fail fast on a bad path here
    build_ds_config(cfg, cfg.workers, False)
    ray = ensure_ray()
    prebuild_comm_op(cfg.use_gpu)
    data, spec, corpus = _inputs_and_spec(ds, cfg)
    total_steps(cfg, len(data["train"]["prompts"]), cfg.workers)
    storage = Path(storage_path).resolve()
    name = name or f"teacher_{ds.name}_{cfg.backbone}_z{cfg.zero_stage}_w{cfg.workers}"
    cpus = ray.cluster_resources().get("CPU", 1)
    threads = max(1, int(cpus // cfg.workers)) if not cfg.use_gpu else max(1, int(cfg.cpus_per_worker))
    stats = prompt_stats(data)
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=_loop_config(ds, cfg, data, spec, corpus, threads, stats),
        scaling_config=ScalingConfig(
            num_workers=cfg.workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})},
        ),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.num_to_keep),
            logging_config=train_logging_config(),
        ),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    metrics = {**dict(result.metrics), **{f"prompt_{k}": v for k, v in stats.items()}}
    check_learning(metrics, cfg)
    out = Path(out_dir) if out_dir else storage / name / "teacher"
    with result.checkpoint.as_directory() as d:
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(Path(d) / "teacher", out)
    return TeacherTrainResult(out, metrics)


def train_teacher_in_process(ds, cfg: TeacherTrainConfig, out_dir: str | Path, threads: int = 0) -> TeacherTrainResult:
    """The real worker loop (DeepSpeed, probe, checkpoints, finite checks) in THIS process, world
    size 1, no Ray: what `scripts/gpu_check.py` and the CPU tests of DeepSpeed paths (ZeRO-3 +
    checkpointing, offload) run. Checkpoints are folders under `out_dir`/run; calling it again on
    the same folder resumes from the newest one."""
    import torch

    from leader.train.teacher_context import LocalContext

    data, spec, corpus = _inputs_and_spec(ds, cfg)
    total_steps(cfg, len(data["train"]["prompts"]), 1)
    ctx = LocalContext(Path(out_dir) / "run", backend="nccl" if cfg.use_gpu else "gloo")
    config = _loop_config(ds, cfg, data, spec, corpus, threads or torch.get_num_threads(), prompt_stats(data))
    _train_loop(config, ctx)
    return TeacherTrainResult(ctx.root / "final" / "teacher", ctx.reports[-1])


def train_teacher_local(ds, cfg: TeacherTrainConfig, world: int | None = None) -> list[float]:
    """Single-process plain-torch reference: the same prompts, head init, probe stage, parameter
    groups and global batches as a `world`-worker run (per-worker batch x world in one step).
    Returns per-step losses."""
    import torch

    world = world or cfg.workers
    data, _, corpus = _inputs_and_spec(ds, cfg)
    model = _build_model(cfg, ds.n_meds, cfg.backbone_path, corpus)
    tr = data["train"]
    init_head(model, cfg, tr["labels"])
    if cfg.uses_standardization:
        _apply_probe(model, _probe_stage(model, cfg, data, 0, 1, None, None, head_of(model.trainable_state())))
    n = len(tr["prompts"])
    T = total_steps(cfg, n, world)
    G = cfg.batch_size * cfg.grad_accum * world
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(optimizer_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, T))
    y = torch.as_tensor(np.asarray(tr["labels"], dtype=np.float32))
    losses, step, spe = [], 0, n // G
    model.train()
    while step < T:
        lens = token_lengths(model.tokenizer, tr["prompts"], cfg.max_length) if cfg.length_buckets else None
        for gb in global_batches(n, G, cfg.seed, step // spe, lens)[step % spe :]:
            if step >= T:
                break
            opt.zero_grad()
            ii, mm = _tok(model.tokenizer, [tr["prompts"][i] for i in gb], cfg.max_length)
            logits, _ = model(ii, mm)
            loss = model.loss(logits, y[gb])
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
    return losses
