"""The report's table and figure names, in one light module: the study schema validates
`report.tables` / `report.figures` against them and the report builder emits them, so a name
accepted by `leader study validate` is always one the report can produce."""

from __future__ import annotations

TABLES = ("overall", "backbone", "ablation", "sensitivity", "efficiency", "optuna", "dataset_stats")
FIGURES = (
    "groups",
    "ablation",
    "sensitivity_alpha",
    "sensitivity_beta",
    "efficiency",
    "optuna_history",
    "optuna_importance",
)
# shorthand accepted in study files -> the names above
TABLE_ALIASES = {"main": ["overall"]}
FIGURE_ALIASES = {"sensitivity": ["sensitivity_alpha", "sensitivity_beta"]}
