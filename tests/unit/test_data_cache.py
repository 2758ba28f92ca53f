"""prepare(): cache keyed by inputs + options, fast reload, patient-level split, errors."""

from __future__ import annotations

import time

import pytest

from leader.data.cache import PrepareOptions, dataset_dir, prepare
from leader.data.stats import dataset_stats
from leader.errors import DataError


def test_cache_roundtrip_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    opts = PrepareOptions(n_patients=120, synthetic_seed=2)
    ds = prepare("synthetic", opts=opts)
    folder = dataset_dir("synthetic", None, opts)
    assert (folder / "meta.json").exists() and not (folder.parent / f"{folder.name}.raw").exists()
    t = time.perf_counter()
    again = prepare("synthetic", opts=opts)
    assert time.perf_counter() - t < 2.0
    assert again.fingerprint == ds.fingerprint
    assert again.visits["med"].tolist() == ds.visits["med"].tolist()
    # any option change -> a different cache entry
    assert dataset_dir("synthetic", None, PrepareOptions(n_patients=120, synthetic_seed=2, top_k_med=10)) != folder
    assert dataset_dir("synthetic", None, PrepareOptions(n_patients=120, synthetic_seed=3)) != folder
    # the synthetic knobs do not affect other sources' keys
    assert PrepareOptions(n_patients=50).relevant("mimic3") == PrepareOptions().relevant("mimic3")


def test_patient_level_split_no_leakage(small_synthetic):
    ds = small_synthetic
    s = ds.samples()
    per_patient = s.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    sizes = ds.patients["split"].value_counts(normalize=True)
    assert abs(sizes["train"] - 0.8) < 0.03 and abs(sizes["val"] - 0.1) < 0.03
    ids = {sp: set(ds.samples(sp)["patient_id"]) for sp in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    # group labels: single == exactly one visit
    assert ((ds.patients["n_visits"] == 1) == (ds.patients["group"] == "single")).all()


def test_split_seed_changes_split(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    a = prepare("synthetic", opts=PrepareOptions(n_patients=100, split_seed=0))
    b = prepare("synthetic", opts=PrepareOptions(n_patients=100, split_seed=1))
    assert a.patients["split"].tolist() != b.patients["split"].tolist()
    assert a.fingerprint != b.fingerprint


def test_demo_prepare_and_stats(demo_root):
    ds = prepare("demo")
    st = dataset_stats(ds)
    assert st["visits"] == 107 and st["patients"] == 82
    assert st["single_visit_patients"] == 71
    assert st["warnings"]["prescription_rows_unknown_ndc"] > 0


def test_demo_absent_is_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("LEADER_DEMO_ROOT", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="demo not found"):
        prepare("demo")


def test_bad_source_and_root(tmp_path):
    with pytest.raises(DataError, match="unknown source"):
        prepare("mimic5")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="needs --root"):
        prepare("mimic3")
    with pytest.raises(DataError, match="does not exist"):
        prepare("mimic4", tmp_path / "missing")
