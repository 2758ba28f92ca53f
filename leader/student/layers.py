"""The student's Transformer layer, written for small tensors on a CPU core.

Why not `nn.TransformerEncoderLayer.forward` as it is: measured on the quickstart's student
(d 32, batch 32, one thread; torch.profiler over one epoch), a training step spent 21 %
of its time in `aten::bernoulli_` (dropout draws one Mersenne-Twister number per element, ~6 ns
each) and 14 % inside `F.multi_head_attention_forward` (py-spy); with this module a step is 1.29x
faster (`python scripts/bench_student.py --d-model 32 --batch-size 32`, student.json). In eval
mode upstream takes its fused fast path, `aten::_transformer_encoder_layer_fwd`, which
AOTInductor cannot compile (it falls back to a proxy call per layer; leader.student.serve).

`TransformerLayer` IS an `nn.TransformerEncoderLayer`: same constructor, parameters, names and
initialisation (checkpoints and seeds are unchanged), post-norm, ReLU, dropout at the same four
places. Only `forward` differs: plain ops (one in-projection, the attention written out, the
FFN), so eval outputs equal upstream's to float rounding (tests/unit/test_student_layers.py).

Dropout is `leader.dropout`'s (16-bit draws on the CPU, upstream `F.dropout` on a GPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leader.dropout import dropouts


def softmax_lastdim(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, written out. Why: torch 2.13's CPU softmax kernel is 13-20x slower
    when that axis is not a multiple of 16 (one thread, 90 x 2 x 13 x 13: 525 us vs 41 us at
    x 16; `exp` of the same tensor 27 us), and the student's axes are code-set and history lengths
    (6-20). Written out, forward + backward 224-279 us vs 789 us. The max is a constant shift (the
    softmax does not change), so it carries no gradient. Every row needs one finite entry."""
    e = (x - x.detach().amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def _attention(q, k, v, attend: torch.Tensor, drop) -> torch.Tensor:
    """q, k, v (N, h, L, dh), attend (N, 1, 1, L) True = may attend -> (N, h, L, dh). Written out
    rather than `scaled_dot_product_attention`, whose CPU kernel has the same slow softmax (90 x 2 x
    13 x 16 with a mask: 553 us a forward); `drop(w)` drops the attention weights."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (N, h, L, L)
    w = softmax_lastdim(scores.masked_fill(~attend, float("-inf")))
    return drop(w) @ v


class TransformerLayer(nn.TransformerEncoderLayer):
    """Post-norm Transformer encoder layer (batch_first); `forward(x, pad)` with x (N, L, d) and
    pad (N, L) True = padding. Every row must attend to at least one position."""

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        N, L, d = x.shape
        a = self.self_attn
        h, f = a.num_heads, self.linear1.out_features
        drop = dropouts(  # attention weights, attention output, FFN hidden, FFN output
            [(N, h, L, L), (N, L, d), (N, L, f), (N, L, d)],
            [a.dropout, self.dropout1.p, self.dropout.p, self.dropout2.p],
            x,
            self.training,
        )
        qkv = F.linear(x, a.in_proj_weight, a.in_proj_bias).view(N, L, 3, h, d // h)  # (N, L, 3, h, dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, h, L, dh)
        o = _attention(q, k, v, ~pad[:, None, None, :], lambda w: drop(w, 0)).transpose(1, 2).reshape(N, L, d)
        x = self.norm1(x + drop(a.out_proj(o), 1))
        ff = self.linear2(drop(F.relu(self.linear1(x)), 2))  # (N, L, f)
        return self.norm2(x + drop(ff, 3))  # (N, L, d)
