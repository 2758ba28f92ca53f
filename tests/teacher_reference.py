"""The one-process reference of a W-worker teacher run: the real worker (`train_teacher_in_process`)
with world size 1 and per-worker batch x W takes the same global batches and optimizer steps, so
its losses are what the distributed run must reproduce.

Run in a child process: the in-process worker leaves a torch.distributed group and its RANK /
LOCAL_RANK variables behind, which the test process (and the Ray clusters it starts) must not see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_process_losses(cfg, world: int, out: Path, n_patients: int = 60, seed: int = 0) -> list[float]:
    """Losses of `cfg` on `random_dataset(n_patients, seed)` run as one process of batch x `world`."""
    from leader.config.teacher import FAIL_AT_STEP_ENV

    one = cfg.model_copy(update={"workers": 1, "batch_size": cfg.batch_size * world, "checkpoint_every": 0})
    job = {"cfg": one.model_dump(mode="json"), "out": str(out), "n_patients": n_patients, "seed": seed}
    env = {k: v for k, v in os.environ.items() if k != FAIL_AT_STEP_ENV} | {"DS_ACCELERATOR": "cpu"}
    r = subprocess.run(
        [sys.executable, __file__, json.dumps(job)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _main(job: dict) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import random_dataset

    from leader.config.teacher import TeacherTrainConfig
    from leader.teacher.train import train_teacher_in_process

    ds = random_dataset(n_patients=job["n_patients"], seed=job["seed"])
    res = train_teacher_in_process(ds, TeacherTrainConfig(**job["cfg"]), job["out"])
    print(json.dumps(res.metrics["losses"]))


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
