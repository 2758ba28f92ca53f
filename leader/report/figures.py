"""Seaborn figures: sensitivity (alpha, beta), efficiency, Optuna history and importances.

Each builder returns a matplotlib Figure, or a string saying why the figure is missing, so
the report can show the reason instead of failing or drawing an empty axis.
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from leader.study.optuna_store import rebuild_study  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
optuna.logging.set_verbosity(optuna.logging.WARNING)
_TS = {"LEADER(T)": "#4C72B0", "LEADER(S)": "#DD8452"}
_PARAM_LABEL = {"alpha": "α (feature-KD weight)", "beta": "β (profile-alignment weight)"}


def sensitivity_figure(metrics: pd.DataFrame, params=("alpha", "beta"), metric: str = "prauc"):
    """PRAUC (overall) against alpha and/or beta, one row per dataset, band = ± std."""
    if metrics.empty:
        return "missing: no results in metrics.parquet"
    sel = metrics[
        (metrics["stage"] == "sensitivity")
        & (metrics["group"] == "overall")
        & (metrics["metric"] == metric)
        & metrics["param"].isin(["alpha", "beta"])
    ]
    if sel.empty:
        return "missing: no sensitivity runs (stage 'sensitivity', param alpha/beta) in metrics.parquet"
    sel = sel[sel["param"].isin(list(params))]
    if sel.empty:
        return f"missing: no sensitivity runs for {'/'.join(params)} in metrics.parquet"
    datasets = sorted(sel["dataset"].unique())
    params = list(params)
    fig, axes = plt.subplots(
        len(datasets), len(params), figsize=(5.2 * len(params), 3.6 * len(datasets)), squeeze=False
    )
    for i, ds in enumerate(datasets):
        for j, p in enumerate(params):
            _sensitivity_panel(axes[i][j], sel[(sel["dataset"] == ds) & (sel["param"] == p)], ds, p, metric)
    fig.tight_layout()
    return fig


def _sensitivity_panel(ax, d: pd.DataFrame, ds: str, p: str, metric: str) -> None:
    """One (dataset, parameter) curve: mean per value (seeds averaged), band = mean stored std."""
    if d.empty:
        ax.text(0.5, 0.5, f"missing: no {p} sweep", ha="center", va="center", transform=ax.transAxes, color="#b00020")
        ax.set_axis_off()
        return
    agg = d.groupby("param_value").agg(mean=("mean", "mean"), std=("std", "mean")).reset_index()
    sns.lineplot(data=agg, x="param_value", y="mean", marker="o", ax=ax, color="#4C72B0", label="LEADER(S)")
    lo, hi = agg["mean"] - agg["std"], agg["mean"] + agg["std"]
    ax.fill_between(agg["param_value"], lo, hi, alpha=0.25, color="#4C72B0", label="± 1 std (bootstrap)")
    best = agg.loc[agg["mean"].idxmax()]
    ax.scatter(
        [best.param_value],
        [best["mean"]],
        s=90,
        facecolors="none",
        edgecolors="#C44E52",
        linewidths=2,
        zorder=5,
        label=f"best {p}={best.param_value:g}",
    )
    if agg["param_value"].min() > 0 and agg["param_value"].max() / agg["param_value"].min() >= 50:
        ax.set_xscale("log")
    ax.set_xlabel(_PARAM_LABEL[p])
    ax.set_ylabel(f"{metric.upper()} (overall)")
    ax.set_title(f"{ds}: {metric.upper()} vs {p}")
    ax.legend(loc="best", fontsize=8)


def efficiency_figure(eff: pd.DataFrame):
    """Latency per patient (log ms) and peak memory (MB), teacher vs student, speed-up annotated."""
    if eff.empty:
        return "missing: efficiency.parquet has no rows"
    d = eff.copy()
    d["setting"] = d["dataset"].astype(str) + "\n" + d["backbone"].astype(str)
    if "batch_size" in d.columns and d["batch_size"].nunique() > 1:
        d["setting"] = d["setting"] + "\nbatch " + d["batch_size"].astype(str)
    d = d.groupby(["setting", "model"], as_index=False)[["latency_ms_per_patient", "peak_mem_mb"]].mean()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    hue_order = [m for m in ("LEADER(T)", "LEADER(S)") if m in set(d["model"])] + sorted(
        set(d["model"]) - {"LEADER(T)", "LEADER(S)"}
    )
    pal = {m: _TS.get(m, "#8C8C8C") for m in hue_order}
    sns.barplot(
        data=d, x="setting", y="latency_ms_per_patient", hue="model", hue_order=hue_order, palette=pal, ax=axes[0]
    )
    axes[0].set_yscale("log")
    axes[0].set_ylabel("latency per patient (ms, log scale)")
    axes[0].set_xlabel("")
    axes[0].set_title("Inference latency")
    sns.barplot(data=d, x="setting", y="peak_mem_mb", hue="model", hue_order=hue_order, palette=pal, ax=axes[1])
    axes[1].set_ylabel("peak memory (MB)")
    axes[1].set_xlabel("")
    axes[1].set_title("Peak memory")
    settings = list(dict.fromkeys(d["setting"]))
    for k, s in enumerate(settings):
        g = d[d["setting"] == s].set_index("model")
        if {"LEADER(T)", "LEADER(S)"} <= set(g.index):
            sp = g.loc["LEADER(T)", "latency_ms_per_patient"] / g.loc["LEADER(S)", "latency_ms_per_patient"]
            top = g["latency_ms_per_patient"].max()
            axes[0].annotate(
                f"{sp:.1f}× faster",
                (k, top),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=10,
                fontweight="bold",
                color="#333333",
            )
    lo, hi = axes[0].get_ylim()
    axes[0].set_ylim(lo, hi * 3)
    for c in axes[0].containers:
        axes[0].bar_label(c, fmt="%.3g ms", fontsize=8, padding=2)
    for c in axes[1].containers:
        axes[1].bar_label(c, fmt="%.0f MB", fontsize=8, padding=2)
    if "LEADER(T)" not in hue_order:
        fig.suptitle("LEADER(T): missing (no teacher measurement in this study)", color="#b00020", fontsize=10)
    axes[0].legend(title="model", fontsize=9, loc="lower left")
    axes[1].legend(title="model", fontsize=9, loc="upper right")
    fig.tight_layout()
    return fig


def ablation_figure(metrics: pd.DataFrame, metric: str = "prauc"):
    """Overall PRAUC per ablation variant (± std), one colour per dataset."""
    sel = (
        metrics[(metrics["stage"] == "ablation") & (metrics["group"] == "overall") & (metrics["metric"] == metric)]
        if not metrics.empty
        else metrics
    )
    if sel.empty:
        return "missing: no ablation results in metrics.parquet"
    from leader.report.tables import VARIANTS

    names = dict(VARIANTS)
    d = sel.groupby(["dataset", "variant"], as_index=False).agg(mean=("mean", "mean"), std=("std", "mean"))
    order = [v for v, _ in VARIANTS if v in set(d["variant"])] + sorted(set(d["variant"]) - set(names))
    d["Variant"] = d["variant"].map(lambda v: names.get(v, v))
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(
        data=d, y="Variant", x="mean", hue="dataset", order=[names.get(v, v) for v in order], ax=ax, palette="deep"
    )
    for bar_container, (_, g) in zip(ax.containers, d.groupby("dataset", sort=True), strict=False):
        g = g.set_index("Variant").reindex([names.get(v, v) for v in order])
        ys = [b.get_y() + b.get_height() / 2 for b in bar_container]
        ax.errorbar(g["mean"].to_numpy(), ys, xerr=g["std"].to_numpy(), fmt="none", ecolor="#333", capsize=3)
    lo = max(0.0, float((d["mean"] - d["std"]).min()) - 0.05)
    ax.set_xlim(lo, min(1.0, float((d["mean"] + d["std"]).max()) + 0.03))
    ax.set_xlabel(f"{metric.upper()} (overall, mean ± std)")
    ax.set_ylabel("")
    ax.set_title("Ablation: contribution of each component")
    ax.legend(title="dataset", fontsize=9)
    fig.tight_layout()
    return fig


def groups_figure(metrics: pd.DataFrame, metric: str = "prauc"):
    """PRAUC by patient group (single- vs multi-visit) for every model of the main comparison."""
    sel = (
        metrics[metrics["stage"].isin(["baseline", "teacher", "best"]) & (metrics["metric"] == metric)]
        if not metrics.empty
        else metrics
    )
    if sel.empty:
        return "missing: no baseline / teacher / best-student results in metrics.parquet"
    d = sel.groupby(["dataset", "model", "group"], as_index=False).agg(mean=("mean", "mean"), std=("std", "mean"))
    labels = {
        "overall": "overall",
        "multi": "multi-visit patient",
        "single": "single-visit patient",
        "history": "has history",
        "no_history": "no history (paper: single-visit)",
    }
    d["group"] = d["group"].map(labels).fillna(d["group"])
    datasets = sorted(d["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=False):
        g = d[d["dataset"] == ds]
        hue_order = [h for h in labels.values() if h in set(g["group"])]
        sns.barplot(data=g, x="model", y="mean", hue="group", hue_order=hue_order, ax=ax, palette="muted")
        ax.set_ylabel(f"{metric.upper()} (mean over bootstrap rounds)")
        ax.set_xlabel("")
        ax.set_ylim(0, min(1.0, float(g["mean"].max()) * 1.15 + 0.02))
        ax.set_title(f"{ds}: {metric.upper()} by patient group")
        ax.legend(title="group", fontsize=8)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def _groups(trials: pd.DataFrame):
    keys = [k for k in ("dataset", "backbone") if k in trials.columns]
    if not keys:
        return [("all", trials)]
    return [(" / ".join(map(str, k if isinstance(k, tuple) else (k,))), g) for k, g in trials.groupby(keys, sort=True)]


def optuna_history_figure(trials: pd.DataFrame):
    """Objective per trial and best-so-far, one panel per (dataset, backbone)."""
    if trials.empty:
        return "missing: optuna_trials.parquet has no rows"
    groups = _groups(trials)
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    for ax, (name, g) in zip(axes[0], groups, strict=False):
        study = rebuild_study(g)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            ax.text(0.5, 0.5, "missing: no complete trials", ha="center", va="center", transform=ax.transAxes)
            continue
        x = [t.number for t in done]
        y = [t.value for t in done]
        ax.scatter(x, y, color="#4C72B0", label="trial objective", zorder=3)
        ax.step(x, np.maximum.accumulate(y), where="post", color="#C44E52", label="best so far")
        ax.set_xlabel("trial number")
        ax.set_ylabel("objective (validation PRAUC)")
        ax.set_title(f"Optuna history: {name} ({len(done)} complete)")
        ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


_IMP_CACHE: dict[int, dict] = {}


def param_importances(trials: pd.DataFrame) -> dict[str, dict[str, float]]:
    """fANOVA importances per (dataset, backbone); {} for a search that cannot be estimated."""
    key = int(pd.util.hash_pandas_object(trials.astype(str), index=False).sum()) if not trials.empty else 0
    if key in _IMP_CACHE:
        return _IMP_CACHE[key]
    out = _IMP_CACHE.setdefault(key, {})
    for name, g in _groups(trials):
        study = rebuild_study(g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[name] = optuna.importance.get_param_importances(study)
            except (ValueError, RuntimeError):  # too few complete trials / no varying parameter
                out[name] = {}
    return out


def optuna_importance_figure(trials: pd.DataFrame):
    """fANOVA parameter importances (optuna.importance), one panel per (dataset, backbone)."""
    if trials.empty:
        return "missing: optuna_trials.parquet has no rows"
    imps = {k: v for k, v in param_importances(trials).items() if v}
    if not imps:
        return "missing: too few complete trials with varying parameters to estimate importances"
    fig, axes = plt.subplots(
        1, len(imps), figsize=(5.5 * len(imps), 0.5 * max(len(v) for v in imps.values()) + 2), squeeze=False
    )
    for ax, (name, imp) in zip(axes[0], imps.items(), strict=False):
        d = pd.DataFrame({"parameter": list(imp), "importance": list(imp.values())})
        sns.barplot(data=d, y="parameter", x="importance", ax=ax, color="#55A868")
        ax.set_xlabel("importance (fANOVA, normalised)")
        ax.set_ylabel("")
        ax.set_xlim(0, 1)
        ax.set_title(f"Parameter importances: {name}")
        for k, v in enumerate(d["importance"]):
            ax.text(v + 0.01, k, f"{v:.2f}", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def save(fig, path_stem) -> tuple:
    """Write PNG (for md/html) and SVG (for papers); close the figure to bound memory."""
    png, svg = path_stem.with_suffix(".png"), path_stem.with_suffix(".svg")
    fig.savefig(png, dpi=130, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    plt.close(fig)
    return png, svg
