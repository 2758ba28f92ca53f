"""The real teacher worker (DeepSpeed, CPU/gloo) run in one process, without Ray, as the GPU
check runs it: non-finite steps, and shared storage seen from every node of a Ray cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

# A loss that turns NaN on chosen calls: what an fp16 overflow in the forward looks like to the loop.
NAN_RUN = """
import json, sys
sys.path.insert(0, "tests")
import torch
from helpers import random_dataset
from leader.teacher import model as T
from leader.config.teacher import TeacherTrainConfig
from leader.teacher.recipe import NonFiniteLossError
from leader.teacher.train import train_teacher_in_process

nan_calls, calls = set(json.loads(sys.argv[2])), [0]
real = T.TeacherModel.loss
def loss(logits, y):
    calls[0] += 1
    out = real(logits, y)
    return out * float("nan") if calls[0] in nan_calls else out
T.TeacherModel.loss = staticmethod(loss)
cfg = TeacherTrainConfig(backbone="tiny-llama", workers=1, zero_stage=2, max_steps=5, batch_size=4, max_length=48,
    lr=1e-2, max_eval_samples=8, eval_test=False, head_init="default", require_learning=False, max_nonfinite_steps=2)
try:
    r = train_teacher_in_process(random_dataset(n_patients=60, seed=0), cfg, sys.argv[1])
except NonFiniteLossError as e:
    print("REFUSED", e)
    sys.exit(3)
print(json.dumps({"losses": r.metrics["losses"], "nonfinite_steps": r.metrics["nonfinite_steps"]}))
"""


def _run(tmp_path, nan_calls: list[int]) -> subprocess.CompletedProcess:
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    return subprocess.run(
        [sys.executable, "-c", NAN_RUN, str(tmp_path / "run"), json.dumps(nan_calls)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


@pytest.mark.timeout(500)
def test_a_nonfinite_step_is_skipped_and_counted(tmp_path):
    r = _run(tmp_path, [2])
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["nonfinite_steps"] == 1
    losses = out["losses"]
    assert len(losses) == 5 and losses[1] != losses[1]  # NaN recorded for the skipped step
    assert all(x == x for i, x in enumerate(losses) if i != 1)  # the others trained on


@pytest.mark.timeout(500)
def test_repeated_nonfinite_steps_fail_the_run_loudly(tmp_path):
    r = _run(tmp_path, [2, 3, 4, 5])
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-3000:]
    assert "2 consecutive optimizer steps had a NaN/inf loss" in r.stdout


@pytest.mark.timeout(240)
def test_every_node_must_see_the_study_folder(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from leader.errors import ConfigError
    from leader.storage import nodes_missing, nodes_see_folder

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address)
        nodes_see_folder(tmp_path / "shared")  # one machine: every node shares its file system
        marker = tmp_path / "shared" / "m"
        marker.write_text("right")
        assert nodes_missing(marker, "right") == []
        blind = nodes_missing(marker, "another token")  # what a node-local folder looks like from elsewhere
        assert len(blind) == 2
        with pytest.raises(ConfigError, match="s.yaml: storage_path: cannot write to /proc"):
            nodes_see_folder(Path("/proc/self/this-cannot-be-created"), source="s.yaml: storage_path")
    finally:
        ray.shutdown()
        cluster.shutdown()


# The authors' release settings end to end: EOS pooling, the last state kept, their prompt wording
# and history cut, a teacher threshold; the LP stage runs too, so its frozen pass reads the EOS.
AUTHORS_RUN = """
import json, sys
sys.path.insert(0, "tests")
from helpers import random_dataset
from leader.config.teacher import TeacherTrainConfig
from leader.teacher.model import load_teacher
from leader.teacher.train import train_teacher_in_process

ds = random_dataset(n_patients=60, seed=0)
cfg = TeacherTrainConfig(backbone="tiny-llama", workers=1, max_steps=4, batch_size=4, max_length=96, lr=1e-2,
    max_eval_samples=8, require_learning=False, lp_epochs=2, eval_every=2, pooling="eos", checkpoint="last",
    threshold=0.3, prompt_style="authors", max_past_visits=3)
r = train_teacher_in_process(ds, cfg, sys.argv[1])
t = load_teacher(r.checkpoint_dir)
ps = t.prompts(ds, ds.samples("test")["sample_id"].to_numpy()[:5])
probs, hidden = t.infer(ps)
print(json.dumps({"step": r.metrics["step"], "best_step": r.metrics["best_step"],
    "validated": [h["step"] for h in r.metrics["history"]], "pooling": t.meta.get("pooling"),
    "options": t.meta["prompt_options"], "tokens": max(len(x) for x in t.tokenizer(ps)["input_ids"]),
    "ends": sorted({p[-40:] for p in ps}), "shape": list(probs.shape)}))
"""


@pytest.mark.timeout(500)
def test_the_authors_teacher_settings_train_save_and_reload(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", AUTHORS_RUN, str(tmp_path / "run")],
        cwd=REPO,
        env={**os.environ, "DS_ACCELERATOR": "cpu"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert (out["step"], out["validated"]) == (4, [2, 4])
    assert out["best_step"] == 4  # checkpoint: last keeps the final state, whatever its validation
    assert out["pooling"] == "eos" and out["options"]["append_eos"] and out["options"]["style"] == "authors"
    assert out["tokens"] <= 95  # fitted with one token left for the EOS
    assert out["ends"] == ["Then, the patient should be prescribed: "]
    assert out["shape"][0] == 5
