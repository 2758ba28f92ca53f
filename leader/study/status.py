"""`leader study status`: every unit of the study (leader.study.units, from the study file or the
spec.yaml the run wrote into its folder) with its state from state.json, plus trial progress
read from Tune's experiment folders (works while the study runs, without connecting to Ray)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from leader.errors import ConfigError


def study_dir_of(target: Path, storage_path: str | None = None) -> Path:
    if target.is_file():
        from leader.study.spec import load_study

        return load_study(target).study_dir(storage_path)
    return target


def trial_dirs(experiment: Path) -> list[Path]:
    """A Tune experiment's trial folders (the experiment's own state is in files beside them)."""
    return [t for t in sorted(experiment.iterdir()) if t.is_dir() and not t.name.startswith(".")]


def tune_progress(study_dir: Path) -> list[dict]:
    rows = []
    for exp in sorted((study_dir / "tune").glob("*")):
        if not exp.is_dir():
            continue
        trials = trial_dirs(exp)
        done = 0
        for t in trials:
            rj = t / "result.json"
            if rj.is_file():
                lines = rj.read_text().strip().splitlines()
                if lines and (json.loads(lines[-1]).get("done") or json.loads(lines[-1]).get("final")):
                    done += 1
        rows.append({"experiment": exp.name, "trials": len(trials), "finished": done})
    return rows


def unit_names(target: Path, study_dir: Path) -> list[str]:
    """The study's units in run order: from the study file, else from the spec.yaml its run
    wrote; [] when neither can be read (then state.json alone is shown)."""
    from leader.study.spec import load_study
    from leader.study.units import units

    for f in (target, study_dir / "spec.yaml"):
        if f.is_file():
            try:
                spec = load_study(f)
            except ConfigError:
                continue
            return [u.name for u in units(spec, {d.name: None for d in spec.datasets})]
    return []


def status_rows(target: Path, storage_path: str | None = None) -> tuple[Path, list[dict]]:
    """(study folder, one row per unit: name, status, seconds, time); units of the study that
    never ran are 'pending', recorded units the study no longer has come last."""
    d = study_dir_of(Path(target), storage_path)
    sp = d / "state.json"
    if not sp.is_file():
        raise ConfigError(f"{d}: not a study folder (no state.json yet)")
    stages = json.loads(sp.read_text())["stages"]
    names = unit_names(Path(target), d)
    rows = []
    for k in list(dict.fromkeys([*names, *stages])):
        v = stages.get(k, {"status": "pending"})
        rows.append({"unit": k, **v, "seconds": v.get("outputs", {}).get("seconds", ""), "in_study": k in names})
    return d, rows


def print_status(target: Path, storage_path: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    d, rows = status_rows(target, storage_path)
    c = Console()
    t = Table(title=f"study {d}")
    for col in ("unit", "status", "seconds", "when"):
        t.add_column(col)
    for r in rows:
        colour = {"done": "green", "running": "yellow", "skipped": "dim", "pending": "dim"}.get(r["status"], "red")
        when = time.strftime("%H:%M:%S", time.localtime(r["time"])) if "time" in r else ""
        t.add_row(r["unit"], f"[{colour}]{r['status']}[/{colour}]", str(r["seconds"]), when)
    c.print(t)
    for r in rows:
        if r["status"] == "failed":
            c.print(f"[red]{r['unit']} failed: {r.get('error', '')}[/red]")
            for f in r.get("failures", []):
                c.print(f"  trial {f['trial']}: {f['error']} -> {f['error_file']}")
    prog = tune_progress(d)
    if prog:
        tt = Table(title="Tune experiments")
        for col in ("experiment", "trials", "finished"):
            tt.add_column(col)
        for r in prog:
            tt.add_row(r["experiment"], str(r["trials"]), str(r["finished"]))
        c.print(tt)
