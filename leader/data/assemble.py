"""Final, source-independent step of preprocessing: code strings -> indexed EHRDataset with
vocabularies, discretised profile, patient-level split and single/multi group.

Every source (MIMIC-III, MIMIC-IV, demo, synthetic) ends here, so splits and groups are
computed one way only.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from leader.data.cohort import CohortProtocol, keep_min_visits, sample_patients, sequential_split, visit_sort_keys
from leader.data.dataset import CODE_TYPES, EHRDataset, Vocab
from leader.errors import DataError


def patient_split(patient_ids: list[str], ratios=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, str]:
    """Patient-level split (no patient in two splits), deterministic in `seed`.

    Patients are shuffled by a seeded permutation of their sorted ids, so the split does not
    depend on input row order.
    """
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise DataError(f"split ratios must sum to 1, got {ratios}", field="split")
    ids = sorted(set(patient_ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    n_train = int(round(ratios[0] * len(ids)))
    n_val = int(round(ratios[1] * len(ids)))
    out = {}
    for rank, j in enumerate(order):
        out[ids[j]] = "train" if rank < n_train else ("val" if rank < n_train + n_val else "test")
    return out


def _drop_empty_visits(visits: pd.DataFrame, warnings: dict[str, int], drops) -> pd.DataFrame:
    """Visits with an empty diagnosis, procedure or medication set go (counted, never silent)."""
    v = visits.copy()
    for kind in CODE_TYPES:
        empty = v[kind].map(len) == 0
        if empty.any():
            key = f"visits_dropped_empty_{kind}"
            warnings[key] = warnings.get(key, 0) + int(empty.sum())
            if drops is not None:
                drops.add(f"visit_empty_{kind}", int(empty.sum()), v.loc[empty, "visit_id"], v.loc[empty, "patient_id"])
            v = v[~empty]
    if v.empty:
        raise DataError("no visit has diagnoses, procedures and medications after filtering", field="visits")
    return v


def _index_codes(v: pd.DataFrame, code_names: dict[str, dict[str, str]], warnings: dict[str, int]) -> dict[str, Vocab]:
    """One vocabulary per code type, most frequent code first; `v`'s code lists become index lists
    (deduplicated within a visit, first-seen order kept: seq_num order for MIMIC)."""
    vocabs = {}
    for kind in CODE_TYPES:
        counts = Counter(c for codes in v[kind] for c in codes)
        codes = sorted(counts, key=lambda c: (-counts[c], c))  # most frequent first, stable
        names = []
        for c in codes:
            n = code_names.get(kind, {}).get(c)
            if not n:
                warnings[f"{kind}_codes_without_name"] = warnings.get(f"{kind}_codes_without_name", 0) + 1
                n = c
            names.append(str(n))
        vocabs[kind] = Vocab(kind, tuple(codes), tuple(names))
        idx = vocabs[kind].index()
        v[kind] = v[kind].map(lambda cs, idx=idx: [idx[c] for c in dict.fromkeys(cs)])
    return vocabs


def _index_profile(v: pd.DataFrame, profile_columns: list[str]) -> dict[str, list[str]]:
    """Each profile column becomes category indices (sorted categories, missing = UNKNOWN)."""
    profile_vocabs = {}
    for col in profile_columns:
        vals = v[col].fillna("UNKNOWN").astype(str)
        cats = sorted(vals.unique())
        profile_vocabs[col] = cats
        lut = {c: i for i, c in enumerate(cats)}
        v[col] = vals.map(lut).astype(np.int64)
    return profile_vocabs


def _patients(v: pd.DataFrame, split_ratios, seed: int, split_rule: str = "random") -> pd.DataFrame:
    """One row per patient: visit count, split and single/multi-visit group (single = exactly one
    visit in the dataset, whatever filter or sampling rule made it)."""
    n_visits = v.groupby("patient_id").size()
    if split_rule == "sequential":
        split = sequential_split(list(n_visits.index), split_ratios)
    else:
        split = patient_split(list(n_visits.index), split_ratios, seed)
    patients = pd.DataFrame(
        {
            "patient_id": n_visits.index.astype(str),
            "n_visits": n_visits.to_numpy().astype(np.int64),
        }
    )
    patients["split"] = patients["patient_id"].map(split)
    patients["group"] = np.where(patients["n_visits"] > 1, "multi", "single")
    return patients


def assemble(
    name: str,
    visits: pd.DataFrame,
    code_names: dict[str, dict[str, str]],
    profile_columns: list[str],
    *,
    split_ratios=(0.8, 0.1, 0.1),
    seed: int = 0,
    provenance: dict | None = None,
    warnings: dict[str, int] | None = None,
    drops=None,
    protocol: CohortProtocol | None = None,
) -> EHRDataset:
    """Build the dataset.

    visits: one row per visit with columns patient_id, visit_id, admittime (sortable),
        diag/proc/med (lists of code STRINGS, already filtered), and each profile column as a
        string category.
    code_names: per code type, code -> human-readable name (every code used must have one;
        a missing name falls back to the code itself and is counted in warnings).
    drops: optional `leader.data.drops.DropLog`; the visits removed here are recorded in it.
    protocol: which patients, samples and split (leader.data.cohort); None = the defaults.
    """
    proto = protocol or CohortProtocol()
    warnings = dict(warnings or {})
    need = {"patient_id", "visit_id", "admittime", *CODE_TYPES, *profile_columns}
    missing = need - set(visits.columns)
    if missing:
        raise DataError(f"assemble: missing columns {sorted(missing)}", field=sorted(missing)[0])
    v = _drop_empty_visits(visits, warnings, drops)
    v["patient_id"] = v["patient_id"].astype(str)
    v = keep_min_visits(v, visits, proto, warnings, drops)
    v = sample_patients(v, proto, warnings, drops)
    v = v.sort_values(visit_sort_keys(proto)).reset_index(drop=True)
    v["visit_index"] = v.groupby("patient_id").cumcount().astype(np.int64)
    v["visit_id"] = v["visit_id"].astype(np.int64)
    vocabs = _index_codes(v, code_names, warnings)
    profile_vocabs = _index_profile(v, profile_columns)
    cols = ["patient_id", "visit_id", "visit_index", "admittime", *CODE_TYPES, *profile_columns]
    ds = EHRDataset(
        name=name,
        visits=v[cols].reset_index(drop=True),
        patients=_patients(v, split_ratios, seed, proto.split),
        vocabs=vocabs,
        profile_vocabs=profile_vocabs,
        warnings=warnings,
        provenance=dict(provenance or {}, split_ratios=list(split_ratios), split_seed=seed),
        sampling=proto.samples,
    )
    if proto.changed():  # absent for the default protocol: its fingerprint is what it always was
        ds.provenance["protocol"] = proto.changed()
    ds.validate()
    return ds
