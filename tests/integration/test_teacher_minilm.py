"""MiniLM (pretrained encoder) teacher: training improves validation PRAUC over the untrained head."""

import pytest

from leader.train.teacher import TeacherTrainConfig, train_teacher

pytestmark = pytest.mark.slow


@pytest.mark.timeout(400)
def test_minilm_teacher_improves_val_prauc(ray_local, small_synthetic, tmp_path):
    from leader.data.prompts import build_prompts
    from leader.metrics import mean_metrics
    from leader.models.teacher import build_teacher

    n_val = 48
    cfg = TeacherTrainConfig(backbone="minilm", workers=1, zero_stage=2, max_steps=18, batch_size=16, max_length=80,
                             lr=3e-3, max_train_samples=400, max_eval_samples=n_val, eval_test=False)
    val = small_synthetic.samples("val").iloc[:n_val]
    prompts = build_prompts(small_synthetic, val["sample_id"])
    y = small_synthetic.labels(val["sample_id"])
    # Untrained: same seed, same fresh LoRA + head as the run starts from.
    import torch

    m0 = build_teacher("minilm", small_synthetic.n_meds, seed=cfg.seed).eval()
    with torch.no_grad():
        enc = m0.tokenizer(prompts, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
        p0 = torch.sigmoid(m0(enc["input_ids"], enc["attention_mask"])[0]).numpy()
    base = mean_metrics(y, p0)["prauc"]
    res = train_teacher(small_synthetic, cfg, tmp_path / "store")
    assert res.metrics["val_prauc"] > base + 0.05, (base, res.metrics["val_prauc"])
    assert res.metrics["losses"][-1] < res.metrics["losses"][0]
