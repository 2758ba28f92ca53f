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


# ---------------------------------------------------------------- multiplicity and power
# Per-patient SD of a paired PRAUC difference between two models, used when no pilot exists.
# Measured on the quickstart's synthetic cohort (results/paired.parquet, overall group, one seed,
# 30 test patients, 2.6 visits each): 0.056-0.137 over its 16 comparisons, median 0.097. An
# approximation: a cohort with other visit counts or models closer together differs; a pilot's
# per-patient differences replace it.
DEFAULT_PER_PATIENT_SD = 0.10


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in input order.

    Why Holm: it controls the family-wise error rate like Bonferroni under any dependence
    between the tests (the claims of one study share models and patients), and rejects at least
    as much. NaN p-values (claims without a test) are left NaN and do not count in the family."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def _per_patient_sd(x, n_seeds: int) -> float:
    """SD of one patient's seed-averaged difference at `n_seeds` seeds.

    A (seeds, patients) pilot separates seed noise (variance across seeds within a patient,
    which averaging over more seeds divides) from patient spread (which it does not). A 1-D
    pilot (per-patient differences already averaged over its seeds) or a scalar SD carries no
    such split and is used as is: more seeds then cannot shrink it (conservative)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        return float(a)
    if a.ndim == 1:
        a = a[~np.isnan(a)]
        return float(a.std(ddof=1)) if len(a) > 1 else float("nan")
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"a pilot is (seeds, patients) or (patients,); got shape {a.shape}")
    s0 = a.shape[0]
    seed_var = float(np.nanmean(a.var(0, ddof=1))) if s0 > 1 else 0.0
    patient_var = max(0.0, float(np.nanvar(np.nanmean(a, 0), ddof=1)) - seed_var / s0)
    return float(np.sqrt(patient_var + seed_var / max(int(n_seeds), 1)))


def min_detectable_difference(
    per_patient_diffs_or_sd, n_patients: int, n_seeds: int = 1, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest true mean difference a paired test on `n_patients` test patients detects with
    probability `power` at two-sided level `alpha`: (z_{1-alpha/2} + z_{power}) * sd / sqrt(n).

    Why: an inconclusive test means nothing unless one knows what it could have seen; a study
    whose MDE exceeds the effect it sets out to confirm should not be run as planned.
    `per_patient_diffs_or_sd`: a pilot's per-patient differences (seeds, patients) or
    (patients,), or an SD (DEFAULT_PER_PATIENT_SD when there is no pilot); see _per_patient_sd
    for how seeds enter. Normal approximation of the patient-level mean, as the paired patient
    bootstrap of leader.significance is."""
    if n_patients < 2:
        return float("nan")
    sd = _per_patient_sd(per_patient_diffs_or_sd, n_seeds)
    return float((_z(1 - alpha / 2) + _z(power)) * sd / np.sqrt(n_patients))


def mde_from_interval(
    ci_low: float, ci_high: float, alpha: float = 0.05, power: float = 0.8, level: float = 0.95
) -> float:
    """The same MDE read off a finished test's `level` bootstrap interval (its width gives the
    standard error of the difference): what results/paired.parquet holds for every comparison."""
    se = (float(ci_high) - float(ci_low)) / (2 * _z(0.5 + level / 2))
    return float((_z(1 - alpha / 2) + _z(power)) * se)


def sd_from_interval(ci_low, ci_high, n_patients, level: float = 0.95):
    """Per-patient SD implied by a pilot's interval: results/paired.parquet rows (scalars or
    columns) -> the SD `min_detectable_difference` takes for another test-split size."""
    lo, hi, n = (np.asarray(x, dtype=np.float64) for x in (ci_low, ci_high, n_patients))
    sd = (hi - lo) / (2 * _z(0.5 + level / 2)) * np.sqrt(n)
    return float(sd) if sd.ndim == 0 else sd
