"""The cluster's feature object store: one named, detached Ray actor that loads each feature
set once from its durable copy and hands out ObjectRefs.

Why an actor: a sweep runs hundreds of trials; each reading (and checksumming) the shards from
shared storage, or worse recomputing the teacher, would dominate trial start-up. The actor
`ray.put`s the arrays once; a trial's `ray.get` maps them read-only from the node's plasma
store (zero-copy on the same node, one transfer per node otherwise).

Memory is budgeted, not accidental: the actor holds feature sets up to `budget_bytes` and drops
the least recently used one (logged) when a new one would exceed it; dropping its refs lets Ray
free the objects once no trial still uses them. Beyond that, Ray spills plasma objects to disk
instead of failing - configure where with `spilling_system_config(dir)` passed to
`ray.init(_system_config=...)` (or `ray start --system-config`), ideally on local NVMe.

Node loss: the actor owns the objects, so if its node dies the refs become unusable; it is
created with `max_restarts=-1`, and `fetch_features` re-creates / re-asks it, and it reloads
from the durable copy.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from leader.errors import ConfigError, LeaderError
from leader.features.types import TeacherFeatures

log = logging.getLogger("leader.features.actor")

ACTOR_NAME = "leader_feature_store"
NAMESPACE = "leader"


class FeatureStoreConfig(BaseModel):
    """Where the store actor lives and how much plasma memory it may pin."""

    name: str = Field(ACTOR_NAME, description="Ray actor name of the feature store.")
    namespace: str = Field(NAMESPACE, description="Ray namespace of the feature store actor.")
    budget_bytes: int | None = Field(
        None,
        description="Most bytes of feature arrays held at once (LRU eviction beyond). "
        "Default: env LEADER_FEATURE_STORE_BUDGET, else half the cluster's object store memory.",
    )
    max_retries: int = Field(4, description="Times fetch_features re-creates a dead store and retries.")


def spilling_system_config(directory: str | Path) -> dict:
    """`_system_config` for ray.init that spills plasma objects to `directory` when the object
    store is full (Ray's default is the session temp dir, often on a small root disk)."""
    return {"object_spilling_config": json.dumps({"type": "filesystem", "params": {"directory_path": str(directory)}})}


def _key(path: str | Path) -> str:
    from leader.features.store import manifest_digest

    return f"{Path(path).resolve()}#{manifest_digest(path)}"


def _make_actor_cls():
    # long: the actor class is defined inside this factory so `import ray` waits until it is needed;
    # its methods (load, put, fetch, pin, health) are one unit and read best together
    import ray

    @ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
    class FeatureStore:
        """Holds feature sets keyed by (resolved path, manifest digest), LRU within a budget."""

        def __init__(self, budget_bytes: int):
            self.budget = int(budget_bytes)
            self.held: OrderedDict[str, dict] = OrderedDict()
            logging.basicConfig(level=logging.INFO)
            log.info("feature store up (pid %d), budget %.1f MiB", os.getpid(), self.budget / 2**20)

        def get(self, path: str) -> dict:
            """{'ref': ObjectRef of the arrays, 'meta': manifest summary, 'loaded': bool}; the
            ref stays nested so callers receive the reference, not a copy."""
            from leader.features.store import load_features

            key = _key(path)
            if key in self.held:
                self.held.move_to_end(key)
                e = self.held[key]
                e["hits"] += 1
                return {"ref": [e["ref"]], "meta": e["meta"], "loaded": False}
            t0 = time.perf_counter()
            feats = load_features(path)
            size = int(feats.sample_ids.nbytes + feats.hidden.nbytes + feats.probs.nbytes)
            if size > self.budget:
                raise ConfigError(
                    f"feature set {path} needs {size} bytes, more than the feature store budget "
                    f"budget_bytes={self.budget}; raise it (FeatureStoreConfig.budget_bytes or "
                    f"LEADER_FEATURE_STORE_BUDGET)"
                )
            while self.held and self.bytes_held() + size > self.budget:
                old, e = self.held.popitem(last=False)
                log.warning(
                    "feature store: evicting %s (%.1f MiB, %d hits) to fit %s within budget %.1f MiB",
                    old,
                    e["bytes"] / 2**20,
                    e["hits"],
                    key,
                    self.budget / 2**20,
                )
            ref = ray.put({"sample_ids": feats.sample_ids, "hidden": feats.hidden, "probs": feats.probs})
            self.held[key] = {"ref": ref, "meta": feats.meta, "bytes": size, "hits": 0}
            log.info(
                "feature store: loaded %s (%d rows, %.1f MiB) in %.2fs",
                key,
                len(feats.sample_ids),
                size / 2**20,
                time.perf_counter() - t0,
            )
            return {"ref": [ref], "meta": feats.meta, "loaded": True}

        def bytes_held(self) -> int:
            return sum(e["bytes"] for e in self.held.values())

        def info(self) -> dict:
            return {
                "pid": os.getpid(),
                "budget_bytes": self.budget,
                "bytes_held": self.bytes_held(),
                "sets": [{"key": k, "bytes": e["bytes"], "hits": e["hits"]} for k, e in self.held.items()],
            }

        def evict(self, path: str | None = None) -> int:
            """Drop one feature set (or all); returns how many were dropped."""
            if path is None:
                n = len(self.held)
                self.held.clear()
                return n
            key = _key(path)
            return int(self.held.pop(key, None) is not None)

    return FeatureStore


_ACTOR_CLS = None


def _default_budget(ray) -> int:
    env = os.environ.get("LEADER_FEATURE_STORE_BUDGET")
    if env:
        try:
            return int(float(env))
        except ValueError as e:
            raise ConfigError(f"env LEADER_FEATURE_STORE_BUDGET={env!r} is not a byte count") from e
    return int(ray.cluster_resources().get("object_store_memory", 2 * 2**30) * 0.5)


def get_store(config: FeatureStoreConfig | None = None):
    """The cluster's store actor, created (detached) if absent."""
    global _ACTOR_CLS
    from leader.ray_utils import ensure_ray

    ray = ensure_ray()
    cfg = config or FeatureStoreConfig()
    if _ACTOR_CLS is None:
        _ACTOR_CLS = _make_actor_cls()
    budget = cfg.budget_bytes if cfg.budget_bytes is not None else _default_budget(ray)
    # Escape the caller's placement group: a store created from inside a Tune trial would
    # otherwise be captured by the trial's group and killed when that trial ends. An explicit
    # "DEFAULT" strategy skips Ray's placement-group capture altogether.
    return _ACTOR_CLS.options(
        name=cfg.name, namespace=cfg.namespace, lifetime="detached", get_if_exists=True, scheduling_strategy="DEFAULT"
    ).remote(budget)


def kill_store(config: FeatureStoreConfig | None = None) -> bool:
    """Remove the store actor (its objects are freed); False if there was none."""
    import ray

    cfg = config or FeatureStoreConfig()
    try:
        h = ray.get_actor(cfg.name, namespace=cfg.namespace)
    except ValueError:
        return False
    ray.kill(h, no_restart=True)
    return True


def fetch_features(path: str | Path, config: FeatureStoreConfig | None = None) -> TeacherFeatures:
    """What a Tune trial calls: the feature set at `path`, zero-copy and read-only from plasma.

    If the store actor (or the node owning its objects) died, it is re-created and the set is
    reloaded from the durable copy."""
    import ray
    from ray.exceptions import ActorUnavailableError, ObjectLostError, OwnerDiedError, RayActorError

    cfg = config or FeatureStoreConfig()
    path = str(Path(path).resolve())
    last: Exception | None = None
    for attempt in range(cfg.max_retries + 1):
        store = get_store(cfg)
        try:
            out = ray.get(store.get.remote(path))
            arrays = ray.get(out["ref"][0])
            return TeacherFeatures(
                sample_ids=arrays["sample_ids"], hidden=arrays["hidden"], probs=arrays["probs"], meta=out["meta"]
            )
        except ActorUnavailableError as e:
            # The actor is restarting (max_restarts=-1): wait for it rather than kill it, which
            # would cascade into every concurrent trial re-creating the store.
            last = e
            log.info("feature store restarting; retrying (attempt %d)", attempt + 1)
            time.sleep(min(0.5 * 2**attempt, 5.0))
            if attempt >= 2:  # stuck restarting (e.g. its placement group is gone): replace it
                try:
                    kill_store(cfg)
                except Exception:
                    pass
        except (RayActorError, OwnerDiedError, ObjectLostError) as e:
            last = e
            log.warning("feature store unavailable (%s); re-creating it (attempt %d)", type(e).__name__, attempt + 1)
            try:
                kill_store(cfg)
            except Exception:
                pass
        except ray.exceptions.RayTaskError as e:
            if isinstance(getattr(e, "cause", None), LeaderError):
                raise e.cause from None  # e.g. a corrupt shard: CheckpointError naming the file
            raise
    raise RuntimeError(f"feature store could not serve {path}") from last


def as_numpy(feats: TeacherFeatures) -> dict[str, np.ndarray]:
    return {"sample_ids": feats.sample_ids, "hidden": feats.hidden, "probs": feats.probs}
