"""The report's headline figure (every model's test PRAUC with a 95 % CI, by the paper's three
groups, sorted) and the efficiency figure.

Why drawn with plain matplotlib and legends outside the axes: these are the figures a reader
looks at first, and text over text or a legend over a bar hides exactly what they show; the
layout here places every label where nothing else can be (tick labels, ends of bars, below the
axes), and tests/unit/test_report_figures.py checks the rendered bounding boxes.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from leader.report.cells import GROUPS  # noqa: E402

COLOURS = {"LEADER(T)": "#4C72B0", "LEADER(S)": "#DD8452", "Probe": "#55A868"}
BASELINE_COLOUR = "#7F7F7F"
Z95 = 1.959964


def _model_frame(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (dataset, model, backbone, group): mean over runs, CI from the bootstrap std, label."""
    sel = metrics[
        metrics["stage"].isin(["baseline", "teacher", "best"])
        & (metrics["metric"] == metric)
        & metrics["group"].isin([g for g, _ in GROUPS])
    ]
    d = sel.groupby(["dataset", "model", "backbone", "group"], as_index=False).agg(
        mean=("mean", "mean"), std=("std", "mean")
    )
    multi = d.groupby(["dataset", "model"])["backbone"].transform("nunique") > 1
    d["label"] = np.where(multi & (d["backbone"] != ""), d["model"] + " [" + d["backbone"] + "]", d["model"])
    d["lo"], d["hi"] = d["mean"] - Z95 * d["std"], d["mean"] + Z95 * d["std"]
    return d


def _order(g: pd.DataFrame) -> list[str]:
    """Models by overall mean, best on top; multi-visit-only ones (no overall) by their group's mean, last."""
    piv = g.pivot_table(index="label", columns="group", values="mean")
    piv = piv.reindex(columns=[k for k, _ in GROUPS])
    key = piv["overall"].fillna(piv["history"] - 10)
    return list(key.sort_values(ascending=True).index)  # barh draws bottom-up: best last = on top


def _panel(ax, g: pd.DataFrame, order: list[str], group: str, xlim: tuple[float, float]) -> None:
    y = {lab: i for i, lab in enumerate(order)}
    span = xlim[1] - xlim[0]
    for r in g[g["group"] == group].itertuples():
        col = COLOURS.get(r.model, BASELINE_COLOUR)
        ax.errorbar(r.mean, y[r.label], xerr=[[r.mean - r.lo], [r.hi - r.mean]], fmt="o", color=col, ms=5, capsize=3)
        ax.text(r.hi + 0.02 * span, y[r.label], f"{r.mean:.3f}", va="center", fontsize=8, color="#333")
    scored = set(g.loc[g["group"] == group, "label"])
    why = "n/a (multi-visit only)" if scored else "missing: no test sample in this group"
    for lab in order:
        if lab not in scored:
            ax.text(xlim[0] + 0.02 * span, y[lab], why, va="center", fontsize=7, color="#888")
    ax.set_xlim(*xlim)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.grid(axis="y", visible=False)


def groups_figure(metrics: pd.DataFrame, metric: str = "prauc"):
    """The headline: each model's test PRAUC (mean, 95 % CI = mean ± 1.96 bootstrap std) in the
    paper's three groups, one row of panels per dataset, models sorted by overall PRAUC."""
    d = _model_frame(metrics, metric) if not metrics.empty else pd.DataFrame()
    if d.empty:
        return "missing: no baseline / teacher / best-student results in metrics.parquet"
    datasets = sorted(d["dataset"].unique())
    sizes = [d[d["dataset"] == ds]["label"].nunique() for ds in datasets]
    fig, axes = plt.subplots(
        len(datasets),
        len(GROUPS),
        figsize=(11, sum(0.3 * n + 1.1 for n in sizes)),
        squeeze=False,
        gridspec_kw={"height_ratios": [0.3 * n + 1.1 for n in sizes]},
    )
    for row, ds in zip(axes, datasets, strict=True):
        g = d[d["dataset"] == ds]
        order = _order(g)
        lo, hi = float(g["lo"].min()), float(g["hi"].max())
        span = max(hi - lo, 0.02)
        xlim = (max(0.0, lo - 0.05 * span), hi + 0.3 * span)  # room right of each CI for its value
        for j, (ax, (grp, glabel)) in enumerate(zip(row, GROUPS, strict=True)):
            _panel(ax, g, order, grp, xlim)
            ax.set_yticks(range(len(order)), order if j == 0 else [""] * len(order))
            ax.set_title(f"{ds}: {glabel}", fontsize=10)
            ax.set_xlabel(f"test {metric.upper()}", fontsize=9)
            ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def _eff_frame(eff: pd.DataFrame) -> pd.DataFrame:
    d = eff.copy()
    d["batch_size"] = d["batch_size"] if "batch_size" in d.columns else ""
    keys = ["dataset", "backbone", "batch_size", "model"]
    d = d.groupby(keys, as_index=False, dropna=False)[["latency_ms_per_patient", "peak_mem_mb"]].mean()
    d["setting"] = d["dataset"].astype(str) + " / " + d["backbone"].astype(str)
    if d["batch_size"].nunique() > 1:
        d["setting"] += "\nbatch " + d["batch_size"].astype(str)
    return d


def _speedups(d: pd.DataFrame, settings: list[str]) -> list[str]:
    """Tick labels: the setting and, when both were measured, the student's speed-up."""
    out = []
    for s in settings:
        g = d[d["setting"] == s].set_index("model")["latency_ms_per_patient"]
        sp = g["LEADER(T)"] / g["LEADER(S)"] if {"LEADER(T)", "LEADER(S)"} <= set(g.index) else None
        out.append(s + (f"\nstudent {sp:.1f}× faster" if sp is not None else ""))
    return out


def _eff_panel(ax, d: pd.DataFrame, settings, models, col: str, unit: str, log: bool) -> None:
    h = 0.8 / len(models)
    for k, m in enumerate(models):
        for i, s in enumerate(settings):
            v = d.loc[(d["setting"] == s) & (d["model"] == m), col]
            if v.empty:
                continue
            y = i - (len(models) - 1 - 2 * k) * h / 2  # first model on top (the y axis is inverted)
            ax.barh(y, float(v.iloc[0]), height=h * 0.92, color=COLOURS.get(m, BASELINE_COLOUR), label=m)
            text = f"{float(v.iloc[0]):.3g} {unit}"
            ax.text(
                float(v.iloc[0]) * (1.12 if log else 1.0) + (0 if log else 0.01 * d[col].max()),
                y,
                text,
                va="center",
                fontsize=8,
            )
    top = float(d[col].max())
    if log:
        ax.set_xscale("log")
        ax.set_xlim(float(d[col].min()) / 2, top * 25)
    else:
        ax.set_xlim(0, top * 1.3)
    ax.set_ylim(-0.6, len(settings) - 0.4)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)


def efficiency_figure(eff: pd.DataFrame):
    """Latency per patient (log ms) and peak memory (MB), teacher vs student per (dataset,
    backbone, batch); the speed-up in each setting's label, one legend below both panels."""
    if eff.empty:
        return "missing: efficiency.parquet has no rows"
    d = _eff_frame(eff)
    settings = list(dict.fromkeys(d["setting"]))
    models = [m for m in ("LEADER(T)", "LEADER(S)") if m in set(d["model"])]
    models += sorted(set(d["model"]) - set(models))
    height = 0.75 * len(settings) * max(1, len(models) / 2) + 1.6
    fig, axes = plt.subplots(1, 2, figsize=(11, height))
    _eff_panel(axes[0], d, settings, models, "latency_ms_per_patient", "ms", log=True)
    _eff_panel(axes[1], d, settings, models, "peak_mem_mb", "MB", log=False)
    axes[0].set_yticks(range(len(settings)), _speedups(d, settings), fontsize=8)
    axes[1].set_yticks(range(len(settings)), [""] * len(settings))
    axes[0].set_xlabel("latency per patient (ms, log scale)", fontsize=9)
    axes[1].set_xlabel("peak memory (MB)", fontsize=9)
    axes[0].set_title("Inference latency", fontsize=10)
    axes[1].set_title("Peak memory", fontsize=10)
    if "LEADER(T)" not in models:
        fig.suptitle("LEADER(T): missing (no teacher measurement in this study)", color="#b00020", fontsize=10)
    handles = {c.get_label(): c for c in axes[0].containers}  # a bar's label lives on its container
    fig.legend(
        [handles[m] for m in models if m in handles],
        [m for m in models if m in handles],
        loc="lower center",
        ncol=len(models),
        fontsize=9,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))
    return fig
