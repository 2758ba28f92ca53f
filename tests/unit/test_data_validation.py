"""The validation layer on small extracts built here (runs without the demo): every real-world
failure class either reads as the same cohort as the clean files or fails with one DataError
naming the file and the line or column; every dropped row is counted under a declared reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from leader.data.assemble import assemble
from leader.data.drops import DropLog
from leader.data.mimic import read_mimic3
from leader.data.stats import cohort_signature
from leader.errors import DataError

ADM = [  # subject, hadm, admittime, type, insurance, ethnicity
    (1, 11, "2150-01-01 10:00:00", "EMERGENCY", "Medicare", "WHITE"),
    (1, 12, "2152-03-01 08:00:00", "ELECTIVE", "Medicare", "WHITE"),
    (2, 21, "2160-05-05 12:00:00", "URGENT", "Private", "ASIAN - CHINESE"),
    (3, 31, "2170-07-07 07:00:00", "EMERGENCY", "Medicaid", "BLACK/AFRICAN AMERICAN"),
    (4, 41, "2180-02-02 02:00:00", "EMERGENCY", "Private", "HISPANIC OR LATINO"),
]
PAT = [
    (1, "F", "2080-01-01 00:00:00"),
    (2, "M", "2130-06-01 00:00:00"),
    (3, "F", "1870-01-01 00:00:00"),
    (4, "M", "2170-02-02 00:00:00"),
]
DX = [
    (11, 1, "4019"),
    (11, 2, "25000"),
    (12, 1, "4280"),
    (21, 1, "E8798"),
    (21, 2, "V1582"),
    (31, 1, "486"),
    (41, 1, "0389"),
]
PX = [(11, 1, "3995"), (12, 1, "9604"), (21, 1, "0066"), (31, 1, "3722"), (41, 1, "9671")]
RX = [
    (11, "Lisinopril", "00000000001", "2150-01-01 00:00:00"),
    (11, "Insulin", "00000000002", "2150-01-02 00:00:00"),
    (12, "Lisinopril", "00000000001", "2152-03-01 00:00:00"),
    (21, "Metformin", "00000000003", "2160-05-05 00:00:00"),
    (31, "Aspirin, low dose", "00000000004", "2170-07-07 00:00:00"),
    (41, "Insulin", "00000000002", "2180-02-02 00:00:00"),
    (41, "Mystery", "", "2180-02-02 00:00:00"),
]
MAPPING = {"C09A": ["00000000001"], "A10A": ["00000000002"], "A10B": ["00000000003"], "B01A": ["00000000004"]}


def _frames() -> dict[str, pd.DataFrame]:
    return {
        "ADMISSIONS": pd.DataFrame(
            ADM, columns=["subject_id", "hadm_id", "admittime", "admission_type", "insurance", "ethnicity"]
        ),
        "PATIENTS": pd.DataFrame(PAT, columns=["subject_id", "gender", "dob"]),
        "DIAGNOSES_ICD": pd.DataFrame(DX, columns=["hadm_id", "seq_num", "icd9_code"]),
        "PROCEDURES_ICD": pd.DataFrame(PX, columns=["hadm_id", "seq_num", "icd9_code"]),
        "PRESCRIPTIONS": pd.DataFrame(RX, columns=["hadm_id", "drug", "ndc", "startdate"]),
        "D_ICD_DIAGNOSES": pd.DataFrame({"ICD9_CODE": ["4019"], "LONG_TITLE": ["Unspecified essential hypertension"]}),
    }


def write(root: Path, frames: dict[str, pd.DataFrame] | None = None, **csv) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, f in (frames or _frames()).items():
        f.to_csv(root / f"{name}.csv", index=False, **csv)
    (root / "atc4_to_ndc.json").write_text(json.dumps(MAPPING))
    return root


def raw(root: Path, t: str) -> bytes:
    return (root / f"{t}.csv").read_bytes()


def put(root: Path, t: str, data: bytes) -> None:
    (root / f"{t}.csv").write_bytes(data)


def cohort(root: Path, drops: DropLog | None = None):
    v, names, prof, w = read_mimic3(root, drops=drops)
    return assemble("t", v, names, prof, warnings=w, drops=drops)


@pytest.fixture()
def clean(tmp_path) -> str:
    return cohort_signature(cohort(write(tmp_path / "clean")))


def same(root: Path, clean_sig: str) -> None:
    assert cohort_signature(cohort(root)) == clean_sig


def fails(root: Path, *needles: str) -> str:
    with pytest.raises(DataError) as e:
        read_mimic3(root)
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


# --------------------------------------------------------------------------- shapes that read the same
def test_clean_fixture_is_a_real_cohort(tmp_path):
    ds = cohort(write(tmp_path / "c"))
    assert len(ds.visits) == 5 and len(ds.patients) == 4
    ages = dict(zip(ds.visits["visit_id"], (ds.profile_vocabs["age"][i] for i in ds.visits["age"]), strict=False))
    assert ages[31] == "90+"  # 2170 - 1870 = 300: MIMIC-III's >89 convention, documented
    assert ages[41] == "<18"


@pytest.mark.parametrize("how", [str.upper, str.lower, lambda c: f"  {c[:1].upper()}{c[1:].lower()} "])
def test_header_case_and_spaces(tmp_path, clean, how):
    f = _frames()
    for d in f.values():
        d.columns = [how(c) for c in d.columns]
    same(write(tmp_path / "h", f), clean)


def test_extra_columns_crlf_bom_tabs_gzip(tmp_path, clean):
    f = _frames()
    f["ADMISSIONS"] = f["ADMISSIONS"].assign(site="A", note="x, y")
    root = write(tmp_path / "x", f)
    same(root, clean)
    for t in f:
        put(root, t, b"\xef\xbb\xbf" + raw(root, t).replace(b"\n", b"\r\n"))
    same(root, clean)
    tabs = write(tmp_path / "tab", sep="\t")
    same(tabs, clean)
    for t in ("PATIENTS", "PRESCRIPTIONS"):  # gzip bytes under .csv, and a real .csv.gz
        data = gzip.compress(raw(tabs, t))
        put(tabs, t, data)
    (tabs / "ADMISSIONS.csv.gz").write_bytes(gzip.compress(raw(tabs, "ADMISSIONS")))
    (tabs / "ADMISSIONS.csv").unlink()
    same(tabs, clean)


def test_latin1_dictionary_title(tmp_path, clean):
    root = write(tmp_path / "l")
    put(root, "D_ICD_DIAGNOSES", "ICD9_CODE,LONG_TITLE\n4019,Hypertension (café)\n".encode("latin-1"))
    same(root, clean)
    _, names, _, _ = read_mimic3(root)
    assert names["diag"]["4019"] == "Hypertension (café)"


def test_dates_us_and_mixed(tmp_path, clean):
    f = _frames()
    ts = pd.to_datetime(f["ADMISSIONS"]["admittime"])
    f["ADMISSIONS"]["admittime"] = [t.strftime("%m/%d/%Y %H:%M") if i % 2 else str(t) for i, t in enumerate(ts)]
    f["PATIENTS"]["dob"] = pd.to_datetime(f["PATIENTS"]["dob"]).dt.strftime("%m/%d/%Y")
    same(write(tmp_path / "d", f), clean)


def test_embedded_newline_in_quoted_text(tmp_path, clean):
    f = _frames()
    f["PRESCRIPTIONS"].loc[1, "drug"] = "Insulin\nregular"
    same(write(tmp_path / "n", f), clean)


def test_duplicate_rows_counted_not_doubled(tmp_path, clean):
    f = _frames()
    f["ADMISSIONS"] = pd.concat([f["ADMISSIONS"], f["ADMISSIONS"].iloc[:2]])
    f["DIAGNOSES_ICD"] = pd.concat([f["DIAGNOSES_ICD"], f["DIAGNOSES_ICD"]])
    root = write(tmp_path / "dup", f)
    drops = DropLog()
    assert cohort_signature(cohort(root, drops)) == clean
    assert drops.rows["duplicate_rows"] == 2 and not drops.visits["duplicate_rows"]


def test_code_shapes_normalised(tmp_path, clean):
    f = _frames()
    f["DIAGNOSES_ICD"]["icd9_code"] = ["401.9", "250.00", "428.0", "E879.8", "v15.82", "486", "038.9"]
    f["PROCEDURES_ICD"]["icd9_code"] = ["39.95", "96.04", "00.66", "37.22", "96.71"]
    f["PRESCRIPTIONS"]["ndc"] = ["00000-0000-01", "2", "1.0", "0000-000-03", "00000000004", "00002", ""]
    same(write(tmp_path / "s", f), clean)


def test_float_ids(tmp_path, clean):
    f = _frames()
    f["DIAGNOSES_ICD"]["hadm_id"] = f["DIAGNOSES_ICD"]["hadm_id"].astype(float)
    same(write(tmp_path / "fl", f), clean)


# --------------------------------------------------------------------------- clear errors
def test_missing_and_renamed(tmp_path):
    root = write(tmp_path / "m")
    (root / "PROCEDURES_ICD.csv").unlink()
    fails(root, "PROCEDURES_ICD", "not found")
    f = _frames()
    f["ADMISSIONS"] = f["ADMISSIONS"].rename(columns={"admittime": "admit_time"})
    fails(write(tmp_path / "r", f), "ADMISSIONS.csv", "admittime", "admit_time")


def test_two_digit_year_refused(tmp_path):
    f = _frames()
    f["ADMISSIONS"]["admittime"] = pd.to_datetime(f["ADMISSIONS"]["admittime"]).dt.strftime("%m/%d/%y %H:%M")
    fails(write(tmp_path / "y", f), "ADMISSIONS.csv", "'admittime'", "line 2", "01/01/50 10:00", "two-digit")


@pytest.mark.parametrize("value, why", [("not-a-date", "unparseable"), ("2150-13-40 10:00:00", "impossible")])
def test_bad_date(tmp_path, value, why):
    f = _frames()
    f["ADMISSIONS"].loc[2, "admittime"] = value
    fails(write(tmp_path / "b", f), "ADMISSIONS.csv", "'admittime'", "line 4", value, why)


def test_stray_quote_and_wrong_field_count(tmp_path):
    root = write(tmp_path / "q")
    lines = raw(root, "PRESCRIPTIONS").decode().split("\n")
    lines[2] = lines[2].replace("Insulin", '"Insulin')
    put(root, "PRESCRIPTIONS", "\n".join(lines).encode())
    fails(root, "PRESCRIPTIONS.csv", "line 3")
    root = write(tmp_path / "w")
    lines = raw(root, "PRESCRIPTIONS").decode().split("\n")
    lines[4] += ",EXTRA"
    put(root, "PRESCRIPTIONS", "\n".join(lines).encode())
    fails(root, "PRESCRIPTIONS.csv", "line 5", "wrong number of fields")


def test_stray_quote_swallowing_rows_is_caught(tmp_path):
    root = write(tmp_path / "s")
    lines = raw(root, "PRESCRIPTIONS").decode().split("\n")
    lines[2] = lines[2].replace("Insulin", '"Insulin')
    lines[4] = lines[4].replace("Metformin", 'Metformin"')  # a second stray quote closes it: same field count
    put(root, "PRESCRIPTIONS", "\n".join(lines).encode())
    fails(root, "PRESCRIPTIONS.csv", "line 3", "'drug'", "spans several lines")


def test_latin1_in_a_data_table(tmp_path):
    root = write(tmp_path / "l")
    put(root, "PRESCRIPTIONS", raw(root, "PRESCRIPTIONS").replace(b"Metformin", "Métformin".encode("latin-1")))
    fails(root, "PRESCRIPTIONS.csv", "line 5", "not UTF-8")


def test_truncated_empty_header_only(tmp_path):
    root = write(tmp_path / "t")
    data = gzip.compress(raw(root, "PRESCRIPTIONS") * 50)
    put(root, "PRESCRIPTIONS", data[: len(data) // 2])
    fails(root, "PRESCRIPTIONS.csv", "truncated")
    root = write(tmp_path / "e")
    put(root, "PATIENTS", b"")
    fails(root, "PATIENTS.csv", "empty")
    root = write(tmp_path / "h")
    put(root, "PRESCRIPTIONS", raw(root, "PRESCRIPTIONS").split(b"\n")[0] + b"\n")
    fails(root, "PRESCRIPTIONS.csv", "no data rows")


def test_conflicting_duplicate_key(tmp_path):
    f = _frames()
    twin = pd.DataFrame([(2, "F", "2130-06-01 00:00:00")], columns=f["PATIENTS"].columns)
    f["PATIENTS"] = pd.concat([f["PATIENTS"], twin])
    fails(write(tmp_path / "k", f), "PATIENTS.csv", "'gender'", "lines 3 and 6", "subject_id=2")


@pytest.mark.parametrize("dob, age", [("2165-01-01 00:00:00", "-5"), ("2010-01-01 00:00:00", "150")])
def test_implausible_age_is_an_error_not_unknown(tmp_path, dob, age):
    f = _frames()
    f["PATIENTS"].loc[1, "dob"] = dob
    fails(write(tmp_path / "a", f), "ADMISSIONS.csv", f"age {age}", "subject_id=2", "line 4")


def test_domains(tmp_path):
    f = _frames()
    f["PATIENTS"].loc[0, "gender"] = "X"
    fails(write(tmp_path / "g", f), "PATIENTS.csv", "'gender'", "'X'", "line 2")
    f = _frames()
    f["DIAGNOSES_ICD"]["hadm_id"] = f["DIAGNOSES_ICD"]["hadm_id"].astype(object)
    f["DIAGNOSES_ICD"].loc[3, "hadm_id"] = "21a"
    fails(write(tmp_path / "i", f), "DIAGNOSES_ICD.csv", "'hadm_id'", "not an integer", "line 5")


# --------------------------------------------------------------------------- declared drops
def test_orphans_and_bad_codes_are_dropped_and_counted(tmp_path):
    f = _frames()
    f["PATIENTS"] = f["PATIENTS"][f["PATIENTS"]["subject_id"] != 4]
    f["DIAGNOSES_ICD"].loc[0, "icd9_code"] = "HELLO"
    f["PRESCRIPTIONS"].loc[0, "ndc"] = "12AB"
    f["PROCEDURES_ICD"] = pd.concat(
        [f["PROCEDURES_ICD"], pd.DataFrame([(99, 1, "3995")], columns=["hadm_id", "seq_num", "icd9_code"])]
    )
    drops = DropLog()
    ds = cohort(write(tmp_path / "o", f), drops)
    assert 41 not in set(ds.visits["visit_id"])
    t = {r["reason"]: r for r in drops.table(drops.n_visits_read)}
    assert t["admission_without_patient"]["visits"] == 1 and t["admission_without_patient"]["patients"] == 1
    assert "ADMISSIONS.csv line 6" in t["admission_without_patient"]["example"]
    assert t["invalid_icd_code"]["rows"] == 1 and t["invalid_ndc"]["rows"] == 1
    assert t["rows_without_admission"]["visits"] == 1
    assert drops.n_visits_read == 6
    assert not any(r["paper_preprocessing"] for r in t.values())


def test_prepare_fails_above_threshold_unless_allowed(tmp_path, monkeypatch):
    from leader.data.cache import PrepareOptions, prepare

    monkeypatch.setenv("LEADER_CACHE", str(tmp_path / "cache"))
    f = _frames()
    f["PATIENTS"] = f["PATIENTS"][f["PATIENTS"]["subject_id"] != 4]
    root = write(tmp_path / "o", f)
    with pytest.raises(DataError, match=r"admission_without_patient .* --allow-drops"):
        prepare("mimic3", root)
    assert not (tmp_path / "cache" / "datasets").exists() or not any((tmp_path / "cache" / "datasets").iterdir())
    ds = prepare("mimic3", root, PrepareOptions(allow_drops=True))
    assert {r["reason"] for r in ds.drops} >= {"admission_without_patient"}
    with pytest.raises(DataError, match="allow-drops"):  # the cached copy is checked again
        prepare("mimic3", root)
    assert prepare("mimic3", root, PrepareOptions(max_drop_share=0.5)).fingerprint == ds.fingerprint


def test_failed_prepare_keeps_the_prepared_dataset(tmp_path, monkeypatch):
    from leader.data.cache import dataset_dir, prepare

    monkeypatch.setenv("LEADER_CACHE", str(tmp_path / "cache"))
    root = write(tmp_path / "p")
    ds = prepare("mimic3", root)
    folder = dataset_dir("mimic3", root)
    before = (folder / "meta.json").read_text()
    put(root, "PATIENTS", b"")
    with pytest.raises(DataError):
        prepare("mimic3", root, force=True)
    assert ds.drops and (folder / "meta.json").read_text() == before


def test_unknown_prepare_option_is_an_error():
    from pydantic import ValidationError

    from leader.data.cache import PrepareOptions

    with pytest.raises(ValidationError):
        PrepareOptions(top_k_meds=3)


# --------------------------------------------------------------------------- CLI
def test_cli_prints_drop_table_and_debug_traceback(tmp_path, monkeypatch):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from leader.cli.main import app

    monkeypatch.setenv("LEADER_CACHE", str(tmp_path / "cache"))
    root = write(tmp_path / "c")
    r = CliRunner().invoke(app, ["data", "prepare", "--dataset", "mimic3", "--root", str(root)])
    assert r.exit_code == 0, r.output
    assert "Rows dropped while preparing" in r.stdout and "prescription_unknown_ndc" in r.stdout
    r = CliRunner().invoke(app, ["data", "prepare", "--dataset", "mimic3", "--root", str(root), "--json"])
    st = json.loads(r.stdout[r.stdout.index("{") :])
    assert st["dropped_visits[prescription_unknown_ndc]"] == 1 and st["drops"][0]["rows"] == 1
    put(root, "PATIENTS", raw(root, "PATIENTS").replace(b"2130-06-01", b"06/01/30"))
    cmd = [sys.executable, "-m", "leader.cli.main", "data", "prepare", "--dataset", "mimic3", "--root", str(root)]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errs) == 1 and "PATIENTS.csv" in errs[0] and "line 3" in errs[0] and "'dob'" in errs[0]
    p = subprocess.run(cmd + ["--debug"], check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" in p.stderr and "two-digit" in p.stderr
