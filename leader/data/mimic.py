"""MIMIC-III / MIMIC-IV readers following the GAMENet/SafeDrug medication-recommendation
preprocessing (NDC -> ATC level 3, top-k codes, empty-visit removal), except that single-visit
patients are KEPT (the reference code drops them by mistake; the paper evaluates them).

Each reader returns `(visits, code_names, profile_columns, warnings)` ready for
`leader.data.assemble.assemble`. Every bad input raises DataError naming the file and column.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from leader.data.codes import ATC3_NAMES, icd9_titles
from leader.errors import DataError

PROFILE_COLUMNS = ["age", "gender", "insurance", "ethnicity", "admission_type"]
AGE_BINS = [(0, 18, "<18"), (18, 40, "18-39"), (40, 55, "40-54"), (55, 65, "55-64"), (65, 75, "65-74"), (75, 90, "75-89"), (90, 10**6, "90+")]


# ----------------------------------------------------------------------------- file access
def find_table(root: Path, name: str) -> Path:
    """`name`.csv(.gz) in either case; missing -> DataError naming what was looked for."""
    for stem in (name, name.upper(), name.lower()):
        for ext in (".csv.gz", ".csv"):
            p = root / f"{stem}{ext}"
            if p.exists():
                return p
    raise DataError(f"table {name} not found (looked for {name}.csv or {name}.csv.gz, any case)", file=str(root / name))


def read_table(root: Path, name: str, columns: list[str], dtype: dict | None = None, optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read the needed columns (case-insensitive) of one table as strings by default."""
    path = find_table(root, name)
    want = {c.lower() for c in columns} | {c.lower() for c in optional}
    try:
        df = pd.read_csv(path, usecols=lambda c: c.lower() in want, dtype=str, keep_default_na=True)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read ({type(e).__name__}: {e}); file truncated or corrupted?", file=str(path)) from e
    except pd.errors.EmptyDataError as e:
        raise DataError("file is empty", file=str(path)) from e
    df.columns = [c.lower() for c in df.columns]
    missing = [c for c in columns if c.lower() not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}", file=str(path), field=missing[0])
    for c in optional:
        if c.lower() not in df.columns:
            df[c.lower()] = np.nan
    df.attrs["path"] = str(path)
    return df


def parse_dates(df: pd.DataFrame, col: str, *, required: bool = True) -> pd.Series:
    """Datetime column; any non-empty value that does not parse -> DataError (file + column)."""
    raw = df[col]
    out = pd.to_datetime(raw, errors="coerce", format="mixed")
    bad = out.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        ex = raw[bad].iloc[0]
        raise DataError(f"{int(bad.sum())} unparseable date(s), e.g. {ex!r}", file=df.attrs.get("path"), field=col)
    if required and out.isna().any():
        raise DataError(f"{int(out.isna().sum())} missing date(s)", file=df.attrs.get("path"), field=col)
    return out


def to_int(df: pd.DataFrame, col: str) -> pd.Series:
    out = pd.to_numeric(df[col], errors="coerce")
    if out.isna().any():
        ex = df[col][out.isna()].iloc[0]
        raise DataError(f"{int(out.isna().sum())} non-integer value(s), e.g. {ex!r}", file=df.attrs.get("path"), field=col)
    return out.astype(np.int64)


def load_ndc_to_atc(mapping_dir: Path) -> dict[str, str]:
    """atc4_to_ndc.json (ATC level-3 class -> 11-digit NDCs), inverted."""
    path = mapping_dir / "atc4_to_ndc.json"
    if not path.exists():
        raise DataError("NDC->ATC mapping not found (pass --mappings or put atc4_to_ndc.json beside the CSVs)", file=str(path))
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e}", file=str(path)) from e
    out: dict[str, str] = {}
    for atc, ndcs in raw.items():
        for n in ndcs:
            out.setdefault(str(n).zfill(11), str(atc)[:4])
    return out


def resolve_mapping_dir(root: Path, mapping_dir: Path | None) -> Path:
    if mapping_dir is not None:
        return Path(mapping_dir)
    for cand in (root, root / "mappings", root.parent / "mappings"):
        if (cand / "atc4_to_ndc.json").exists():
            return cand
    from leader.paths import find_mappings_root

    m = find_mappings_root()
    if m is None:
        raise DataError("no NDC->ATC mapping (atc4_to_ndc.json) next to the CSVs or in ../shared/data/mappings", file=str(root))
    return m


# ----------------------------------------------------------------------------- shared steps
def age_bucket(age: pd.Series) -> pd.Series:
    out = pd.Series("UNKNOWN", index=age.index, dtype=object)
    for lo, hi, lab in AGE_BINS:
        out[(age >= lo) & (age < hi)] = lab
    return out


def _group_lists(keys: np.ndarray, values: np.ndarray) -> pd.Series:
    """key -> list of values (first-seen order, deduplicated). numpy split: groupby(list) is
    ~20x slower at MIMIC scale."""
    keys = np.asarray(keys, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    k, v = keys[order], np.asarray(values, dtype=object)[order]
    uniq, starts = np.unique(k, return_index=True)
    return pd.Series([list(dict.fromkeys(x)) for x in np.split(v, starts[1:])] if len(k) else [], index=uniq, dtype=object)


def _codes_per_visit(df: pd.DataFrame, key: Callable[[pd.DataFrame], pd.Series]) -> pd.Series:
    """hadm_id -> list of code strings, in seq_num order when present."""
    if "seq_num" in df:
        df = df.assign(_s=pd.to_numeric(df["seq_num"], errors="coerce")).sort_values(["hadm_id", "_s"], kind="stable")
    codes = key(df)
    return _group_lists(df["hadm_id"].to_numpy(), codes.to_numpy())


def _meds_per_visit(rx: pd.DataFrame, adm: pd.DataFrame, start_col: str, ndc2atc: dict[str, str], first_24h: bool, warnings: dict) -> tuple[pd.Series, dict[str, str]]:
    """NDC -> ATC-3 per visit; unknown/zero NDCs counted; optional first-24-hours filter."""
    rx = rx[rx["hadm_id"].isin(adm["hadm_id"])]
    ndc = rx["ndc"].fillna("0").astype(str).str.replace(r"\.0$", "", regex=True).str.zfill(11)
    atc = ndc.map(ndc2atc)
    n_unknown = int(atc.isna().sum())
    if n_unknown:
        warnings["prescription_rows_unknown_ndc"] = n_unknown
    rx = rx.assign(atc=atc)[atc.notna()]
    if first_24h:
        start = parse_dates(rx, start_col, required=False)
        t0 = rx["hadm_id"].map(adm.set_index("hadm_id")["admittime"])
        end = t0 + pd.Timedelta(hours=24)
        # MIMIC-III STARTDATE is a date: keep every date the 24-hour window touches.
        keep = start.notna() & (start < (end.dt.normalize() + pd.Timedelta(days=1) if start_col == "startdate" else end))
        warnings["prescription_rows_after_24h"] = int((~keep).sum())
        rx = rx[keep]
    # ATC names from the curated table, else the most frequent drug name in PRESCRIPTIONS.
    names = {}
    if len(rx):
        top = rx.groupby(["atc", "drug"]).size().reset_index(name="n").sort_values(["atc", "n", "drug"], ascending=[True, False, True])
        for a, d in top.drop_duplicates("atc")[["atc", "drug"]].itertuples(index=False):
            names[a] = ATC3_NAMES.get(a) or str(d)
    meds = _group_lists(rx["hadm_id"].to_numpy(), rx["atc"].to_numpy())
    return meds, names


def top_k_filter(visits: pd.DataFrame, kind: str, k: int | None, warnings: dict) -> None:
    """Keep the k codes present in the most visits (ties by code), in place; counted."""
    if not k:
        return
    cnt = Counter(c for cs in visits[kind] for c in set(cs))
    if len(cnt) <= k:
        return
    keep = set(sorted(cnt, key=lambda c: (-cnt[c], c))[:k])
    warnings[f"{kind}_codes_dropped_top_k"] = len(cnt) - k
    visits[kind] = visits[kind].map(lambda cs: [c for c in cs if c in keep])


def _finish(adm: pd.DataFrame, diag: pd.Series, proc: pd.Series, med: pd.Series, top_k: dict, warnings: dict) -> pd.DataFrame:
    v = adm.copy()
    for kind, s in (("diag", diag), ("proc", proc), ("med", med)):
        v[kind] = v["hadm_id"].map(s)
        v[kind] = v[kind].map(lambda x: x if isinstance(x, list) else [])
    for kind in ("diag", "proc", "med"):
        top_k_filter(v, kind, top_k.get(kind), warnings)
    v = v.rename(columns={"subject_id": "patient_id", "hadm_id": "visit_id"})
    v["patient_id"] = v["patient_id"].astype(str)
    return v[["patient_id", "visit_id", "admittime", "diag", "proc", "med", *PROFILE_COLUMNS]]


def _norm_icd9(s: pd.Series) -> pd.Series:
    return s.astype(str).str.strip().str.replace(".", "", regex=False)


# ----------------------------------------------------------------------------- MIMIC-III
def read_mimic3(root: str | Path, *, mapping_dir: str | Path | None = None, first_24h: bool = False,
                top_k: dict[str, int | None] | None = None) -> tuple[pd.DataFrame, dict, list[str], dict]:
    root = Path(root)
    if not root.is_dir():
        raise DataError("MIMIC-III folder does not exist", file=str(root))
    warnings: dict[str, int] = {}
    adm = read_table(root, "ADMISSIONS", ["subject_id", "hadm_id", "admittime", "admission_type", "insurance", "ethnicity"])
    pat = read_table(root, "PATIENTS", ["subject_id", "gender", "dob"])
    dx = read_table(root, "DIAGNOSES_ICD", ["hadm_id", "icd9_code"], optional=("seq_num",))
    px = read_table(root, "PROCEDURES_ICD", ["hadm_id", "icd9_code"], optional=("seq_num",))
    rx = read_table(root, "PRESCRIPTIONS", ["hadm_id", "ndc", "drug"] + (["startdate"] if first_24h else []))
    ndc2atc = load_ndc_to_atc(resolve_mapping_dir(root, Path(mapping_dir) if mapping_dir else None))

    adm["admittime"] = parse_dates(adm, "admittime")
    pat["dob"] = parse_dates(pat, "dob")
    for df in (adm, dx, px, rx):
        df["hadm_id"] = to_int(df, "hadm_id")
    adm = adm.drop_duplicates("hadm_id")
    adm = adm.merge(pat.drop_duplicates("subject_id"), on="subject_id", how="left")
    if adm["dob"].isna().any():
        warnings["admissions_without_patient_row"] = int(adm["dob"].isna().sum())
    years = adm["admittime"].dt.year - adm["dob"].dt.year  # year difference: MIMIC shifts >89 to ~300
    adm["age"] = age_bucket(years.astype(float))
    adm["ethnicity"] = adm["ethnicity"].fillna("UNKNOWN").str.split(r"[ /-]", n=1, regex=True).str[0]

    dx = dx.dropna(subset=["icd9_code"])
    px = px.dropna(subset=["icd9_code"])
    diag = _codes_per_visit(dx, lambda d: _norm_icd9(d["icd9_code"]))
    proc = _codes_per_visit(px, lambda d: _norm_icd9(d["icd9_code"]))
    med, med_names = _meds_per_visit(rx, adm, "startdate", ndc2atc, first_24h, warnings)

    fallback = icd9_titles()
    names = {"diag": dict(fallback["diag"]), "proc": dict(fallback["proc"]), "med": med_names}
    for kind, table in (("diag", "D_ICD_DIAGNOSES"), ("proc", "D_ICD_PROCEDURES")):
        try:
            d = read_table(root, table, ["icd9_code", "long_title"])
        except DataError as e:
            if "not found" not in str(e):
                raise
            warnings[f"{table.lower()}_missing"] = 1
            continue
        names[kind].update(zip(_norm_icd9(d["icd9_code"]), d["long_title"].fillna("")))
    visits = _finish(adm, diag, proc, med, top_k or {}, warnings)
    return visits, names, list(PROFILE_COLUMNS), warnings


# ----------------------------------------------------------------------------- MIMIC-IV
def _icd_key(df: pd.DataFrame) -> pd.Series:
    """Version-qualified key ('9_4019', '10_I10'): ICD-9 and ICD-10 codes can collide."""
    return df["icd_version"].astype(str).str.strip() + "_" + df["icd_code"].astype(str).str.strip().str.replace(".", "", regex=False)


def read_mimic4(root: str | Path, *, mapping_dir: str | Path | None = None, first_24h: bool = False,
                top_k: dict[str, int | None] | None = None) -> tuple[pd.DataFrame, dict, list[str], dict]:
    root = Path(root)
    if not root.is_dir():
        raise DataError("MIMIC-IV folder does not exist", file=str(root))
    hosp = root / "hosp" if (root / "hosp").is_dir() else root
    warnings: dict[str, int] = {}
    adm = read_table(hosp, "admissions", ["subject_id", "hadm_id", "admittime", "admission_type", "insurance"], optional=("race", "ethnicity"))
    pat = read_table(hosp, "patients", ["subject_id", "gender", "anchor_age", "anchor_year"])
    dx = read_table(hosp, "diagnoses_icd", ["hadm_id", "icd_code", "icd_version"], optional=("seq_num",))
    px = read_table(hosp, "procedures_icd", ["hadm_id", "icd_code", "icd_version"], optional=("seq_num",))
    rx = read_table(hosp, "prescriptions", ["hadm_id", "ndc", "drug"] + (["starttime"] if first_24h else []))
    ndc2atc = load_ndc_to_atc(resolve_mapping_dir(hosp, Path(mapping_dir) if mapping_dir else None))

    adm["admittime"] = parse_dates(adm, "admittime")
    for df in (adm, dx, px, rx):
        df["hadm_id"] = to_int(df, "hadm_id")
    pat["anchor_age"] = to_int(pat, "anchor_age")
    pat["anchor_year"] = to_int(pat, "anchor_year")
    adm = adm.drop_duplicates("hadm_id").merge(pat.drop_duplicates("subject_id"), on="subject_id", how="left")
    age = adm["anchor_age"] + (adm["admittime"].dt.year - adm["anchor_year"])
    adm["age"] = age_bucket(age.astype(float))
    race = adm["race"].where(adm["race"].notna(), adm["ethnicity"])
    adm["ethnicity"] = race.fillna("UNKNOWN").str.split(r"[ /-]", n=1, regex=True).str[0]

    diag = _codes_per_visit(dx.dropna(subset=["icd_code"]), _icd_key)
    proc = _codes_per_visit(px.dropna(subset=["icd_code"]), _icd_key)
    med, med_names = _meds_per_visit(rx, adm, "starttime", ndc2atc, first_24h, warnings)

    names = {"diag": {}, "proc": {}, "med": med_names}
    fallback = icd9_titles()
    for kind in ("diag", "proc"):
        names[kind].update({f"9_{c}": t for c, t in fallback[kind].items()})
    for kind, table in (("diag", "d_icd_diagnoses"), ("proc", "d_icd_procedures")):
        try:
            d = read_table(hosp, table, ["icd_code", "icd_version", "long_title"])
        except DataError as e:
            if "not found" not in str(e):
                raise
            warnings[f"{table}_missing"] = 1
            continue
        names[kind].update(zip(_icd_key(d), d["long_title"].fillna("")))
    visits = _finish(adm, diag, proc, med, top_k or {}, warnings)
    return visits, names, list(PROFILE_COLUMNS), warnings
