"""A sweep's trial rows (results/optuna_trials.parquet) as an Optuna study: in memory for the
report's history and importance figures (Optuna's own evaluators, not re-implemented), or
written to an RDB storage (the study writes `<study>/optuna.db` for `optuna-dashboard`)."""

from __future__ import annotations

import contextlib
import math

import optuna
import pandas as pd


def rebuild_study(
    trials: pd.DataFrame, direction: str = "maximize", storage: str | None = None, name: str | None = None
) -> optuna.Study:
    """An optuna Study from stored trial rows (param_<name> columns): in memory for the report (so
    upstream importance evaluators are used, not re-implemented), or written to `storage`."""
    if storage is not None:  # a re-export replaces the study of the same name
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(direction=direction, storage=storage, study_name=name)
    pcols = [c for c in trials.columns if c.startswith("param_")]
    dists = {}
    for c in pcols:
        col = trials[c].dropna()
        name = c[len("param_") :]
        if col.empty or col.astype(str).nunique() < 2:  # fixed config values are not searched parameters
            continue
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            dists[name] = optuna.distributions.CategoricalDistribution(sorted(map(str, col.unique())))
        elif pd.api.types.is_integer_dtype(col):
            dists[name] = optuna.distributions.IntDistribution(int(col.min()), int(col.max()))
        else:
            lo, hi = float(col.min()), float(col.max())
            log = lo > 0 and hi / lo >= 100
            dists[name] = optuna.distributions.FloatDistribution(lo, hi, log=log)
    for _, r in trials.sort_values("trial_id").iterrows():
        state = str(r["state"]).upper().split(".")[-1]
        state = "FAIL" if state in ("ERROR", "FAILED", "FAIL") else state  # Ray Tune says ERROR
        if state not in ("COMPLETE", "PRUNED", "FAIL"):
            continue
        params, pd_ = {}, {}
        for name, dist in dists.items():
            v = r[f"param_{name}"]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                v = str(v)
            elif isinstance(dist, optuna.distributions.IntDistribution):
                v = int(v)
            else:
                v = float(v)
            params[name], pd_[name] = v, dist
        value = r["value"]
        ok = state == "COMPLETE" and value == value
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE
                if ok
                else optuna.trial.TrialState["PRUNED" if state == "PRUNED" else "FAIL"],
                value=float(value) if ok else None,
                params=params,
                distributions=pd_,
                user_attrs={"trial_id": str(r["trial_id"])},
            )
        )
    return study
