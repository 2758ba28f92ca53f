"""Date columns read without guessing.

Accepted, per value (a column may mix them): ISO `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS[.f]]`
(also with `T`), and US `MM/DD/YYYY[ HH:MM[:SS]]`. Day-first dates are not accepted: `03/04/2150`
is read month-first, as every MIMIC export tool writes it.

Two-digit years (`10/23/64`) are refused: MIMIC shifts dates into 2100-2210 and dates of birth
of patients over 89 a further ~300 years back, so neither a pivot year nor the admission year
decides the century (age 10 and age 110 give the same two digits). The error asks for four-digit
years instead of producing ages that are silently wrong.
"""

from __future__ import annotations

import pandas as pd

from leader.data.csvio import fail_at

# (regex the whole value must match, strptime format)
FORMATS = (
    (r"\d{4}-\d{2}-\d{2}", "%Y-%m-%d"),
    (r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}", None),
    (r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?", None),
    (r"\d{1,2}/\d{1,2}/\d{4}", "%m/%d/%Y"),
    (r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}", "%m/%d/%Y %H:%M"),
    (r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2}", "%m/%d/%Y %H:%M:%S"),
)
TWO_DIGIT_YEAR = r"\d{1,2}[/-]\d{1,2}[/-]\d{2}( .*)?"


def parse_date_column(df: pd.DataFrame, col: str, *, required: bool = True) -> pd.Series:
    """Datetime64 column; any value outside the declared formats -> DataError with line and value."""
    raw = df[col]
    present = raw.notna()
    s = raw.where(present, "").astype(str)
    out = pd.Series(pd.NaT, index=df.index, dtype="datetime64[us]")
    matched = pd.Series(False, index=df.index)
    for rx, fmt in FORMATS:
        m = present & ~matched & s.str.fullmatch(rx)
        if not m.any():
            continue
        vals = s[m].str.replace("T", " ", regex=False)
        parsed = pd.to_datetime(vals, format=fmt or "ISO8601", errors="coerce")
        bad = parsed.isna()
        if bad.any():
            fail_at(
                df,
                col,
                m & bad.reindex(df.index, fill_value=False),
                "impossible date {value} (month > 12 or day out of range?)",
            )
        out[m] = parsed.astype("datetime64[us]")
        matched |= m
    two = present & ~matched & s.str.fullmatch(TWO_DIGIT_YEAR)
    if two.any():
        fail_at(
            df,
            col,
            two,
            "two-digit year in {value} is ambiguous (MIMIC dates are shifted into 2100-2210 and the "
            "birth dates of patients over 89 ~300 years earlier, so no pivot is right); export four-digit years",
        )
    other = present & ~matched
    if other.any():
        fail_at(df, col, other, "unparseable date {value} (accepted: YYYY-MM-DD[ HH:MM[:SS]], MM/DD/YYYY[ HH:MM[:SS]])")
    if required and (~present).any():
        fail_at(df, col, ~present, "missing date")
    return out
