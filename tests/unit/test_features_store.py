"""Durable feature store: round trip, checksums, resumability, alignment by sample id."""

from __future__ import annotations

import numpy as np
import pytest

from leader.errors import CheckpointError
from leader.features.store import (
    FeatureManifest,
    check_shard,
    load_features,
    manifest_digest,
    read_manifest,
    save_features,
    write_manifest,
    write_shard,
)
from leader.features.types import TeacherFeatures


def _feats(n=50, d=8, m=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1000, 1000 + n)).astype(np.int64)
    return TeacherFeatures(ids, rng.standard_normal((n, d)).astype(np.float16), rng.random((n, m)).astype(np.float32))


MF = dict(dataset="t", dataset_fingerprint="f", teacher_hash="h", backbone="tiny")


def test_round_trip_and_manifest(tmp_path):
    f = _feats()
    save_features(tmp_path, f, shard_size=16, **MF)
    m = read_manifest(tmp_path)
    assert [s.rows for s in m.shards] == [16, 16, 16, 2] and m.n_rows == 50 and m.d_hidden == 8 and m.n_meds == 5
    g = load_features(tmp_path)
    assert g.hidden.dtype == np.float16 and g.probs.dtype == np.float32 and g.sample_ids.dtype == np.int64
    np.testing.assert_array_equal(g.sample_ids, f.sample_ids)
    np.testing.assert_array_equal(g.hidden, f.hidden)
    np.testing.assert_array_equal(g.probs, f.probs)
    assert g.meta["backbone"] == "tiny" and g.meta["dataset_fingerprint"] == "f"


def test_truncated_shard_named(tmp_path):
    save_features(tmp_path, _feats(), shard_size=16, **MF)
    victim = tmp_path / "shard-00002.hidden.npy"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="shard-00002.hidden.npy"):
        load_features(tmp_path)
    assert check_shard(tmp_path, 2) is None and check_shard(tmp_path, 1) is not None


def test_corrupt_byte_and_missing_file(tmp_path):
    save_features(tmp_path, _feats(), shard_size=16, **MF)
    p = tmp_path / "shard-00000.probs.npy"
    b = bytearray(p.read_bytes())
    b[-1] ^= 0xFF
    p.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match="shard-00000.probs.npy"):
        load_features(tmp_path)
    p.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_features(tmp_path)


def test_no_manifest_means_unfinished(tmp_path):
    f = _feats()
    write_shard(tmp_path, 0, f.sample_ids, f.hidden, f.probs)
    with pytest.raises(CheckpointError, match="manifest"):
        load_features(tmp_path)


def test_check_shard_detects_replanned_ids(tmp_path):
    f = _feats()
    write_shard(tmp_path, 0, f.sample_ids[:10], f.hidden[:10], f.probs[:10])
    assert check_shard(tmp_path, 0, f.sample_ids[:10]) is not None
    assert check_shard(tmp_path, 0, f.sample_ids[1:11]) is None
    (tmp_path / "shard-00000.json").write_text("{not json")
    assert check_shard(tmp_path, 0) is None


def test_manifest_digest_changes_on_rewrite(tmp_path):
    save_features(tmp_path, _feats(), shard_size=16, **MF)
    d1 = manifest_digest(tmp_path)
    m = read_manifest(tmp_path)
    write_manifest(tmp_path, FeatureManifest(**{**m.model_dump(), "teacher_hash": "other"}))
    assert manifest_digest(tmp_path) != d1


def test_align_after_shuffling_store_rows(tmp_path):
    """Students read features by sample id: shuffling the stored rows must not change what a
    split sees."""
    f = _feats(n=40)
    save_features(tmp_path / "a", f, shard_size=7, **MF)
    perm = np.random.default_rng(1).permutation(40)
    save_features(
        tmp_path / "b", TeacherFeatures(f.sample_ids[perm], f.hidden[perm], f.probs[perm]), shard_size=7, **MF
    )
    a, b = load_features(tmp_path / "a"), load_features(tmp_path / "b")
    assert not np.array_equal(a.sample_ids, b.sample_ids)
    split = np.sort(f.sample_ids)[::3]
    ha, pa = a.align(split)
    hb, pb = b.align(split)
    np.testing.assert_array_equal(ha, hb)
    np.testing.assert_array_equal(pa, pb)
    # and the aligned rows are the right ones
    row = int(np.where(f.sample_ids == split[2])[0][0])
    np.testing.assert_array_equal(ha[2], f.hidden[row])
    with pytest.raises(KeyError, match="99"):
        a.align(np.array([99]))


@pytest.mark.parametrize("field", ["hidden", "probs"])
def test_write_shard_refuses_non_finite(tmp_path, field):
    """An fp16 teacher that overflowed: the shard is refused before any file is written, naming
    the file, the field and how many values are bad."""
    f = _feats(n=10)
    arrs = {"hidden": f.hidden.copy(), "probs": f.probs.copy()}
    arrs[field][3, 1] = np.nan
    arrs[field][5, 0] = np.inf
    with pytest.raises(CheckpointError, match=rf"shard-00004\.{field}\.npy.*'{field}' has 2 non-finite"):
        write_shard(tmp_path, 4, f.sample_ids, arrs["hidden"], arrs["probs"])
    assert not list(tmp_path.glob("shard-00004*"))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_write_shard_refuses_fp16_overflow(tmp_path):
    """A float32 hidden state above fp16's range is inf once stored: checked after the cast."""
    f = _feats(n=4)
    h = f.hidden.astype(np.float32)
    h[0, 0] = 1e6
    with pytest.raises(CheckpointError, match=r"shard-00000\.hidden\.npy.*1 non-finite"):
        write_shard(tmp_path, 0, f.sample_ids, h, f.probs)


def test_finished_shard_with_nan_refused_on_load(tmp_path):
    """A finished shard whose values became NaN (written before the check existed), with its
    checksums made consistent again so only the finiteness check can catch it."""
    import json

    from leader.features.store import sha256_file

    save_features(tmp_path, _feats(), shard_size=16, **MF)
    victim = tmp_path / "shard-00001.probs.npy"
    arr = np.load(victim)
    arr[0, 0] = np.nan
    np.save(victim, arr)
    digest = sha256_file(victim)
    rec = json.loads((tmp_path / "shard-00001.json").read_text())
    rec["sha256"][victim.name] = digest
    (tmp_path / "shard-00001.json").write_text(json.dumps(rec))
    m = read_manifest(tmp_path)
    m.shards[1].sha256[victim.name] = digest
    write_manifest(tmp_path, m)
    with pytest.raises(CheckpointError, match=r"shard-00001\.probs\.npy.*'probs' has 1 non-finite"):
        load_features(tmp_path)
    with pytest.raises(CheckpointError, match=r"shard-00001\.probs\.npy"):
        check_shard(tmp_path, 1)
    assert check_shard(tmp_path, 0) is not None
