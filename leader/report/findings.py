"""Findings: each of the LEADER paper's claims that a study can test, stated as held / not held /
cannot test, with the numbers. Every report opens with them, so a reader never has to infer
from a table that a claim failed.

A "better than" claim holds only when the mean paired difference is > 0 AND its patient-level
paired bootstrap gives p < ALPHA (results/paired.parquet, written by the runner); a difference
without a test is reported as not held ("no paired test"). Curve claims ("rises then falls")
hold when the best grid value is interior. Claims are checked on PRAUC, per dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ALPHA = 0.05
HELD, NOT_HELD, UNTESTABLE = "held", "not held", "cannot test"


@dataclass
class Finding:
    dataset: str
    claim: str
    status: str
    evidence: str


def _paired(paired: pd.DataFrame, dataset: str, comparison: str, group: str = "overall") -> pd.Series | None:
    if paired.empty:
        return None
    m = (paired["dataset"] == dataset) & (paired["comparison"] == comparison) & (paired["group"] == group)
    return paired[m].iloc[0] if m.any() else None


def _fmt(r: pd.Series) -> str:
    return (
        f"diff {r['diff']:+.4f} [95% CI {r['ci_low']:+.4f}, {r['ci_high']:+.4f}], p = {r['p_bootstrap']:.3g} "
        f"(Wilcoxon {r['p_wilcoxon']:.3g}; {int(r['n_patients'])} patients, {int(r['seeds_a'])} vs "
        f"{int(r['seeds_b'])} seeds)"
    )


def _better(paired, dataset, comparison, claim, group="overall", at_least=False) -> Finding:
    r = _paired(paired, dataset, comparison, group)
    if r is None:
        return Finding(dataset, claim, UNTESTABLE, f"no paired result for {comparison} ({group}): a side was not run")
    ok = r["diff"] >= 0 if at_least else (r["diff"] > 0 and r["p_bootstrap"] < ALPHA)
    return Finding(dataset, claim, HELD if ok else NOT_HELD, _fmt(r))


def _baseline_names(paired: pd.DataFrame, dataset: str, prefix: str) -> list[str]:
    if paired.empty:
        return []
    c = paired.loc[(paired["dataset"] == dataset) & paired["comparison"].str.startswith(prefix), "comparison"]
    return sorted({x[len(prefix) :] for x in c})


def _vs_baselines(paired, dataset, who: str, claim: str, best_only: bool, metrics: pd.DataFrame) -> Finding:
    names = _baseline_names(paired, dataset, f"{who}_vs_")
    names = [n for n in names if n not in ("teacher",)]
    if not names:
        return Finding(dataset, claim, UNTESTABLE, "no baseline trials declared (or none finished)")
    if best_only:
        base = metrics[
            (metrics["dataset"] == dataset)
            & (metrics["stage"] == "baseline")
            & (metrics["group"] == "overall")
            & (metrics["metric"] == "prauc")
        ]
        base = base[base["model"].isin(names)]
        if base.empty:
            return Finding(dataset, claim, UNTESTABLE, "baseline metrics missing")
        best = base.groupby("model")["mean"].mean().idxmax()
        f = _better(paired, dataset, f"{who}_vs_{best}", claim)
        f.evidence = f"best baseline {best}: {f.evidence}"
        return f
    parts, ok = [], True
    for n in names:
        r = _paired(paired, dataset, f"{who}_vs_{n}")
        good = r is not None and r["diff"] > 0 and r["p_bootstrap"] < ALPHA
        ok &= good
        parts.append(f"{n} {r['diff']:+.4f} (p {r['p_bootstrap']:.3g})" if r is not None else f"{n} missing")
    return Finding(dataset, claim, HELD if ok else NOT_HELD, "; ".join(parts))


def _curve(metrics: pd.DataFrame, dataset: str, param: str) -> Finding:
    claim = f"PRAUC rises then falls along {param} (an interior optimum)"
    d = metrics[
        (metrics["dataset"] == dataset)
        & (metrics["stage"] == "sensitivity")
        & (metrics["param"] == param)
        & (metrics["group"] == "overall")
        & (metrics["metric"] == "prauc")
    ]
    curve = d.groupby("param_value")["mean"].mean().sort_index()
    if len(curve) < 3:
        return Finding(
            dataset, claim, UNTESTABLE, f"needs >= 3 {param} values in the sensitivity grid, has {len(curve)}"
        )
    best = int(np.argmax(curve.to_numpy()))
    pts = ", ".join(f"{k:g}: {v:.4f}" for k, v in curve.items())
    return Finding(dataset, claim, HELD if 0 < best < len(curve) - 1 else NOT_HELD, pts)


def _efficiency(eff: pd.DataFrame, dataset: str) -> Finding:
    claim = "the student is faster and smaller than the teacher at inference"
    d = eff[eff["dataset"] == dataset] if not eff.empty else eff
    if d.empty or not {"LEADER(S)", "LEADER(T)"} <= set(d["model"]):
        return Finding(dataset, claim, UNTESTABLE, "efficiency of both models not measured")
    s, t = d[d["model"] == "LEADER(S)"], d[d["model"] == "LEADER(T)"]
    b = int(s["batch_size"].min())
    ls, lt = (
        float(s.loc[s["batch_size"] == b, "latency_ms_per_patient"].mean()),
        float(t.loc[t["batch_size"] == b, "latency_ms_per_patient"].mean()),
    )
    ms, mt = float(s["peak_mem_mb"].max()), float(t["peak_mem_mb"].max())
    ok = ls < lt and ms < mt
    return Finding(
        dataset,
        claim,
        HELD if ok else NOT_HELD,
        f"batch {b}: {ls:.3g} vs {lt:.3g} ms/patient ({lt / max(ls, 1e-12):.0f}x); memory {ms:.1f} vs {mt:.1f} MB",
    )


def findings(metrics: pd.DataFrame, paired: pd.DataFrame, efficiency: pd.DataFrame) -> list[Finding]:
    out: list[Finding] = []
    datasets = list(dict.fromkeys(metrics["dataset"])) if not metrics.empty else []
    for ds in datasets:
        out += [
            _vs_baselines(paired, ds, "teacher", "LEADER(T) beats the best baseline", True, metrics),
            _vs_baselines(paired, ds, "student", "LEADER(S) beats every baseline", False, metrics),
            _better(paired, ds, "full_vs_no_kd", "distillation helps: LEADER(S) > LEADER(S) w/o KD"),
            _better(
                paired,
                ds,
                "full_vs_kd_shuffled",
                "the gain is transfer, not regularisation: LEADER(S) > KD to shuffled teacher states",
            ),
            _better(paired, ds, "full_vs_output_kd", "feature-level KD > output-level KD"),
            _better(
                paired, ds, "full_vs_no_align", "profile alignment helps patients without history", group="no_history"
            ),
            _better(paired, ds, "full_vs_split_visit_encoder", "a shared visit encoder > split encoders"),
            _curve(metrics, ds, "alpha"),
            _curve(metrics, ds, "beta"),
            _better(
                paired,
                ds,
                "student_vs_teacher",
                "LEADER(S) >= LEADER(T) on patients without history",
                group="no_history",
                at_least=True,
            ),
            _efficiency(efficiency, ds),
        ]
    return out


def findings_frame(items: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame([f.__dict__ for f in items], columns=["dataset", "claim", "status", "evidence"])


def findings_markdown(items: list[Finding]) -> str:
    if not items:
        return "## Findings\n\nNo results yet: no claim can be tested.\n"
    lines = [
        "## Findings",
        "",
        f"Each claim of the LEADER paper this study can test (PRAUC; 'held' needs a paired patient-bootstrap "
        f"p < {ALPHA}).",
        "",
        "| Dataset | Claim | Status | Evidence |",
        "|---|---|---|---|",
    ]
    for f in items:
        mark = {"held": "**held**", "not held": "**NOT held**", "cannot test": "cannot test"}[f.status]
        lines.append(f"| {f.dataset} | {f.claim} | {mark} | {f.evidence} |")
    return "\n".join(lines) + "\n"
