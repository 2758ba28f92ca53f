"""The student's study tables: ablation (the paper's Table IV), backbones (Table VII) and the
alpha / beta sensitivity (Figs. 2-3), each per (dataset, backbone); the numbering lives in
leader/report/names.py PAPER_ARTIFACTS.

Why per backbone: a study with LLaMA full 0.78 and Qwen full 0.70 must not print "full 0.74";
every number here comes from one backbone's runs, named in its own column.
"""

from __future__ import annotations

import math

import pandas as pd

from leader.report.cells import (
    GROUP_NOTE,
    METRICS,
    MISSING,
    VARIANTS,
    Cell,
    Table,
    agg,
    fmt,
    group_columns,
    record,
)


def _pairs(sel: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, backbone) pairs of a selection, sorted."""
    return sorted(set(zip(sel["dataset"].astype(str), sel["backbone"].astype(str), strict=False)))


def _ablation_rows(metrics: pd.DataFrame, sel: pd.DataFrame, ds: str, bb: str) -> pd.DataFrame:
    """The ablation runs of one backbone, with the best run as 'full' when ablation did not re-run it."""
    dsel = sel[(sel["dataset"] == ds) & (sel["backbone"] == bb)]
    if "full" not in set(dsel["variant"]):
        best = metrics[
            (metrics["stage"] == "best")
            & (metrics["dataset"] == ds)
            & (metrics["backbone"] == bb)
            & (metrics["variant"] == "full")
        ]
        dsel = pd.concat([dsel, best])
    return dsel


def ablation_table(metrics: pd.DataFrame, declared: list[str] | None = None) -> Table:
    """Variants vs the full student per backbone, in the paper's three group columns; (Δ) = variant − full."""
    variants = declared or [v for v, _ in VARIANTS]
    names = dict(VARIANTS)
    cols, flat, groups, subs = group_columns()
    t = Table(
        "ablation",
        "Ablation study",
        "Mean over bootstrap rounds (std in results.parquet); (Δ) = variant − full of the same backbone. "
        + GROUP_NOTE
        + " 'missing' = declared variant without results.",
        ["Dataset", "Backbone", "Variant"],
        flat,
        column_groups=groups,
        sub_columns=subs,
    )
    sel = metrics[metrics["stage"] == "ablation"] if not metrics.empty else metrics
    if sel.empty:
        t.notes.append("missing: no ablation results in metrics.parquet")
        return t
    records = []
    for ds, bb in _pairs(sel):
        dsel = _ablation_rows(metrics, sel, ds, bb)
        cut = {c: dsel[(dsel["group"] == c[0]) & (dsel["metric"] == c[1])] for c in cols}
        full = {c: agg(cut[c][cut[c]["variant"] == "full"])[0] for c in cols}
        for v in variants:
            cells = []
            for c in cols:
                mean, std, n = agg(cut[c][cut[c]["variant"] == v])
                delta = mean - full[c] if v != "full" else float("nan")
                text = fmt(mean) + ("" if math.isnan(delta) else f" ({delta:+.4f})")
                cells.append(Cell(text, missing=math.isnan(mean)))
                records.append(record("ablation", ds, v, *c, mean, std, n, delta=delta, backbone=bb))
            t.rows.append([ds, bb, names.get(v, v)])
            t.cells.append(cells)
    t.long = pd.DataFrame(records)
    return t


def backbone_table(metrics: pd.DataFrame, declared: list[str] | None = None) -> Table:
    """Teacher and student per LLM backbone, in the paper's three group columns."""
    cols, flat, groups, subs = group_columns()
    t = Table(
        "backbone",
        "Backbones",
        "Mean ± std over bootstrap rounds, teacher LEADER(T) and student LEADER(S) per LLM backbone. " + GROUP_NOTE,
        ["Dataset", "Backbone", "Model"],
        flat,
        column_groups=groups,
        sub_columns=subs,
    )
    if metrics.empty:
        t.notes.append("missing: no results in metrics.parquet")
        return t
    sel = metrics[metrics["stage"] == "backbone"]
    if sel.empty:  # fall back to the main teacher and best student
        sel = metrics[metrics["stage"].isin(["teacher", "best"])]
    sel = sel[sel["model"].isin(["LEADER(T)", "LEADER(S)"])]
    if sel.empty and not declared:
        t.notes.append("missing: no backbone / teacher / student results in metrics.parquet")
        return t
    records = []
    for ds in sorted(sel["dataset"].unique()) or sorted(metrics["dataset"].unique()):
        dsel = sel[sel["dataset"] == ds]
        bbs = list(declared or []) + [b for b in sorted(dsel["backbone"].unique()) if b not in (declared or [])]
        for bb, who in ((b, w) for b in bbs for w in ("LEADER(T)", "LEADER(S)")):
            cells = []
            for g, m in cols:
                part = dsel[(dsel["backbone"] == bb) & (dsel["model"] == who)]
                mean, std, n = agg(part[(part["group"] == g) & (part["metric"] == m)])
                cells.append(Cell(fmt(mean, std), missing=math.isnan(mean)))
                records.append(record("backbone", ds, f"{who} [{bb}]", g, m, mean, std, n, backbone=bb))
            t.rows.append([ds, bb, who])
            t.cells.append(cells)
    t.long = pd.DataFrame(records)
    return t


def _best_value(g: pd.DataFrame, values: list, metric: str):
    """The grid value with the highest mean of `metric` (a missing value never wins)."""

    def score(v):
        mean = agg(g[(g["param_value"] == v) & (g["metric"] == metric)])[0]
        return -1.0 if math.isnan(mean) else mean

    return max(values, key=score)


def sensitivity_table(metrics: pd.DataFrame) -> Table:
    """Overall PRAUC/Jaccard/F1 for every alpha / beta value swept, per backbone."""
    t = Table(
        "sensitivity",
        "Sensitivity to α and β",
        "Overall group, mean ± std; bold = best value per sweep. A curve needs at least 3 values.",
        ["Dataset", "Backbone", "Parameter", "Value"],
        [ml for _, ml in METRICS],
    )
    sel = (
        metrics[(metrics["stage"] == "sensitivity") & (metrics["group"] == "overall")] if not metrics.empty else metrics
    )
    if sel.empty:
        t.notes.append("missing: no sensitivity results in metrics.parquet")
        return t
    records = []
    for (ds, bb, p), g in sel.groupby(["dataset", "backbone", "param"], sort=True):
        values = sorted(g["param_value"].dropna().unique())
        if len(values) < 3:
            t.notes.append(f"{ds} / {bb}: {len(values)} {p} value(s): not enough for a curve (needs 3)")
        best = {m: _best_value(g, values, m) for m, _ in METRICS}
        for v in values:
            cells = []
            for m, _ in METRICS:
                mean, std, n = agg(g[(g["param_value"] == v) & (g["metric"] == m)])
                cells.append(Cell(fmt(mean, std), bold=best[m] == v, missing=math.isnan(mean)))
                records.append(
                    record("sensitivity", ds, f"{p}={v:g}", "overall", m, mean, std, n, best=best[m] == v, backbone=bb)
                )
            t.rows.append([ds, bb, p, f"{v:g}"])
            t.cells.append(cells)
    t.long = pd.DataFrame(records)
    return t


__all__ = ["ablation_table", "backbone_table", "sensitivity_table", "MISSING"]
