"""Run a study: data -> teacher -> features -> baselines -> sweep -> ablations/sensitivity ->
efficiency -> results -> report. Every stage is keyed by a fingerprint of the spec fields it
depends on and recorded in state.json; an interrupted Tune experiment is restored with
Tuner.restore, so a re-run never repeats finished trials."""

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

from leader.errors import CheckpointError, ConfigError
from leader.study.expand import grid_rows
from leader.study.spec import StudySpec, expand_env, load_study, resolved_yaml
from leader.study.state import StudyState
from leader.study.trainable import student_trial, trial_dirname

log = logging.getLogger("leader.study")
BASELINE_LABELS = {"prior": "Prior", "cooccurrence": "CoOccurrence", "logreg": "LogReg", "retain": "RETAIN",
                   "gamenet": "GAMENet", "micron": "MICRON", "cognet": "COGNet"}
KEYS = ["run_id", "stage", "dataset", "backbone", "model", "variant", "param", "param_value", "seed"]


def _part_name(key: str) -> str:
    return key.replace("/", "__")


class StudyRunner:
    def __init__(self, spec: StudySpec, study_dir: Path, echo=print):
        self.spec, self.dir, self.echo = spec, study_dir, echo
        self.state = StudyState(study_dir)
        self.parts = study_dir / "results" / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self.dataset_stats: dict[str, dict] = {}
        self.datasets: dict = {}  # name -> EHRDataset of this run (paired tests need the test split)

    # ------------------------------------------------------------------ helpers
    def _stage(self, key: str, fp: str, fn):
        if self.state.done(key, fp):
            self.echo(f"[skip] {key} (done)")
            return self.state.get(key).get("outputs", {})
        self.echo(f"[run ] {key}")
        t0 = time.time()
        self.state.mark(key, "running", fp)
        out = fn() or {}
        self.state.mark(key, out.pop("_status", "done"), fp, seconds=round(time.time() - t0, 2), **out)
        return self.state.get(key)["outputs"]

    def _write_boot(self, key: str, boot: pd.DataFrame, **keys) -> None:
        for k, v in {"run_id": key, "variant": "full", "param": "", "param_value": float("nan"), "seed": 0,
                     "backbone": "", **keys}.items():
            boot[k] = v
        boot.to_parquet(self.parts / f"{_part_name(key)}.boot.parquet", index=False)

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
                raise ConfigError(f"dataset {d.name!r}: the MIMIC-III demo was not found (set root: or LEADER_DEMO_ROOT)")
            root = str(demo)
        if root is not None and not Path(root).is_dir():
            if d.optional:
                self.echo(f"  dataset {d.name!r}: {root} not found; skipped (optional)")
                return None
            raise ConfigError(f"dataset {d.name!r}: field 'root': no such folder {root}")
        t0 = time.time()
        ds = prepare(d.source, root, PrepareOptions(**d.prepare.model_dump()))
        ds.name = d.name
        from leader.data.stats import dataset_stats

        # cohort-level aggregates only (Table VI); nested details stay out of the report
        self.dataset_stats[d.name] = {k: v for k, v in dataset_stats(ds).items()
                                      if not isinstance(v, (dict, list)) and k not in ("name", "fingerprint")}
        self.state.mark(f"data/{d.name}", "done", ds.fingerprint, fingerprint_ds=ds.fingerprint,
                        n_samples=int(len(ds.visits)), n_meds=int(ds.n_meds), seconds=round(time.time() - t0, 2))
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
        fp = self.spec.fingerprint("teacher", "teacher_resources") + ds.fingerprint

        def run():
            from leader.train.teacher import TeacherTrainConfig, train_teacher

            tr = self.spec.teacher_resources
            opts = {**t.options.model_dump(exclude_unset=True), "backbone": bb}
            opts.setdefault("workers", tr.num_workers)
            opts.setdefault("use_gpu", tr.gpu_per_worker > 0)
            res = train_teacher(ds, TeacherTrainConfig(**opts), str(self.dir / "teacher" / "_ray" / ds.name / bb))
            ck = Path(getattr(res, "checkpoint_dir", res))
            if ck.resolve() != out.resolve():
                shutil.copytree(ck, out, dirs_exist_ok=True)
            return {"dir": str(out)}

        self._stage(f"teacher/{ds.name}/{bb}", fp, run)
        return out

    def features(self, ds, bb: str, teacher_dir: Path) -> Path:
        from leader.features.extract import extract_features

        out = self.dir / "features" / ds.name / bb
        fp = ds.fingerprint + str(teacher_dir)
        self._stage(f"features/{ds.name}/{bb}", fp,
                    lambda: {"dir": str(extract_features(ds, teacher_dir, out, backbone=bb))})
        return out

    def _score(self, key: str, ds, probs, mask=None, seed: int = 0, **keys) -> None:
        """Test bootstrap + per-sample scores of probabilities in test order, written as parts."""
        from leader.study.evaluation import score_test, write_parquet

        ev = self.spec.evaluation
        thr = self.spec.student.threshold
        boot, per = score_test(ds, probs, threshold=thr, rounds=ev.bootstrap_rounds, frac=ev.bootstrap_frac, seed=seed,
                               mask=mask)
        self._write_boot(key, boot, **keys)
        for k, v in {"run_id": key, "variant": "full", "param": "", "seed": seed, "backbone": "", **keys}.items():
            per[k] = v
        write_parquet(per, self.dir / "persample" / f"{_part_name(key)}.parquet")

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
                self._score(key, ds, probs, stage="baseline", dataset=ds.name, model=BASELINE_LABELS.get(name, name))
                return {"train_s": round(float(res.train_s), 3)}
            self._stage(key, ds.fingerprint + self.spec.fingerprint("evaluation", "baselines"), run)

    def tuned_baseline(self, ds, name: str, bspec) -> None:
        """A Table III baseline swept exactly like the student (same sampler, scheduler and
        num_samples), selected on validation PRAUC among finished trials, scored once on test."""
        from ray import tune

        from leader.models.baselines import get_baseline
        from leader.study.evaluation import full_probs
        from leader.study.trainable import baseline_trial

        s, info = self.spec, get_baseline(name)
        key, exp = f"baseline/{ds.name}/{name}", f"baseline-{ds.name}-{name}"
        space = bspec.space if bspec.space is not None else _registry_space(info.search_space)
        trainable = tune.with_resources(tune.with_parameters(baseline_trial, ds=ds, name=name, fixed=dict(bspec.params),
                                                             cpus=s.resources.cpu), {"cpu": s.resources.cpu})
        epochs = int(bspec.params.get("epochs", info.defaults.get("epochs", 1)))

        def run():
            grid = self._fit(key, exp, trainable, lambda: self._tuner(trainable, space, exp, max_t=epochs))
            done = [r for r in grid if r.error is None and r.checkpoint is not None]
            if not done:
                raise RuntimeError(f"{key}: no trial finished")
            best = max(done, key=lambda r: float(r.metrics.get("best_val_prauc", -1)))
            with best.checkpoint.as_directory() as d:
                z = np.load(Path(d) / "test_probs.npz")
                probs, mask = full_probs(ds, z["sample_ids"], z["probs"])
            self._score(key, ds, probs, mask=None if mask.all() else mask, stage="baseline", dataset=ds.name,
                        model=BASELINE_LABELS.get(name, name))
            return {"best_config": {k: (v.item() if hasattr(v, "item") else v) for k, v in best.config.items()},
                    "best_val_prauc": float(best.metrics.get("best_val_prauc", float("nan"))), "trials": len(grid),
                    "n_params": int(best.metrics.get("n_params", 0)), "train_s": float(best.metrics.get("train_s", 0))}
        self._stage(key, ds.fingerprint + s.fingerprint("search", "baselines", "evaluation", "resources"), run)

    def probe(self, ds, bb: str, teacher_dir: Path):
        """The frozen-backbone linear probe (the teacher's LP stage) as a baseline row."""
        from leader.study.evaluation import align_to_test

        f = Path(teacher_dir) / "probe_test.npz"
        key = f"baseline/{ds.name}/probe-{bb}"
        if not f.is_file():
            return

        def run():
            z = np.load(f)
            self._score(key, ds, align_to_test(ds, z["sample_ids"], z["probs"]), stage="baseline", dataset=ds.name,
                        backbone=bb, model="Probe")
        self._stage(key, ds.fingerprint + str(teacher_dir), run)

    def teacher_eval(self, ds, bb: str, feat_dir: Path):
        from leader.features.store import load_features

        def run():
            from leader.study.evaluation import test_frame

            feats = load_features(feat_dir)
            _, probs = feats.align(test_frame(ds)["sample_id"].to_numpy(np.int64))
            self._score(f"teacher_eval/{ds.name}/{bb}", ds, probs, stage="teacher", dataset=ds.name, backbone=bb,
                        model="LEADER(T)")
        self._stage(f"teacher_eval/{ds.name}/{bb}", ds.fingerprint + str(feat_dir), run)

    # ------------------------------------------------------------------ Tune
    def _trainable(self, ds, feat_dir: Path | None, grid: bool):
        """Every trial of a stage asks for the same resources, so Tune reuses its actors
        (reuse_actors=True): a new trial does not pay for a process start and the torch/pandas
        imports again, which was most of Tune's per-trial overhead on short student trainings."""
        from ray import tune

        s = self.spec
        overrides = {v: s.ablations.overrides(v) for v in dict.fromkeys(["full", *s.ablations.variants])}
        fn = tune.with_parameters(student_trial, ds=ds, features_path=str(feat_dir) if feat_dir else None,
                                  base=s.student_params() if not grid else None,
                                  evaluation=s.evaluation.model_dump() if grid else None,
                                  overrides=overrides if grid else None, cpus=s.resources.cpu)
        return tune.with_resources(fn, {"cpu": s.resources.cpu, "gpu": s.resources.gpu})

    def _fit(self, key: str, name: str, trainable, make_tuner):
        from ray import tune

        path = self.dir / "tune" / name
        st = self.state.get(key)
        if st.get("status") == "running" and tune.Tuner.can_restore(str(path)):
            self.echo(f"  restoring interrupted Tune experiment {path}")
            tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            if path.exists():
                shutil.rmtree(path)
            tuner = make_tuner()
        grid = tuner.fit()
        errors = [r.error for r in grid if r.error is not None]
        if errors and len(errors) == len(grid):
            raise RuntimeError(f"{key}: every trial failed; first error: {errors[0]}")
        return grid

    def _run_config(self, name: str):
        from ray import tune

        return tune.RunConfig(name=name, storage_path=str(self.dir / "tune"), verbose=0,
                              failure_config=tune.FailureConfig(max_failures=1))

    def _tuner(self, trainable, dists: dict, name: str, max_t: int):
        """Tune + Optuna + the study's scheduler over `dists` (study-schema distributions): one
        recipe for the student sweep and every tuned baseline, so each row had an equal chance."""
        import optuna
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        s, sp = self.spec, self.spec.search
        space = {}
        for k, d in dists.items():
            if d.type == "uniform":
                space[k] = tune.uniform(d.low, d.high)
            elif d.type == "loguniform":
                space[k] = tune.loguniform(d.low, d.high)
            elif d.type == "int":
                space[k] = tune.lograndint(d.low, d.high + 1) if d.log else tune.randint(d.low, d.high + 1)
            else:
                space[k] = tune.choice(d.values)
        sampler = (optuna.samplers.TPESampler(seed=sp.seed) if sp.sampler == "tpe"
                   else optuna.samplers.RandomSampler(seed=sp.seed))
        storage = None
        if sp.storage:
            url = sp.storage.replace("sqlite:///", f"sqlite:///{self.dir}/", 1) if sp.storage.startswith("sqlite:///") \
                and not sp.storage.startswith("sqlite:////") else sp.storage
            storage = optuna.storages.RDBStorage(url)
        searcher = OptunaSearch(metric=sp.metric, mode=sp.mode, sampler=sampler, storage=storage,
                                study_name=f"{s.name}-{name}" if storage else None)
        searcher = ConcurrencyLimiter(searcher, max_concurrent=sp.max_concurrent)
        grace = min(sp.scheduler.grace_period, max_t)
        sched = (ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=grace,
                               reduction_factor=sp.scheduler.reduction_factor)
                 if sp.scheduler.type == "asha" else FIFOScheduler())
        return tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(
            metric=sp.metric, mode=sp.mode, search_alg=searcher, scheduler=sched, num_samples=sp.num_samples,
            trial_dirname_creator=trial_dirname, reuse_actors=True), run_config=self._run_config(name))

    def sweep(self, ds, bb: str, feat_dir: Path | None) -> dict:
        from ray import tune

        s = self.spec
        key, name = f"sweep/{ds.name}/{bb}", f"sweep-{ds.name}-{bb}"
        fp = s.fingerprint("search", "student", "resources") + ds.fingerprint + str(feat_dir)
        trainable = self._trainable(ds, feat_dir, grid=False)

        def make_tuner():
            return self._tuner(trainable, s.search.space, name, max_t=s.max_epochs())

        def run():
            grid = self._fit(key, name, trainable, make_tuner)
            best = grid.get_best_result(metric=s.search.metric, mode=s.search.mode, scope="all")
            rows = []
            for r in grid:
                df = r.metrics_dataframe if r.metrics_dataframe is not None else pd.DataFrame()
                val = df[s.search.metric].agg("max" if s.search.mode == "max" else "min") if s.search.metric in df else np.nan
                rows.append({"dataset": ds.name, "backbone": bb, "trial_id": (r.metrics or {}).get("trial_id", r.path and Path(r.path).name),
                             "state": "ERROR" if r.error else "COMPLETE", "value": float(val), "epochs": int(len(df)),
                             **{f"param_{k}": v for k, v in r.config.items()}})
            pd.DataFrame(rows).to_parquet(self.parts / f"{_part_name(key)}.optuna.parquet", index=False)
            params = {k: (v.item() if hasattr(v, "item") else v) for k, v in best.config.items()}
            return {"best_config": params, "best_value": float(best.metrics_dataframe[s.search.metric].agg(s.search.mode)),
                    "trials": len(rows), "experiment": str(self.dir / "tune" / name)}

        return self._stage(key, fp, run)

    def grid(self, ds, bb: str, feat_dir: Path | None, best: dict) -> None:
        from ray import tune

        s = self.spec
        key, name = f"grid/{ds.name}/{bb}", f"grid-{ds.name}-{bb}"
        fp = (s.fingerprint("ablations", "sensitivity", "seeds", "student", "evaluation", "resources")
              + json.dumps(best, sort_keys=True, default=str) + ds.fingerprint)
        trainable = self._trainable(ds, feat_dir, grid=True)
        base = {**s.student_params(), **best}

        def make_tuner():
            return tune.Tuner(trainable, param_space={**base, "run": tune.grid_search(grid_rows(s))},
                              tune_config=tune.TuneConfig(max_concurrent_trials=s.search.max_concurrent,
                                                          trial_dirname_creator=trial_dirname, reuse_actors=True),
                              run_config=self._run_config(name))

        def run():
            grid = self._fit(key, name, trainable, make_tuner)
            parts, model_dir = [], None
            for r in grid:
                if r.error is not None or r.checkpoint is None:
                    self.echo(f"  trial {r.path and Path(r.path).name} failed: {str(r.error)[:200]}")
                    continue
                run_ = r.config["run"]
                with r.checkpoint.as_directory() as d:
                    boot = pd.read_parquet(Path(d) / "bootstrap.parquet")
                    per = pd.read_parquet(Path(d) / "persample.parquet")
                    if run_["variant"] == "full" and not run_["param"] and model_dir is None:
                        model_dir = self.dir / "models" / ds.name / bb
                        shutil.copytree(Path(d) / "model", model_dir, dirs_exist_ok=True)
                stages = ([run_["stage"]] + (["best"] if run_["variant"] == "full" and not run_["param"] else []))
                for st in stages:
                    b = boot.copy()
                    for k, v in {"run_id": f"{st}/{ds.name}/{bb}/{run_['variant']}/{run_['param']}{run_['value'] or ''}/s{run_['seed']}",
                                 "stage": st, "dataset": ds.name, "backbone": bb, "model": "LEADER(S)",
                                 "variant": run_["variant"], "param": run_["param"],
                                 "param_value": float(run_["value"]) if run_["value"] is not None else float("nan"),
                                 "seed": int(run_["seed"])}.items():
                        b[k] = v
                        if st != "best":
                            per[k] = v
                    parts.append(b)
                from leader.study.evaluation import write_parquet

                write_parquet(per, self.dir / "persample" / f"{_part_name(per['run_id'].iloc[0])}.parquet")
            if not parts:
                raise RuntimeError(f"{key}: no trial finished")
            pd.concat(parts).to_parquet(self.parts / f"{_part_name(key)}.boot.parquet", index=False)
            return {"trials": len(grid), "model_dir": str(model_dir) if model_dir else None}

        self._stage(key, fp, run)

    def efficiency(self, ds, bb: str, teacher_dir: Path | None) -> None:
        key = f"efficiency/{ds.name}/{bb}"
        model_dir = self.state.get(f"grid/{ds.name}/{bb}").get("outputs", {}).get("model_dir")

        def run():
            import ray

            sizes = tuple(self.spec.evaluation.latency_batch_sizes)
            # student and teacher in separate fresh processes: each peak RSS is its own
            m = _measure.options(num_cpus=self.spec.resources.cpu)
            rows = ray.get(m.remote(ds, model_dir, None, sizes))
            if teacher_dir:
                rows += ray.get(m.remote(ds, None, str(teacher_dir), sizes))
            for r in rows:
                r.update(dataset=ds.name, backbone=bb)
            pd.DataFrame(rows).to_parquet(self.parts / f"{_part_name(key)}.eff.parquet", index=False)
        self._stage(key, ds.fingerprint + str(model_dir) + str(teacher_dir), run)

    # ------------------------------------------------------------------ assembly
    def collect(self) -> None:
        from leader.metrics import summarize  # noqa: F401  (same aggregation as the student module)

        res = self.dir / "results"
        boots = [pd.read_parquet(p) for p in sorted(self.parts.glob("*.boot.parquet"))]
        if boots:
            boot = pd.concat(boots, ignore_index=True)
            boot["param_value"] = boot["param_value"].astype(float)
            boot.to_parquet(res / "bootstrap.parquet", index=False)
            keys = KEYS + ["group", "metric"]
            m = boot.groupby(keys, dropna=False, sort=False)["value"].agg(["mean", "std"]).reset_index()
            m.to_parquet(res / "metrics.parquet", index=False)
        self._paired(res)
        effs = [pd.read_parquet(p) for p in sorted(self.parts.glob("*.eff.parquet"))]
        if effs:
            pd.concat(effs, ignore_index=True).to_parquet(res / "efficiency.parquet", index=False)
        opt = [pd.read_parquet(p) for p in sorted(self.parts.glob("*.optuna.parquet"))]
        if opt:
            pd.concat(opt, ignore_index=True).to_parquet(res / "optuna_trials.parquet", index=False)
        if self.dataset_stats:
            (res / "dataset_stats.json").write_text(json.dumps(self.dataset_stats, indent=1, default=str))
        (res / "env.json").write_text(json.dumps(environment(), indent=1, default=str))

    def _paired(self, res: Path) -> None:
        """Paired patient-bootstrap tests behind the report's Findings (aggregates only)."""
        from leader.study.evaluation import index_frame, paired_comparisons, standard_pairs, write_parquet

        files = sorted((self.dir / "persample").glob("*.parquet"))
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
            write_parquet(pd.concat(out, ignore_index=True), res / "paired.parquet")

    def run(self) -> None:
        s = self.spec
        for d in s.datasets:
            ds = self.data(d)
            if ds is None:
                self.state.mark(f"data/{d.name}", "skipped", "")
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
        self.collect()
        if s.report.enabled:
            try:
                from leader.report import build_report
            except ImportError:
                self.echo("[skip] report (leader.report.build_report not available)")
                return
            self.echo("[run ] report")
            t0 = time.time()
            try:
                out = build_report(self.dir)
            except Exception as e:
                self.state.mark("report", "failed", "", error=f"{type(e).__name__}: {e}"[:500])
                raise
            self.state.mark("report", "done", "", path=str(out), seconds=round(time.time() - t0, 2))


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
    from leader.efficiency import latency_ms, model_bytes, peak_activation_bytes

    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    ids = ds.samples("test")["sample_id"].to_numpy()[:max(sizes)]
    rows = []
    if model_dir:
        from leader.models.student import encode_dataset
        from leader.train.student import load_student

        m = load_student(model_dir).model.to(dev).eval()
        enc = encode_dataset(ds, m.cfg)
        pos = {int(v): i for i, v in enumerate(enc.sample_ids)}
        idx = np.array([pos[int(i)] for i in ids])

        def fwd(b):
            batch = {k: v.to(dev) for k, v in enc.batch(np.resize(idx, b)).items()}
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
    return [{"model": name, "latency_ms_per_patient": latency_ms(fwd(b), b), "batch_size": b, "device": dev,
             "param_mb": weights / 2**20, "peak_activation_mb": act / 2**20, "peak_mem_mb": (weights + act) / 2**20,
             "n_params": int(sum(p.numel() for p in module.parameters()))} for b in sizes]


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

        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except Exception:
        pass
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        gpu = None
    return {"versions": versions, "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "gpu": gpu, "git_commit": commit,
            "cluster_resources": ray.cluster_resources() if ray.is_initialized() else {}}


def run_study(path: str | Path, address: str | None = None, storage_path: str | None = None, echo=print,
              dashboard: bool = False) -> Path:
    """Validate, connect to Ray (local when no address / RAY_ADDRESS), run every unfinished stage.
    `dashboard` starts a local Ray's dashboard (127.0.0.1 only) so progress can be watched, and
    gives Ray Train the state API it polls."""
    from leader.ray_utils import cluster_address, ensure_ray

    spec = load_study(path)
    study_dir = spec.study_dir(storage_path)
    study_dir.mkdir(parents=True, exist_ok=True)
    spec_file = study_dir / "spec.yaml"
    spec_file.write_text(resolved_yaml(spec))
    ray = ensure_ray(address, dashboard=dashboard)
    url = ray._private.worker.get_dashboard_url() if dashboard and cluster_address(address) is None else None
    if url:
        echo(f"Ray dashboard: http://{url} (this machine only; token in ~/.ray/auth_token)")
    StudyRunner(spec, study_dir, echo=echo).run()
    echo(f"study finished: {study_dir}")
    return study_dir
