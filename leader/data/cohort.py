"""Cohort protocol: which patients enter the dataset, which visits are samples, how patients are
split. The defaults are the project's own protocol (every patient, one sample per visit, seeded
random split); the other values reproduce the LEADER authors' notebooks (see
leader.config.protocol for the values and where each comes from).

Applied by `leader.data.assemble.assemble` after visits without diagnoses, procedures or
medications are gone and BEFORE the vocabularies are built, as the authors build theirs from the
filtered, sampled records.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from leader.errors import DataError

# Column a reader may add to its visits: True when the admission has a prescription row with a
# known-shaped NDC, before NDC->ATC mapping and before the diagnosis/procedure joins (the count
# the authors' `process_visit_lg2` filters on). Never stored in the dataset.
RX_ADMISSION = "rx_admission"


@dataclass(frozen=True)
class CohortProtocol:
    """The protocol options of `leader.data.cache.PrepareOptions` (same names, same defaults)."""

    samples: str = "per_visit"  # 'per_visit' | 'last_visit'
    min_visits: int = 1
    min_visits_basis: str = "prepared"  # 'prepared' | 'prescriptions'
    patient_fraction: float = 1.0
    protocol_seed: int = 0
    split: str = "random"  # 'random' | 'sequential'
    visit_order: str = "admittime"  # 'admittime' | 'hadm_id' (the authors' bug, behind this flag)

    def changed(self) -> dict:
        """Fields that differ from the defaults and matter (nothing for the default protocol, so
        the default's hash inputs stay what they were before these options existed)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        if self.min_visits == 1:
            out.pop("min_visits_basis", None)  # no filter: its basis changes nothing
        if self.patient_fraction == 1.0:
            out.pop("protocol_seed", None)  # no sampling: its seed changes nothing
        elif "protocol_seed" not in out:
            out["protocol_seed"] = self.protocol_seed  # a sample is only defined with its seed
        return out


def visit_sort_keys(proto: CohortProtocol) -> list[str]:
    """Order of a patient's visits. MIMIC hadm_ids are not chronological; the authors' notebooks
    order by them anyway (combine_process's groupby), which changes which visit is 'last'."""
    return ["patient_id", "visit_id"] if proto.visit_order == "hadm_id" else ["patient_id", "admittime", "visit_id"]


def patient_order(ids) -> list[str]:
    """Patient ids in subject order: numerically when every id is an integer (MIMIC subject_id,
    as the authors' pandas groupby orders them), else as strings."""
    u = sorted({str(i) for i in ids})
    if u and all(i.isdigit() for i in u):
        return sorted(u, key=int)
    return u


def keep_min_visits(v: pd.DataFrame, raw: pd.DataFrame, proto: CohortProtocol, warnings: dict, drops) -> pd.DataFrame:
    """Drop patients with fewer than `min_visits` visits, counted on the prepared visits `v` (every
    one has all three code types) or, basis 'prescriptions', on the reader's admissions `raw` that
    have a prescription, before any join, as the authors count. Counted in warnings and drops."""
    if proto.min_visits <= 1:
        return v
    if proto.min_visits_basis == "prescriptions":
        if RX_ADMISSION not in raw:
            raise DataError(
                "min_visits_basis 'prescriptions' needs a reader that marks prescribed admissions "
                f"(column {RX_ADMISSION!r}); use min_visits_basis: prepared",
                field="min_visits_basis",
            )
        counts = raw.loc[raw[RX_ADMISSION].astype(bool), "patient_id"].astype(str).value_counts()
    else:
        counts = v.groupby("patient_id").size()
    keep = v["patient_id"].map(counts).fillna(0) >= proto.min_visits
    if (~keep).any():
        gone = v[~keep]
        warnings["patients_dropped_min_visits"] = int(gone["patient_id"].nunique())
        if drops is not None:
            drops.add("patient_below_min_visits", int(len(gone)), gone["visit_id"], gone["patient_id"])
    out = v[keep].copy()
    if out.empty:
        raise DataError(f"no patient has {proto.min_visits} or more visits", field="min_visits")
    return out


def sample_patients(v: pd.DataFrame, proto: CohortProtocol, warnings: dict, drops) -> pd.DataFrame:
    """A seeded random share of the patients: int(n * fraction) of them, drawn without replacement
    from the ids in subject order by numpy's legacy RandomState(seed).choice, the very call the
    authors' MIMIC-IV notebook makes after np.random.seed(42), so the same ids give the same draw."""
    if proto.patient_fraction >= 1.0:
        return v
    ids = patient_order(v["patient_id"].unique())
    k = int(len(ids) * proto.patient_fraction)
    if k == 0:
        raise DataError(
            f"patient_fraction {proto.patient_fraction} of {len(ids)} patients keeps none", field="patient_fraction"
        )
    picked = set(np.random.RandomState(proto.protocol_seed).choice(np.asarray(ids, dtype=object), k, replace=False))
    keep = v["patient_id"].isin(picked)
    gone = v[~keep]
    warnings["patients_not_sampled"] = int(gone["patient_id"].nunique())
    if drops is not None:
        drops.add("patient_not_sampled", int(len(gone)), gone["visit_id"], gone["patient_id"])
    return v[keep].copy()


def sequential_split(patient_ids, ratios=(0.8, 0.1, 0.1)) -> dict[str, str]:
    """The authors' 8:1:1: patients in subject order, the first int(0.8 n) train, the next
    int(0.1 n) val, the rest test (floors, so test takes the remainder)."""
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise DataError(f"split ratios must sum to 1, got {ratios}", field="split")
    ids = patient_order(patient_ids)
    n_train, n_val = int(len(ids) * ratios[0]), int(len(ids) * ratios[1])
    return {p: "train" if r < n_train else ("val" if r < n_train + n_val else "test") for r, p in enumerate(ids)}
