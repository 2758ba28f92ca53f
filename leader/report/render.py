"""Markdown, HTML (self-contained) and LaTeX faces of the same tables and figures."""

from __future__ import annotations

import base64
import html
import json

from leader.report.cells import Table

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1240px;margin:1.5rem auto;padding:0 1rem;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #4C72B0;padding-bottom:.3rem;font-size:1.7rem}h2{margin-top:2rem;color:#2b4a7a}
table{border-collapse:collapse;margin:.8rem 0;font-size:.8rem;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #ddd;padding:.25rem .45rem;text-align:right;white-space:nowrap;vertical-align:top}
th{background:#f3f5f9;border-bottom:2px solid #999;white-space:normal;vertical-align:bottom}
th.grp{text-align:center;border-bottom:1px solid #999}td.lbl,th.lbl{text-align:left}
td.wrap{white-space:normal;min-width:12rem;text-align:left}.sd{display:block;font-size:.78em;color:#666}
tr:hover td{background:#fafbfd}td.missing{color:#b00020;font-style:italic}
.caption{color:#555;font-size:.85rem}.note,.incomplete{color:#b00020;background:#fff4f4;border-left:3px solid #b00020;
padding:.3rem .6rem;margin:.5rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f6f8fa;padding:.8rem;font-size:.8rem;white-space:pre-wrap;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
.summary{list-style:none;padding:0;margin:.6rem 0}.summary li{padding:.15rem 0;line-height:1.35}
.badge{display:inline-block;min-width:7.2rem;font-weight:bold;font-size:.78rem;letter-spacing:.02em}
.where{color:#555}.nums{color:#555;font-size:.85rem}
table.findings{width:100%;table-layout:fixed}table.findings td,table.findings th{white-space:normal;text-align:left}
table.findings col.c-ds,table.findings col.c-bb{width:7rem}table.findings col.c-claim{width:24%}
table.findings col.c-out{width:7.5rem}
"""


def latex(t: Table) -> str:
    def esc(s: str) -> str:
        for a, b in (
            ("\\", r"\textbackslash{}"),
            ("&", r"\&"),
            ("%", r"\%"),
            ("_", r"\_"),
            ("#", r"\#"),
            ("±", r"$\pm$"),
            ("†", r"$^\dagger$"),
            ("‡", r"$^\ddagger$"),
            ("×", r"$\times$"),
            ("Δ", r"$\Delta$"),
            ("α", r"$\alpha$"),
            ("β", r"$\beta$"),
        ):
            s = s.replace(a, b)
        return s

    ncol = len(t.row_header) + len(t.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{esc(t.title)}. {esc(t.caption)}}}",
        f"\\label{{tab:{t.name}}}",
        r"\resizebox{\linewidth}{!}{%",
        r"\begin{tabular}{" + "l" * len(t.row_header) + "r" * len(t.columns) + "}",
        r"\toprule",
        *_latex_head(t, esc),
        r"\midrule",
    ]
    for r, cs in zip(t.rows, t.cells, strict=False):
        vals = [esc(c.text) if not c.bold else f"\\textbf{{{esc(c.text)}}}" for c in cs]
        lines.append(" & ".join([esc(x) for x in r] + vals) + r" \\")
    if not t.rows:
        lines.append(f"\\multicolumn{{{ncol}}}{{c}}{{missing}} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(lines)


def _latex_head(t: Table, esc) -> list[str]:
    if not t.column_groups:
        return [" & ".join(esc(h) for h in t.row_header + t.columns) + r" \\"]
    top = [""] * len(t.row_header) + [f"\\multicolumn{{{n}}}{{c}}{{{esc(g)}}}" for g, n in t.column_groups]
    return [" & ".join(top) + r" \\", " & ".join(esc(h) for h in t.row_header + t.sub_columns) + r" \\"]


def md_table(t: Table) -> str:
    out = [f"## {t.title}", "", f"*{t.caption}*", ""]
    out += [f"> **{n}**" for n in t.notes] + ([""] if t.notes else [])
    if t.rows:
        hdr = t.row_header + t.columns
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "|".join([":--"] * len(t.row_header) + ["--:"] * len(t.columns)) + "|")
        for r, cs in zip(t.rows, t.cells, strict=False):
            vals = [f"**{c.text}**" if c.bold else (f"_{c.text}_" if c.missing else c.text) for c in cs]
            out.append("| " + " | ".join(r + vals) + " |")
        out.append("")
    return "\n".join(out)


def _cell_html(c) -> str:
    """A number's HTML: the mean on its line, '± std' / '(Δ)' on a second, smaller one, so a
    nine-column table fits the page at 1280 px."""
    e = html.escape
    head, sep, tail = c.text.partition(" ± ")
    if not sep:
        head, sep, tail = c.text.partition(" (")
        tail = "(" + tail if sep else tail
    else:
        tail = "± " + tail
    txt = e(head) + (f'<span class="sd">{e(tail)}</span>' if sep else "")
    txt = f"<b>{txt}</b>" if c.bold else txt
    cls = " ".join(k for k, on in (("missing", c.missing), ("wrap", c.wrap)) if on)
    return f'<td class="{cls}">{txt}</td>' if cls else f"<td>{txt}</td>"


def _html_head(t: Table) -> list[str]:
    """One header row, or two: the paper's groups over their metric columns."""
    e = html.escape
    if not t.column_groups:
        row = [f'<th class="lbl">{e(h)}</th>' for h in t.row_header] + [f"<th>{e(h)}</th>" for h in t.columns]
        return ["<tr>", *row, "</tr>"]
    top = [f'<th class="lbl" rowspan="2">{e(h)}</th>' for h in t.row_header]
    top += [f'<th class="grp" colspan="{n}">{e(g)}</th>' for g, n in t.column_groups]
    return ["<tr>", *top, "</tr><tr>", *[f"<th>{e(h)}</th>" for h in t.sub_columns], "</tr>"]


def html_table(t: Table) -> str:
    e = html.escape
    out = [f'<h2 id="{t.name}">{e(t.title)}</h2>', f'<p class="caption">{e(t.caption)}</p>']
    out += [f'<p class="note">{e(n)}</p>' for n in t.notes]
    if t.rows:
        out += ['<div class="scroll"><table><thead>', *_html_head(t), "</thead><tbody>"]
        for r, cs in zip(t.rows, t.cells, strict=False):
            tds = [f'<td class="lbl">{e(x)}</td>' for x in r] + [_cell_html(c) for c in cs]
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</tbody></table></div>")
    return "\n".join(out)


def md_figure(name: str, title: str, png_rel: str | None, note: str | None) -> str:
    if png_rel is None:
        return f"## {title}\n\n> **{note}**\n"
    return f"## {title}\n\n![{title}]({png_rel})\n\n[SVG]({png_rel[:-4]}.svg)\n"


def html_figure(name: str, title: str, png_path, note: str | None, caption: str | None = None) -> str:
    e = html.escape
    if png_path is None:
        return f'<h2 id="fig-{name}">{e(title)}</h2><p class="note">{e(note or "missing")}</p>'
    b64 = base64.b64encode(png_path.read_bytes()).decode()
    cap = f'<p class="caption">{e(caption)}</p>' if caption else ""
    return f'<h2 id="fig-{name}">{e(title)}</h2>{cap}<img alt="{e(title)}" src="data:image/png;base64,{b64}">'


# Marks the DOM after load so a headless browser check (--dump-dom) can see broken images.
_CHECK_JS = (
    "window.addEventListener('load',function(){var b=0;document.querySelectorAll('img').forEach("
    "function(i){if(!i.complete||i.naturalWidth===0)b++;});document.body.dataset.brokenImages=b;"
    "document.body.dataset.rendered='ok';});"
)


def html_page(title: str, body: list[str]) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
        f"<body>{''.join(body)}<script>{_CHECK_JS}</script></body></html>"
    )


def env_md(env: dict, spec_text: str) -> str:
    return (
        "## Run configuration and environment\n\n### Study spec (resolved)\n\n```yaml\n"
        + (spec_text or "missing")
        + "\n```\n\n### Versions and hardware (env.json)\n\n```json\n"
        + (json.dumps(env, indent=2, sort_keys=True, default=str) if env else "missing")
        + "\n```\n"
    )


def env_html(env: dict, spec_text: str) -> str:
    e = html.escape
    return (
        '<h2 id="env">Run configuration and environment</h2><h3>Study spec (resolved)</h3><pre>'
        + e(spec_text or "missing")
        + "</pre><h3>Versions and hardware (env.json)</h3><pre>"
        + e(json.dumps(env, indent=2, sort_keys=True, default=str) if env else "missing")
        + "</pre>"
    )
