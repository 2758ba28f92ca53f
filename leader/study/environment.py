"""The software and machine a study ran on (results/env.json): package versions, git commit,
Python, platform, GPU and the Ray cluster's resources."""

from __future__ import annotations

import os
import platform
import subprocess


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for p in ("torch", "ray", "optuna", "transformers", "deepspeed", "peft", "pandas", "leader-studies"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return out


def _commit() -> str | None:
    try:
        from leader.paths import repo_root

        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except Exception:
        return None


def _gpu() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def environment() -> dict:
    import ray

    return {
        "versions": _versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": _gpu(),
        "git_commit": _commit(),
        "cluster_resources": ray.cluster_resources() if ray.is_initialized() else {},
    }
