"""Run a study: data -> teacher -> features -> baselines -> sweep -> ablations/sensitivity ->
efficiency -> results -> report. Each unit's identity comes from leader.study.keys; a unit is
reused only when its key matches and its recorded outputs still have their sha256, so a re-run
does exactly the work that is missing or out of date. Interrupted Tune experiments are restored
(`Tuner.restore(..., resume_errored=True)`); a failed unit stops the study loudly, and the report
is still written for what finished, saying first that the study is incomplete."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

from leader.errors import CheckpointError, ConfigError, LeaderError
from leader.study.keys import UnitKey, digest, hash_outputs, study_keys, verify_outputs, why
from leader.study.spec import StudySpec, expand_env, load_study, resolved_yaml
from leader.study.state import StudyState, write_frame, write_text
from leader.study.trainable import student_trial, trial_dirname

log = logging.getLogger("leader.study")
BASELINE_LABELS = {
    "prior": "Prior",
    "cooccurrence": "CoOccurrence",
    "logreg": "LogReg",
    "retain": "RETAIN",
    "gamenet": "GAMENet",
    "micron": "MICRON",
    "cognet": "COGNet",
}
KEYS = ["run_id", "stage", "dataset", "backbone", "model", "variant", "param", "param_value", "seed"]


class StageFailed(LeaderError):
    """A unit that did not finish (a trial over the tolerance, an exception): the study stops."""

    def __init__(self, unit: str, message: str, failures: list[dict] | None = None):
        super().__init__(f"{unit}: {message}")
        self.unit, self.failures = unit, failures or []


class StudyIncomplete(LeaderError):
    """Raised at the end of a run with failed units; the message is the summary the user reads."""


def _part_name(key: str) -> str:
    return key.replace("/", "__")


def _failures(grid) -> list[dict]:
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


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


FINISHED = ("COMPLETE", "PRUNED")  # a sweep trial with a result (pruned: stopped by the scheduler)


def _trial_state(history: pd.DataFrame, params: dict, max_t: int) -> str:
    """PRUNED when the scheduler stopped the trial: it ran fewer than its epochs (or the search's
    max_t) and its own early stopping (`patience` epochs without a better val_prauc) had not fired."""
    n, epochs, patience = len(history), min(int(params["epochs"]), max_t), int(params["patience"])
    if n >= epochs or "val_prauc" not in history or history["val_prauc"].isna().all():
        return "COMPLETE"
    since_best = n - 1 - int(np.nanargmax(history["val_prauc"].to_numpy()))
    return "COMPLETE" if since_best >= patience else "PRUNED"


class StudyRunner:
    def __init__(self, spec: StudySpec, study_dir: Path, echo=print):
        self.spec, self.dir, self.echo = spec, study_dir, echo
        self.state = StudyState(study_dir)
        self.keys: dict[str, UnitKey] = study_keys(spec)
        self.parts = study_dir / "results" / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self.dataset_stats: dict[str, dict] = {}
        self.datasets: dict = {}  # name -> EHRDataset of this run (paired tests need the test split)
        self.failed: list[StageFailed] = []

    # ------------------------------------------------------------------ units
    def _reusable(self, uk: UnitKey) -> tuple[dict | None, str]:
        """(recorded entry, '') when `uk` can be reused; else (None, why it must run)."""
        st = self.state.get(uk.name)
        reason = why(st, uk)
        if reason is None:
            bad = verify_outputs(self.dir, st.get("files", {}))
            if bad is None:
                return st, ""
            reason = f"re-run because its output {bad}"
        return None, reason

    def _begin(self, uk: UnitKey, reason: str) -> None:
        self.echo(f"[run ] {uk.name}: {reason}")
        self.state.mark(
            uk.name,
            "running",
            key=uk.key,
            config=uk.config,
            inputs=uk.inputs,
            code=uk.code,
            files={},
            error=None,
            failures=[],
        )

    def _finish(self, uk: UnitKey, out: dict, t0: float, ident: str | None = None) -> dict:
        """Record a finished unit: outputs, the sha256 of its files, and how often this exact
        work (`ident`, default its key) completed (the chaos check reads it: once, always)."""
        paths = out.pop("_files", [])
        done = dict(self.state.get(uk.name).get("completions", {}))
        ident = ident or uk.key
        done[ident] = done.get(ident, 0) + 1
        self.state.mark(
            uk.name,
            "done",
            files=hash_outputs(self.dir, paths),
            completions=done,
            outputs={**out, "seconds": round(time.time() - t0, 2)},
        )
        self.echo(f"[done] {uk.name} in {_duration(time.time() - t0)}")
        return self.state.get(uk.name)["outputs"]

    def _fail(self, name: str, e: Exception) -> None:
        failures = getattr(e, "failures", [])
        self.state.mark(name, "failed", error=f"{type(e).__name__}: {e}"[:1000], failures=failures)

    def _stage(self, name: str, fn):
        """Reuse the unit `name` or run `fn` (which returns outputs, '_files' to hash)."""
        uk = self.keys[name]
        st, reason = self._reusable(uk)
        if st is not None:
            self.echo(f"[reuse] {name}")
            return st.get("outputs", {})
        self._begin(uk, reason)
        t0 = time.time()
        try:
            out = fn() or {}
        except Exception as e:
            self._fail(name, e)
            raise
        return self._finish(uk, out, t0)

    def _write_boot(self, key: str, boot: pd.DataFrame, **keys) -> str:
        for k, v in {
            "run_id": key,
            "variant": "full",
            "param": "",
            "param_value": float("nan"),
            "seed": 0,
            "backbone": "",
            **keys,
        }.items():
            boot[k] = v
        path = self.parts / f"{_part_name(key)}.boot.parquet"
        write_frame(boot, path)
        return str(path.relative_to(self.dir))

    # ------------------------------------------------------------------ stages
    def data(self, d):
        from leader.data.cache import PrepareOptions, prepare
        from leader.paths import find_demo_root

        root = expand_env(d.root) if d.root else None
        if d.source == "demo" and root is None:
            demo = find_demo_root()
            if demo is None:
                if d.optional:
                    self.echo(f"  dataset {d.name!r}: MIMIC-III demo not found on this machine; skipped (optional)")
                    return None
                raise ConfigError(
                    f"dataset {d.name!r}: the MIMIC-III demo was not found (set root: or LEADER_DEMO_ROOT)"
                )
            root = str(demo)
        if root is not None and not Path(root).is_dir():
            if d.optional:
                self.echo(f"  dataset {d.name!r}: {root} not found; skipped (optional)")
                return None
            raise ConfigError(f"dataset {d.name!r}: field 'root': no such folder {root}")
        uk = self.keys[f"data/{d.name}"]
        st, reason = self._reusable(uk)
        t0 = time.time()
        ds = prepare(d.source, root, PrepareOptions(**d.prepare.model_dump()))  # the data cache: fast once prepared
        ds.name = d.name
        from leader.data.stats import dataset_stats

        # cohort-level aggregates only (Table VI); nested details stay out of the report
        self.dataset_stats[d.name] = {
            k: v
            for k, v in dataset_stats(ds).items()
            if not isinstance(v, (dict, list)) and k not in ("name", "fingerprint")
        }
        if st is not None:
            self.echo(f"[reuse] {uk.name}")
        else:
            self._begin(uk, reason)
            self._finish(
                uk, {"fingerprint_ds": ds.fingerprint, "n_samples": int(len(ds.visits)), "n_meds": int(ds.n_meds)}, t0
            )
        return ds

    def teacher(self, ds, bb: str) -> Path:
        t = self.spec.teacher
        for k in (f"{ds.name}/{bb}", bb):
            if k in t.checkpoints:
                p = Path(t.checkpoints[k]).expanduser()
                if not p.is_dir():
                    raise CheckpointError(f"teacher.checkpoints[{k!r}]: no such folder {p}")
                return p
        out = self.dir / "teacher" / ds.name / bb
        name = f"teacher/{ds.name}/{bb}"

        def run():
            from leader.train.teacher import TeacherTrainConfig, train_teacher

            tr = self.spec.teacher_resources
            opts = {**t.options.model_dump(exclude_unset=True), "backbone": bb}
            opts.setdefault("workers", tr.num_workers)
            opts.setdefault("use_gpu", tr.gpu_per_worker > 0)
            opts.setdefault("cpus_per_worker", tr.cpu_per_worker)
            # one Ray Train run folder per key: a killed driver resumes the same run from its
            # latest checkpoint, and a changed config never restores another config's run. A run
            # that had finished (its copied output failed verification) is not resumable: train anew.
            storage, run_name = self.dir / "teacher" / "_ray" / ds.name / bb, f"teacher-{self.keys[name].key[:12]}"
            if (storage / run_name / "final").is_dir():
                shutil.rmtree(storage / run_name)
            res = train_teacher(ds, TeacherTrainConfig(**opts), str(storage), name=run_name)
            ck = Path(getattr(res, "checkpoint_dir", res))
            if ck.resolve() != out.resolve():
                tmp = out.with_name(f".{out.name}.tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(ck, tmp)
                shutil.rmtree(out, ignore_errors=True)
                os.replace(tmp, out)
            return {"dir": str(out), "_files": [out]}

        self._stage(name, run)
        return out

    def features(self, ds, bb: str, teacher_dir: Path) -> Path:
        from leader.features.extract import extract_features

        out = self.dir / "features" / ds.name / bb
        kw = _extract_options(self.spec)  # workers / resources / batch: not in the key (same features)
        self._stage(
            f"features/{ds.name}/{bb}",
            lambda: {"dir": str(extract_features(ds, teacher_dir, out, backbone=bb, **kw)), "_files": [out]},
        )
        return out

    def _score(self, key: str, ds, probs, mask=None, seed: int = 0, **keys) -> list[str]:
        """Test bootstrap + per-sample scores of probabilities in test order, written as parts."""
        from leader.study.evaluation import score_test

        ev = self.spec.evaluation
        boot, per = score_test(
            ds,
            probs,
            threshold=self.spec.student.threshold,
            rounds=ev.bootstrap_rounds,
            frac=ev.bootstrap_frac,
            seed=seed,
            mask=mask,
        )
        part = self._write_boot(key, boot, **keys)
        for k, v in {"run_id": key, "variant": "full", "param": "", "seed": seed, "backbone": "", **keys}.items():
            per[k] = v
        pfile = self.dir / "persample" / f"{_part_name(key)}.parquet"
        write_frame(per, pfile)
        return [part, str(pfile.relative_to(self.dir))]

    def baseline(self, ds):
        """The trivial baselines every report shows beside LEADER (fit once on train; same
        split, metrics, bootstrap and groups as the student)."""
        from leader.study.evaluation import align_to_test
        from leader.train.baselines import train_baseline

        for name in self.spec.baselines.trivial:
            key = f"baseline/{ds.name}/{name}"

            def run(name=name, key=key):
                res = train_baseline(ds, name, {}, seed=0)
                probs = align_to_test(ds, res.sample_ids, res.probs)
                parts = self._score(
                    key, ds, probs, stage="baseline", dataset=ds.name, model=BASELINE_LABELS.get(name, name)
                )
                return {
                    "train_s": round(float(res.train_s), 3),
                    "n_params": int(res.n_params),
                    "parts": parts,
                    "_files": parts,
                }

            self._stage(key, run)

    def tuned_baseline(self, ds, name: str, bspec) -> None:
        """A Table III baseline swept exactly like the student (same sampler, scheduler and
        num_samples), selected on validation PRAUC among finished trials, scored once on test."""
        from ray import tune

        from leader.models.baselines import get_baseline
        from leader.study.evaluation import full_probs
        from leader.study.trainable import baseline_trial

        s, info = self.spec, get_baseline(name)
        key = f"baseline/{ds.name}/{name}"
        exp = f"baseline-{ds.name}-{name}-{self.keys[key].key[:8]}"
        space = bspec.space if bspec.space is not None else _registry_space(info.search_space)
        trainable = tune.with_resources(
            tune.with_parameters(baseline_trial, ds=ds, name=name, fixed=dict(bspec.params), cpus=s.resources.cpu),
            {"cpu": s.resources.cpu, "gpu": s.resources.gpu},  # the baselines' trainer uses a GPU it is given
        )
        epochs = int(bspec.params.get("epochs", info.defaults.get("epochs", 1)))

        def run():
            # max_t = epochs + 1: the trial's last report (its test probabilities as a checkpoint) comes after
            # its last epoch; with max_t = epochs ASHA stops every trial that trains all epochs before it
            grid = self._fit(key, exp, trainable, lambda: self._tuner(trainable, space, exp, max_t=epochs + 1))
            done = [r for r in grid if r.error is None and r.checkpoint is not None]
            best = max(done, key=lambda r: float(r.metrics.get("best_val_prauc", -1)))
            with best.checkpoint.as_directory() as d:
                z = np.load(Path(d) / "test_probs.npz")
                probs, mask = full_probs(ds, z["sample_ids"], z["probs"])
            parts = self._score(
                key,
                ds,
                probs,
                mask=None if mask.all() else mask,
                stage="baseline",
                dataset=ds.name,
                model=BASELINE_LABELS.get(name, name),
            )
            return {
                "best_config": {k: (v.item() if hasattr(v, "item") else v) for k, v in best.config.items()},
                "best_val_prauc": float(best.metrics.get("best_val_prauc", float("nan"))),
                "trials": len(grid),
                "n_params": int(best.metrics.get("n_params", 0)),
                "train_s": float(best.metrics.get("train_s", 0)),
                "parts": parts,
                "_files": parts,
            }

        self._stage(key, run)

    def probe(self, ds, bb: str, teacher_dir: Path):
        """The frozen-backbone linear probe (the teacher's LP stage) as a baseline row."""
        from leader.study.evaluation import align_to_test

        f = Path(teacher_dir) / "probe_test.npz"
        key = f"baseline/{ds.name}/probe-{bb}"
        if not f.is_file():
            return

        def run():
            z = np.load(f)
            parts = self._score(
                key,
                ds,
                align_to_test(ds, z["sample_ids"], z["probs"]),
                stage="baseline",
                dataset=ds.name,
                backbone=bb,
                model="Probe",
            )
            return {"parts": parts, "_files": parts}

        self._stage(key, run)

    def teacher_eval(self, ds, bb: str, feat_dir: Path):
        from leader.features.store import load_features

        def run():
            from leader.study.evaluation import test_frame

            feats = load_features(feat_dir)
            _, probs = feats.align(test_frame(ds)["sample_id"].to_numpy(np.int64))
            parts = self._score(
                f"teacher_eval/{ds.name}/{bb}",
                ds,
                probs,
                stage="teacher",
                dataset=ds.name,
                backbone=bb,
                model="LEADER(T)",
            )
            return {"parts": parts, "_files": parts}

        self._stage(f"teacher_eval/{ds.name}/{bb}", run)

    # ------------------------------------------------------------------ Tune
    def _trainable(self, ds, feat_dir: Path | None, grid: bool):
        """Every trial of a stage asks for the same resources, so Tune reuses its actors
        (reuse_actors=True): a new trial does not pay for a process start and the torch/pandas
        imports again, which was most of Tune's per-trial overhead on short student trainings."""
        from ray import tune

        s = self.spec
        overrides = {v: s.ablations.overrides(v) for v in dict.fromkeys(["full", *s.ablations.variants])}
        fn = tune.with_parameters(
            student_trial,
            ds=ds,
            features_path=str(feat_dir) if feat_dir else None,
            base=s.student_params() if not grid else None,
            evaluation=s.evaluation.model_dump() if grid else None,
            overrides=overrides if grid else None,
            cpus=s.resources.cpu,
        )
        return tune.with_resources(fn, {"cpu": s.resources.cpu, "gpu": s.resources.gpu})

    def _fit(self, key: str, name: str, trainable, make_tuner, check: bool = True):
        """Fit, or restore the experiment of this exact work (its name carries the unit's key)
        when a killed or failed run left it; errored trials run again, finished ones do not.
        More failed trials than `max_failed_trials` fail the unit, naming each traceback file."""
        from ray import tune

        path = self.dir / "tune" / name
        grid = None
        if _restorable(path):
            self.echo(f"  restoring interrupted Tune experiment {path}")
            try:
                grid = tune.Tuner.restore(
                    str(path), trainable=trainable, resume_unfinished=True, resume_errored=True
                ).fit()
            except Exception as e:  # noqa: BLE001  (state written mid-kill: start the experiment afresh)
                self.echo(f"  could not restore {path.name} ({type(e).__name__}: {str(e)[:120]}); starting it afresh")
        if grid is None:
            shutil.rmtree(path, ignore_errors=True)
            grid = make_tuner().fit()
        if check:
            self._check(key, grid)
        return grid

    def _check(self, key: str, grid) -> None:
        failures = _failures(grid)
        tol = self.spec.max_failed_trials
        if failures and (len(failures) > tol or len(failures) == len(grid)):
            lines = "; ".join(f"{f['trial']}: {f['error']} ({f['error_file']})" for f in failures[:5])
            raise StageFailed(
                key, f"{len(failures)} of {len(grid)} trials failed (max_failed_trials {tol}): {lines}", failures
            )

    def _run_config(self, name: str):
        from ray import tune

        return tune.RunConfig(
            name=name,
            storage_path=str(self.dir / "tune"),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            callbacks=self._tracking_callbacks(name),
        )

    def _tracking_callbacks(self, experiment: str) -> list:
        """`tracking: mlflow`: Ray's own MLflow logger, one MLflow experiment per Tune experiment."""
        if self.spec.tracking != "mlflow":
            return []
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        # MLflow 3 refuses new file stores: a sqlite file in the study folder
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.dir / 'mlflow.db'}"
        return [
            MLflowLoggerCallback(
                tracking_uri=uri, experiment_name=f"{self.spec.name}-{experiment}", save_artifact=False
            )
        ]

    def _tuner(
        self,
        trainable,
        dists: dict,
        name: str,
        max_t: int,
        num_samples: int | None = None,
        prior: tuple[list, list] | None = None,
    ):
        """Tune + Optuna + the study's scheduler over `dists` (study-schema distributions): one
        recipe for the student sweep and every tuned baseline, so each row had an equal chance."""
        from ray import tune

        sp = self.spec.search
        return tune.Tuner(
            trainable,
            param_space={k: _tune_dist(d) for k, d in dists.items()},
            tune_config=tune.TuneConfig(
                metric=sp.metric,
                mode=sp.mode,
                search_alg=self._searcher(name, prior),
                scheduler=self._scheduler(max_t),
                num_samples=num_samples or sp.num_samples,
                trial_dirname_creator=trial_dirname,
                reuse_actors=True,
            ),
            run_config=self._run_config(name),
        )

    def _searcher(self, name: str, prior: tuple[list, list] | None):
        """Optuna (TPE or random), kept in the study's RDB storage; `prior` (configs, values) tells
        the sampler about trials an earlier run finished."""
        import optuna
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        s, sp = self.spec, self.spec.search
        # an extension draws from its own seeded stream: the sampler's first draws are the trials it keeps
        seed = sp.seed + (len(prior[0]) if prior else 0)
        sampler = (
            optuna.samplers.TPESampler(seed=seed) if sp.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
        )
        storage = optuna.storages.RDBStorage(self._storage_url()) if sp.storage else None
        points, rewards = prior or (None, None)
        searcher = OptunaSearch(
            metric=sp.metric,
            mode=sp.mode,
            sampler=sampler,
            storage=storage,
            study_name=f"{s.name}-{name}" if storage else None,
            points_to_evaluate=points or None,
            evaluated_rewards=rewards or None,
        )
        return ConcurrencyLimiter(searcher, max_concurrent=sp.max_concurrent)

    def _storage_url(self) -> str:
        """search.storage with a relative sqlite path resolved inside the study folder."""
        url = self.spec.search.storage
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return url.replace("sqlite:///", f"sqlite:///{self.dir}/", 1)
        return url

    def _scheduler(self, max_t: int):
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

        sch = self.spec.search.scheduler
        if sch.type != "asha":
            return FIFOScheduler()
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_t,
            grace_period=min(sch.grace_period, max_t),
            reduction_factor=sch.reduction_factor,
        )

    def _sweep_rows(self, grid, ds, bb: str) -> pd.DataFrame:
        s = self.spec
        fails = {f["trial"]: f for f in _failures(grid)}
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
                    "state": "ERROR" if r.error else _trial_state(df, params, s.max_epochs()),
                    "value": float(val),
                    "epochs": int(len(df)),
                    "error_file": fails.get(tid, {}).get("error_file", ""),
                    **{f"param_{k}": v for k, v in r.config.items()},
                }
            )
        return pd.DataFrame(rows)

    def sweep(self, ds, bb: str, feat_dir: Path | None) -> dict:
        """The Optuna sweep. Keyed without num_samples: raising it runs only the new trials (the
        sampler is told the finished ones), keeping every finished trial."""
        s, name = self.spec, f"sweep/{ds.name}/{bb}"
        uk, n = self.keys[name], s.search.num_samples
        st, reason = self._reusable(uk)
        old = self.state.get(name)
        exps = (
            [e for e in old.get("outputs", {}).get("experiments", []) if e.get("done")]
            if old.get("key") == uk.key and not verify_outputs(self.dir, old.get("files", {}))
            else []
        )
        have = sum(e["n"] for e in exps)
        if st is not None and have == n:
            self.echo(f"[reuse] {name}")
            return st["outputs"]
        if have > n:
            exps, have, reason = [], 0, f"re-run because search.num_samples changed ({have} -> {n})"
        elif have:
            reason = f"extend: {n - have} new trial(s), {have} kept (search.num_samples {have} -> {n})"
        self._begin(uk, reason)
        t0 = time.time()
        try:
            for _ in range(3):  # a restored experiment may stop short of its num_samples: add the rest
                exp = f"sweep-{ds.name}-{bb}-{uk.key[:8]}-{have}"
                self.state.mark(
                    name, "running", outputs={"experiments": exps + [{"name": exp, "n": n - have, "done": False}]}
                )
                out = self._sweep_fit(ds, bb, feat_dir, exps, exp, n - have)
                exps, have = out["experiments"], out["trials"]
                if have >= n:
                    break
            if have < n:
                raise StageFailed(name, f"only {have} of {n} trials ran")
        except Exception as e:
            self._fail(name, e)
            raise
        return self._finish(uk, out, t0, ident=f"{uk.key}:{n}")

    def _sweep_fit(self, ds, bb, feat_dir, exps: list, exp: str, need: int) -> dict:
        s, name = self.spec, f"sweep/{ds.name}/{bb}"
        trainable = self._trainable(ds, feat_dir, grid=False)
        prev = pd.concat([pd.read_parquet(self.dir / e["part"]) for e in exps], ignore_index=True) if exps else None
        prior = None
        if prev is not None:
            ok = prev[prev["state"].isin(FINISHED)]
            cols = [f"param_{k}" for k in s.search.space]
            prior = (
                [
                    {k[6:]: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                    for r in ok[cols].to_dict("records")
                ],
                [float(v) for v in ok["value"]],
            )
        grid = self._fit(
            name,
            exp,
            trainable,
            lambda: self._tuner(trainable, s.search.space, exp, max_t=s.max_epochs(), num_samples=need, prior=prior),
        )
        rows = self._sweep_rows(grid, ds, bb)
        part = self.parts / f"{_part_name(name)}.{exp}.optuna.parquet"
        write_frame(rows, part)
        from leader.study.optuna_store import export_sweep

        export_sweep(rows, self.dir, f"{s.name}-{exp}", "maximize" if s.search.mode == "max" else "minimize")
        ok = rows[rows["state"].isin(FINISHED)]
        best = ok.loc[ok["value"].idxmax() if s.search.mode == "max" else ok["value"].idxmin()]
        exps = exps + [
            {
                "name": exp,
                "n": len(rows),
                "done": True,
                "part": str(part.relative_to(self.dir)),
                "best_value": float(best["value"]),
                "best_config": {
                    k: (v.item() if hasattr(v, "item") else v) for k, v in best.items() if k.startswith("param_")
                },
            }
        ]
        pick = (max if s.search.mode == "max" else min)(exps, key=lambda e: e["best_value"])
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

    def grid(self, ds, bb: str, feat_dir: Path | None, best: dict) -> None:
        """Ablation + sensitivity rows on the best config. Each row is its own trial key: only
        rows without a verified result run (a new variant or seed runs alone; a removed seed is
        left out of the results), and finished rows are recorded as they come back."""
        name = f"grid/{ds.name}/{bb}"
        uk = self.keys[name]
        old = self.state.get(name)
        done = dict(old.get("outputs", {}).get("trials", {})) if old.get("key") == uk.key else {}
        done = {tk: t for tk, t in done.items() if not verify_outputs(self.dir, t.get("files", {}))}
        pending = {tk: row for tk, row in uk.trial_keys.items() if tk not in done}
        st, reason = self._reusable(uk)
        if st is not None and not pending:
            self.echo(f"[reuse] {name}")
            return
        if old.get("key") == uk.key and done:
            reason = f"run {len(pending)} new or unfinished trial(s), {len(uk.trial_keys) - len(pending)} kept"
        self._begin(uk, reason)
        self.state.mark(name, "running", outputs={"trials": done})
        t0 = time.time()
        try:
            for _ in range(3):  # a restored experiment may never have generated some rows: run those anew
                missing = {tk: row for tk, row in pending.items() if tk not in done}
                if not missing:
                    break
                self._grid_fit(ds, bb, feat_dir, best, missing, done)
            if missing := [tk for tk in uk.trial_keys if tk not in done]:
                raise StageFailed(name, f"{len(missing)} trial(s) never ran: {missing[:3]}")
            parts = [p for tk in uk.trial_keys for p in done[tk]["parts"]]
        except Exception as e:
            self._fail(name, e)
            raise
        model_dir = self.dir / "models" / ds.name / bb
        self._finish(
            uk,
            {
                "trials": done,
                "trials_run": len(pending),
                "parts": parts,
                "model_dir": str(model_dir) if model_dir.is_dir() else None,
                "_files": parts + ([model_dir] if model_dir.is_dir() else []),
            },
            t0,
        )

    def _grid_fit(self, ds, bb, feat_dir, best: dict, pending: dict, done: dict) -> None:
        from ray import tune

        s, name = self.spec, f"grid/{ds.name}/{bb}"
        trainable = self._trainable(ds, feat_dir, grid=True)
        exp = f"grid-{ds.name}-{bb}-{digest(sorted(pending), 8)}"
        rows = [{**row, "tk": tk} for tk, row in pending.items()]

        def make_tuner():
            return tune.Tuner(
                trainable,
                param_space={**s.student_params(), **best, "run": tune.grid_search(rows)},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=s.search.max_concurrent,
                    trial_dirname_creator=trial_dirname,
                    reuse_actors=True,
                ),
                run_config=self._run_config(exp),
            )

        grid = self._fit(name, exp, trainable, make_tuner, check=False)
        counts = dict(self.state.get(name).get("trial_completions", {}))
        for r in grid:
            if r.error is None and r.checkpoint is not None and r.config["run"]["tk"] in pending:
                tk = r.config["run"]["tk"]
                done[tk] = self._grid_trial(ds, bb, r)
                counts[tk] = counts.get(tk, 0) + 1
        self.state.mark(name, "running", outputs={"trials": done}, trial_completions=counts)
        self._check(name, grid)  # after keeping what finished

    def _grid_trial(self, ds, bb: str, r) -> dict:
        """One finished ablation/sensitivity trial -> its bootstrap and per-sample parts."""
        run_, tk = r.config["run"], r.config["run"]["tk"]
        s = self.spec
        is_best = run_["variant"] == "full" and not run_["param"]
        with r.checkpoint.as_directory() as d:
            boot = pd.read_parquet(Path(d) / "bootstrap.parquet")
            per = pd.read_parquet(Path(d) / "persample.parquet")
            if is_best and run_["seed"] == s.seeds[0]:
                model_dir = self.dir / "models" / ds.name / bb
                shutil.rmtree(model_dir, ignore_errors=True)
                shutil.copytree(Path(d) / "model", model_dir)
        frames = []
        for st in [run_["stage"]] + (["best"] if is_best else []):
            b = boot.copy()
            for k, v in {
                "run_id": f"{st}/{ds.name}/{bb}/{run_['variant']}/{run_['param']}{run_['value'] or ''}/s{run_['seed']}",
                "stage": st,
                "dataset": ds.name,
                "backbone": bb,
                "model": "LEADER(S)",
                "variant": run_["variant"],
                "param": run_["param"],
                "param_value": float(run_["value"]) if run_["value"] is not None else float("nan"),
                "seed": int(run_["seed"]),
            }.items():
                b[k] = v
                if st != "best":
                    per[k] = v
            frames.append(b)
        bfile, pfile = self.parts / f"grid-{tk}.boot.parquet", self.dir / "persample" / f"grid-{tk}.parquet"
        write_frame(pd.concat(frames, ignore_index=True), bfile)
        write_frame(per, pfile)
        parts = [str(bfile.relative_to(self.dir)), str(pfile.relative_to(self.dir))]
        return {
            "parts": parts,
            "files": hash_outputs(self.dir, parts),
            "row": {k: v for k, v in run_.items() if k != "tk"},
        }

    def efficiency(self, ds, bb: str, teacher_dir: Path | None) -> None:
        key = f"efficiency/{ds.name}/{bb}"
        model_dir = self.state.get(f"grid/{ds.name}/{bb}").get("outputs", {}).get("model_dir")

        def run():
            import ray

            sizes = tuple(self.spec.evaluation.latency_batch_sizes)
            # student and teacher in separate fresh processes, on the same device (_measure_options)
            m = _measure.options(**_measure_options(self.spec))
            rows = ray.get(m.remote(ds, model_dir, None, sizes))
            if teacher_dir:
                rows += ray.get(m.remote(ds, None, str(teacher_dir), sizes))
            for r in rows:
                r.update(dataset=ds.name, backbone=bb)
            part = self.parts / f"{_part_name(key)}.eff.parquet"
            write_frame(pd.DataFrame(rows), part)
            rel = str(part.relative_to(self.dir))
            return {"parts": [rel], "_files": [rel]}

        self._stage(key, run)

    # ------------------------------------------------------------------ assembly
    def current_parts(self) -> list[Path]:
        """Result parts of the units (and grid trials) of the study as it is now: a part of a
        removed seed, an older config or an unfinished unit is never assembled."""
        out = []
        for name, uk in self.keys.items():
            st = self.state.get(name)
            if st.get("key") != uk.key:
                continue
            if uk.trial_keys:  # finished trials count even when their stage failed later
                trials = st.get("outputs", {}).get("trials", {})
                out += [p for tk in uk.trial_keys for p in trials.get(tk, {}).get("parts", [])]
            elif st.get("status") == "done":
                out += st.get("outputs", {}).get("parts", [])
        return [self.dir / p for p in dict.fromkeys(out)]

    def collect(self) -> None:
        res = self.dir / "results"
        parts = self.current_parts()

        def frame(suffix: str):
            fs = [pd.read_parquet(p) for p in parts if p.name.endswith(suffix) and p.parent == self.parts]
            return pd.concat(fs, ignore_index=True) if fs else None

        boot, eff, opt = frame(".boot.parquet"), frame(".eff.parquet"), frame(".optuna.parquet")
        for f, df in (("bootstrap.parquet", boot), ("efficiency.parquet", eff), ("optuna_trials.parquet", opt)):
            if df is None:
                (res / f).unlink(missing_ok=True)
        if boot is not None:
            boot["param_value"] = boot["param_value"].astype(float)
            write_frame(boot, res / "bootstrap.parquet")
            m = boot.groupby(KEYS + ["group", "metric"], dropna=False, sort=False)["value"].agg(["mean", "std"])
            write_frame(m.reset_index(), res / "metrics.parquet")
        else:
            (res / "metrics.parquet").unlink(missing_ok=True)
        if eff is not None:
            write_frame(eff, res / "efficiency.parquet")
        if opt is not None:
            write_frame(opt, res / "optuna_trials.parquet")
        self._paired(res, [p for p in parts if p.parent == self.dir / "persample"])
        teacher = self._teacher_frame()
        if teacher is not None:
            write_frame(teacher, res / "teacher.parquet")
        else:
            (res / "teacher.parquet").unlink(missing_ok=True)
        if self.dataset_stats:
            write_text(res / "dataset_stats.json", json.dumps(self.dataset_stats, indent=1, default=str))
        write_text(res / "env.json", json.dumps(environment(), indent=1, default=str))

    def _teacher_frame(self) -> pd.DataFrame | None:
        """How far each trained teacher got (results/teacher.parquet): the report names a teacher
        whose LoRA never beat its linear probe on validation (best_step 0) as that probe."""
        rows = []
        for name, uk in self.keys.items():
            st = self.state.get(name)
            if not name.startswith("teacher/") or st.get("key") != uk.key or st.get("status") != "done":
                continue
            meta = Path(st.get("outputs", {}).get("dir", "")) / "meta.json"
            if not meta.is_file():
                continue
            m = json.loads(meta.read_text()).get("metrics", {})
            _, ds, bb = name.split("/", 2)
            keep = ("best_step", "best_val_prauc", "probe_val_prauc", "precision", "nonfinite_steps")
            rows.append({"dataset": ds, "backbone": bb, "steps": m.get("step"), **{k: m.get(k) for k in keep}})
        return pd.DataFrame(rows) if rows else None

    def _paired(self, res: Path, files: list[Path]) -> None:
        """Paired patient-bootstrap tests behind the report's Findings (aggregates only)."""
        from leader.study.evaluation import index_frame, paired_comparisons, standard_pairs

        (res / "paired.parquet").unlink(missing_ok=True)
        if not files or not self.datasets:
            return
        per = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        out = []
        for name, ds in self.datasets.items():
            for bb in self.spec.backbones():
                pr = paired_comparisons(per[per["dataset"] == name], index_frame(ds), standard_pairs(per, name, bb))
                if not pr.empty:
                    out.append(pr.assign(dataset=name, backbone=bb))
        if out:
            write_frame(pd.concat(out, ignore_index=True), res / "paired.parquet")

    def _run_units(self) -> None:
        s = self.spec
        for d in s.datasets:
            ds = self.data(d)
            if ds is None:
                self.state.mark(f"data/{d.name}", "skipped")
                continue
            self.datasets[d.name] = ds
            self.baseline(ds)
            for name, bspec in s.baselines.tuned.items():
                self.tuned_baseline(ds, name, bspec)
            for bb in s.backbones():
                teacher_dir = feat_dir = None
                if s.teacher is not None:
                    teacher_dir = self.teacher(ds, bb)
                    self.probe(ds, bb, teacher_dir)
                    feat_dir = self.features(ds, bb, teacher_dir)
                    self.teacher_eval(ds, bb, feat_dir)
                best = self.sweep(ds, bb, feat_dir)
                self.grid(ds, bb, feat_dir, best["best_config"])
                self.efficiency(ds, bb, teacher_dir)

    def run(self) -> Path | None:
        """Every unit, then results and the report. A failed unit stops the study; results and
        the report are still written for what finished, and StudyIncomplete is raised."""
        try:
            self._run_units()
        except Exception as e:  # noqa: BLE001  (every failure is reported, then raised as StudyIncomplete)
            if not isinstance(e, StageFailed):
                e = StageFailed(self._running() or "study", f"{type(e).__name__}: {e} (traceback: {self._traceback()})")
            self.failed.append(e)
            self.echo(f"[FAIL] {e}")
        report = None
        try:
            self.collect()
        except Exception as e:  # noqa: BLE001  (a full disk: results are stale, so the report is not rebuilt)
            self.failed.append(StageFailed("results", f"{type(e).__name__}: {e}"))
            self.echo(f"[FAIL] results: {type(e).__name__}: {e}")
            self._flag_old_report()
            raise StudyIncomplete(self.summary(None)) from None
        try:
            report = self.report()
        except Exception as e:  # noqa: BLE001
            self.failed.append(StageFailed("report", f"{type(e).__name__}: {e}"))
            self.echo(f"[FAIL] report: {type(e).__name__}: {e}")
        if self.failed:
            raise StudyIncomplete(self.summary(report))
        return report

    def _flag_old_report(self) -> None:
        """Results could not be written: an earlier report no longer matches the study."""
        out = self.dir / "report"
        try:
            if (out / "index.md").is_file():
                _mark_incomplete(out, "; ".join(str(f) for f in self.failed))
            self.state.mark("report", "incomplete", key="", files={})
        except OSError:
            pass

    def _traceback(self) -> Path:
        import traceback

        f = self.dir / "errors" / f"driver-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(traceback.format_exc())
        return f

    def _running(self) -> str | None:
        return next((k for k, v in self.state.data["stages"].items() if v.get("status") in ("running", "failed")), None)

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

    def report(self) -> Path | None:
        """The report, in the study's own folder. Written for what finished even when a unit
        failed; then its first line says the study is incomplete."""
        if not self.spec.report.enabled:
            return None
        from leader.report import build_report

        out = self.dir / "report"
        if self.failed:
            self.echo("[run ] report (incomplete study)")
            build_report(self.dir, out)
            _mark_incomplete(out, "; ".join(str(f) for f in self.failed))
            self.state.mark("report", "incomplete", key="", files={})
            return out
        self._stage("report", lambda: {"path": str(out), "_files": [build_report(self.dir, out)]})
        return out


def _mark_incomplete(out: Path, why_: str) -> None:
    """First line of index.md / first element of index.html's body: the study is incomplete."""
    import html

    banner = f"INCOMPLETE STUDY: {why_}. Tables and figures show only the units that finished."
    md = out / "index.md"
    if md.is_file():
        write_text(md, f"> **{banner}**\n\n" + md.read_text())
    page = out / "index.html"
    if page.is_file():
        text = page.read_text()
        i = text.find(">", text.find("<body")) + 1 if "<body" in text else 0
        write_text(page, text[:i] + f'<p class="incomplete"><strong>{html.escape(banner)}</strong></p>' + text[i:])


def _restorable(path: Path) -> bool:
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


def _tune_dist(d):
    from ray import tune

    if d.type == "uniform":
        return tune.uniform(d.low, d.high)
    if d.type == "loguniform":
        return tune.loguniform(d.low, d.high)
    if d.type == "int":
        return tune.lograndint(d.low, d.high + 1) if d.log else tune.randint(d.low, d.high + 1)
    return tune.choice(d.values)


def _registry_space(space: dict) -> dict:
    """The registry's tuple-style search space as the study schema's distributions."""
    from leader.study.spec import Choice, LogUniform, Uniform

    out = {}
    for k, v in space.items():
        if v[0] == "choice":
            out[k] = Choice(type="choice", values=list(v[1]))
        else:
            out[k] = (LogUniform if v[0] == "loguniform" else Uniform)(type=v[0], low=v[1], high=v[2])
    return out


def _measure_impl(ds, model_dir, teacher_dir, sizes):
    """Latency per patient (warm, median) at each batch size, and memory from the allocator:
    parameter + buffer bytes plus the peak activation bytes of one forward pass at the largest
    batch (leader.efficiency). Same device and the same test patients for both models."""
    import torch

    from leader.efficiency import latency_ms, model_bytes, peak_activation_bytes

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    ids = ds.samples("test")["sample_id"].to_numpy()[: max(sizes)]
    rows = []
    if model_dir:
        from leader.models.student import encode_dataset
        from leader.train.student import load_student, to_device

        m = load_student(model_dir).model.to(dev).eval()
        enc = encode_dataset(ds, m.cfg)
        pos = {int(v): i for i, v in enumerate(enc.sample_ids)}
        idx = np.array([pos[int(i)] for i in ids])

        def fwd(b):
            batch = to_device(enc.batch(np.resize(idx, b)), dev)  # inputs on the model's device
            return lambda: m(batch)

        rows += _eff_rows("LEADER(S)", m, fwd, sizes, dev, model_bytes, peak_activation_bytes, latency_ms)
    if teacher_dir:
        from leader.models.teacher import load_teacher

        t = load_teacher(teacher_dir, device=dev)
        pool = t.prompts(ds, ids)

        def fwd(b):
            prompts = [pool[i % len(pool)] for i in range(b)]
            return lambda: t.infer(prompts, batch_size=b)

        rows += _eff_rows("LEADER(T)", t.model, fwd, sizes, dev, model_bytes, peak_activation_bytes, latency_ms)
    return rows


def _eff_rows(name, module, fwd, sizes, dev, model_bytes, peak_activation_bytes, latency_ms) -> list[dict]:
    weights = model_bytes(module)
    act = peak_activation_bytes(fwd(max(sizes)), dev)
    return [
        {
            "model": name,
            "latency_ms_per_patient": latency_ms(fwd(b), b, device=dev),  # synchronised on a GPU
            "batch_size": b,
            "device": dev,
            "param_mb": weights / 2**20,
            "peak_activation_mb": act / 2**20,
            "peak_mem_mb": (weights + act) / 2**20,
            "n_params": int(sum(p.numel() for p in module.parameters())),
        }
        for b in sizes
    ]


def _extract_options(spec: StudySpec) -> dict:
    """extract_features' worker settings for a study. With teacher GPUs: one actor per teacher
    worker, each holding {"CPU": cpu_per_worker, "GPU": gpu_per_worker} (Ray then shows it its GPU
    and the actor loads the teacher on cuda). Without: nothing, so extraction keeps its defaults
    (one 1-CPU actor), as local CPU studies always ran. The batch is teacher.options.eval_batch_size
    when the study sets it. None of this is in the features key: it changes where and how fast
    the features are computed, not what they are."""
    tr, kw = spec.teacher_resources, {}
    if tr.gpu_per_worker > 0:
        kw = {"workers": tr.num_workers, "resources_per_worker": {"CPU": tr.cpu_per_worker, "GPU": tr.gpu_per_worker}}
    opts = spec.teacher.options if spec.teacher is not None else None
    if opts is not None and "eval_batch_size" in opts.model_fields_set:
        kw["batch_size"] = opts.eval_batch_size
    return kw


def _measure_options(spec: StudySpec) -> dict:
    """Ray options of the efficiency task. Ray hides every GPU from a task that asks for none, so a
    study with teacher GPUs asks for one (and a teacher worker's CPUs): teacher and student are then
    timed on the GPU the teacher runs on. Otherwise as before: the student trial's CPUs."""
    tr = spec.teacher_resources
    if tr.gpu_per_worker > 0:
        return {"num_cpus": tr.cpu_per_worker, "num_gpus": 1}
    return {"num_cpus": spec.resources.cpu}


def _remote_measure():
    import ray

    return ray.remote(num_cpus=1, max_calls=1)(_measure_impl)


class _Lazy:
    def __getattr__(self, item):
        return getattr(_remote_measure(), item)


_measure = _Lazy()


def environment() -> dict:
    import importlib.metadata as md

    import ray

    versions = {}
    for p in ("torch", "ray", "optuna", "transformers", "deepspeed", "peft", "pandas", "leader-studies"):
        try:
            versions[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    commit = None
    try:
        from leader.paths import repo_root

        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except Exception:
        pass
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        gpu = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "git_commit": commit,
        "cluster_resources": ray.cluster_resources() if ray.is_initialized() else {},
    }


def run_study(
    path: str | Path, address: str | None = None, storage_path: str | None = None, echo=print, dashboard: bool = False
) -> Path:
    """Validate, take the study's driver lock (a dead owner's lock is taken over), connect to
    Ray (local when no address / RAY_ADDRESS), run every unit that is missing or out of date.
    `dashboard` starts a local Ray's dashboard (127.0.0.1 only) so progress can be watched, and
    gives Ray Train the state API it polls. Raises StudyIncomplete (non-zero exit) when a unit failed."""
    from leader.ray_utils import cluster_address, ensure_ray
    from leader.storage import check_study_storage, nodes_see_folder
    from leader.study.lock import StudyLock
    from leader.study.summary import summary_lines

    spec = load_study(path)
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
