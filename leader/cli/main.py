"""`leader` command line, grouped by pipeline stage. Each stage owns its sub-app module; this one
owns what every command shares: --version, --quiet/--verbose, --debug and the one-line user errors."""

from __future__ import annotations

import sys
import traceback

import typer
from typer.core import TyperGroup

# Global flags accepted anywhere on the command line (`leader data prepare ... --debug` too).
GLOBAL_FLAGS = ("--debug", "--quiet", "-q", "--verbose", "-v")


def _is_user_error(e: BaseException) -> bool:
    """LeaderError, or a pydantic ValidationError (a value the user typed or wrote in a file)."""
    from leader.errors import LeaderError

    if isinstance(e, LeaderError):
        return True
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, ValidationError)


def _one_line(e: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or e.title
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        return f"{e.title}: {where}: {err['msg']}{more}"
    return " ".join(str(e).split("\n")) or type(e).__name__


def _command_path(group, args: list[str]) -> str:
    """`leader teacher train` from the arguments, for the hint (the failed command's context is gone)."""
    names, cmd = ["leader"], group
    for a in args:
        if a.startswith("-") or a not in getattr(cmd, "commands", {}):
            break
        names.append(a)
        cmd = cmd.commands[a]
    return " ".join(names)


class _LeaderGroup(TyperGroup):
    """Hoists the global flags to the front, then prints a user error as one line plus a hint
    (exit 2) instead of a traceback; with --debug the traceback comes first."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
        rest = [a for a in args[:end] if a not in GLOBAL_FLAGS] + args[end:]
        try:
            return super().main(flags + rest, prog_name or "leader", complete_var, standalone_mode, **extra)
        except Exception as e:
            if not _is_user_error(e):
                raise
            if "--debug" in flags:
                traceback.print_exc()
            typer.secho(f"error: {_one_line(e)}", fg="red", err=True)
            typer.echo(
                f"hint: `{_command_path(self, rest)} --help` lists the options; --debug shows the traceback", err=True
            )
            sys.exit(2)


app = typer.Typer(
    help="LEADER Studies: LLM-distilled medication recommendation at cluster scale.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_LeaderGroup,
)


def _version(value: bool) -> None:
    if value:
        from leader import __version__

        typer.echo(f"leader-studies {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    debug: bool = typer.Option(False, "--debug", help="On an error, also print the traceback."),
) -> None:
    """Global options may also be given after the command (`leader data prepare ... --debug`)."""
    from leader.cli.common import configure_logging

    configure_logging(int(verbose) - int(quiet))


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
    app()


if __name__ == "__main__":
    main()
