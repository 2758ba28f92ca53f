"""`leader study ...` commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


def _validate_spec(file, sets=None):
    """Schema + the study's units only: torch, Ray and transformers are never imported."""
    from leader.study.spec import load_study, with_sets
    from leader.study.units import summary, units

    spec = load_study(file)
    spec = with_sets(spec, sets) if sets else spec
    us = units(spec)  # the same units, with the same keys, that `plan`, `run` and `status` use
    return spec, us, summary(spec, us)


def _unit_row(u) -> dict:
    return {
        "unit": u.name,
        "kind": u.kind,
        "stage": u.stage,
        "dataset": u.dataset,
        "backbone": u.backbone,
        "model": u.model,
        "trials": u.trials,
        "detail": u.detail,
        "cpu": u.cpu,
        "gpu": u.gpu,
        "variants": list(u.variants),
        "unit_key": u.key[:12],
    }


@app.command()
def validate(
    file: Path = typer.Argument(..., help="Study YAML."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    sets: list[str] | None = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a study field, as `run --set` does (same expansion)."
    ),
) -> None:
    """Validate FILE and print every unit of the study (the trial matrix) and its resource needs;
    runs nothing."""
    from rich.console import Console
    from rich.table import Table

    spec, units, summ = _validate_spec(file, sets)
    if as_json:
        typer.echo(json.dumps({"name": spec.name, "summary": summ, "units": [_unit_row(u) for u in units]}))
        return
    c = Console()
    t = Table(title=f"study {spec.name} -> {spec.study_dir()}")
    for col in ("unit", "trials", "cpu", "gpu", "key", "detail"):
        t.add_column(col, no_wrap=col == "unit")
    for u in units:
        t.add_row(
            u.name,
            str(u.trials or ""),
            f"{u.cpu:g}" if u.cpu else "",
            f"{u.gpu:g}" if u.gpu else "",
            u.key[:12],
            u.detail,
        )
    c.print(t)
    c.print(" ".join(f"{k}={v}" for k, v in summ.items()))
    c.print("[green]valid[/green]")


@app.command()
def plan(
    file: Path = typer.Argument(..., help="Study YAML."),
    against: Path | None = typer.Option(
        None, "--against", help="Study folder to compare with (default: the file's storage_path/name)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON: {units, resources}."),
    sets: list[str] | None = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a study field, e.g. teacher_resources.gpu_memory_gb=16."
    ),
) -> None:
    """What `run` would do: each unit reused, run, extended or re-run (and why), with trial
    counts and a rough cost from recorded seconds. With a GPU teacher or GPU trials, a resource
    section: memory per GPU of each teacher (a teacher that cannot fit is refused: exit 1) and
    GPU-hours. Runs nothing; torch is imported only for that section."""
    from leader.study.budget import budget, needs_budget
    from leader.study.plan import format_budget, format_plan, format_refusal, power_lines
    from leader.study.plan import plan as make_plan
    from leader.study.spec import load_study, with_sets

    spec = load_study(file)
    spec = with_sets(spec, sets) if sets else spec
    d = against or spec.study_dir()
    rows = make_plan(spec, d)
    res = budget(spec, d, rows) if needs_budget(spec) else None
    power = power_lines(spec, d)
    if as_json:
        typer.echo(json.dumps({"units": rows, "resources": res, "power": power}, default=str))
    else:
        typer.echo(format_plan(rows, d) + ("\n" + format_budget(res) if res else "") + "\n" + "\n".join(power))
    refused = [t for t in (res or {}).get("teachers", []) if not t["fits"] and t["to_run"]]
    if refused:
        typer.secho("error: " + "\n".join(format_refusal(t) for t in refused), fg="red", err=True)
        raise typer.Exit(1)


@app.command()
def run(
    file: Path = typer.Argument(..., help="Study YAML."),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)."
    ),
    storage_path: str | None = typer.Option(None, "--storage-path", help="Override the file's storage_path."),
    sets: list[str] | None = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a study field (lists by index: datasets.0.source=synthetic)."
    ),
    dashboard: bool = typer.Option(
        True,
        "--dashboard/--no-dashboard",
        help="With a local Ray: print the dashboard URL (127.0.0.1, token auth on). The dashboard process "
        "runs either way: Ray Train polls the state API it serves.",
    ),
) -> None:
    """Run (or resume) every unfinished stage of the study."""
    from leader.study.runner import run_study

    run_study(file, address=address, storage_path=storage_path, echo=typer.echo, dashboard=dashboard, sets=sets)


@app.command()
def status(
    target: Path = typer.Argument(..., help="Study folder or study YAML."),
    storage_path: str | None = typer.Option(None, "--storage-path"),
) -> None:
    """Stage table and Tune progress of a study."""
    from leader.study.status import print_status

    print_status(target, storage_path)
