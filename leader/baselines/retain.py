"""RETAIN: reverse-time attention over visits.

Choi, Bahadori, Sun, Kulas, Schuetz, Stewart. "RETAIN: An Interpretable Predictive Model for
Healthcare using Reverse Time Attention Mechanism." NeurIPS 2016.

Each visit is the sum of its code embeddings v_i. Two GRUs read the visits from the CURRENT one
backwards (reverse time); the first gives a scalar visit weight alpha_i (softmax over visits),
the second a per-dimension gate beta_i = tanh(W h_i). The context c = sum_i alpha_i beta_i * v_i
feeds one linear layer to the drug logits. It uses only the current visit when there is no
history, so it serves single- and multi-visit samples alike.

Differences from the original: the task is multi-label medication recommendation (sigmoid per
drug, BCE) instead of a binary outcome; inputs are diagnosis + procedure codes of every visit up
to and including the current one (two embedding tables summed; GAMENet's RETAIN baseline also
feeds past medications - not here, as in the issue's spec, as PyHealth's drug-recommendation
RETAIN); code embeddings start at N(0, 1/d) and the logits' bias at the logit of each drug's train
frequency (the shared trainer); at most `max_visits` most recent visits are read. GAMENet's RETAIN
baseline reads visits in forward order and its softmax runs over a size-1 axis (every alpha is 1); here alpha is a real
softmax over the visits, read from the current one backwards, as in the RETAIN paper.
"""

from __future__ import annotations

import torch
from torch import nn

from leader.baselines.common import BaselineModel, code_sum, masked_softmax, reverse_padded


class RETAIN(BaselineModel):
    name = "retain"
    needs_history = False

    def __init__(self, n_diag: int, n_proc: int, n_med: int, emb_dim: int = 64, dropout: float = 0.5):
        super().__init__(n_med)
        d = emb_dim
        self.emb_diag = nn.Embedding(n_diag + 1, d, padding_idx=0)
        self.emb_proc = nn.Embedding(n_proc + 1, d, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.alpha_gru = nn.GRU(d, d, batch_first=True)
        self.beta_gru = nn.GRU(d, d, batch_first=True)
        self.alpha_li = nn.Linear(d, 1)
        self.beta_li = nn.Linear(d, d)
        self.out = nn.Linear(d, n_med, bias=False)  # bias lives in out_bias

    @classmethod
    def build(cls, ds, enc, train_idx, params: dict, ddi=None) -> RETAIN:
        return cls(len(ds.vocabs["diag"]), len(ds.vocabs["proc"]), ds.n_meds, **params)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        vm = batch["visit_mask"]  # (B, V)
        v = self.drop(code_sum(self.emb_diag, batch["diag"]) + code_sum(self.emb_proc, batch["proc"]))  # (B, V, d)
        lengths = vm.sum(1)
        vr = reverse_padded(v, lengths)  # (B, V, d): current visit first
        g, _ = self.alpha_gru(vr)  # (B, V, d); padding sits after the real steps, so it never feeds them
        h, _ = self.beta_gru(vr)
        alpha = masked_softmax(self.alpha_li(g).squeeze(-1), vm)  # (B, V), mask is left-aligned in both orders
        beta = torch.tanh(self.beta_li(h))  # (B, V, d)
        c = (alpha.unsqueeze(-1) * beta * vr).sum(1)  # (B, d)
        return {"logits": self.out(self.drop(c)) + self.out_bias}
