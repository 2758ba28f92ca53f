"""Paired significance of "model A beats model B" on one test set, the way a reviewer accepts it.

Both models score the SAME test samples, so the comparison is paired: per-sample metric
differences (each model's metric averaged over its training seeds first), resampled by PATIENT
(a patient's visits are not independent), plus a Wilcoxon signed-rank test on per-patient mean
differences. Overlapping 80 % bootstrap resamples compared with a t-test (what tables often
show) ignore the pairing and the clustering, and call seed noise a finding.

Contract:
    paired_test(a (S_a, N), b (S_b, N), clusters (N,), rounds=2000, seed=0) -> PairedResult
        a, b: a per-sample metric (e.g. average precision) per training seed, same sample order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class PairedResult:
    diff: float  # mean over samples of (A - B)
    ci_low: float  # 95 % patient-bootstrap interval of `diff`
    ci_high: float
    p_bootstrap: float  # two-sided, from the patient bootstrap
    p_wilcoxon: float  # two-sided Wilcoxon signed-rank on per-patient mean differences
    n_samples: int
    n_patients: int
    seeds_a: int
    seeds_b: int

    def to_dict(self) -> dict:
        return asdict(self)


def _per_cluster_means(d: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of d per cluster, count per cluster) with clusters relabelled 0..K-1."""
    _, inv = np.unique(clusters, return_inverse=True)
    return np.bincount(inv, weights=d), np.bincount(inv).astype(np.float64)


def paired_test(a: np.ndarray, b: np.ndarray, clusters: np.ndarray, rounds: int = 2000, seed: int = 0) -> PairedResult:
    from scipy.stats import wilcoxon

    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape[1] != b.shape[1] or len(clusters) != a.shape[1]:
        raise ValueError(f"paired_test needs the same samples: a {a.shape}, b {b.shape}, clusters {len(clusters)}")
    d = a.mean(0) - b.mean(0)  # (N,) seed-averaged per-sample difference
    sums, counts = _per_cluster_means(d, np.asarray(clusters))
    k = len(sums)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, k, size=(rounds, k))  # (R, K) patients drawn with replacement
    boot = sums[picks].sum(1) / counts[picks].sum(1)  # (R,) mean sample difference per draw
    p_boot = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean())))
    p_boot = max(p_boot, 1.0 / rounds) if np.any(boot != 0) else 1.0
    per_patient = sums / counts
    nz = per_patient[per_patient != 0]
    p_w = float(wilcoxon(nz).pvalue) if len(nz) >= 1 and np.any(nz) else 1.0
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return PairedResult(
        float(d.mean()), float(lo), float(hi), p_boot, p_w, int(len(d)), int(k), int(a.shape[0]), int(b.shape[0])
    )
