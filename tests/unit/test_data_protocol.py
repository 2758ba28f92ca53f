"""Data protocol options (leader.data.cohort, PrepareOptions, `leader data stats --protocol`) on a
hand-made cohort whose counts are worked out below, plus the pins that keep the default cohort's
cache key and fingerprint what they were before the options existed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from leader.cli.main import app
from leader.config.protocol import AUTHORS_PROTOCOL, AUTHORS_SOURCES, authors_protocol
from leader.data.assemble import assemble
from leader.data.cache import PrepareOptions, cache_key, prepare
from leader.data.cohort import CohortProtocol, patient_order, sequential_split
from leader.data.dataset import EHRDataset
from leader.data.drops import DropLog
from leader.data.mimic import top_k_filter
from leader.data.stats import cohort_counts, cohort_signature
from leader.errors import DataError

# The hand-made cohort. Visit ids are hadm_ids; t = days after the first admission; rx = the
# admission has a prescription row (before NDC mapping and the joins).
#   patient  visit  t  diag      proc  med      rx
#   1        101    0  D1 D2     P1    M1       yes
#   2        201    0  D1 D3     P1    M1 M2    yes
#   2        202    1  D1        P2    M2       yes
#   3        301    0  D1        P1    M1       yes
#   3        302    1  D2        P1    M3       yes
#   3        303    2  D4        P3    M1       yes
#   4        401    0  D5        P4    M4       yes
#   5        502    0  D1        P1    M1       yes   (hadm_ids out of time order, as in MIMIC)
#   5        501    1  D2        P1    M2       yes
#   10       1001   0  D1        P1    M1       yes
#   10       1002   1  D2        P2    -        yes   (its drugs did not map: dropped, visit_empty_med)
# Prepared (default): 10 visits, 6 patients; single = {1, 4, 10} (3), multi = {2, 3, 5} (3).
# Subject order is numeric: 1, 2, 3, 4, 5, 10.
ROWS = [
    ("1", 101, 0, ["D1", "D2"], ["P1"], ["M1"]),
    ("2", 201, 0, ["D1", "D3"], ["P1"], ["M1", "M2"]),
    ("2", 202, 1, ["D1"], ["P2"], ["M2"]),
    ("3", 301, 0, ["D1"], ["P1"], ["M1"]),
    ("3", 302, 1, ["D2"], ["P1"], ["M3"]),
    ("3", 303, 2, ["D4"], ["P3"], ["M1"]),
    ("4", 401, 0, ["D5"], ["P4"], ["M4"]),
    ("5", 502, 0, ["D1"], ["P1"], ["M1"]),
    ("5", 501, 1, ["D2"], ["P1"], ["M2"]),
    ("10", 1001, 0, ["D1"], ["P1"], ["M1"]),
    ("10", 1002, 1, ["D2"], ["P2"], []),
]


def _raw() -> pd.DataFrame:
    t0 = pd.Timestamp("2150-01-01")
    return pd.DataFrame(
        [
            dict(patient_id=p, visit_id=v, admittime=t0 + pd.Timedelta(days=30 * t), diag=d, proc=r, med=m, sex="F")
            for p, v, t, d, r, m in ROWS
        ]
    ).assign(rx_admission=True)


def _build(top_k: dict | None = None, **protocol):
    v, warnings = _raw(), {}
    for kind, k in (top_k or {}).items():
        top_k_filter(v, kind, k, warnings)  # the readers' step, before assemble
    names = {k: {} for k in ("diag", "proc", "med")}
    return assemble("hand", v, names, ["sex"], warnings=warnings, drops=DropLog(), protocol=CohortProtocol(**protocol))


def _c(ds) -> dict:
    return cohort_counts(ds)


# ------------------------------------------------------------------ defaults are today's cohort
def test_default_cache_key_and_fingerprint_are_pinned(tmp_path, monkeypatch):
    # Literals computed with the code BEFORE the protocol options were added (git 3f6d86b):
    #   o = PrepareOptions(n_patients=300); cache_key('synthetic', None, o) -> d8557d742453a7f4
    #   prepare('synthetic', opts=o).fingerprint -> b97858790bb6fe06
    #   leader.data.stats.cohort_signature(that dataset) -> 8c5c83679736e762
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    o = PrepareOptions(n_patients=300)
    assert cache_key("synthetic", None, o) == "d8557d742453a7f4"
    ds = prepare("synthetic", opts=o)
    assert ds.fingerprint == "b97858790bb6fe06"
    assert cohort_signature(ds) == "8c5c83679736e762"
    assert "protocol" not in ds.provenance and ds.sampling == "per_visit"
    assert set(o.relevant("mimic3")) == {
        "top_k_diag",
        "top_k_proc",
        "top_k_med",
        "first_24h",
        "mapping_dir",
        "split_seed",
        "split_ratios",
    }
    # a non-default protocol value is hashed; its seed only where a sample is drawn
    assert PrepareOptions(samples="last_visit").relevant("mimic3")["samples"] == "last_visit"
    assert "protocol_seed" not in PrepareOptions(protocol_seed=5).relevant("mimic3")
    assert PrepareOptions(patient_fraction=0.5).relevant("mimic3")["protocol_seed"] == 0
    assert cache_key("synthetic", None, PrepareOptions(n_patients=300, split="sequential")) != "d8557d742453a7f4"


def test_default_protocol_on_the_hand_cohort():
    c = _c(_build())
    assert (c["patients"], c["samples"], c["visits"]) == (6, 10, 10)
    assert (c["single_visit_patients"], c["multi_visit_patients"]) == (3, 3)
    assert (c["n_diag"], c["n_proc"], c["n_med"]) == (5, 4, 4)


# ------------------------------------------------------------------ one test per option
def test_samples_last_visit_one_per_patient_with_its_history():
    ds = _build(samples="last_visit")
    s = ds.samples()
    assert len(s) == 6 and len(ds.visits) == 10  # one sample per patient; earlier visits kept as history
    assert sorted(s["sample_id"]) == [101, 202, 303, 401, 501, 1001]  # 5's last by admittime is 501
    hist, cur = ds.history(303)
    assert list(hist["visit_id"]) == [301, 302] and cur["visit_id"] == 303
    assert set(s.loc[s["sample_id"].isin([101, 401, 1001]), "history"]) == {"no_history"}
    assert ds.fingerprint != _build().fingerprint


def test_last_visit_sampling_survives_save_and_load(tmp_path):
    ds = _build(samples="last_visit")
    back = EHRDataset.load(ds.save(tmp_path / "ds"))
    assert back.sampling == "last_visit" and len(back.samples()) == 6
    assert back.fingerprint == ds.fingerprint and cohort_signature(back) != cohort_signature(_build())


def test_visit_order_hadm_id_is_the_authors_bug_behind_a_flag():
    s = _build(samples="last_visit", visit_order="hadm_id").samples()
    assert 502 in set(s["sample_id"]) and 501 not in set(s["sample_id"])  # hadm 502 > 501, though earlier


def test_min_visits_counts_prepared_visits():
    # min 2 on prepared visits: 10's second visit was dropped (no drugs), so only 2, 3, 5 stay: 7 visits
    ds = _build(min_visits=2)
    c = _c(ds)
    assert (c["patients"], c["visits"], c["single_visit_patients"], c["multi_visit_patients"]) == (3, 7, 0, 3)
    assert ds.warnings["patients_dropped_min_visits"] == 3  # 1, 4, 10
    # min 3: only patient 3
    assert _c(_build(min_visits=3))["patients"] == 1


def test_min_visits_on_prescriptions_keeps_the_authors_single_visit_group():
    # counted on prescribed admissions (the authors' process_visit_lg2): 10 has two, so it stays,
    # with one prepared visit: it is the single-visit group. 2 + 3 + 2 + 1 = 8 visits.
    c = _c(_build(min_visits=2, min_visits_basis="prescriptions", samples="last_visit"))
    assert (c["patients"], c["samples"], c["visits"]) == (4, 4, 8)
    assert (c["single_visit_patients"], c["multi_visit_patients"]) == (1, 3)


def test_min_visits_on_prescriptions_needs_the_reader_column():
    v = _raw().drop(columns="rx_admission")
    with pytest.raises(DataError, match="min_visits_basis"):
        assemble("x", v, {}, ["sex"], protocol=CohortProtocol(min_visits=2, min_visits_basis="prescriptions"))


def test_top_k_diag_keeps_in_vocabulary_codes_and_drops_emptied_visits():
    # visits holding each diagnosis: D1 6, D2 4 (incl. 1002), D3 1, D4 1, D5 1.
    # top 2 = {D1, D2}: 201 keeps D1 only; 303 (D4) and 401 (D5) lose every diagnosis and go;
    # patient 4 goes with its only visit. 10 - 2 = 8 visits, 5 patients.
    ds = _build(top_k={"diag": 2})
    c = _c(ds)
    assert (c["n_diag"], c["visits"], c["patients"]) == (2, 8, 5)
    assert ds.visits.set_index("visit_id").loc[201, "diag"] == [ds.vocabs["diag"].index()["D1"]]
    assert ds.warnings["visits_dropped_empty_diag"] == 2
    # ties go by code: top 3 = D1, D2, then D3 of the three single-visit codes
    assert _build(top_k={"diag": 3}).vocabs["diag"].codes == ("D1", "D2", "D3")


def test_top_k_proc():
    # P1 7 visits, P2 2, P3 1, P4 1; top 1 = {P1}: 202, 303, 401 go (1002 goes anyway): 7 visits
    c = _c(_build(top_k={"proc": 1}))
    assert (c["n_proc"], c["visits"], c["patients"]) == (1, 7, 5)


def test_top_k_med():
    # M1 6 visits, M2 3, M3 1, M4 1; top 2 = {M1, M2}: 302 and 401 go: 8 visits, patient 4 gone
    c = _c(_build(top_k={"med": 2}))
    assert (c["n_med"], c["visits"], c["patients"]) == (2, 8, 5)


def test_patient_fraction_is_seeded_and_is_the_authors_numpy_call():
    a, b, other = (_build(patient_fraction=0.5, protocol_seed=s) for s in (42, 42, 7))
    assert list(a.patients["patient_id"]) == list(b.patients["patient_id"])
    assert len(a.patients) == 3  # int(6 * 0.5)
    want = set(np.random.RandomState(42).choice(np.array([1, 2, 3, 4, 5, 10]), 3, replace=False).astype(str))
    assert set(a.patients["patient_id"]) == want
    assert set(other.patients["patient_id"]) != want
    assert a.warnings["patients_not_sampled"] == 3
    with pytest.raises(DataError, match="patient_fraction"):
        _build(patient_fraction=0.1)  # int(6 * 0.1) = 0 patients


def test_split_sequential_in_subject_order():
    assert patient_order(["10", "2", "1"]) == ["1", "2", "10"] and patient_order(["b", "a"]) == ["a", "b"]
    p = _build(split="sequential").patients.set_index("patient_id")["split"]
    # 6 patients: int(4.8) = 4 train, int(0.6) = 0 val, the remaining 2 test, in numeric subject order
    assert [p[i] for i in ("1", "2", "3", "4", "5", "10")] == ["train"] * 4 + ["test"] * 2
    s = sequential_split([str(i) for i in range(13)])  # the demo's 13 authors' patients: 10 / 1 / 2
    assert [s[str(i)] for i in range(13)] == ["train"] * 10 + ["val"] + ["test"] * 2
    s = sequential_split([f"p{i:03d}" for i in range(200)])
    assert [sum(v == k for v in s.values()) for k in ("train", "val", "test")] == [160, 20, 20]


def test_bad_values_are_refused_with_the_field_named():
    for bad in (
        {"samples": "last"},
        {"min_visits": 0},
        {"patient_fraction": 0},
        {"patient_fraction": 1.5},
        {"split": "seq"},
        {"protocol_seed": -1},
        {"min_visits_basis": "rx"},
        {"visit_order": "time"},
        {"min_visit": 2},
    ):
        with pytest.raises(ValidationError) as e:
            PrepareOptions(**bad)
        assert next(iter(bad)) in str(e.value)
    r = CliRunner().invoke(app, ["data", "stats", "--dataset", "synthetic", "--set", "min_visits=0"])
    assert r.exit_code != 0 and "--set min_visits=0" in r.output


def test_authors_protocol_has_a_source_for_every_value():
    assert set(AUTHORS_PROTOCOL) <= set(AUTHORS_SOURCES)
    PrepareOptions(**authors_protocol("mimic3"))
    m4 = PrepareOptions(**authors_protocol("mimic4", bugs=True))
    assert (m4.top_k_proc, m4.patient_fraction, m4.protocol_seed, m4.visit_order) == (1001, 0.15, 42, "hadm_id")


# ------------------------------------------------------------------ leader data stats
def test_stats_prints_the_authors_protocol_beside_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    args = ["data", "stats", "--dataset", "synthetic", "--n-patients", "300", "--protocol", "authors"]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    cols = json.loads(r.stdout[r.stdout.index("{") :])
    default, authors = cols["per_visit (options given)"], cols["authors"]
    # measured (docs/data_protocol.md): the synthetic cohort codes every admission fully, so
    # min_visits 2 leaves the 153 multi-visit patients and no single-visit one, either basis
    assert (default["patients"], default["samples"], default["single_visit_patients"]) == (300, 758, 147)
    assert (authors["patients"], authors["samples"], authors["single_visit_patients"]) == (153, 153, 0)
    assert (authors["train_patients"], authors["val_patients"], authors["test_patients"]) == (122, 15, 16)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "single-visit group" in r.stdout and "authors" in r.stdout


def test_authors_protocol_on_the_demo(demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    default = cohort_counts(prepare("demo"))
    authors = cohort_counts(prepare("demo", opts=PrepareOptions(**authors_protocol("demo"))))
    prepared_basis = cohort_counts(
        prepare("demo", opts=PrepareOptions(**{**authors_protocol("demo"), "min_visits_basis": "prepared"}))
    )
    assert (default["patients"], default["samples"], default["single_visit_patients"]) == (82, 107, 71)
    assert (default["n_diag"], default["n_proc"], default["n_med"]) == (523, 157, 106)
    assert (authors["patients"], authors["samples"], authors["visits"]) == (13, 13, 38)
    assert (authors["single_visit_patients"], authors["multi_visit_patients"]) == (2, 11)
    assert (authors["n_diag"], authors["n_proc"], authors["n_med"]) == (246, 58, 82)
    assert (authors["train_patients"], authors["val_patients"], authors["test_patients"]) == (10, 1, 2)
    assert (prepared_basis["patients"], prepared_basis["single_visit_patients"]) == (11, 0)
