"""Findings: each of the LEADER paper's claims that a study can test, with one of three outcomes
a reviewer can sign, and the numbers behind it. Every report opens with them.

  held          significant in the claimed direction
  contradicted  significant in the opposite direction
  inconclusive  neither: the effect, its CI and the smallest effect this study could have
                detected (80 % power, from the paired bootstrap's spread) stand beside the paper's
  cannot test   a side was not run, or the test has fewer than two patients

"Better than" claims use the patient-level paired bootstrap of results/paired.parquet (written
by the runner), on PRAUC, per dataset and backbone. Their p-values are Holm-Bonferroni adjusted
across the tested claims of a dataset (eleven claims at p < 0.05 each would make about one
"held" in two studies chance). "At least as good" claims hold when the 95 % CI's lower end is
above -NONINFERIORITY_MARGIN. Curve and efficiency claims have no test: they are read off the
means (curves against one bootstrap std) and stay outside the Holm family.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import pandas as pd

from leader.report.cells import GROUPS
from leader.report.claims import (  # noqa: F401 - re-exported: the Findings' vocabulary
    ALPHA,
    CONTRADICTED,
    HELD,
    INCONCLUSIVE,
    NAN,
    NONINFERIORITY_MARGIN,
    OUTCOMES,
    PAPER_EFFECTS,
    POWER,
    UNTESTABLE,
    Finding,
    curve_finding,
    efficiency_finding,
    probe_check,
    tested_findings,
)
from leader.significance import holm, mde_from_interval


def _backbones(paired: pd.DataFrame, metrics: pd.DataFrame, ds: str) -> list[str]:
    """The dataset's teacher backbones: those of its paired tests, else of its teacher/student rows."""
    if not paired.empty and "backbone" in paired.columns:
        bbs = paired.loc[paired["dataset"] == ds, "backbone"].astype(str)
        if len(bbs):
            return list(dict.fromkeys(bbs))
    m = metrics[(metrics["dataset"] == ds) & metrics["model"].isin(["LEADER(T)", "LEADER(S)"])]
    return list(dict.fromkeys(m["backbone"].astype(str))) or [""]


def findings(
    metrics: pd.DataFrame,
    paired: pd.DataFrame,
    efficiency: pd.DataFrame,
    teacher: pd.DataFrame | None = None,
) -> list[Finding]:
    """Every claim per dataset and backbone, Holm-adjusted per dataset, each with its outcome.
    `teacher` (optional results/teacher.parquet: dataset, backbone, steps, best_step) says
    whether LoRA ever beat the probe on validation."""
    teacher = pd.DataFrame() if teacher is None else teacher
    paired, metrics, efficiency = (
        x.assign(backbone="") if not x.empty and "backbone" not in x.columns else x
        for x in (paired, metrics, efficiency)
    )
    out: list[Finding] = []
    datasets = list(dict.fromkeys(metrics["dataset"])) if not metrics.empty else []
    for ds in datasets:
        items: list[Finding] = []
        for bb in _backbones(paired, metrics, ds):
            p = paired[(paired["dataset"] == ds) & (paired["backbone"] == bb)] if not paired.empty else paired
            m = metrics[(metrics["dataset"] == ds) & metrics["backbone"].isin([bb, ""])]
            items += tested_findings(p, m, ds, bb)
            items += [curve_finding(m, ds, bb, "alpha"), curve_finding(m, ds, bb, "beta")]
            items.append(efficiency_finding(efficiency, ds, bb))
            check = probe_check(p, teacher, ds, bb)
            if check is not None:
                items.append(check)
        out += decide(items)
    return out


def decide(items: list[Finding]) -> list[Finding]:
    """Holm across the dataset's tested claims, then each tested claim's outcome and evidence."""
    family = [f for f in items if not f.status and f.in_family]
    adj = holm([f.p for f in family])
    for f, a in zip(family, adj, strict=True):
        f.p_holm = float(a)
    for f in items:
        if f.status:
            continue
        if not f.in_family:
            f.p_holm = f.p
        f.mde = mde_from_interval(f.ci_low, f.ci_high, ALPHA, POWER)
        f.paper_effect, f.paper_source = PAPER_EFFECTS.get(f.comparison, (NAN, ""))
        f.status = _outcome(f)
        f.evidence = evidence_text(f)
    return items


def _outcome(f: Finding) -> str:
    significant = f.p_holm < ALPHA
    if f.direction == ">=":
        if f.diff < 0 and significant:
            return CONTRADICTED
        return HELD if f.ci_low > -NONINFERIORITY_MARGIN else INCONCLUSIVE
    if significant and f.diff < 0:
        return CONTRADICTED
    return HELD if significant and f.diff > 0 and not f.cannot_hold else INCONCLUSIVE


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.2g}" if p < 0.001 else f"{p:.3f}".rstrip("0").rstrip(".")


def numbers_text(f: Finding) -> str:
    """'+0.0240 [95% CI +0.0100, +0.0380], p 0.003, Holm p 0.009' (the short face of a test)."""
    s = f"{f.diff:+.4f} [95% CI {f.ci_low:+.4f}, {f.ci_high:+.4f}], p {_p(f.p)}"
    return s + (f", Holm p {_p(f.p_holm)}" if f.in_family else "")


def evidence_text(f: Finding) -> str:
    parts = [numbers_text(f)]
    if f.group and f.group != "overall":
        parts.append(f"group: {dict(GROUPS).get(f.group, f.group)}")
    if f.one_seed:
        parts.append("one seed")
    if f.status == INCONCLUSIVE and not math.isnan(f.mde):
        s = f"smallest detectable difference {f.mde:.3f} (80 % power)"
        if not math.isnan(f.paper_effect):
            s += f", paper's effect {f.paper_effect:+.3f} ({f.paper_source})"
            s += ": below what this study can detect" if abs(f.paper_effect) < f.mde else ""
        parts.append(s)
    if f.detail:
        parts.append(f.detail)
    return "; ".join(parts)


def teacher_probe_notes(items: list[Finding]) -> dict[tuple[str, str], str]:
    """(dataset, backbone) -> the note that LEADER(T) is (or scores as) its linear probe."""
    return {(f.dataset, f.backbone): f.detail for f in items if f.comparison == "teacher_vs_Probe" and f.detail}


def findings_frame(items: list[Finding]) -> pd.DataFrame:
    cols = ["dataset", "backbone", "claim", "status", "evidence", "diff", "ci_low", "ci_high", "p", "p_holm", "mde"]
    cols += ["paper_effect", "one_seed", "comparison", "group"]
    return pd.DataFrame([asdict(f) for f in items], columns=cols) if items else pd.DataFrame(columns=cols)


def outcome_counts(items: list[Finding]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for f in items:
        counts[f.status] += 1
    return counts


def method_text(items: list[Finding]) -> str:
    """How to read the outcomes: the test, the multiplicity correction (and its family sizes), the rules."""
    datasets = dict.fromkeys(f.dataset for f in items)
    fam = ", ".join(
        f"{ds}: {sum(1 for f in items if f.dataset == ds and f.in_family and not math.isnan(f.p_holm))}"
        for ds in datasets
    )
    return (
        f"Paired patient-bootstrap tests on PRAUC, two-sided α = {ALPHA}, p-values Holm-Bonferroni adjusted across "
        f"the tested claims of each dataset ({fam}). held / contradicted = significant for / against the claim; "
        f"inconclusive = neither, with the smallest difference the test could detect ({POWER:.0%} power) and the "
        f"paper's effect where recorded. '>=' claims hold when the 95 % CI's lower end is above "
        f"-{NONINFERIORITY_MARGIN}; curves and efficiency are read off means and measurements (no test)."
    )


def findings_markdown(items: list[Finding]) -> str:
    if not items:
        return "## Findings\n\nNo results yet: no claim can be tested.\n"
    mark = {HELD: "**held**", CONTRADICTED: "**CONTRADICTED**", INCONCLUSIVE: "inconclusive", UNTESTABLE: "cannot test"}
    lines = ["## Findings", "", method_text(items), ""]
    for (ds, bb), text in teacher_probe_notes(items).items():
        lines += [f"> **{ds} / {bb}: {text}**", ""]
    lines += ["| Dataset | Backbone | Claim | Outcome | Evidence |", "|:--|:--|:--|:--|:--|"]
    for f in items:
        lines.append(f"| {f.dataset} | {f.backbone or '-'} | {f.claim} | {mark[f.status]} | {f.evidence} |")
    return "\n".join(lines) + "\n"
