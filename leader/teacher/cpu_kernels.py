"""How the teacher's backbone computes on a CPU: attention in fp32, dropout with 16-bit draws,
and under bf16 autocast the frozen base's linear weights stored in bf16.

Why each, measured on one thread of an AVX512-BF16 CPU (torch.profiler over LoRA steps, timed
ops; the whole effect in `scripts/bench_teacher.py`, against `cpu_kernels: false` in the same run:
SmolLM2 bf16 LoRA steps 1.14x, MiniLM 1.04x, teacher_zen4.json):
- Attention in fp32 (q, k, v upcast, PyTorch SDPA): torch's CPU flash-attention kernel gains
  nothing from bf16 at the teacher's head sizes and its bf16 backward is about twice as slow as
  its fp32 one (2 x 9 heads x 142 tokens x 64, causal, forward + backward: 5.4 ms fp32, 10.2 ms
  bf16; MiniLM's 32 x 12 x 200 x 32 forward: 38 vs 41 ms). fp32 is also the more exact.
- The backbone's own `nn.Dropout` modules (BERT's hidden dropout) become `leader.dropout`'s
  (MiniLM LoRA step, batch 8: upstream's `aten::bernoulli_` was 19 % of it, hidden and attention
  dropout together). Same p, another random stream. The attention weights' dropout stays SDPA's:
  a written-out softmax with the fast dropout was 6 % slower per MiniLM bf16 step with two
  workers sharing memory bandwidth (bench_teacher, same run: 6.83 vs 7.25 samples/s).
- Frozen linear weights in bf16: autocast would cast them again at every forward (SmolLM2 LoRA
  step: `aten::copy_` 14 %); results are bit-identical and the base takes half the memory.
Registered with transformers' AttentionInterface (and its mask interface, as SDPA's), so every
backbone that dispatches through it (BERT, LLaMA, Qwen2) takes it by name. A GPU never uses it.
"""

from __future__ import annotations

import torch
from torch import nn

from leader.dropout import use_fast_dropout

NAME = "leader_cpu_sdpa"


def cpu_attention(module, query, key, value, attention_mask, dropout: float = 0.0, **kwargs):
    """transformers' attention contract: (B, H, L, D) q/k/v -> ((B, L, H, D), None), in fp32 with
    autocast off; the output returns in the query's dtype."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast(query.device.type, enabled=False):
        out, _ = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, dropout=dropout, **kwargs
        )
    return out.to(dtype), None


def register() -> str:
    """Make NAME known to transformers (idempotent); returns it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, cpu_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME


def prepare_for_cpu(backbone: nn.Module, autocast_dtype: torch.dtype | None) -> None:
    """Switch a loaded (possibly peft-wrapped) transformers backbone to the CPU kernels above."""
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    if getattr(base.config, "_attn_implementation", None) == "sdpa":  # already NAME on a second call
        base.set_attn_implementation(register())
    use_fast_dropout(backbone)
    if autocast_dtype is not None:
        frozen_linears_to(backbone, autocast_dtype)


def frozen_linears_to(backbone: nn.Module, dtype: torch.dtype) -> None:
    """The base model's nn.Linear weights (never LoRA's) in `dtype`."""
    for name, mod in backbone.named_modules():
        if isinstance(mod, nn.Linear) and "lora_" not in name:
            for p in mod.parameters(recurse=False):
                if p.requires_grad:
                    raise RuntimeError(f"teacher: {name} is trainable; only a frozen base is stored in {dtype}")
                p.data = p.data.to(dtype)
