"""The one multi-hot encoder of code lists (numpy/scipy side; the torch models pad codes and use
leader.baselines.common.multi_hot on the device)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def multi_hot(sets, n: int, dtype=np.float32) -> sp.csr_matrix:
    """Lists of code indices (one per row) -> (len(sets), n) sparse {0, 1} matrix; a repeated code
    counts once. `.toarray()` for a dense one."""
    lens = [len(s) for s in sets]
    cols = np.concatenate([np.asarray(s, np.int64) for s in sets]) if len(sets) else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(sets)), lens)
    m = sp.csr_matrix((np.ones(len(cols), dtype), (rows, cols)), shape=(len(sets), n))
    m.sum_duplicates()
    m.data[:] = 1
    return m
