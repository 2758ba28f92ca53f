"""Synthetic cohort: round-trips through the MIMIC-III reader, realistic shape, latent
diagnosis -> drug structure (including rare, name-only-linked codes), seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leader.data.codes import load_curated
from leader.data.mimic import read_mimic3
from leader.data.synthetic import SyntheticConfig, generate


def _theme(name: str) -> dict:
    return next(t for t in load_curated()["themes"] if t["name"] == name)


def _cooccurrence(ds, diag_codes: set[str], atc: str) -> tuple[float, float, int]:
    """(P(atc | any of diag_codes), P(atc | none of them), #visits with them)."""
    di, mi = ds.vocabs["diag"].index(), ds.vocabs["med"].index()
    ids = {di[c] for c in diag_codes if c in di}
    has = ds.visits["diag"].map(lambda cs: bool(ids & set(cs))).to_numpy()
    med = ds.visits["med"].map(lambda ms: mi[atc] in ms).to_numpy()
    return float(med[has].mean()), float(med[~has].mean()), int(has.sum())


def test_fixture_shape(small_synthetic):
    ds = small_synthetic
    p = ds.patients
    assert 350 <= len(p) <= 400
    assert 2.0 <= len(ds.visits) / len(p) <= 2.9
    assert 0.45 <= (p["group"] == "single").mean() <= 0.65
    assert len(ds.vocabs["med"]) > 30 and len(ds.vocabs["diag"]) > 200
    assert ds.vocabs["med"].names[ds.vocabs["med"].index()["A10A"]] == "Insulins and analogues"
    ds.validate()


def test_structure_links_diabetes_to_a10(small_synthetic):
    th = _theme("diabetes")
    p_with, p_without, n = _cooccurrence(small_synthetic, {c for c, _ in th["common_diag"]}, "A10A")
    assert n > 30 and p_with > 0.7 and p_without < 0.25


def test_rare_codes_are_rare_and_linked_by_name(small_synthetic):
    ds = small_synthetic
    th = _theme("diabetes")
    rare = {c for c, _ in th["rare_diag"]}
    assert all("diabet" in t.lower() for _, t in th["rare_diag"])  # the name is the link
    di = ds.vocabs["diag"].index()
    counts = pd.Series([c for cs in ds.visits["diag"] for c in cs]).value_counts()
    rare_counts = [int(counts.get(di[c], 0)) for c in rare if c in di]
    common_counts = [int(counts.get(di[c], 0)) for c, _ in th["common_diag"] if c in di]
    assert rare_counts and np.median(rare_counts) * 3 < np.median(common_counts)
    p_with, p_without, n = _cooccurrence(ds, rare, "A10A")
    assert n >= 5 and p_with > 0.6 and p_without < 0.3


def test_structure_strength_zero_removes_signal(tmp_path):
    root = generate(tmp_path / "s0", SyntheticConfig(n_patients=300, structure_strength=0.0, seed=1))
    from leader.data.assemble import assemble

    ds = assemble("s0", *read_mimic3(root)[:3])
    th = _theme("diabetes")
    p_with, p_without, _ = (
        _cooccurrence(ds, {c for c, _ in th["common_diag"]}, "A10A")
        if "A10A" in ds.vocabs["med"].index()
        else (0, 0, 0)
    )
    assert abs(p_with - p_without) < 0.15


def test_seeded_and_fresh_clone_safe(tmp_path, monkeypatch):
    # no ../shared needed: hide the demo and mappings
    monkeypatch.setenv("LEADER_DEMO_ROOT", str(tmp_path / "absent"))
    a = generate(tmp_path / "a", SyntheticConfig(n_patients=50, seed=7))
    b = generate(tmp_path / "b", SyntheticConfig(n_patients=50, seed=7))
    c = generate(tmp_path / "c", SyntheticConfig(n_patients=50, seed=8))
    for t in ("ADMISSIONS", "DIAGNOSES_ICD", "PRESCRIPTIONS"):
        assert (a / f"{t}.csv").read_bytes() == (b / f"{t}.csv").read_bytes()
    assert (a / "PRESCRIPTIONS.csv").read_bytes() != (c / "PRESCRIPTIONS.csv").read_bytes()
    v, names, prof, w = read_mimic3(a)  # mapping found next to the CSVs
    assert "prescription_rows_unknown_ndc" not in w
    assert len(v) == len(pd.read_csv(a / "ADMISSIONS.csv"))


def test_bad_config():
    with pytest.raises(ValueError):
        SyntheticConfig(rare_share=1.5)
