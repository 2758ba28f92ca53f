"""The multiplicity and power arithmetic behind the Findings and `leader study plan`:
Holm-Bonferroni against a hand-worked example, and the minimum detectable difference against
its closed form and against simulation (a paired test at that effect rejects ~80 % of the time)."""

from __future__ import annotations

import numpy as np
import pytest

from leader.significance import (
    DEFAULT_PER_PATIENT_SD,
    holm,
    mde_from_interval,
    min_detectable_difference,
    paired_test,
    sd_from_interval,
)

Z = 1.959964 + 0.841621  # z_{0.975} + z_{0.80}


def test_holm_hand_worked_example():
    # p sorted: 0.01, 0.02, 0.03, 0.04, 0.20 -> x5, x4, x3, x2, x1 = 0.05, 0.08, 0.09, 0.08, 0.20
    # monotone step-down (running max): 0.05, 0.08, 0.09, 0.09, 0.20; back in input order:
    got = holm([0.04, 0.01, 0.20, 0.03, 0.02])
    assert got == pytest.approx([0.09, 0.05, 0.20, 0.09, 0.08])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    nan = holm([0.01, float("nan"), 0.04])  # an untested claim is not in the family
    assert nan[0] == pytest.approx(0.02) and np.isnan(nan[1]) and nan[2] == pytest.approx(0.04)
    assert holm([]).shape == (0,)
    # Holm rejects at least what Bonferroni does and never less than the raw p
    p = np.random.default_rng(0).uniform(0, 0.2, 12)
    assert (holm(p) <= np.minimum(1, 12 * p) + 1e-12).all() and (holm(p) >= p).all()


def test_min_detectable_difference_closed_form_and_pilots():
    assert min_detectable_difference(0.10, 100) == pytest.approx(Z * 0.10 / 10, rel=1e-5)
    assert min_detectable_difference(0.10, 400) == pytest.approx(Z * 0.10 / 20, rel=1e-5)
    assert min_detectable_difference(0.10, 100, alpha=0.01) > min_detectable_difference(0.10, 100)
    assert np.isnan(min_detectable_difference(0.10, 1))
    # a 1-D pilot: its per-patient SD; a (seeds, patients) pilot: seed noise shrinks with seeds
    rng = np.random.default_rng(1)
    patient = rng.normal(0, 0.05, 400)
    pilot = patient + rng.normal(0, 0.10, (3, 400))  # seed noise sd 0.10 around each patient
    one, many = min_detectable_difference(pilot, 400, 1), min_detectable_difference(pilot, 400, 10)
    assert one == pytest.approx(Z * np.sqrt(0.05**2 + 0.10**2) / 20, rel=0.1)
    assert many == pytest.approx(Z * np.sqrt(0.05**2 + 0.10**2 / 10) / 20, rel=0.1) and many < one
    assert min_detectable_difference(pilot.mean(0), 400, 10) == pytest.approx(
        Z * pilot.mean(0).std(ddof=1) / 20, rel=1e-6
    )  # 1-D: no seed split, used as is
    # the no-pilot approximation is a stated constant
    assert DEFAULT_PER_PATIENT_SD == 0.10


def test_interval_round_trip():
    sd, n = 0.09, 30
    half = 1.959964 * sd / np.sqrt(n)
    assert sd_from_interval(-half, half, n) == pytest.approx(sd, rel=1e-5)
    assert mde_from_interval(-half, half) == pytest.approx(min_detectable_difference(sd, n), rel=1e-5)


def test_an_effect_at_the_mde_is_detected_about_80_percent_of_the_time():
    """Simulated paired studies (one sample per patient, per-patient SD 0.1, 60 patients): the
    patient bootstrap of leader.significance rejects at the MDE in ~80 % of them."""
    n, sd = 60, 0.1
    mde = min_detectable_difference(sd, n)
    rng = np.random.default_rng(7)
    hits = 0
    trials = 150
    for _ in range(trials):
        b = rng.uniform(0.4, 0.6, n)
        a = b + mde + rng.normal(0, sd, n)
        hits += paired_test(a[None], b[None], np.arange(n), rounds=400, seed=int(rng.integers(1e9))).p_bootstrap < 0.05
    assert 0.65 <= hits / trials <= 0.93
