"""The `sweep/<dataset>/<backbone>` unit: the Optuna search over the student's space. Keyed without
num_samples: raising it runs only the new trials (the sampler is told the finished ones, and
draws from its own seeded stream), keeping every finished trial; each experiment's trials are a
result part and an Optuna study in <study>/optuna.db."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leader.study import tune as T
from leader.study.context import StageFailed, Study
from leader.study.stages.scoring import part_name
from leader.study.state import write_frame
from leader.study.units import Unit

FINISHED = ("COMPLETE", "PRUNED")  # a sweep trial with a result (pruned: stopped by the scheduler)


def trial_state(history: pd.DataFrame, params: dict, max_t: int) -> str:
    """PRUNED when the scheduler stopped the trial: it ran fewer than its epochs (or the search's
    max_t) and its own early stopping (`patience` epochs without a better val_prauc) had not fired."""
    n, epochs, patience = len(history), min(int(params["epochs"]), max_t), int(params["patience"])
    if n >= epochs or "val_prauc" not in history or history["val_prauc"].isna().all():
        return "COMPLETE"
    since_best = n - 1 - int(np.nanargmax(history["val_prauc"].to_numpy()))
    return "COMPLETE" if since_best >= patience else "PRUNED"


def _rows(study: Study, grid, ds, bb: str) -> pd.DataFrame:
    s = study.spec
    fails = {f["trial"]: f for f in T.failures(grid)}
    rows = []
    for r in grid:
        df = r.metrics_dataframe if r.metrics_dataframe is not None else pd.DataFrame()
        params = {**s.student.model_dump(), **r.config}
        metric = s.search.metric
        val = df[metric].agg("max" if s.search.mode == "max" else "min") if metric in df else np.nan
        tid = Path(r.path).name if r.path else ""
        rows.append(
            {
                "dataset": ds.name,
                "backbone": bb,
                "trial_id": tid,
                "state": "ERROR" if r.error else trial_state(df, params, s.max_epochs()),
                "value": float(val),
                "epochs": int(len(df)),
                "error_file": fails.get(tid, {}).get("error_file", ""),
                **{f"param_{k}": v for k, v in r.config.items()},
            }
        )
    return pd.DataFrame(rows)


def run(study: Study, u: Unit) -> dict:
    n = study.spec.search.num_samples
    st, reason = study.state.reusable(u)
    exps = [e for e in study.state.kept(u).get("outputs", {}).get("experiments", []) if e.get("done")]
    have = sum(e["n"] for e in exps)
    if st is not None and have == n:
        study.echo(f"[reuse] {u.name}")
        return st["outputs"]
    if have > n:
        exps, have, reason = [], 0, f"re-run because search.num_samples changed ({have} -> {n})"
    elif have:
        reason = f"extend: {n - have} new trial(s), {have} kept (search.num_samples {have} -> {n})"
    ds, feat_dir = study.need(u, "data"), study.need(u, "features")
    with study.state.running(u, reason) as t0:
        for _ in range(3):  # a restored experiment may stop short of its num_samples: add the rest
            exp = f"sweep-{ds.name}-{u.backbone}-{u.key[:8]}-{have}"
            study.state.mark(
                u.name, "running", outputs={"experiments": exps + [{"name": exp, "n": n - have, "done": False}]}
            )
            out = _fit(study, u, ds, feat_dir, exps, exp, n - have)
            exps, have = out["experiments"], out["trials"]
            if have >= n:
                break
        if have < n:
            raise StageFailed(u.name, f"only {have} of {n} trials ran")
    return study.state.finish(u, out, t0, ident=f"{u.key}:{n}")


def _prior(study: Study, exps: list) -> tuple[list, list] | None:
    """(configs, values) of the finished trials of earlier experiments, for the sampler."""
    if not exps:
        return None
    prev = pd.concat([pd.read_parquet(study.dir / e["part"]) for e in exps], ignore_index=True)
    ok = prev[prev["state"].isin(FINISHED)]
    cols = [f"param_{k}" for k in study.spec.search.space]
    configs = [
        {k[6:]: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in ok[cols].to_dict("records")
    ]
    return configs, [float(v) for v in ok["value"]]


def export_sweep(trials: pd.DataFrame, study_dir: Path, name: str, direction: str) -> str:
    """Write one sweep's trials to the study's optuna.db as study `name` (for `optuna-dashboard`);
    returns the storage URL."""
    from leader.report.optuna_study import rebuild_study

    url = f"sqlite:///{Path(study_dir) / 'optuna.db'}"
    rebuild_study(trials, direction, storage=url, name=name)
    return url


def _fit(study: Study, u: Unit, ds, feat_dir, exps: list, exp: str, need: int) -> dict:
    s, maxi = study.spec, study.spec.search.mode == "max"
    trainable = T.student_trainable(study, ds, feat_dir, grid=False)
    prior = _prior(study, exps)
    grid = T.fit(
        study,
        u.name,
        exp,
        trainable,
        lambda: T.tuner(study, trainable, s.search.space, exp, max_t=s.max_epochs(), num_samples=need, prior=prior),
    )
    rows = _rows(study, grid, ds, u.backbone)
    part = study.parts / f"{part_name(u.name)}.{exp}.optuna.parquet"
    write_frame(rows, part)
    export_sweep(rows, study.dir, f"{s.name}-{exp}", "maximize" if maxi else "minimize")
    ok = rows[rows["state"].isin(FINISHED)]
    best = ok.loc[ok["value"].idxmax() if maxi else ok["value"].idxmin()]
    exps = exps + [
        {
            "name": exp,
            "n": len(rows),
            "done": True,
            "part": str(part.relative_to(study.dir)),
            "best_value": float(best["value"]),
            "best_config": {
                k: (v.item() if hasattr(v, "item") else v) for k, v in best.items() if k.startswith("param_")
            },
        }
    ]
    pick = (max if maxi else min)(exps, key=lambda e: e["best_value"])
    parts = [e["part"] for e in exps]
    return {
        "best_config": {k[6:]: v for k, v in pick["best_config"].items()},
        "best_value": pick["best_value"],
        "trials": sum(e["n"] for e in exps),
        "trials_run": need,
        "experiments": exps,
        "parts": parts,
        "_files": parts,
    }
