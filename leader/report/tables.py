"""Paper tables (overall, ablation, backbone, efficiency) as display cells plus a tidy frame.

Each table keeps two faces: `cells` (text + bold/missing flags, for md/html/LaTeX) and `long`
(numbers, for results.parquet), built from the same selection so they cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leader.report.stats import sig_mark, welch_p

METRICS = [("prauc", "PRAUC"), ("jaccard", "Jaccard"), ("f1", "F1")]
# The paper's Tables III-VII group SAMPLES: "single-visit" = no earlier visit (its code's seq_len == 1).
# Patient-level groups (a patient with one visit) are shown in the groups figure, named as such.
GROUPS = [("overall", "Overall"), ("history", "Multi-visit (has history)"), ("no_history", "Single-visit (no history)")]
VARIANTS = [
    ("full", "LEADER(S) full"),
    ("no_kd", "w/o KD"),
    ("output_kd", "w/o feature-KD (output KD)"),
    ("no_align", "w/o align"),
    ("split_visit_encoder", "w/o shared visit encoder"),
    ("kd_shuffled", "KD to shuffled teacher states (control)"),
]
MISSING = "missing"
NOT_APPLICABLE = "-"
NOT_APPLICABLE_NOTE = "not applicable: multi-visit-only model (needs an earlier visit)"


@dataclass
class Cell:
    text: str
    bold: bool = False
    missing: bool = False


@dataclass
class Table:
    name: str
    title: str
    caption: str
    row_header: list[str]
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    cells: list[list[Cell]] = field(default_factory=list)
    long: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rows

    def display_frame(self) -> pd.DataFrame:
        """Plain-text frame (CSV face): row labels then the formatted cells."""
        data = [r + [c.text for c in cs] for r, cs in zip(self.rows, self.cells, strict=False)]
        return pd.DataFrame(data, columns=self.row_header + self.columns)


def fmt(mean: float, std: float | None = None, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    s = f"{mean:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        s += f" ± {std:.{digits}f}"
    return s


def _agg(df: pd.DataFrame) -> tuple[float, float, int]:
    """Mean over runs (seeds) of the stored means/stds; one run gives its stored numbers exactly."""
    if df.empty:
        return float("nan"), float("nan"), 0
    return float(df["mean"].mean()), float(df["std"].mean()), int(len(df))


def _record(
    table, dataset, row, group, metric, mean, std, n_runs, *, best=False, p=float("nan"), delta=float("nan"), note=None
) -> dict:
    """One row of a table's long form (results.parquet); `note` defaults to 'missing' for a NaN mean."""
    return dict(
        table=table,
        dataset=dataset,
        row=row,
        group=group,
        metric=metric,
        mean=mean,
        std=std,
        n_runs=n_runs,
        best=best,
        p_value_vs_runner_up=p,
        delta=delta,
        note=(MISSING if math.isnan(mean) else "") if note is None else note,
    )


def _boot(boot: pd.DataFrame, **keys) -> np.ndarray:
    if boot.empty:
        return np.array([])
    m = np.ones(len(boot), dtype=bool)
    for k, v in keys.items():
        if k in boot.columns:
            m &= (boot[k] == v).to_numpy()
    return boot.loc[m, "value"].to_numpy(dtype=float)


def _label(model: str, backbone: str, multi_backbone: bool) -> str:
    return f"{model} [{backbone}]" if multi_backbone and backbone else model


def overall_table(metrics: pd.DataFrame, boot: pd.DataFrame, declared_models: list[str] | None = None) -> Table:
    """Teacher vs student vs baselines; best per column in bold, '†' = best is significantly
    better than the runner-up (two-sided Welch t-test on bootstrap rounds, p < 0.05)."""
    cols = [(g, m) for g, _ in GROUPS for m, _ in METRICS]
    t = Table(
        "overall",
        "Overall performance",
        "Mean ± std over bootstrap rounds. Single-visit = test samples with no earlier visit (the paper's "
        "definition); multi-visit = samples with history. Bold: best per dataset and column; † best significantly "
        "better than the best other model (two-sided Welch t-test on bootstrap rounds, p < 0.05; the Findings use "
        "paired patient-bootstrap tests instead). '-': not applicable (a multi-visit-only model such as MICRON or "
        "COGNet scores only samples with history, so it has no single-visit or overall number).",
        ["Dataset", "Model"],
        [f"{gl} {ml}" for g, gl in GROUPS for m, ml in METRICS],
    )
    sel = metrics[metrics["stage"].isin(["baseline", "teacher", "best"])] if not metrics.empty else metrics
    if sel.empty:
        t.notes.append("missing: no baseline / teacher / best-student results in metrics.parquet")
        return t
    records = []
    for ds, dsel in sel.groupby("dataset", sort=True):
        rowvals = _overall_rows(ds, dsel, boot, cols, declared_models or [])
        best_idx, pvals = _column_bests(rowvals, cols)
        for i, (labels, vals) in enumerate(rowvals):
            cells = []
            # scored the with-history group only: a multi-visit-only model, '-' elsewhere as in the paper
            has_history = not math.isnan(vals[("history", "prauc")][0])
            for c in cols:
                mean, std, n, _ = vals[c]
                is_best = best_idx.get(c) == i
                p = pvals.get(c, float("nan")) if is_best else float("nan")
                na = has_history and math.isnan(mean)
                text = NOT_APPLICABLE if na else fmt(mean, std) + (sig_mark(p) if is_best else "")
                cells.append(Cell(text, bold=is_best, missing=math.isnan(mean) and not na))
                note = NOT_APPLICABLE_NOTE if na else MISSING if math.isnan(mean) else ""
                records.append(_record("overall", *labels, *c, mean, std, n, best=is_best, p=p, note=note))
            t.rows.append(labels)
            t.cells.append(cells)
    t.long = pd.DataFrame(records)
    return t


def _overall_rows(ds: str, dsel: pd.DataFrame, boot: pd.DataFrame, cols: list, declared: list[str]) -> list:
    """[(labels, {(group, metric): (mean, std, n, bootstrap values)})] in table order: baselines,
    best student, teacher; a declared model without results gets an all-missing row."""
    keys = dsel[["stage", "model", "backbone"]].drop_duplicates()
    multi_bb = keys.groupby("model")["backbone"].nunique().max() > 1
    order = {"baseline": 0, "best": 1, "teacher": 2}
    keys = keys.assign(o=keys["stage"].map(order)).sort_values(["o", "model", "backbone"])
    scores = dict(iter(dsel.groupby(["stage", "model", "backbone", "group", "metric"], dropna=False)))
    rows = []
    for k in keys.itertuples():
        vals = {}
        for g, m in cols:
            mean, std, n = _agg(scores.get((k.stage, k.model, k.backbone, g, m), dsel.iloc[:0]))
            b = _boot(boot, stage=k.stage, dataset=ds, model=k.model, backbone=k.backbone, group=g, metric=m)
            vals[(g, m)] = (mean, std, n, b)
        rows.append(([ds, _label(k.model, k.backbone, multi_bb)], vals))
    empty = (float("nan"), float("nan"), 0, np.array([]))
    rows += [([ds, dm], dict.fromkeys(cols, empty)) for dm in declared if dm not in set(keys["model"])]
    return rows


def _column_bests(rows: list, cols: list) -> tuple[dict, dict]:
    """Per column: the best row's index, and the Welch p of best vs runner-up (bootstrap rounds)."""
    best_idx, pvals = {}, {}
    for c in cols:
        means = sorted(((v[c][0], i) for i, (_, v) in enumerate(rows) if not math.isnan(v[c][0])), reverse=True)
        if means:
            best_idx[c] = means[0][1]
        if len(means) > 1:
            pvals[c] = welch_p(rows[means[0][1]][1][c][3], rows[means[1][1]][1][c][3])
    return best_idx, pvals


def ablation_table(metrics: pd.DataFrame, declared: list[str] | None = None) -> Table:
    """Variants vs the full student, overall group; Δ = variant − full."""
    variants = declared or [v for v, _ in VARIANTS]
    names = dict(VARIANTS)
    t = Table(
        "ablation",
        "Ablation study",
        "Overall group, mean ± std; (Δ) = variant − full. 'missing' = declared variant without results.",
        ["Dataset", "Variant"],
        [ml for _, ml in METRICS],
    )
    sel = metrics[metrics["stage"] == "ablation"] if not metrics.empty else metrics
    if sel.empty:
        t.notes.append("missing: no ablation results in metrics.parquet")
        datasets = []
    else:
        datasets = sorted(sel["dataset"].unique())
    records = []
    for ds in datasets:
        dsel = sel[(sel["dataset"] == ds) & (sel["group"] == "overall")]
        if "full" not in set(dsel["variant"]):  # the best run is the full model when ablation did not re-run it
            dsel = pd.concat(
                [
                    dsel,
                    metrics[
                        (metrics["stage"] == "best")
                        & (metrics["dataset"] == ds)
                        & (metrics["group"] == "overall")
                        & (metrics["variant"] == "full")
                    ],
                ]
            )
        full = {m: _agg(dsel[(dsel["variant"] == "full") & (dsel["metric"] == m)])[0] for m, _ in METRICS}
        for v in variants:
            cells = []
            for m, _ in METRICS:
                mean, std, n = _agg(dsel[(dsel["variant"] == v) & (dsel["metric"] == m)])
                delta = mean - full[m] if v != "full" else float("nan")
                text = fmt(mean, std)
                if not math.isnan(delta):
                    text += f" ({delta:+.4f})"
                cells.append(Cell(text, missing=math.isnan(mean)))
                records.append(_record("ablation", ds, v, "overall", m, mean, std, n, delta=delta))
            t.rows.append([ds, names.get(v, v)])
            t.cells.append(cells)
    t.long = pd.DataFrame(records)
    return t


def backbone_table(metrics: pd.DataFrame, declared: list[str] | None = None) -> Table:
    """Teacher and student per LLM backbone (overall group, PRAUC/Jaccard/F1)."""
    t = Table(
        "backbone",
        "Backbones",
        "Overall group, mean ± std, teacher LEADER(T) and student LEADER(S) per LLM backbone.",
        ["Dataset", "Backbone"],
        [f"{who} {ml}" for who in ("LEADER(T)", "LEADER(S)") for _, ml in METRICS],
    )
    if metrics.empty:
        t.notes.append("missing: no results in metrics.parquet")
        return t
    sel = metrics[metrics["stage"] == "backbone"]
    if sel.empty:  # fall back to the main teacher and best student
        sel = metrics[metrics["stage"].isin(["teacher", "best"])]
    sel = sel[(sel["group"] == "overall") & sel["model"].isin(["LEADER(T)", "LEADER(S)"])]
    if sel.empty and not declared:
        t.notes.append("missing: no backbone / teacher / student results in metrics.parquet")
        return t
    records = []
    datasets = sorted(sel["dataset"].unique()) or sorted(metrics["dataset"].unique())
    for ds in datasets:
        dsel = sel[sel["dataset"] == ds]
        bbs = list(declared or []) + [b for b in sorted(dsel["backbone"].unique()) if b not in (declared or [])]
        for bb in bbs:
            cells = []
            for who in ("LEADER(T)", "LEADER(S)"):
                for m, _ in METRICS:
                    mean, std, n = _agg(dsel[(dsel["backbone"] == bb) & (dsel["model"] == who) & (dsel["metric"] == m)])
                    cells.append(Cell(fmt(mean, std), missing=math.isnan(mean)))
                    records.append(_record("backbone", ds, f"{who} [{bb}]", "overall", m, mean, std, n))
            t.rows.append([ds, bb])
            t.cells.append(cells)
    t.long = pd.DataFrame(records)
    return t


def efficiency_table(eff: pd.DataFrame) -> Table:
    """Latency per patient and peak memory, teacher vs student, and the speed-up ratio T/S."""
    t = Table(
        "efficiency",
        "Inference efficiency",
        "Latency in ms per patient, peak memory in MB; speed-up = teacher latency / student latency.",
        ["Dataset", "Backbone", "Batch"],
        [
            "LEADER(T) latency (ms/patient)",
            "LEADER(S) latency (ms/patient)",
            "Speed-up (×)",
            "LEADER(T) peak mem (MB)",
            "LEADER(S) peak mem (MB)",
            "Device",
        ],
    )
    if eff.empty:
        t.notes.append("missing: efficiency.parquet has no rows")
        return t
    records = []
    eff = eff.assign(batch_size=eff["batch_size"] if "batch_size" in eff.columns else "")
    for (ds, bb, bs), g in eff.groupby(["dataset", "backbone", "batch_size"], sort=True, dropna=False):

        def get(model, col, g=g):
            v = g.loc[g["model"] == model, col]
            return float(v.mean()) if len(v) else float("nan")

        lt, ls = get("LEADER(T)", "latency_ms_per_patient"), get("LEADER(S)", "latency_ms_per_patient")
        mt, ms = get("LEADER(T)", "peak_mem_mb"), get("LEADER(S)", "peak_mem_mb")
        sp = lt / ls if ls and not math.isnan(ls) and not math.isnan(lt) else float("nan")
        dev = ", ".join(sorted(map(str, g["device"].unique()))) if "device" in g else ""
        vals = [fmt(lt, digits=3), fmt(ls, digits=3), fmt(sp, digits=1), fmt(mt, digits=1), fmt(ms, digits=1)]
        t.rows.append([ds, bb, str(bs)])
        t.cells.append([Cell(v, missing=v == MISSING) for v in vals] + [Cell(dev or MISSING, missing=not dev)])
        for name, v in (
            ("latency_teacher_ms", lt),
            ("latency_student_ms", ls),
            ("speedup", sp),
            ("peak_mem_teacher_mb", mt),
            ("peak_mem_student_mb", ms),
        ):
            records.append(_record("efficiency", ds, f"{bb} batch={bs}", "", name, v, float("nan"), len(g)))
    t.long = pd.DataFrame(records)
    return t


def sensitivity_table(metrics: pd.DataFrame) -> Table:
    """Overall PRAUC/Jaccard/F1 for every alpha / beta value swept."""
    t = Table(
        "sensitivity",
        "Sensitivity to α and β",
        "Overall group, mean ± std; bold = best value per sweep.",
        ["Dataset", "Parameter", "Value"],
        [ml for _, ml in METRICS],
    )
    sel = (
        metrics[(metrics["stage"] == "sensitivity") & (metrics["group"] == "overall")] if not metrics.empty else metrics
    )
    if sel.empty:
        t.notes.append("missing: no sensitivity results in metrics.parquet")
        return t
    records = []
    for (ds, p), g in sel.groupby(["dataset", "param"], sort=True):
        values = sorted(g["param_value"].dropna().unique())
        best = {
            m: max(
                values,
                key=lambda v: (
                    _agg(g[(g["param_value"] == v) & (g["metric"] == m)])[0]
                    if not math.isnan(_agg(g[(g["param_value"] == v) & (g["metric"] == m)])[0])
                    else -1
                ),
            )
            for m, _ in METRICS
        }
        for v in values:
            cells = []
            for m, _ in METRICS:
                mean, std, n = _agg(g[(g["param_value"] == v) & (g["metric"] == m)])
                cells.append(Cell(fmt(mean, std), bold=best[m] == v, missing=math.isnan(mean)))
                records.append(_record("sensitivity", ds, f"{p}={v:g}", "overall", m, mean, std, n, best=best[m] == v))
            t.rows.append([ds, p, f"{v:g}"])
            t.cells.append(cells)
    t.long = pd.DataFrame(records)
    return t


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
        pcols = [c for c in g.columns if c.startswith("param_")]
        if comp.empty:
            best_v, best_p = float("nan"), MISSING
        else:
            b = comp.loc[comp["value"].idxmax()]
            best_v = float(b["value"])
            best_p = ", ".join(f"{c[6:]}={b[c]:.4g}" if isinstance(b[c], float) else f"{c[6:]}={b[c]}" for c in pcols)
        imp = importances.get(name) or {}
        top = max(imp, key=imp.get) if imp else ""
        t.rows.append([name])
        t.cells.append(
            [
                Cell(str(len(g))),
                Cell(str(int((state == "COMPLETE").sum()))),
                Cell(str(int((state == "PRUNED").sum()))),
                Cell(fmt(best_v), missing=math.isnan(best_v)),
                Cell(best_p),
                Cell(f"{top} ({imp[top]:.2f})" if top else MISSING, missing=not top),
            ]
        )
        records.append(
            _record("optuna", name, "best", "", "objective", best_v, float("nan"), len(g), best=True, note=best_p)
        )
    t.long = pd.DataFrame(records)
    return t


def dataset_stats_table(stats: pd.DataFrame) -> Table:
    """Table-VI style cohort statistics (aggregates only), if the study wrote them."""
    t = Table("dataset_stats", "Dataset statistics", "Cohort-level counts and averages.", ["Statistic"], [])
    if stats.empty:
        t.notes.append("missing: results/dataset_stats.parquet (or .json) not written by the study")
        return t
    wide = stats.set_index("dataset").T if "dataset" in stats.columns else stats.T
    t.columns = [str(c) for c in wide.columns]
    for stat, row in wide.iterrows():
        t.rows.append([str(stat)])
        t.cells.append([Cell(f"{v:,.2f}" if isinstance(v, float) else str(v)) for v in row])
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
