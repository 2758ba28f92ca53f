"""The few lines a finished run ends with: per dataset, the best student against the best
baseline and the teacher (overall test PRAUC), read from the study's results; the report's
Findings say whether each difference is significant."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def summary_lines(study_dir: Path) -> list[str]:
    path = Path(study_dir) / "results" / "metrics.parquet"
    if not path.is_file():
        return []
    m = pd.read_parquet(path)
    m = m[(m["group"] == "overall") & (m["metric"] == "prauc")]
    lines = []
    for ds, d in m.groupby("dataset", sort=True):
        score = d.groupby(["stage", "model", "backbone"])["mean"].mean().reset_index()
        parts = [_best(score, "best", "LEADER(S)"), _best(score, "baseline", "best baseline"), _best(score, "teacher")]
        lines.append(f"{ds}: test PRAUC " + " | ".join(p for p in parts if p))
    return lines


def _best(score: pd.DataFrame, stage: str, label: str | None = None) -> str:
    s = score[score["stage"] == stage]
    if s.empty:
        return ""
    r = s.loc[s["mean"].idxmax()]
    name = f"{r['model']} [{r['backbone']}]" if r["backbone"] else r["model"]
    return f"{label + ' ' if label and label != r['model'] else ''}{name} {r['mean']:.3f}"
