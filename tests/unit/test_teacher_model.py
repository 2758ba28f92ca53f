"""Fast teacher checks: pooling, head shape, registry errors, DeepSpeed config filling."""

import json

import numpy as np
import pytest
import torch

from leader.config.teacher import TeacherTrainConfig
from leader.errors import CheckpointError, ConfigError
from leader.teacher.backbones import pool, resolve_backbone
from leader.teacher.deepspeed_config import build_ds_config
from leader.teacher.schedule import global_batches, lr_lambda


def test_last_non_pad_pooling_left_and_right():
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # (B, L, d)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert torch.equal(pool(h, right, "decoder"), torch.stack([h[0, 1], h[1, 3]]))
    assert torch.equal(pool(h, left, "decoder"), torch.stack([h[0, 3], h[1, 3]]))


def test_mean_pooling_ignores_pads():
    h = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert pool(h, torch.tensor([[1, 1, 0]]), "encoder").item() == pytest.approx(2.0)


def test_registry_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("LEADER_LLAMA7B_PATH", raising=False)
    with pytest.raises(CheckpointError, match="LEADER_LLAMA7B_PATH"):
        resolve_backbone("llama-7b")
    monkeypatch.setenv("LEADER_QWEN7B_PATH", str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="nope"):
        resolve_backbone("qwen-7b")
    with pytest.raises(CheckpointError, match="unknown backbone"):
        resolve_backbone("gpt-17")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    spec = resolve_backbone("qwen-1.8b", path=tmp_path / "q")
    assert spec.dtype == torch.float16 and spec.kind == "decoder"


def test_tiny_teacher_head_shape_and_reload(tmp_path):
    from leader.teacher.model import build_teacher, load_teacher, save_teacher

    m = build_teacher("tiny-llama", 7, lora_rank=4)
    assert all(not p.requires_grad for n, p in m.named_parameters() if "lora_" not in n and not n.startswith("head."))
    with torch.no_grad():
        m.head.bias.add_(0.3)
    prompts = ["The patient has 1 times ICU visits.", "short"]
    enc = m.tokenizer(prompts, padding=True, return_tensors="pt")
    m.eval()
    logits, h = m(enc["input_ids"], enc["attention_mask"])
    assert logits.shape == (2, 7) and h.shape == (2, m.d_hidden)
    save_teacher(m, tmp_path / "t", {"max_length": 64})
    assert not any(p.name.endswith(".bin") for p in (tmp_path / "t").rglob("*") if "model" in p.name)
    lt = load_teacher(tmp_path / "t")
    probs, hid = lt.infer(prompts)
    assert probs.dtype == np.float32 and hid.dtype == np.float16 and probs.shape == (2, 7)
    np.testing.assert_allclose(probs, torch.sigmoid(logits).detach().numpy(), atol=1e-5)


def test_a_loaded_teacher_runs_its_trained_lora_merged_into_the_base(tmp_path):
    """Inference needs no adapter path: the reloaded backbone holds no LoRA module, and its outputs
    are the trained (unmerged) model's to fp32 rounding."""
    from leader.teacher.model import build_teacher, load_teacher, save_teacher

    m = build_teacher("tiny-llama", 7, lora_rank=4, seed=3)
    with torch.no_grad():  # a trained adapter: B away from its zero init
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    prompts = ["The patient has 1 times ICU visits.", "short", "Diagnoses: essential hypertension."]
    enc = m.tokenizer(prompts, padding=True, return_tensors="pt")
    m.eval()
    logits, h = m(enc["input_ids"], enc["attention_mask"])
    save_teacher(m, tmp_path / "t", {"max_length": 64})
    lt = load_teacher(tmp_path / "t", precision="fp32")
    assert not any("lora_" in n for n, _ in lt.model.named_parameters())
    probs, hid = lt.infer(prompts)
    np.testing.assert_allclose(probs, torch.sigmoid(logits).detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(hid, h.detach().numpy(), atol=2e-3, rtol=2e-3)  # hidden saved in fp16


def test_ds_config_filled_from_train_config(tmp_path):
    cfg = TeacherTrainConfig(zero_stage=3, batch_size=3, grad_accum=2, cpu_offload=True)
    ds = build_ds_config(cfg, world=4, cuda=False)
    assert ds["train_batch_size"] == 24 and ds["zero_optimization"]["stage"] == 3
    assert "optimizer" not in ds and ds["fp16"]["enabled"] is False
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="bad.json"):
        build_ds_config(TeacherTrainConfig(deepspeed_config=str(bad)), 1, False)
    with pytest.raises(ConfigError, match="x.json missing"):
        build_ds_config(TeacherTrainConfig(deepspeed_config=str(tmp_path / "x.json")), 1, False)


def test_schedule_and_batches():
    f = lr_lambda(TeacherTrainConfig(warmup=2, schedule="linear"), 10)
    assert f(0) == 0.5 and f(1) == 1.0 and f(10) == 0.0
    b = global_batches(10, 4, 0, 0)
    assert len(b) == 2 and len(set(np.concatenate(b))) == 8


def test_gradient_checkpointing_gives_the_same_lora_gradients():
    """The 7B recipe recomputes activations in backward; the LoRA/head gradients must not change."""
    from leader.teacher.model import build_teacher, enable_gradient_checkpointing

    prompts = ["The patient has 2 times ICU visits. Diagnoses: hypertension.", "short record"]
    y = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    grads = []
    for ckpt in (False, True):
        m = build_teacher("tiny-llama", 3, lora_rank=4, seed=0)
        for n, p in m.named_parameters():  # LoRA B starts at zero: perturb it so LoRA A gets gradients too
            if "lora_B" in n:
                p.data.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
        if ckpt:
            enable_gradient_checkpointing(m)
            assert m.backbone.get_base_model().is_activation_checkpointing
        m.train()
        enc = m.tokenizer(prompts, padding=True, return_tensors="pt")
        logits, _ = m(enc["input_ids"], enc["attention_mask"])
        m.loss(logits, y).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and any("lora_A" in n for n in grads[0])
    for n in grads[0]:
        assert grads[0][n].abs().sum() > 0, n
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-6)


def test_length_buckets_cover_the_epoch_with_less_padding():
    from leader.teacher.schedule import padding_share

    rng = np.random.default_rng(0)
    lens = rng.integers(20, 400, size=64)
    plain, buck = global_batches(64, 8, 0, 0), global_batches(64, 8, 0, 0, lens)
    assert sorted(np.concatenate(buck)) == list(range(64))  # every sample once (64 = 8 full batches)
    assert all(np.ptp(lens[b]) < np.ptp(lens) / 2 for b in buck)  # each step's prompts are alike in length
    sort = [b[np.argsort(lens[b], kind="stable")] for b in plain]
    assert padding_share(buck, lens, 4) < padding_share(sort, lens, 4) / 2
    assert [list(b) for b in buck] != [list(b) for b in global_batches(64, 8, 0, 1, lens)]  # reshuffled per epoch
    # the dropped remainder is random, not always the longest prompts
    dropped = [set(range(60)) - set(np.concatenate(global_batches(60, 8, 0, e, lens[:60]))) for e in range(5)]
    assert len(set.union(*dropped)) > 4


def test_padding_share_by_hand():
    from leader.teacher.schedule import padding_share

    lens = np.array([2, 4, 4, 4])
    assert padding_share([np.array([0, 1, 2, 3])], lens, 2) == pytest.approx(2 / 16)


def test_precision_resolution(monkeypatch):
    from leader import precision as P
    from leader.errors import ConfigError

    monkeypatch.setattr(P, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert P.resolve("auto", "cpu") == "bf16" and P.resolve("fp32", "cpu") == "fp32"
    assert P.resolve("auto", "cuda", fp16=True) == "fp16" and P.resolve("auto", "cuda") == "fp32"
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda: ())
    assert P.resolve("auto", "cpu") == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        P.resolve("fp16", "cpu")
    assert P.autocast_dtype("bf16", "cpu") == torch.bfloat16 and P.autocast_dtype("fp16", "cuda") is None


def test_a_bf16_teacher_runs_fp32_where_the_cpu_would_emulate_bf16(monkeypatch, caplog):
    """Emulated bf16 is 6x slower than fp32 for a MiniLM forward on a Zen 3 (matmuls 60-75x,
    machine_zen3.json): a bf16-trained teacher loaded on such a CPU computes in fp32; a pinned bf16
    is kept, with a warning."""
    from leader import precision as P

    monkeypatch.setattr(P, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert P.for_inference("bf16", "cpu") == "bf16" and P.for_inference("bf16", "cuda") == "fp32"
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda: ())
    P._warn_emulated_bf16.cache_clear()
    with caplog.at_level("WARNING", logger="leader.precision"):
        assert P.for_inference("bf16", "cpu") == "fp32"
        assert P.for_inference(None, "cpu") == "fp32" and P.for_inference("fp16", "cpu") == "fp32"
        assert P.resolve("bf16", "cpu") == "bf16"
        assert P.resolve("bf16", "cpu") == "bf16"  # warned once
    assert "computing in fp32" in caplog.text and caplog.text.count("torch emulates") == 1


def test_cpuinfo_gives_bf16_flags_and_the_cpu_generation(monkeypatch):
    from leader import precision as P

    lines = ("cpu family\t: 26", "model\t\t: 2", "model name\t: AMD EPYC", "flags\t\t: fpu avx512_bf16")
    monkeypatch.setattr(P, "_cpuinfo_lines", lambda: lines)
    assert P.cpu_bf16_flags() == ("avx512_bf16",)
    assert P.cpu_identity() == {"cpu": "AMD EPYC", "cpu_family_model": "26/2"}


def test_bf16_backbone_keeps_the_head_and_outputs_fp32():
    from leader.teacher.model import build_teacher

    m = build_teacher("tiny-llama", 3, lora_rank=4, seed=0)
    enc = m.tokenizer(["a record of diagnoses", "another one"], padding=True, return_tensors="pt")
    ref_logits, ref_h = m(enc["input_ids"], enc["attention_mask"])
    m.set_precision("bf16", "cpu")
    logits, h = m(enc["input_ids"], enc["attention_mask"])
    assert logits.dtype == h.dtype == torch.float32 and m.head.weight.dtype == torch.float32
    torch.testing.assert_close(h, ref_h, rtol=0.05, atol=0.05)  # bf16 keeps ~3 significant digits
    loss = m.loss(logits, torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    loss.backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in m.parameters())
