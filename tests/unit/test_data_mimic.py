"""MIMIC-III (demo) and MIMIC-IV readers: README facts, filters, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from leader.data.assemble import assemble
from leader.data.mimic import read_mimic3, read_mimic4
from leader.errors import DataError

DEMO_TABLES = ("ADMISSIONS", "PATIENTS", "DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS")


def _hadm(root: Path, table: str) -> set[int]:
    return set(pd.read_csv(root / f"{table}.csv.gz", usecols=lambda c: c.lower() == "hadm_id").iloc[:, 0])


def test_demo_raw_join_matches_readme(demo_root):
    adm = _hadm(demo_root, "ADMISSIONS")
    assert len(adm) == 129
    all_three = (
        adm & _hadm(demo_root, "DIAGNOSES_ICD") & _hadm(demo_root, "PROCEDURES_ICD") & _hadm(demo_root, "PRESCRIPTIONS")
    )
    assert len(all_three) == 107


def test_demo_pipeline_end_to_end(demo_root):
    visits, names, prof, warn = read_mimic3(demo_root)
    assert len(visits) == 129  # every admission read; empties dropped (counted) by assemble
    ds = assemble("demo", visits, names, prof, warnings=warn)
    # With the NDC->ATC mapping the same 107 admissions keep all three code types.
    assert len(ds.visits) == 107 and len(ds.patients) == 82
    assert int((ds.patients["group"] == "multi").sum()) == 11  # README: 11 patients with >= 2
    assert ds.warnings["visits_dropped_empty_proc"] + ds.warnings["visits_dropped_empty_med"] == 129 - 107
    assert ds.warnings["prescription_rows_unknown_ndc"] > 0
    # single-visit patients are kept
    assert (ds.patients["group"] == "single").sum() == 71
    # human-readable names: ICD titles and ATC class names, not codes
    d = ds.vocabs["diag"]
    assert d.names[d.index()["4019"]] == "Unspecified essential hypertension"
    m = ds.vocabs["med"]
    assert all(len(n) > 3 and n != c for c, n in zip(m.codes, m.names, strict=False))
    assert all(len(c) == 4 for c in m.codes)
    assert set(ds.profile_features) == {"age", "gender", "insurance", "ethnicity", "admission_type"}


def test_demo_top_k(demo_root):
    visits, *_ = read_mimic3(demo_root, top_k={"diag": 50, "proc": 20, "med": 10})
    warn = read_mimic3(demo_root, top_k={"diag": 50, "proc": 20, "med": 10})[3]
    for kind, k in (("diag", 50), ("proc", 20), ("med", 10)):
        assert len({c for cs in visits[kind] for c in cs}) == k
        assert warn[f"{kind}_codes_dropped_top_k"] > 0
    full, *_ = read_mimic3(demo_root)
    top_med = pd.Series([c for cs in full["med"] for c in set(cs)]).value_counts()
    assert {c for cs in visits["med"] for c in cs} <= set(top_med.index[:12])


def test_first_24h_filter_removes_late_prescriptions(tmp_path):
    from leader.data.synthetic import SyntheticConfig, generate

    root = generate(tmp_path / "syn", SyntheticConfig(n_patients=40, seed=3))
    all_v, *_, w_all = read_mimic3(root)
    early, *_, w24 = read_mimic3(root, first_24h=True)
    assert w24["prescription_rows_after_24h"] > 0 and "prescription_rows_after_24h" not in w_all
    n_all = all_v["med"].map(len).sum()
    n_24 = early["med"].map(len).sum()
    assert 0 < n_24 < n_all
    for a, b in zip(all_v["med"], early["med"], strict=False):
        assert set(b) <= set(a)


# --------------------------------------------------------------------------- bad input
def _copy_demo(demo_root: Path, dst: Path) -> Path:
    dst.mkdir()
    for t in DEMO_TABLES:
        shutil.copy(demo_root / f"{t}.csv.gz", dst / f"{t}.csv.gz")
    return dst


def _rewrite(path: Path, fn) -> None:
    df = pd.read_csv(path, dtype=str)
    fn(df).to_csv(path, index=False, compression="gzip")


def test_missing_file(tmp_path, demo_root):
    root = _copy_demo(demo_root, tmp_path / "m")
    (root / "PROCEDURES_ICD.csv.gz").unlink()
    with pytest.raises(DataError, match="PROCEDURES_ICD"):
        read_mimic3(root)


def test_missing_column_names_file_and_column(tmp_path, demo_root):
    root = _copy_demo(demo_root, tmp_path / "m")
    _rewrite(root / "DIAGNOSES_ICD.csv.gz", lambda d: d.drop(columns=["icd9_code"]))
    with pytest.raises(DataError) as e:
        read_mimic3(root)
    assert "DIAGNOSES_ICD" in str(e.value) and "icd9_code" in str(e.value)


def test_unparseable_date(tmp_path, demo_root):
    root = _copy_demo(demo_root, tmp_path / "m")

    def bad(d):
        d.loc[3, "admittime"] = "not-a-date"
        return d

    _rewrite(root / "ADMISSIONS.csv.gz", bad)
    with pytest.raises(DataError) as e:
        read_mimic3(root)
    assert "ADMISSIONS" in str(e.value) and "admittime" in str(e.value) and "not-a-date" in str(e.value)


def test_truncated_gzip(tmp_path, demo_root):
    root = _copy_demo(demo_root, tmp_path / "m")
    p = root / "PRESCRIPTIONS.csv.gz"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(DataError, match="PRESCRIPTIONS"):
        read_mimic3(root)


def test_upper_case_columns_and_plain_csv(tmp_path, demo_root):
    root = tmp_path / "u"
    root.mkdir()
    for t in DEMO_TABLES:
        df = pd.read_csv(demo_root / f"{t}.csv.gz", dtype=str)
        df.columns = [c.upper() for c in df.columns]
        df.to_csv(root / f"{t}.csv", index=False)
    v, names, prof, w = read_mimic3(root)
    assert len(assemble("u", v, names, prof, warnings=w).visits) == 107


def test_no_matching_ndc_is_an_error_not_empty(tmp_path, demo_root):
    root = _copy_demo(demo_root, tmp_path / "m")
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "atc4_to_ndc.json").write_text(json.dumps({"A10A": ["99999999999"]}))
    v, names, prof, w = read_mimic3(root, mapping_dir=maps)
    assert w["prescription_rows_unknown_ndc"] > 10000
    with pytest.raises(DataError, match="no visit has"):
        assemble("m", v, names, prof, warnings=w)


# --------------------------------------------------------------------------- MIMIC-IV
def _write(path: Path, rows: list[dict], gz: bool = False) -> None:
    df = pd.DataFrame(rows)
    if gz:
        df.to_csv(str(path) + ".gz", index=False, compression="gzip")
    else:
        df.to_csv(path, index=False)


def _mimic4(root: Path) -> Path:
    hosp = root / "hosp"
    hosp.mkdir(parents=True)
    _write(
        hosp / "patients.csv",
        [
            {
                "subject_id": 1,
                "gender": "F",
                "anchor_age": 70,
                "anchor_year": 2150,
                "anchor_year_group": "2014 - 2016",
                "dod": "",
            },
            {
                "subject_id": 2,
                "gender": "M",
                "anchor_age": 30,
                "anchor_year": 2160,
                "anchor_year_group": "2017 - 2019",
                "dod": "",
            },
        ],
        gz=True,
    )
    _write(
        hosp / "admissions.csv",
        [
            {
                "subject_id": 1,
                "hadm_id": 11,
                "admittime": "2150-01-01 10:00:00",
                "admission_type": "EW EMER.",
                "insurance": "Medicare",
                "race": "WHITE",
            },
            {
                "subject_id": 1,
                "hadm_id": 12,
                "admittime": "2152-03-01 08:00:00",
                "admission_type": "ELECTIVE",
                "insurance": "Medicare",
                "race": "WHITE",
            },
            {
                "subject_id": 2,
                "hadm_id": 21,
                "admittime": "2160-05-05 12:00:00",
                "admission_type": "URGENT",
                "insurance": "Other",
                "race": "ASIAN - CHINESE",
            },
        ],
    )
    _write(
        hosp / "diagnoses_icd.csv",
        [
            {"subject_id": 1, "hadm_id": 11, "seq_num": 1, "icd_code": "4019", "icd_version": 9},
            {"subject_id": 1, "hadm_id": 11, "seq_num": 2, "icd_code": "25000", "icd_version": 9},
            {"subject_id": 1, "hadm_id": 12, "seq_num": 1, "icd_code": "I10", "icd_version": 10},
            {"subject_id": 2, "hadm_id": 21, "seq_num": 1, "icd_code": "E119", "icd_version": 10},
        ],
    )
    _write(
        hosp / "procedures_icd.csv",
        [
            {"subject_id": 1, "hadm_id": 11, "seq_num": 1, "icd_code": "3995", "icd_version": 9},
            {"subject_id": 1, "hadm_id": 12, "seq_num": 1, "icd_code": "02HV33Z", "icd_version": 10},
            {"subject_id": 2, "hadm_id": 21, "seq_num": 1, "icd_code": "0DJ08ZZ", "icd_version": 10},
        ],
    )
    _write(
        hosp / "prescriptions.csv",
        [
            {
                "subject_id": 1,
                "hadm_id": 11,
                "starttime": "2150-01-01 12:00:00",
                "drug": "Lisinopril",
                "ndc": "00000000001",
            },
            {
                "subject_id": 1,
                "hadm_id": 11,
                "starttime": "2150-01-04 12:00:00",
                "drug": "Insulin",
                "ndc": "00000000002",
            },
            {"subject_id": 1, "hadm_id": 12, "starttime": "2152-03-01 09:00:00", "drug": "Lisinopril", "ndc": "1"},
            {
                "subject_id": 2,
                "hadm_id": 21,
                "starttime": "2160-05-05 13:00:00",
                "drug": "Metformin",
                "ndc": "00000000003",
            },
            {
                "subject_id": 2,
                "hadm_id": 21,
                "starttime": "2160-05-05 13:00:00",
                "drug": "Mystery",
                "ndc": "12345678901",
            },
        ],
    )
    _write(
        hosp / "d_icd_diagnoses.csv",
        [
            {"icd_code": "4019", "icd_version": 9, "long_title": "Unspecified essential hypertension"},
            {"icd_code": "I10", "icd_version": 10, "long_title": "Essential (primary) hypertension"},
            {"icd_code": "E119", "icd_version": 10, "long_title": "Type 2 diabetes mellitus without complications"},
        ],
    )
    _write(hosp / "d_icd_procedures.csv", [{"icd_code": "3995", "icd_version": 9, "long_title": "Hemodialysis"}])
    (hosp / "atc4_to_ndc.json").write_text(
        json.dumps({"C09A": ["00000000001"], "A10A": ["00000000002"], "A10B": ["00000000003"]})
    )
    return root


def test_mimic4_reader(tmp_path):
    root = _mimic4(tmp_path / "m4")
    v, names, prof, w = read_mimic4(root)
    ds = assemble("m4", v, names, prof, warnings=w)
    assert len(ds.visits) == 3 and len(ds.patients) == 2
    dv = ds.vocabs["diag"]
    assert set(dv.codes) == {"9_4019", "9_25000", "10_I10", "10_E119"}  # versions kept, no collision
    assert dv.names[dv.index()["10_I10"]] == "Essential (primary) hypertension"
    assert dv.names[dv.index()["9_25000"]].lower().startswith("diabetes")  # curated fallback title
    assert w["prescription_rows_unknown_ndc"] == 1
    assert set(ds.vocabs["med"].codes) == {"C09A", "A10A", "A10B"}
    assert ds.vocabs["med"].names[ds.vocabs["med"].index()["C09A"]] == "ACE inhibitors, plain"
    ages = {ds.profile_vocabs["age"][i] for i in ds.visits["age"]}
    assert ages == {"65-74", "18-39"}
    assert set(ds.profile_vocabs["ethnicity"]) == {"WHITE", "ASIAN"}
    # 24h filter drops the insulin started on day 3
    v24, *_ = read_mimic4(root, first_24h=True)
    assert v24.set_index("visit_id").loc[11, "med"] == ["C09A"]


def test_mimic4_missing_column(tmp_path):
    root = _mimic4(tmp_path / "m4")
    p = root / "hosp" / "diagnoses_icd.csv"
    pd.read_csv(p).drop(columns=["icd_version"]).to_csv(p, index=False)
    with pytest.raises(DataError) as e:
        read_mimic4(root)
    assert "diagnoses_icd" in str(e.value) and "icd_version" in str(e.value)


def test_mimic4_dotted_codes_read_as_undotted_and_bad_shapes_counted(tmp_path):
    from leader.data.drops import DropLog

    root = _mimic4(tmp_path / "m4")
    clean, *_ = read_mimic4(root)
    p = root / "hosp" / "diagnoses_icd.csv"
    d = pd.read_csv(p, dtype=str)
    d["icd_code"] = d["icd_code"].map({"4019": "401.9", "25000": "250.00", "I10": "I10", "E119": "e11.9"})
    d.to_csv(p, index=False)
    dotted, *_ = read_mimic4(root)
    assert dotted["diag"].tolist() == clean["diag"].tolist()
    d.loc[0, "icd_code"] = "XYZ.1"  # no ICD-9 shape
    d.to_csv(p, index=False)
    drops = DropLog()
    v, *_ = read_mimic4(root, drops=drops)
    assert drops.rows["invalid_icd_code"] == 1 and drops.visits["invalid_icd_code"] == {11}
    assert v.set_index("visit_id").loc[11, "diag"] == ["9_25000"]
