"""The drop table: every row removed while preparing a dataset, by declared reason.

A reason is either part of the paper's preprocessing (GAMENet/SafeDrug: unmapped NDCs, visits
without one of the three code types, top-k, first 24 hours; the authors' min-visit filter and
patient sample) or a repair of a bad extract
(orphan admissions, malformed codes, duplicate rows). The second kind changes the cohort in a
way the paper did not, so a share of visits above `max_share` is an error unless drops are
explicitly allowed. The table is printed by `leader data prepare`, stored in the dataset's
meta.json and summarised in the study report's dataset table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from leader.errors import DataError

# reason -> (part of the paper's preprocessing?, what it means)
REASONS: dict[str, tuple[bool, str]] = {
    "prescription_unknown_ndc": (True, "prescription rows whose NDC has no ATC-3 class (GAMENet mapping)"),
    "prescription_after_24h": (True, "prescription rows started after the first 24 hours (--first-24h)"),
    "code_rows_missing_code": (True, "diagnosis/procedure rows with an empty code"),
    "visit_empty_diag": (True, "visits without any diagnosis code"),
    "visit_empty_proc": (True, "visits without any procedure code"),
    "visit_empty_med": (True, "visits without any mapped medication"),
    "patient_below_min_visits": (True, "visits of patients with fewer visits than min_visits (authors' protocol)"),
    "patient_not_sampled": (True, "visits of patients outside the patient_fraction sample (authors' MIMIC-IV)"),
    "duplicate_rows": (False, "rows repeated verbatim (same key, same values); one copy kept"),
    "admission_without_patient": (False, "admissions whose subject_id is not in the patients table"),
    "rows_without_admission": (False, "code/prescription rows whose hadm_id is not in the admissions table"),
    "invalid_icd_code": (False, "diagnosis/procedure rows whose code has no ICD-9/ICD-10 shape"),
    "invalid_ndc": (False, "prescription rows whose NDC is neither digits nor 5-4-2 dashed"),
}


@dataclass
class DropLog:
    """reason -> rows, and the visits/patients those rows belonged to."""

    rows: dict[str, int] = field(default_factory=dict)
    visits: dict[str, set] = field(default_factory=dict)
    patients: dict[str, set] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first case, for error messages
    n_visits_read: int = 0  # distinct hadm_ids in the admissions and code tables: the share's denominator

    def add(self, reason: str, n_rows: int, visit_ids=(), patient_ids=(), example: str | None = None) -> None:
        if reason not in REASONS:
            raise KeyError(f"undeclared drop reason {reason!r}")
        if n_rows <= 0:
            return
        if example and reason not in self.examples:
            self.examples[reason] = example
        self.rows[reason] = self.rows.get(reason, 0) + int(n_rows)
        self.visits.setdefault(reason, set()).update(int(v) for v in pd.Series(list(visit_ids)).dropna())
        self.patients.setdefault(reason, set()).update(str(p) for p in pd.Series(list(patient_ids)).dropna())

    def table(self, n_visits_read: int) -> list[dict]:
        """JSON-ready rows, in declaration order; `visit_share` is of all admissions read."""
        out = []
        for reason, (paper, what) in REASONS.items():
            if reason in self.rows:
                nv = len(self.visits.get(reason, ()))
                out.append(
                    {
                        "reason": reason,
                        "paper_preprocessing": paper,
                        "rows": self.rows[reason],
                        "visits": nv,
                        "patients": len(self.patients.get(reason, ())),
                        "visit_share": round(nv / max(n_visits_read, 1), 6),
                        "meaning": what,
                        "example": self.examples.get(reason, ""),
                    }
                )
        return out


def check_drop_table(table: list[dict], max_share: float, allowed: bool, where: str | None = None) -> None:
    """A non-paper reason touching more than `max_share` of the visits -> DataError (unless allowed)."""
    if allowed:
        return
    for row in table:
        if not row["paper_preprocessing"] and row["visit_share"] > max_share:
            eg = f" First: {row['example']}." if row.get("example") else ""
            raise DataError(
                f"{row['rows']} row(s) dropped as {row['reason']} ({row['meaning']}) touch "
                f"{row['visits']} visit(s) = {100 * row['visit_share']:.2f}% > {100 * max_share:g}% of the "
                f"visits; fix the extract or pass --allow-drops.{eg}",
                file=where,
            )


def drop_summary(table: list[dict]) -> dict[str, int]:
    """Flat figures for the report's dataset table (one per reason: visits touched)."""
    return {f"dropped_visits[{r['reason']}]": int(r["visits"]) for r in table}
