"""What every report table is made of: the Table/Cell faces, the group and metric vocabulary,
number formatting by kind, and the long-form record (results.parquet).

Why one module: the tables (overall, per-backbone, ablation, ...) are split over several files
to stay readable, and they must agree on names, groups and formats; this is where they do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

METRICS = [("prauc", "PRAUC"), ("jaccard", "Jaccard"), ("f1", "F1")]
# The paper's Tables III-VII group SAMPLES: "single-visit" = no earlier visit (its code's seq_len == 1).
# This is the one group vocabulary of every table and figure; the patient-level split (a patient
# with one visit, groups 'single' / 'multi') stays in results/metrics.parquet.
GROUPS = [("overall", "Overall"), ("history", "Multi-visit (has history)"), ("no_history", "Single-visit (no history)")]
SHORT_GROUPS = {"overall": "Overall", "history": "Multi-visit", "no_history": "Single-visit"}
GROUP_NOTE = (
    "Single-visit = a test sample with no earlier visit of its patient, multi-visit = a sample with history "
    "(the paper's definition, its code's seq_len == 1)."
)
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
    wrap: bool = False  # long free text (parameters, evidence): may break lines in HTML


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
    # two-level header (HTML / LaTeX): [(group label, number of columns)] over `sub_columns`
    column_groups: list[tuple[str, int]] = field(default_factory=list)
    sub_columns: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rows

    def display_frame(self) -> pd.DataFrame:
        """Plain-text frame (CSV face): row labels then the formatted cells."""
        data = [r + [c.text for c in cs] for r, cs in zip(self.rows, self.cells, strict=False)]
        return pd.DataFrame(data, columns=self.row_header + self.columns)


def group_columns(metrics=METRICS) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, int]], list[str]]:
    """The paper's three group columns, each with every metric: (keys, flat names for CSV,
    header groups, sub-column names)."""
    keys = [(g, m) for g, _ in GROUPS for m, _ in metrics]
    flat = [f"{gl} {ml}" for _, gl in GROUPS for _, ml in metrics]
    return keys, flat, [(gl, len(metrics)) for _, gl in GROUPS], [ml for _ in GROUPS for _, ml in metrics]


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt(mean: float, std: float | None = None, digits: int = 4) -> str:
    """A score (PRAUC, Jaccard, F1): fixed decimals, ' ± std' when given."""
    if _nan(mean):
        return MISSING
    s = f"{mean:.{digits}f}"
    if not _nan(std):
        s += f" ± {std:.{digits}f}"
    return s


def fmt_count(v) -> str:
    """An integer quantity (patients, trials, seeds): no decimals, thousands separated."""
    return MISSING if _nan(v) else f"{int(round(float(v))):,}"


def fmt_number(v) -> str:
    """A value of unknown kind (dataset statistics): integers as integers, shares in [0, 1] with
    three decimals, other reals with two; why: '300.00 patients' reads as a measurement."""
    if isinstance(v, str):
        return v
    if _nan(v) or (isinstance(v, float) and not math.isfinite(v)):
        return NOT_APPLICABLE
    f = float(v)
    if f.is_integer():
        return fmt_count(f)
    return f"{f:.3f}" if abs(f) < 1 else f"{f:,.2f}"


def fmt_ms(v) -> str:
    """A latency in ms: three significant digits (0.0625, 33.6, 1,234)."""
    if _nan(v):
        return MISSING
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def fmt_ratio(v) -> str:
    return MISSING if _nan(v) else f"{v:,.1f}×"


def agg(df: pd.DataFrame) -> tuple[float, float, int]:
    """Mean over runs (seeds) of the stored means/stds; one run gives its stored numbers exactly."""
    if df.empty:
        return float("nan"), float("nan"), 0
    return float(df["mean"].mean()), float(df["std"].mean()), int(len(df))


def record(
    table,
    dataset,
    row,
    group,
    metric,
    mean,
    std,
    n_runs,
    *,
    best=False,
    p=float("nan"),
    delta=float("nan"),
    note=None,
    backbone="",
) -> dict:
    """One row of a table's long form (results.parquet); `note` defaults to 'missing' for a NaN mean."""
    return dict(
        table=table,
        dataset=dataset,
        backbone=backbone,
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


def boot_values(boot: pd.DataFrame, **keys) -> np.ndarray:
    if boot.empty:
        return np.array([])
    m = np.ones(len(boot), dtype=bool)
    for k, v in keys.items():
        if k in boot.columns:
            m &= (boot[k] == v).to_numpy()
    return boot.loc[m, "value"].to_numpy(dtype=float)


def label(model: str, backbone: str, multi_backbone: bool) -> str:
    return f"{model} [{backbone}]" if multi_backbone and backbone else model


def backbones_of(df: pd.DataFrame) -> list[str]:
    """Backbones of a selection in first-seen order ('' for rows without one)."""
    return list(dict.fromkeys(df["backbone"].astype(str))) if not df.empty and "backbone" in df else [""]
