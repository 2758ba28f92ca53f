"""Shared pieces of the Table III baselines: the model base class and masked tensor helpers.

Every torch baseline reads the student's padded encoding (`leader.student.model.encode_dataset`):
diag/proc/med (B, V, C) int64 code index + 1 (0 = pad), visit_mask (B, V) bool, visits
left-aligned oldest first, the CURRENT visit in the last real slot and its med slot empty (the
medications are the label). The trainer adds sample_id (B,) so a model can name a sample it
refuses. Models return {"logits": (B, |meds|)} and optionally "aux_loss" (a scalar the trainer
adds to the BCE) - nothing else is assumed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class BaselineModel(nn.Module):
    """Base: one output bias over drugs (`out_bias`), added once to the logits.

    The trainer sets it to logit(train frequency) before training: with a zero bias the
    sigmoid starts at 0.5 for ~130 mostly-absent drugs, the BCE is dominated by pushing every
    drug down and small models plateau there. Subclasses set `name` and `needs_history`."""

    name = "baseline"
    needs_history = False

    def __init__(self, n_med: int):
        super().__init__()
        self.n_med = n_med
        self.out_bias = nn.Parameter(torch.zeros(n_med))

    @torch.no_grad()
    def init_output_bias(self, freq: np.ndarray, eps: float = 1e-4) -> None:
        p = torch.as_tensor(np.clip(np.asarray(freq, dtype=np.float64), eps, 1 - eps), dtype=torch.float32)
        self.out_bias.copy_(torch.log(p) - torch.log1p(-p))

    @torch.no_grad()
    def init_embeddings(self) -> None:
        """Code embeddings start at N(0, 1/d) instead of torch's N(0, 1): a visit SUMS its 10-40 codes,
        and with unit-variance codes that sum saturates the GRUs and attention softmaxes from the first
        step (RETAIN stayed near the prior's PRAUC on the synthetic cohort until this was changed)."""
        for m in self.modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=m.embedding_dim**-0.5)
                if m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()

    def extra_inputs(self, ds, enc, train_idx: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sample arrays (aligned with enc rows) the model needs besides the encoding."""
        return {}

    def check_history(self, batch: dict[str, torch.Tensor]) -> None:
        """Multi-visit-only models refuse a sample without an earlier visit, naming it."""
        if not self.needs_history:
            return
        n = batch["visit_mask"].sum(1)
        bad = torch.nonzero(n < 2).flatten()
        if len(bad):
            i = int(bad[0])
            sid = int(batch["sample_id"][i]) if "sample_id" in batch else f"at batch row {i}"
            raise ValueError(
                f"{self.name} is multi-visit only: it needs at least one earlier visit of the same patient, "
                f"but sample {sid} has none ({len(bad)} such samples in this batch); train and evaluate it "
                f"on samples with history (train_baseline does)"
            )


def current_slot(visit_mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the current (last real) visit."""
    return visit_mask.sum(1).clamp_min(1) - 1


def take(x: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """x (B, V, ...) at per-row visit slot (B,) -> (B, ...)."""
    return x[torch.arange(x.shape[0], device=x.device), slot]


def code_sum(emb: nn.Embedding, codes: torch.Tensor, drop: nn.Module | None = None) -> torch.Tensor:
    """codes (..., C) (0 = pad, padding_idx=0 embeds to zeros) -> summed embedding (..., d)."""
    e = emb(codes)  # (..., C, d)
    if drop is not None:
        e = drop(e)
    return e.sum(-2)


def multi_hot(codes: torch.Tensor, n: int) -> torch.Tensor:
    """codes (..., C) code+1 (0 = pad) -> (..., n) float {0, 1}."""
    out = torch.zeros(*codes.shape[:-1], n + 1, device=codes.device)
    out.scatter_(-1, codes, 1.0)
    return out[..., 1:]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over real positions; a row with none gives all zeros (not NaN)."""
    s = scores.masked_fill(~mask, float("-inf"))
    any_ = mask.any(dim, keepdim=True)
    s = torch.where(any_, s, torch.zeros_like(s))
    return torch.softmax(s, dim) * mask.to(scores.dtype)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first `lengths[b]` steps, keeping padding at the end.
    x (B, V, ...) -> (B, V, ...); applying it twice is the identity on real steps."""
    B, V = x.shape[:2]
    j = torch.arange(V, device=x.device)[None, :]  # (1, V)
    L = lengths[:, None]
    src = torch.where(j < L, L - 1 - j, j)  # (B, V)
    return x[torch.arange(B, device=x.device)[:, None], src]


class CodeSetEncoder(nn.Module):
    """Transformer over the codes of one visit, masked-mean pooled: (N, C) codes -> (N, d)."""

    def __init__(self, n_codes: int, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.emb = nn.Embedding(n_codes + 1, d, padding_idx=0)
        layer = nn.TransformerEncoderLayer(d, n_heads, dim_feedforward=2 * d, dropout=dropout, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        mask = codes > 0  # (N, C)
        attend = mask.clone()
        attend[:, 0] |= ~mask.any(1)  # an empty set attends to slot 0 only (no NaN); zeroed below
        h = self.enc(self.emb(codes), src_key_padding_mask=~attend)  # (N, C, d)
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (N, d)
