"""The cluster path on CPU: what the driver sends to a job's workers, which accelerator a worker
picks, which storage a cluster run accepts, and the teacher's GPU-safety details (no KV cache,
fp32 statistics under fp16, non-finite steps)."""

from __future__ import annotations

import json

import pytest
import torch

from leader.errors import ConfigError

JOB_ENV = {  # cluster/runtime_env.yaml's env_vars, as `ray job submit` injects them into the driver
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "LEADER_CACHE": "/mnt/leader/cache",
    "TORCH_EXTENSIONS_DIR": "/mnt/leader/cache/torch_extensions",
    "LEADER_STORAGE": "/mnt/leader/storage",
}


@pytest.fixture()
def under_job(monkeypatch):
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    job = {"runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip", "env_vars": JOB_ENV}, "metadata": {}}
    monkeypatch.setenv(RAY_JOB_CONFIG_JSON_ENV_VAR, json.dumps(job))
    for k, v in JOB_ENV.items():
        monkeypatch.setenv(k, v)
    return job["runtime_env"]


def test_driver_runtime_env_merges_with_the_jobs(under_job, monkeypatch):
    """Ray refuses a driver runtime env that repeats any of the job's env var keys (the
    `Failed to merge the Job's runtime env` crash at the job's first ray.init)."""
    from ray.runtime_env.runtime_env import _merge_runtime_env

    from leader.ray_utils import driver_runtime_env, worker_env

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # what a CPU-only head would have decided before
    mine = driver_runtime_env()
    assert _merge_runtime_env(under_job, mine) is not None
    assert not set(mine.get("env_vars", {})) & set(JOB_ENV)
    assert "DS_ACCELERATOR" not in mine.get("env_vars", {})
    assert mine["worker_process_setup_hook"] == "leader.console.worker_setup"
    # the old driver env (every worker key) is exactly what Ray refuses: the check can fail
    assert _merge_runtime_env(under_job, {"env_vars": worker_env()}) is None


def test_outside_a_job_the_driver_sends_the_whole_worker_env(monkeypatch):
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    from leader.ray_utils import driver_runtime_env, worker_env

    monkeypatch.delenv(RAY_JOB_CONFIG_JSON_ENV_VAR, raising=False)
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    assert driver_runtime_env()["env_vars"] == worker_env()
    assert "DS_ACCELERATOR" not in worker_env()


@pytest.mark.parametrize(
    "env,cuda,use_gpu,want",
    [
        (None, True, True, "cuda"),
        (None, False, False, "cpu"),
        ("cpu", False, False, "cpu"),
        ("cuda", True, True, "cuda"),
    ],
)
def test_each_worker_picks_its_own_accelerator(monkeypatch, env, cuda, use_gpu, want):
    from leader.ray_utils import select_ds_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if env is None:
        monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    else:
        monkeypatch.setenv("DS_ACCELERATOR", env)
    assert select_ds_accelerator(use_gpu) == want


def test_a_gpu_worker_told_cpu_is_refused(monkeypatch):
    from leader.ray_utils import select_ds_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    with pytest.raises(ConfigError, match="DS_ACCELERATOR=cpu"):
        select_ds_accelerator(use_gpu=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("DS_ACCELERATOR")
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        select_ds_accelerator(use_gpu=True)


# ---- storage ----------------------------------------------------------------------------------


def test_relative_storage_is_refused_on_a_cluster_only():
    from leader.storage import check_study_storage

    check_study_storage("studies_out", clustered=False)
    check_study_storage("/mnt/leader/storage", clustered=True)
    with pytest.raises(ConfigError, match=r"study.yaml: storage_path: 'studies_out' is relative"):
        check_study_storage("studies_out", clustered=True, source="study.yaml: storage_path")
    with pytest.raises(ConfigError, match="LEADER_STORAGE"):
        check_study_storage("", clustered=True)


def test_uri_storage_is_refused_with_what_to_do():
    from leader.storage import check_study_storage

    for uri in ("s3://bucket/studies", "gs://bucket/studies"):
        with pytest.raises(ConfigError, match="mount the bucket"):
            check_study_storage(uri, clustered=False)


def test_run_study_refuses_relative_storage_under_a_cluster_address(tmp_path, monkeypatch):
    """Refused before Ray is contacted: the address below has no cluster behind it."""
    from leader.study.runner import run_study

    p = tmp_path / "s.yaml"
    p.write_text(
        "name: s\nstorage_path: rel_out\ndatasets: [{name: syn, source: synthetic, prepare: {n_patients: 20}}]\n"
        "student: {kd: none}\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"s\.yaml: storage_path: 'rel_out' is relative"):
        run_study(p, address="127.0.0.1:1")
    assert not (tmp_path / "rel_out").exists()  # nothing was written


def test_paper_studies_put_their_storage_under_leader_storage(monkeypatch):
    from leader.paths import repo_root
    from leader.study.spec import expand_env, load_study

    monkeypatch.setenv("MIMIC3_ROOT", "/data/mimic3")
    spec = load_study(repo_root() / "studies" / "mimic3_paper.yaml")
    monkeypatch.setenv("LEADER_STORAGE", "/mnt/leader/storage")
    assert expand_env(spec.storage_path) == "/mnt/leader/storage"
    monkeypatch.delenv("LEADER_STORAGE")
    assert expand_env(spec.storage_path) == "studies_out"  # a laptop: relative, refused on a cluster


# ---- teacher GPU safety ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_teacher():
    from leader.teacher.model import build_teacher

    return build_teacher("tiny-llama", 5, lora_rank=4)


def test_teacher_forward_keeps_no_kv_cache(tiny_teacher):
    seen = []
    h = tiny_teacher.backbone.register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        enc = tiny_teacher.tokenizer(["a prompt of a visit", "another"], padding=True, return_tensors="pt")
        with torch.no_grad():
            tiny_teacher(enc["input_ids"], enc["attention_mask"])
    finally:
        h.remove()
    assert seen and getattr(seen[0], "past_key_values", None) is None


def test_fp16_engine_keeps_statistics_and_logits_in_fp32():
    """DeepSpeed's fp16 engine calls module.half(); the standardisation must not overflow."""
    import copy

    import numpy as np

    from leader.teacher.model import build_teacher

    m = build_teacher("tiny-llama", 5, lora_rank=4)
    d = m.d_hidden
    m.set_standardization(np.full(d, 0.5), np.full(d, 1e-6))  # the floor: (h - mean) / 1e-6
    h = torch.full((2, d), 0.6)
    want = copy.deepcopy(m).head_logits(h)
    m.half()
    assert m.feat_mean.dtype == torch.float16  # what DeepSpeed leaves behind
    m.restore_fp32_buffers()
    assert m.feat_mean.dtype == m.feat_scale.dtype == torch.float32 and m.head.weight.dtype == torch.float16
    got = m.head_logits(h.half())
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=2e-2, atol=1e-2)


def test_final_loss_ignores_skipped_steps():
    from leader.teacher.recipe import final_train_loss

    assert final_train_loss([0.9, float("nan"), 0.7]) == pytest.approx(0.7)
    assert final_train_loss([float("nan")]) is None


def test_default_deepspeed_file_follows_the_device():
    from leader.config.teacher import TeacherTrainConfig
    from leader.teacher.deepspeed_config import build_ds_config, ds_config_path

    assert ds_config_path(TeacherTrainConfig(use_gpu=True, zero_stage=3)).name == "zero3_v100_fp16.json"
    assert ds_config_path(TeacherTrainConfig(use_gpu=False, zero_stage=2)).name == "zero2_cpu.json"
    ds = build_ds_config(TeacherTrainConfig(use_gpu=True, zero_stage=2, fp16=True), 8, cuda=True)
    assert ds["fp16"]["enabled"] and ds["zero_optimization"]["overlap_comm"]  # the V100 file's tuning
    off = build_ds_config(TeacherTrainConfig(zero_stage=3, cpu_offload=True), 1, cuda=False)
    assert off["zero_force_ds_cpu_optimizer"] is False and off["zero_optimization"]["offload_param"]
