"""The report page renders in headless Chromium: no JS/console errors, every figure decodes,
and the tables a reader sees carry the stored numbers."""

from __future__ import annotations

import pandas as pd
import pytest
from report_study import make_study_dir

from leader.report.build import build_report
from leader.report.chromium import check_html, find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="headless Chromium not installed (Debian package 'chromium')"
)


def test_html_renders_in_headless_chromium(tmp_path):
    study = make_study_dir(
        tmp_path,
        name="html",
        n_samples=60,
        n_trials=6,
        report={
            "tables": ["main", "ablation", "efficiency", "dataset_stats"],
            "figures": ["ablation", "efficiency", "sensitivity_alpha"],
        },
    )
    out = build_report(study, tmp_path / "out")
    shot = tmp_path / "page.png"
    r = check_html(out / "index.html", screenshot=shot)
    assert r.rendered, "load handler did not run"
    assert r.console_errors == []
    assert r.broken_images == 0
    assert r.dom.count("<img") == 3
    assert shot.is_file() and shot.stat().st_size > 10_000
    res = pd.read_parquet(out / "results.parquet")
    best = res[(res["table"] == "overall") & res["best"] & (res["group"] == "overall") & (res["metric"] == "prauc")]
    assert f'<b>{best["mean"].iloc[0]:.4f}<span class="sd">± {best["std"].iloc[0]:.4f}' in r.dom
    assert 'class="note">missing: results/dataset_stats' in r.dom
