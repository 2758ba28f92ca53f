"""Markdown, HTML (self-contained) and LaTeX faces of the same tables and figures."""

from __future__ import annotations

import base64
import html
import json

from leader.report.tables import Table

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1340px;margin:2rem auto;padding:0 1rem;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #4C72B0;padding-bottom:.3rem}h2{margin-top:2.2rem;color:#2b4a7a}
table{border-collapse:collapse;margin:.8rem 0;font-size:.86rem;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:right;white-space:nowrap}
th{background:#f3f5f9;border-bottom:2px solid #999}td.lbl,th.lbl{text-align:left}
tr:hover td{background:#fafbfd}td.missing{color:#b00020;font-style:italic}
.caption{color:#555;font-size:.85rem}.note{color:#b00020;background:#fff4f4;border-left:3px solid #b00020;
padding:.3rem .6rem;margin:.5rem 0}img{max-width:100%;border:1px solid #eee}
pre{background:#f6f8fa;padding:.8rem;overflow-x:auto;font-size:.8rem}.scroll{overflow-x:auto}
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
        " & ".join(esc(h) for h in t.row_header + t.columns) + r" \\",
        r"\midrule",
    ]
    for r, cs in zip(t.rows, t.cells, strict=False):
        vals = [esc(c.text) if not c.bold else f"\\textbf{{{esc(c.text)}}}" for c in cs]
        lines.append(" & ".join([esc(x) for x in r] + vals) + r" \\")
    if not t.rows:
        lines.append(f"\\multicolumn{{{ncol}}}{{c}}{{missing}} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(lines)


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


def html_table(t: Table) -> str:
    e = html.escape
    out = [f'<h2 id="{t.name}">{e(t.title)}</h2>', f'<p class="caption">{e(t.caption)}</p>']
    out += [f'<p class="note">{e(n)}</p>' for n in t.notes]
    if t.rows:
        out.append('<div class="scroll"><table><thead><tr>')
        out += [f'<th class="lbl">{e(h)}</th>' for h in t.row_header] + [f"<th>{e(h)}</th>" for h in t.columns]
        out.append("</tr></thead><tbody>")
        for r, cs in zip(t.rows, t.cells, strict=False):
            tds = [f'<td class="lbl">{e(x)}</td>' for x in r]
            for c in cs:
                txt = f"<b>{e(c.text)}</b>" if c.bold else e(c.text)
                tds.append(f'<td class="missing">{txt}</td>' if c.missing else f"<td>{txt}</td>")
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</tbody></table></div>")
    return "\n".join(out)


def md_figure(name: str, title: str, png_rel: str | None, note: str | None) -> str:
    if png_rel is None:
        return f"## {title}\n\n> **{note}**\n"
    return f"## {title}\n\n![{title}]({png_rel})\n\n[SVG]({png_rel[:-4]}.svg)\n"


def html_figure(name: str, title: str, png_path, note: str | None) -> str:
    e = html.escape
    if png_path is None:
        return f'<h2 id="{name}">{e(title)}</h2><p class="note">{e(note or "missing")}</p>'
    b64 = base64.b64encode(png_path.read_bytes()).decode()
    return f'<h2 id="{name}">{e(title)}</h2><img alt="{e(title)}" src="data:image/png;base64,{b64}">'


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
