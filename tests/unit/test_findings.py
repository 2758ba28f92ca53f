"""Findings a reviewer would sign: constructed paired results give each of held / contradicted /
inconclusive, the Holm adjustment across a dataset's claims, the smallest-detectable-difference
line beside the paper's effect, a multi-visit-only baseline compared on the group it serves, and
a teacher that never moved past its linear probe named as such.

The numbers are constructed (not a study): only the decision rules are under test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leader.report.findings import (
    CONTRADICTED,
    HELD,
    INCONCLUSIVE,
    UNTESTABLE,
    findings,
    findings_frame,
    findings_markdown,
    teacher_probe_notes,
)
from leader.report.findings_render import detail_html, summary_html
from leader.significance import mde_from_interval

DS, BB = "syn", "llama"


def _row(comparison, diff, p, half=0.01, group="overall", patients=50, seeds=3, ci=None) -> dict:
    lo, hi = ci if ci is not None else (diff - half, diff + half)
    return dict(
        dataset=DS,
        backbone=BB,
        comparison=comparison,
        a="",
        b="",
        group=group,
        metric="prauc",
        diff=diff,
        ci_low=lo,
        ci_high=hi,
        p_bootstrap=p,
        p_wilcoxon=p,
        n_samples=2 * patients,
        n_patients=patients,
        seeds_a=seeds,
        seeds_b=seeds,
    )


def _metrics(models: dict[str, float]) -> pd.DataFrame:
    rows = [
        dict(dataset=DS, backbone=BB if m.startswith("LEADER") or m == "Probe" else "", stage=stage, model=m,
             variant="full", param="", param_value=np.nan, group="overall", metric="prauc", mean=v, std=0.01)
        for m, (stage, v) in models.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


BASE = _metrics({"LEADER(S)": ("best", 0.70), "LEADER(T)": ("teacher", 0.72), "Prior": ("baseline", 0.50)})


def _by_claim(items):
    return {f.claim: f for f in items if f.dataset == DS}


def test_three_outcomes_holm_and_the_mde_line():
    paired = pd.DataFrame(
        [
            _row("full_vs_split_visit_encoder", +0.030, 0.001),  # held
            _row("full_vs_output_kd", -0.030, 0.002),  # contradicted
            _row("full_vs_kd_shuffled", +0.020, 0.030),  # p < 0.05 alone, not after Holm
            _row("full_vs_no_kd", +0.005, 0.600, ci=(-0.015, +0.025)),  # inconclusive, MDE vs the paper's +0.012
        ]
    )
    f = _by_claim(findings(BASE, paired, pd.DataFrame()))
    held = f["a shared visit encoder > split encoders"]
    contra = f["feature-level KD > output-level KD"]
    holmed = f["the gain is transfer, not regularisation: LEADER(S) > KD to shuffled teacher states"]
    kd = f["distillation helps: LEADER(S) > LEADER(S) w/o KD"]
    assert (held.status, contra.status, holmed.status, kd.status) == (HELD, CONTRADICTED, INCONCLUSIVE, INCONCLUSIVE)
    # Holm by hand: 4 tests, sorted p 0.001, 0.002, 0.03, 0.6 -> 4*0.001, 3*0.002, 2*0.03, 1*0.6 (monotone)
    assert [held.p_holm, contra.p_holm, holmed.p_holm, kd.p_holm] == pytest.approx([0.004, 0.006, 0.06, 0.6])
    assert holmed.p == 0.03 and "Holm p 0.06" in holmed.evidence
    # MDE from the CI's width: (z_.975 + z_.8) * (0.04 / (2 * z_.975)) = 0.0286
    assert kd.mde == pytest.approx((1.959964 + 0.841621) * 0.04 / (2 * 1.959964), rel=1e-5)
    assert kd.mde == pytest.approx(mde_from_interval(-0.015, 0.025))
    assert "smallest detectable difference 0.029 (80 % power)" in kd.evidence
    assert "paper's effect +0.012 (Table IV, MIMIC-III): below what this study can detect" in kd.evidence
    assert "smallest detectable" not in held.evidence  # only an inconclusive claim carries it
    # untested claims stay visible, and outside the family
    assert f["LEADER(S) >= LEADER(T) on patients without history"].status == UNTESTABLE
    md = findings_markdown(findings(BASE, paired, pd.DataFrame()))
    assert "Holm-Bonferroni adjusted across the tested claims of each dataset (syn: 4)" in md.replace("\n", " ")
    assert "**CONTRADICTED**" in md and "**held**" in md and "| inconclusive |" in md


def test_outcomes_in_the_summary_and_the_csv():
    paired = pd.DataFrame([_row("full_vs_no_kd", +0.03, 0.001, seeds=1), _row("full_vs_output_kd", -0.03, 0.001)])
    items = findings(BASE, paired, pd.DataFrame())
    html = summary_html(items)
    assert html.index('id="findings"') < html.index("<ul")  # the page opens with the Findings
    assert 'style="color:#1a7f37">HELD' in html and 'style="color:#cf222e">CONTRADICTED' in html
    assert (
        "one seed" in html
        and "one seed" in _by_claim(items)["distillation helps: LEADER(S) > LEADER(S) w/o KD"].evidence
    )
    assert "one seed" not in _by_claim(items)["feature-level KD > output-level KD"].evidence
    assert 'class="findings"' in detail_html(items)
    frame = findings_frame(items)
    assert {"status", "diff", "ci_low", "ci_high", "p", "p_holm", "mde", "backbone"} <= set(frame.columns)
    assert set(frame["status"]) <= {HELD, CONTRADICTED, INCONCLUSIVE, UNTESTABLE}


def test_non_inferiority_claim():
    ok = [_row("student_vs_teacher", -0.004, 0.5, ci=(-0.008, 0.001), group="no_history")]
    bad = [_row("student_vs_teacher", -0.05, 0.001, ci=(-0.07, -0.03), group="no_history")]
    wide = [_row("student_vs_teacher", 0.00, 0.9, ci=(-0.04, 0.04), group="no_history")]
    claim = "LEADER(S) >= LEADER(T) on patients without history"
    got = [_by_claim(findings(BASE, pd.DataFrame(r), pd.DataFrame()))[claim].status for r in (ok, bad, wide)]
    assert got == [HELD, CONTRADICTED, INCONCLUSIVE]


def test_multi_visit_only_baseline_is_compared_on_the_group_it_serves():
    paired = pd.DataFrame(
        [
            _row("student_vs_Prior", +0.05, 0.001),
            _row("student_vs_MICRON", +0.04, 0.002, group="history"),  # no overall row: it scores history only
        ]
    )
    f = _by_claim(findings(BASE, paired, pd.DataFrame()))["LEADER(S) beats every baseline"]
    assert f.status == HELD, f.evidence
    assert (
        "MICRON +0.0400 (p 0.002, on multi-visit (has history) samples)" in f.evidence and "missing" not in f.evidence
    )
    # the weakest component decides (intersection-union): the larger p
    assert f.p == 0.002 and f.comparison == "student_vs_MICRON"
    # a baseline with no usable test keeps "every" from holding, but is not a failure
    one_patient = pd.concat(
        [paired, pd.DataFrame([_row("student_vs_COGNet", +0.1, 0.001, group="history", patients=1)])]
    )
    g = _by_claim(findings(BASE, one_patient, pd.DataFrame()))["LEADER(S) beats every baseline"]
    assert g.status == INCONCLUSIVE and "COGNet: no usable test" in g.evidence
    # one baseline significantly better contradicts "beats every baseline"
    worse = pd.DataFrame([_row("student_vs_Prior", +0.05, 0.001), _row("student_vs_LogReg", -0.03, 0.001)])
    h = _by_claim(findings(BASE, worse, pd.DataFrame()))["LEADER(S) beats every baseline"]
    assert h.status == CONTRADICTED and h.comparison == "student_vs_LogReg"


def test_teacher_that_never_beat_its_probe_is_named():
    teacher = pd.DataFrame([dict(dataset=DS, backbone=BB, steps=24, best_step=0)])
    paired = pd.DataFrame([_row("teacher_vs_Probe", 0.0, 1.0, ci=(0.0, 0.0)), _row("teacher_vs_Prior", 0.2, 0.001)])
    items = findings(BASE, paired, pd.DataFrame(), teacher)
    check = [f for f in items if f.comparison == "teacher_vs_Probe"]
    assert len(check) == 1 and check[0].status == CONTRADICTED and not check[0].in_family
    note = "LEADER(T) = its linear probe: LoRA did not improve validation PRAUC in 24 steps"
    assert teacher_probe_notes(items) == {(DS, BB): note}
    assert note in findings_markdown(items) and note in summary_html(items)
    # without results/teacher.parquet, identical test scores in every group still name it
    same = pd.DataFrame([_row("teacher_vs_Probe", 0.0, 1.0, ci=(0.0, 0.0), group=g) for g in ("overall", "history")])
    notes = teacher_probe_notes(findings(BASE, same, pd.DataFrame()))
    assert notes[(DS, BB)].startswith("LEADER(T) = its linear probe: identical test scores in every group")
    # a teacher that moved gets no note, and a real test against the probe
    moved = pd.DataFrame([_row("teacher_vs_Probe", 0.02, 0.001)])
    items = findings(BASE, moved, pd.DataFrame(), pd.DataFrame([dict(dataset=DS, backbone=BB, steps=24, best_step=12)]))
    assert teacher_probe_notes(items) == {}
    assert [f.status for f in items if f.comparison == "teacher_vs_Probe"] == [HELD]


def test_overall_table_marks_the_probe_teacher():
    from leader.report.tables import overall_table

    t = overall_table(BASE, pd.DataFrame(), teacher_notes={(DS, BB): "LEADER(T) = its linear probe: ..."})
    labels = [r[1] for r in t.rows]
    assert "LEADER(T) ‡" in labels and "LEADER(S)" in labels
    assert any(n.startswith("‡ syn / llama: LEADER(T) = its linear probe") for n in t.notes)
    assert [r[2] for r in t.rows] == ["1", "1", "1"]  # seeds behind each row, as an integer
    scored = t.long[(t.long["row"] == "LEADER(T)") & t.long["mean"].notna()]
    assert len(scored) == 1 and scored["note"].str.contains("linear probe").all()  # results.parquet says so too
