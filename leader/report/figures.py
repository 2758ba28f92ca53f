"""Figures: sensitivity (alpha, beta) and ablation per backbone, Optuna history and importances; the
headline (groups) and efficiency figures live in figures_main and are re-exported here.

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

from leader.report.cells import VARIANTS  # noqa: E402
from leader.report.figures_main import efficiency_figure, groups_figure  # noqa: E402, F401 - re-exported
from leader.report.optuna_study import rebuild_study  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
optuna.logging.set_verbosity(optuna.logging.WARNING)
_PARAM_LABEL = {"alpha": "α (feature-KD weight)", "beta": "β (profile-alignment weight)"}


def sensitivity_figure(metrics: pd.DataFrame, params=("alpha", "beta"), metric: str = "prauc"):
    """PRAUC (overall) against alpha and/or beta, one row per (dataset, backbone), band = ± std."""
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
    rows = sorted(set(zip(sel["dataset"], sel["backbone"], strict=False)))
    params = list(params)
    fig, axes = plt.subplots(len(rows), len(params), figsize=(5.2 * len(params), 4.0 * len(rows)), squeeze=False)
    for i, (ds, bb) in enumerate(rows):
        for j, p in enumerate(params):
            d = sel[(sel["dataset"] == ds) & (sel["backbone"] == bb) & (sel["param"] == p)]
            _sensitivity_panel(axes[i][j], d, f"{ds} / {bb}" if bb else ds, p, metric)
    fig.tight_layout()
    return fig


def _sensitivity_panel(ax, d: pd.DataFrame, where: str, p: str, metric: str) -> None:
    """One (dataset, backbone, parameter) curve: mean per value (seeds averaged), band = mean
    stored std; with fewer than 3 values only the points (two points are not a curve)."""
    if d.empty:
        ax.text(0.5, 0.5, f"missing: no {p} sweep", ha="center", va="center", transform=ax.transAxes, color="#b00020")
        ax.set_axis_off()
        return
    agg = d.groupby("param_value").agg(mean=("mean", "mean"), std=("std", "mean")).reset_index()
    curve = len(agg) >= 3
    ax.plot(agg["param_value"], agg["mean"], "o-" if curve else "o", color="#4C72B0", label="LEADER(S)")
    if curve:
        lo, hi = agg["mean"] - agg["std"], agg["mean"] + agg["std"]
        ax.fill_between(agg["param_value"], lo, hi, alpha=0.25, color="#4C72B0", label="± 1 std (bootstrap)")
    else:
        ax.errorbar(agg["param_value"], agg["mean"], yerr=agg["std"], fmt="none", ecolor="#4C72B0", capsize=3)
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
    ax.set_title(
        f"{where}: {metric.upper()} vs {p}" + ("" if curve else f" ({len(agg)} values: not a curve)"), fontsize=10
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8, frameon=False)


def ablation_figure(metrics: pd.DataFrame, metric: str = "prauc"):
    """Overall PRAUC per ablation variant (± std), one bar per backbone, one panel per dataset."""
    sel = (
        metrics[(metrics["stage"] == "ablation") & (metrics["group"] == "overall") & (metrics["metric"] == metric)]
        if not metrics.empty
        else metrics
    )
    if sel.empty:
        return "missing: no ablation results in metrics.parquet"
    names = dict(VARIANTS)
    d = sel.groupby(["dataset", "backbone", "variant"], as_index=False).agg(mean=("mean", "mean"), std=("std", "mean"))
    order = [v for v, _ in VARIANTS if v in set(d["variant"])] + sorted(set(d["variant"]) - set(names))
    datasets, bbs = sorted(d["dataset"].unique()), sorted(d["backbone"].unique())
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(6.5 * len(datasets) + 2, 0.5 * len(order) * len(bbs) + 1.6), squeeze=False
    )
    h = 0.8 / len(bbs)
    palette = sns.color_palette("deep", len(bbs))
    for ax, ds in zip(axes[0], datasets, strict=True):
        for k, bb in enumerate(bbs):
            g = d[(d["dataset"] == ds) & (d["backbone"] == bb)].set_index("variant").reindex(order)
            y = np.arange(len(order)) + (k - (len(bbs) - 1) / 2) * h
            ax.barh(
                y,
                g["mean"],
                height=h * 0.92,
                xerr=g["std"],
                color=palette[k],
                label=bb or "-",
                error_kw={"ecolor": "#333", "capsize": 3},
            )
        lo = max(0.0, float((d["mean"] - d["std"]).min()) - 0.05)
        ax.set_xlim(lo, min(1.0, float((d["mean"] + d["std"]).max()) + 0.03))
        ax.set_yticks(range(len(order)), [names.get(v, v) for v in order])
        ax.invert_yaxis()
        ax.set_xlabel(f"{metric.upper()} (overall, mean ± std)")
        ax.set_title(f"{ds}: contribution of each component", fontsize=10)
    axes[0][-1].legend(title="backbone", fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
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
