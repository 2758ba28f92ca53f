import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, jaccard_score

from leader.metrics import bootstrap_metrics, ddi_rate, sample_metrics, summarize


def _rand(seed=0, n=40, m=15):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, m)) < 0.3).astype(np.float32)
    y[np.arange(n), rng.integers(0, m, n)] = 1  # every sample has a drug
    return y, rng.random((n, m))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn(seed):
    y, p = _rand(seed)
    got = sample_metrics(y, p, threshold=0.4)
    pred = (p >= 0.4).astype(int)
    ap = [average_precision_score(y[i], p[i]) for i in range(len(y))]
    jac = [jaccard_score(y[i], pred[i], zero_division=0) for i in range(len(y))]
    f1 = [f1_score(y[i], pred[i], zero_division=0) for i in range(len(y))]
    np.testing.assert_allclose(got["prauc"], ap, atol=1e-10)
    np.testing.assert_allclose(got["jaccard"], jac, atol=1e-10)
    np.testing.assert_allclose(got["f1"], f1, atol=1e-10)


def test_bootstrap_seeded_and_grouped():
    y, p = _rand(3, n=50)
    groups = np.array(["single"] * 20 + ["multi"] * 30)
    a = bootstrap_metrics(y, p, groups, rounds=10, frac=0.8, seed=7)
    b = bootstrap_metrics(y, p, groups, rounds=10, frac=0.8, seed=7)
    c = bootstrap_metrics(y, p, groups, rounds=10, frac=0.8, seed=8)
    assert a.equals(b)
    assert not a["value"].equals(c["value"])
    assert set(a["group"]) == {"overall", "single", "multi"} and set(a["metric"]) == {"prauc", "jaccard", "f1"}
    assert len(a) == 3 * 3 * 10
    s = summarize(a)
    assert list(s.columns) == ["group", "metric", "mean", "std"] and len(s) == 9
    full = sample_metrics(y, p)["prauc"].mean()
    assert abs(s.query("group=='overall' and metric=='prauc'")["mean"].item() - full) < 0.1


def test_ddi_rate_hand_case():
    ddi = np.zeros((3, 3))
    ddi[0, 1] = ddi[1, 0] = 1
    y = np.array([[1, 1, 1], [1, 0, 1]])
    # pairs: sample0 -> (0,1),(0,2),(1,2); sample1 -> (0,2); one bad pair of four
    assert ddi_rate(y, ddi) == pytest.approx(0.25)
