"""Where a study's durable state may live, checked before any work starts.

Why: on a multi-node cluster every stage reads what an earlier stage wrote on another node
(teacher checkpoints, feature shards, Tune trials). A relative `storage_path` under `ray job
submit` resolves inside the job's unpacked working_dir on the head, a new folder per code hash,
so a re-submitted study never finds its own run; a node-local absolute path makes Ray Train raise
at its first checkpoint, hours in. Both are refused here, naming the field, before a GPU is spent.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from leader.errors import ConfigError

STORAGE_ENV = "LEADER_STORAGE"  # the one variable that names the study root on a cluster


def is_uri(path: str) -> bool:
    return "://" in str(path)


def check_study_storage(raw: str, *, clustered: bool, source: str = "storage_path") -> None:
    """Refuse a study root that a cluster run cannot share (`nodes_see_folder` then checks an
    absolute one from every node). `raw` is the value after ${VAR} expansion, `source` names where
    it came from (study file and field, or the CLI option)."""
    if is_uri(raw):
        raise ConfigError(
            f"{source}: {raw!r} is a URI; the study folder (features, results, state) is written with POSIX "
            f"file I/O, so mount the bucket or file system (EFS/NFS, s3fs, gcsfuse) and give its path "
            f"(${STORAGE_ENV})"
        )
    if not clustered:
        return
    if not raw or not Path(raw).is_absolute():
        raise ConfigError(
            f"{source}: {raw!r} is relative; on a cluster (RAY_ADDRESS or `ray job submit`) it would land inside "
            f"the job's unpacked working_dir on the head node. Set ${STORAGE_ENV} to a shared mount every node "
            f"sees (cluster/runtime_env.yaml: /mnt/leader/storage) and use storage_path: ${{{STORAGE_ENV}}}"
        )


def nodes_see_folder(folder: Path, *, source: str = "storage_path") -> None:
    """Write a marker into `folder` and read it back from a task pinned to every alive node."""
    marker = folder / f".shared-check-{uuid.uuid4().hex[:12]}"
    token = uuid.uuid4().hex
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(token)
    except OSError as e:
        raise ConfigError(f"{source}: cannot write to {folder} ({e.strerror or e})") from None
    try:
        blind = nodes_missing(marker, token)
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise ConfigError(
            f"{source}: {folder} is not shared: node(s) {', '.join(blind)} cannot read a file the driver wrote "
            f"there. Use a mount every node has (${STORAGE_ENV}, cluster/ray-cluster.yaml mounts EFS at /mnt/leader)"
        )


def nodes_missing(marker: Path, token: str) -> list[str]:
    """Alive nodes (by IP) on which `marker` is absent or holds another token."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def reads(path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [
        reads.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(marker))
        for n in nodes
    ]
    return [
        n.get("NodeManagerAddress", n["NodeID"]) for n, got in zip(nodes, ray.get(refs), strict=True) if got != token
    ]
