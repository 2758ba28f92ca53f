"""COGNet (simplified): conditional generation with a copy-or-generate choice.

Wu, Qian, Wang, Gao, Wu. "Conditional Generation Net for Medication Recommendation." WWW 2022.

Transformer encoders read the codes of each visit (diagnoses, procedures, and the medications of
earlier visits); a visit's representation is a linear map of its pooled diagnosis and procedure
codes. The current visit attends over the earlier visits (scaled dot product), which gives
(i) the COPY distribution: per drug, the attention mass of the earlier visits that prescribed it,
and (ii) a context vector from the earlier visits' medication sets. A generator MLP scores every
drug from [current visit; context], and a gate g in (0, 1) mixes them:
p(drug) = g * copy(drug) + (1 - g) * sigmoid(generate(drug)). Multi-visit only (there is
nothing to copy from without an earlier visit).

Differences from the original (a simplified, NON-autoregressive version, as the issue allows):
the original decodes the drug set token by token with a transformer decoder, recomputing the
copy and gate at each step and feeding already-chosen drugs back (plus beam search and a DDI
term); here one step scores all drugs at once, so drugs are independent given the input and
there is no ordering. The copy attention is visit-level only (the original also attends over the
drugs inside each earlier visit). The model's output probability is turned back into a logit
(clamped) so the shared BCE trainer applies; the generator's bias starts at logit(train
frequency).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from leader.baselines.common import BaselineModel, CodeSetEncoder, current_slot, masked_softmax, multi_hot, take

_EPS = 1e-6


class COGNet(BaselineModel):
    name = "cognet"
    needs_history = True

    def __init__(self, n_diag: int, n_proc: int, n_med: int, emb_dim: int = 64, n_heads: int = 4, dropout: float = 0.3):
        super().__init__(n_med)
        d = emb_dim
        if d % n_heads:
            raise ValueError(f"cognet: emb_dim {d} must be divisible by n_heads {n_heads}")
        self.diag_enc = CodeSetEncoder(n_diag, d, n_heads, dropout)
        self.proc_enc = CodeSetEncoder(n_proc, d, n_heads, dropout)
        self.med_enc = CodeSetEncoder(n_med, d, n_heads, dropout)
        self.visit = nn.Linear(2 * d, d)
        self.drop = nn.Dropout(dropout)
        self.gen = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.ReLU(), nn.Linear(2 * d, n_med, bias=False))
        self.gate = nn.Linear(2 * d, 1)

    @classmethod
    def build(cls, ds, enc, train_idx, params: dict, ddi=None) -> COGNet:
        return cls(len(ds.vocabs["diag"]), len(ds.vocabs["proc"]), ds.n_meds, **params)

    def _per_visit(self, encoder: CodeSetEncoder, codes: torch.Tensor) -> torch.Tensor:
        """Encode only the non-empty code sets (most (B, V) slots are padding): (B, V, C) -> (B, V, d)."""
        B, V, C = codes.shape
        flat = codes.reshape(B * V, C)
        real = torch.nonzero((flat > 0).any(1)).flatten()  # (R,)
        out = torch.zeros(B * V, self.visit.in_features // 2, device=codes.device)
        if len(real):
            out = out.index_copy(0, real, encoder(flat[real]))  # empty sets stay zero, as the encoder gives
        return out.reshape(B, V, -1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_history(batch)
        vm = batch["visit_mask"]  # (B, V)
        V = vm.shape[1]
        u = self.visit(
            torch.cat(
                [self._per_visit(self.diag_enc, batch["diag"]), self._per_visit(self.proc_enc, batch["proc"])], -1
            )
        )  # (B, V, d)
        cur = current_slot(vm)
        q = take(u, cur)  # (B, d)
        past = vm & (torch.arange(V, device=vm.device)[None, :] < cur[:, None])  # (B, V) earlier visits
        a = masked_softmax(torch.einsum("bd,bvd->bv", q, u) / math.sqrt(u.shape[-1]), past)  # (B, V)
        copy = torch.einsum("bv,bvm->bm", a, multi_hot(batch["med"], self.n_med))  # (B, M) in [0, 1]
        ctx = torch.einsum("bv,bvd->bd", a, self._per_visit(self.med_enc, batch["med"]))  # (B, d)
        z = self.drop(torch.cat([q, ctx], -1))  # (B, 2d)
        g = torch.sigmoid(self.gate(z))  # (B, 1) copy share
        p = g * copy + (1 - g) * torch.sigmoid(self.gen(z) + self.out_bias)  # (B, M)
        p = p.clamp(_EPS, 1 - _EPS)
        return {"logits": torch.log(p) - torch.log1p(-p)}
