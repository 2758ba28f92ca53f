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
            _same_cohort(p, ds, f"teacher.checkpoints[{k!r}]")
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


def _same_cohort(folder: Path, ds, field: str) -> None:
    """A given teacher must have been trained on this study's cohort: its probe scores, test scores
    and standardisation are per sample of that cohort, so another cohort (another source, size or
    data protocol) would fail deep inside a later unit, or score the wrong patients."""
    from leader.errors import read_json
    from leader.teacher.model import META

    meta = read_json(folder / META, CheckpointError, what=f"{field} (teacher checkpoint)")
    fp = meta.get("dataset_fingerprint")
    if fp and fp != ds.fingerprint:
        raise CheckpointError(
            f"{field}: {folder / META} field 'dataset_fingerprint' is {fp} (dataset {meta.get('dataset')!r}), but "
            f"this study's dataset {ds.name!r} is {ds.fingerprint}: the teacher was trained on another cohort "
            "(source, size or data protocol); point to a teacher of this cohort or remove the entry to train one"
        )
