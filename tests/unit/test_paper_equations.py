"""The student as the paper writes it (issue #23): each equation against a value worked out by hand
on a tiny input, and each preset switch changing only what it names."""

from __future__ import annotations

import math

import pytest
import torch

from leader.config.student import LossConfig, StudentConfig
from leader.student.losses import profile_alignment, profile_alignment_paper, total_loss
from leader.student.model import LeaderStudent, _masked_pool


def test_eq_11_12_positive_excluded_both_directions_summed():
    # p1=(1,0), p2=(0,1); m1=(1,0), m2=(1,1)/sqrt2 -> cos = [[1, c], [0, c]], c = 1/sqrt2.
    # tau=1, e = exp(cos). Sample 1: p->m: -log(e^1 / (col0 - pos) = 1) = -1; m->p: -log(e / e^c) = -(1-c).
    # Sample 2: p->m: -log(e^c / (2e^c - e^c)) = 0; m->p: -log(e^c / 1) = -c. Mean = (-1-(1-c)+0-c)/2 = -1.
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    m = torch.tensor([[1.0, 0.0], [1.0, 1.0]]) * torch.tensor([[1.0], [1 / math.sqrt(2)]])
    assert profile_alignment_paper(p, m, tau=1.0).item() == pytest.approx(-1.0, abs=1e-6)


def test_eq_11_12_temperature_divides_the_similarity():
    # identity similarities, tau=0.5: each direction -log(e^2 / 1) = -2, summed: -4
    eye = torch.eye(2)
    assert profile_alignment_paper(eye, eye, tau=0.5).item() == pytest.approx(-4.0, abs=1e-6)


def test_package_alignment_keeps_the_positive_in_the_denominator():
    # identity, tau=1: CE = -log(e / (e + 1)) per direction; the package averages the two
    eye = torch.eye(2)
    want = -math.log(math.e / (math.e + 1))
    assert profile_alignment(eye, eye, tau=1.0).item() == pytest.approx(want, abs=1e-6)


def _out(z_pre: torch.Tensor) -> dict:
    return {"logits": torch.zeros(1, 2), "z_pre": z_pre, "z": torch.relu(z_pre)}


def test_eq_9_reads_the_pre_activation_when_asked():
    proj = torch.nn.Linear(2, 2)
    with torch.no_grad():
        proj.weight.copy_(torch.eye(2))
        proj.bias.zero_()
    z_pre, h = torch.tensor([[-1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    y = torch.zeros(1, 2)
    bce0 = math.log(2)  # logits 0 -> BCE log 2
    cfg = dict(kd="feature", alpha=1.0, align=False)
    pre, _ = total_loss(_out(z_pre), y, LossConfig(**cfg, kd_input="pre_activation"), proj, h)
    post, _ = total_loss(_out(z_pre), y, LossConfig(**cfg, kd_input="hidden"), proj, h)
    assert pre.item() == pytest.approx(bce0 + (1 + 4) / 2, abs=1e-6)  # MSE of (-1, 2)
    assert post.item() == pytest.approx(bce0 + (0 + 4) / 2, abs=1e-6)  # ReLU zeroes the -1


def test_eq_5_average_pooling():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert _masked_pool(x, mask, "mean").tolist() == [[2.0, 3.0]]
    assert _masked_pool(x, mask, "sum").tolist() == [[4.0, 6.0]]


def _batch(order: list[int]) -> dict[str, torch.Tensor]:
    """One patient, three visits (the last is the current one: its med slot empty)."""
    diag = torch.tensor([[[1, 2], [3, 0], [4, 5]]])
    proc = torch.tensor([[[1, 0], [2, 0], [1, 2]]])
    med = torch.tensor([[[1, 2], [3, 0], [0, 0]]])
    return {
        "diag": diag[:, order],
        "proc": proc[:, order],
        "med": med[:, order],
        "visit_mask": torch.ones(1, 3, dtype=torch.bool),
        "profile": torch.zeros(1, 1, dtype=torch.long),
    }


@pytest.mark.parametrize("positions", [False, True])
def test_authors_readout_is_a_mean_without_positions(positions):
    torch.manual_seed(0)
    cfg = StudentConfig(
        d_embed=8,
        d_model=8,
        n_heads=2,
        dropout=0.0,
        max_visits=4,
        visit_pooling="mean",
        set_pooling="mean",
        visit_positions=positions,
    )
    model = LeaderStudent(cfg, n_diag=6, n_proc=3, n_med=4, profile_sizes=[2]).eval()
    with torch.no_grad():
        a, b = model(_batch([0, 1, 2]))["logits"], model(_batch([1, 0, 2]))["logits"]
    # no positions + mean: the visit order cannot matter; with recency positions it does
    assert torch.allclose(a, b, atol=1e-6) is (not positions)


def test_the_model_returns_both_kd_inputs():
    torch.manual_seed(0)
    model = LeaderStudent(StudentConfig(d_embed=8, d_model=8, n_heads=2), 6, 3, 4, [2]).eval()
    with torch.no_grad():
        out = model(_batch([0, 1, 2]))
    assert torch.equal(out["z"], torch.relu(out["z_pre"]))
