"""MiniLM (pretrained encoder) teacher with the LP-FT recipe, through Ray Train + DeepSpeed: it
beats both its untrained head and the drug-frequency prior, and is never below its own probe."""

import numpy as np
import pytest

from leader.config.teacher import TeacherTrainConfig
from leader.teacher.train import train_teacher

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_minilm_teacher_beats_untrained_head_and_prior(ray_local, small_synthetic, tmp_path):
    import torch

    from leader.data.prompts import fit_prompts
    from leader.metrics import mean_metrics
    from leader.teacher.model import build_teacher
    from leader.teacher.recipe import init_head

    ds, n_eval = small_synthetic, 64
    cfg = TeacherTrainConfig(
        backbone="minilm",
        workers=1,
        zero_stage=2,
        max_steps=8,
        batch_size=16,
        max_length=96,
        lr=1e-3,
        lp_epochs=20,
        max_train_samples=400,
        max_eval_samples=n_eval,
        eval_every=4,
    )
    train_ids = ds.samples("train")["sample_id"].to_numpy()[:400]
    val_ids = ds.samples("val")["sample_id"].to_numpy()[:n_eval]
    y_val = ds.labels(val_ids)
    # untrained: the same seed, LoRA at init and a head initialised exactly as the run starts it
    m0 = build_teacher("minilm", ds.n_meds, seed=cfg.seed).eval()
    init_head(m0, cfg, ds.labels(train_ids))
    prompts, _ = fit_prompts(ds, val_ids, m0.tokenizer, cfg.max_length)
    with torch.no_grad():
        enc = m0.tokenizer(prompts, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
        p0 = torch.sigmoid(m0(enc["input_ids"], enc["attention_mask"])[0]).numpy()
    untrained = mean_metrics(y_val, p0)["prauc"]
    prior = mean_metrics(y_val, np.tile(ds.labels(train_ids).mean(0), (len(val_ids), 1)))["prauc"]
    assert untrained == pytest.approx(prior, abs=1e-4)  # the prior-initialised head IS the prior

    res = train_teacher(ds, cfg, tmp_path / "store")
    m = res.metrics
    assert m["best_val_prauc"] > untrained + 0.05, (untrained, m["best_val_prauc"])
    assert m["best_val_prauc"] >= m["probe_val_prauc"]  # the kept state is never below the probe
    assert m["final_train_loss"] < m["prior_bce"]
    test_ids = ds.samples("test")["sample_id"].to_numpy()[:n_eval]
    test_prior = mean_metrics(ds.labels(test_ids), np.tile(ds.labels(train_ids).mean(0), (len(test_ids), 1)))["prauc"]
    assert m["test_overall_prauc"] > test_prior + 0.03, (test_prior, m["test_overall_prauc"])
    assert (res.checkpoint_dir / "probe_test.npz").is_file()
