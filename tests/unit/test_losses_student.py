import math

import torch

from leader.config.student import LossConfig
from leader.student.losses import bce, feature_kd, output_kd, profile_alignment, total_loss


def test_bce_hand():
    assert float(bce(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))) == pytest_approx(math.log(2))


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-5)


def test_feature_kd_hand_and_width_follows_teacher():
    proj = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    z = torch.tensor([[1.0, 2.0]])
    h = torch.tensor([[1.0, 0.0, 3.0]])  # proj(z) = [1,2,3] -> squared errors 0,4,0
    assert float(feature_kd(h, z, proj)) == pytest_approx(4 / 3)


def test_output_kd_hand():
    # T=1: BCE(sigmoid(0)=0.5 vs target 0.8) = -(0.8 log .5 + .2 log .5) = log 2
    assert float(output_kd(torch.zeros(1, 1), torch.tensor([[0.8]]), 1.0)) == pytest_approx(math.log(2))
    # T=2: target sigmoid(logit(0.8)/2) = 2/3; student logit 2 -> sigmoid(1)
    s = 1 / (1 + math.exp(-1))
    want = -(2 / 3 * math.log(s) + 1 / 3 * math.log(1 - s)) * 4
    assert float(output_kd(torch.tensor([[2.0]]), torch.tensor([[0.8]]), 2.0)) == pytest_approx(want)


def test_alignment_hand_and_aligned_lower():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cos sims identity; logits diag 1/tau=1, off 0 -> CE = log(1+e^-1)... = -log(e/(e+1))
    want = -math.log(math.e / (math.e + 1))
    assert float(profile_alignment(p, p.clone(), tau=1.0)) == pytest_approx(want)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 16, generator=g)
    m = x + 0.1 * torch.randn(32, 16, generator=g)
    aligned = profile_alignment(x, m, 0.1)
    shuffled = profile_alignment(x, m[torch.randperm(32, generator=g)], 0.1)
    assert float(aligned) < float(shuffled)


def test_total_loss_switches():
    out = {"logits": torch.zeros(2, 3), "z": torch.ones(2, 4), "align_p": torch.eye(2, 4), "align_m": torch.eye(2, 4)}
    y = torch.ones(2, 3)
    base, parts = total_loss(out, y, LossConfig(kd="none", align=False))
    assert set(parts) == {"bce"} and float(base) == pytest_approx(math.log(2))
    proj = torch.nn.Linear(4, 5)
    full, parts = total_loss(out, y, LossConfig(kd="feature", alpha=1.0, beta=1.0, tau=1.0), proj, torch.zeros(2, 5))
    assert set(parts) == {"bce", "kd", "align"}
    assert float(full) == pytest_approx(parts["bce"] + parts["kd"] + parts["align"])
    _, parts = total_loss(out, y, LossConfig(kd="output", align=False), teacher_probs=torch.full((2, 3), 0.5))
    assert set(parts) == {"bce", "kd"}


def test_kd_projection_starts_at_the_teacher_mean():
    """The KD head starts at the trivial answer: its loss is the states' variance and it pulls
    nothing out of the student's representation until it has learned a mapping."""
    from leader.student.kd import kd_projection

    h = torch.randn(64, 7) * 0.05 + torch.linspace(-1, 1, 7)  # small spread around a large mean
    proj = kd_projection(4, h, "teacher_mean")
    z = torch.randn(64, 4, requires_grad=True)
    kd = feature_kd(h, z, proj)
    assert abs(float(kd) - float(h.var(0, unbiased=False).mean())) < 1e-6
    kd.backward()
    assert float(z.grad.abs().max()) == 0.0
    default = kd_projection(4, h, "default")
    assert float(feature_kd(h, z.detach(), default)) > 10 * float(kd)
