"""The `grid/<dataset>/<backbone>` unit: every ablation variant and sensitivity weight, for every
seed, on the sweep's best config. Each row is its own trial key: only rows without a verified
result run (a new variant or seed runs alone; a removed seed is left out of the results), and
finished rows are recorded as they come back, so a killed grid keeps what finished."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from leader.atomic import replace_folder
from leader.study import tune as T
from leader.study.context import StageFailed, Study
from leader.study.keys import digest, hash_outputs, verify_outputs
from leader.study.state import write_frame
from leader.study.units import Unit


def run(study: Study, u: Unit) -> dict:
    old = study.state.get(u.name)
    done = dict(old.get("outputs", {}).get("trials", {})) if old.get("key") == u.key else {}
    done = {tk: t for tk, t in done.items() if not verify_outputs(study.dir, t.get("files", {}))}
    pending = {tk: row for tk, row in u.trial_keys.items() if tk not in done}
    st, reason = study.state.reusable(u)
    if st is not None and not pending:
        study.echo(f"[reuse] {u.name}")
        return st.get("outputs", {})
    if old.get("key") == u.key and done:
        reason = f"run {len(pending)} new or unfinished trial(s), {len(u.trial_keys) - len(pending)} kept"
    with study.state.running(u, reason) as t0:
        study.state.mark(u.name, "running", outputs={"trials": done})
        for _ in range(3):  # a restored experiment may never have generated some rows: run those anew
            missing = {tk: row for tk, row in pending.items() if tk not in done}
            if not missing:
                break
            _fit(study, u, missing, done)
        if missing := [tk for tk in u.trial_keys if tk not in done]:
            raise StageFailed(u.name, f"{len(missing)} trial(s) never ran: {missing[:3]}")
        parts = [p for tk in u.trial_keys for p in done[tk]["parts"]]
    model_dir = _model_dir(study, u)
    out = {
        "trials": done,
        "trials_run": len(pending),
        "parts": parts,
        "model_dir": str(model_dir) if model_dir.is_dir() else None,
        "_files": parts + ([model_dir] if model_dir.is_dir() else []),
    }
    return study.state.finish(u, out, t0)


def _model_dir(study: Study, u: Unit) -> Path:
    return study.dir / "models" / u.dataset / u.backbone


def _fit(study: Study, u: Unit, pending: dict, done: dict) -> None:
    from ray import tune

    ds, feat_dir, best = study.need(u, "data"), study.need(u, "features"), study.need(u, "sweep")["best_config"]
    trainable = T.student_trainable(study, ds, feat_dir, grid=True)
    exp = f"grid-{ds.name}-{u.backbone}-{digest(sorted(pending), 8)}"
    rows = [{**row, "tk": tk} for tk, row in pending.items()]
    space = {**study.spec.student_params(), **best, "run": tune.grid_search(rows)}
    grid = T.fit(study, u.name, exp, trainable, lambda: T.grid_tuner(study, trainable, space, exp), check=False)
    counts = dict(study.state.get(u.name).get("trial_completions", {}))
    for r in grid:
        if r.error is None and r.checkpoint is not None and r.config["run"]["tk"] in pending:
            tk = r.config["run"]["tk"]
            done[tk] = _trial(study, u, ds, r)
            counts[tk] = counts.get(tk, 0) + 1
    study.state.mark(u.name, "running", outputs={"trials": done}, trial_completions=counts)
    T.check_failures(study, u.name, grid)  # after keeping what finished


def _trial(study: Study, u: Unit, ds, r) -> dict:
    """One finished ablation/sensitivity trial -> its bootstrap and per-sample parts."""
    run_, tk, bb = r.config["run"], r.config["run"]["tk"], u.backbone
    is_best = run_["variant"] == "full" and not run_["param"]
    with r.checkpoint.as_directory() as d:
        boot = pd.read_parquet(Path(d) / "bootstrap.parquet")
        per = pd.read_parquet(Path(d) / "persample.parquet")
        if is_best and run_["seed"] == study.spec.seeds[0]:
            replace_folder(_model_dir(study, u), lambda tmp: shutil.copytree(Path(d) / "model", tmp))
    frames = []
    for st in [run_["stage"]] + (["best"] if is_best else []):
        b = boot.copy()
        for k, v in {
            "run_id": f"{st}/{ds.name}/{bb}/{run_['variant']}/{run_['param']}{run_['value'] or ''}/s{run_['seed']}",
            "stage": st,
            "dataset": ds.name,
            "backbone": bb,
            "model": "LEADER(S) released" if st == "released" else "LEADER(S)",
            "variant": run_["variant"],
            "param": run_["param"],
            "param_value": float(run_["value"]) if run_["value"] is not None else float("nan"),
            "seed": int(run_["seed"]),
        }.items():
            b[k] = v
            if st != "best":
                per[k] = v
        frames.append(b)
    bfile, pfile = study.parts / f"grid-{tk}.boot.parquet", study.dir / "persample" / f"grid-{tk}.parquet"
    write_frame(pd.concat(frames, ignore_index=True), bfile)
    write_frame(per, pfile)
    parts = [str(bfile.relative_to(study.dir)), str(pfile.relative_to(study.dir))]
    return {
        "parts": parts,
        "files": hash_outputs(study.dir, parts),
        "row": {k: v for k, v in run_.items() if k not in ("tk", "params")},
    }
