"""The report's table and figure names, in one light module: the study schema validates
`report.tables` / `report.figures` against them and the report builder emits them, so a name
accepted by `leader study validate` is always one the report can produce."""

from __future__ import annotations

from dataclasses import dataclass

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


# ---- The paper's result artifacts -> the report items that reproduce them (THE mapping).
# Why here: the captions, the report's "Paper artifacts" section and the rehearsal test
# (tests/integration/test_paper_rehearsal.py) all read this one tuple, so a renamed table or a
# dropped figure shows up as a missing paper artifact instead of passing silently.
#
# Numbering: the paper's text is not in this repository. Table III (overall comparison) and
# Table IV (ablation; claims.PAPER_EFFECTS quotes its w/o-KD row) are used that way across the
# package; Table VI (dataset statistics) is data/stats.py's shape. Tables V and VII and Figs. 2-4
# follow issue #23 ("Tables III, IV, V per group, VI, VII per group, Figs. 2-4 per backbone") and
# docs/data_protocol.md ("their single-visit rows in Tables V and VII"): V is the single-/multi-visit
# comparison, VII the teacher and student per LLM backbone, by group; Figs. 2-3 the alpha and beta
# sensitivity and Fig. 4 the teacher-vs-student efficiency (least certain: it may be a table). One
# earlier note in the package (leader/data/prompts.py) calls the prompt template "Fig. 2"; that
# figure is a diagram, not a result, and is not reproduced. Renumber here, nowhere else.
@dataclass(frozen=True)
class PaperArtifact:
    paper: str  # "Table III"
    what: str  # what the paper's artifact shows
    items: tuple[str, ...]  # report items reproducing it: "table:<TABLES name>" / "figure:<FIGURES name>"
    # what must be in it, per dataset: "models" (every baseline, LEADER(T) and LEADER(S)), "variants"
    # (every declared ablation variant), "teacher_student", "alpha" / "beta" (every grid value),
    # "stats" (the cohort statistics), "latency" (teacher and student latency and memory)
    rows: str
    groups: tuple[str, ...] = ("overall",)  # the report's group keys (leader.report.cells.GROUPS) it must fill
    per_backbone: bool = True  # its rows exist once per teacher backbone

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(i.split(":", 1)[1] for i in self.items if i.startswith("table:"))

    @property
    def figures(self) -> tuple[str, ...]:
        return tuple(i.split(":", 1)[1] for i in self.items if i.startswith("figure:"))


_BY_GROUP = ("overall", "history", "no_history")
PAPER_ARTIFACTS: tuple[PaperArtifact, ...] = (
    PaperArtifact("Table III", "overall comparison with the baselines", ("table:overall", "figure:groups"), "models"),
    PaperArtifact("Table IV", "ablation study", ("table:ablation", "figure:ablation"), "variants", _BY_GROUP),
    PaperArtifact(
        "Table V",
        "single-visit vs multi-visit samples",
        ("table:overall", "figure:groups"),
        "models",
        ("history", "no_history"),
    ),
    PaperArtifact("Table VI", "dataset statistics", ("table:dataset_stats",), "stats", (), per_backbone=False),
    PaperArtifact(
        "Table VII", "teacher and student per LLM backbone", ("table:backbone",), "teacher_student", _BY_GROUP
    ),
    PaperArtifact("Fig. 2", "sensitivity to α", ("figure:sensitivity_alpha", "table:sensitivity"), "alpha"),
    PaperArtifact("Fig. 3", "sensitivity to β", ("figure:sensitivity_beta", "table:sensitivity"), "beta"),
    PaperArtifact("Fig. 4", "efficiency: teacher vs student", ("figure:efficiency", "table:efficiency"), "latency", ()),
)


def paper_refs(item: str) -> list[PaperArtifact]:
    """The paper artifacts a report item ("table:overall") reproduces, in the paper's order."""
    return [a for a in PAPER_ARTIFACTS if item in a.items]


def paper_caption(item: str) -> str:
    """'Paper: Table III (overall comparison ...); Table V (...).' for a caption, '' when none."""
    refs = paper_refs(item)
    return "Paper: " + "; ".join(f"{a.paper} ({a.what})" for a in refs) + "." if refs else ""
