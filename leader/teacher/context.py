"""Where a teacher worker runs: under Ray Train (the product), or alone in one process (the GPU
check and the CPU tests of DeepSpeed paths, on a machine that may have no Ray at all).

Why an interface: the worker (`leader.teacher.worker.TeacherRun`) needs only its rank, world
size, device, the checkpoint to resume from and a way to report a checkpoint. Behind this small
surface the same worker code runs under `TorchTrainer` on 64 GPUs and in `scripts/gpu_check.py`
on one, so what the check proves is the code the cluster runs.

Contract: `ctx.rank`, `ctx.world`, `ctx.device(use_gpu) -> torch.device`,
`ctx.latest_checkpoint() -> Path-yielding context manager or None`, `ctx.report(metrics, folder, name)`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path


class RayTrainContext:
    """The worker inside Ray Train's TorchTrainer (process group already set up by Ray)."""

    def __init__(self) -> None:
        import ray.train

        from leader.console import quiet_train_worker

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        quiet_train_worker()  # Ray Train's own worker logging (imports Ray: here, not in LocalContext)

    def device(self, use_gpu: bool):
        """The GPU Ray gave this worker. DeepSpeed picks its device from LOCAL_RANK, which Ray sets
        by worker order on the node; with shared CUDA_VISIBLE_DEVICES the two can differ, so LOCAL_RANK
        is pointed at Ray's device before deepspeed.initialize reads it."""
        import torch

        if not use_gpu:
            return torch.device("cpu")
        import ray.train.torch

        dev = ray.train.torch.get_device()
        torch.cuda.set_device(dev)
        os.environ["LOCAL_RANK"] = str(dev.index)
        return dev

    def latest_checkpoint(self):
        import ray.train

        ckpt = ray.train.get_checkpoint()
        return None if ckpt is None else _as_path(ckpt)

    def report(self, metrics: dict, folder: str | None, name: str) -> None:
        import ray.train
        from ray.train import Checkpoint

        ray.train.report(
            metrics, checkpoint=Checkpoint.from_directory(folder) if folder else None, checkpoint_dir_name=name
        )


@contextlib.contextmanager
def _as_path(ckpt):
    with ckpt.as_directory() as d:
        yield Path(d)


class LocalContext:
    """One process, world size 1, checkpoints as folders under `root`: for the GPU check and for
    tests of DeepSpeed paths (ZeRO-3, offload) without a Ray cluster."""

    def __init__(self, root: str | Path, backend: str = "gloo") -> None:
        import torch.distributed as dist

        self.root, self.rank, self.world = Path(root), 0, 1
        self.root.mkdir(parents=True, exist_ok=True)
        self.reports: list[dict] = []
        if not dist.is_initialized():
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
            port = str(_free_port())
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)

    def device(self, use_gpu: bool):
        import torch

        if not use_gpu:
            return torch.device("cpu")
        torch.cuda.set_device(0)
        return torch.device("cuda", 0)

    def latest_checkpoint(self):
        done = sorted(p for p in self.root.glob("checkpoint_*") if (p / "state.json").is_file())
        return contextlib.nullcontext(done[-1]) if done else None

    def report(self, metrics: dict, folder: str | None, name: str) -> None:
        self.reports.append({**metrics, "checkpoint": name if folder else None})
        if folder:
            shutil.copytree(folder, self.root / name, dirs_exist_ok=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
