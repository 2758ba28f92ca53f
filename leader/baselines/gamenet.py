"""GAMENet: graph-augmented memory networks.

Shang, Xiao, Ma, Sun. "GAMENet: Graph Augmented MEmory Networks for Recommending Medication
Combination." AAAI 2019.

Per visit, summed diagnosis and procedure embeddings (PyHealth sums; the authors' code averages)
go through one GRU each (d -> 2d, as the authors' code; PyHealth uses d -> d); a ReLU +
linear layer maps both states to the visit query q_t (d). The graph memory is a 2-layer GCN over
drugs on the EHR co-prescription graph (built from the TRAIN split only) minus, when a DDI pair
matrix is given, a learned scalar times a GCN over the DDI graph (the gated combination). The
output reads three facts: q_t, fact1 = attention of q_t over the graph memory, and fact2 = the
dynamic memory: attention of q_t over the queries of earlier visits (keys) whose prescriptions
(values, multi-hot) are mapped through the graph memory.

No-history samples: the original skips the dynamic memory (fact2 = fact1). As in the LEADER
paper's appendix, a sample without an earlier visit instead reads the K training visits most
similar to its current visit (cosine of diagnosis + procedure multi-hots; never its own patient)
as its history; their keys are the queries of those visits read on their own.

Differences from the original: batched and padded instead of one patient at a time; the DDI
loss with its annealed target and the DDI-rate-dependent loss switch are not implemented (no
DDI matrix ships with this project's data; pass one to get the DDI graph in the memory); the
multilabel margin term is the trainer's optional `margin_weight`; code embeddings start at N(0, 1/d)
and the logits' bias at the logit of each drug's train frequency; the DDI gate is a learned scalar
started at 0 (the original leaves it uninitialised); at most `max_visits` most recent visits are read.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from leader.baselines.common import BaselineModel, code_sum, current_slot, masked_softmax, multi_hot, take


def _row_normalise(adj: np.ndarray) -> np.ndarray:
    a = np.asarray(adj, dtype=np.float64) + np.eye(len(adj))
    return a / a.sum(1, keepdims=True)


class GCN(nn.Module):
    """Two graph convolutions over one-hot drug nodes: (M, M) graph -> (M, d) node memory."""

    def __init__(self, n_nodes: int, d: int, adj: np.ndarray, dropout: float):
        super().__init__()
        self.register_buffer("adj", torch.as_tensor(_row_normalise(adj), dtype=torch.float32))
        self.w1 = nn.Linear(n_nodes, d)  # input features are the identity, so this IS the first layer's X W
        self.w2 = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self) -> torch.Tensor:
        h = self.drop(torch.relu(self.adj @ self.w1.weight.T + self.w1.bias))  # (M, d)
        return self.adj @ self.w2(h)  # (M, d)


def ehr_graph(enc, train_idx: np.ndarray, n_med: int) -> np.ndarray:
    """Binary drug co-prescription graph (M, M) from the train samples' own prescriptions."""
    y = enc.labels[train_idx] > 0.5  # (N, M): each train visit once (its label)
    co = y.T.astype(np.float64) @ y.astype(np.float64)
    adj = (co > 0).astype(np.float32)
    np.fill_diagonal(adj, 0.0)
    return adj


def nearest_train_visits(ds, enc, train_idx: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """(N, k) enc rows of the train visits most similar to each sample's current visit
    (cosine on diag + proc multi-hot), other patients only; -1 where fewer exist."""
    n = len(enc.sample_ids)
    cur = enc.visit_mask.sum(1) - 1
    r = np.arange(n)
    nd = len(ds.vocabs["diag"])

    def rows(codes, off):  # (n, C) code+1 -> (row, col) pairs of the multi-hot
        i, j = np.nonzero(codes)
        return i, codes[i, j].astype(np.int64) - 1 + off

    di, dc = rows(enc.diag[r, cur], 0)
    pi, pc = rows(enc.proc[r, cur], nd)
    X = sp.csr_matrix(
        (np.ones(len(di) + len(pi), np.float32), (np.r_[di, pi], np.r_[dc, pc])), shape=(n, nd + len(ds.vocabs["proc"]))
    )
    X.data[:] = 1.0  # duplicates (if any) count once
    norm = np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel()).clip(1e-9)
    X = sp.diags(1.0 / norm) @ X
    pid = ds.samples().set_index("sample_id").loc[enc.sample_ids, "patient_id"].astype(str).to_numpy()
    Xt = X[train_idx].T.tocsc()
    out = np.full((n, k), -1, dtype=np.int64)
    need = np.flatnonzero(cur == 0)  # only samples without history read neighbours
    for s in range(0, len(need), chunk):
        q = need[s : s + chunk]
        sim = np.asarray((X[q] @ Xt).todense())  # (q, N_train)
        sim[pid[q][:, None] == pid[train_idx][None, :]] = -np.inf  # never the sample itself / its patient
        kk = min(k, sim.shape[1])
        top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk] if kk else np.zeros((len(q), 0), np.int64)
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, 1), 1), 1)
        ok = np.isfinite(np.take_along_axis(sim, top, 1))
        out[q, :kk] = np.where(ok, train_idx[top], -1)
    return out


class GAMENet(BaselineModel):
    name = "gamenet"
    needs_history = False

    def __init__(
        self,
        n_diag: int,
        n_proc: int,
        n_med: int,
        ehr_adj: np.ndarray,
        ddi_adj: np.ndarray | None = None,
        emb_dim: int = 64,
        dropout: float = 0.4,
        n_neighbors: int = 3,
    ):
        super().__init__(n_med)
        d = emb_dim
        self.n_neighbors = n_neighbors
        self.emb_diag = nn.Embedding(n_diag + 1, d, padding_idx=0)
        self.emb_proc = nn.Embedding(n_proc + 1, d, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.gru_diag = nn.GRU(d, 2 * d, batch_first=True)
        self.gru_proc = nn.GRU(d, 2 * d, batch_first=True)
        self.query = nn.Sequential(nn.ReLU(), nn.Linear(4 * d, d))
        self.ehr_gcn = GCN(n_med, d, ehr_adj, dropout)
        self.ddi_gcn = GCN(n_med, d, ddi_adj, dropout) if ddi_adj is not None else None
        self.inter = nn.Parameter(torch.zeros(1))  # weight of the DDI memory (the gate)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(3 * d, 2 * d), nn.ReLU(), nn.Linear(2 * d, n_med, bias=False))

    @classmethod
    def build(cls, ds, enc, train_idx, params: dict, ddi=None) -> GAMENet:
        if ddi is not None and np.shape(ddi) != (ds.n_meds, ds.n_meds):
            raise ValueError(f"gamenet: DDI matrix has shape {np.shape(ddi)}, expected ({ds.n_meds}, {ds.n_meds})")
        return cls(
            len(ds.vocabs["diag"]),
            len(ds.vocabs["proc"]),
            ds.n_meds,
            ehr_graph(enc, train_idx, ds.n_meds),
            None if ddi is None else np.asarray(ddi, dtype=np.float32),
            **params,
        )

    def extra_inputs(self, ds, enc, train_idx):
        nb = nearest_train_visits(ds, enc, train_idx, self.n_neighbors)  # (N, K) enc rows, -1 = none
        safe = np.maximum(nb, 0)
        cur = enc.visit_mask.sum(1) - 1
        cs = cur[safe]  # each neighbour's own current slot
        mask = nb >= 0
        keep = mask[..., None]
        return {
            "nb_diag": np.where(keep, enc.diag[safe, cs], 0),  # (N, K, C) the neighbour visit's codes
            "nb_proc": np.where(keep, enc.proc[safe, cs], 0),
            "nb_med": np.where(keep, enc.target_med[safe], 0),  # its prescription (its label)
            "nb_mask": mask,
        }

    def _queries(self, diag: torch.Tensor, proc: torch.Tensor) -> torch.Tensor:
        """(B, V, C) codes of a visit sequence -> (B, V, d) per-visit queries."""
        o1, _ = self.gru_diag(code_sum(self.emb_diag, diag, self.drop))  # (B, V, 2d)
        o2, _ = self.gru_proc(code_sum(self.emb_proc, proc, self.drop))
        return self.query(torch.cat([o1, o2], -1))  # (B, V, d)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        vm = batch["visit_mask"]  # (B, V)
        B, V = vm.shape
        q_all = self._queries(batch["diag"], batch["proc"])  # (B, V, d); right padding never feeds real steps
        cur = current_slot(vm)
        q = take(q_all, cur)  # (B, d)
        memory = self.ehr_gcn()  # (M, d)
        if self.ddi_gcn is not None:
            memory = memory - self.inter * self.ddi_gcn()
        fact1 = torch.softmax(q @ memory.T, -1) @ memory  # (B, d)
        # dynamic memory: earlier visits (keys = their queries, values = their prescriptions)
        keys, vals = q_all, multi_hot(batch["med"], self.n_med)  # (B, V, d), (B, V, M)
        kmask = vm & (torch.arange(V, device=vm.device)[None, :] < cur[:, None])  # (B, V)
        if "nb_mask" in batch and batch["nb_mask"].shape[1]:
            K = batch["nb_mask"].shape[1]
            nq = self._queries(batch["nb_diag"].flatten(0, 1)[:, None], batch["nb_proc"].flatten(0, 1)[:, None])
            keys = torch.cat([keys, nq.reshape(B, K, -1)], 1)  # (B, V+K, d)
            vals = torch.cat([vals, multi_hot(batch["nb_med"], self.n_med)], 1)  # (B, V+K, M)
            kmask = torch.cat([kmask, batch["nb_mask"] & ~kmask.any(1, keepdim=True)], 1)  # only without history
        w = masked_softmax(torch.einsum("bd,bkd->bk", q, keys), kmask)  # (B, V+K)
        fact2 = torch.einsum("bk,bkm->bm", w, vals) @ memory  # (B, d)
        fact2 = torch.where(kmask.any(1, keepdim=True), fact2, fact1)  # nothing to read: as the original
        return {"logits": self.head(torch.cat([q, fact1, fact2], -1)) + self.out_bias}
