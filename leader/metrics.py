"""Medication-recommendation metrics, per sample, as in GAMENet/SafeDrug: Jaccard, F1 and
PRAUC (average precision of the ranked drug list), bootstrapped by patient group.

Contract:
    sample_metrics(y_true (N,M) {0,1}, y_prob (N,M), threshold=0.5) -> dict[str, (N,) float]
    bootstrap_metrics(y_true, y_prob, groups (N,) 'single'|'multi', threshold=0.5, rounds=10,
                      frac=0.8, seed=0) -> DataFrame[group, metric, round, value]
    summarize(df, ddof=BOOTSTRAP_DDOF) -> DataFrame[group, metric, mean, std]
    ddi_rate(y_pred (N,M) {0,1}, ddi (M,M)) -> float

Per-sample averaging (not micro) is what the literature reports, so a patient with many drugs
does not dominate. Everything is vectorised over samples; PRAUC equals
sklearn.metrics.average_precision_score per row for untied scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("prauc", "jaccard", "f1")
# The std of the bootstrap rounds: 1 = the sample std (the package), 0 = numpy's default, what the
# authors' evaluation reports (their utils/utils.py multi_test: `result.std(axis=0)`). The study's
# `evaluation.bootstrap_ddof` defaults to this; kept here so the report layer reads the same default.
BOOTSTRAP_DDOF = 1
# Two ways to split samples, both reported, never mixed up:
#   single / multi: PATIENT-level (the patient has exactly one visit, or more);
#   no_history / history: SAMPLE-level, the LEADER authors' code (a sample with no earlier visit,
#   seq_len == 1, is "single-visit"; the first visit of a multi-visit patient counts here).
GROUPS = ("overall", "multi", "single", "history", "no_history")
GROUP_LABELS = {
    "overall": "Overall",
    "multi": "Multi-visit patients",
    "single": "Single-visit patients",
    "history": "With history (paper: multi-visit)",
    "no_history": "No history (paper: single-visit)",
}
PAPER_GROUPS = {"overall": "overall", "multi": "history", "single": "no_history"}  # Tables III-VII


def _check(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_true.shape != y_prob.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_prob {y_prob.shape} must be the same (N, |meds|) shape")
    return (y_true > 0.5), y_prob


def average_precision(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """(N,) per-row average precision; 0 for a row without positives."""
    t, p = _check(y_true, y_prob)
    order = np.argsort(-p, axis=1, kind="stable")
    ts = np.take_along_axis(t, order, axis=1).astype(np.float64)  # (N, M) labels by rank
    tp = np.cumsum(ts, axis=1)
    prec = tp / np.arange(1, t.shape[1] + 1)[None, :]
    n_pos = ts.sum(1)
    return np.where(n_pos > 0, (prec * ts).sum(1) / np.maximum(n_pos, 1), 0.0)


def sample_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    t, p = _check(y_true, y_prob)
    pred = p > threshold  # strict, as the authors' code (p > 0.3)
    inter = (pred & t).sum(1).astype(np.float64)
    union = (pred | t).sum(1)
    n_pred, n_true = pred.sum(1), t.sum(1)
    jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    f1 = np.where(n_pred + n_true > 0, 2 * inter / np.maximum(n_pred + n_true, 1), 0.0)
    return {"prauc": average_precision(t, p), "jaccard": jac, "f1": f1}


def mean_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    return {
        k: float(v.mean()) if len(v) else float("nan") for k, v in sample_metrics(y_true, y_prob, threshold).items()
    }


def group_index(groups: np.ndarray, history: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Group name -> sample positions: patient-level groups from `groups`, sample-level ones
    from `history` ('history' / 'no_history') when given."""
    groups = np.asarray(groups).astype(str)
    out = {"overall": np.arange(len(groups))}
    for g in ("multi", "single"):
        out[g] = np.flatnonzero(groups == g)
    if history is not None:
        history = np.asarray(history).astype(str)
        if len(history) != len(groups):
            raise ValueError(f"history has {len(history)} entries for {len(groups)} samples")
        for g in ("history", "no_history"):
            out[g] = np.flatnonzero(history == g)
    return out


def bootstrap_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    groups: np.ndarray,
    threshold: float = 0.5,
    rounds: int = 10,
    frac: float = 0.8,
    seed: int = 0,
    history: np.ndarray | None = None,
) -> pd.DataFrame:
    """Mean metrics over `rounds` random `frac` subsets (without replacement, as GAMENet does)
    of each group. One seeded generator, so the same inputs give the same rows."""
    per = sample_metrics(y_true, y_prob, threshold)
    groups = np.asarray(groups).astype(str)
    if len(groups) != len(per["prauc"]):
        raise ValueError(f"groups has {len(groups)} entries for {len(per['prauc'])} samples")
    rng = np.random.default_rng(seed)
    rows = []
    for g, idx in group_index(groups, history).items():
        if len(idx) == 0:
            continue
        k = max(1, int(round(frac * len(idx))))
        picks = np.stack([rng.choice(idx, size=k, replace=False) for _ in range(rounds)])  # (R, k)
        for m in METRICS:
            vals = per[m][picks].mean(1)  # (R,)
            rows += [{"group": g, "metric": m, "round": r, "value": float(v)} for r, v in enumerate(vals)]
    return pd.DataFrame(rows, columns=["group", "metric", "round", "value"])


def summarize(df: pd.DataFrame, ddof: int = BOOTSTRAP_DDOF) -> pd.DataFrame:
    """Mean and std (`ddof`: see BOOTSTRAP_DDOF) of the bootstrap rounds per (group, metric)."""
    return mean_std(df, ["group", "metric"], ddof)[["group", "metric", "mean", "std"]]


def mean_std(df: pd.DataFrame, keys: list[str], ddof: int = BOOTSTRAP_DDOF) -> pd.DataFrame:
    """Mean and std of `value` per `keys` (missing keys kept as groups), one row per group."""
    g = df.groupby(keys, dropna=False, sort=False)["value"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=ddof)}).reset_index()


def ddi_rate(y_pred: np.ndarray, ddi: np.ndarray) -> float:
    """Share of co-prescribed drug pairs (i<j, over all samples) that are known interactions."""
    y = (np.asarray(y_pred) > 0.5).astype(np.float64)
    d = np.triu(np.asarray(ddi) > 0, k=1).astype(np.float64)
    pairs = (np.einsum("ni,nj->", y, y) - y.sum()) / 2
    bad = np.einsum("ni,ij,nj->", y, d, y)
    return float(bad / pairs) if pairs > 0 else 0.0
