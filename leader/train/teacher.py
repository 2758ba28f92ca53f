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

from leader.errors import ConfigError, read_json
from leader.paths import repo_root


class TeacherTrainConfig(BaseModel):
    backbone: str = Field("tiny-llama", description="Registry name (llama-7b, qwen-7b, qwen-1.8b, tiny-llama, tiny-qwen2, minilm) or a local checkpoint folder.")
    backbone_path: str | None = Field(None, description="Explicit local folder for a large backbone (else its $LEADER_*_PATH env var).")
    workers: int = Field(2, ge=1, description="Ray Train workers (one process each; one GPU each when use_gpu).")
    use_gpu: bool = Field(False, description="Give each worker a GPU (NCCL); False = CPU/gloo.")
    zero_stage: Literal[2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    deepspeed_config: str | None = Field(None, description="DeepSpeed JSON (default cluster/deepspeed/zero{2,3}_cpu.json); batch sizes and grad accumulation are filled from this config.")
    fp16: bool = Field(False, description="fp16 mixed precision with loss scaling (GPU only).")
    cpu_offload: bool = Field(False, description="Offload optimizer state (and ZeRO-3 params) to CPU memory.")
    epochs: int = Field(1, ge=1, description="Passes over the training split.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (across epochs).")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate (AdamW) for LoRA + head.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(4, ge=1, description="Micro batch per worker.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    grad_clip: float = Field(1.0, ge=0, description="Global gradient norm clip (0 = off).")
    max_length: int = Field(256, ge=8, description="Max prompt tokens; longer prompts are cut on the LEFT.")
    token_budget: int | None = Field(None, description="Word budget passed to build_prompts (drops oldest past visits first).")
    schedule: Literal["cosine", "linear"] = Field("cosine", description="LR decay after warmup.")
    warmup: float = Field(0.0, ge=0, description="Warmup: fraction of total steps if < 1, else a step count.")
    checkpoint_every: int = Field(0, ge=0, description="Report a Ray Train checkpoint every N optimizer steps (0 = only at epoch ends).")
    num_to_keep: int = Field(2, ge=1, description="Checkpoints kept by Ray Train.")
    seed: int = Field(0, description="Seed of init, LoRA, head and data order.")
    lora_rank: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA branch (the authors' release uses 0.1).")
    gradient_checkpointing: bool = Field(False, description="Recompute backbone activations in backward: needed for 7B models with long prompts on 32 GB V100s.")
    max_failures: int = Field(1, ge=0, description="Ray Train worker-group restarts after a failure (resume from the latest checkpoint).")
    max_train_samples: int | None = Field(None, ge=1, description="Use only the first N training samples (smoke tests).")
    max_eval_samples: int | None = Field(None, ge=1, description="Use only the first N val/test samples.")
    eval_batch_size: int = Field(16, ge=1, description="Batch size of validation/test inference.")
    eval_test: bool = Field(True, description="Compute final test metrics by group.")
    fail_at_step: int | None = Field(None, description="Fault injection for tests: the last worker exits at this step on the first attempt (no checkpoint yet restored).")

    def ds_config_path(self) -> Path:
        if self.deepspeed_config:
            p = Path(self.deepspeed_config)
            return p if p.is_absolute() else repo_root() / p
        return repo_root() / "cluster" / "deepspeed" / f"zero{self.zero_stage}_cpu.json"


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
    fp16 = bool(cfg.fp16 and cuda)
    ds["fp16"] = {**ds.get("fp16", {}), "enabled": fp16} if fp16 else {"enabled": False}
    ds.setdefault("bf16", {"enabled": False})
    ds["steps_per_print"] = ds.get("steps_per_print", 10**9)
    return ds


def _build_model(cfg: TeacherTrainConfig, n_meds: int, backbone_path: str | None, corpus, *, train: bool = True):
    """The teacher as `cfg` describes it, the same in every worker, the ZeRO-3 save copy and the
    single-process reference run."""
    from leader.models.teacher import build_teacher, enable_gradient_checkpointing

    model = build_teacher(cfg.backbone, n_meds, cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          seed=cfg.seed, backbone_path=backbone_path, corpus=corpus)
    if train and cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model


def lr_lambda(cfg: TeacherTrainConfig, total_steps: int):
    warm = int(cfg.warmup if cfg.warmup >= 1 else round(cfg.warmup * total_steps))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / max(1, warm)
        frac = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, frac))) if cfg.schedule == "cosine" else max(0.0, 1 - frac)

    return f


def global_batches(n: int, global_batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Seeded order of one epoch, cut into full global batches (the remainder is dropped)."""
    perm = np.random.default_rng(seed + 1000 * epoch).permutation(n)
    return [perm[i * global_batch:(i + 1) * global_batch] for i in range(n // global_batch)]


def total_steps(cfg: TeacherTrainConfig, n_train: int, world: int) -> int:
    per_epoch = n_train // (cfg.batch_size * cfg.grad_accum * world)
    if per_epoch == 0:
        raise ConfigError(f"batch_size: {n_train} training samples < one global batch ({cfg.batch_size}x{cfg.grad_accum}x{world})")
    t = per_epoch * cfg.epochs
    return min(t, cfg.max_steps) if cfg.max_steps else t


def _tok(tok, prompts: list[str], max_length: int):
    enc = tok(prompts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _prepare_inputs(ds, cfg: TeacherTrainConfig) -> dict:
    from leader.data.prompts import build_prompts

    out = {}
    for split in ("train", "val", "test"):
        s = ds.samples(split)
        lim = cfg.max_train_samples if split == "train" else cfg.max_eval_samples
        if lim:
            s = s.iloc[:lim]
        ids = s["sample_id"].to_numpy()
        kw = {"token_budget": cfg.token_budget} if cfg.token_budget else {}
        out[split] = {"ids": ids.tolist(), "prompts": build_prompts(ds, ids, **kw),
                      "labels": ds.labels(ids), "groups": s["group"].astype(str).tolist()}
    if not out["train"]["ids"]:
        raise ConfigError(f"dataset {ds.name}: empty training split")
    return out


# ----------------------------------------------------------------------------- worker loop
def _eval_sharded(engine, tok, prompts, max_length, bs, rank, world, dist):
    """Equal batch counts on every rank (ZeRO-3 forwards gather parameters collectively)."""
    import torch

    n = len(prompts)
    if n == 0:
        return np.zeros((0, engine.module.cfg.n_meds), np.float32)
    per = math.ceil(n / world)
    idx = [min(i, n - 1) for i in range(rank * per, (rank + 1) * per)]
    engine.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, per, bs):
            ii, mm = _tok(tok, [prompts[j] for j in idx[i:i + bs]], max_length)
            logits, _ = engine(ii, mm)
            outs.append(torch.sigmoid(logits.float()).cpu().numpy())
    engine.train()
    mine = (list(range(rank * per, (rank + 1) * per)), np.concatenate(outs))
    gathered = [None] * world
    dist.all_gather_object(gathered, mine)
    probs = np.zeros((n, engine.module.cfg.n_meds), np.float32)
    for pos, p in gathered:
        for k, j in enumerate(pos):
            if j < n:
                probs[j] = p[k]
    return probs


def _group_metrics(y, p, groups, prefix: str) -> dict:
    from leader.metrics import bootstrap_metrics, summarize

    s = summarize(bootstrap_metrics(y, p, np.asarray(groups)))
    return {f"{prefix}_{r.group}_{r.metric}": float(r.mean) for r in s.itertuples()}


def _train_loop(config: dict) -> None:
    import deepspeed
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train import Checkpoint

    from leader.metrics import mean_metrics
    from leader.models.teacher import save_teacher

    cfg = TeacherTrainConfig(**config["cfg"])
    data = config["data"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    cuda = cfg.use_gpu and torch.cuda.is_available()

    model = _build_model(cfg, int(config["n_meds"]), config["backbone_path"], config["corpus"])
    tok = model.tokenizer
    n_train = len(data["train"]["prompts"])
    T = total_steps(cfg, n_train, world)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, T))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                           config=build_ds_config(cfg, world, cuda))

    step, losses, history = 0, [], []
    ckpt = ray.train.get_checkpoint()
    resumed_from = None
    if ckpt is not None:
        with ckpt.as_directory() as d:
            engine.load_checkpoint(d, tag="ds", load_module_strict=False, load_optimizer_states=True, load_lr_scheduler_states=True)
            st = json.loads((Path(d) / "state.json").read_text())
        step, losses, history = st["step"], st["losses"], st["history"]
        resumed_from = step

    def checkpoint(metrics: dict, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            engine.save_checkpoint(tmp, tag="ds", exclude_frozen_parameters=True)
            if rank == 0:
                (Path(tmp) / "state.json").write_text(json.dumps({"step": step, "losses": losses, "history": history}))
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp), checkpoint_dir_name=name)

    tr, G = data["train"], cfg.batch_size * cfg.grad_accum * world
    y_train = torch.from_numpy(np.array(tr["labels"], dtype=np.float32))  # writable copy
    steps_per_epoch = n_train // G
    t_train, n_timed, peak = 0.0, 0, _rss_mb()
    engine.train()
    while step < T:
        epoch = step // steps_per_epoch
        batches = global_batches(n_train, G, cfg.seed, epoch)
        for s in range(step % steps_per_epoch, steps_per_epoch):
            if step >= T:
                break
            if cfg.fail_at_step is not None and step == cfg.fail_at_step and resumed_from is None and rank == world - 1:
                # Ray Train's controller polls worker reports every ~2 s: dying right after the
                # last report would lose that checkpoint (restart from scratch, then crash again).
                time.sleep(5)
                os._exit(1)  # simulated worker crash (first attempt only)
            t0 = time.perf_counter()
            gb = batches[s]
            tot = 0.0
            for m in range(cfg.grad_accum):
                lo = (m * world + rank) * cfg.batch_size
                idx = gb[lo:lo + cfg.batch_size]
                ii, mm = _tok(tok, [tr["prompts"][i] for i in idx], cfg.max_length)
                logits, _ = engine(ii, mm)
                loss = model.loss(logits, y_train[idx].to(logits.device))
                engine.backward(loss)
                engine.step()
                tot += float(loss.detach()) / cfg.grad_accum
            lt = torch.tensor([tot], dtype=torch.float64)
            dist.all_reduce(lt)
            losses.append(float(lt.item()) / world)
            step += 1
            if step > 1:  # the first step pays warm-up costs
                t_train += time.perf_counter() - t0
                n_timed += 1
            peak = max(peak, _rss_mb())
            end_epoch = s == steps_per_epoch - 1 or step >= T
            metrics = {"step": step, "epoch": epoch, "loss": losses[-1]}
            if end_epoch:
                va = data["val"]
                p = _eval_sharded(engine, tok, va["prompts"], cfg.max_length, cfg.eval_batch_size, rank, world, dist)
                vm = mean_metrics(np.asarray(va["labels"]), p) if len(p) else {"prauc": float("nan")}
                history.append({"epoch": epoch, "step": step, "val_prauc": vm["prauc"]})
                metrics["val_prauc"] = vm["prauc"]
            if end_epoch or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                checkpoint(metrics, f"checkpoint_{step:06d}")

    # ---- final: test metrics by group, adapter + head with save_teacher
    final = {"step": step, "losses": losses, "history": history, "resumed_from": resumed_from,
             "steps_per_s_per_worker": (n_timed / t_train) if t_train > 0 else float("nan"),
             "rss_mb_peak_worker": peak, "world_size": world, "zero_stage": engine.zero_optimization_stage()}
    te = data["test"]
    if cfg.eval_test and te["prompts"]:
        p = _eval_sharded(engine, tok, te["prompts"], cfg.max_length, cfg.eval_batch_size, rank, world, dist)
        final.update(_group_metrics(np.asarray(te["labels"]), p, te["groups"], "test"))
    if history:
        final["val_prauc"] = history[-1]["val_prauc"]
    names = [n for n, p in engine.module.named_parameters() if p.requires_grad]
    tparams = [p for p in engine.module.parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters(tparams, modifier_rank=None):
        state = {n: p.detach().float().cpu().clone() for n, p in zip(names, tparams)}
    with tempfile.TemporaryDirectory() as tmp:
        if rank == 0:
            meta = {**config["meta"], "max_length": cfg.max_length,
                    "metrics": {k: v for k, v in final.items() if k not in ("losses",)}, "train_config": cfg.model_dump(mode="json")}
            # ZeRO-3 leaves the engine's module partitioned (empty tensors), so peft's
            # save_pretrained would write nothing: save through a fresh unpartitioned copy.
            target = engine.module
            if engine.zero_optimization_stage() == 3:
                target = _build_model(cfg, int(config["n_meds"]), config["backbone_path"], config["corpus"], train=False)
            save_teacher(target, Path(tmp) / "teacher", meta, trainable_state=state)
        ray.train.report(final, checkpoint=Checkpoint.from_directory(tmp) if rank == 0 else None, checkpoint_dir_name="final")


# ----------------------------------------------------------------------------- entry points
def train_teacher(ds, cfg: TeacherTrainConfig, storage_path: str | Path, name: str | None = None,
                  out_dir: str | Path | None = None) -> TeacherTrainResult:
    """Run Ray Train; copy the final adapter + head to `out_dir` (default <storage>/<name>/teacher)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from leader.models.backbones import resolve_backbone
    from leader.ray_utils import ensure_ray

    cfg.ds_config_path()  # validated in workers; fail fast on a bad path here
    build_ds_config(cfg, cfg.workers, False)
    ray = ensure_ray()
    data = _prepare_inputs(ds, cfg)
    total_steps(cfg, len(data["train"]["prompts"]), cfg.workers)
    spec = resolve_backbone(cfg.backbone, cfg.backbone_path, seed=cfg.seed)
    corpus = data["train"]["prompts"][:2000] if spec.is_tiny else None
    spec.materialize(corpus)  # build the tiny model once, before workers race for it
    storage = Path(storage_path).resolve()
    name = name or f"teacher_{ds.name}_{cfg.backbone}_z{cfg.zero_stage}_w{cfg.workers}"
    cpus = ray.cluster_resources().get("CPU", 1)
    threads = max(1, int(cpus // cfg.workers)) if not cfg.use_gpu else 4
    loop_cfg = {"cfg": cfg.model_dump(mode="json"), "data": {k: {**v, "labels": v["labels"]} for k, v in data.items()},
                "n_meds": ds.n_meds, "backbone_path": str(spec.path) if not spec.is_tiny else cfg.backbone_path,
                "corpus": corpus, "threads": threads,
                "meta": {"dataset": ds.name, "dataset_fingerprint": ds.fingerprint, "prompt_options": {"token_budget": cfg.token_budget}}}
    trainer = TorchTrainer(
        _train_loop, train_loop_config=loop_cfg,
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": 1} if not cfg.use_gpu else None),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=str(storage), failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.num_to_keep)),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    out = Path(out_dir) if out_dir else storage / name / "teacher"
    with result.checkpoint.as_directory() as d:
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(Path(d) / "teacher", out)
    return TeacherTrainResult(out, dict(result.metrics))


def train_teacher_local(ds, cfg: TeacherTrainConfig, world: int | None = None) -> list[float]:
    """Single-process plain-torch reference: the same global batches and optimizer as a
    `world`-worker run (per-worker batch x world in one step). Returns per-step losses."""
    import torch

    world = world or cfg.workers
    data = _prepare_inputs(ds, cfg)
    spec_corpus = data["train"]["prompts"][:2000] if cfg.backbone.startswith("tiny-") else None
    model = _build_model(cfg, ds.n_meds, cfg.backbone_path, spec_corpus)
    tr = data["train"]
    n = len(tr["prompts"])
    T = total_steps(cfg, n, world)
    G = cfg.batch_size * cfg.grad_accum * world
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, T))
    y = torch.as_tensor(np.asarray(tr["labels"], dtype=np.float32))
    losses, step, spe = [], 0, n // G
    model.train()
    while step < T:
        for gb in global_batches(n, G, cfg.seed, step // spe)[step % spe:]:
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
