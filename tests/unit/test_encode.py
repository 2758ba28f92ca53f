"""leader.data.encode.multi_hot: the one numpy/scipy multi-hot encoder."""

import numpy as np

from leader.data.encode import multi_hot


def test_multi_hot_rows_duplicates_and_empty():
    m = multi_hot([[0, 2, 2], [], [3]], 4)
    assert m.shape == (3, 4) and m.dtype == np.float32
    assert m.toarray().tolist() == [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert multi_hot([], 5).shape == (0, 5)
    assert multi_hot([[1]], 2, np.float64).toarray().dtype == np.float64
