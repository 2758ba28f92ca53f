"""Reports from a study result folder: numbers match the stored results, declared outputs
exist, missing data is shown as missing, and patient-level columns are refused.

The study folder comes from tests/report_study.py: synthetic predictions, metrics really
computed by leader.metrics.bootstrap_metrics (the runner's own path)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_study import make_study_dir
from scipy import stats

from leader.errors import DataError
from leader.report.build import ALL_FIGURES, build_report, declared_items


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    study = make_study_dir(root, name="small", n_samples=80, n_trials=10)
    return study, build_report(study, root / "out")


def _overall(res: pd.DataFrame) -> pd.DataFrame:
    return res[res["table"] == "overall"]


def test_overall_numbers_match_stored_metrics_and_bootstrap(report):
    study, out = report
    res = pd.read_parquet(out / "results.parquet")
    met = pd.read_parquet(study / "results" / "metrics.parquet")
    boot = pd.read_parquet(study / "results" / "bootstrap.parquet")
    ov = _overall(res)
    assert len(ov) == 5 * 9  # Frequency + 2 teachers + 2 students, 3 groups x 3 metrics
    for _, r in ov.iterrows():
        model, _, bb = r["row"].partition(" [")
        bb = bb.rstrip("]")
        m = met[
            (met["model"] == model)
            & (met["backbone"] == bb)
            & (met["group"] == r["group"])
            & (met["metric"] == r["metric"])
            & met["stage"].isin(["baseline", "teacher", "best"])
        ]
        assert len(m) == 1
        assert r["mean"] == pytest.approx(m["mean"].iloc[0], abs=1e-12)
        assert r["std"] == pytest.approx(m["std"].iloc[0], abs=1e-12)
        b = boot[
            (boot["run_id"] == m["run_id"].iloc[0]) & (boot["group"] == r["group"]) & (boot["metric"] == r["metric"])
        ]["value"]
        assert r["mean"] == pytest.approx(b.mean(), abs=1e-12) and r["std"] == pytest.approx(b.std(), abs=1e-12)
    # best in bold = max mean per column, and its p-value is the Welch test against the runner-up
    for (g, metric), col in ov.groupby(["group", "metric"]):
        ranked = col.sort_values("mean", ascending=False)
        assert ranked["best"].iloc[0] and not ranked["best"].iloc[1:].any()
        ids = []
        for row in ranked["row"].iloc[:2]:
            model, _, bb = row.partition(" [")
            ids.append(
                met[
                    (met["model"] == model)
                    & (met["backbone"] == bb.rstrip("]"))
                    & met["stage"].isin(["baseline", "teacher", "best"])
                ]["run_id"].iloc[0]
            )
        a, b = (boot[(boot["run_id"] == i) & (boot["group"] == g) & (boot["metric"] == metric)]["value"] for i in ids)
        p = stats.ttest_ind(a, b, equal_var=False).pvalue
        assert ranked["p_value_vs_runner_up"].iloc[0] == pytest.approx(p)
    md = (out / "index.md").read_text()
    best = ov[(ov["group"] == "overall") & (ov["metric"] == "prauc") & ov["best"]].iloc[0]
    assert f"**{best['mean']:.4f} ± {best['std']:.4f}" in md


def test_ablation_deltas_against_full(report):
    study, out = report
    res = pd.read_parquet(out / "results.parquet")
    met = pd.read_parquet(study / "results" / "metrics.parquet")
    ab = res[res["table"] == "ablation"]
    assert set(ab["row"]) == {"full", "no_kd", "output_kd", "no_align", "split_visit_encoder"}
    assert set(ab["group"]) == {"overall", "history", "no_history"}  # the paper's three columns
    src = met[met["stage"] == "ablation"].set_index(["variant", "group", "metric"])["mean"]
    for _, r in ab.iterrows():
        key = (r["row"], r["group"], r["metric"])
        assert r["mean"] == pytest.approx(src[key]) and r["backbone"] == "tiny-llama"
        if r["row"] != "full":
            assert r["delta"] == pytest.approx(src[key] - src[("full", r["group"], r["metric"])])
    csv = pd.read_csv(out / "tables" / "ablation.csv")
    assert csv["Variant"].tolist()[0] == "LEADER(S) full" and "w/o KD" in csv["Variant"].tolist()
    assert list(csv.columns[:4]) == ["Dataset", "Backbone", "Variant", "Overall PRAUC"]


def test_every_declared_output_exists(report):
    _, out = report
    for name in ALL_FIGURES:
        for ext in ("png", "svg"):
            f = out / "figures" / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    for name in ("overall", "backbone", "ablation", "sensitivity", "efficiency", "optuna"):
        assert (out / "tables" / f"{name}.csv").is_file()
        tex = (out / "tables" / f"{name}.tex").read_text()
        assert "\\begin{tabular}" in tex and "±" not in tex
    html = (out / "index.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(ALL_FIGURES)
    assert 'src="http' not in html and "<link" not in html  # self-contained
    # the dataset-statistics table has no data in this study: shown as missing, not invented
    assert "missing: results/dataset_stats" in html


def test_efficiency_and_optuna_numbers(report):
    study, out = report
    res = pd.read_parquet(out / "results.parquet")
    eff = pd.read_parquet(study / "results" / "efficiency.parquet")
    sp = res[(res["table"] == "efficiency") & (res["metric"] == "speedup")]
    for _, r in sp.iterrows():
        bb = r["row"].split(" batch=")[0]
        e = eff[eff["backbone"] == bb].set_index("model")["latency_ms_per_patient"]
        assert r["mean"] == pytest.approx(e["LEADER(T)"] / e["LEADER(S)"])
    trials = pd.read_parquet(study / "results" / "optuna_trials.parquet")
    best = res[(res["table"] == "optuna") & (res["metric"] == "objective")]["mean"].iloc[0]
    assert best == pytest.approx(trials[trials["state"] == "COMPLETE"]["value"].max())
    imp = res[res["table"] == "optuna_importance"]
    assert set(imp["row"]) == {"lr", "alpha", "beta", "dropout"} and imp["mean"].sum() == pytest.approx(1.0)


def test_missing_variant_and_files_are_reported_not_invented(tmp_path):
    study = make_study_dir(
        tmp_path,
        name="gappy",
        n_samples=60,
        n_trials=4,
        report={"tables": ["main", "ablation", "efficiency"], "figures": ["sensitivity_beta"]},
    )
    met = pd.read_parquet(study / "results" / "metrics.parquet")
    met = met[~((met["variant"] == "no_align") | (met["param"] == "beta"))]
    met.to_parquet(study / "results" / "metrics.parquet")
    (study / "results" / "efficiency.parquet").unlink()
    out = build_report(study, tmp_path / "out")
    ab = pd.read_csv(out / "tables" / "ablation.csv")
    row = ab[ab["Variant"] == "w/o align"]
    assert len(row) == 1 and (row[[c for c in ab.columns if c.endswith(("PRAUC", "Jaccard", "F1"))]] == "missing").all(
        axis=None
    )
    res = pd.read_parquet(out / "results.parquet")
    gap = res[(res["table"] == "ablation") & (res["row"] == "no_align")]
    assert (gap["note"] == "missing").all() and gap["mean"].isna().all()
    md = (out / "index.md").read_text()
    assert "missing file: efficiency.parquet" in md
    assert "missing: no sensitivity runs for beta" in md
    assert not (out / "figures" / "sensitivity_beta.png").exists()
    # only what the spec declared (the backbone table comes with 'main' when there are 2+ backbones;
    # the Findings open every report; every report with a spec has its deviations from the paper
    # and its paper-artifact coverage)
    assert sorted(p.stem for p in (out / "tables").glob("*.csv")) == [
        "ablation",
        "backbone",
        "deviations",
        "efficiency",
        "findings",
        "overall",
        "paper_artifacts",
    ]
    # what is gone is named against the paper's artifact, not passed over
    cover = pd.read_csv(out / "tables" / "paper_artifacts.csv", keep_default_na=False).set_index("paper")
    assert cover.loc["Table IV", "status"] == "incomplete"
    assert "no_align: overall prauc" in cover.loc["Table IV", "gaps"]
    assert "figure sensitivity_beta: not drawn" in cover.loc["Fig. 3", "gaps"]
    assert "table dataset_stats: not written" in cover.loc["Table VI", "gaps"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == []


def test_patient_level_columns_are_refused(tmp_path):
    study = make_study_dir(tmp_path, name="leaky", n_samples=40, n_trials=3)
    eff = pd.read_parquet(study / "results" / "efficiency.parquet")
    eff["patient_id"] = np.arange(len(eff))
    eff.to_parquet(study / "results" / "efficiency.parquet")
    with pytest.raises(DataError) as e:
        build_report(study, tmp_path / "out")
    assert "efficiency.parquet" in str(e.value) and "patient_id" in str(e.value)
    assert not (tmp_path / "out" / "index.html").exists()


def test_declared_items_accepts_study_spec_names():
    t, f, unknown = declared_items(
        {
            "report": {"tables": ["main", "optuna"], "figures": ["sensitivity_alpha", "optuna_history"]},
            "teacher": {"backbones": ["qwen-7b", "qwen-1.8b"]},
        }
    )
    assert t == ["overall", "backbone", "optuna"]
    assert f == ["sensitivity_alpha", "optuna_history", "optuna_importance"] and unknown == []
    t, f, unknown = declared_items({"report": ["ablation", "efficiency", "bogus"]})
    assert t == ["ablation", "efficiency"] and f == ["ablation", "efficiency"] and unknown == ["bogus"]
    t, f, _ = declared_items({})
    assert len(t) == 7 and f == ALL_FIGURES


def test_formatting_on_fabricated_numbers():
    """Fabricated numbers: only the text formatting is under test here."""
    from leader.report.render import latex
    from leader.report.tables import Cell, Table, fmt

    assert fmt(0.123456, 0.0101) == "0.1235 ± 0.0101" and fmt(float("nan"), 0.1) == "missing"
    t = Table("x", "T_1 & more", "50% ±", ["Dataset"], ["A"], rows=[["d_1"]], cells=[[Cell("0.5 ± 0.1†", bold=True)]])
    tex = latex(t)
    assert r"\textbf{0.5 $\pm$ 0.1$^\dagger$}" in tex and r"d\_1" in tex and r"T\_1 \& more" in tex
    assert math.isnan(float("nan"))


def test_cli_report(tmp_path):
    from typer.testing import CliRunner

    from leader.cli.main import app

    study = make_study_dir(tmp_path, name="cli", n_samples=40, n_trials=3, report={"tables": ["main"], "figures": []})
    r = CliRunner().invoke(app, ["report", str(study), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "index.html").is_file() and (tmp_path / "o" / "tables" / "overall.tex").is_file()


def test_every_name_the_study_schema_accepts_is_one_the_report_emits():
    from leader.report.build import declared_items
    from leader.study.spec import FIGURES, TABLES, ReportSpec

    rep = ReportSpec(tables=list(TABLES), figures=list(FIGURES)).model_dump()
    tables, figures, unknown = declared_items({"report": rep})
    assert unknown == []
    assert {"overall", "backbone", "optuna"} <= set(tables)
    assert {"sensitivity_alpha", "sensitivity_beta", "optuna_importance"} <= set(figures)


def test_every_paper_artifact_names_items_the_report_emits_and_its_captions_say_so(report):
    """The mapping of the paper's result tables and figures (issue #23's list) to report items:
    each item exists under that name, and its caption names the paper artifact it reproduces."""
    from leader.report.names import FIGURES, PAPER_ARTIFACTS, TABLES, paper_caption

    papers = [a.paper for a in PAPER_ARTIFACTS]
    assert papers == ["Table III", "Table IV", "Table V", "Table VI", "Table VII", "Fig. 2", "Fig. 3", "Fig. 4"]
    for a in PAPER_ARTIFACTS:
        assert a.items and set(a.tables) <= set(TABLES) and set(a.figures) <= set(FIGURES), a.paper
    _, out = report
    md = (out / "index.md").read_text()
    for item in ("table:overall", "table:ablation", "table:backbone", "figure:sensitivity_alpha"):
        assert paper_caption(item) and paper_caption(item) in md, item
    assert "Paper: Table III (overall comparison with the baselines); Table V (" in paper_caption("table:overall")
