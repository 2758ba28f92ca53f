"""The only-aggregates rule, enforced where data enters and leaves a report.

A report is shared far more widely than the data it summarises, so any column that could key
a patient, an admission or a visit is refused outright rather than filtered.
"""

from __future__ import annotations

import re

import pandas as pd

from leader.errors import DataError

_FORBIDDEN = re.compile(
    r"^(patient|subject|sample|visit|hadm|icustay|admission|stay|person|mrn|row)_?(id|ids|key)$|^(patient|subject)$",
    re.IGNORECASE,
)


def forbidden_columns(columns) -> list[str]:
    return [str(c) for c in columns if _FORBIDDEN.match(str(c).strip())]


def check_aggregate_only(df: pd.DataFrame, where: str) -> None:
    """Raise DataError if `df` has a patient-level key column (patient_id, sample_id, visit_id ...)."""
    bad = forbidden_columns(df.columns)
    if bad:
        raise DataError("patient-level column refused: reports hold only aggregates", file=where, field=bad[0])
