"""The student's forward batches what shares weights: the shared visit encoder reads the diagnosis,
procedure and medication sequences as one batch, and the medication set encoder reads the past
sets and the target set as one. Each must give what one call per input gives; the attention's
written-out softmax must be torch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leader.config.student import StudentConfig
from leader.student.layers import softmax_lastdim
from leader.student.model import LeaderStudent, encode_dataset


def _one_call_each(m: LeaderStudent, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The forward with one encoder call per sequence and per set (the unbatched reference)."""
    vm = b["visit_mask"]
    dg, pr, md = (m._sets(k, b[k]) for k in ("diag", "proc", "med"))
    p = m.profile_vector(b["profile"])
    cur = vm.sum(1) - 1
    recency = (cur[:, None] - torch.arange(vm.shape[1])[None]).clamp(0, m.cfg.max_visits - 1)
    mm = torch.cat([vm & (b["med"] > 0).any(-1), torch.ones_like(vm[:, :1])], 1)
    md = torch.cat([md, p[:, None]], 1)
    pos = torch.cat([recency, torch.full_like(recency[:, :1], m.cfg.max_visits)], 1)
    D = m._visits(0, dg, vm, recency, cur)
    P = m._visits(1, pr, vm, recency, cur)
    M = m._visits(2, md, mm, pos, torch.full_like(cur, md.shape[1] - 1))
    target = m._sets("med", b["target_med"][:, None])[:, 0]
    return {"logits": m.out(m.mlp1(torch.cat([D, P, M], -1))), "align_m": m.align_m(target)}


@pytest.mark.parametrize("shared,pooling", [(True, "mean"), (True, "current"), (False, "mean")])
def test_batched_encoders_give_what_one_call_each_gives(random_ds, shared, pooling):
    cfg = StudentConfig(d_embed=16, d_model=16, n_heads=2, dropout=0.0, max_visits=3, shared_visit_encoder=shared)
    cfg = cfg.model_copy(update={"visit_pooling": pooling})
    enc = encode_dataset(random_ds, cfg)
    torch.manual_seed(0)
    m = LeaderStudent.for_dataset(random_ds, cfg).eval()
    idx = np.concatenate([np.flatnonzero(enc.visit_mask.sum(1) == k)[:5] for k in (1, 2, 3)])  # every history length
    b = enc.batch(idx, with_target=True)
    with torch.no_grad():
        got, want = m(b), _one_call_each(m, b)
        got_free = m(b, branch_free=True)
    for k in want:
        assert (got[k] - want[k]).abs().max().item() < 1e-5, k
        assert (got_free[k] - want[k]).abs().max().item() < 1e-5, k


@pytest.mark.parametrize("L", [1, 6, 13, 16, 21])
def test_written_out_softmax_is_torchs_with_masked_entries(L):
    g = torch.Generator().manual_seed(L)
    x = torch.randn(7, 2, 5, L, generator=g) * 4
    mask = torch.rand(7, 1, 1, L, generator=g) < 0.4
    mask[..., 0] = False  # one finite entry a row
    x = x.masked_fill(mask, float("-inf"))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    up = torch.randn(x.shape, generator=g)
    ya, yb = softmax_lastdim(a), torch.softmax(b, -1)
    (ya * up).sum().backward()
    (yb * up).sum().backward()
    assert (ya - yb).abs().max().item() < 1e-6
    assert (a.grad - b.grad).abs().max().item() < 1e-6
