"""LEADER(S): the distilled student (LEADER paper, Sec. 3.3).

Contract:
    StudentConfig (pydantic)                        model hyper-parameters
    encode_dataset(ds, cfg) -> EncodedDataset       padded numpy arrays for every sample (cached)
    LeaderStudent(cfg, n_diag, n_proc, n_med, profile_sizes) / LeaderStudent.for_dataset(ds, cfg)
    LeaderStudent.forward(batch: dict[str, Tensor]) -> dict with
        logits (B, |meds|)   sigmoid -> probabilities
        z      (B, d_model)  first-MLP output: feature-KD target side
        align_p (B, d_model) profile projection; align_m (B, d_model) target-med-set projection
                             (only when the batch carries "target_med")

Batch keys (from EncodedDataset.batch): diag/proc/med (B, V, C) int64 code index + 1 (0 = pad),
visit_mask (B, V) bool, profile (B, F) int64, optional target_med (B, C) int64 (+1, 0 = pad).
Visits are left-aligned, oldest first, the current visit last; only the MOST RECENT
`max_visits` are kept. The current visit's medications are the label, so its med slot is empty;
the profile pseudo-record is appended to the medication sequence, so a single-visit patient
still has a non-empty medication sequence. Padding never changes the output (masked attention
and masked mean pooling everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn

from leader.data.dataset import EHRDataset


class StudentConfig(BaseModel):
    d_embed: int = Field(64, ge=4, description="Code embedding width d_e.")
    d_model: int = Field(64, ge=4, description="Transformer / representation width d_t.")
    n_set_layers: int = Field(1, ge=1, description="Transformer layers in each code-set encoder.")
    n_visit_layers: int = Field(1, ge=1, description="Transformer layers in the visit encoder.")
    n_heads: int = Field(4, ge=1, description="Attention heads (must divide d_model).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in encoders and MLP.")
    max_visits: int = Field(10, ge=1, description="Keep at most this many MOST RECENT visits (current included).")
    max_codes: int = Field(64, ge=1, description="Truncate a code set to this many codes.")
    shared_visit_encoder: bool = Field(
        True, description="One visit encoder for diag/proc/med sequences (False: one per type, ablation)."
    )


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
        b = {
            "diag": torch.from_numpy(self.diag[idx].astype(np.int64)),
            "proc": torch.from_numpy(self.proc[idx].astype(np.int64)),
            "med": torch.from_numpy(self.med[idx].astype(np.int64)),
            "visit_mask": torch.from_numpy(self.visit_mask[idx]),
            "profile": torch.from_numpy(self.profile[idx]),
        }
        if with_target:
            b["target_med"] = torch.from_numpy(self.target_med[idx].astype(np.int64))
        return b


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
    labels = np.zeros((len(v), ds.n_meds), dtype=np.float32)
    mt = per_type["med"]
    rows = np.repeat(r, (mt > 0).sum(1))
    labels[rows, mt[mt > 0] - 1] = 1.0
    out = EncodedDataset(
        sample_ids=sids,
        split=samples.loc[sids, "split"].astype(str).to_numpy(),
        group=samples.loc[sids, "group"].astype(str).to_numpy(),
        diag=enc["diag"],
        proc=enc["proc"],
        med=enc["med"],
        visit_mask=vmask,
        profile=prof,
        target_med=mt,
        labels=labels,
    )
    # labels from the untruncated med lists (max_codes must not drop targets)
    full = ds.labels(sids)
    out.labels = full
    _CACHE[key] = out
    return out


# ----------------------------------------------------------------------------- modules
def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (..., L, d), mask (..., L) bool -> (..., d); an all-masked row gives zeros."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(-2) / m.sum(-2).clamp_min(1.0)


class _Encoder(nn.Module):
    """Transformer layers (MHA + FFN, residual + LayerNorm) then masked mean pooling."""

    def __init__(self, d: int, n_heads: int, n_layers: int, dropout: float):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, n_heads, dim_feedforward=2 * d, dropout=dropout, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x (N, L, d), mask (N, L) True = real. Rows with nothing real attend to position 0
        # only (avoids NaN softmax); their pooled output is zeroed by the mask.
        attend = mask.clone()
        attend[:, 0] |= ~mask.any(1)
        h = self.enc(x, src_key_padding_mask=~attend)  # (N, L, d)
        return _masked_mean(h, mask)


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
            {k: _Encoder(d, cfg.n_heads, cfg.n_set_layers, cfg.dropout) for k in ("diag", "proc", "med")}
        )
        n_visit = 1 if cfg.shared_visit_encoder else 3
        self.visit_enc = nn.ModuleList(
            [_Encoder(d, cfg.n_heads, cfg.n_visit_layers, cfg.dropout) for _ in range(n_visit)]
        )
        self.visit_pos = nn.Embedding(cfg.max_visits + 1, d)
        self.prof_emb = nn.ModuleList([nn.Embedding(max(1, s), cfg.d_embed) for s in profile_sizes])
        self.prof_proj = nn.Linear(cfg.d_embed * max(1, len(profile_sizes)), d)
        self.mlp1 = nn.Sequential(nn.Linear(3 * d, d), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.out = nn.Linear(d, n_med)
        self.align_p = nn.Linear(d, d)
        self.align_m = nn.Linear(d, d)

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

    def _sets(self, kind: str, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, V, C) -> per-visit set representation (B, V, d)."""
        B, V, C = codes.shape
        x = self.in_proj(self.emb[kind](codes.reshape(B * V, C)))  # (B*V, C, d)
        return self.set_enc[kind](x, codes.reshape(B * V, C) > 0).reshape(B, V, -1)

    def _visits(self, i: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = self.visit_pos(torch.arange(x.shape[1], device=x.device))[None]  # (1, V, d)
        enc = self.visit_enc[0 if self.cfg.shared_visit_encoder else i]
        return enc(x + pos, mask)  # (B, d)

    def profile_vector(self, profile: torch.Tensor) -> torch.Tensor:
        if len(self.prof_emb) == 0:
            return self.prof_proj(torch.zeros(profile.shape[0], self.prof_proj.in_features, device=profile.device))
        parts = [e(profile[:, i]) for i, e in enumerate(self.prof_emb)]
        return self.prof_proj(torch.cat(parts, -1))  # (B, d)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        vm = batch["visit_mask"]  # (B, V)
        dg = self._sets("diag", batch["diag"])  # (B, V, d)
        pr = self._sets("proc", batch["proc"])
        md = self._sets("med", batch["med"])
        med_mask = vm & (batch["med"] > 0).any(-1)  # past visits with medications
        p = self.profile_vector(batch["profile"])  # (B, d)
        D = self._visits(0, dg, vm)  # (B, d)
        P = self._visits(1, pr, vm)
        md = torch.cat([md, p[:, None, :]], 1)  # (B, V+1, d): profile pseudo-record appended
        mm = torch.cat([med_mask, torch.ones_like(med_mask[:, :1])], 1)
        M = self._visits(2, md, mm)
        z = self.mlp1(torch.cat([D, P, M], -1))  # (B, d)
        out = {"logits": self.out(z), "z": z, "profile": p}
        if "target_med" in batch:
            t = batch["target_med"]  # (B, C)
            m = self._sets("med", t[:, None, :])[:, 0]  # (B, d)
            out["align_p"] = self.align_p(p)
            out["align_m"] = self.align_m(m)
        return out
