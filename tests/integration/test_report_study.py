"""A report built from a REAL small study run (leader.study.runner on the MIMIC-III demo: Ray
Tune + Optuna sweep, ablation/sensitivity grid, efficiency): the tables carry the stored trial
results, every declared figure exists or says why it is missing, the page renders in headless
Chromium, and a variant whose results are missing is reported as missing."""

from __future__ import annotations

import shutil
import textwrap

import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SPEC = """
name: tiny_report
storage_path: {storage}
datasets:
  - name: demo
    source: demo
student:
  epochs: 2
  kd: none
search:
  num_samples: 3
  sampler: random
  space:
    lr: {{type: loguniform, low: 0.0005, high: 0.01}}
    dropout: {{type: uniform, low: 0.0, high: 0.4}}
  scheduler: {{type: fifo}}
ablations:
  variants: [full, no_align, split_visit_encoder]
sensitivity:
  beta: [0.0, 0.5]
evaluation:
  bootstrap_rounds: 5
"""


@pytest.fixture(scope="module")
def real_study(tmp_path_factory, demo_root):
    from leader.study.runner import run_study

    root = tmp_path_factory.mktemp("real_study")
    spec = root / "tiny.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(storage=root / "studies")))
    mp = pytest.MonkeyPatch()
    mp.setenv("LEADER_REPORTS_DIR", str(root / "reports"))
    try:
        study_dir = run_study(spec, echo=lambda *a: None)
    finally:
        mp.undo()
    return study_dir, root


def test_runner_built_report_matches_stored_results(real_study):
    from leader.report.build import _FIG_TITLES, ALL_FIGURES, declared_items
    from leader.report.load import load_study

    study_dir, root = real_study
    out = study_dir / "report"  # the runner's last stage wrote it, in the study's own folder
    assert (out / "index.html").is_file() and (out / "index.md").is_file()
    met = pd.read_parquet(study_dir / "results" / "metrics.parquet")
    boot = pd.read_parquet(study_dir / "results" / "bootstrap.parquet")
    res = pd.read_parquet(out / "results.parquet")
    ov = res[res["table"] == "overall"]
    assert {"Prior", "LEADER(S)"} <= set(ov["row"])
    for _, r in ov.dropna(subset=["mean"]).iterrows():
        src = met[
            met["stage"].isin(["baseline", "best"])
            & (met["model"] == r["row"])
            & (met["group"] == r["group"])
            & (met["metric"] == r["metric"])
        ]
        assert r["mean"] == pytest.approx(src["mean"].mean())
        b = boot[
            boot["run_id"].isin(src["run_id"])
            & (boot["stage"].isin(["baseline", "best"]))
            & (boot["group"] == r["group"])
            & (boot["metric"] == r["metric"])
        ]
        if len(src) == 1:
            assert r["mean"] == pytest.approx(b["value"].mean()) and r["std"] == pytest.approx(b["value"].std())
    ab = res[(res["table"] == "ablation") & (res["metric"] == "prauc") & (res["group"] == "overall")].set_index("row")
    assert set(ab.index) == {"full", "no_align", "split_visit_encoder"}
    assert ab.loc["no_align", "delta"] == pytest.approx(ab.loc["no_align", "mean"] - ab.loc["full", "mean"])
    # declared figures: a file where the study has data, a visible 'missing' note where not
    s = load_study(study_dir)
    _, figs, _ = declared_items(s.spec)
    md = (out / "index.md").read_text()
    for name in figs:
        png = out / "figures" / f"{name}.png"
        assert png.is_file() or f"## {_FIG_TITLES[name]}\n\n> **missing" in md, name
    for name in ("groups", "ablation", "sensitivity_beta", "optuna_history", "efficiency"):
        if name in figs:
            assert (out / "figures" / f"{name}.png").is_file() and (out / "figures" / f"{name}.svg").is_file()
    assert "sensitivity_alpha" not in figs or "missing: no sensitivity runs for alpha" in md
    assert set(ALL_FIGURES) >= set(figs)


def test_real_report_renders_and_missing_variant(real_study, tmp_path):
    from leader.report.build import build_report
    from leader.report.chromium import check_html, find_chromium

    study_dir, _ = real_study
    copy = tmp_path / "tiny_report"
    shutil.copytree(study_dir / "results", copy / "results")
    shutil.copy(study_dir / "spec.yaml", copy / "spec.yaml")
    met = pd.read_parquet(copy / "results" / "metrics.parquet")
    met[met["variant"] != "split_visit_encoder"].to_parquet(copy / "results" / "metrics.parquet")
    out = build_report(copy, tmp_path / "out")
    ab = pd.read_csv(out / "tables" / "ablation.csv")
    row = ab[ab["Variant"] == "w/o shared visit encoder"]
    cols = ["Overall PRAUC", "Overall Jaccard", "Overall F1"]
    assert len(row) == 1 and (row[cols] == "missing").all(axis=None)
    if find_chromium() is None:
        pytest.skip("headless Chromium not installed (Debian package 'chromium'); page render not checked")
    r = check_html(out / "index.html")
    assert r.rendered and r.console_errors == [] and r.broken_images == 0
    assert "w/o shared visit encoder" in r.dom
