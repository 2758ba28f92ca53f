"""The DeepSpeed config a teacher run uses: a JSON file from cluster/deepspeed/ (or the study's
own), with batch sizes, precision and offload made to agree with the run's options.

Why patch a file rather than build the dict: the GPU files carry ZeRO bucket sizes tuned for
V100s, which a user may edit without touching code; the fields the run's options decide are
overwritten so the two can never disagree. No "optimizer"/"scheduler" block survives: DeepSpeed
gets a torch AdamW (its own CPU Adam compiles a C++ op, ~65 s on CPU).
"""

from __future__ import annotations

from pathlib import Path

from leader.config.teacher import TeacherTrainConfig
from leader.errors import ConfigError, read_json
from leader.paths import repo_root


def ds_config_path(cfg: TeacherTrainConfig) -> Path:
    """The JSON file: `cfg.deepspeed_config` (relative to the repository), else the stage's default."""
    if cfg.deepspeed_config:
        p = Path(cfg.deepspeed_config)
        return p if p.is_absolute() else repo_root() / p
    kind = "v100_fp16" if cfg.use_gpu else "cpu"  # the GPU files carry the tuned ZeRO buckets
    return repo_root() / "cluster" / "deepspeed" / f"zero{cfg.zero_stage}_{kind}.json"


def resolve_precision(cfg: TeacherTrainConfig, device_type: str) -> str:
    from leader.precision import resolve

    return resolve(cfg.precision, device_type, fp16=cfg.fp16)


def build_ds_config(cfg: TeacherTrainConfig, world: int, cuda: bool) -> dict:
    """Load any DeepSpeed JSON and make batch sizes / precision / offload agree with `cfg`."""
    ds = read_json(ds_config_path(cfg), ConfigError, what="deepspeed_config")
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
