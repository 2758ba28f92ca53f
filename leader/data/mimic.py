"""MIMIC-III / MIMIC-IV readers following the GAMENet/SafeDrug medication-recommendation
preprocessing (NDC -> ATC level 3, top-k codes, empty-visit removal), except that single-visit
patients are KEPT (the reference code drops them by mistake; the paper evaluates them).

Each reader returns `(visits, code_names, profile_columns, warnings)` ready for
`leader.data.assemble.assemble`. Tables are read through the declared validation layer
(`leader.data.tables` + `schema`): every bad input raises DataError naming the file, the line and
the column, and every row removed is recorded in `drops` (a DropLog) under a declared reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from leader.data import schema
from leader.data.codes import ATC3_NAMES, icd9_titles
from leader.data.codeshape import UNKNOWN_NDC, normalise_icd, normalise_ndc
from leader.data.cohort import RX_ADMISSION
from leader.data.csvio import LINE
from leader.data.drops import DropLog
from leader.data.ndcmap import load_ndc_to_atc, resolve_mapping_dir
from leader.data.tables import MIMIC3, MIMIC4
from leader.errors import DataError

PROFILE_COLUMNS = ["age", "gender", "insurance", "ethnicity", "admission_type"]
AGE_BINS = [
    (0, 18, "<18"),
    (18, 40, "18-39"),
    (40, 55, "40-54"),
    (55, 65, "55-64"),
    (65, 75, "65-74"),
    (75, 90, "75-89"),
    (90, 10**6, "90+"),
]
# Ages are years between birth and admission. 0-120 are real ages; MIMIC-III moves the birth date
# of patients older than 89 ~300 years back, so 250-350 is that documented convention (-> "90+").
AGE_RANGE, MIMIC3_OVER_89 = (0, 120), (250, 350)


# ----------------------------------------------------------------------------- shared steps
def age_bucket(age: pd.Series) -> pd.Series:
    out = pd.Series("UNKNOWN", index=age.index, dtype=object)
    for lo, hi, lab in AGE_BINS:
        out[(age >= lo) & (age < hi)] = lab
    return out


def checked_age_bucket(age: pd.Series, adm: pd.DataFrame, source: str, why: str) -> pd.Series:
    """Age bucket; an age outside 0-120 (and outside MIMIC-III's >89 shift) is an error, never UNKNOWN."""
    ok = age.between(*AGE_RANGE)
    if source == "mimic3":
        ok |= age.between(*MIMIC3_OVER_89)
    if not ok.all():
        i = (~ok).idxmax()
        row = adm.loc[i]
        raise DataError(
            f"line {row[LINE]}: hadm_id={row['hadm_id']} subject_id={row['subject_id']}: age {age[i]:g} at "
            f"admission ({why}) is outside 0-120"
            + (" and MIMIC-III's >89 convention (250-350)" if source == "mimic3" else "")
            + f" ({int((~ok).sum())} admission(s))",
            file=adm.attrs.get("path"),
            field="admittime",
        )
    return age_bucket(age.astype(float))


def example(df: pd.DataFrame, mask: pd.Series, cols: tuple[str, ...]) -> str:
    """'FILE line N: col=value ...' for the first masked row (drop-table examples)."""
    if not mask.any():
        return ""
    row = df.loc[mask.idxmax()]
    name = Path(df.attrs.get("path", "?")).name
    return f"{name} line {row[LINE]}: " + " ".join(f"{c}={row[c]}" for c in cols if c in row.index)


def attach_patients(adm: pd.DataFrame, pat: pd.DataFrame, drops: DropLog) -> pd.DataFrame:
    """Referential check: an admission whose patient row is missing is dropped (declared, counted)."""
    orphan = ~adm["subject_id"].isin(pat["subject_id"])
    if orphan.any():
        drops.add(
            "admission_without_patient",
            int(orphan.sum()),
            adm.loc[orphan, "hadm_id"],
            adm.loc[orphan, "subject_id"],
            example(adm, orphan, ("subject_id", "hadm_id")) + " (no such subject_id in the patients table)",
        )
    attrs = dict(adm.attrs)
    out = adm[~orphan].merge(pat.drop(columns=[LINE]), on="subject_id", how="left")
    out.attrs.update(attrs)
    return out


def _group_lists(keys: np.ndarray, values: np.ndarray) -> pd.Series:
    """key -> list of values (first-seen order, deduplicated). numpy split: groupby(list) is
    ~20x slower at MIMIC scale."""
    keys = np.asarray(keys, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    k, v = keys[order], np.asarray(values, dtype=object)[order]
    uniq, starts = np.unique(k, return_index=True)
    return pd.Series(
        [list(dict.fromkeys(x)) for x in np.split(v, starts[1:])] if len(k) else [], index=uniq, dtype=object
    )


def keep_admitted(df: pd.DataFrame, adm_all: pd.DataFrame, drops: DropLog) -> pd.DataFrame:
    """Rows of a code table whose hadm_id is not an admission: dropped; those visits are lost."""
    orphan = ~df["hadm_id"].isin(adm_all["hadm_id"])
    if orphan.any():
        drops.add(
            "rows_without_admission",
            int(orphan.sum()),
            df.loc[orphan, "hadm_id"],
            df.loc[orphan, "subject_id"] if "subject_id" in df else (),
            example(df, orphan, ("hadm_id",)),
        )
    return df[~orphan]


def code_rows(
    df: pd.DataFrame, kind: str, code_col: str, subj: pd.Series, drops: DropLog, version_col: str | None = None
) -> pd.DataFrame:
    """Diagnosis/procedure rows with a normalised `code` column; empty or malformed codes dropped."""
    empty = df[code_col].isna()
    drops.add("code_rows_missing_code", int(empty.sum()), df.loc[empty, "hadm_id"], df.loc[empty, "hadm_id"].map(subj))
    df = df[~empty]
    versions = df[version_col] if version_col else None
    code, ok = normalise_icd(df[code_col], kind, versions)
    drops.add(
        "invalid_icd_code",
        int((~ok).sum()),
        df.loc[~ok, "hadm_id"],
        df.loc[~ok, "hadm_id"].map(subj),
        example(df, ~ok, ("hadm_id", code_col, version_col or "")),
    )
    key = code if versions is None else versions.astype(str) + "_" + code
    return df.assign(code=key)[ok]


def _codes_per_visit(df: pd.DataFrame, key: Callable[[pd.DataFrame], pd.Series]) -> pd.Series:
    """hadm_id -> list of code strings, in seq_num order when present."""
    if "seq_num" in df:
        df = df.assign(_s=pd.to_numeric(df["seq_num"], errors="coerce")).sort_values(["hadm_id", "_s"], kind="stable")
    codes = key(df)
    return _group_lists(df["hadm_id"].to_numpy(), codes.to_numpy())


def _med_names(rx: pd.DataFrame) -> dict[str, str]:
    """ATC names from the curated table, else the most frequent drug name in PRESCRIPTIONS."""
    names = {}
    if len(rx):
        rx = rx.assign(drug=rx["drug"].fillna(""))
        top = (
            rx.groupby(["atc", "drug"])
            .size()
            .reset_index(name="n")
            .sort_values(["atc", "n", "drug"], ascending=[True, False, True])
        )
        for a, d in top.drop_duplicates("atc")[["atc", "drug"]].itertuples(index=False):
            names[a] = ATC3_NAMES.get(a) or str(d)
    return names


def _meds_per_visit(
    rx: pd.DataFrame,
    adm: pd.DataFrame,
    start_col: str,
    ndc2atc: dict[str, str],
    first_24h: bool,
    warnings: dict,
    drops: DropLog,
) -> tuple[pd.Series, dict[str, str], set]:
    """NDC -> ATC-3 per visit; malformed/unknown NDCs counted; optional first-24-hours filter.
    Also the admissions with a prescription of known-shaped NDC, before any mapping (the visits
    the authors' min-visit filter counts)."""
    subj = adm.set_index("hadm_id")["subject_id"]
    rx = rx[rx["hadm_id"].isin(adm["hadm_id"])]
    ndc, ok = normalise_ndc(rx["ndc"])
    drops.add(
        "invalid_ndc",
        int((~ok).sum()),
        rx.loc[~ok, "hadm_id"],
        rx.loc[~ok, "hadm_id"].map(subj),
        example(rx, ~ok, ("hadm_id", "ndc")),
    )
    rx, ndc = rx[ok], ndc[ok]
    prescribed = set(rx.loc[ndc != UNKNOWN_NDC, "hadm_id"])
    atc = ndc.map(ndc2atc)
    n_unknown = int(atc.isna().sum())
    if n_unknown:
        warnings["prescription_rows_unknown_ndc"] = n_unknown
        unknown = rx.loc[atc.isna(), "hadm_id"]
        drops.add("prescription_unknown_ndc", n_unknown, unknown, unknown.map(subj))
    rx = rx.assign(atc=atc)[atc.notna()]
    if first_24h:
        start = rx[start_col]
        end = rx["hadm_id"].map(adm.set_index("hadm_id")["admittime"]) + pd.Timedelta(hours=24)
        # MIMIC-III STARTDATE is a date: keep every date the 24-hour window touches.
        keep = start.notna() & (
            start < (end.dt.normalize() + pd.Timedelta(days=1) if start_col == "startdate" else end)
        )
        warnings["prescription_rows_after_24h"] = int((~keep).sum())
        late = rx.loc[~keep, "hadm_id"]
        drops.add("prescription_after_24h", int((~keep).sum()), late, late.map(subj))
        rx = rx[keep]
    meds = _group_lists(rx["hadm_id"].to_numpy(), rx["atc"].to_numpy())
    return meds, _med_names(rx), prescribed


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


def _finish(
    adm: pd.DataFrame, diag: pd.Series, proc: pd.Series, med: pd.Series, top_k: dict, warnings: dict, prescribed: set
) -> pd.DataFrame:
    v = adm.copy()
    v[RX_ADMISSION] = v["hadm_id"].isin(prescribed)
    for kind, s in (("diag", diag), ("proc", proc), ("med", med)):
        v[kind] = v["hadm_id"].map(s)
        v[kind] = v[kind].map(lambda x: x if isinstance(x, list) else [])
    for kind in ("diag", "proc", "med"):
        top_k_filter(v, kind, top_k.get(kind), warnings)
    v = v.rename(columns={"subject_id": "patient_id", "hadm_id": "visit_id"})
    v["patient_id"] = v["patient_id"].astype(str)
    return v[["patient_id", "visit_id", "admittime", "diag", "proc", "med", *PROFILE_COLUMNS, RX_ADMISSION]]


def _ethnicity(s: pd.Series) -> pd.Series:
    return s.fillna("UNKNOWN").astype(str).str.split(r"[ /-]", n=1, regex=True).str[0]


def _dictionary_names(
    root: Path, spec, drops: DropLog, warnings: dict, key: Callable[[pd.DataFrame], pd.Series]
) -> dict:
    """code -> long title from a D_ICD_* table; a missing dictionary is counted, not fatal."""
    try:
        d = schema.load(root, spec, drops)
    except DataError as e:
        if "not found" not in str(e):
            raise
        warnings[f"{spec.name.lower()}_missing"] = 1
        return {}
    return dict(zip(key(d), d["long_title"].fillna(""), strict=False))


def _start(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{what} folder does not exist", file=str(root))
    return root


def _visits_read(*frames: pd.DataFrame) -> int:
    return len(set().union(*(set(f["hadm_id"].tolist()) for f in frames)))


# ----------------------------------------------------------------------------- MIMIC-III
def read_mimic3(
    root: str | Path,
    *,
    mapping_dir: str | Path | None = None,
    first_24h: bool = False,
    top_k: dict[str, int | None] | None = None,
    drops: DropLog | None = None,
) -> tuple[pd.DataFrame, dict, list[str], dict]:
    root, t = _start(root, "MIMIC-III"), MIMIC3
    drops = drops if drops is not None else DropLog()
    warnings: dict[str, int] = {}
    adm = schema.load(root, t["admissions"], drops)
    pat = schema.load(root, t["patients"], drops)
    dx = schema.load(root, t["diagnoses"], drops)
    px = schema.load(root, t["procedures"], drops)
    rx = schema.load(root, t["prescriptions"], drops, require=("startdate",) if first_24h else ())
    ndc2atc = load_ndc_to_atc(resolve_mapping_dir(root, Path(mapping_dir) if mapping_dir else None))
    drops.n_visits_read = _visits_read(adm, dx, px, rx)

    adm_all, adm = adm, attach_patients(adm, pat, drops)
    years = adm["admittime"].dt.year - adm["dob"].dt.year  # year difference: MIMIC shifts >89 to ~300
    adm["age"] = checked_age_bucket(years, adm, "mimic3", "admittime year - PATIENTS dob year")
    adm["ethnicity"] = _ethnicity(adm["ethnicity"])
    subj = adm.set_index("hadm_id")["subject_id"]
    dx, px, rx = (keep_admitted(x, adm_all, drops) for x in (dx, px, rx))

    diag = _codes_per_visit(code_rows(dx, "diag", "icd9_code", subj, drops), lambda d: d["code"])
    proc = _codes_per_visit(code_rows(px, "proc", "icd9_code", subj, drops), lambda d: d["code"])
    med, med_names, prescribed = _meds_per_visit(rx, adm, "startdate", ndc2atc, first_24h, warnings, drops)

    fallback = icd9_titles()
    names = {"diag": dict(fallback["diag"]), "proc": dict(fallback["proc"]), "med": med_names}
    for kind in ("diag", "proc"):
        names[kind].update(
            _dictionary_names(
                root,
                t[f"d_{'diagnoses' if kind == 'diag' else 'procedures'}"],
                drops,
                warnings,
                lambda d, k=kind: normalise_icd(d["icd9_code"], k)[0],
            )
        )
    visits = _finish(adm, diag, proc, med, top_k or {}, warnings, prescribed)
    return visits, names, list(PROFILE_COLUMNS), warnings


# ----------------------------------------------------------------------------- MIMIC-IV
def _icd_key(df: pd.DataFrame, kind: str) -> pd.Series:
    """Version-qualified key ('9_4019', '10_I10'): ICD-9 and ICD-10 codes can collide."""
    return df["icd_version"].astype(str) + "_" + normalise_icd(df["icd_code"], kind, df["icd_version"])[0]


def read_mimic4(
    root: str | Path,
    *,
    mapping_dir: str | Path | None = None,
    first_24h: bool = False,
    top_k: dict[str, int | None] | None = None,
    drops: DropLog | None = None,
) -> tuple[pd.DataFrame, dict, list[str], dict]:
    root, t = _start(root, "MIMIC-IV"), MIMIC4
    hosp = root / "hosp" if (root / "hosp").is_dir() else root
    drops = drops if drops is not None else DropLog()
    warnings: dict[str, int] = {}
    adm = schema.load(hosp, t["admissions"], drops)
    pat = schema.load(hosp, t["patients"], drops)
    dx = schema.load(hosp, t["diagnoses"], drops)
    px = schema.load(hosp, t["procedures"], drops)
    rx = schema.load(hosp, t["prescriptions"], drops, require=("starttime",) if first_24h else ())
    ndc2atc = load_ndc_to_atc(resolve_mapping_dir(hosp, Path(mapping_dir) if mapping_dir else None))
    drops.n_visits_read = _visits_read(adm, dx, px, rx)

    adm_all, adm = adm, attach_patients(adm, pat, drops)
    age = adm["anchor_age"] + (adm["admittime"].dt.year - adm["anchor_year"])
    adm["age"] = checked_age_bucket(age, adm, "mimic4", "anchor_age + admittime year - anchor_year")
    adm["ethnicity"] = _ethnicity(adm["race"].where(adm["race"].notna(), adm["ethnicity"]))
    subj = adm.set_index("hadm_id")["subject_id"]
    dx, px, rx = (keep_admitted(x, adm_all, drops) for x in (dx, px, rx))

    diag = _codes_per_visit(code_rows(dx, "diag", "icd_code", subj, drops, "icd_version"), lambda d: d["code"])
    proc = _codes_per_visit(code_rows(px, "proc", "icd_code", subj, drops, "icd_version"), lambda d: d["code"])
    med, med_names, prescribed = _meds_per_visit(rx, adm, "starttime", ndc2atc, first_24h, warnings, drops)

    names = {"diag": {}, "proc": {}, "med": med_names}
    fallback = icd9_titles()
    for kind in ("diag", "proc"):
        names[kind].update({f"9_{c}": title for c, title in fallback[kind].items()})
        spec = t[f"d_{'diagnoses' if kind == 'diag' else 'procedures'}"]
        names[kind].update(_dictionary_names(hosp, spec, drops, warnings, lambda d, k=kind: _icd_key(d, k)))
    visits = _finish(adm, diag, proc, med, top_k or {}, warnings, prescribed)
    return visits, names, list(PROFILE_COLUMNS), warnings
