"""Significance tests on bootstrap rounds (two-sided Welch t-test, as in the paper's tables)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def welch_p(a, b) -> float:
    """Two-sided Welch t-test p-value; NaN when either side has fewer than two rounds."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.std(a) == 0 and np.std(b) == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def sig_mark(p: float, alpha: float = 0.05) -> str:
    """'†' for p < alpha, '' otherwise (including untestable NaN). Not '*', which markdown eats."""
    return "†" if p == p and p < alpha else ""
