"""Is every paper artifact in this report, per dataset, per backbone and per group?

Why a check and not a convention: a table that silently loses a backbone's rows, or a figure that
is never drawn, still gives a report that looks complete. This reads what the report actually
wrote (its tables' long forms and its figure files) against `names.PAPER_ARTIFACTS` and the study's
declarations (datasets, teacher backbones, baselines, ablation variants, sensitivity grids,
latency batch sizes), and names every gap. The report shows the result in its "Paper artifacts"
section; tests/integration/test_paper_rehearsal.py requires it to be empty for the dress rehearsal.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leader.baselines import BASELINE_LABELS
from leader.report.cells import METRICS, NOT_APPLICABLE_NOTE
from leader.report.names import PAPER_ARTIFACTS, PaperArtifact

STATS = ("patients", "visits", "single_visit_patients", "train_patients", "val_patients", "test_patients")
LATENCY = ("latency_teacher_ms", "latency_student_ms", "peak_mem_teacher_mb", "peak_mem_student_mb")


@dataclass(frozen=True)
class Declared:
    """What the study asked for, read from its resolved spec (spec.yaml)."""

    datasets: tuple[str, ...]
    backbones: tuple[str, ...]
    baselines: tuple[str, ...]  # labels, as the tables name them
    variants: tuple[str, ...]
    grids: dict  # param -> values
    batch_sizes: tuple[int, ...]

    @classmethod
    def of(cls, spec: dict) -> Declared:
        def get(*keys, default=None):
            d = spec
            for k in keys:
                d = d.get(k) if isinstance(d, dict) else None
            return default if d is None else d

        base = get("baselines", default={})
        names = list(get("baselines", "trivial", default=[])) + list(get("baselines", "tuned", default={}))
        return cls(
            datasets=tuple(str(d.get("name")) for d in get("datasets", default=[]) if isinstance(d, dict)),
            backbones=tuple(str(b) for b in get("teacher", "backbones", default=[])) or ("",),
            baselines=tuple(BASELINE_LABELS.get(n, n) for n in names) if base else (),
            variants=tuple(str(v) for v in get("ablations", "variants", default=[])),
            grids={p: list(get("sensitivity", p, default=[]) or []) for p in ("alpha", "beta")},
            batch_sizes=tuple(int(b) for b in get("evaluation", "latency_batch_sizes", default=[])),
        )


def _filled(rows: pd.DataFrame, allow_na: bool) -> bool:
    """Every cell has a number, or (a baseline's, `allow_na`) says why it cannot: a multi-visit-only
    model's single-visit cell. LEADER is never multi-visit-only: its cells need numbers."""
    ok = rows["mean"].map(lambda v: v is not None and not (isinstance(v, float) and math.isnan(v)))
    if allow_na:
        ok |= rows["note"].astype(str) == NOT_APPLICABLE_NOTE
    return bool(len(rows)) and bool(ok.all())


def _scored(t: pd.DataFrame, row_ok, groups, metrics=None, allow_na: bool = False) -> list[str]:
    """The group/metric cells of the rows `row_ok` selects that are missing (none -> [])."""
    sel = t[t["row"].astype(str).map(row_ok)]
    if sel.empty:
        return ["no row"]
    out = []
    for g in groups or ("",):
        for m in metrics or [m for m, _ in METRICS]:
            cell = sel[(sel["metric"] == m) & ((sel["group"] == g) if groups else True)]
            if not _filled(cell, allow_na):
                out.append(f"{g} {m}".strip())
    return out


def _row_gaps(a: PaperArtifact, t: pd.DataFrame, d: Declared, bb: str) -> list[str]:
    """(what is missing) for one table's long rows of one (dataset, backbone)."""
    want: list[tuple[str, object, tuple, list | None]] = []  # (label, row selector, groups, metrics)
    mine = t[t["backbone"].astype(str) == bb] if a.per_backbone else t
    if a.rows in ("models", "teacher_student"):
        for who in ("LEADER(T)", "LEADER(S)"):
            want.append((f"{who} [{bb}]", lambda r, w=who: r == w or r.startswith(f"{w} ["), a.groups, None))
    if a.rows == "variants":
        want += [(v, lambda r, v=v: r == v, a.groups, None) for v in d.variants]
    if a.rows in ("alpha", "beta"):
        vals = d.grids.get(a.rows) or []
        want += [(f"{a.rows}={v:g}", lambda r, s=f"{a.rows}={v:g}": r == s, ("overall",), None) for v in vals]
    if a.rows == "stats":
        want += [(s, lambda r, s=s: r == s, (), [s]) for s in STATS]
    if a.rows == "latency":
        want += [(f"batch {b}", lambda r, s=f"{bb} batch={b}": r == s, (), list(LATENCY)) for b in d.batch_sizes]
    return [
        f"{name}: {', '.join(g)}" for name, ok, groups, metrics in want if (g := _scored(mine, ok, groups, metrics))
    ]


def paper_gaps(results: pd.DataFrame, out: Path, spec: dict) -> dict[str, list[str]]:
    """{paper artifact: [gap, ...]} for every artifact of PAPER_ARTIFACTS ([] = complete)."""
    d = Declared.of(spec)
    out = Path(out)
    gaps: dict[str, list[str]] = {}
    for a in PAPER_ARTIFACTS:
        mine = gaps.setdefault(a.paper, [])
        mine += [f"figure {f}: not drawn" for f in a.figures if not (out / "figures" / f"{f}.png").is_file()]
        for tname in a.tables:
            if not (out / "tables" / f"{tname}.csv").is_file():
                mine.append(f"table {tname}: not written")
                continue
            t = results[results["table"] == tname] if "table" in results else results.iloc[:0]
            for ds in d.datasets:
                if a.rows == "models":  # the baselines: once per dataset (they have no backbone)
                    base = t[(t["dataset"].astype(str) == ds) & (t["backbone"].astype(str) == "")]
                    mine += [
                        f"table {tname}, {ds}, {n}: {', '.join(g)}"
                        for n in d.baselines
                        if (g := _scored(base, lambda r, n=n: r == n, a.groups, None, True))
                    ]
                for bb in d.backbones if a.per_backbone else ("",):
                    where = f"{ds} / {bb}" if bb else ds
                    dsel = t[t["dataset"].astype(str) == ds]
                    mine += [f"table {tname}, {where}, {g}" for g in _row_gaps(a, dsel, d, bb)]
    return gaps


def paper_frame(gaps: dict[str, list[str]]) -> pd.DataFrame:
    by = {a.paper: a for a in PAPER_ARTIFACTS}
    return pd.DataFrame(
        [
            dict(
                paper=p,
                what=by[p].what,
                report_items=", ".join(by[p].items),
                per_backbone=by[p].per_backbone,
                groups=", ".join(by[p].groups),
                status="complete" if not g else "incomplete",
                gaps="; ".join(g),
            )
            for p, g in gaps.items()
        ]
    )


def paper_markdown(gaps: dict[str, list[str]]) -> str:
    lines = [
        "## Paper artifacts",
        "",
        "*Each result table and figure of the paper, the report items that reproduce it, and whether every "
        "dataset, backbone and group the study declares is in them (leader/report/names.py PAPER_ARTIFACTS).*",
        "",
        "| Paper | What | Report items | Status |",
        "|:--|:--|:--|:--|",
    ]
    for r in paper_frame(gaps).itertuples():
        status = "complete" if not r.gaps else f"**incomplete**: {r.gaps}"
        lines.append(f"| {r.paper} | {r.what} | {r.report_items} | {status} |")
    return "\n".join(lines) + "\n"


def paper_html(gaps: dict[str, list[str]]) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><td class="lbl">{e(r.paper)}</td><td class="lbl">{e(r.what)}</td><td class="lbl">{e(r.report_items)}</td>'
        + ('<td class="lbl">complete</td>' if not r.gaps else f'<td class="missing wrap">incomplete: {e(r.gaps)}</td>')
        + "</tr>"
        for r in paper_frame(gaps).itertuples()
    )
    return (
        '<h2 id="paper-artifacts">Paper artifacts</h2><p class="caption">Each result table and figure of the paper, '
        "the report items that reproduce it, and whether every dataset, backbone and group the study declares is "
        'in them.</p><table><thead><tr><th class="lbl">Paper</th><th class="lbl">What</th>'
        f'<th class="lbl">Report items</th><th class="lbl">Status</th></tr></thead><tbody>{rows}</tbody></table>'
    )
