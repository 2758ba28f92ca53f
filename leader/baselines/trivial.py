"""Trivial (non-neural) baselines: the floor every learned model must clear.

    prior         every sample gets the train frequency of each drug (a population ranking)
    cooccurrence  P(drug | diagnosis) from train, averaged over the visit's diagnoses, falling
                  back to the prior for unseen diagnoses (`fit_frequency`)
    logreg        one-vs-rest L2 logistic regression (scikit-learn) on the multi-hot of the
                  current visit's diagnoses + procedures + the LAST earlier visit's drugs (empty
                  without one); drugs never (or always) positive in train keep the prior

Contract (only the train split is read when fitting):
    fit_<name>(ds, params: dict, seed: int) -> Fitted; Fitted.predict(sample_ids) -> (N, |meds|)
        float32, Fitted.n_params
    fit_frequency(ds) -> (P(med|diag) (|diag|, |meds|), P(med) (|meds|,))
    frequency_baseline(ds, split='val') -> (sample_ids (N,), probs (N, |meds|)): cooccurrence's
        scores for one split, probabilities evaluated by the same metrics as the models
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from leader.data.dataset import EHRDataset
from leader.data.encode import multi_hot


@dataclass
class Fitted:
    predict: Callable[[np.ndarray], np.ndarray]
    n_params: int


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


def _rows(ds: EHRDataset, sample_ids) -> np.ndarray:
    pos = ds.visit_rows()
    return np.array([pos[int(s)] for s in np.atleast_1d(sample_ids)], dtype=np.int64)


def train_prior(ds: EHRDataset) -> np.ndarray:
    """(|meds|,) share of train visits prescribing each drug."""
    return (
        ds.labels(ds.samples("train")["sample_id"].to_numpy()).mean(0)
        if len(ds.samples("train"))
        else np.zeros(ds.n_meds)
    )


def fit_prior(ds: EHRDataset, params: dict, seed: int = 0) -> Fitted:
    prior = train_prior(ds).astype(np.float32)
    return Fitted(lambda ids: np.tile(prior, (len(np.atleast_1d(ids)), 1)), n_params=int(prior.size))


def fit_cooccurrence(ds: EHRDataset, params: dict, seed: int = 0) -> Fitted:
    cond, _ = fit_frequency(ds)  # (|diag|, |meds|)
    nd = len(ds.vocabs["diag"])

    def predict(ids):
        D = multi_hot([ds.visits["diag"].iat[r] for r in _rows(ds, ids)], nd)  # (N, |diag|)
        return (np.asarray(D @ cond) / np.maximum(np.asarray(D.sum(1)), 1)).astype(np.float32)

    return Fitted(predict, n_params=int(cond.size))


def logreg_features(ds: EHRDataset, sample_ids) -> sp.csr_matrix:
    """(N, |diag| + |proc| + |meds|): current diag, current proc, last earlier visit's drugs."""
    rows = _rows(ds, sample_ids)
    v = ds.visits
    pid, vidx = v["patient_id"].to_numpy(), v["visit_index"].to_numpy()
    prev = rows - 1
    has_prev = (vidx[rows] > 0) & (prev >= 0) & (pid[np.maximum(prev, 0)] == pid[rows])
    last_meds = [v["med"].iat[p] if h else [] for p, h in zip(prev, has_prev, strict=False)]
    return sp.hstack(
        [
            multi_hot([v["diag"].iat[r] for r in rows], len(ds.vocabs["diag"])),
            multi_hot([v["proc"].iat[r] for r in rows], len(ds.vocabs["proc"])),
            multi_hot(last_meds, ds.n_meds),
        ]
    ).tocsr()


def fit_logreg(ds: EHRDataset, params: dict, seed: int = 0) -> Fitted:
    """One binary L2 logistic regression per drug (one-vs-rest), `C` = inverse regularisation."""
    from sklearn.linear_model import LogisticRegression

    C = float(params.get("C", 1.0))
    max_iter = int(params.get("max_iter", 200))
    ids = ds.samples("train")["sample_id"].to_numpy()
    X, Y = logreg_features(ds, ids), ds.labels(ids)
    prior = Y.mean(0).astype(np.float32) if len(Y) else np.zeros(ds.n_meds, np.float32)
    learn = np.flatnonzero((Y.sum(0) > 0) & (Y.sum(0) < len(Y)))  # drugs with both classes in train
    W = np.zeros((X.shape[1], len(learn)), np.float64)  # (F, L) stacked coefficients
    b = np.zeros(len(learn), np.float64)
    for k, j in enumerate(learn):
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(X, Y[:, j].astype(np.int64))
        W[:, k], b[k] = clf.coef_[0], clf.intercept_[0]

    def predict(sample_ids):
        out = np.tile(prior, (len(np.atleast_1d(sample_ids)), 1))
        if len(learn):
            z = np.asarray(logreg_features(ds, sample_ids) @ W) + b  # (N, L)
            out[:, learn] = 1.0 / (1.0 + np.exp(-z))
        return out.astype(np.float32)

    return Fitted(predict, n_params=int(W.size + b.size))
