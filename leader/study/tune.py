"""Ray Tune + Optuna + MLflow as the study sets them up: one recipe (`tuner`) for the student sweep
and every tuned baseline, so each row had an equal chance; `fit` restores the interrupted
experiment of the same work instead of starting it again, and fails the unit when more trials
failed than `max_failed_trials`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from leader.security import trial_dirname
from leader.study.context import StageFailed, Study


def failures(grid) -> list[dict]:
    """Errored Tune trials with the path of the traceback Tune wrote for each."""
    out = []
    for r in grid:
        if r.error is not None:
            err = Path(r.path) / "error.txt" if r.path else None
            out.append(
                {
                    "trial": Path(r.path).name if r.path else "?",
                    "error": str(r.error).splitlines()[0][:200] if str(r.error) else type(r.error).__name__,
                    "error_file": str(err) if err and err.is_file() else str(r.path),
                }
            )
    return out


def restorable(path: Path) -> bool:
    """A Tune experiment a killed driver left with enough state to continue: Tune's own check,
    plus the run state and (for a searcher) its state, which a kill in the first seconds can
    leave unwritten."""
    from ray import tune

    if not path.exists() or not tune.Tuner.can_restore(str(path)):
        return False
    if not list(path.glob("experiment_state-*.json")):
        return False
    return (
        bool(list(path.glob("searcher-state-*.pkl")))
        or not list(path.glob("search_gen_state-*.json"))
        or bool(list(path.glob("basic-variant-state-*.json")))
    )


def fit(study: Study, unit: str, name: str, trainable, make_tuner, check: bool = True):
    """Fit, or restore the experiment of this exact work (its name carries the unit's key)
    when a killed or failed run left it; errored trials run again, finished ones do not.
    More failed trials than `max_failed_trials` fail the unit, naming each traceback file."""
    from ray import tune

    path = study.dir / "tune" / name
    grid = None
    if restorable(path):
        study.echo(f"  restoring interrupted Tune experiment {path}")
        try:
            grid = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True).fit()
        except Exception as e:  # noqa: BLE001  (state written mid-kill: start the experiment afresh)
            study.echo(f"  could not restore {path.name} ({type(e).__name__}: {str(e)[:120]}); starting it afresh")
    if grid is None:
        shutil.rmtree(path, ignore_errors=True)
        grid = make_tuner().fit()
    if check:
        check_failures(study, unit, grid)
    return grid


def check_failures(study: Study, unit: str, grid) -> None:
    fails = failures(grid)
    tol = study.spec.max_failed_trials
    if fails and (len(fails) > tol or len(fails) == len(grid)):
        lines = "; ".join(f"{f['trial']}: {f['error']} ({f['error_file']})" for f in fails[:5])
        raise StageFailed(unit, f"{len(fails)} of {len(grid)} trials failed (max_failed_trials {tol}): {lines}", fails)


def run_config(study: Study, name: str):
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=str(study.dir / "tune"),
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=1),
        callbacks=tracking_callbacks(study, name),
    )


def tracking_callbacks(study: Study, experiment: str) -> list:
    """`tracking: mlflow`: Ray's own MLflow logger, one MLflow experiment per Tune experiment."""
    if study.spec.tracking != "mlflow":
        return []
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    # MLflow 3 refuses new file stores: a sqlite file in the study folder
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{study.dir / 'mlflow.db'}"
    return [
        MLflowLoggerCallback(tracking_uri=uri, experiment_name=f"{study.spec.name}-{experiment}", save_artifact=False)
    ]


def tuner(
    study: Study,
    trainable,
    dists: dict,
    name: str,
    max_t: int,
    num_samples: int | None = None,
    prior: tuple[list, list] | None = None,
):
    """Tune + Optuna + the study's scheduler over `dists` (study-schema distributions)."""
    from ray import tune

    sp = study.spec.search
    return tune.Tuner(
        trainable,
        param_space={k: tune_dist(d) for k, d in dists.items()},
        tune_config=tune.TuneConfig(
            metric=sp.metric,
            mode=sp.mode,
            search_alg=searcher(study, name, prior),
            scheduler=scheduler(study, max_t),
            num_samples=num_samples or sp.num_samples,
            trial_dirname_creator=trial_dirname,
            reuse_actors=True,
        ),
        run_config=run_config(study, name),
    )


def grid_tuner(study: Study, trainable, param_space: dict, name: str):
    """A grid of fixed rows (ablation / sensitivity), no searcher, as many at once as a sweep."""
    from ray import tune

    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=study.spec.search.max_concurrent,
            trial_dirname_creator=trial_dirname,
            reuse_actors=True,
        ),
        run_config=run_config(study, name),
    )


def searcher(study: Study, name: str, prior: tuple[list, list] | None):
    """Optuna (TPE or random), kept in the study's RDB storage; `prior` (configs, values) tells
    the sampler about trials an earlier run finished."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    s, sp = study.spec, study.spec.search
    # an extension draws from its own seeded stream: the sampler's first draws are the trials it keeps
    seed = sp.seed + (len(prior[0]) if prior else 0)
    sampler = optuna.samplers.TPESampler(seed=seed) if sp.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    storage = optuna.storages.RDBStorage(storage_url(study)) if sp.storage else None
    points, rewards = prior or (None, None)
    alg = OptunaSearch(
        metric=sp.metric,
        mode=sp.mode,
        sampler=sampler,
        storage=storage,
        study_name=f"{s.name}-{name}" if storage else None,
        points_to_evaluate=points or None,
        evaluated_rewards=rewards or None,
    )
    return ConcurrencyLimiter(alg, max_concurrent=sp.max_concurrent)


def storage_url(study: Study) -> str:
    """search.storage with a relative sqlite path resolved inside the study folder."""
    url = study.spec.search.storage
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return url.replace("sqlite:///", f"sqlite:///{study.dir}/", 1)
    return url


def scheduler(study: Study, max_t: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    sch = study.spec.search.scheduler
    if sch.type != "asha":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_t,
        grace_period=min(sch.grace_period, max_t),
        reduction_factor=sch.reduction_factor,
    )


def tune_dist(d):
    from ray import tune

    if d.type == "uniform":
        return tune.uniform(d.low, d.high)
    if d.type == "loguniform":
        return tune.loguniform(d.low, d.high)
    if d.type == "int":
        return tune.lograndint(d.low, d.high + 1) if d.log else tune.randint(d.low, d.high + 1)
    return tune.choice(d.values)


def registry_space(space: dict) -> dict:
    """The baseline registry's tuple-style search space as the study schema's distributions."""
    from leader.study.space import Choice, LogUniform, Uniform

    out = {}
    for k, v in space.items():
        if v[0] == "choice":
            out[k] = Choice(type="choice", values=list(v[1]))
        else:
            out[k] = (LogUniform if v[0] == "loguniform" else Uniform)(type=v[0], low=v[1], high=v[2])
    return out


def student_trainable(study: Study, ds, feat_dir: Path | None, grid: bool):
    """Every trial of a stage asks for the same resources, so Tune reuses its actors
    (reuse_actors=True): a new trial does not pay for a process start and the torch/pandas
    imports again, which was most of Tune's per-trial overhead on short student trainings."""
    from functools import partial

    from ray import tune

    from leader.features.actor import fetch_features
    from leader.student.train import student_trial

    s = study.spec
    overrides = {v: s.ablations.overrides(v) for v in dict.fromkeys(["full", *s.ablations.variants])}
    fn = tune.with_parameters(
        student_trial,
        ds=ds,
        load_features=partial(fetch_features, str(feat_dir)) if feat_dir else None,  # zero-copy from the store
        base=s.student_params() if not grid else None,
        evaluation=s.evaluation.model_dump() if grid else None,
        overrides=overrides if grid else None,
        cpus=s.resources.cpu,
    )
    return tune.with_resources(fn, {"cpu": s.resources.cpu, "gpu": s.resources.gpu})
