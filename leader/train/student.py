"""Single-process student trainer; runs as is inside a Ray Tune trial.

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

Teacher features are optional and aligned by sample id, never by row order. Early stopping on
validation PRAUC; the best state is kept in memory and written to checkpoint_dir.

Device: a Tune trial given a GPU sees it as cuda:0 (Ray sets CUDA_VISIBLE_DEVICES; a trial given
none sees no GPU), so `train_device()` is cuda when torch sees one, else cpu. Batches are built on
the CPU (EncodedDataset.batch) and moved with `to_device`, KD targets with them; predictions come
back with `.cpu()`. On the CPU every move is a no-op, so CPU runs are unchanged.
"""

from __future__ import annotations

import copy
import json
import random
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from leader import atomic
from leader.data.dataset import EHRDataset
from leader.errors import CheckpointError, ConfigError, read_json
from leader.losses import total_loss
from leader.metrics import bootstrap_metrics, mean_metrics
from leader.models.student import LeaderStudent, encode_dataset
from leader.train.student_config import StudentTrainConfig


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


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train_device() -> torch.device:
    """Where a trainer runs: the GPU Ray/Tune gave this process when it has one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Every tensor of a batch dict on `device` (the same tensors when they are already there)."""
    return {k: v.to(device) for k, v in batch.items()}


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a module's parameters live on (predictions follow the model, not the machine)."""
    return next(model.parameters()).device


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


def kd_targets(features, sample_ids: np.ndarray, shuffle: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Teacher (hidden, probs) rows for `sample_ids`, by id; with `shuffle`, the same rows given
    to other samples (a seeded permutation): the kd_shuffled negative control."""
    h, p = features.align(sample_ids)
    if shuffle:
        perm = np.random.default_rng(10_007 + seed).permutation(len(sample_ids))
        h, p = np.asarray(h)[perm], np.asarray(p)[perm]
    return h, p


def standardize_rows(h: np.ndarray) -> np.ndarray:
    """(N, d) -> each column z-scored over the N rows (constant columns map to 0)."""
    return ((h - h.mean(0)) / (h.std(0) + 1e-6)).astype(np.float32)


def _kd_inputs(features, enc, tr: np.ndarray, ds: EHRDataset, cfg: StudentTrainConfig):
    """(teacher hidden states (N_tr, d_h), teacher probs (N_tr, |meds|), projection to the teacher's
    width or None) for the train samples; all None without KD."""
    lcfg = cfg.loss
    if features is None or lcfg.kd == "none":
        return None, None, None
    h_all, p_all = kd_targets(features, enc.sample_ids[tr], lcfg.kd_shuffle, cfg.seed)
    h_all = np.asarray(h_all, dtype=np.float32)  # (N_tr, d_h)
    if lcfg.kd_target == "standardized":  # a permutation (kd_shuffle) leaves these statistics unchanged
        h_all = standardize_rows(h_all)
    h_all = torch.from_numpy(h_all)
    p_all = torch.from_numpy(np.asarray(p_all, dtype=np.float32))  # (N_tr, |meds|)
    if p_all.shape[1] != ds.n_meds:
        raise CheckpointError(f"teacher probs have {p_all.shape[1]} drugs, dataset {ds.name!r} has {ds.n_meds}")
    proj = kd_projection(cfg.student.d_model, h_all, lcfg.kd_head_init) if lcfg.kd == "feature" else None
    return h_all, p_all, proj


def kd_projection(d_model: int, h_train: torch.Tensor, init: str) -> torch.nn.Linear:
    """Student representation (d_model) -> the teacher's width. 'teacher_mean' starts it at the
    trivial answer, as the output bias starts at the prior: zero weights, bias = the train mean of
    the KD target. With torch's default init the projection starts far from MiniLM's small raw
    states (E[h^2] ~ 0.008) and the cheapest way down the KD loss was to shrink the student's
    representation itself: with alpha ~0.7 the quickstart's student stayed at the drug-frequency
    prior (test PRAUC 0.507 vs 0.642 without KD)."""
    proj = torch.nn.Linear(d_model, h_train.shape[1])  # (d_model -> d_h)
    if init == "teacher_mean":
        with torch.no_grad():
            proj.weight.zero_()
            proj.bias.copy_(h_train.mean(0))
    return proj


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
    _seed_all(cfg.seed)
    enc = encode_dataset(ds, cfg.student)
    tr, va = enc.indices("train"), enc.indices("val")
    if len(tr) < 2 or len(va) == 0:
        raise ConfigError(f"dataset {ds.name!r} needs >=2 train and >=1 val samples (has {len(tr)}, {len(va)})")
    model = LeaderStudent.for_dataset(ds, cfg.student)
    if cfg.init_bias_from_prior:
        model.init_output_bias(enc.labels[tr].mean(0))
    h_all, p_all, proj = _kd_inputs(features, enc, tr, ds, cfg)
    dev = train_device()  # built and initialised on the CPU (same weights for a seed), then moved
    model.to(dev)
    if proj is not None:
        proj.to(dev)
    params = list(model.parameters()) + (list(proj.parameters()) if proj is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    y_tr = torch.from_numpy(enc.labels[tr])
    gen = np.random.default_rng(cfg.seed)
    best, best_epoch, best_state, history, bad = -1.0, -1, None, [], 0
    for epoch in range(cfg.epochs):
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
        if vm["prauc"] > best:
            best, best_epoch, bad = vm["prauc"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        row["best_val_prauc"] = best
        history.append(row)
        if report is not None:
            report(dict(row))
        if bad >= cfg.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
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
