"""The one training loop: epochs, keep-best on a validation score, optional early stopping.

The student, every tuned torch baseline and the teacher's linear probe train through `fit`, so
the student-vs-baseline comparison rests on the same selection rule: an epoch is the new best
only when its score is STRICTLY above the best so far, the best state is kept in memory and
restored at the end, and with `patience` the loop stops after that many epochs without one.

Contract:
    fit(epochs, run_epoch, state, load_state, *, patience=None, best=Best(), best_key=None,
        report=None) -> FitResult(best, best_epoch, history, state)
        run_epoch(epoch) -> (score, row): trains one epoch, validates, returns the validation
        score (higher is better) and the history row; with `best_key` the row gets
        row[best_key] = the best score so far. report(dict(row)) follows each appended row.
        state() -> what to keep (deep-copied at each new best); load_state(kept) restores it at
        the end, and FitResult.state is that kept copy.
    seed_all(seed)                python, numpy and torch global RNGs
    train_device(), to_device(batch, device), model_device(module)

Device: a Tune trial given a GPU sees it as cuda:0 (Ray sets CUDA_VISIBLE_DEVICES; a trial given
none sees no GPU), so `train_device()` is cuda when torch sees one, else cpu. Trainers build and
initialise models on the CPU (the same weights for a seed) and then move them; batches are built
on the CPU and moved with `to_device`. On the CPU every move is a no-op.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def seed_all(seed: int) -> None:
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


@dataclass
class Best:
    """Where keep-best starts. The student starts below any PRAUC with nothing kept (an epoch
    always beats it); a baseline keeps its initial state; the probe scores the head it was given
    as epoch -1, so training must beat it."""

    score: float = -1.0
    epoch: int = -1
    state: Any = None


@dataclass
class FitResult:
    best: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    state: Any = None  # the kept (best) state, as loaded back


def fit(
    epochs: int,
    run_epoch: Callable[[int], tuple[float, dict]],
    state: Callable[[], Any],
    load_state: Callable[[Any], None],
    *,
    patience: int | None = None,
    best: Best | None = None,
    best_key: str | None = None,
    report: Callable[[dict], None] | None = None,
) -> FitResult:
    """Run up to `epochs` epochs; the kept state is loaded back before returning."""
    b = best if best is not None else Best()
    kept, history, bad = b.state, [], 0
    out = FitResult(b.score, b.epoch, history)
    for epoch in range(epochs):
        score, row = run_epoch(epoch)
        if score > out.best:
            out.best, out.best_epoch, bad = score, epoch, 0
            kept = copy.deepcopy(state())
        else:
            bad += 1
        if best_key is not None:
            row[best_key] = out.best
        history.append(row)
        if report is not None:
            report(dict(row))
        if patience is not None and bad >= patience:
            break
    load_state(kept)
    out.state = kept
    return out
