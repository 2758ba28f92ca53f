"""build_report: study results directory -> reports/<study>/ (md, html, figures, tables, parquet)."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import pandas as pd

from leader.report import figures as F
from leader.report import render as R
from leader.report import tables as T
from leader.report.cells import GROUP_NOTE
from leader.report.deviations import command_line_sets, deviations_frame, deviations_html, deviations_markdown
from leader.report.findings import findings, findings_frame, findings_markdown, teacher_probe_notes
from leader.report.findings_render import detail_html, summary_html
from leader.report.guard import check_aggregate_only
from leader.report.load import StudyResults, load_study
from leader.report.names import FIGURE_ALIASES, FIGURES, TABLE_ALIASES, TABLES, paper_caption
from leader.report.paper_artifacts import paper_frame, paper_gaps, paper_html, paper_markdown

ALL_TABLES, ALL_FIGURES = list(TABLES), list(FIGURES)
_ALIASES = {**TABLE_ALIASES, **FIGURE_ALIASES}
_FIG_TITLES = {
    "groups": "Test PRAUC of every model, by group",
    "ablation": "Ablation (figure)",
    "sensitivity_alpha": "Sensitivity of PRAUC to α (feature-KD weight)",
    "sensitivity_beta": "Sensitivity of PRAUC to β (profile-alignment weight)",
    "efficiency": "Efficiency: teacher vs student",
    "optuna_history": "Optuna search history",
    "optuna_importance": "Optuna parameter importances",
}

_FIG_CAPTIONS = {
    "groups": "Mean and 95 % CI (mean ± 1.96 × bootstrap std) per model, sorted by overall PRAUC. " + GROUP_NOTE,
    "efficiency": "Teacher vs student per dataset / backbone (and batch size); the student's speed-up in each label.",
}


def _find(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _names(x) -> list[str] | None:
    return None if x is None else [str(v) for v in x]


def declared_items(spec: dict) -> tuple[list[str], list[str], list[str]]:
    """(tables, figures, unknown) from the spec's `report` section; all by default.

    Accepts ReportSpec (`report: {tables: [...], figures: [...]}`), `report: [names]` or
    `report: {include: [...]}`. The Optuna importances come with the history; the backbone table
    comes with the main table when the study has more than one teacher backbone."""
    rep = spec.get("report")
    tables = figs = None
    if isinstance(rep, list):
        tables = figs = _names(rep)
    elif isinstance(rep, dict):
        if rep.get("include") is not None:
            tables = figs = _names(rep["include"])
        else:
            tables, figs = _names(rep.get("tables")), _names(rep.get("figures"))
    tables = ALL_TABLES if tables is None else tables
    figs = ALL_FIGURES if figs is None else figs
    ts = [m for n in tables for m in (["overall"] if n == "main" else [n]) if m in ALL_TABLES]
    fs = [m for n in figs for m in _ALIASES.get(n, [n]) if m in ALL_FIGURES]
    known = set(ALL_TABLES) | set(ALL_FIGURES) | set(_ALIASES)
    unknown = [n for n in list(tables) + list(figs) if n not in known]
    if "optuna_history" in fs and "optuna_importance" not in fs:
        fs.insert(fs.index("optuna_history") + 1, "optuna_importance")
    bbs = _find(spec, "teacher", "backbones")
    if "overall" in ts and "backbone" not in ts and isinstance(bbs, list) and len(bbs) > 1:
        ts.insert(ts.index("overall") + 1, "backbone")
    dedup = lambda xs: list(dict.fromkeys(xs))  # noqa: E731
    return dedup(ts), dedup(fs), dedup(unknown)


def _default_out(name: str) -> Path:
    """$LEADER_REPORTS_DIR/<study>, else <repo (if writable) or cwd>/reports/<study>."""
    from leader.paths import repo_root

    if os.environ.get("LEADER_REPORTS_DIR"):
        return Path(os.environ["LEADER_REPORTS_DIR"]).expanduser() / name
    root = repo_root() if (repo_root() / "pyproject.toml").is_file() and os.access(repo_root(), os.W_OK) else Path.cwd()
    return root / "reports" / name


def _as_list(x) -> list[str] | None:
    if isinstance(x, (list, tuple)):
        return [str(v) if not isinstance(v, dict) else str(v.get("name", v)) for v in x]
    if isinstance(x, dict):
        return [str(k) for k in x]
    return None


def _build_table(name: str, s: StudyResults, teacher_notes: dict) -> T.Table:
    if name == "overall":
        return T.overall_table(s.metrics, s.bootstrap, _as_list(_find(s.spec, "report", "models")), teacher_notes)
    if name == "ablation":
        return T.ablation_table(
            s.metrics,
            _as_list(_find(s.spec, "ablations", "variants")) or _as_list(_find(s.spec, "ablation", "variants")),
        )
    if name == "backbone":
        return T.backbone_table(
            s.metrics, _as_list(_find(s.spec, "teacher", "backbones")) or _as_list(s.spec.get("backbones"))
        )
    if name == "sensitivity":
        return T.sensitivity_table(s.metrics)
    if name == "optuna":
        return T.optuna_table(s.optuna, F.param_importances(s.optuna) if not s.optuna.empty else {})
    if name == "dataset_stats":
        return T.dataset_stats_table(s.dataset_stats)
    return T.efficiency_table(s.efficiency)


def _build_figure(name: str, s: StudyResults):
    if name in ("sensitivity_alpha", "sensitivity_beta"):
        return F.sensitivity_figure(s.metrics, (name.split("_")[1],))
    if name == "groups":
        return F.groups_figure(s.metrics)
    if name == "ablation":
        return F.ablation_figure(s.metrics)
    if name == "efficiency":
        return F.efficiency_figure(s.efficiency)
    if name == "optuna_history":
        return F.optuna_history_figure(s.optuna)
    return F.optuna_importance_figure(s.optuna)


def build_report(study_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Build the report of one study; returns the output folder (holding index.md / index.html).

    The page reads top-down: the Findings summary (one coloured line per claim), the headline
    figure (every model's PRAUC by group), the Findings in detail, the tables, the other figures.
    Missing stages or files become visible 'missing' notes; patient-level columns are refused."""
    s = load_study(study_dir)
    out = Path(out_dir) if out_dir is not None else _default_out(s.name)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    tables, figs, unknown = declared_items(s.spec)
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# Study report: {s.name}", "", f"Generated {when} from `{s.study_dir}`.", ""]
    body = [
        f"<h1>Study report: {R.html.escape(s.name)}</h1>",
        f'<p class="caption">Generated {when} from <code>{R.html.escape(str(s.study_dir))}</code>.</p>',
    ]
    found = findings(s.metrics, s.paired, s.efficiency, s.teacher)
    md.append(findings_markdown(found))
    body.append(summary_html(found))
    findings_frame(found).to_csv(out / "tables" / "findings.csv", index=False)
    notes = [f"missing file: {m}" for m in s.missing_files] + [f"unknown report item (ignored): {u}" for u in unknown]
    md += [f"> **{n}**" for n in notes] + [""]
    body += [f'<p class="note">{R.html.escape(n)}</p>' for n in notes]
    head = ["groups"] if "groups" in figs else []
    longs = _write_figures(s, head, out, md, body)
    body.append(detail_html(found))
    longs += _write_tables(s, tables, out, md, body, teacher_probe_notes(found))
    longs += _write_figures(s, [f for f in figs if f not in head], out, md, body)
    results = pd.concat(longs, ignore_index=True) if longs else pd.DataFrame(columns=["table", "note"])
    check_aggregate_only(results, str(out / "results.parquet"))
    if s.spec:
        gaps = paper_gaps(results, out, s.spec)
        md.append(paper_markdown(gaps))
        body.append(paper_html(gaps))
        paper_frame(gaps).to_csv(out / "tables" / "paper_artifacts.csv", index=False)
        sets = command_line_sets(s.study_dir)
        md.append(deviations_markdown(s.spec, sets))
        body.append(deviations_html(s.spec, sets))
        deviations_frame(s.spec, sets).to_csv(out / "tables" / "deviations.csv", index=False)
    md.append(R.env_md(s.env, s.spec_text))
    body.append(R.env_html(s.env, s.spec_text))
    results.to_parquet(out / "results.parquet", index=False)
    (out / "index.md").write_text("\n".join(md))
    (out / "index.html").write_text(R.html_page(f"Study report: {s.name}", body))
    return out


def _write_tables(s, tables: list[str], out: Path, md: list, body: list, teacher_notes: dict) -> list[pd.DataFrame]:
    """Each table as CSV + LaTeX, appended to the markdown and HTML; returns their long forms."""
    longs = []
    for name in tables:
        tab = _build_table(name, s, teacher_notes)
        if paper := paper_caption(f"table:{name}"):  # the paper artifact it reproduces (names.PAPER_ARTIFACTS)
            tab.caption = f"{paper} {tab.caption}"
        disp = tab.display_frame()
        check_aggregate_only(disp, f"tables/{name}.csv")
        disp.to_csv(out / "tables" / f"{name}.csv", index=False)
        (out / "tables" / f"{name}.tex").write_text(R.latex(tab))
        md.append(R.md_table(tab))
        body.append(R.html_table(tab))
        if not tab.long.empty:
            longs.append(tab.long)
        elif tab.notes:
            longs.append(pd.DataFrame([dict(table=name, note=tab.notes[0])]))
    return longs


def _write_figures(s, figs: list[str], out: Path, md: list, body: list) -> list[pd.DataFrame]:
    """Each figure as PNG (or its 'missing' note), appended to the markdown and HTML; returns the
    notes and the Optuna importances as long-form rows."""
    longs = []
    for name in figs:
        fig = _build_figure(name, s)
        title = _FIG_TITLES[name]
        if isinstance(fig, str):
            md.append(R.md_figure(name, title, None, fig))
            body.append(R.html_figure(name, title, None, fig))
            longs.append(pd.DataFrame([dict(table=f"figure:{name}", note=fig)]))
            continue
        png, _ = F.save(fig, out / "figures" / name)
        paper = paper_caption(f"figure:{name}")  # the paper artifact it reproduces (names.PAPER_ARTIFACTS)
        md.append(R.md_figure(name, title, f"figures/{name}.png", None) + (f"\n*{paper}*\n" if paper else ""))
        caption = " ".join(c for c in (paper, _FIG_CAPTIONS.get(name)) if c)
        body.append(R.html_figure(name, title, png, None, caption or None))
    if "optuna_importance" in figs and not s.optuna.empty:
        for grp, imp in F.param_importances(s.optuna).items():
            longs += [
                pd.DataFrame([dict(table="optuna_importance", dataset=grp, row=p, metric="importance", mean=v)])
                for p, v in imp.items()
            ]
    return longs
