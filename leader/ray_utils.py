"""Connecting to Ray the same way everywhere: an existing cluster when an address is given
(or RAY_ADDRESS is set, as under `ray job submit`), else a local one. Ray's token auth stays on
and the dashboard binds to 127.0.0.1 (Ray's unauthenticated job API has been exploited in the
wild)."""

from __future__ import annotations

import logging
import os

# Environment every Ray worker needs (DeepSpeed on CPU, offline Hugging Face, shared op cache).
WORKER_ENV_KEYS = (
    "DS_ACCELERATOR",
    "TORCH_EXTENSIONS_DIR",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "LEADER_CACHE",
    "LEADER_DEMO_ROOT",
    "LEADER_VERBOSE",
)


def worker_env() -> dict[str, str]:
    from leader.console import quiet_env
    from leader.paths import cache_dir

    env = {**quiet_env(), **{k: os.environ[k] for k in WORKER_ENV_KEYS if k in os.environ}}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("LEADER_CACHE", str(cache_dir()))
    env.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions"))
    try:
        import torch

        if not torch.cuda.is_available():
            env.setdefault("DS_ACCELERATOR", "cpu")
    except Exception:  # pragma: no cover
        pass
    return env


def cluster_address(address: str | None = None) -> str | None:
    """The cluster to join: `address`, else RAY_ADDRESS (set under `ray job submit`); None means
    a private local Ray is started."""
    return address or os.environ.get("RAY_ADDRESS") or None


def ensure_ray(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False, **kwargs):
    """Initialise Ray once per process and return the ray module.

    A local Ray always runs its dashboard process (127.0.0.1, token auth): it serves the state
    API that Ray Train's PlacementGroupCleaner polls every second, which otherwise logs a warning
    per poll for the whole of a training run. `dashboard` only says whether the caller will show
    its URL."""
    import ray

    if ray.is_initialized():
        return ray
    from leader.console import quiet_libraries, ray_logging_config

    quiet_libraries()
    kwargs.setdefault("logging_config", ray_logging_config())
    if kwargs["logging_config"] is not None:  # quiet: the driver's own INFO lines too
        kwargs.setdefault("logging_level", logging.WARNING)
    for k, v in worker_env().items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray Train patches print() on its workers to also log each line: every progress line twice.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    address = cluster_address(address)
    runtime_env = {"env_vars": worker_env(), "worker_process_setup_hook": "leader.console.worker_setup"}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True, **kwargs)
    else:
        # address="local" forces a fresh private cluster: never silently join a stray one.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            runtime_env=runtime_env,
            **kwargs,
        )
    return ray
