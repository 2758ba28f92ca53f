"""Read a finished (or partly finished) study directory into frames.

A report must never fail because a stage did not run: every results file is optional and a
missing one becomes an empty frame, which the tables and figures then show as "missing".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from leader.errors import DataError
from leader.report.guard import check_aggregate_only

METRIC_KEYS = [
    "run_id",
    "stage",
    "dataset",
    "backbone",
    "model",
    "variant",
    "param",
    "param_value",
    "seed",
    "group",
    "metric",
]
_REQUIRED = {
    "metrics.parquet": ["stage", "dataset", "model", "group", "metric", "mean", "std"],
    "bootstrap.parquet": ["stage", "dataset", "model", "group", "metric", "round", "value"],
    "efficiency.parquet": ["dataset", "backbone", "model", "latency_ms_per_patient", "peak_mem_mb"],
    "optuna_trials.parquet": ["trial_id", "state", "value"],
}
_DEFAULTS = {
    "run_id": "",
    "stage": "",
    "dataset": "",
    "backbone": "",
    "model": "",
    "variant": "full",
    "param": "",
    "param_value": float("nan"),
    "seed": 0,
}


@dataclass
class StudyResults:
    """Everything a report is built from; only aggregates (checked at load time)."""

    study_dir: Path
    name: str
    spec: dict
    spec_text: str
    metrics: pd.DataFrame
    bootstrap: pd.DataFrame
    efficiency: pd.DataFrame
    optuna: pd.DataFrame
    env: dict
    dataset_stats: pd.DataFrame = field(default_factory=pd.DataFrame)
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)  # paired tests behind the Findings
    # the teacher's LoRA run per (dataset, backbone): steps, best_step (0 = never beat its probe)
    teacher: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing_files: list[str] = field(default_factory=list)


def _read_parquet(path: Path, missing: list[str]) -> pd.DataFrame:
    if not path.is_file():
        missing.append(path.name)
        return pd.DataFrame()
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # corrupt or not parquet: name the file
        raise DataError(f"cannot read parquet: {e}", file=str(path)) from e
    check_aggregate_only(df, str(path))
    for col in _REQUIRED.get(path.name, []):
        if col not in df.columns:
            raise DataError("required column is missing", file=str(path), field=col)
    for col, default in _DEFAULTS.items():
        if path.name in ("metrics.parquet", "bootstrap.parquet") and col not in df.columns:
            df[col] = default
    if path.name in ("metrics.parquet", "bootstrap.parquet"):
        for col in ("backbone", "variant", "param", "run_id", "stage", "dataset", "model", "group", "metric"):
            df[col] = df[col].fillna("").astype(str)
        df["variant"] = df["variant"].replace("", "full")
        df["param_value"] = pd.to_numeric(df["param_value"], errors="coerce")
    return df


def _optional(path: Path) -> pd.DataFrame:
    """A results file older studies do not have: empty when absent, never a 'missing file' note."""
    return _read_parquet(path, []) if path.is_file() else pd.DataFrame()


def load_study(study_dir: str | Path) -> StudyResults:
    """Load spec.yaml, results/*.parquet and env.json; refuse patient-level columns."""
    d = Path(study_dir)
    if not d.is_dir():
        raise DataError("study directory does not exist", file=str(d))
    missing: list[str] = []
    spec_path = d / "spec.yaml"
    spec_text, spec = "", {}
    if spec_path.is_file():
        spec_text = spec_path.read_text()
        try:
            spec = yaml.safe_load(spec_text) or {}
        except yaml.YAMLError as e:
            raise DataError(f"invalid YAML: {e}", file=str(spec_path)) from e
        if not isinstance(spec, dict):
            raise DataError("expected a mapping at top level", file=str(spec_path))
    else:
        missing.append("spec.yaml")
    res = d / "results"
    env: dict = {}
    env_path = res / "env.json"
    if not env_path.is_file() and (d / "env.json").is_file():
        env_path = d / "env.json"
    if env_path.is_file():
        try:
            env = json.loads(env_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e}", file=str(env_path)) from e
    else:
        missing.append("env.json")
    stats = pd.DataFrame()
    if (res / "dataset_stats.parquet").is_file():
        stats = _read_parquet(res / "dataset_stats.parquet", missing)
    elif (res / "dataset_stats.json").is_file():
        raw = json.loads((res / "dataset_stats.json").read_text())
        if isinstance(raw, dict) and raw and all(isinstance(v, dict) for v in raw.values()):
            stats = pd.DataFrame([{"dataset": k, **v} for k, v in raw.items()])
        elif isinstance(raw, dict):
            stats = pd.DataFrame([raw])
        check_aggregate_only(stats, str(res / "dataset_stats.json"))
    return StudyResults(
        study_dir=d,
        name=str(spec.get("name") or d.name),
        spec=spec,
        spec_text=spec_text,
        metrics=_read_parquet(res / "metrics.parquet", missing),
        bootstrap=_read_parquet(res / "bootstrap.parquet", missing),
        efficiency=_read_parquet(res / "efficiency.parquet", missing),
        optuna=_read_parquet(res / "optuna_trials.parquet", missing),
        env=env,
        dataset_stats=stats,
        paired=_optional(res / "paired.parquet"),
        teacher=_optional(res / "teacher.parquet"),
        missing_files=missing,
    )
