"""The teacher's CPU kernels (leader.teacher.cpu_kernels) compute what transformers' SDPA
attention computes, in fp32; dropout keeps its rate; bf16 stores only the frozen base in bf16."""

from __future__ import annotations

import types

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from leader.dropout import Dropout
from leader.teacher.cpu_kernels import NAME, cpu_attention, frozen_linears_to
from leader.teacher.model import build_teacher

B, H, L, D = 2, 6, 9, 8


def _qkv(kv_heads: int = H, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, L, D, generator=g, dtype=torch.float32).to(dtype)
    k, v = (torch.randn(B, kv_heads, L, D, generator=g).to(dtype) for _ in range(2))
    return q, k, v


def _padding_mask() -> torch.Tensor:
    mask = torch.ones(B, 1, L, L, dtype=torch.bool)  # True = may attend
    mask[1, ..., L - 3 :] = False  # the second row's last three keys are padding
    return mask


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_heads", [H, 2])  # 2: grouped-query attention (LLaMA / Qwen2)
def test_fp32_attention_equals_transformers_sdpa(causal, kv_heads):
    module = types.SimpleNamespace(is_causal=causal, num_key_value_groups=H // kv_heads)
    q, k, v = _qkv(kv_heads)
    mask = None if causal else _padding_mask()
    want, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    got, _ = cpu_attention(module, q, k, v, mask, scaling=0.3)
    torch.testing.assert_close(got, want)


def test_bf16_inputs_are_attended_in_fp32():
    module = types.SimpleNamespace(is_causal=True, num_key_value_groups=1)
    q, k, v = _qkv(dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = cpu_attention(module, q, k, v, None)
    want, _ = sdpa_attention_forward(module, q.float(), k.float(), v.float(), None)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, want.to(torch.bfloat16))


def test_attention_dropout_reaches_sdpa():
    module = types.SimpleNamespace(is_causal=False, num_key_value_groups=1)
    q, k, v = _qkv()
    want, _ = cpu_attention(module, q, k, v, _padding_mask())
    torch.manual_seed(0)
    draws = torch.stack([cpu_attention(module, q, k, v, _padding_mask(), dropout=0.3)[0] for _ in range(400)])
    assert not torch.allclose(draws[0], want)
    torch.testing.assert_close(draws.mean(0), want, atol=0.05, rtol=0.05)  # inverted dropout keeps the mean


def test_a_cpu_teacher_takes_the_kernels_and_keeps_its_states():
    torch.manual_seed(0)
    model = build_teacher("tiny-llama", 5, lora_rank=4)
    ids = torch.randint(3, 100, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    model.eval()
    with torch.no_grad():
        before = model.pooled(ids, mask)
        model.set_precision("fp32", "cpu")
        assert model.backbone.get_base_model().config._attn_implementation == NAME
        torch.testing.assert_close(model.pooled(ids, mask), before)  # fp32: the same attention
        model.set_precision("bf16", "cpu")
        after = model.pooled(ids, mask)
    torch.testing.assert_close(after, before, atol=0.05, rtol=0.05)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes["backbone.base_model.model.layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16
    assert all(dt == torch.float32 for n, dt in dtypes.items() if "lora_" in n or n.startswith("head."))
    assert all(dt == torch.float32 for n, dt in dtypes.items() if "norm" in n or "embed" in n)


def test_storing_the_base_in_bf16_changes_no_autocast_result():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8).requires_grad_(False)
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = lin(x)
        frozen_linears_to(lin, torch.bfloat16)
        assert torch.equal(lin(x), want)


def test_a_trainable_linear_is_never_cast():
    with pytest.raises(RuntimeError, match="trainable"):
        frozen_linears_to(torch.nn.Sequential(torch.nn.Linear(4, 4)), torch.bfloat16)


def test_the_backbones_dropouts_become_fast_ones():
    model = build_teacher("minilm", 5, lora_rank=4)
    assert any(type(m) is torch.nn.Dropout for m in model.backbone.modules())
    model.set_precision("fp32", "cpu")
    assert not any(type(m) is torch.nn.Dropout for m in model.backbone.modules())
    assert sum(isinstance(m, Dropout) for m in model.backbone.modules()) > 0


def test_a_swap_after_eval_keeps_eval_mode():
    model = build_teacher("minilm", 5, lora_rank=4).eval()
    model.set_precision("fp32", "cpu")
    swapped = [m for m in model.backbone.modules() if isinstance(m, Dropout)]
    assert swapped and not any(m.training for m in swapped)


def test_cpu_kernels_false_keeps_transformers_own():
    from leader.config.teacher import TeacherTrainConfig
    from leader.teacher.recipe import build_model

    cfg = TeacherTrainConfig(backbone="minilm", precision="bf16", cpu_kernels=False)
    model = build_model(cfg, 5, None, None)
    assert model.precision == "bf16" and model.backbone.get_base_model().config._attn_implementation == "sdpa"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not any(isinstance(m, Dropout) for m in model.modules())
    on = build_model(cfg.model_copy(update={"cpu_kernels": True}), 5, None, None)
    assert on.backbone.get_base_model().config._attn_implementation == NAME
