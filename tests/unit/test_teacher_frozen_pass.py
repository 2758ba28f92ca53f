"""The LP stage's frozen pass runs the base model without the LoRA adapters while they are at their
zero init (they add exactly nothing then), and refuses to skip an adapter that has been trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leader.teacher.model import build_teacher
from leader.teacher.probe import frozen_features

PROMPTS = ["fever cough aspirin", "chest pain", "renal failure dialysis insulin heparin", "sepsis"]


@pytest.fixture()
def teacher():
    torch.manual_seed(0)
    return build_teacher("tiny-llama", 5, lora_rank=4)


def test_skipping_zero_adapters_gives_the_same_states(teacher):
    calls = []
    lora_a = next(m for n, m in teacher.backbone.named_modules() if n.endswith("lora_A.default"))
    lora_a.register_forward_hook(lambda *_: calls.append(1))
    with_adapters = frozen_features(teacher, PROMPTS, 32, batch_size=2)
    n_with = len(calls)
    without = frozen_features(teacher, PROMPTS, 32, batch_size=2, skip_zero_adapters=True)
    assert n_with > 0 and len(calls) == n_with  # skipped: no LoRA matmul ran
    assert np.array_equal(with_adapters, without)
    with torch.no_grad():  # the adapters are back on afterwards: a non-zero B changes the states again
        next(p for n, p in teacher.backbone.named_parameters() if "lora_B" in n).add_(0.5)
    assert not np.allclose(frozen_features(teacher, PROMPTS, 32, batch_size=2), with_adapters)


def test_a_trained_adapter_is_never_skipped(teacher):
    with torch.no_grad():
        next(p for n, p in teacher.backbone.named_parameters() if "lora_B" in n).add_(0.5)
    with pytest.raises(RuntimeError, match="lora_B"):
        frozen_features(teacher, PROMPTS, 32, batch_size=2, skip_zero_adapters=True)
