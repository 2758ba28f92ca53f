"""`leader study plan` says what the study can detect before it is run (issue: power before spending)."""

from __future__ import annotations

import pandas as pd
import pytest


def _spec(tmp_path, n_patients: int, seeds: str = "[0]"):
    from leader.study.spec import load_study

    p = tmp_path / "s.yaml"
    p.write_text(
        f"name: s\nstorage_path: {tmp_path}\nseeds: {seeds}\n"
        f"datasets: [{{name: syn, source: synthetic, prepare: {{n_patients: {n_patients}, synthetic_seed: 912}}}}]\n"
        "student: {kd: none}\n"
    )
    return load_study(p)


def test_mde_from_the_stated_approximation_and_the_warning(tmp_path):
    from leader.significance import DEFAULT_PER_PATIENT_SD, min_detectable_difference
    from leader.study.plan import power_lines

    spec = _spec(tmp_path, 1000)
    (line,) = power_lines(spec, tmp_path / "s")[1:]
    want = min_detectable_difference(DEFAULT_PER_PATIENT_SD, 100, 1)  # 10 % of 1,000 patients are test
    assert f"{want:.3f}" in line and "100 test patients" in line and "assumed 0.1" in line
    assert want == pytest.approx((1.959964 + 0.841621) * 0.1 / 10, rel=1e-4)
    assert "WARNING: above the paper's KD effect +0.012" in line


def test_mde_uses_a_pilots_variance_when_results_exist(tmp_path):
    from leader.significance import sd_from_interval
    from leader.study.plan import power_lines

    spec = _spec(tmp_path, 60000)  # 6,000 test patients
    res = tmp_path / "s" / "results"
    res.mkdir(parents=True)
    rows = [
        {"dataset": "syn", "group": "overall", "ci_low": -0.002, "ci_high": 0.002, "n_patients": 400},
        {"dataset": "syn", "group": "overall", "ci_low": -0.004, "ci_high": 0.004, "n_patients": 400},
        {"dataset": "other", "group": "overall", "ci_low": -1.0, "ci_high": 1.0, "n_patients": 400},
    ]
    pd.DataFrame(rows).to_parquet(res / "paired.parquet")
    (line,) = power_lines(spec, tmp_path / "s")[1:]
    sd = float(sd_from_interval(-0.003, 0.003, 400))  # the median of the dataset's two tests
    assert f"per-patient SD {sd:.3f}" in line and "median of 2 paired test(s)" in line
    assert "WARNING" not in line  # 6,000 patients can see +0.012
