"""Extraction as a Ray job with the tiny teacher: all splits, parallel workers, resumable,
corrupt shards redone, and the result served by the object store after a Ray restart."""

from __future__ import annotations

import numpy as np
import pytest

from leader.features.actor import FeatureStoreConfig, fetch_features, kill_store
from leader.features.extract import extract_features
from leader.features.store import features_digest, load_features, read_manifest

pytestmark = pytest.mark.slow


def test_extract_resume_and_serve(ray_local, random_ds, feature_teacher_dir, tmp_path):
    ds = random_ds
    out = tmp_path / "feats"
    extract_features(ds, feature_teacher_dir, out, workers=2, batch_size=16, shard_size=64)
    m = read_manifest(out)
    n = len(ds.samples())
    assert m.n_rows == n and len(m.shards) == -(-n // 64) and m.extra["computed_shards"] == len(m.shards)
    assert m.dataset_fingerprint == ds.fingerprint and m.backbone == "tiny-llama" and m.d_hidden == 64
    f = load_features(out)
    assert set(f.sample_ids.tolist()) == set(ds.samples()["sample_id"].tolist())  # every split
    assert f.hidden.shape == (n, 64) and f.hidden.dtype == np.float16 and f.probs.shape == (n, ds.n_meds)
    assert np.all((f.probs > 0) & (f.probs < 1)) and np.isfinite(f.hidden.astype(np.float32)).all()

    # the same numbers as running the teacher directly, in the driver, in another order
    from leader.data.prompts import build_prompts
    from leader.teacher.model import load_teacher

    ids = ds.samples("test")["sample_id"].to_numpy()[::-1][:20]
    probs, hidden = load_teacher(feature_teacher_dir).infer(build_prompts(ds, ids), batch_size=7)
    h, p = f.align(ids)
    np.testing.assert_allclose(p, probs, atol=1e-4)
    np.testing.assert_allclose(h.astype(np.float32), hidden.astype(np.float32), atol=2e-2, rtol=1e-2)

    # resume: nothing to do
    extract_features(ds, feature_teacher_dir, out, workers=2, batch_size=16, shard_size=64)
    assert read_manifest(out).extra["computed_shards"] == 0
    # a truncated shard is detected on load, then redone (only it) by a re-run
    victim = out / "shard-00001.probs.npy"
    victim.write_bytes(victim.read_bytes()[:100])
    from leader.errors import CheckpointError

    with pytest.raises(CheckpointError, match="shard-00001.probs.npy"):
        load_features(out)
    extract_features(ds, feature_teacher_dir, out, workers=1, batch_size=16, shard_size=64)
    m2 = read_manifest(out)
    assert m2.extra["computed_shards"] == 1
    assert features_digest(load_features(out)) == features_digest(f)
    # resumed on a machine computing in another format (shard 0 "made" in fp16, shard 1 lost): the
    # lost shard is computed, then shard 0 redone, so one feature set never mixes two formats
    used = load_teacher(feature_teacher_dir).model.precision
    assert m2.precision == used and {r.precision for r in m2.shards} == {used}
    rec_path = out / "shard-00000.json"
    rec_path.write_text(rec_path.read_text().replace(f'"precision": "{used}"', '"precision": "fp16"'))
    extract_features(ds, feature_teacher_dir, out, workers=1, batch_size=16, shard_size=64)
    mixed = read_manifest(out)  # nothing to compute, nothing to compare with: kept, both formats named
    assert mixed.extra["computed_shards"] == 0 and mixed.precision == "+".join(sorted({"fp16", used}))
    victim.write_bytes(victim.read_bytes()[:100])
    extract_features(ds, feature_teacher_dir, out, workers=1, batch_size=16, shard_size=64)
    m3 = read_manifest(out)
    assert m3.extra["computed_shards"] == 2 and m3.precision == used
    assert features_digest(load_features(out)) == features_digest(f)

    # served by the store; after a Ray restart, reloaded from the durable copy
    cfg = FeatureStoreConfig(name="fs_extract_test")
    assert features_digest(fetch_features(out, cfg)) == features_digest(f)
    ray_local.shutdown()
    from leader.ray_utils import ensure_ray

    ensure_ray(num_cpus=2)
    assert features_digest(fetch_features(out, cfg)) == features_digest(f)
    kill_store(cfg)
