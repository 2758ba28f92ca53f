"""Connecting to Ray the same way everywhere: an existing cluster when an address is given
(or RAY_ADDRESS is set, as under `ray job submit`), else a local one. Ray's token auth stays on
and the dashboard binds to 127.0.0.1 (Ray's unauthenticated job API has been exploited in the
wild)."""

from __future__ import annotations

import json
import logging
import os

# Environment every Ray worker needs (offline Hugging Face, shared op cache). DS_ACCELERATOR is
# NOT forwarded: on a cluster the driver runs on a CPU-only head, and its "cpu" would reach the GPU
# workers; each process that imports DeepSpeed decides for itself (`select_ds_accelerator`).
WORKER_ENV_KEYS = (
    "TORCH_EXTENSIONS_DIR",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "LEADER_CACHE",
    "LEADER_DEMO_ROOT",
    "LEADER_VERBOSE",
)
SETUP_HOOK = "leader.console.worker_setup"


def worker_env() -> dict[str, str]:
    from leader.console import quiet_env
    from leader.paths import cache_dir

    env = {**quiet_env(), **{k: os.environ[k] for k in WORKER_ENV_KEYS if k in os.environ}}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("LEADER_CACHE", str(cache_dir()))
    env.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions"))
    return env


def job_runtime_env() -> dict:
    """The runtime env of the `ray job submit` this driver runs under ({} outside a job). Ray
    refuses to merge a job's and a driver's runtime env that share a field or an env var key, even
    with equal values (ray-project/ray#39208), so the driver adds only what the job lacks."""
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    raw = os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR)
    if not raw:
        return {}
    return dict(json.loads(raw).get("runtime_env") or {})


def driver_runtime_env() -> dict:
    """What `ray.init` passes: the worker env and setup hook, minus what the job already sets."""
    job = job_runtime_env()
    taken = set((job.get("env_vars") or {}).keys())
    env = {k: v for k, v in worker_env().items() if k not in taken}
    out: dict = {"env_vars": env} if env else {}
    if "worker_process_setup_hook" not in job:
        out["worker_process_setup_hook"] = SETUP_HOOK
    return out


def select_ds_accelerator(use_gpu: bool | None = None) -> str:
    """Set DS_ACCELERATOR for THIS process before DeepSpeed is imported: an explicit value wins,
    else 'cuda' where this process sees a GPU and 'cpu' elsewhere. A worker that was given GPUs
    but told 'cpu' is a misconfiguration (it would train on CPU over NCCL): refused."""
    import torch

    from leader.errors import ConfigError

    cuda = torch.cuda.is_available()
    explicit = os.environ.get("DS_ACCELERATOR")
    if use_gpu and explicit == "cpu" and cuda:
        raise ConfigError(
            "DS_ACCELERATOR=cpu in a worker that was given a GPU (teacher use_gpu / gpu_per_worker > 0): "
            "unset DS_ACCELERATOR on the GPU nodes"
        )
    if use_gpu and not cuda:
        raise ConfigError("teacher use_gpu is set but this worker sees no CUDA device (check gpu_per_worker)")
    os.environ["DS_ACCELERATOR"] = explicit or ("cuda" if cuda else "cpu")
    return os.environ["DS_ACCELERATOR"]


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
    runtime_env = driver_runtime_env()
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
