"""Tables about how the study ran rather than what it found: inference efficiency, the Optuna
search and the cohort statistics. Numbers are formatted by kind (counts as integers, latencies
to three significant digits, ratios with '×'), so a count never reads as '300.00'."""

from __future__ import annotations

import math

import pandas as pd

from leader.report.cells import (
    MISSING,
    Cell,
    Table,
    fmt,
    fmt_count,
    fmt_ms,
    fmt_number,
    fmt_ratio,
    record,
)


def efficiency_table(eff: pd.DataFrame) -> Table:
    """Latency per patient and peak memory, teacher vs student, and the speed-up ratio T/S; the
    compiled student's latency too when the study measured it (evaluation.compiled_student)."""
    compiled = "LEADER(S) compiled" in set(eff.get("model", pd.Series(dtype=str)))
    t = Table(
        "efficiency",
        "Inference efficiency",
        "Latency in ms per patient, peak memory in MB; speed-up = teacher latency / student latency.",
        ["Dataset", "Backbone", "Batch"],
        [
            "LEADER(T) latency (ms/patient)",
            "LEADER(S) latency (ms/patient)",
            "Speed-up",
            "LEADER(T) peak mem (MB)",
            "LEADER(S) peak mem (MB)",
            "Device",
        ]
        + (["LEADER(S) compiled latency (ms/patient)"] if compiled else []),
    )
    if eff.empty:
        t.notes.append("missing: efficiency.parquet has no rows")
        return t
    records = []
    eff = eff.assign(batch_size=eff["batch_size"] if "batch_size" in eff.columns else "")
    for (ds, bb, bs), g in eff.groupby(["dataset", "backbone", "batch_size"], sort=True, dropna=False):
        figures = _efficiency_figures(g, compiled)
        lt, ls, sp, mt, ms = (figures[k] for k in _EFF_FIGURES[:5])
        dev = ", ".join(sorted(map(str, g["device"].unique()))) if "device" in g else ""
        vals = [fmt_ms(lt), fmt_ms(ls), fmt_ratio(sp), fmt(mt, digits=1), fmt(ms, digits=1)]
        vals += [fmt_ms(figures["latency_student_compiled_ms"])] if compiled else []
        t.rows.append([ds, bb, fmt_number(bs) if bs != "" else MISSING])
        cells = [Cell(v, missing=v == MISSING) for v in vals]
        t.cells.append(cells[:5] + [Cell(dev or MISSING, missing=not dev)] + cells[5:])
        for name, v in figures.items():
            records.append(
                record("efficiency", ds, f"{bb} batch={bs}", "", name, v, float("nan"), len(g), backbone=str(bb))
            )
    t.long = pd.DataFrame(records)
    return t


_EFF_FIGURES = (
    "latency_teacher_ms",
    "latency_student_ms",
    "speedup",
    "peak_mem_teacher_mb",
    "peak_mem_student_mb",
    "latency_student_compiled_ms",
)


def _efficiency_figures(g: pd.DataFrame, compiled: bool) -> dict[str, float]:
    """One (dataset, backbone, batch) setting's figures, in _EFF_FIGURES order (NaN when missing)."""

    def get(model, col):
        v = g.loc[g["model"] == model, col]
        return float(v.mean()) if len(v) else float("nan")

    lt, ls = get("LEADER(T)", "latency_ms_per_patient"), get("LEADER(S)", "latency_ms_per_patient")
    sp = lt / ls if ls and not math.isnan(ls) and not math.isnan(lt) else float("nan")
    vals = [lt, ls, sp, get("LEADER(T)", "peak_mem_mb"), get("LEADER(S)", "peak_mem_mb")]
    vals += [get("LEADER(S) compiled", "latency_ms_per_patient")] if compiled else []
    return dict(zip(_EFF_FIGURES, vals, strict=False))


def _best_params(comp: pd.DataFrame, pcols: list[str]) -> tuple[float, str]:
    if comp.empty:
        return float("nan"), MISSING
    b = comp.loc[comp["value"].idxmax()]
    text = ", ".join(f"{c[6:]}={b[c]:.4g}" if isinstance(b[c], float) else f"{c[6:]}={b[c]}" for c in pcols)
    return float(b["value"]), text


def optuna_table(trials: pd.DataFrame, importances: dict[str, dict[str, float]]) -> Table:
    """Per search (dataset / backbone): trial counts, best objective, best params, top parameter."""
    t = Table(
        "optuna",
        "Optuna search summary",
        "Objective = validation PRAUC; importances from optuna.importance (fANOVA).",
        ["Search"],
        ["Trials", "Complete", "Pruned", "Best objective", "Best parameters", "Most important"],
    )
    if trials.empty:
        t.notes.append("missing: optuna_trials.parquet has no rows")
        return t
    keys = [k for k in ("dataset", "backbone") if k in trials.columns]
    groups = trials.groupby(keys, sort=True) if keys else [("all", trials)]
    records = []
    for k, g in groups:
        name = " / ".join(map(str, k if isinstance(k, tuple) else (k,)))
        state = g["state"].astype(str).str.upper().str.split(".").str[-1]
        comp = g[state == "COMPLETE"].dropna(subset=["value"])
        best_v, best_p = _best_params(comp, [c for c in g.columns if c.startswith("param_")])
        imp = importances.get(name) or {}
        top = max(imp, key=imp.get) if imp else ""
        t.rows.append([name])
        t.cells.append(
            [
                Cell(fmt_count(len(g))),
                Cell(fmt_count((state == "COMPLETE").sum())),
                Cell(fmt_count((state == "PRUNED").sum())),
                Cell(fmt(best_v), missing=math.isnan(best_v)),
                Cell(best_p, wrap=True),
                Cell(f"{top} ({imp[top]:.2f})" if top else MISSING, missing=not top),
            ]
        )
        records.append(
            record("optuna", name, "best", "", "objective", best_v, float("nan"), len(g), best=True, note=best_p)
        )
    t.long = pd.DataFrame(records)
    return t


def dataset_stats_table(stats: pd.DataFrame) -> Table:
    """Table-VI style cohort statistics (aggregates only), if the study wrote them."""
    t = Table(
        "dataset_stats",
        "Dataset statistics",
        "Cohort-level counts and averages ('-': not recorded for that dataset).",
        ["Statistic"],
        [],
    )
    if stats.empty:
        t.notes.append("missing: results/dataset_stats.parquet (or .json) not written by the study")
        return t
    wide = stats.set_index("dataset").T if "dataset" in stats.columns else stats.T
    t.columns = [str(c) for c in wide.columns]
    for stat, row in wide.iterrows():
        t.rows.append([str(stat)])
        t.cells.append([Cell(fmt_number(v)) for v in row])
    t.long = pd.DataFrame(
        [
            dict(
                table="dataset_stats",
                dataset=str(c),
                row=str(s),
                metric=str(s),
                mean=pd.to_numeric(wide.loc[s, c], errors="coerce"),
            )
            for s in wide.index
            for c in wide.columns
        ]
    )
    return t
