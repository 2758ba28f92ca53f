"""Which samples each optimizer step sees, and at what learning rate.

Why one seeded global order: every worker reads the same global batch order and takes its slice,
so a run on W workers with per-worker batch B takes the same optimizer steps as one process with
batch W*B (the integration tests compare the two), and a resumed run continues the same order.
"""

from __future__ import annotations

import math

import numpy as np

from leader.config.teacher import TeacherTrainConfig
from leader.errors import ConfigError


def lr_lambda(cfg: TeacherTrainConfig, total_steps: int):
    """LambdaLR factor of step `step`: linear warmup, then cosine or linear decay to 0."""
    warm = int(cfg.warmup if cfg.warmup >= 1 else round(cfg.warmup * total_steps))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / max(1, warm)
        frac = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, frac))) if cfg.schedule == "cosine" else max(0.0, 1 - frac)

    return f


def total_steps(cfg: TeacherTrainConfig, n_train: int, world: int) -> int:
    """Optimizer steps of the run (full global batches per epoch x epochs, capped by max_steps)."""
    per_epoch = n_train // (cfg.batch_size * cfg.grad_accum * world)
    if per_epoch == 0:
        raise ConfigError(
            f"batch_size: {n_train} training samples < one global batch ({cfg.batch_size}x{cfg.grad_accum}x{world})"
        )
    t = per_epoch * cfg.epochs
    return min(t, cfg.max_steps) if cfg.max_steps else t


def global_batches(n: int, global_batch: int, seed: int, epoch: int, lens=None) -> list[np.ndarray]:
    """Seeded order of one epoch, cut into full global batches (a random remainder is dropped).
    With `lens` (token lengths) the batches are length buckets: the kept samples sorted by length,
    cut into global batches, and the batches shuffled, so each step pads to a length close to its
    prompts' (sorting inside a random global batch still pads every step to its longest prompt)."""
    rng = np.random.default_rng(seed + 1000 * epoch)
    perm = rng.permutation(n)[: (n // global_batch) * global_batch]
    if lens is not None:
        perm = perm[np.argsort(np.asarray(lens)[perm], kind="stable")]
    batches = [perm[i * global_batch : (i + 1) * global_batch] for i in range(n // global_batch)]
    return [batches[i] for i in rng.permutation(len(batches))] if lens is not None else batches


def padding_share(batches: list[np.ndarray], lens: np.ndarray, micro: int) -> float:
    """Share of the tokens computed that are padding, over micro batches of `micro` prompts taken
    in order from each (length-sorted) global batch."""
    pad = total = 0
    for gb in batches:
        for i in range(0, len(gb), micro):
            m = lens[gb[i : i + micro]]
            pad, total = pad + int(m.max() * len(m) - m.sum()), total + int(m.max() * len(m))
    return pad / total if total else 0.0
