"""leader.student.layers: the student's lean Transformer layer computes what upstream
`nn.TransformerEncoderLayer` computes, with the same parameters; its dropout drops p of the
elements and keeps the mean."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leader.dropout import Dropout, dropout
from leader.student.layers import TransformerLayer


def _pair(d: int, heads: int, p: float) -> tuple[nn.TransformerEncoderLayer, TransformerLayer]:
    torch.manual_seed(0)
    up = nn.TransformerEncoderLayer(d, heads, 2 * d, p, batch_first=True)
    torch.manual_seed(0)
    lean = TransformerLayer(d, heads, 2 * d, p, batch_first=True)
    return up, lean


def _inputs(n: int, L: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, L, d, generator=g)
    pad = torch.rand(n, L, generator=g) > 0.6
    pad[:, 0] = False  # every row attends somewhere (the student's encoders guarantee it)
    return x, pad


@pytest.mark.parametrize("d,heads,n,L", [(32, 2, 40, 7), (64, 4, 9, 1), (16, 1, 5, 12)])
def test_eval_output_equals_upstream_with_the_same_weights(d, heads, n, L):
    up, lean = _pair(d, heads, 0.3)
    assert all(torch.equal(a, b) for a, b in zip(up.state_dict().values(), lean.state_dict().values(), strict=True))
    x, pad = _inputs(n, L, d)
    up.eval(), lean.eval()
    with torch.no_grad():
        want = up(x, src_key_padding_mask=pad)  # upstream's fused fast path
        got = lean(x, pad)
    assert (got - want).abs().max().item() < 1e-5


def test_training_forward_and_gradients_equal_upstream_without_dropout():
    up, lean = _pair(32, 2, 0.0)
    x, pad = _inputs(30, 6, 32)
    up.train(), lean.train()
    for m in (up, lean):
        (m(x, src_key_padding_mask=pad) if m is up else m(x, pad)).pow(2).sum().backward()
    for (name, a), b in zip(up.named_parameters(), lean.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-4, rtol=1e-4), name


def test_training_with_dropout_is_seeded_and_differs_from_eval():
    _, lean = _pair(32, 2, 0.3)
    x, pad = _inputs(30, 6, 32)
    lean.train()
    torch.manual_seed(5)
    a = lean(x, pad)
    torch.manual_seed(5)
    assert torch.equal(a, lean(x, pad))
    lean.eval()
    assert not torch.allclose(a, lean(x, pad))


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_dropout_drops_p_of_the_elements_and_keeps_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(400, 1001)  # odd count: the last 32-bit draw is half used
    y = dropout(x, p, True)
    assert abs((y == 0).float().mean().item() - p) < 0.005
    assert abs(y.mean().item() - 1.0) < 0.01
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)))


def test_dropout_is_the_identity_in_eval_and_at_zero():
    x = torch.randn(3, 4)
    assert dropout(x, 0.3, False) is x and dropout(x, 0.0, True) is x
    m = Dropout(0.5).eval()
    assert m(x) is x
    assert isinstance(m, nn.Dropout) and m.p == 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_output_and_gradient_are_the_bits_of_x_times_keep_over_1_minus_p(dtype):
    """The fast path multiplies by a ready-made scale mask; it must give what the plain formula
    gives with the same draws, to the bit (checkpoints and seeded runs stay reproducible)."""
    p, x = 0.3, torch.randn(37, 9, dtype=dtype, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, p, True)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.manual_seed(3)
    bits = torch.empty((x.numel() + 1) // 2, dtype=torch.int32).random_(-(2**31), None).view(torch.int16)
    keep = bits[: x.numel()].view(x.shape) >= round(p * 65536) - 32768
    want = x.detach() * keep * (1.0 / (1.0 - p))
    assert y.dtype == dtype and torch.equal(y, want)
    assert torch.equal(g, (torch.ones_like(want) * keep * (1.0 / (1.0 - p))).to(dtype))


def test_one_draw_serves_a_layers_dropouts_each_with_its_own_mask():
    from leader.dropout import dropouts

    shapes = [(50, 2, 9, 9), (50, 9, 32), (50, 9, 64), (50, 9, 32)]
    torch.manual_seed(0)
    drop = dropouts(shapes, [0.3] * 4, torch.ones(1), True)
    ys = [drop(torch.ones(s), i) for i, s in enumerate(shapes)]
    for y in ys:  # each drops p of its elements and keeps the mean
        assert abs((y == 0).float().mean().item() - 0.3) < 0.02 and abs(y.mean().item() - 1.0) < 0.05
    assert not torch.equal(ys[1] == 0, ys[3] == 0)  # two same-shaped tensors get different masks
    same = dropouts(shapes, [0.3] * 4, torch.ones(1), False)
    x = torch.randn(shapes[1])
    assert same(x, 1) is x  # eval: the identity


def test_dropouts_of_different_p_fall_back_to_one_draw_each():
    from leader.dropout import dropouts

    x = torch.randn(40, 33)
    torch.manual_seed(2)
    got = dropouts([(40, 33), (40, 33)], [0.1, 0.5], x, True)(x, 1)
    torch.manual_seed(2)
    assert torch.equal(got, dropout(x, 0.5, True))
