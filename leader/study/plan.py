"""`leader study plan`: what a run would do, unit by unit, before cluster hours are spent.
Each unit is `reuse`, `run`, `extend` (a sweep given more trials) or `re-run because <field>
changed (old -> new)`, with its trial counts and a rough cost from recorded seconds of the
same or a similar unit. Reads state.json and the keys from leader.study.keys (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path

from leader.study.keys import UnitKey, study_keys, verify_outputs, why
from leader.study.spec import StudySpec


def _seconds(stages: dict, uk: UnitKey) -> tuple[float | None, int]:
    """(recorded seconds, trials they covered) of this unit, else of a unit of the same stage."""

    def ran(out: dict) -> int:
        n = out.get("trials_run", out.get("trials", 0))
        return int(n) if isinstance(n, (int, float)) else len(n or {})

    own = stages.get(uk.name, {}).get("outputs", {})
    if "seconds" in own:
        return float(own["seconds"]), ran(own)
    for name, st in stages.items():
        if name.split("/")[0] == uk.stage and "seconds" in st.get("outputs", {}):
            return float(st["outputs"]["seconds"]), ran(st["outputs"])
    return None, 0


def _grid_action(uk: UnitKey, old: dict, study_dir: Path) -> tuple[str, int]:
    trials = old.get("outputs", {}).get("trials", {}) if old.get("key") == uk.key else {}
    kept = [tk for tk in uk.trial_keys if tk in trials and not verify_outputs(study_dir, trials[tk].get("files", {}))]
    new = len(uk.trial_keys) - len(kept)
    reason = why(old, uk)
    if old.get("key") == uk.key and (reason is None or kept):
        return ("reuse" if not new else f"run {new} new or unfinished trial(s), {len(kept)} kept"), new
    return reason or "run", new


def _sweep_action(uk: UnitKey, old: dict, study_dir: Path) -> tuple[str, int]:
    reason = why(old, uk)
    if old.get("key") != uk.key:
        return reason or "run", uk.trials
    exps = [e for e in old.get("outputs", {}).get("experiments", []) if e.get("done")]
    have = sum(e["n"] for e in exps) if not verify_outputs(study_dir, old.get("files", {})) else 0
    if have == uk.trials and reason is None:
        return "reuse", 0
    if 0 < have < uk.trials:
        return (
            f"extend: {uk.trials - have} new trial(s), {have} kept (search.num_samples {have} -> {uk.trials})",
            uk.trials - have,
        )
    if have > uk.trials:
        return f"re-run because search.num_samples changed ({have} -> {uk.trials})", uk.trials
    return reason or "run", uk.trials


def plan(spec: StudySpec, study_dir: Path) -> list[dict]:
    """One row per unit: name, action, trials to run, estimated seconds (None if unknown)."""
    sp = study_dir / "state.json"
    stages = json.loads(sp.read_text())["stages"] if sp.is_file() else {}
    rows = []
    for name, uk in study_keys(spec).items():
        old = stages.get(name, {})
        if uk.stage == "grid":
            action, todo = _grid_action(uk, old, study_dir)
        elif uk.stage == "sweep":
            action, todo = _sweep_action(uk, old, study_dir)
        else:
            action, todo = why(old, uk) or "reuse", uk.trials
            if action == "reuse" and (bad := verify_outputs(study_dir, old.get("files", {}))):
                action = f"re-run because its output {bad}"
        secs, n = _seconds(stages, uk)
        est = None if action == "reuse" else (secs * todo / n if secs is not None and n and todo else secs)
        rows.append(
            {
                "unit": name,
                "action": action,
                "trials": uk.trials,
                "to_run": todo if action != "reuse" else 0,
                "est_s": est,
            }
        )
    return rows


def format_plan(rows: list[dict], study_dir: Path) -> str:
    lines = [f"plan against {study_dir}"]
    for r in rows:
        tr = f"{r['to_run']}/{r['trials']} trials" if r["trials"] else ""
        est = f"~{r['est_s']:.0f} s" if r["est_s"] is not None else ("?" if r["action"] != "reuse" else "")
        lines.append(f"  {r['unit']:<34} {tr:<14} {est:>8}  {r['action']}")
    todo = [r for r in rows if r["action"] != "reuse"]
    known = sum(r["est_s"] or 0 for r in todo)
    unknown = sum(1 for r in todo if r["est_s"] is None)
    lines.append(
        f"{len(rows) - len(todo)} unit(s) reused, {len(todo)} to run; "
        f"{sum(r['to_run'] for r in todo)} trial(s); estimated >= {known:.0f} s of recorded work"
        + (f" plus {unknown} unit(s) never timed" if unknown else "")
    )
    return "\n".join(lines)
