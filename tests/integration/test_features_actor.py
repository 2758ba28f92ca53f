"""Feature object store with a real Ray: one load per cluster, same arrays in other processes
and on another node, reload from disk after a restart, LRU budget, re-creation after death."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from leader.features.actor import FeatureStoreConfig, fetch_features, get_store, kill_store
from leader.features.store import features_digest, save_features
from leader.features.types import TeacherFeatures

pytestmark = pytest.mark.slow


def _save(path, n=300, d=16, m=12, seed=0, backbone="tiny"):
    rng = np.random.default_rng(seed)
    f = TeacherFeatures(
        np.arange(5000, 5000 + n, dtype=np.int64),
        rng.standard_normal((n, d)).astype(np.float16),
        rng.random((n, m)).astype(np.float32),
    )
    save_features(path, f, shard_size=128, dataset="t", dataset_fingerprint="f", teacher_hash="h", backbone=backbone)
    return f


def _cfg(**kw):
    return FeatureStoreConfig(name=f"fs_{uuid.uuid4().hex[:8]}", **kw)


_digest = features_digest


def test_two_processes_zero_copy_and_restart(ray_local, tmp_path):
    ray = ray_local
    f = _save(tmp_path / "fs")
    cfg = _cfg()
    got = fetch_features(tmp_path / "fs", cfg)
    np.testing.assert_array_equal(got.hidden, f.hidden)
    assert not got.hidden.flags.writeable  # mapped read-only from plasma, not a private copy

    @ray.remote(num_cpus=0.5)
    def trial(path, cfg_json):
        out = fetch_features(path, FeatureStoreConfig.model_validate_json(cfg_json))
        return os.getpid(), features_digest(out)

    r = ray.get([trial.remote(str(tmp_path / "fs"), cfg.model_dump_json()) for _ in range(2)])
    assert {d for _, d in r} == {_digest(f)} and all(pid != os.getpid() for pid, _ in r)
    info = ray.get(get_store(cfg).info.remote())
    assert len(info["sets"]) == 1 and info["sets"][0]["hits"] >= 2  # loaded once, served thrice

    # a separate driver process connecting to the same cluster
    addr = ray.get_runtime_context().gcs_address
    code = (
        "import sys; from leader.ray_utils import ensure_ray; ensure_ray(address=sys.argv[1]);"
        "from leader.features.actor import fetch_features, FeatureStoreConfig;"
        "from leader.features.store import features_digest;"
        "f=fetch_features(sys.argv[2], FeatureStoreConfig.model_validate_json(sys.argv[3]));"
        "print('DIGEST', features_digest(f))"
    )
    env = {**os.environ}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run(
        [sys.executable, "-c", code, addr, str(tmp_path / "fs"), cfg.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"DIGEST {_digest(f)}" in p.stdout

    # restart: the store is gone with the cluster; a new one reloads from the durable copy
    ray.shutdown()
    from leader.ray_utils import ensure_ray

    ensure_ray(num_cpus=2)
    again = fetch_features(tmp_path / "fs", cfg)
    assert _digest(again) == _digest(f)
    assert ray.get(get_store(cfg).info.remote())["sets"][0]["hits"] == 0
    kill_store(cfg)


def test_store_created_inside_a_trial_outlives_its_placement_group(ray_local, tmp_path):
    """A Tune trial runs in a placement group that capture child tasks; the first trial to fetch
    creates the store. It must not belong to that group, or it dies with the trial."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray = ray_local
    f = _save(tmp_path / "fs")
    cfg = _cfg()
    pg = placement_group([{"CPU": 1}])
    ray.get(pg.ready())

    @ray.remote(num_cpus=1)
    def trial(path, cfg_json):
        out = fetch_features(path, FeatureStoreConfig.model_validate_json(cfg_json))
        return features_digest(out)

    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    assert ray.get(
        trial.options(scheduling_strategy=strategy).remote(str(tmp_path / "fs"), cfg.model_dump_json())
    ) == _digest(f)
    pid = ray.get(get_store(cfg).info.remote())["pid"]
    remove_placement_group(pg)  # the trial ended
    import time

    time.sleep(2)
    info = ray.get(get_store(cfg).info.remote())
    assert info["pid"] == pid and info["sets"][0]["hits"] == 0  # same actor, the set still loaded
    assert _digest(fetch_features(tmp_path / "fs", cfg)) == _digest(f)
    kill_store(cfg)


def test_lru_budget_and_recreate_after_death(ray_local, tmp_path):
    ray = ray_local
    sets = {b: _save(tmp_path / b, seed=i, backbone=b) for i, b in enumerate(["llama-7b", "qwen-7b", "qwen-1.8b"])}
    one = sets["llama-7b"]
    size = one.sample_ids.nbytes + one.hidden.nbytes + one.probs.nbytes
    cfg = _cfg(budget_bytes=int(2.5 * size))
    for b in sets:
        assert _digest(fetch_features(tmp_path / b, cfg)) == _digest(sets[b])
    info = ray.get(get_store(cfg).info.remote())
    held = [s["key"].split("#")[0].rsplit("/", 1)[1] for s in info["sets"]]
    assert held == ["qwen-7b", "qwen-1.8b"] and info["bytes_held"] <= cfg.budget_bytes  # llama evicted (LRU)

    # the store dies (as with node loss): the next fetch re-creates it and reloads from disk
    ray.kill(get_store(cfg), no_restart=True)
    assert _digest(fetch_features(tmp_path / "llama-7b", cfg)) == _digest(one)

    too_small = _cfg(budget_bytes=size // 2)
    from leader.errors import ConfigError

    with pytest.raises(ConfigError, match="budget"):
        fetch_features(tmp_path / "llama-7b", too_small)
    kill_store(cfg)
    kill_store(too_small)


def test_trial_on_second_node(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    f = _save(tmp_path / "fs")
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1, resources={"node2": 1})
        from leader.ray_utils import ensure_ray

        ensure_ray(address=cluster.address)
        cluster.wait_for_nodes()
        cfg = _cfg()
        head_copy = fetch_features(tmp_path / "fs", cfg)  # store actor created from the head's driver

        @ray.remote(num_cpus=0.5, resources={"node2": 0.1})
        def trial(path, cfg_json):
            out = fetch_features(path, FeatureStoreConfig.model_validate_json(cfg_json))
            return ray.get_runtime_context().get_node_id(), features_digest(out)

        node, digest = ray.get(trial.remote(str(tmp_path / "fs"), cfg.model_dump_json()), timeout=120)
        assert digest == _digest(f) == _digest(head_copy)
        assert node != ray.get_runtime_context().get_node_id()
    finally:
        ray.shutdown()
        cluster.shutdown()
