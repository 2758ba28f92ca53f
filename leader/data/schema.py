"""The validation layer between the CSV reader and the assembly, declared once per table.

A `Table` names its file, its columns (case-insensitive, trimmed) with their kind, its unique
key and whether its text may be Latin-1. `load` reads it through `csvio`, checks that every
required column is there, converts each typed column (int, date, gender, ICD version) or fails
with the file, line, column and value, and applies the key: rows repeated verbatim are dropped
(counted), rows that share a key but disagree are an error. Code shapes (ICD-9/10, NDC) are
checked in `codeshape`, where the drop-or-fail decision needs the code's meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leader.data.csvio import LINE, fail_at, read_csv_strings
from leader.data.dates import parse_date_column
from leader.data.drops import DropLog
from leader.errors import DataError

INT_RE = r"-?\d+(\.0+)?"  # '123.0' is what a float round-trip (Excel, pandas with NaN) writes
DOMAINS = {"gender": {"M", "F"}, "icd_version": {"9", "10"}}


@dataclass(frozen=True)
class Col:
    name: str
    kind: str = "str"  # str | int | date | gender | icd_version
    required: bool = True  # must be in the header (False: added as empty when absent)
    nullable: bool = True  # empty values allowed
    on_demand: bool = False  # read only when the caller names it in `require` (e.g. --first-24h dates)


@dataclass(frozen=True)
class Table:
    name: str  # file stem, any case, .csv/.csv.gz/.tsv(.gz)
    cols: tuple[Col, ...]
    key: tuple[str, ...] = ()
    latin1: bool = False  # dictionaries: titles may be Latin-1
    min_rows: int = 1


def find_file(root: Path, name: str) -> Path:
    """`name` with any case and a .csv/.csv.gz/.tsv/.tsv.gz suffix; missing -> DataError."""
    want = {f"{name.lower()}{ext}" for ext in (".csv", ".csv.gz", ".tsv", ".tsv.gz")}
    hits = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower() in want) if root.is_dir() else []
    if not hits:
        raise DataError(
            f"table {name} not found (looked for {name}.csv or {name}.csv.gz, any case)", file=str(root / name)
        )
    if len(hits) > 1:
        raise DataError(
            f"table {name} found twice ({', '.join(p.name for p in hits)}); keep one", file=str(root / name)
        )
    return hits[0]


def _convert(df: pd.DataFrame, c: Col) -> None:
    s = df[c.name]
    present = s.notna()
    if not c.nullable and (~present).any():
        fail_at(df, c.name, ~present, "empty value in a required column")
    if c.kind == "date":
        df[c.name] = parse_date_column(df, c.name, required=not c.nullable)
    elif c.kind == "int":
        bad = present & ~s.where(present, "0").astype(str).str.fullmatch(INT_RE)
        if bad.any():
            fail_at(df, c.name, bad, "not an integer")
        ints = s.str.replace(r"\.0+$", "", regex=True)
        df[c.name] = ints.astype(np.int64) if not c.nullable else pd.to_numeric(ints, errors="coerce")
    elif c.kind in DOMAINS:
        up = s.where(~present, s.astype(str).str.upper())
        bad = present & ~up.isin(DOMAINS[c.kind])
        if bad.any():
            fail_at(df, c.name, bad, f"value outside {sorted(DOMAINS[c.kind])}")
        df[c.name] = up


def _apply_key(df: pd.DataFrame, t: Table, drops: DropLog) -> pd.DataFrame:
    if not t.key or df.empty:
        return df
    cols = [c for c in df.columns if c != LINE]
    same = df.duplicated(subset=cols, keep="first")
    if same.any():
        drops.add("duplicate_rows", int(same.sum()))  # a verbatim copy loses nothing: no visit touched
        df = df[~same]
    clash = df.duplicated(subset=list(t.key), keep=False)
    if clash.any():
        rows = df[clash].sort_values([*t.key, LINE])
        first = rows.iloc[0]
        twin = rows[(rows[list(t.key)] == first[list(t.key)]).all(axis=1)].iloc[1]
        col = next(c for c in cols if str(first[c]) != str(twin[c]))
        key = ", ".join(f"{k}={first[k]}" for k in t.key)
        raise DataError(
            f"lines {first[LINE]} and {twin[LINE]}: duplicate key ({key}) with conflicting values "
            f"{first[col]!r} vs {twin[col]!r} ({int(clash.sum())} rows share a key)",
            file=df.attrs.get("path"),
            field=col,
        )
    return df


def load(root: Path, t: Table, drops: DropLog, require: tuple[str, ...] = ()) -> pd.DataFrame:
    """The table's declared columns, validated and typed (plus `_line`); see the module doc."""
    path = find_file(root, t.name)
    df = read_csv_strings(path, latin1_ok=t.latin1, keep={c.name for c in t.cols})
    needed = [c.name for c in t.cols if c.required or c.name in require]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        have = ", ".join(df.attrs["header"])
        raise DataError(f"missing column(s) {missing} (header has: {have[:300]})", file=str(path), field=missing[0])
    if len(df) < t.min_rows:
        raise DataError("line 2: the file has a header but no data rows", file=str(path))
    attrs = dict(df.attrs)
    cols = [c for c in t.cols if not c.on_demand or c.name in require]
    df = df[[c.name for c in cols if c.name in df.columns] + [LINE]].copy()
    df.attrs.update(attrs)
    for c in cols:
        if c.name not in df.columns:
            df[c.name] = None
        else:
            _convert(df, c)
    out = _apply_key(df, t, drops)
    out.attrs.update(attrs)
    return out
