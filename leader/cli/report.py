"""`leader report STUDY_DIR [--out DIR]`: the report of one study (also the study's last stage)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperGroup


class _DefaultBuild(TyperGroup):
    """`leader report STUDY_DIR` means `leader report build STUDY_DIR`: a sub-app is always a
    click group, and a group cannot take a positional argument of its own."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(no_args_is_help=True, cls=_DefaultBuild)


@app.command("build")
def build(
    study_dir: Path = typer.Argument(..., help="Study result folder (<storage_path>/<study_name>)."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (default: STUDY_DIR/report, where `leader study run` writes it)."
    ),
) -> None:
    """Build index.md / index.html, figures (PNG+SVG), tables (CSV+LaTeX) and results.parquet."""
    from leader.report.build import build_report

    path = build_report(study_dir, out if out is not None else Path(study_dir) / "report")
    typer.echo(str(path / "index.html"))
