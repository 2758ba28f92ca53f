"""Corrupt copies of the MIMIC-III demo the way real extracts are corrupted, and check that
`leader data prepare` either gives the same cohort or a clear error - never a silent change.

    source scripts/env.sh && PYTHONPATH=$PWD nice -n 15 python scripts/bench_bad_inputs.py [--only a,b] [--keep]

Each case builds one copy in a temp folder and runs the real CLI in a subprocess
(`python -m leader.cli.main data prepare --dataset mimic3 --root COPY --json`), then classifies:

- same_cohort: exit 0 and the cohort signature (visits, codes, labels, profiles, split; see
  `leader.data.stats.cohort_signature`) equals the clean copy's;
- clear_error: exit != 0, no traceback, exactly one `error:` line naming a file and a line or field;
- declared_change: exit 0, fewer visits, and the drop table declares at least that many visits
  under a repair reason (a change, but a counted one below --max-drop-share); such a case is run
  again with `--max-drop-share 0` and that outcome is recorded as `strict_outcome`;
- silent_change: exit 0 and a different cohort without such a declaration;
- traceback: a Python traceback on stderr (a bug, whatever the exit code).

Writes reports/bench/bad_inputs.json (cases, same_cohort, clear_errors, declared_changes,
silent_changes, tracebacks, details[]). The copies live in a temp folder and are deleted (no
MIMIC data is written into the repo; details hold counts and messages only).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from leader.data.dataset import EHRDataset
from leader.data.stats import cohort_signature
from leader.paths import find_demo_root, find_mappings_root, repo_root

TABLES = (
    "ADMISSIONS",
    "PATIENTS",
    "DIAGNOSES_ICD",
    "PROCEDURES_ICD",
    "PRESCRIPTIONS",
    "D_ICD_DIAGNOSES",
    "D_ICD_PROCEDURES",
)


# ----------------------------------------------------------------------------- file helpers
def _path(root: Path, t: str) -> Path:
    return next(p for p in root.iterdir() if p.name.upper().startswith(t + "."))


def raw(root: Path, t: str) -> bytes:
    b = _path(root, t).read_bytes()
    return gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b


def put_raw(root: Path, t: str, data: bytes, name: str | None = None) -> None:
    old = _path(root, t)
    old.unlink()
    new = root / (name or f"{t}.csv.gz")
    new.write_bytes(gzip.compress(data) if new.name.endswith(".gz") else data)


def df(root: Path, t: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(raw(root, t)), dtype=str, keep_default_na=False)


def put(root: Path, t: str, frame: pd.DataFrame, **kw) -> None:
    put_raw(root, t, frame.to_csv(index=False, **kw).encode())


def col(frame: pd.DataFrame, name: str) -> str:
    return next(c for c in frame.columns if c.lower() == name)


def each_table(root: Path, fn: Callable[[bytes], bytes], tables=TABLES) -> None:
    for t in tables:
        put_raw(root, t, fn(raw(root, t)))


def edit(root: Path, t: str, fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
    d = df(root, t)
    out = fn(d)
    put(root, t, d if out is None else out)


# ----------------------------------------------------------------------------- cases
def _headers(root: Path, how: Callable[[str], str]) -> None:
    for t in TABLES:
        d = df(root, t)
        d.columns = [how(c) for c in d.columns]
        put(root, t, d)


def _two_digit(root: Path) -> None:
    for t, c in (("ADMISSIONS", "admittime"), ("PATIENTS", "dob")):
        edit(root, t, lambda d, c=c: d.assign(**{c: pd.to_datetime(d[c]).dt.strftime("%m/%d/%y %H:%M")}))


def _us_dates(root: Path) -> None:
    for t, c in (("ADMISSIONS", "admittime"), ("PATIENTS", "dob")):
        edit(root, t, lambda d, c=c: d.assign(**{c: pd.to_datetime(d[c]).dt.strftime("%m/%d/%Y %H:%M:%S")}))


def _mixed_dates(root: Path) -> None:
    def mix(d, c):
        ts = pd.to_datetime(d[c])
        alt = ts.dt.strftime("%m/%d/%Y %H:%M")
        d[c] = d[c].where(d.index % 2 == 0, alt)
        return d

    edit(root, "ADMISSIONS", lambda d: mix(d, "admittime"))
    edit(
        root,
        "PATIENTS",
        lambda d: mix(d, "dob").assign(dob=lambda x: x["dob"].where(x.index % 3 != 0, x["dob"].str[:10])),
    )  # date-only ISO as a third format


def _set(t: str, c: str, row: int, value: str) -> Callable[[Path], None]:
    def fn(root: Path) -> None:
        def f(d):
            d.loc[d.index[row], col(d, c)] = value

        edit(root, t, f)

    return fn


def _line_edit(t: str, line_no: int, fn: Callable[[str], str]) -> Callable[[Path], None]:
    def case(root: Path) -> None:
        lines = raw(root, t).decode().split("\n")
        lines[line_no] = fn(lines[line_no])
        put_raw(root, t, "\n".join(lines).encode())

    return case


def _stray_quote(line: str) -> str:
    parts = line.split(",")
    parts[7] = '"' + parts[7]  # the drug name opens a quote that never closes on this line
    return ",".join(parts)


def _embedded_newline(root: Path) -> None:
    edit(root, "PRESCRIPTIONS", lambda d: d.assign(drug=d["drug"].where(d.index % 50 != 7, d["drug"] + "\nsee note")))


def _latin1_dict(root: Path) -> None:
    d = df(root, "D_ICD_DIAGNOSES")
    d.loc[d.index[:40], "LONG_TITLE"] = d.loc[d.index[:40], "LONG_TITLE"] + " (Sjögren-type, café)"
    put_raw(root, "D_ICD_DIAGNOSES", d.to_csv(index=False).encode("latin-1"))


def _latin1_rx(root: Path) -> None:
    d = df(root, "PRESCRIPTIONS")
    d.loc[d.index[100], "drug"] = "Café-Tabs"
    put_raw(root, "PRESCRIPTIONS", d.to_csv(index=False).encode("latin-1"))


def _truncate_gzip(root: Path) -> None:
    p = _path(root, "PRESCRIPTIONS")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _dup_rows(root: Path) -> None:
    edit(root, "ADMISSIONS", lambda d: pd.concat([d, d.iloc[:10]]))
    edit(root, "DIAGNOSES_ICD", lambda d: pd.concat([d, d.iloc[:50]]))
    edit(root, "PRESCRIPTIONS", lambda d: pd.concat([d, d.iloc[::7]]))


def _dup_conflict(root: Path) -> None:
    def f(d):
        x = d.iloc[[5]].copy()
        x["gender"] = "M" if x["gender"].iloc[0] == "F" else "F"
        return pd.concat([d, x])

    edit(root, "PATIENTS", f)


def _orphan_admission(root: Path) -> None:
    adm = df(root, "ADMISSIONS")
    single = adm["subject_id"].value_counts()
    sid = single[single == 1].index[0]
    edit(root, "PATIENTS", lambda d: d[d["subject_id"] != sid])


def _truncated_patients(root: Path) -> None:
    edit(root, "PATIENTS", lambda d: d.iloc[: len(d) - 8])


def _ndc_dashes(root: Path) -> None:
    def f(d):
        n = d["ndc"]
        ok = n.str.fullmatch(r"\d{11}")
        d["ndc"] = n.where(~ok, n.str[:5] + "-" + n.str[5:9] + "-" + n.str[9:])
        return d

    edit(root, "PRESCRIPTIONS", f)


def _ndc_zeros(root: Path) -> None:
    edit(root, "PRESCRIPTIONS", lambda d: d.assign(ndc=d["ndc"].str.lstrip("0").where(d["ndc"] != "", "")))


def _icd_dots(root: Path) -> None:
    def dx(d):
        c = d["icd9_code"]
        cut = c.str.startswith("E").map({True: 4, False: 3})
        d["icd9_code"] = [x if len(x) <= k else x[:k] + "." + x[k:] for x, k in zip(c, cut, strict=False)]
        return d

    edit(root, "DIAGNOSES_ICD", dx)
    edit(
        root,
        "PROCEDURES_ICD",
        lambda d: d.assign(icd9_code=[x[:2] + "." + x[2:] if len(x) > 2 else x for x in d["icd9_code"]]),
    )


def _shift_dob(years: int) -> Callable[[Path], None]:
    def case(root: Path) -> None:
        adm = df(root, "ADMISSIONS")
        sid, t = adm["subject_id"].iloc[3], pd.Timestamp(adm["admittime"].iloc[3])

        def f(d):
            d.loc[d["subject_id"] == sid, "dob"] = (t - pd.DateOffset(years=years)).strftime("%Y-%m-%d %H:%M:%S")

        edit(root, "PATIENTS", f)

    return case


def _tabs(root: Path) -> None:
    for t in TABLES:
        put(root, t, df(root, t), sep="\t")


def _plain_and_misnamed(root: Path) -> None:
    put_raw(root, "ADMISSIONS", raw(root, "ADMISSIONS"), name="ADMISSIONS.csv")  # plain
    data = gzip.compress(raw(root, "PATIENTS"))
    _path(root, "PATIENTS").unlink()
    (root / "PATIENTS.csv").write_bytes(data)  # gzip bytes under a .csv name


def _float_ids(root: Path) -> None:
    edit(root, "DIAGNOSES_ICD", lambda d: d.assign(hadm_id=d["hadm_id"] + ".0", seq_num=d["seq_num"] + ".0"))


def _extra_field(line: str) -> str:
    return line + ",EXTRA"


def _mimic4(root: Path) -> None:
    """The demo in MIMIC-IV hosp/ shape: lower-case files, icd_code + icd_version 9, anchor ages."""
    hosp = root / "hosp"
    hosp.mkdir()
    adm, pat = df(root, "ADMISSIONS"), df(root, "PATIENTS")
    first = adm.assign(y=pd.to_datetime(adm["admittime"]).dt.year).groupby("subject_id")["y"].min()
    pat["anchor_year"] = pat["subject_id"].map(first).fillna(2150).astype(int)
    age = pat["anchor_year"] - pd.to_datetime(pat["dob"]).dt.year
    pat["anchor_age"] = age.where(age < 250, 91)  # MIMIC-IV writes >89 as 91
    pat.drop(columns=["dob"]).to_csv(hosp / "patients.csv.gz", index=False)
    adm.rename(columns={"ethnicity": "race"}).to_csv(hosp / "admissions.csv.gz", index=False)
    for t, out in (("DIAGNOSES_ICD", "diagnoses_icd"), ("PROCEDURES_ICD", "procedures_icd")):
        df(root, t).rename(columns={"icd9_code": "icd_code"}).assign(icd_version="9").to_csv(
            hosp / f"{out}.csv.gz", index=False
        )
    rx = df(root, "PRESCRIPTIONS").rename(columns={"startdate": "starttime"})
    rx.to_csv(hosp / "prescriptions.csv.gz", index=False)
    for t, out in (("D_ICD_DIAGNOSES", "d_icd_diagnoses"), ("D_ICD_PROCEDURES", "d_icd_procedures")):
        d = df(root, t)
        d.columns = [c.lower() for c in d.columns]
        d.rename(columns={"icd9_code": "icd_code"}).assign(icd_version="9").to_csv(hosp / f"{out}.csv.gz", index=False)
    for t in TABLES:
        _path(root, t).unlink()


def _cases() -> dict[str, tuple[Callable[[Path], None], str]]:
    """name -> (corruption, the real-world failure class it stands for)."""

    def crlf(b: bytes) -> bytes:
        return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    return {
        "missing_file": (lambda r: _path(r, "PROCEDURES_ICD").unlink(), "a table missing from the extract"),
        "missing_column": (
            lambda r: edit(r, "PRESCRIPTIONS", lambda d: d.drop(columns=["ndc"])),
            "a column not exported",
        ),
        "renamed_column": (
            lambda r: edit(r, "ADMISSIONS", lambda d: d.rename(columns={"admittime": "admit_time"})),
            "a column renamed by the export tool",
        ),
        "upper_case_headers": (lambda r: _headers(r, str.upper), "upper-case headers (real MIMIC-III)"),
        "lower_case_headers": (lambda r: _headers(r, str.lower), "lower-case headers (dictionaries too)"),
        "mixed_case_padded_headers": (
            lambda r: _headers(r, lambda c: f" {c[:1].upper()}{c[1:].lower()} "),
            "mixed-case headers with spaces",
        ),
        "extra_columns": (lambda r: edit(r, "ADMISSIONS", lambda d: d.assign(site="A", note="x, y")), "extra columns"),
        "crlf": (lambda r: each_table(r, crlf), "Windows line ends"),
        "utf8_bom": (lambda r: each_table(r, lambda b: b"\xef\xbb\xbf" + b), "UTF-8 byte-order mark (Excel)"),
        "latin1_dictionary_title": (_latin1_dict, "Latin-1 bytes in a dictionary title"),
        "latin1_prescription": (_latin1_rx, "Latin-1 bytes in a data table"),
        "two_digit_years": (_two_digit, "dates rewritten as MM/DD/YY (spreadsheet round trip)"),
        "us_four_digit_dates": (_us_dates, "dates rewritten as MM/DD/YYYY HH:MM:SS"),
        "mixed_date_formats": (_mixed_dates, "ISO and US dates mixed in one column"),
        "unparseable_date": (_set("ADMISSIONS", "admittime", 3, "not-a-date"), "an unparseable date"),
        "impossible_date": (_set("ADMISSIONS", "admittime", 5, "2164-13-40 10:00:00"), "an impossible date"),
        "stray_quote": (_line_edit("PRESCRIPTIONS", 500, _stray_quote), "a stray quote in one row"),
        "embedded_newline": (_embedded_newline, "an embedded newline in a quoted field"),
        "wrong_field_count": (_line_edit("PRESCRIPTIONS", 700, _extra_field), "an unquoted separator in a value"),
        "truncated_gzip": (_truncate_gzip, "a truncated gzip download"),
        "empty_file": (lambda r: put_raw(r, "PATIENTS", b""), "an empty file"),
        "header_only": (
            lambda r: put_raw(r, "PRESCRIPTIONS", raw(r, "PRESCRIPTIONS").split(b"\n")[0] + b"\n"),
            "a header-only file",
        ),
        "duplicate_rows": (_dup_rows, "rows exported twice"),
        "duplicate_key_conflict": (_dup_conflict, "one key with conflicting values"),
        "orphan_admission": (_orphan_admission, "an admission whose patient row is missing"),
        "truncated_patients": (_truncated_patients, "patients table cut short (several orphan admissions)"),
        "empty_key": (_set("DIAGNOSES_ICD", "hadm_id", 10, ""), "an empty key value"),
        "bad_gender": (_set("PATIENTS", "gender", 2, "X"), "a value outside the gender domain"),
        "ndc_dashes": (_ndc_dashes, "NDC codes written 5-4-2 with dashes"),
        "ndc_lost_zeros": (_ndc_zeros, "NDC codes that lost leading zeros (numeric round trip)"),
        "icd_dots": (_icd_dots, "ICD-9 codes written with dots"),
        "negative_age": (_shift_dob(-3), "a birth date after the admission"),
        "age_over_120": (_shift_dob(150), "an age of 150"),
        "tab_separated": (_tabs, "tab-separated files"),
        "plain_and_misnamed_gzip": (_plain_and_misnamed, "plain CSV beside gzip, gzip bytes under .csv"),
        "float_ids": (_float_ids, "integer ids written as floats (123.0)"),
        "mimic4_layout": (_mimic4, "MIMIC-IV hosp/ layout of the same data (icd_version 9)"),
    }


# ----------------------------------------------------------------------------- running
def clean_copy(demo: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for t in TABLES:
        shutil.copy(demo / f"{t}.csv.gz", dst / f"{t}.csv.gz")
    return dst


def prepare_cli(root: Path, source: str, cache: Path, mappings: Path, extra: tuple[str, ...] = ()) -> dict:
    env = dict(os.environ, LEADER_CACHE=str(cache), PYTHONPATH=str(repo_root()))
    cmd = [
        sys.executable,
        "-m",
        "leader.cli.main",
        "data",
        "prepare",
        "--dataset",
        source,
        "--root",
        str(root),
        "--mappings",
        str(mappings),
        "--json",
        *extra,
    ]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=600)
    out = {"rc": p.returncode, "stderr": p.stderr, "seconds": round(time.perf_counter() - t0, 2)}
    if p.returncode == 0:
        folders = [f for f in (cache / "datasets").iterdir() if (f / "meta.json").exists()]
        ds = EHRDataset.load(folders[0])
        key = (lambda c: c.removeprefix("9_")) if source == "mimic4" else None
        out.update(signature=cohort_signature(ds, code_key=key), visits=len(ds.visits), drops=ds.drops)
    return out


def classify(res: dict, clean: dict) -> tuple[str, str]:
    err_lines = [ln for ln in res["stderr"].splitlines() if ln.startswith("error:")]
    if "Traceback (most recent call last)" in res["stderr"]:
        return "traceback", res["stderr"].strip().splitlines()[-1][:300]
    if res["rc"] != 0:
        msg = err_lines[0] if err_lines else res["stderr"].strip()[-300:]
        clear = len(err_lines) == 1 and "file " in msg and ("line " in msg or "field " in msg or "table " in msg)
        return ("clear_error" if clear else "unclear_error"), msg[:400]
    if res["signature"] == clean["signature"]:
        return "same_cohort", ""
    repair = sum(d["visits"] for d in res["drops"] if not d["paper_preprocessing"])
    lost = clean["visits"] - res["visits"]
    if 0 < lost <= repair:
        return "declared_change", f"{lost} visit(s) fewer; drop table: " + ", ".join(
            f"{d['reason']}={d['visits']}" for d in res["drops"] if not d["paper_preprocessing"]
        )
    return "silent_change", f"visits {res['visits']} vs {clean['visits']}"


def redact(msg: str, tmp: Path) -> str:
    """Messages keep their shape (file, line, column, reason) but no values from the data: row
    text, dates and ids are masked, so the committed JSON holds no MIMIC content."""
    msg = msg.replace(str(tmp), "<tmp>")
    msg = re.sub(r"(in row|e\.g\.) '[^']*'", r"\1 '<row>'", msg)
    msg = re.sub(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?|\d{1,2}/\d{1,2}/\d{2,4}( \d{1,2}:\d{2})?", "<date>", msg)
    return re.sub(r"\b\d{5,}\b", "#", msg)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--out", default=str(repo_root() / "reports" / "bench" / "bad_inputs.json"))
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (prints its path)")
    args = ap.parse_args()
    demo, mappings = find_demo_root(), find_mappings_root()
    if demo is None or mappings is None:
        sys.exit("MIMIC-III demo (../shared/data/mimic3demo) and its mappings are needed for this benchmark")
    tmp = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
    try:
        clean = prepare_cli(clean_copy(demo, tmp / "clean"), "mimic3", tmp / "cache_clean", mappings)
        assert clean["rc"] == 0, clean["stderr"]
        print(f"clean copy: {clean['visits']} visits, signature {clean['signature']}")
        details = []
        only = [s for s in args.only.split(",") if s]
        for name, (corrupt, what) in _cases().items():
            if only and name not in only:
                continue
            root = clean_copy(demo, tmp / name)
            corrupt(root)
            res = prepare_cli(root, "mimic4" if name == "mimic4_layout" else "mimic3", tmp / f"cache_{name}", mappings)
            outcome, msg = classify(res, clean)
            details.append(
                {
                    "case": name,
                    "failure_class": what,
                    "outcome": outcome,
                    "exit_code": res["rc"],
                    "visits": res.get("visits"),
                    "message": redact(msg, tmp),
                    "seconds": res["seconds"],
                }
            )
            if outcome == "declared_change":  # the same copy under a zero-tolerance policy
                strict = prepare_cli(root, "mimic3", tmp / f"cache_{name}_strict", mappings, ("--max-drop-share", "0"))
                s_out, s_msg = classify(strict, clean)
                details[-1].update(strict_outcome=s_out, strict_message=redact(s_msg, tmp))
            print(f"{name:28s} {outcome:16s} {redact(msg, tmp)[:150]}")
    finally:
        if args.keep:
            print(f"copies kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    def count(k: str) -> int:
        return sum(d["outcome"] == k for d in details)

    report = {
        "cases": len(details),
        "same_cohort": count("same_cohort"),
        "clear_errors": count("clear_error"),
        "declared_changes": count("declared_change"),
        "unclear_errors": count("unclear_error"),
        "silent_changes": count("silent_change"),
        "tracebacks": count("traceback"),
        "clean_visits": clean["visits"],
        "details": details,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "details"}))


if __name__ == "__main__":
    main()
