"""One trainer for every baseline (trivial and Table III), so a study trains them alike.

Contract:
    train_baseline(ds, name, params: dict | None = None, seed=0, report=None, *, ddi=None,
                   num_threads=1) -> BaselineResult
        params override the registry defaults (`BASELINES[name].defaults`); an unknown key is a
        ConfigError. report(row) is called once per epoch with epoch, train_loss, val_prauc,
        val_jaccard, val_f1, best_val_prauc (one row for non-torch baselines), as the student's
        trainer does, so Ray Tune / ASHA can consume it. ddi: optional (|meds|, |meds|) DDI
        pair matrix (GAMENet puts its graph in the memory; others ignore it).

Torch models: Adam, BCE-with-logits (+ `margin_weight` x multilabel margin loss on the
probabilities, as GAMENet/MICRON use) + the model's own aux_loss; the output bias starts at
logit(train frequency of each drug); the epochs run in `leader.fit` (the student's loop): early
stopping on validation PRAUC with `patience`, the best state kept. Multi-visit-only models
(needs_history) are trained, validated and tested on samples with at least one earlier visit
only; `eval_mask_note` says which test samples were kept.
Device (leader.fit.train_device): the trial's GPU when torch sees one, else the CPU; batches
move with `to_device`, predictions come back with `.cpu()`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from leader.baselines import TRAIN_DEFAULTS, BaselineInfo, get_baseline
from leader.config.student import StudentConfig
from leader.data.dataset import EHRDataset
from leader.errors import ConfigError
from leader.fit import Best, fit, model_device, seed_all, to_device, train_device
from leader.metrics import mean_metrics
from leader.student.model import encode_dataset


@dataclass
class BaselineResult:
    name: str
    sample_ids: np.ndarray  # (N_test,) int64, test samples evaluated (all, or those with history)
    probs: np.ndarray  # (N_test, |meds|) float32
    val_prauc: float  # best validation PRAUC (the early-stopping criterion)
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, train_loss, val_prauc, ...
    n_params: int = 0
    train_s: float = 0.0
    eval_mask_note: str = ""
    best_epoch: int = 0
    params: dict = field(default_factory=dict)  # the full parameter set used (defaults + overrides)
    model: object = None  # the fitted torch module (best state) or trivial.Fitted; not serialisable


def resolve_params(info: BaselineInfo, params: dict | None) -> dict:
    params = dict(params or {})
    unknown = set(params) - set(info.defaults)
    if unknown:
        known = ", ".join(sorted(info.defaults)) or "none"
        raise ConfigError(f"baseline {info.name!r}: unknown hyper-parameter(s) {sorted(unknown)}; known: {known}")
    return {**info.defaults, **params}


def _row(epoch: int, train_loss: float, vm: dict, best: float | None = None) -> dict:
    """A history row; `leader.fit` adds best_val_prauc to the torch models' rows."""
    row = {"epoch": epoch, "train_loss": float(train_loss), **{f"val_{k}": float(v) for k, v in vm.items()}}
    if best is not None:
        row["best_val_prauc"] = float(best)
    return row


def _mask_note(info: BaselineInfo, n_kept: int, n_all: int) -> str:
    if not info.needs_history:
        return f"all {n_all} test samples"
    return (
        f"{n_kept} of {n_all} test samples: {info.name} is multi-visit only, so samples without an earlier visit "
        f"(every single-visit patient and each patient's first visit) are excluded from its training and evaluation"
    )


def train_baseline(
    ds: EHRDataset,
    name: str,
    params: dict | None = None,
    seed: int = 0,
    report: Callable[[dict], None] | None = None,
    *,
    ddi: np.ndarray | None = None,
    num_threads: int = 1,
) -> BaselineResult:
    info = get_baseline(name)
    p = resolve_params(info, params)
    torch.set_num_threads(num_threads)
    seed_all(seed)
    if info.kind == "fit":
        return _fit_trivial(ds, info, p, seed, report)
    return _train_torch(ds, info, p, seed, report, ddi)


def _fit_trivial(ds, info, p, seed, report) -> BaselineResult:
    t0 = time.perf_counter()
    fitted = info.impl(ds, p, seed)
    train_s = time.perf_counter() - t0
    tr = ds.samples("train")["sample_id"].to_numpy(dtype=np.int64)
    va = ds.samples("val")["sample_id"].to_numpy(dtype=np.int64)
    te = ds.samples("test")["sample_id"].to_numpy(dtype=np.int64)
    ptr = np.clip(fitted.predict(tr).astype(np.float64), 1e-6, 1 - 1e-6)
    ytr = ds.labels(tr)
    bce = float(-(ytr * np.log(ptr) + (1 - ytr) * np.log1p(-ptr)).mean()) if len(tr) else float("nan")
    vm = mean_metrics(ds.labels(va), fitted.predict(va))
    row = _row(0, bce, vm, vm["prauc"])
    if report is not None:
        report(dict(row))
    return BaselineResult(
        name=info.name,
        sample_ids=te,
        probs=fitted.predict(te).astype(np.float32),
        val_prauc=vm["prauc"],
        history=[row],
        n_params=fitted.n_params,
        train_s=train_s,
        eval_mask_note=_mask_note(info, len(te), len(te)),
        best_epoch=0,
        params=p,
        model=fitted,
    )


def _margin_targets(target_med: np.ndarray, n_med: int) -> torch.Tensor:
    """(B, C) code+1 -> (B, |meds|) int64 target list for multilabel_margin_loss (-1 ends it)."""
    t = np.full((len(target_med), n_med), -1, dtype=np.int64)
    c = min(target_med.shape[1], n_med)
    t[:, :c] = target_med[:, :c].astype(np.int64) - 1  # left-aligned codes, pads become -1
    return torch.from_numpy(t)


def _batch_loss(out: dict, y: torch.Tensor, target_med: np.ndarray, tp: dict, n_meds: int) -> torch.Tensor:
    """BCE (+ the model's multi-label margin term, + its auxiliary loss such as GAMENet's DDI).
    `y` is on the logits' device already; the margin targets are built on the CPU and moved."""
    loss = F.binary_cross_entropy_with_logits(out["logits"], y)
    if tp["margin_weight"] > 0:
        loss = loss + tp["margin_weight"] * F.multilabel_margin_loss(
            torch.sigmoid(out["logits"]), _margin_targets(target_med, n_meds).to(out["logits"].device)
        )
    if "aux_loss" in out:
        loss = loss + out["aux_loss"]
    return loss


def _split_rows(ds, enc, info) -> dict[str, np.ndarray]:
    """Train/val/test rows the model can score (a multi-visit-only model: samples with history)."""
    keep = (enc.visit_mask.sum(1) >= 2) if info.needs_history else np.ones(len(enc.sample_ids), bool)
    idx = {s: np.flatnonzero((enc.split == s) & keep) for s in ("train", "val", "test")}
    if len(idx["train"]) < 2 or len(idx["val"]) == 0:
        raise ConfigError(
            f"baseline {info.name!r} on {ds.name!r}: needs >=2 train and >=1 val samples"
            f"{' with history' if info.needs_history else ''} (has {len(idx['train'])}, {len(idx['val'])})"
        )
    return idx


def _epoch_fn(model, batch, predict, enc, idx: dict, tp: dict, seed: int) -> Callable[[int], tuple[float, dict]]:
    """One `leader.fit` epoch: Adam over the train rows in a fresh permutation of the seeded
    generator (every batch, however small), then validation; returns (val PRAUC, history row)."""
    opt = torch.optim.Adam(model.parameters(), lr=tp["lr"], weight_decay=tp["weight_decay"])
    tr = idx["train"]
    y_tr = torch.from_numpy(enc.labels[tr])
    gen = np.random.default_rng(seed)

    def run_epoch(epoch: int) -> tuple[float, dict]:
        model.train()
        perm = gen.permutation(len(tr))
        tot, n = 0.0, 0
        for i in range(0, len(perm), int(tp["batch_size"])):
            bi = perm[i : i + int(tp["batch_size"])]
            y = y_tr[bi].to(model_device(model))  # (B, |meds|), with the batch
            loss = _batch_loss(model(batch(tr[bi])), y, enc.target_med[tr[bi]], tp, enc.labels.shape[1])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(bi)
            n += len(bi)
        vm = mean_metrics(enc.labels[idx["val"]], predict(idx["val"]))
        return vm["prauc"], _row(epoch, tot / max(n, 1), vm)

    return run_epoch


def _train_torch(ds, info, p, seed, report, ddi) -> BaselineResult:
    tp = {k: p[k] for k in TRAIN_DEFAULTS}
    mp = {k: p[k] for k in info.model_keys}
    if info.needs_history and tp["max_visits"] < 2:
        raise ConfigError(
            f"baseline {info.name!r} is multi-visit only: max_visits must be >= 2 (got {tp['max_visits']})"
        )
    t0 = time.perf_counter()
    enc = encode_dataset(ds, StudentConfig(max_visits=tp["max_visits"], max_codes=tp["max_codes"]))
    idx = _split_rows(ds, enc, info)
    all_train = enc.indices("train")  # graphs / neighbours / prior use every train visit
    model = info.impl.build(ds, enc, all_train, mp, ddi)
    model.init_embeddings()
    model.init_output_bias(enc.labels[idx["train"]].mean(0))
    extras = {k: np.asarray(v) for k, v in model.extra_inputs(ds, enc, all_train).items()}
    dev = train_device()  # initialised on the CPU (same weights for a seed), then moved
    model.to(dev)

    def batch(rows: np.ndarray) -> dict[str, torch.Tensor]:
        b = enc.batch(rows)
        b["sample_id"] = torch.from_numpy(enc.sample_ids[rows])
        for k, v in extras.items():
            b[k] = torch.from_numpy(v[rows].astype(np.int64) if v.dtype.kind in "iu" else v[rows])
        return to_device(b, dev)

    @torch.no_grad()
    def predict(rows: np.ndarray, bs: int = 512) -> np.ndarray:
        model.eval()
        out = [torch.sigmoid(model(batch(rows[i : i + bs]))["logits"]).cpu().numpy() for i in range(0, len(rows), bs)]
        return np.concatenate(out) if out else np.zeros((0, ds.n_meds), np.float32)

    res = fit(
        int(tp["epochs"]),
        _epoch_fn(model, batch, predict, enc, idx, tp, seed),
        model.state_dict,
        model.load_state_dict,
        patience=tp["patience"],
        best=Best(-1.0, 0, copy.deepcopy(model.state_dict())),  # an epoch that never improves keeps the init
        best_key="best_val_prauc",
        report=report,
    )
    best, best_epoch, history = res.best, res.best_epoch, res.history
    model.eval()
    train_s = time.perf_counter() - t0
    te = idx["test"]
    return BaselineResult(
        name=info.name,
        sample_ids=enc.sample_ids[te].astype(np.int64),
        probs=predict(te).astype(np.float32),
        val_prauc=float(best),
        history=history,
        n_params=int(sum(q.numel() for q in model.parameters())),
        train_s=train_s,
        eval_mask_note=_mask_note(info, len(te), int((enc.split == "test").sum())),
        best_epoch=best_epoch,
        params=p,
        model=model,
    )


__all__ = ["BaselineResult", "resolve_params", "train_baseline"]
