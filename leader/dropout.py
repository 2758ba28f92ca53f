"""Dropout with 16-bit draws on the CPU, for the student and the teacher's backbone alike.

Why: upstream dropout draws one Mersenne-Twister number per element (~6 ns each). That was 21 %
of a quickstart student training step (d 32, batch 32, one thread; torch.profiler) and 19 % of a
MiniLM LoRA step (batch 8, bf16, one thread: the backbone's hidden and attention-weight dropouts).
Here one full-range 32-bit draw serves two elements, so p is rounded to a multiple of 1/65536
(0.1 -> 0.100006; 0.5 exactly); kept elements are scaled by 1/(1-p) as upstream does. On a GPU it
is upstream `F.dropout` (fast there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 65536  # 16-bit draws


def _keep(n: int, p: float) -> torch.Tensor:
    """(n,) bool, True = kept, from n 16-bit draws (two per 32-bit draw of torch's CPU generator)."""
    # the full int32 range (random_() alone would draw [0, 2^31) and bias the high halves), so each
    # int16 half is uniform on [-32768, 32767]
    bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_(-(2**31), None).view(torch.int16)[:n]
    return bits >= round(p * _LEVELS) - _LEVELS // 2


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout with 16-bit draws on the CPU."""
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    keep = _keep(x.numel(), p).view(x.shape).to(x.dtype)
    if x.dtype in (torch.float32, torch.float64):
        # the mask becomes the scale itself (0 or 1/(1-p)): one multiply of x, and no bool -> float
        # cast forward or backward; fwd + bwd 1.6x faster on 256k elements, 1.2x on 2k (one thread),
        # the same bits. A 16-bit x keeps the scalar multiply: 1/(1-p) in bf16 would be off by 0.2 %.
        return x * keep.mul_(1.0 / (1.0 - p))
    return x * keep * (1.0 / (1.0 - p))


def dropouts(shapes: list[tuple[int, ...]], ps: list[float], like: torch.Tensor, training: bool):
    """The dropouts of one forward, by index: `drop(t, i)` drops t (shaped `shapes[i]`) with
    `ps[i]`. Why: at the student's sizes a dropout is six small aten calls whatever its size (draw,
    views, compare, cast, scale) and a layer has four; when they share p, one draw serves all of
    them and each costs one multiply. Otherwise (a GPU, 16-bit tensors, several p, eval) each is
    `dropout` on its own. The draws are the same per element as `dropout`'s, in another order."""
    p = ps[0]
    shared = training and like.device.type == "cpu" and like.dtype in (torch.float32, torch.float64)
    if not (shared and 0.0 < p < 1.0 and all(q == p for q in ps)):
        return lambda t, i: dropout(t, ps[i], training)
    sizes = [math.prod(s) for s in shapes]
    scale = _keep(sum(sizes), p).to(like.dtype).mul_(1.0 / (1.0 - p))  # (n,)
    masks = [m.view(s) for m, s in zip(scale.split(sizes), shapes, strict=True)]
    return lambda t, i: t * masks[i]


class Dropout(nn.Dropout):
    """`nn.Dropout` (same module, same state) whose forward is the fast `dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def use_fast_dropout(module: nn.Module) -> None:
    """Replace every plain `nn.Dropout` under `module` by `Dropout` (same p, same train/eval mode: a
    swap after `.eval()` must not start dropping)."""
    swaps = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Dropout
    ]
    for parent, name, child in swaps:
        setattr(parent, name, Dropout(child.p, child.inplace).train(child.training))
