"""Run a study: walk its units (leader.study.units, in order: data -> baselines -> teacher ->
features -> sweep -> grid -> efficiency per dataset and backbone) and run each through its
stage (leader/study/stages/), then assemble results/ and build the report. A unit is reused only
when its key matches and its recorded outputs still have their sha256, so a re-run does exactly
the work that is missing or out of date. Interrupted Tune experiments are restored; a failed
unit stops the study loudly, and the report is still written for what finished, saying first
that the study is incomplete."""

from __future__ import annotations

import importlib
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from leader.study.context import SKIPPED, StageFailed, Study, StudyIncomplete
from leader.study.spec import StudySpec, expand_env, load_study, resolved_yaml, with_sets
from leader.study.stages.results import collect, mark_incomplete
from leader.study.state import write_text
from leader.study.units import Kind, Unit, kind, unit_map


def stage_of(k: Kind) -> Callable:
    """The function that runs a unit of kind `k` (imported on first use: validate stays torch-free)."""
    if callable(k.stage):
        return k.stage
    module, _, fn = k.stage.partition(":")
    return getattr(importlib.import_module(module), fn)


class StudyRunner:
    def __init__(self, spec: StudySpec, study_dir: Path, echo=print):
        self.spec, self.dir, self.echo = spec, study_dir, echo
        self.study = Study(spec, study_dir, unit_map(spec), echo=echo)
        self.state, self.failed = self.study.state, self.study.failed

    def run_unit(self, u: Unit):
        """Run one unit through its kind's stage; what it returns is what later units need of it."""
        out = stage_of(kind(u.kind))(self.study, u)
        if out is SKIPPED:
            self.state.mark(u.name, "skipped")
        else:
            self.study.out[u.name] = out
        return out

    def walk(self) -> None:
        """Every unit that is not final, in order; a unit that needs a skipped one is left out."""
        skipped: set[str] = set()
        for u in self.study.units.values():
            if kind(u.kind).final:
                continue
            if skipped & set(u.needs.values()) or self.run_unit(u) is SKIPPED:
                skipped.add(u.name)

    def run(self) -> Path | None:
        """Every unit, then results and the report. A failed unit stops the study; results and
        the report are still written for what finished, and StudyIncomplete is raised."""
        try:
            self.walk()
        except Exception as e:  # noqa: BLE001  (every failure is reported, then raised as StudyIncomplete)
            if not isinstance(e, StageFailed):
                where = self.state.running_unit() or "study"
                e = StageFailed(where, f"{type(e).__name__}: {e} (traceback: {self._traceback()})")
            self.failed.append(e)
            self.echo(f"[FAIL] {e}")
        try:
            collect(self.study)
        except Exception as e:  # noqa: BLE001  (a full disk: results are stale, so the report is not rebuilt)
            self.failed.append(StageFailed("results", f"{type(e).__name__}: {e}"))
            self.echo(f"[FAIL] results: {type(e).__name__}: {e}")
            self._flag_old_report()
            raise StudyIncomplete(self.summary(None)) from None
        report = self._final()
        if self.failed:
            raise StudyIncomplete(self.summary(report))
        return report

    def _final(self) -> Path | None:
        """The final units (the report), run after results also when a unit failed; returns the
        report folder when the study has one."""
        report = None
        for u in self.study.units.values():
            if not kind(u.kind).final:
                continue
            try:
                out = self.run_unit(u)
            except Exception as e:  # noqa: BLE001
                self.failed.append(StageFailed(u.name, f"{type(e).__name__}: {e}"))
                self.echo(f"[FAIL] {u.name}: {type(e).__name__}: {e}")
                continue
            report = out if u.kind == "report" else report
        return report

    def _flag_old_report(self) -> None:
        """Results could not be written: an earlier report no longer matches the study."""
        out = self.dir / "report"
        try:
            if (out / "index.md").is_file():
                mark_incomplete(out, "; ".join(str(f) for f in self.failed))
            self.state.mark("report", "incomplete", key="", files={})
        except OSError:
            pass

    def _traceback(self) -> Path:
        f = self.dir / "errors" / f"driver-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(traceback.format_exc())
        return f

    def summary(self, report: Path | None) -> str:
        lines = [f"study {self.spec.name} is INCOMPLETE: {len(self.failed)} unit(s) failed"]
        for f in self.failed:
            lines.append(f"  {f}")
            lines += [f"    trial {x['trial']}: {x['error']} -> {x['error_file']}" for x in f.failures]
        lines.append(
            "  finished work is kept; fix the cause and run `leader study run` again"
            + (f"; partial report: {report / 'index.html'}" if report else "")
        )
        return "\n".join(lines)


def run_study(
    path: str | Path,
    address: str | None = None,
    storage_path: str | None = None,
    echo=print,
    dashboard: bool = False,
    sets: list[str] | None = None,
) -> Path:
    """Validate, take the study's driver lock (a dead owner's lock is taken over), connect to
    Ray (local when no address / RAY_ADDRESS), run every unit that is missing or out of date.
    `dashboard` starts a local Ray's dashboard (127.0.0.1 only) so progress can be watched, and
    gives Ray Train the state API it polls. Raises StudyIncomplete (non-zero exit) when a unit failed."""
    from leader.ray_utils import cluster_address, ensure_ray
    from leader.storage import check_study_storage, nodes_see_folder
    from leader.study.lock import StudyLock
    from leader.study.summary import summary_lines

    spec = with_sets(load_study(path), sets) if sets else load_study(path)  # --set: over the file
    raw = expand_env(str(storage_path or spec.storage_path))
    source = "--storage-path" if storage_path else f"{path}: storage_path"
    clustered = cluster_address(address) is not None
    check_study_storage(raw, clustered=clustered, source=source)  # before Ray starts: no work, no wait
    study_dir = spec.study_dir(storage_path)
    ray = ensure_ray(address, dashboard=dashboard)
    if clustered:
        nodes_see_folder(study_dir, source=source)
    study_dir.mkdir(parents=True, exist_ok=True)
    with StudyLock(study_dir, echo=echo):
        write_text(study_dir / "spec.yaml", resolved_yaml(spec))
        write_text(study_dir / "overrides.json", json.dumps(list(sets or [])))  # the report lists them
        url = ray._private.worker.get_dashboard_url() if dashboard and cluster_address(address) is None else None
        if url:
            echo(f"Ray dashboard: http://{url} (this machine only; token in ~/.ray/auth_token)")
        report = StudyRunner(spec, study_dir, echo=echo).run()
    echo(f"study finished: {study_dir}")
    for line in summary_lines(study_dir):
        echo(f"  {line}")
    if report:
        echo(f"report: {report / 'index.html'}")
    return study_dir
