"""The LEADER authors' data protocol, as their release builds it: one place for the values (as
`leader.data.cache.PrepareOptions` fields) and, for each, where in the release it comes from, so
the paper/authors presets and the report's deviation list read the same facts.

Release: github.com/liuqidong07/LEADER-pytorch at commit dbde80e ("fix bug"). Cells are counted
from 0 in the notebook's JSON; lines from 1 within a cell or file.
"""

from __future__ import annotations

RELEASE = "liuqidong07/LEADER-pytorch@dbde80ece74c3d5bd72258005c2e91391f3672e7"
NB3, NB4 = "data/mimic3/construction.ipynb", "data/mimic4/construction.ipynb"
UT3, UT4 = "data/mimic3/utils.py", "data/mimic4/utils.py"

# option -> value, MIMIC-III (the MIMIC-IV differences are in AUTHORS_PROTOCOL_MIMIC4)
AUTHORS_PROTOCOL: dict[str, object] = {
    "samples": "last_visit",
    "min_visits": 2,
    "min_visits_basis": "prescriptions",
    "top_k_diag": 2000,
    "top_k_proc": None,
    "top_k_med": 300,
    "patient_fraction": 1.0,
    "split": "sequential",
    "split_ratios": (0.8, 0.1, 0.1),
}
AUTHORS_PROTOCOL_MIMIC4: dict[str, object] = {
    **AUTHORS_PROTOCOL,
    "top_k_proc": 1001,
    "patient_fraction": 0.15,
    "protocol_seed": 42,
}

# option -> where the value is in the release
AUTHORS_SOURCES: dict[str, str] = {
    "samples": f"{NB3} cell 40 lines 20-26 and 42 (MIMIC-IV: {NB4} cell 42): every visit becomes a "
    "history string, `patient.pop()` removes the last as the ground truth, the label `drug_code` is the "
    "last row's ATC3; one record per subject_id",
    "min_visits": f"{NB3} cell 6 line 4 `process_visit_lg2(med_pd)` ('filter out the patient has less 2 "
    f"visits'; MIMIC-IV: {NB4} cell 6 line 3); {UT3} lines 131-140 keep `HADM_ID_Len > 1`",
    "min_visits_basis": f"{UT3} lines 131-140 count distinct HADM_IDs of the PRESCRIPTIONS rows left by "
    "med_process (NDC != '0'), before NDC mapping and before combine_process joins diagnoses and "
    "procedures, so a kept patient can end with one visit",
    "top_k_diag": f"{UT3} lines 190-203 `filter_2000_most_diag`: `loc[:1999]` of the codes ranked by "
    f"(subject, admission, code) rows, i.e. admissions holding them (MIMIC-IV: {UT4} line 179)",
    "top_k_proc": f"MIMIC-III: none, {NB3} cell 6 line 27 is commented out; MIMIC-IV: {UT4} line 195 "
    "calls `filter_1000_most_pro`, whose `loc[:1000]` (line 211) keeps 1001 codes",
    "top_k_med": f"{NB3} cell 6 line 10 `filter_300_most_med`; {UT3} lines 167-178 `loc[:299]`",
    "patient_fraction": f"MIMIC-III: no sampling; MIMIC-IV: {NB4} cell 7 lines 2-4 "
    "`np.random.seed(42); np.random.choice(subject_ids, int(n * 0.15), replace=False)` after combine_process",
    "protocol_seed": f"{NB4} cell 7 line 2 `np.random.seed(42)`",
    "split": f"{NB3} cell 42 lines 2-6 (MIMIC-IV: {NB4} cell 44): `int(len * 0.8)` train, `int(len * 0.1)` "
    "val, the rest test, over records in subject_id order, no shuffle",
    "split_ratios": f"{NB3} cell 42 line 1 '# split the dataset: 8:1:1'",
    "group": "evaluate.py lines 33, 55-56: single-visit = `seq_len == 0`, seq_len = the record's visit "
    "count - 1 (cell 40 line 5), i.e. exactly one visit in the final records",
}

# Behaviour of the release that is a bug: reproduced only when asked for by name.
AUTHORS_BUGS: dict[str, object] = {"visit_order": "hadm_id"}
AUTHORS_BUG_SOURCES: dict[str, str] = {
    "visit_order": f"{UT3} lines 254-269: combine_process groups by (SUBJECT_ID, HADM_ID), so a "
    "patient's visits are in hadm_id order, which MIMIC does not make chronological: the 'last visit' "
    "is the highest hadm_id (7 of the demo's 11 multi-visit patients get another visit than by admittime)",
}

# What the release does that no option here reproduces, and why.
AUTHORS_NOT_REPRODUCED: dict[str, str] = {
    "med_smiles_filter": f"{NB3} cell 6 line 17 keeps only ATC-3 classes with a DrugBank SMILES; "
    "DrugBank is not available offline, so every mapped class is kept",
    "ndc_mapping": f"{UT3} lines 108-127 map NDC -> RXCUI -> ATC4 (GAMENet tables); this project maps "
    "NDC -> ATC-3 with atc4_to_ndc.json (same classes, different coverage)",
    "top_k_med_count": f"{UT3} lines 167-178 rank drugs by prescription ROWS among the min-visit patients; "
    "here every top-k ranks by admissions holding the code, over all patients read",
    "top_k_ties": "pandas sort_values (quicksort) orders equal counts arbitrarily; here ties go by code",
}


def authors_protocol(source: str = "mimic3", *, bugs: bool = False) -> dict[str, object]:
    """The PrepareOptions fields of the authors' protocol for `source` (MIMIC-IV's for 'mimic4',
    MIMIC-III's for every other source); `bugs` adds the release's bugs (AUTHORS_BUGS)."""
    out = dict(AUTHORS_PROTOCOL_MIMIC4 if source == "mimic4" else AUTHORS_PROTOCOL)
    if bugs:
        out.update(AUTHORS_BUGS)
    return out
