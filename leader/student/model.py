"""LEADER(S): the distilled student (LEADER paper, Sec. 3.3).

Contract:
    StudentConfig (pydantic)                        model hyper-parameters
    encode_dataset(ds, cfg) -> EncodedDataset       padded numpy arrays for every sample (cached)
    LeaderStudent(cfg, n_diag, n_proc, n_med, profile_sizes) / LeaderStudent.for_dataset(ds, cfg)
    LeaderStudent.forward(batch: dict[str, Tensor]) -> dict with
        logits (B, |meds|)   sigmoid -> probabilities
        z      (B, d_model)  first-MLP output (after ReLU, dropout): feature-KD student side
        z_pre  (B, d_model)  the same layer before ReLU (Eq. 9's W1 x + b1, loss.kd_input)
        align_p (B, d_model) profile projection; align_m (B, d_model) target-med-set projection
                             (only when the batch carries "target_med")

Batch keys (from EncodedDataset.batch): diag/proc/med (B, V, C) int64 code index + 1 (0 = pad),
visit_mask (B, V) bool, profile (B, F) int64, optional target_med (B, C) int64 (+1, 0 = pad).
Visits are left-aligned, oldest first, the current visit last; only the MOST RECENT
`max_visits` are kept. The current visit's medications are the label, so its med slot is empty;
the profile pseudo-record is appended to the medication sequence, so a single-visit patient
still has a non-empty medication sequence. Visit positions count back from the current visit
(0 = current; the profile has its own position), so the current visit looks the same to the
visit encoder whatever the length of the history. Padding never changes the output (masked
attention and pooling everywhere; batches are trimmed to their longest history and code set, and
empty sets skip the set encoders).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leader.config.student import StudentConfig
from leader.data.dataset import EHRDataset
from leader.dropout import Dropout
from leader.student.layers import TransformerLayer


# ----------------------------------------------------------------------------- encoding
@dataclass
class EncodedDataset:
    """Per-sample padded arrays in `ds.samples()` order (all splits)."""

    sample_ids: np.ndarray  # (N,) int64
    split: np.ndarray  # (N,) str
    group: np.ndarray  # (N,) str
    diag: np.ndarray  # (N, V, C) int32, code+1, 0 = pad
    proc: np.ndarray
    med: np.ndarray  # current visit's slot is empty (it is the label)
    visit_mask: np.ndarray  # (N, V) bool
    profile: np.ndarray  # (N, F) int64
    target_med: np.ndarray  # (N, C) int32, code+1
    labels: np.ndarray  # (N, |meds|) float32

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def batch(self, idx: np.ndarray, with_target: bool = False) -> dict[str, torch.Tensor]:
        """Padding is trimmed to the batch's longest history and code set (most patients have one
        visit and short sets; padding never changes the output, it only costs time)."""
        vm = self.visit_mask[idx]  # (B, V)
        v = max(1, int(vm.sum(1).max()) if len(idx) else 1)
        b = {k: _trim_codes(getattr(self, k)[idx][:, :v]) for k in ("diag", "proc", "med")}
        b["visit_mask"] = torch.from_numpy(vm[:, :v])
        b["profile"] = torch.from_numpy(self.profile[idx])
        if with_target:
            b["target_med"] = _trim_codes(self.target_med[idx])
        return b


def _trim_codes(a: np.ndarray) -> torch.Tensor:
    """(..., C) code+1 array -> int64 tensor without the trailing all-pad columns (>= 1 kept)."""
    filled = (a > 0).reshape(-1, a.shape[-1]).any(0)
    c = max(1, int(np.flatnonzero(filled)[-1]) + 1 if filled.any() else 1)
    return torch.from_numpy(a[..., :c].astype(np.int64))


def _pad_sets(sets: list, max_codes: int) -> np.ndarray:
    """list of code lists -> (n, C) int32 of code+1 (0 = pad), C = min(longest, max_codes)."""
    lens = np.fromiter((min(len(s), max_codes) for s in sets), dtype=np.int64, count=len(sets))
    c = max(1, int(lens.max()) if len(lens) else 1)
    out = np.zeros((len(sets), c), dtype=np.int32)
    flat = (
        np.concatenate([np.asarray(s[:max_codes], dtype=np.int64) for s in sets])
        if len(sets)
        else np.zeros(0, np.int64)
    )
    rows = np.repeat(np.arange(len(sets)), lens)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
    out[rows, cols] = flat + 1
    return out


_CACHE: dict[tuple, EncodedDataset] = {}


def encode_dataset(ds: EHRDataset, cfg: StudentConfig) -> EncodedDataset:
    """Encode every sample once (vectorised); cached per (dataset fingerprint, truncation)."""
    key = (ds.fingerprint, id(ds), cfg.max_visits, cfg.max_codes)
    if key in _CACHE:
        return _CACHE[key]
    v = ds.visits.reset_index(drop=True)
    order = np.lexsort((v["visit_index"].to_numpy(), v["patient_id"].astype(str).to_numpy()))
    v = v.iloc[order].reset_index(drop=True)
    per_type = {k: _pad_sets(v[k].to_list(), cfg.max_codes) for k in ("diag", "proc", "med")}  # (n_visits, C)
    pid = v["patient_id"].astype(str).to_numpy()
    first = np.r_[True, pid[1:] != pid[:-1]]
    start_row = np.maximum.accumulate(np.where(first, np.arange(len(v)), 0))  # patient's first row
    r = np.arange(len(v))
    V = cfg.max_visits
    lo = np.maximum(start_row, r - V + 1)  # most recent V visits
    n_hist = r - lo + 1  # (n,)
    j = np.arange(V)[None, :]
    vidx = lo[:, None] + j  # (n, V)
    vmask = j < n_hist[:, None]
    vidx = np.where(vmask, vidx, 0)
    enc = {}
    for k, arr in per_type.items():
        e = arr[vidx] * vmask[:, :, None]  # (n, V, C)
        enc[k] = e.astype(np.int32)
    cur = n_hist - 1  # slot of the current visit
    enc["med"][r, cur] = 0  # the label must not leak into the input
    prof = (
        np.stack([v[f].to_numpy(dtype=np.int64) for f in ds.profile_features], 1)
        if ds.profile_features
        else np.zeros((len(v), 0), np.int64)
    )
    samples = ds.samples().set_index("sample_id")
    sids = v["visit_id"].to_numpy(dtype=np.int64)
    # every visit is encoded (it is some sample's history); only the samples' own rows are kept
    # (all of them per visit; one a patient under the last-visit protocol)
    keep = np.flatnonzero(np.isin(sids, samples.index.to_numpy()))
    sids = sids[keep]
    out = EncodedDataset(
        sample_ids=sids,
        split=samples.loc[sids, "split"].astype(str).to_numpy(),
        group=samples.loc[sids, "group"].astype(str).to_numpy(),
        diag=enc["diag"][keep],
        proc=enc["proc"][keep],
        med=enc["med"][keep],
        visit_mask=vmask[keep],
        profile=prof[keep],
        target_med=per_type["med"][keep],
        labels=ds.labels(sids),  # from the untruncated med lists (max_codes must not drop targets)
    )
    _CACHE[key] = out
    return out


# ----------------------------------------------------------------------------- modules
def _masked_pool(x: torch.Tensor, mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """x (..., L, d), mask (..., L) bool -> (..., d) mean or sum; an all-masked row gives zeros."""
    m = mask.unsqueeze(-1).to(x.dtype)
    s = (x * m).sum(-2)
    return s if how == "sum" else s / m.sum(-2).clamp_min(1.0)


class _Encoder(nn.Module):
    """Transformer layers (MHA + FFN, residual + LayerNorm; leader.student.layers) then masked
    mean or sum pooling (or the output at one position)."""

    def __init__(self, d: int, n_heads: int, n_layers: int, dropout: float, pooling: str = "mean"):
        super().__init__()
        self.pooling = pooling
        layer = TransformerLayer(d, n_heads, dim_feedforward=2 * d, dropout=dropout, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)  # for its layers' names

    def forward(self, x: torch.Tensor, mask: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        # x (N, L, d), mask (N, L) True = real; `at` (N,) picks one output position instead of
        # pooling. Rows with nothing real attend to position 0 only (avoids NaN softmax); their
        # pooled output is zeroed by the mask.
        attend = mask.clone()
        attend[:, 0] |= ~mask.any(1)
        h, pad = x, ~attend
        for layer in self.enc.layers:
            h = layer(h, pad)  # (N, L, d)
        if at is not None:
            return h[torch.arange(h.shape[0], device=h.device), at]  # (N, d)
        return _masked_pool(h, mask, self.pooling)


class LeaderStudent(nn.Module):
    def __init__(self, cfg: StudentConfig, n_diag: int, n_proc: int, n_med: int, profile_sizes: list[int]):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} must be divisible by n_heads {cfg.n_heads}")
        self.cfg = cfg
        self.n_med = n_med
        d = cfg.d_model
        self.emb = nn.ModuleDict(
            {
                k: nn.Embedding(n + 1, cfg.d_embed, padding_idx=0)
                for k, n in (("diag", n_diag), ("proc", n_proc), ("med", n_med))
            }
        )
        self.in_proj = nn.Linear(cfg.d_embed, d) if cfg.d_embed != d else nn.Identity()
        self.set_enc = nn.ModuleDict(
            {
                k: _Encoder(d, cfg.n_heads, cfg.n_set_layers, cfg.dropout, cfg.set_pooling)
                for k in ("diag", "proc", "med")
            }
        )
        n_visit = 1 if cfg.shared_visit_encoder else 3
        self.visit_enc = nn.ModuleList(
            [_Encoder(d, cfg.n_heads, cfg.n_visit_layers, cfg.dropout) for _ in range(n_visit)]
        )
        self.visit_pos = nn.Embedding(cfg.max_visits + 1, d)
        self.prof_emb = nn.ModuleList([nn.Embedding(max(1, s), cfg.d_embed) for s in profile_sizes])
        self.prof_proj = nn.Linear(cfg.d_embed * max(1, len(profile_sizes)), d)
        self.mlp1 = nn.Sequential(nn.Linear(3 * d, d), nn.ReLU(), Dropout(cfg.dropout))
        self.out = nn.Linear(d, n_med)
        self.align_p = nn.Linear(d, d)
        self.align_m = nn.Linear(d, d)
        if cfg.wide:
            self.wide = nn.ModuleDict(
                {
                    k: nn.EmbeddingBag(n + 1, n_med, mode="sum", padding_idx=0)
                    for k, n in (("diag", n_diag), ("proc", n_proc), ("med", n_med))
                }
            )
            for e in self.wide.values():
                nn.init.zeros_(e.weight)

    def init_output_bias(self, freq: np.ndarray) -> None:
        """Output bias = logit(train frequency of each drug): the model starts AT the
        drug-frequency prior instead of p = 0.5 everywhere (which cost the first ~5 epochs a
        plateau spent unlearning it)."""
        f = np.clip(np.asarray(freq, dtype=np.float64), 1e-4, 1 - 1e-4)
        with torch.no_grad():
            self.out.bias.copy_(torch.from_numpy(np.log(f / (1 - f))).to(self.out.bias.dtype))

    @classmethod
    def for_dataset(cls, ds: EHRDataset, cfg: StudentConfig) -> LeaderStudent:
        return cls(
            cfg, len(ds.vocabs["diag"]), len(ds.vocabs["proc"]), ds.n_meds, [len(c) for c in ds.profile_vocabs.values()]
        )

    def _sets(self, kind: str, codes: torch.Tensor, branch_free: bool = False) -> torch.Tensor:
        """codes (B, V, C) -> per-visit set representation (B, V, d); empty sets (padding visits,
        the current visit's med slot) are zeros and skip the encoder. `branch_free` computes the
        same without a data-dependent branch, so a compiler sees one graph (leader.student.serve):
        one dummy non-empty set is appended so the encoder never gets zero rows, then dropped."""
        B, V, C = codes.shape
        flat = codes.reshape(B * V, C)
        if branch_free:
            idx = (flat > 0).any(-1).nonzero().squeeze(1)  # (n,) rows of the non-empty sets
            sub = torch.cat([flat.index_select(0, idx), torch.ones_like(flat[:1])], 0)  # (n+1, C)
            h = self.set_enc[kind](self.in_proj(self.emb[kind](sub)), sub > 0)[:-1]  # (n, d)
            out = torch.zeros(B * V, self.cfg.d_model, dtype=h.dtype, device=codes.device)
            return out.index_copy(0, idx, h).reshape(B, V, -1)
        keep = (flat > 0).any(-1)  # (B*V,)
        out = torch.zeros(B * V, self.cfg.d_model, dtype=self.out.weight.dtype, device=codes.device)
        if keep.any():
            x = self.in_proj(self.emb[kind](flat[keep]))  # (n, C, d)
            out[keep] = self.set_enc[kind](x, flat[keep] > 0)
        return out.reshape(B, V, -1)

    def _visits(self, i: int, x: torch.Tensor, mask: torch.Tensor, recency: torch.Tensor, at: torch.Tensor):
        """x (B, L, d) -> (B, d). Positions count back from the current visit (0 = current), so
        'the current visit' is the same position for every patient whatever its history length;
        `at` (B,) is the slot read under visit_pooling='current'."""
        enc = self.visit_enc[0 if self.cfg.shared_visit_encoder else i]
        if self.cfg.visit_positions:
            x = x + self.visit_pos(recency)  # (B, L, d)
        return enc(x, mask, at if self.cfg.visit_pooling == "current" else None)

    def profile_vector(self, profile: torch.Tensor) -> torch.Tensor:
        if len(self.prof_emb) == 0:
            return self.prof_proj(torch.zeros(profile.shape[0], self.prof_proj.in_features, device=profile.device))
        parts = [e(profile[:, i]) for i, e in enumerate(self.prof_emb)]
        return self.prof_proj(torch.cat(parts, -1))  # (B, d)

    def _wide(self, batch: dict[str, torch.Tensor], cur: torch.Tensor) -> torch.Tensor:
        """Sum of per-code weight rows (B, |meds|) for the current diag/proc sets and the previous
        visit's drugs (none for a first visit)."""
        rows = torch.arange(cur.shape[0], device=cur.device)
        prev = batch["med"][rows, (cur - 1).clamp_min(0)] * (cur > 0)[:, None]  # (B, C)
        sets = {"diag": batch["diag"][rows, cur], "proc": batch["proc"][rows, cur], "med": prev}
        return sum(self.wide[k](v) for k, v in sets.items())

    def _encode_visits(self, seqs, masks, positions, at) -> list[torch.Tensor]:
        """The three visit sequences (B, L_i, d) -> three (B, d). A shared encoder reads them as one
        batch (3B rows, padded to the longest with masked positions), so its layers run once per
        step, not three times; split encoders read one each."""
        if not self.cfg.shared_visit_encoder:
            return [self._visits(i, *a) for i, a in enumerate(zip(seqs, masks, positions, at, strict=True))]
        L = seqs[-1].shape[1]  # the medication sequence is the longest: V + 1 with the profile
        x = torch.cat([F.pad(x, (0, 0, 0, L - x.shape[1])) for x in seqs])  # (3B, L, d)
        mask = torch.cat([F.pad(m, (0, L - m.shape[1]), value=False) for m in masks])  # (3B, L)
        pos = torch.cat([F.pad(r, (0, L - r.shape[1])) for r in positions])
        return list(self._visits(0, x, mask, pos, torch.cat(at)).unflatten(0, (3, -1)).unbind(0))  # 3 x (B, d)

    def _med_sets(self, batch: dict[str, torch.Tensor], branch_free: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Past visits' medication sets (B, V, d) and, when the batch carries it, the target set
        (B, d) for the profile alignment: one pass of the medication set encoder over both."""
        med = batch["med"]  # (B, V, C)
        if "target_med" not in batch:
            return self._sets("med", med, branch_free), None
        t = batch["target_med"]  # (B, C')
        C = max(med.shape[2], t.shape[1])
        both = torch.cat([F.pad(med, (0, C - med.shape[2])), F.pad(t, (0, C - t.shape[1]))[:, None]], 1)
        h = self._sets("med", both, branch_free)  # (B, V+1, d)
        return h[:, :-1], h[:, -1]

    def forward(self, batch: dict[str, torch.Tensor], branch_free: bool = False) -> dict[str, torch.Tensor]:
        """`branch_free`: the path leader.student.serve compiles (same outputs, see `_sets`)."""
        vm = batch["visit_mask"]  # (B, V)
        dg = self._sets("diag", batch["diag"], branch_free)  # (B, V, d)
        pr = self._sets("proc", batch["proc"], branch_free)
        md, target = self._med_sets(batch, branch_free)  # (B, V, d), (B, d) or None
        med_mask = vm & (batch["med"] > 0).any(-1)  # past visits with medications
        p = self.profile_vector(batch["profile"])  # (B, d)
        cur = vm.sum(1) - 1  # (B,) slot of the current visit (visits are left-aligned)
        j = torch.arange(vm.shape[1], device=vm.device)[None]  # (1, V)
        recency = (cur[:, None] - j).clamp(0, self.cfg.max_visits - 1)  # (B, V) 0 = current
        md = torch.cat([md, p[:, None, :]], 1)  # (B, V+1, d): profile pseudo-record appended
        mm = torch.cat([med_mask, torch.ones_like(med_mask[:, :1])], 1)
        prof_pos = torch.full_like(recency[:, :1], self.cfg.max_visits)  # its own position
        last = torch.full_like(cur, md.shape[1] - 1)
        D, P, M = self._encode_visits(  # each (B, d)
            (dg, pr, md), (vm, vm, mm), (recency, recency, torch.cat([recency, prof_pos], 1)), (cur, cur, last)
        )
        z_pre = self.mlp1[0](torch.cat([D, P, M], -1))  # (B, d): W1 x + b1, Eq. 9's input
        z = self.mlp1[2](self.mlp1[1](z_pre))  # (B, d): after ReLU and dropout
        logits = self.out(z)  # (B, |meds|)
        if self.cfg.wide:
            logits = logits + self._wide(batch, cur)
        out = {"logits": logits, "z": z, "z_pre": z_pre, "profile": p}
        if target is not None:
            out["align_p"] = self.align_p(p)
            out["align_m"] = self.align_m(target)
        return out
