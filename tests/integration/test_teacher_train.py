"""Real Ray Train + real DeepSpeed (CPU/gloo) on tiny backbones."""

import numpy as np
import pytest
from teacher_reference import one_process_losses

from leader.config.teacher import FAIL_AT_STEP_ENV, TeacherTrainConfig
from leader.teacher.train import train_teacher

pytestmark = pytest.mark.slow


@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    "backbone,stage,fail_at,lp_epochs",
    # lp_epochs > 0: the probe is fitted AFTER deepspeed.initialize and written into the engine, so
    # the run only matches the reference if ZeRO's fp32 master copies were refreshed from it
    [("tiny-llama", 2, None, 0), ("tiny-qwen2", 3, 3, 0), ("tiny-llama", 3, None, 10)],
)
def test_distributed_matches_single_process_and_resumes(
    ray_local, teacher_ds, tmp_path, monkeypatch, backbone, stage, fail_at, lp_epochs
):
    from leader.metrics import mean_metrics
    from leader.teacher.model import load_teacher

    cfg = TeacherTrainConfig(
        backbone=backbone,
        workers=2,
        zero_stage=stage,
        max_steps=5,
        batch_size=4,
        max_length=64,
        lr=1e-2 if not lp_epochs else 1e-3,  # from the probe's head a large step diverges and amplifies fp noise
        checkpoint_every=2,
        max_eval_samples=16,
        max_failures=1,
        lp_epochs=lp_epochs,
        # exact equality with the one-process reference: fp32 (bf16 rounds per-worker and whole-batch
        # matmuls differently; its accuracy is measured by scripts/bench_teacher.py)
        precision="fp32",
        lp_lr=0.05,  # the probe moves the head (best epoch >= 0), so the write into the engine matters
        # mechanics on a tiny model that knows nothing: start at p = 0.5 so 5 steps must lower the
        # loss visibly (a prior-initialised head starts at the floor), and no learned-nothing guard
        head_init="default",
        require_learning=False,
    )
    if fail_at is not None:  # the last worker exits at this step on its first attempt
        monkeypatch.setenv(FAIL_AT_STEP_ENV, str(fail_at))
    res = train_teacher(teacher_ds, cfg, tmp_path / "store")
    monkeypatch.delenv(FAIL_AT_STEP_ENV, raising=False)
    m = res.metrics
    losses = m["losses"]
    assert len(losses) == 5 and np.isfinite(losses).all()
    if not lp_epochs:  # from p = 0.5 five steps must lower the loss visibly (the probe starts far lower)
        assert losses[-1] < losses[0] - 0.1
    assert m["zero_stage"] == stage and m["world_size"] == 2
    print(
        f"[teacher-train] {backbone} zero={stage} steps/s/worker={m['steps_per_s_per_worker']:.3f} "
        f"peak_rss_mb/worker={m['rss_mb_peak_worker']:.0f}"
    )
    if lp_epochs:
        assert m["frozen_pass_device"] == "cpu" and m["probe_epoch"] >= 0  # after initialize, on its device
    if fail_at is not None:
        assert m["resumed_from"] == 2  # latest checkpoint before the crash at step 3
    else:
        assert m["resumed_from"] is None
    ref = one_process_losses(cfg, 2, tmp_path / "reference")  # teacher_ds: random_dataset(60, seed 0)
    np.testing.assert_allclose(losses, ref, rtol=1e-4, atol=1e-5)
    assert {"test_overall_prauc", "test_multi_prauc", "test_single_prauc"} <= set(m)
    # The saved adapter + head reproduce the validation PRAUC measured inside the run.
    lt = load_teacher(res.checkpoint_dir)
    val = teacher_ds.samples("val").iloc[:16]
    prompts = lt.prompts(teacher_ds, val["sample_id"])  # fitted to max_length as in training
    probs, hid = lt.infer(prompts, batch_size=16)
    assert hid.shape == (len(val), lt.d_hidden) and lt.meta["dataset_fingerprint"] == teacher_ds.fingerprint
    best = m["best_val_prauc"]  # the saved state is the best-validation one
    assert mean_metrics(teacher_ds.labels(val["sample_id"]), probs)["prauc"] == pytest.approx(best, abs=1e-5)
    probs2, _ = lt.infer(prompts, batch_size=5)
    np.testing.assert_allclose(probs, probs2, atol=1e-5)


@pytest.mark.timeout(400)
def test_zero3_trains_a_bf16_base_on_cpu(ray_local, teacher_ds, tmp_path):
    """CPU bf16 stores the frozen base's linear weights in bf16 beside fp32 LoRA, head and norms
    (leader.teacher.cpu_kernels): ZeRO-3 partitions and gathers the mixed dtypes, trains, saves,
    and the saved teacher reproduces its validation PRAUC in the format it was trained in."""
    from leader.metrics import mean_metrics
    from leader.teacher.model import load_teacher

    cfg = TeacherTrainConfig(
        backbone="tiny-llama",
        workers=2,
        zero_stage=3,
        max_steps=4,
        batch_size=4,
        max_length=64,
        lr=1e-2,
        max_eval_samples=16,
        precision="bf16",
        head_init="default",
        require_learning=False,
    )
    res = train_teacher(teacher_ds, cfg, tmp_path / "store")
    m = res.metrics
    assert m["precision"] == "bf16" and m["zero_stage"] == 3
    assert np.isfinite(m["losses"]).all() and min(m["losses"][1:]) < m["losses"][0] - 0.1
    lt = load_teacher(res.checkpoint_dir, precision="bf16")  # the default is fp32 on a CPU without bf16
    assert lt.model.precision == "bf16"
    val = teacher_ds.samples("val").iloc[:16]
    probs, _ = lt.infer(lt.prompts(teacher_ds, val["sample_id"]), batch_size=16)
    assert mean_metrics(teacher_ds.labels(val["sample_id"]), probs)["prauc"] == pytest.approx(
        m["best_val_prauc"], abs=2e-3
    )
