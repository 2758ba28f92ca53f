"""The LEADER paper's claims as checks on results/ (paired tests, sensitivity means, efficiency
measurements), one Finding each; leader.report.findings then applies Holm and the outcome rule.

Why builders per kind of claim: a "better than" claim is decided by a paired test, a composite
("beats every baseline") by the weakest of its tests (an intersection-union test: every
component must hold, so the largest p decides, or the strongest opposite one contradicts), a
curve by its means, efficiency by measurement; each says which in its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ALPHA, POWER = 0.05, 0.8
HELD, CONTRADICTED, INCONCLUSIVE, UNTESTABLE = "held", "contradicted", "inconclusive", "cannot test"
OUTCOMES = (HELD, CONTRADICTED, INCONCLUSIVE, UNTESTABLE)
NONINFERIORITY_MARGIN = 0.01  # PRAUC: ">=" holds when the CI's lower end is above -0.01
# The paper's own effects, where this project records them: (effect, where in the paper).
PAPER_EFFECTS = {"full_vs_no_kd": (0.012, "Table IV, MIMIC-III")}
NAN = float("nan")
HISTORY = "history"  # the group a multi-visit-only baseline (MICRON, COGNet) serves
SAME, NEAR = 1e-9, 1e-3  # teacher vs probe: identical / within 0.001 PRAUC


@dataclass
class Finding:
    dataset: str
    claim: str
    status: str = ""  # one of OUTCOMES; "" until the Holm step decides a tested claim
    evidence: str = ""
    backbone: str = ""
    comparison: str = ""  # the paired comparison that decides it ('' for untested claims)
    group: str = ""
    direction: str = ""  # '>' better than, '>=' at least as good, '' no test
    diff: float = NAN
    ci_low: float = NAN
    ci_high: float = NAN
    p: float = NAN  # two-sided patient-bootstrap p of the deciding comparison
    p_holm: float = NAN
    mde: float = NAN  # smallest |difference| detectable at POWER, two-sided ALPHA (before Holm)
    paper_effect: float = NAN
    paper_source: str = ""
    one_seed: bool = False
    in_family: bool = True  # counted in the Holm family (the probe check is not: not a paper claim)
    detail: str = ""  # the comparisons behind a composite claim, or the teacher-is-its-probe note
    cannot_hold: str = ""  # why a significant result still may not count as held (a component untested)
    summary: str = ""  # the few words a summary line carries for a claim without a test


def _row(paired: pd.DataFrame, comparison: str, group: str = "overall") -> pd.Series | None:
    if paired.empty:
        return None
    m = (paired["comparison"] == comparison) & (paired["group"] == group)
    return paired[m].iloc[0] if m.any() else None


def _fill(f: Finding, r: pd.Series, comparison: str) -> Finding:
    f.comparison, f.group = comparison, str(r["group"])
    f.diff, f.ci_low, f.ci_high, f.p = (float(r[k]) for k in ("diff", "ci_low", "ci_high", "p_bootstrap"))
    f.one_seed = int(r.get("seeds_a", 1)) == 1 or int(r.get("seeds_b", 1)) == 1
    return f


def _untestable(f: Finding, why: str) -> Finding:
    f.status, f.evidence = UNTESTABLE, why
    return f


def better(paired, ds, bb, comparison, claim, group="overall", direction=">") -> Finding:
    """A two-model claim decided by one paired test (A - B on `group`)."""
    f = Finding(ds, claim, backbone=bb, direction=direction)
    r = _row(paired, comparison, group)
    if r is None:
        return _untestable(f, f"no paired result for {comparison} ({group}): a side was not run")
    if int(r["n_patients"]) < 2:
        return _untestable(f, f"{comparison} ({group}): {int(r['n_patients'])} test patient(s), no test")
    return _fill(f, r, comparison)


def _baselines(paired: pd.DataFrame, prefix: str) -> list[str]:
    if paired.empty:
        return []
    c = paired.loc[paired["comparison"].str.startswith(prefix), "comparison"]
    return sorted({x[len(prefix) :] for x in c} - {"teacher"})


def _served_row(paired: pd.DataFrame, comparison: str) -> pd.Series | None:
    """The overall test, or for a multi-visit-only baseline the test on the group it serves."""
    for g in ("overall", HISTORY):
        r = _row(paired, comparison, g)
        if r is not None and int(r["n_patients"]) >= 2:
            return r
    return None


def _composite(f: Finding, comps: list[tuple[str, pd.Series]], missing: list[str]) -> Finding:
    """Intersection-union: the strongest opposite comparison, else the weakest supporting one."""
    if not comps:
        return _untestable(f, "no usable paired test against a baseline (none finished, or < 2 patients)")
    against = [c for c in comps if c[1]["diff"] <= 0]
    name, r = (
        min(against, key=lambda c: c[1]["p_bootstrap"]) if against else max(comps, key=lambda c: c[1]["p_bootstrap"])
    )
    _fill(f, r, f"{f.comparison}{name}")
    served = lambda c: ", on multi-visit (has history) samples" if c["group"] == HISTORY else ""  # noqa: E731
    parts = [f"{n} {c['diff']:+.4f} (p {c['p_bootstrap']:.2g}{served(c)})" for n, c in comps]
    f.detail = f"deciding: {name}; all: " + "; ".join(parts + [f"{m}: no usable test" for m in missing])
    if missing:  # "every" cannot hold with a baseline untested
        f.cannot_hold = f"untested: {', '.join(missing)}"
    return f


def vs_every_baseline(paired, ds, bb) -> Finding:
    f = Finding(ds, "LEADER(S) beats every baseline", backbone=bb, direction=">", comparison="student_vs_")
    comps, missing = [], []
    for n in _baselines(paired, "student_vs_"):
        r = _served_row(paired, f"student_vs_{n}")
        (comps.append((n, r)) if r is not None else missing.append(n))
    return _composite(f, comps, missing)


def vs_best_baseline(paired, metrics, ds, bb) -> Finding:
    """The teacher against the best baseline by overall test PRAUC (the probe, LEADER(T)'s own
    first stage, is left to the probe check)."""
    claim = "LEADER(T) beats the best baseline"
    names = [n for n in _baselines(paired, "teacher_vs_") if n != "Probe"]
    base = metrics[
        (metrics["stage"] == "baseline")
        & (metrics["group"] == "overall")
        & (metrics["metric"] == "prauc")
        & metrics["model"].isin(names)
    ]
    if base.empty:
        return _untestable(Finding(ds, claim, backbone=bb), "no baseline with an overall score (or no paired test)")
    best = str(base.groupby("model")["mean"].mean().idxmax())
    f = better(paired, ds, bb, f"teacher_vs_{best}", claim)
    f.detail = f"best baseline by overall test PRAUC: {best}"
    if f.status:
        f.evidence = f"{f.detail}; {f.evidence}"
    return f


def tested_findings(paired: pd.DataFrame, metrics: pd.DataFrame, ds: str, bb: str) -> list[Finding]:
    """The paper's "better than" claims of one (dataset, backbone), before Holm."""
    b = lambda comp, claim, **kw: better(paired, ds, bb, comp, claim, **kw)  # noqa: E731
    return [
        vs_best_baseline(paired, metrics, ds, bb),
        vs_every_baseline(paired, ds, bb),
        b("full_vs_no_kd", "distillation helps: LEADER(S) > LEADER(S) w/o KD"),
        b(
            "full_vs_kd_shuffled",
            "the gain is transfer, not regularisation: LEADER(S) > KD to shuffled teacher states",
        ),
        b("full_vs_output_kd", "feature-level KD > output-level KD"),
        b("full_vs_no_align", "profile alignment helps patients without history", group="no_history"),
        b("full_vs_split_visit_encoder", "a shared visit encoder > split encoders"),
        b(
            "student_vs_teacher",
            "LEADER(S) >= LEADER(T) on patients without history",
            group="no_history",
            direction=">=",
        ),
    ]


def curve_finding(metrics: pd.DataFrame, ds: str, bb: str, param: str) -> Finding:
    """Interior optimum along alpha / beta, read off the means against one bootstrap std."""
    f = Finding(ds, f"PRAUC rises then falls along {param} (an interior optimum)", backbone=bb, in_family=False)
    d = metrics[
        (metrics["stage"] == "sensitivity")
        & (metrics["param"] == param)
        & (metrics["group"] == "overall")
        & (metrics["metric"] == "prauc")
        & (metrics["backbone"] == bb)
    ]
    c = d.groupby("param_value").agg(mean=("mean", "mean"), std=("std", "mean")).sort_index()
    if len(c) < 3:
        why = f"needs >= 3 {param} values in the sensitivity grid, has {len(c)}" if len(c) else f"no {param} sweep"
        return _untestable(f, why)
    m, s, x = c["mean"].to_numpy(), c["std"].to_numpy(), c.index.to_numpy()
    b, ends = int(np.argmax(m)), [0, len(m) - 1]
    interior = 0 < b < len(m) - 1
    rival = int(ends[int(np.argmax(m[ends]))]) if interior else 1 + int(np.argmax(m[1:-1]))
    gap, sd = float(m[b] - m[rival]), float((s[b] + s[rival]) / 2)
    if interior:
        f.status = HELD if gap > sd else INCONCLUSIVE
    else:
        f.status = CONTRADICTED if gap > sd else INCONCLUSIVE
    pts = ", ".join(f"{k:g}: {v:.4f}" for k, v in zip(x, m, strict=True))
    where = "interior" if interior else "at an end of the grid"
    f.evidence = (
        f"{pts}; best {param} = {x[b]:g} ({where}), {gap:+.4f} over {param} = {x[rival]:g} "
        f"(bootstrap std {sd:.4f}); read off the means, no test"
    )
    f.summary = f"best {param} = {x[b]:g}, {where}, {gap:+.4f} vs std {sd:.4f}; no test"
    return f


def efficiency_finding(eff: pd.DataFrame, ds: str, bb: str) -> Finding:
    f = Finding(ds, "the student is faster and smaller than the teacher at inference", backbone=bb, in_family=False)
    d = eff[(eff["dataset"] == ds) & (eff["backbone"].astype(str) == bb)] if not eff.empty else eff
    if d.empty or not {"LEADER(S)", "LEADER(T)"} <= set(d["model"]):
        return _untestable(f, "efficiency of both models not measured")
    s, t = d[d["model"] == "LEADER(S)"], d[d["model"] == "LEADER(T)"]
    bs = int(s["batch_size"].min()) if "batch_size" in s else None
    pick = (lambda x: x[x["batch_size"] == bs]) if bs is not None else (lambda x: x)
    ls, lt = float(pick(s)["latency_ms_per_patient"].mean()), float(pick(t)["latency_ms_per_patient"].mean())
    ms, mt = float(s["peak_mem_mb"].max()), float(t["peak_mem_mb"].max())
    f.status = HELD if ls < lt and ms < mt else CONTRADICTED
    f.evidence = (
        f"batch {bs}: {ls:.3g} vs {lt:.3g} ms/patient ({lt / max(ls, 1e-12):.1f}× faster); "
        f"peak memory {ms:.1f} vs {mt:.1f} MB; measured, no test"
    )
    f.summary = f"{lt / max(ls, 1e-12):.1f}× faster, {ms:.1f} vs {mt:.1f} MB; measured"
    return f


def _teacher_steps(teacher: pd.DataFrame, ds: str, bb: str) -> tuple[int, int] | None:
    """(steps, best_step) of the teacher's LoRA run, from results/teacher.parquet when written."""
    if teacher.empty or not {"dataset", "backbone", "best_step"} <= set(teacher.columns):
        return None
    t = teacher[(teacher["dataset"] == ds) & (teacher["backbone"].astype(str) == bb)]
    if t.empty or pd.isna(t["best_step"].iloc[0]):
        return None
    steps = t["steps"].iloc[0] if "steps" in t else np.nan
    return (-1 if pd.isna(steps) else int(steps)), int(t["best_step"].iloc[0])


def probe_check(paired: pd.DataFrame, teacher: pd.DataFrame, ds: str, bb: str) -> Finding | None:
    """Is LEADER(T) more than its frozen-backbone linear probe? Not a paper claim (outside the
    Holm family), but a reader must know when the "fine-tuned LLM" is a frozen encoder + a
    linear head. None when the study has neither a probe baseline nor the teacher's step record."""
    claim = "LEADER(T) is fine-tuned past its linear probe (a check, not a paper claim)"
    f = Finding(ds, claim, backbone=bb, direction=">", in_family=False)
    r, steps = _row(paired, "teacher_vs_Probe"), _teacher_steps(teacher, ds, bb)
    if r is not None:
        _fill(f, r, "teacher_vs_Probe")
    if steps is not None and steps[1] == 0:
        n = f"{steps[0]} steps" if steps[0] >= 0 else "its steps"
        f.detail = f"LEADER(T) = its linear probe: LoRA did not improve validation PRAUC in {n}"
    elif r is None:
        return None
    else:
        rows = paired[paired["comparison"] == "teacher_vs_Probe"]
        if (rows[["diff", "ci_low", "ci_high"]].abs() < SAME).all(axis=None):
            f.detail = (
                "LEADER(T) = its linear probe: identical test scores in every group (LoRA did not move it; "
                "its step count is not in results/)"
            )
        elif abs(f.diff) < NEAR and f.ci_low > -2 * NEAR and f.ci_high < 2 * NEAR:
            f.detail = (
                f"LEADER(T) scores as its linear probe (overall PRAUC within {NEAR:g}); whether LoRA ever beat the "
                "probe on validation is not in results/"
            )
            return f
        else:
            return f
    f.status = CONTRADICTED
    f.evidence = f.detail + (f"; test vs probe {f.diff:+.4f}, p {f.p:.2g}" if r is not None else "")
    return f
