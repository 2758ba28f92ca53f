"""`leader study status`: stage table from state.json plus trial progress read from Tune's
experiment folders (works while the study runs, without connecting to Ray)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def study_dir_of(target: Path, storage_path: str | None = None) -> Path:
    if target.is_file():
        from leader.study.spec import load_study

        return load_study(target).study_dir(storage_path)
    return target


def tune_progress(study_dir: Path) -> list[dict]:
    rows = []
    for exp in sorted((study_dir / "tune").glob("*")):
        if not exp.is_dir():
            continue
        trials = [t for t in exp.iterdir() if t.is_dir() and t.name.startswith("t_")]
        done = 0
        for t in trials:
            rj = t / "result.json"
            if rj.is_file():
                lines = rj.read_text().strip().splitlines()
                if lines and (json.loads(lines[-1]).get("done") or json.loads(lines[-1]).get("final")):
                    done += 1
        rows.append({"experiment": exp.name, "trials": len(trials), "finished": done})
    return rows


def print_status(target: Path, storage_path: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from leader.errors import ConfigError

    d = study_dir_of(Path(target), storage_path)
    sp = d / "state.json"
    if not sp.is_file():
        raise ConfigError(f"{d}: not a study folder (no state.json yet)")
    state = json.loads(sp.read_text())
    c = Console()
    t = Table(title=f"study {d}")
    for col in ("stage", "status", "seconds", "when"):
        t.add_column(col)
    for k, v in state["stages"].items():
        colour = {"done": "green", "running": "yellow", "skipped": "dim"}.get(v["status"], "red")
        t.add_row(
            k,
            f"[{colour}]{v['status']}[/{colour}]",
            str(v.get("outputs", {}).get("seconds", "")),
            time.strftime("%H:%M:%S", time.localtime(v.get("time", 0))),
        )
    c.print(t)
    for k, v in state["stages"].items():
        if v["status"] == "failed":
            c.print(f"[red]{k} failed: {v.get('error', '')}[/red]")
            for f in v.get("failures", []):
                c.print(f"  trial {f['trial']}: {f['error']} -> {f['error_file']}")
    prog = tune_progress(d)
    if prog:
        tt = Table(title="Tune experiments")
        for col in ("experiment", "trials", "finished"):
            tt.add_column(col)
        for r in prog:
            tt.add_row(r["experiment"], str(r["trials"]), str(r["finished"]))
        c.print(tt)
