"""Fine-tuning LEADER(T) with Ray Train (TorchTrainer) + DeepSpeed ZeRO-2/3: the entry points.

Why this shape:
- The driver does everything once that workers would otherwise race for: the tiny backbone and
  its tokenizer, the prompts fitted to it, DeepSpeed's CPU comm op.
- Checkpoints are DeepSpeed's own in one Ray Train checkpoint folder per step; after a worker
  dies, FailureConfig restarts the group and the loop resumes from `ray.train.get_checkpoint()`
  at the saved step (leader.teacher.checkpoint).
- The validated TeacherTrainConfig itself travels to the workers (Ray pickles it): it is
  validated once, where the study file or the CLI's --set was read.

Contract: `train_teacher(ds, cfg, storage_path, name=None) -> TeacherTrainResult(checkpoint_dir,
metrics)`; checkpoint_dir holds `save_teacher` output. `train_teacher_in_process` runs the same
worker in this process without Ray (scripts/gpu_check.py, the CPU tests of DeepSpeed paths).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from leader import atomic
from leader.config.teacher import TeacherTrainConfig, fail_at_step
from leader.teacher.deepspeed_config import build_ds_config
from leader.teacher.inputs import inputs_and_spec, prompt_options, prompt_stats
from leader.teacher.recipe import check_learning
from leader.teacher.schedule import total_steps


@dataclass
class TeacherTrainResult:
    checkpoint_dir: Path
    metrics: dict


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


def loop_config(ds, cfg: TeacherTrainConfig, data: dict, spec, corpus, threads: int, stats: dict) -> dict:
    """What every worker's `train_loop` receives (it travels through Ray)."""
    return {
        "cfg": cfg,
        "data": data,
        "n_meds": ds.n_meds,
        "backbone_path": str(spec.path) if not spec.is_tiny else cfg.backbone_path,
        "corpus": corpus,
        "threads": threads,
        "fail_at_step": fail_at_step(),
        "meta": {
            "dataset": ds.name,
            "dataset_fingerprint": ds.fingerprint,
            "prompt_options": prompt_options(cfg),
            "prompt_stats": stats,
        },
    }


def _trainer(cfg: TeacherTrainConfig, config: dict, storage: Path, name: str):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from leader.console import train_logging_config
    from leader.teacher.worker import train_loop

    return TorchTrainer(
        train_loop,
        train_loop_config=config,
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


def train_teacher(
    ds, cfg: TeacherTrainConfig, storage_path: str | Path, name: str | None = None, out_dir: str | Path | None = None
) -> TeacherTrainResult:
    """Run Ray Train; copy the final adapter + head to `out_dir` (default <storage>/<name>/teacher).
    Raises LearnedNothingError when the teacher ends at the prior-level loss (see check_learning)."""
    from leader.ray_utils import ensure_ray

    build_ds_config(cfg, cfg.workers, False)  # read again in every worker; fail fast on a bad file here
    ray = ensure_ray()
    prebuild_comm_op(cfg.use_gpu)
    data, spec, corpus = inputs_and_spec(ds, cfg)
    total_steps(cfg, len(data["train"]["prompts"]), cfg.workers)
    storage = Path(storage_path).resolve()
    name = name or f"teacher_{ds.name}_{cfg.backbone}_z{cfg.zero_stage}_w{cfg.workers}"
    cpus = ray.cluster_resources().get("CPU", 1)
    threads = max(1, int(cpus // cfg.workers)) if not cfg.use_gpu else max(1, int(cfg.cpus_per_worker))
    stats = prompt_stats(data)
    result = _trainer(cfg, loop_config(ds, cfg, data, spec, corpus, threads, stats), storage, name).fit()
    if result.error:
        raise result.error
    metrics = {**dict(result.metrics), **{f"prompt_{k}": v for k, v in stats.items()}}
    check_learning(metrics, cfg)
    out = Path(out_dir) if out_dir else storage / name / "teacher"
    with result.checkpoint.as_directory() as d:
        atomic.replace_folder(out, lambda tmp: shutil.copytree(Path(d) / "teacher", tmp))
    return TeacherTrainResult(out, metrics)


def train_teacher_in_process(ds, cfg: TeacherTrainConfig, out_dir: str | Path, threads: int = 0) -> TeacherTrainResult:
    """The real worker loop (DeepSpeed, probe, checkpoints, finite checks) in THIS process, world
    size 1, no Ray: what `scripts/gpu_check.py` and the CPU tests of DeepSpeed paths (ZeRO-3 +
    checkpointing, offload) run. Checkpoints are folders under `out_dir`/run; calling it again on
    the same folder resumes from the newest one."""
    import torch

    from leader.teacher.context import LocalContext
    from leader.teacher.worker import train_loop

    data, spec, corpus = inputs_and_spec(ds, cfg)
    total_steps(cfg, len(data["train"]["prompts"]), 1)
    ctx = LocalContext(Path(out_dir) / "run", backend="nccl" if cfg.use_gpu else "gloo")
    config = loop_config(ds, cfg, data, spec, corpus, threads or torch.get_num_threads(), prompt_stats(data))
    train_loop(config, ctx)
    return TeacherTrainResult(ctx.root / "final" / "teacher", ctx.reports[-1])
