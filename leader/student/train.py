"""Single-process student trainer, and the Ray Tune trial that runs it (`student_trial`: the trial
IS the training function).

Contract:
    StudentTrainConfig (pydantic)
    train_student(ds, cfg, features: TeacherFeatures | None = None, report=None,
                  checkpoint_dir=None) -> StudentTrainResult(model, best_epoch, history, best_val)
        report(dict) is called once per epoch with epoch, train_loss, val_prauc, val_jaccard,
        val_f1 (+ loss parts), so Tune/ASHA sees every epoch.
    evaluate_student(model, ds, split='test', features=None, threshold=0.5, rounds=10, frac=0.8,
                     seed=0) -> DataFrame[group, metric, round, value]
    predict_proba(model, ds, split=None, sample_ids=None) -> (sample_ids, probs)
    load_student(checkpoint_dir) -> StudentCheckpoint(model, config, meta)
    measure_student_latency(model, ds, batch_sizes=(1, 256)) -> dict

Teacher features are optional and aligned by sample id, never by row order. The epochs run in
`leader.fit` (the loop the baselines and the probe share): early stopping on validation PRAUC,
the best state kept in memory and written to checkpoint_dir.

Device (leader.fit.train_device): the trial's GPU when torch sees one, else the CPU. Batches are
built on the CPU (EncodedDataset.batch) and moved with `to_device`, KD targets with them;
predictions come back with `.cpu()`.
"""

from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from leader import atomic
from leader.config.student import StudentTrainConfig
from leader.data.dataset import EHRDataset
from leader.errors import CheckpointError, ConfigError, read_json
from leader.fit import fit, model_device, seed_all, to_device, train_device
from leader.metrics import bootstrap_metrics, mean_metrics
from leader.student.kd import kd_inputs
from leader.student.losses import total_loss
from leader.student.model import LeaderStudent, encode_dataset


@dataclass
class StudentTrainResult:
    model: LeaderStudent
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    best_val: dict = field(default_factory=dict)
    checkpoint_dir: Path | None = None


@dataclass
class StudentCheckpoint:
    model: LeaderStudent
    config: StudentTrainConfig
    meta: dict


@torch.no_grad()
def _predict_idx(model: LeaderStudent, enc, idx: np.ndarray, batch_size: int = 512) -> np.ndarray:
    model.eval()
    dev = model_device(model)
    out = [
        torch.sigmoid(model(to_device(enc.batch(idx[i : i + batch_size]), dev))["logits"]).cpu().numpy()
        for i in range(0, len(idx), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.n_med), np.float32)


def predict_proba(
    model: LeaderStudent, ds: EHRDataset, split: str | None = None, sample_ids=None
) -> tuple[np.ndarray, np.ndarray]:
    enc = encode_dataset(ds, model.cfg)
    if sample_ids is not None:
        pos = {int(s): i for i, s in enumerate(enc.sample_ids)}
        missing = [int(s) for s in np.atleast_1d(sample_ids) if int(s) not in pos]
        if missing:
            raise ConfigError(f"sample id {missing[0]} is not in dataset {ds.name!r}")
        idx = np.array([pos[int(s)] for s in np.atleast_1d(sample_ids)], dtype=np.int64)
    else:
        idx = enc.indices(split) if split else np.arange(len(enc.sample_ids))
    return enc.sample_ids[idx], _predict_idx(model, enc, idx)


def _rows_to(t: torch.Tensor | None, bi: np.ndarray, device: torch.device) -> torch.Tensor | None:
    """Rows `bi` of a CPU tensor (labels, KD targets) on the batch's device; None stays None."""
    return None if t is None else t[bi].to(device)


def _train_epoch(
    model, proj, opt, enc, tr: np.ndarray, y_tr, perm: np.ndarray, cfg: StudentTrainConfig, h_all, p_all
) -> tuple[float, int, dict[str, float]]:
    """One pass over the train samples in `perm` order: (summed loss, samples seen, summed loss parts).
    `y_tr`, `h_all`, `p_all` stay on the CPU; each batch's rows move to the model's device with it."""
    lcfg = cfg.loss
    want_align = lcfg.align and lcfg.beta > 0
    dev = model_device(model)
    model.train()
    if proj is not None:
        proj.train()
    tot, n = 0.0, 0
    parts_sum: dict[str, float] = {}
    for i in range(0, len(perm), cfg.batch_size):
        bi = perm[i : i + cfg.batch_size]
        if len(bi) < 2:
            continue
        out = model(to_device(enc.batch(tr[bi], with_target=want_align), dev))
        y, h, p = (_rows_to(t, bi, dev) for t in (y_tr, h_all, p_all))  # (B, |meds|), (B, d_h), (B, |meds|)
        loss, parts = total_loss(out, y, lcfg, proj, h, p)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tot += float(loss.detach()) * len(bi)
        n += len(bi)
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v * len(bi)
    return tot, n, parts_sum


def _epoch_fn(model, proj, enc, cfg: StudentTrainConfig, h_all, p_all) -> Callable[[int], tuple[float, dict]]:
    """One `leader.fit` epoch: Adam over the train samples in a fresh permutation of the seeded
    generator, then the validation metrics; returns (val PRAUC, history row)."""
    tr, va = enc.indices("train"), enc.indices("val")
    params = list(model.parameters()) + (list(proj.parameters()) if proj is not None else [])
    # fused: one kernel for all ~60 small parameter tensors instead of a Python loop over them
    # (11 % of a quickstart training step with the default for-loop Adam)
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    y_tr = torch.from_numpy(enc.labels[tr])
    gen = np.random.default_rng(cfg.seed)

    def run_epoch(epoch: int) -> tuple[float, dict]:
        t0 = time.perf_counter()
        tot, n, parts_sum = _train_epoch(model, proj, opt, enc, tr, y_tr, gen.permutation(len(tr)), cfg, h_all, p_all)
        dt = time.perf_counter() - t0
        vm = mean_metrics(enc.labels[va], _predict_idx(model, enc, va), cfg.threshold)
        row = {
            "epoch": epoch,
            "train_loss": tot / max(n, 1),
            **{f"train_{k}": v / max(n, 1) for k, v in parts_sum.items()},
            **{f"val_{k}": v for k, v in vm.items()},
            "samples_per_s": n / max(dt, 1e-9),
        }
        return vm["prauc"], row

    return run_epoch


def train_student(
    ds: EHRDataset,
    cfg: StudentTrainConfig,
    features=None,
    report: Callable[[dict], None] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> StudentTrainResult:
    lcfg = cfg.loss
    if lcfg.kd != "none" and lcfg.alpha > 0 and features is None:
        raise ConfigError(f"kd={lcfg.kd!r} needs teacher features (pass --features DIR), or set kd='none'")
    torch.set_num_threads(cfg.num_threads)
    seed_all(cfg.seed)
    enc = encode_dataset(ds, cfg.student)
    tr, va = enc.indices("train"), enc.indices("val")
    if len(tr) < 2 or len(va) == 0:
        raise ConfigError(f"dataset {ds.name!r} needs >=2 train and >=1 val samples (has {len(tr)}, {len(va)})")
    model = LeaderStudent.for_dataset(ds, cfg.student)
    if cfg.init_bias_from_prior:
        model.init_output_bias(enc.labels[tr].mean(0))
    h_all, p_all, proj = kd_inputs(features, enc, tr, ds, cfg)
    dev = train_device()  # built and initialised on the CPU (same weights for a seed), then moved
    model.to(dev)
    if proj is not None:
        proj.to(dev)
    res = fit(
        cfg.epochs,
        _epoch_fn(model, proj, enc, cfg, h_all, p_all),
        model.state_dict,
        model.load_state_dict,
        patience=cfg.patience,
        best_key="best_val_prauc",
        report=report,
    )
    model.eval()
    best_epoch, history = res.best_epoch, res.history
    best_val = {k: v for k, v in history[best_epoch].items() if k.startswith("val_")}
    ck = None
    if checkpoint_dir is not None:
        ck = save_student(model, cfg, ds, checkpoint_dir, extra={"best_epoch": best_epoch, "best_val": best_val})
    return StudentTrainResult(model=model, best_epoch=best_epoch, history=history, best_val=best_val, checkpoint_dir=ck)


# 2: visit positions count back from the current visit, pooling is configurable. Weights of an
# older student would load without error and predict differently, so they are refused instead.
STUDENT_FORMAT = 2


def save_student(
    model: LeaderStudent, cfg: StudentTrainConfig, ds: EHRDataset, folder: str | Path, extra: dict | None = None
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(folder / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    meta = {
        "dataset": ds.name,
        "dataset_fingerprint": ds.fingerprint,
        "n_diag": len(ds.vocabs["diag"]),
        "n_proc": len(ds.vocabs["proc"]),
        "n_med": ds.n_meds,
        "profile_sizes": [len(c) for c in ds.profile_vocabs.values()],
        "med_names": list(ds.vocabs["med"].names),
        "med_codes": list(ds.vocabs["med"].codes),
        "student_format": STUDENT_FORMAT,
        **(extra or {}),
    }
    atomic.write_text(folder / "config.json", cfg.model_dump_json(indent=1))
    atomic.write_text(folder / "meta.json", json.dumps(meta, indent=1, default=float))  # last: marks a complete save
    return folder


def load_student(checkpoint_dir: str | Path) -> StudentCheckpoint:
    folder = Path(checkpoint_dir)
    for f in ("model.pt", "config.json", "meta.json"):
        if not (folder / f).exists():
            raise CheckpointError(f"student checkpoint incomplete: {folder / f} missing")
    cfg = StudentTrainConfig.model_validate_json((folder / "config.json").read_text())
    meta = read_json(
        folder / "meta.json",
        CheckpointError,
        what="student checkpoint",
        required=("n_diag", "n_proc", "n_med", "profile_sizes"),
    )
    if meta.get("student_format", 1) != STUDENT_FORMAT:
        raise CheckpointError(
            f"{folder / 'meta.json'}: field 'student_format' is {meta.get('student_format', 1)}, this version reads "
            f"{STUDENT_FORMAT} (the student's visit positions changed); retrain the student"
        )
    model = LeaderStudent(cfg.student, meta["n_diag"], meta["n_proc"], meta["n_med"], meta["profile_sizes"])
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return StudentCheckpoint(model=model, config=cfg, meta=meta)


def evaluate_student(
    model: LeaderStudent,
    ds: EHRDataset,
    split: str = "test",
    features=None,
    threshold: float = 0.5,
    rounds: int = 10,
    frac: float = 0.8,
    seed: int = 0,
) -> pd.DataFrame:
    """Bootstrap metrics by group. `features` is accepted for a uniform call signature; the
    student needs no teacher at inference."""
    enc = encode_dataset(ds, model.cfg)
    idx = enc.indices(split)
    probs = _predict_idx(model, enc, idx)
    return bootstrap_metrics(
        enc.labels[idx], probs, enc.group[idx], threshold=threshold, rounds=rounds, frac=frac, seed=seed
    )


@torch.no_grad()
def measure_student_latency(model: LeaderStudent, ds: EHRDataset, batch_sizes=(1, 256), repeats: int = 5) -> dict:
    """Inference ms per patient at each batch size and peak Python-heap memory (tracemalloc;
    CPU tensors' storage is not tracked there, so peak_rss_mb is reported too)."""
    import resource

    from leader.efficiency import latency_ms

    model.eval()
    dev = model_device(model)
    enc = encode_dataset(ds, model.cfg)
    idx_all = np.arange(len(enc.sample_ids))
    out = {}
    for bs in batch_sizes:
        b = to_device(enc.batch(np.resize(idx_all, bs)), dev)  # repeat samples when the dataset is smaller
        out[f"latency_ms_per_patient_b{bs}"] = latency_ms(lambda b=b: model(b), bs, repeats, device=dev)
    tracemalloc.start()
    model(to_device(enc.batch(np.resize(idx_all, max(batch_sizes))), dev))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["peak_traced_mb"] = peak / 2**20
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["n_params"] = int(sum(p.numel() for p in model.parameters()))
    return out


# ----------------------------------------------------------------------------- the Tune trial
# Sweep trials report every epoch (for ASHA); grid trials (ablation / sensitivity / best) also
# evaluate on test and return the bootstrap rows and the model as a Tune checkpoint, so the driver
# never retrains. The flat trial config (study `student:` block + the Tune sample + a grid run's
# variant) becomes the trainer's config in one step, `leader.config.flat.student_config`; teacher
# features come from `load_features()`, a loader the study passes (the feature store is a layer up).
def trial_params(config: dict, base: dict | None, overrides: dict | None) -> dict:
    """The flat student params of one trial: the study's base, the Tune sample, and for a grid
    run (config['run']) its variant's switches, sensitivity value and seed."""
    params = {**(base or {}), **{k: v for k, v in config.items() if k != "run"}}
    run = config.get("run")
    if run:
        params.update((overrides or {}).get(run["variant"], {}))
        params.update(run.get("params") or {})  # a `released` row: the study's own values over the sweep's best
        if run["param"]:
            params[run["param"]] = run["value"]
        params["seed"] = run["seed"]
    return params


def student_trial(
    config: dict,
    *,
    ds=None,
    load_features: Callable[[], Any] | None = None,
    base: dict | None = None,
    evaluation: dict | None = None,
    overrides: dict | None = None,
    cpus: float = 1,
) -> None:
    from ray import tune

    from leader.config.flat import student_config

    run = config.get("run")
    cfg = student_config(trial_params(config, base, overrides))
    cfg = cfg.model_copy(update={"num_threads": max(1, int(cpus))})
    features = load_features() if load_features is not None and cfg.loss.kd != "none" else None
    if not run:
        train_student(ds, cfg, features=features, report=lambda row: tune.report(row))
        return
    with tempfile.TemporaryDirectory() as tmp:
        res = train_student(
            ds, cfg, features=features, report=lambda row: tune.report(row), checkpoint_dir=Path(tmp) / "model"
        )
        final = _score_test(res.model, ds, cfg.threshold, evaluation or {}, run["seed"], Path(tmp))
        tune.report({**res.history[-1], **final}, checkpoint=tune.Checkpoint.from_directory(tmp))


def _score_test(model, ds, threshold: float, ev: dict, seed: int, tmp: Path) -> dict:
    """Bootstrap and per-sample test scores written beside the model; the overall means."""
    from leader.evaluation import align_to_test, score_test

    ids, probs = predict_proba(model, ds, "test")
    boot, per = score_test(
        ds,
        align_to_test(ds, ids, probs),
        threshold=threshold,
        rounds=ev.get("bootstrap_rounds", 10),
        frac=ev.get("bootstrap_frac", 0.8),
        seed=seed,
    )
    boot.to_parquet(tmp / "bootstrap.parquet", index=False)
    per.to_parquet(tmp / "persample.parquet", index=False)  # by test position: paired tests
    overall = boot[boot["group"] == "overall"].groupby("metric")["value"].mean()
    return {**{f"test_{k}": float(v) for k, v in overall.items()}, "final": 1}
