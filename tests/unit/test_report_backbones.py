"""Per backbone everywhere: a two-backbone study (LLaMA full 0.78, Qwen full 0.70) never prints a
pooled "full 0.74": ablation, sensitivity, backbone and efficiency tables, the figures and the
Findings all carry one row (or bar, or claim) per backbone, with the paper's three group columns.

Constructed metrics for the exact numbers; the shared synthetic study for the built report."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from report_study import make_study_dir

from leader.report import figures as F
from leader.report.build import build_report
from leader.report.findings import HELD, INCONCLUSIVE, findings
from leader.report.tables import ablation_table, backbone_table, efficiency_table, sensitivity_table

FULL = {"llama": 0.78, "qwen": 0.70}
GROUP_SHIFT = {"overall": 0.0, "history": 0.02, "no_history": -0.02}


def _rows() -> pd.DataFrame:
    rows = []

    def add(stage, bb, model, variant, mean, param="", value=np.nan):
        for g, shift in GROUP_SHIFT.items():
            for m in ("prauc", "jaccard", "f1"):
                rows.append(dict(run_id=f"{stage}-{bb}-{model}-{variant}-{param}{value}", stage=stage, dataset="mimic",
                                 backbone=bb, model=model, variant=variant, param=param, param_value=value, seed=0,
                                 group=g, metric=m, mean=mean + shift, std=0.01))  # fmt: skip

    for bb, full in FULL.items():
        add("ablation", bb, "LEADER(S)", "full", full)
        add("ablation", bb, "LEADER(S)", "no_kd", full - 0.03)
        add("best", bb, "LEADER(S)", "full", full)
        add("teacher", bb, "LEADER(T)", "full", full + 0.01)
        for a, bump in ((0.0, -0.02), (0.5, 0.0), (1.0, -0.01)):
            add("sensitivity", bb, "LEADER(S)", "full", full + bump, "alpha", a)
    add("baseline", "", "Prior", "full", 0.5)
    return pd.DataFrame(rows)


def _cells(t, *labels) -> list[str]:
    return [[c.text for c in cs] for r, cs in zip(t.rows, t.cells, strict=True) if r[: len(labels)] == list(labels)]


def test_tables_have_one_row_per_backbone_and_the_three_groups():
    m = _rows()
    ab = ablation_table(m, ["full", "no_kd"])
    assert ab.row_header == ["Dataset", "Backbone", "Variant"]
    assert [g for g, _ in ab.column_groups] == ["Overall", "Multi-visit (has history)", "Single-visit (no history)"]
    assert _cells(ab, "mimic", "llama", "LEADER(S) full")[0][::3] == ["0.7800", "0.8000", "0.7600"]  # PRAUC x 3 groups
    assert _cells(ab, "mimic", "qwen", "LEADER(S) full")[0][0] == "0.7000"
    assert _cells(ab, "mimic", "qwen", "w/o KD")[0][0] == "0.6700 (-0.0300)"  # delta against its own backbone
    assert not any("0.7400" in c for row in ab.cells for c in (x.text for x in row))
    assert set(ab.long["backbone"]) == {"llama", "qwen"}
    sens = sensitivity_table(m)
    assert {(r[1], r[2]) for r in sens.rows} == {("llama", "alpha"), ("qwen", "alpha")}
    assert _cells(sens, "mimic", "qwen", "alpha", "0.5")[0][0] == "0.7000 ± 0.0100"
    bt = backbone_table(m, ["llama", "qwen"])
    assert [r[1:] for r in bt.rows] == [
        ["llama", "LEADER(T)"],
        ["llama", "LEADER(S)"],
        ["qwen", "LEADER(T)"],
        ["qwen", "LEADER(S)"],
    ]
    assert _cells(bt, "mimic", "qwen", "LEADER(T)")[0][::3] == ["0.7100 ± 0.0100", "0.7300 ± 0.0100", "0.6900 ± 0.0100"]
    eff = pd.DataFrame(
        [
            dict(dataset="mimic", backbone=bb, model=mo, latency_ms_per_patient=lat, peak_mem_mb=mem, batch_size=64,
                 device="cpu")
            for bb, k in (("llama", 1), ("qwen", 2))
            for mo, lat, mem in (("LEADER(T)", 40.0 * k, 900.0 * k), ("LEADER(S)", 0.8, 35.0))
        ]
    )  # fmt: skip
    et = efficiency_table(eff)
    assert [r[1] for r in et.rows] == ["llama", "qwen"] and [c[2].text for c in et.cells] == ["50.0×", "100.0×"]
    assert et.rows[0][2] == "64"  # an integer prints as one


def test_figures_draw_each_backbone():
    m = _rows()
    fig = F.groups_figure(m)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert {"LEADER(S) [llama]", "LEADER(S) [qwen]", "LEADER(T) [llama]", "LEADER(T) [qwen]", "Prior"} == set(labels)
    plt.close(fig)
    fig = F.ablation_figure(m)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["llama", "qwen"]
    plt.close(fig)
    fig = F.sensitivity_figure(m, ("alpha",))
    assert [ax.get_title() for ax in fig.axes] == ["mimic / llama: PRAUC vs alpha", "mimic / qwen: PRAUC vs alpha"]
    plt.close(fig)


def test_findings_are_per_backbone_in_one_holm_family():
    def row(bb, diff, p, comparison="full_vs_no_kd"):
        return dict(dataset="mimic", backbone=bb, comparison=comparison, a="", b="", group="overall",
                    metric="prauc", diff=diff, ci_low=diff - 0.01, ci_high=diff + 0.01, p_bootstrap=p, p_wilcoxon=p,
                    n_samples=400, n_patients=200, seeds_a=3, seeds_b=3)  # fmt: skip

    paired = pd.DataFrame(
        [row("llama", 0.03, 0.001), row("qwen", 0.01, 0.04), row("llama", 0.0, 0.3, "full_vs_output_kd")]
    )
    got = {(f.backbone, f.claim): f for f in findings(_rows(), paired, pd.DataFrame())}
    kd = "distillation helps: LEADER(S) > LEADER(S) w/o KD"
    assert got[("llama", kd)].status == HELD and got[("qwen", kd)].status == INCONCLUSIVE
    # one family per dataset, across backbones: 0.001 x 3, 0.04 x 2, 0.3 x 1
    assert got[("llama", kd)].p_holm == pytest.approx(0.003) and got[("qwen", kd)].p_holm == pytest.approx(0.08)
    curve = "PRAUC rises then falls along alpha (an interior optimum)"
    assert got[("llama", curve)].status == HELD and "best alpha = 0.5" in got[("qwen", curve)].evidence


def test_built_report_of_a_two_backbone_study(tmp_path):
    study = make_study_dir(tmp_path, name="two", n_samples=60, n_trials=4, paired=True)
    out = build_report(study, tmp_path / "out")
    f = pd.read_csv(out / "tables" / "findings.csv")
    assert set(f["backbone"]) == {"tiny-llama", "tiny-qwen2"}
    assert set(f["status"]) <= {"held", "contradicted", "inconclusive", "cannot test"}
    ab = pd.read_csv(out / "tables" / "ablation.csv")
    assert set(ab["Backbone"]) == {"tiny-llama"}  # the study ran its ablation on one backbone only
    bt = pd.read_csv(out / "tables" / "backbone.csv")
    assert len(bt) == 4 and "Single-visit (no history) PRAUC" in bt.columns
    html = (out / "index.html").read_text()
    assert html.index('id="findings"') < html.index('id="fig-groups"') < html.index('id="findings-detail"')
    assert html.index('id="findings-detail"') < html.index('id="overall"') < html.index('id="fig-ablation"')


def test_a_group_nobody_is_scored_in_is_missing_not_multi_visit_only():
    """A cohort without single-visit test samples (the authors' protocol on synthetic data) leaves
    that column empty for every model: the overall table (the paper's Tables III and V) says
    'missing', not '-' (which means: this model needs an earlier visit), and the artifact check
    names the gap."""
    from leader.report.cells import MISSING, NOT_APPLICABLE
    from leader.report.tables import overall_table

    m = _rows()
    m = m[m["stage"].isin(["best", "teacher", "baseline"])]
    empty = overall_table(m[m["group"] != "no_history"], pd.DataFrame())
    single = [cs[6].text for cs in empty.cells]  # Single-visit PRAUC
    assert single == [MISSING] * len(empty.rows) and set(empty.long.query("group == 'no_history'")["note"]) == {MISSING}
    # with the group present, a model without it (multi-visit only) is '-'
    present = overall_table(m[~((m["model"] == "Prior") & (m["group"] != "history"))], pd.DataFrame())
    prior = next(cs for r, cs in zip(present.rows, present.cells, strict=True) if r[1] == "Prior")
    assert prior[6].text == NOT_APPLICABLE and prior[3].text != NOT_APPLICABLE
