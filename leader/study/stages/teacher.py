"""The `teacher/<dataset>/<backbone>` unit: fine-tune the teacher with Ray Train + DeepSpeed (or
take the study's checkpoint for it) into `<study>/teacher/<dataset>/<backbone>`."""

from __future__ import annotations

import shutil
from pathlib import Path

from leader.atomic import replace_folder
from leader.errors import CheckpointError
from leader.study.context import Study
from leader.study.units import Unit


def run(study: Study, u: Unit) -> Path:
    t, bb, ds = study.spec.teacher, u.backbone, study.need(u, "data")
    for k in (f"{ds.name}/{bb}", bb):
        if k in t.checkpoints:
            p = Path(t.checkpoints[k]).expanduser()
            if not p.is_dir():
                raise CheckpointError(f"teacher.checkpoints[{k!r}]: no such folder {p}")
            return p
    out = study.dir / "teacher" / ds.name / bb

    def train():
        from leader.study.budget import teacher_config  # the one builder: `plan` sizes what runs
        from leader.teacher.train import train_teacher

        cfg = teacher_config(study.spec, bb)
        # one Ray Train run folder per key: a killed driver resumes the same run from its
        # latest checkpoint, and a changed config never restores another config's run. A run
        # that had finished (its copied output failed verification) is not resumable: train anew.
        storage, run_name = study.dir / "teacher" / "_ray" / ds.name / bb, f"teacher-{u.key[:12]}"
        if (storage / run_name / "final").is_dir():
            shutil.rmtree(storage / run_name)
        res = train_teacher(ds, cfg, str(storage), name=run_name)
        ck = Path(getattr(res, "checkpoint_dir", res))
        if ck.resolve() != out.resolve():
            replace_folder(out, lambda tmp: shutil.copytree(ck, tmp))
        return {"dir": str(out), "_files": [out]}

    study.state.stage(u, train)
    return out
