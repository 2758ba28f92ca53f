"""The `baseline/<dataset>/<model>` units: a trivial baseline fitted once on train, a Table III
baseline swept exactly like the student, and the frozen teacher's linear probe. Every one is
scored on the same split, metrics, bootstrap and groups as the student."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leader.baselines import BASELINE_LABELS
from leader.study import tune as T
from leader.study.context import Study
from leader.study.stages.scoring import score
from leader.study.units import Unit


def trivial(study: Study, u: Unit) -> None:
    """The trivial baselines every report shows beside LEADER (fit once on train)."""
    from leader.baselines.train import train_baseline
    from leader.evaluation import align_to_test

    ds, name = study.need(u, "data"), u.model

    def run():
        res = train_baseline(ds, name, {}, seed=0)
        probs = align_to_test(ds, res.sample_ids, res.probs)
        parts = score(
            study, u.name, ds, probs, stage="baseline", dataset=ds.name, model=BASELINE_LABELS.get(name, name)
        )
        return {"train_s": round(float(res.train_s), 3), "n_params": int(res.n_params), "parts": parts, "_files": parts}

    study.state.stage(u, run)


def tuned(study: Study, u: Unit) -> None:
    """A Table III baseline swept exactly like the student (same sampler, scheduler and
    num_samples), selected on validation PRAUC among finished trials, scored once on test."""
    from ray import tune

    from leader.baselines import get_baseline
    from leader.baselines.trial import baseline_trial
    from leader.evaluation import full_probs

    s, ds, name = study.spec, study.need(u, "data"), u.model
    bspec, info = s.baselines.tuned[name], get_baseline(name)
    exp = f"baseline-{ds.name}-{name}-{u.key[:8]}"
    space = bspec.space if bspec.space is not None else T.registry_space(info.search_space)
    trainable = tune.with_resources(
        tune.with_parameters(baseline_trial, ds=ds, name=name, fixed=dict(bspec.params), cpus=s.resources.cpu),
        {"cpu": s.resources.cpu, "gpu": s.resources.gpu},  # the baselines' trainer uses a GPU it is given
    )
    epochs = int(bspec.params.get("epochs", info.defaults.get("epochs", 1)))

    def run():
        # max_t = epochs + 1: the trial's last report (its test probabilities as a checkpoint) comes after
        # its last epoch; with max_t = epochs ASHA stops every trial that trains all epochs before it
        grid = T.fit(study, u.name, exp, trainable, lambda: T.tuner(study, trainable, space, exp, max_t=epochs + 1))
        done = [r for r in grid if r.error is None and r.checkpoint is not None]
        best = max(done, key=lambda r: float(r.metrics.get("best_val_prauc", -1)))
        with best.checkpoint.as_directory() as d:
            z = np.load(Path(d) / "test_probs.npz")
            probs, mask = full_probs(ds, z["sample_ids"], z["probs"])
        label = BASELINE_LABELS.get(name, name)
        mask = None if mask.all() else mask
        parts = score(study, u.name, ds, probs, mask=mask, stage="baseline", dataset=ds.name, model=label)
        return {
            "best_config": {k: (v.item() if hasattr(v, "item") else v) for k, v in best.config.items()},
            "best_val_prauc": float(best.metrics.get("best_val_prauc", float("nan"))),
            "trials": len(grid),
            "n_params": int(best.metrics.get("n_params", 0)),
            "train_s": float(best.metrics.get("train_s", 0)),
            "parts": parts,
            "_files": parts,
        }

    study.state.stage(u, run)


def probe(study: Study, u: Unit) -> None:
    """The frozen-backbone linear probe (the teacher's LP stage) as a baseline row; absent when
    the teacher did not run that stage."""
    from leader.evaluation import align_to_test

    ds, bb = study.need(u, "data"), u.backbone
    f = Path(study.need(u, "teacher")) / "probe_test.npz"
    if not f.is_file():
        return

    def run():
        z = np.load(f)
        probs = align_to_test(ds, z["sample_ids"], z["probs"])
        parts = score(study, u.name, ds, probs, stage="baseline", dataset=ds.name, backbone=bb, model="Probe")
        return {"parts": parts, "_files": parts}

    study.state.stage(u, run)
