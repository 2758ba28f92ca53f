"""`leader` command line, grouped by pipeline stage. Each stage owns its sub-app module."""

from __future__ import annotations

import sys

import typer

from leader.errors import LeaderError

app = typer.Typer(
    help="LEADER Studies: LLM-distilled medication recommendation at cluster scale.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Imported lazily per group so `leader --help` stays fast and one broken stage does not
    # take the others down.
    from leader.cli import data, features, report, student, study, teacher

    app.add_typer(data.app, name="data", help="Prepare and inspect EHR datasets (MIMIC-III/IV, demo, synthetic).")
    app.add_typer(teacher.app, name="teacher", help="Fine-tune the LLM teacher LEADER(T) with Ray Train + DeepSpeed.")
    app.add_typer(features.app, name="features", help="Extract and serve teacher features (object store + disk).")
    app.add_typer(student.app, name="student", help="Train and use the distilled student LEADER(S).")
    app.add_typer(study.app, name="study", help="Validate, run and monitor declarative studies (Ray Tune + Optuna).")
    app.add_typer(report.app, name="report", help="Build reports (tables + figures) from study results.")


_register()


def main() -> None:
    try:
        app()
    except LeaderError as e:  # a user-fixable problem: one clear line, no traceback
        typer.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
