"""Default-size synthetic cohort: prepare within the 60 s target, reload within 2 s, realistic
Table-VI shape, and rare codes that a student really sees only a few times in training."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from leader.data.cache import PrepareOptions, prepare
from leader.data.codes import load_curated
from leader.data.stats import dataset_stats


@pytest.mark.slow
def test_default_synthetic_cohort(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    t = time.perf_counter()
    ds = prepare("synthetic", opts=PrepareOptions())
    prep_s = time.perf_counter() - t
    t = time.perf_counter()
    again = prepare("synthetic", opts=PrepareOptions())
    reload_s = time.perf_counter() - t
    assert prep_s < 60 and reload_s < 2, (prep_s, reload_s)
    assert again.fingerprint == ds.fingerprint

    st = dataset_stats(ds)
    assert 5500 <= st["patients"] <= 6000 and 13000 <= st["visits"] <= 17000
    assert 2.1 <= st["visits_per_patient"] <= 2.7 and 0.5 <= st["single_visit_share"] <= 0.6

    # rare theme codes: few training occurrences each, yet strongly tied to their theme's drugs
    train_pat = set(ds.patients.loc[ds.patients["split"] == "train", "patient_id"])
    tv = ds.visits[ds.visits["patient_id"].isin(train_pat)]
    counts = pd.Series([c for cs in tv["diag"] for c in cs]).value_counts()
    di = ds.vocabs["diag"].index()
    rare = [di[c] for th in load_curated()["themes"] for c, _ in th["rare_diag"] if c in di]
    common = [di[c] for th in load_curated()["themes"] for c, _ in th["common_diag"] if c in di]
    assert np.median([counts.get(i, 0) for i in rare]) <= 10
    assert np.median([counts.get(i, 0) for i in common]) >= 50
