"""Paper tables as display cells plus a tidy frame; this module holds the overall table (the
paper's Table III) and re-exports the others, so `leader.report.tables` stays the one import.

Each table keeps two faces: `cells` (text + bold/missing flags, for md/html/LaTeX) and `long`
(numbers, for results.parquet), built from the same selection so they cannot disagree.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from leader.report.cells import (  # noqa: F401 - re-exported: the tables' shared vocabulary
    GROUP_NOTE,
    GROUPS,
    METRICS,
    MISSING,
    NOT_APPLICABLE,
    NOT_APPLICABLE_NOTE,
    VARIANTS,
    Cell,
    Table,
    agg,
    boot_values,
    fmt,
    fmt_count,
    group_columns,
    label,
    record,
)
from leader.report.stats import sig_mark, welch_p
from leader.report.tables_run import dataset_stats_table, efficiency_table, optuna_table  # noqa: F401
from leader.report.tables_study import ablation_table, backbone_table, sensitivity_table  # noqa: F401

PROBE_MARK = "‡"


def overall_table(
    metrics: pd.DataFrame,
    boot: pd.DataFrame,
    declared_models: list[str] | None = None,
    teacher_notes: dict[tuple[str, str], str] | None = None,
) -> Table:
    """Teacher vs student vs baselines; best per column in bold, '†' = best is significantly
    better than the runner-up (two-sided Welch t-test on bootstrap rounds, p < 0.05).
    `teacher_notes[(dataset, backbone)]` marks a teacher that is its linear probe ('‡')."""
    cols, flat, groups, subs = group_columns()
    t = Table(
        "overall",
        "Overall performance",
        "Mean ± std over bootstrap rounds; Seeds = training seeds behind the row. "
        + GROUP_NOTE
        + " Bold: best per dataset and column; † best significantly better than the best other model (two-sided "
        "Welch t-test on bootstrap rounds, p < 0.05; the Findings use paired patient-bootstrap tests instead). "
        "'-': not applicable (a multi-visit-only model such as MICRON or COGNet scores only samples with history).",
        ["Dataset", "Model", "Seeds"],
        flat,
        column_groups=groups,
        sub_columns=subs,
    )
    sel = metrics[metrics["stage"].isin(["baseline", "teacher", "best", "released"])] if not metrics.empty else metrics
    if sel.empty:
        t.notes.append("missing: no baseline / teacher / best-student results in metrics.parquet")
        return t
    records, notes = [], teacher_notes or {}
    for ds, dsel in sel.groupby("dataset", sort=True):
        rowvals = _overall_rows(ds, dsel, boot, cols, declared_models or [])
        best_idx, pvals = _column_bests(rowvals, cols)
        # a group no model has a score in (e.g. no single-visit test sample in the cohort) is missing for
        # all, not "not applicable" to each: '-' is for a multi-visit-only model beside scored ones
        scored = {c for c in cols if any(not math.isnan(v[c][0]) for _, v, _ in rowvals)}
        for i, (labels, vals, key) in enumerate(rowvals):
            probe_note = notes.get((ds, key[1])) if key[0] == "LEADER(T)" else None
            cells, n_seeds = [], vals[("overall", "prauc")][2] or vals[("history", "prauc")][2]
            # scored the with-history group only: a multi-visit-only model, '-' elsewhere as in the paper
            has_history = not math.isnan(vals[("history", "prauc")][0])
            for c in cols:
                mean, std, n, _ = vals[c]
                is_best = best_idx.get(c) == i
                p = pvals.get(c, float("nan")) if is_best else float("nan")
                na = has_history and math.isnan(mean) and c in scored
                text = NOT_APPLICABLE if na else fmt(mean, std) + (sig_mark(p) if is_best else "")
                cells.append(Cell(text, bold=is_best, missing=math.isnan(mean) and not na))
                note = NOT_APPLICABLE_NOTE if na else MISSING if math.isnan(mean) else (probe_note or "")
                records.append(
                    record("overall", *labels, *c, mean, std, n, best=is_best, p=p, note=note, backbone=key[1])
                )
            shown = labels[1] + (f" {PROBE_MARK}" if probe_note else "")
            t.rows.append([labels[0], shown, fmt_count(n_seeds) if n_seeds else NOT_APPLICABLE])
            t.cells.append(cells)
    t.notes += [f"{PROBE_MARK} {ds} / {bb}: {text}" for (ds, bb), text in notes.items()]
    t.long = pd.DataFrame(records)
    return t


def _overall_rows(ds: str, dsel: pd.DataFrame, boot: pd.DataFrame, cols: list, declared: list[str]) -> list:
    """[(labels, {(group, metric): (mean, std, n, bootstrap values)}, (model, backbone))] in table
    order: baselines, best student, teacher; a declared model without results gets an all-missing row."""
    keys = dsel[["stage", "model", "backbone"]].drop_duplicates()
    multi_bb = keys.groupby("model")["backbone"].nunique().max() > 1
    order = {"baseline": 0, "released": 1, "best": 2, "teacher": 3}
    keys = keys.assign(o=keys["stage"].map(order)).sort_values(["o", "model", "backbone"])
    scores = dict(iter(dsel.groupby(["stage", "model", "backbone", "group", "metric"], dropna=False)))
    rows = []
    for k in keys.itertuples():
        vals = {}
        for g, m in cols:
            mean, std, n = agg(scores.get((k.stage, k.model, k.backbone, g, m), dsel.iloc[:0]))
            b = boot_values(boot, stage=k.stage, dataset=ds, model=k.model, backbone=k.backbone, group=g, metric=m)
            vals[(g, m)] = (mean, std, n, b)
        rows.append(([ds, label(k.model, k.backbone, multi_bb)], vals, (k.model, k.backbone)))
    empty = (float("nan"), float("nan"), 0, np.array([]))
    rows += [([ds, dm], dict.fromkeys(cols, empty), (dm, "")) for dm in declared if dm not in set(keys["model"])]
    return rows


def _column_bests(rows: list, cols: list) -> tuple[dict, dict]:
    """Per column: the best row's index, and the Welch p of best vs runner-up (bootstrap rounds)."""
    best_idx, pvals = {}, {}
    for c in cols:
        means = sorted(((v[c][0], i) for i, (_, v, _) in enumerate(rows) if not math.isnan(v[c][0])), reverse=True)
        if means:
            best_idx[c] = means[0][1]
        if len(means) > 1:
            pvals[c] = welch_p(rows[means[0][1]][1][c][3], rows[means[1][1]][1][c][3])
    return best_idx, pvals
