"""scripts/gpu_check.py's CPU half: the GPU check's own code path (the real teacher worker in one
process: ZeRO-2 and ZeRO-3 with gradient checkpointing, ZeRO-3 with cpu_offload, crash + resume,
reload + extraction) on a small LLaMA-shaped model, so the script is known to work before the
day a GPU is lent; and a failed check must fail the script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.py"
GPU_JSON = REPO / "reports" / "bench" / "gpu.json"
STAGES = ("zero2", "zero3", "zero3_offload")


def _run(out: Path, *args: str, timeout: int = 840) -> subprocess.CompletedProcess:
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _stamp(p: Path) -> tuple | None:
    return (p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cpu_half_runs_every_stage_and_passes(tmp_path):
    before = _stamp(GPU_JSON)
    out = tmp_path / "x.json"
    r = _run(out)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "all checks passed" in r.stdout
    fig = json.loads(out.read_text())
    assert fig["device"] == "cpu" and fig["checks_failed"] == 0 and fig["failures"] == ""
    assert fig["stages"] == ",".join(STAGES)
    steps = fig["shape_steps"]
    for s in STAGES:
        assert fig[f"{s}_steps"] == steps, s  # every stage ran its steps: backward + optimizer step each
        assert fig[f"{s}_loss_last"] < fig[f"{s}_loss_first"], s
        assert fig[f"{s}_frozen_pass_device"] == "cpu", s
        assert fig[f"{s}_precision"] == "fp32" and fig[f"{s}_nonfinite_steps"] == 0, s
        assert fig[f"{s}_resumed_from"] == 2 and fig[f"{s}_resume_max_abs_diff"] <= 1e-3, s
        assert fig[f"{s}_reload_prauc_abs_diff"] <= 1e-4 and fig[f"{s}_infer_finite"] is True, s
    assert fig["zero2_zero_stage"] == 2 and fig["zero3_zero_stage"] == 3
    assert fig["zero3_offload_zero_stage"] == 3 and fig["zero3_offload_cpu_offload"] is True
    assert not any(k.startswith(("zero2_peak", "zero3_peak")) for k in fig)  # memory is CUDA-only
    assert all(fig[f"{s}_plan_gib_train_L32"] > 0 for s in STAGES)  # the plan's API, even without a GPU
    assert _stamp(GPU_JSON) == before  # the GPU figures are never overwritten by the CPU half


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_failed_check_fails_the_script(tmp_path):
    # One step: the loss cannot fall, and the child meant to crash at step 3 finishes instead.
    out = tmp_path / "x.json"
    r = _run(out, "--stages", "zero2", "--max-steps", "1", timeout=540)
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr[-4000:]
    assert "FAIL zero2: last loss" in r.stdout and "is not below the first" in r.stdout
    assert "FAIL zero2: the crashing child exited 0, expected 1" in r.stdout
    fig = json.loads(out.read_text())
    assert fig["checks_failed"] == 2 and fig["zero2_steps"] == 1


def test_cpu_mode_refuses_the_gpu_report_path():
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(GPU_JSON)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "never writes reports/bench/gpu.json" in r.stderr
