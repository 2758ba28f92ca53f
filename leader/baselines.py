"""Frequency baseline: recommend the drugs most often co-prescribed with the visit's diagnoses.

Contract: frequency_baseline(ds, split='val') -> (sample_ids (N,), probs (N, |meds|))
P(med | diag) is estimated on the train split; a visit's score for a drug is the mean over its
diagnoses (unseen diagnoses fall back to the overall drug frequency), so the scores are
probabilities evaluated by the same metrics as the models.
"""

from __future__ import annotations

import numpy as np

from leader.data.dataset import EHRDataset
from leader.data.encode import multi_hot


def fit_frequency(ds: EHRDataset) -> tuple[np.ndarray, np.ndarray]:
    """(P(med|diag) (|diag|, |meds|), P(med) (|meds|,)) from the train split."""
    s = ds.samples("train")
    pos = ds.visit_rows()
    rows = [pos[int(i)] for i in s["sample_id"]]
    D = multi_hot(ds.visits["diag"].iloc[rows].to_list(), len(ds.vocabs["diag"]), np.float64).toarray()  # (N, |diag|)
    M = multi_hot(ds.visits["med"].iloc[rows].to_list(), ds.n_meds, np.float64).toarray()  # (N, |meds|)
    prior = M.mean(0) if len(M) else np.zeros(ds.n_meds)
    co = D.T @ M  # (|diag|, |meds|)
    cnt = D.sum(0)[:, None]
    cond = np.where(cnt > 0, co / np.maximum(cnt, 1), prior[None, :])
    return cond, prior


def frequency_baseline(ds: EHRDataset, split: str = "val") -> tuple[np.ndarray, np.ndarray]:
    cond, _ = fit_frequency(ds)
    s = ds.samples(split)
    pos = ds.visit_rows()
    diags = [ds.visits["diag"].iat[pos[int(i)]] for i in s["sample_id"]]
    D = multi_hot(diags, len(ds.vocabs["diag"]), np.float64).toarray()
    probs = (D @ cond) / np.maximum(D.sum(1, keepdims=True), 1)
    return s["sample_id"].to_numpy(dtype=np.int64), probs.astype(np.float32)
