"""The HTML faces of the Findings: a one-line-per-claim summary that opens the page (coloured by
outcome, read in seconds), and the detailed table with every number, placed after the headline
figure. Why two: a reader decides from the summary whether to read on; a reviewer checks the
evidence in the table."""

from __future__ import annotations

import html
import math

from leader.report.findings import (
    CONTRADICTED,
    HELD,
    INCONCLUSIVE,
    OUTCOMES,
    UNTESTABLE,
    Finding,
    method_text,
    outcome_counts,
    teacher_probe_notes,
)

COLOURS = {HELD: "#1a7f37", CONTRADICTED: "#cf222e", INCONCLUSIVE: "#9a6700", UNTESTABLE: "#6e7781"}


def _short(f: Finding, seeds_said: bool) -> str:
    """The few numbers a summary line carries: the effect and its adjusted p, or why untested."""
    if f.status == UNTESTABLE:
        return f.evidence
    if math.isnan(f.diff):
        return f.summary or f.evidence
    s = f"{f.diff:+.3f} [{f.ci_low:+.3f}, {f.ci_high:+.3f}]"
    s += f", Holm p {f.p_holm:.2g}" if f.in_family else f", p {f.p:.2g}"
    if f.status == INCONCLUSIVE and not math.isnan(f.mde):
        s += f"; could detect ≥ {f.mde:.3f}"
        if not math.isnan(f.paper_effect):
            s += f", paper {f.paper_effect:+.3f}"
    return s + ("; one seed" if f.one_seed and not seeds_said else "")


def summary_html(items: list[Finding]) -> str:
    """The page's opening: outcome counts, how to read them, and one coloured line per claim."""
    e = html.escape
    if not items:
        return '<h2 id="findings">Findings</h2><p>No results yet: no claim can be tested.</p>'
    counts = outcome_counts(items)
    tested = [f for f in items if not math.isnan(f.diff)]
    one_seed = bool(tested) and all(f.one_seed for f in tested)
    head = " · ".join(
        f'<b style="color:{COLOURS[o]}">{counts[o]} {e(o)}</b>' for o in OUTCOMES if counts[o] or o != UNTESTABLE
    )
    notes = "".join(
        f'<p class="note">{e(ds)} / {e(bb)}: {e(text)}</p>' for (ds, bb), text in teacher_probe_notes(items).items()
    )
    lines = "".join(
        f'<li><span class="badge" style="color:{COLOURS[f.status]}">{e(f.status.upper())}</span> '
        f'<span class="where">{e(f.dataset)}{" / " + e(f.backbone) if f.backbone else ""}</span> · {e(f.claim)} '
        f'<span class="nums">({e(_short(f, one_seed))})</span></li>'
        for f in items
    )
    seeds = " · every test compares one training run per model (one seed)" if one_seed else ""
    return (
        f'<h2 id="findings">Findings</h2><p>{head}{e(seeds)}</p>{notes}<ul class="summary">{lines}</ul>'
        f'<p class="caption">{e(method_text(items))} Every number: '
        '<a href="#findings-detail">Findings in detail</a>.</p>'
    )


def detail_html(items: list[Finding]) -> str:
    """Every claim with its full evidence (effect, CI, raw and Holm p, patients, seeds, MDE)."""
    e = html.escape
    if not items:
        return ""
    rows = "".join(
        f"<tr><td>{e(f.dataset)}</td><td>{e(f.backbone or '-')}</td><td>{e(f.claim)}</td>"
        f'<td style="color:{COLOURS[f.status]};font-weight:bold">{e(f.status)}</td><td>{e(f.evidence)}</td></tr>'
        for f in items
    )
    return (
        '<h2 id="findings-detail">Findings in detail</h2>'
        '<table class="findings"><colgroup><col class="c-ds"><col class="c-bb"><col class="c-claim">'
        '<col class="c-out"><col></colgroup><thead><tr><th>Dataset</th><th>Backbone</th><th>Claim</th>'
        f"<th>Outcome</th><th>Evidence</th></tr></thead><tbody>{rows}</tbody></table>"
    )
