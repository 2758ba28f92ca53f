"""The `features/<dataset>/<backbone>` unit (the frozen teacher's states and probabilities for
every split, what the student distils) and `teacher_eval/...` (LEADER(T)'s test row, scored
from those probabilities)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leader.study.context import Study
from leader.study.spec import StudySpec
from leader.study.stages.scoring import score
from leader.study.units import Unit, teacher_threshold


def extract_options(spec: StudySpec) -> dict:
    """extract_features' worker settings for a study: one actor per teacher worker, each holding that
    worker's resources ({"CPU": cpu_per_worker, "GPU": gpu_per_worker}), the footprint the teacher's
    training had just before. With GPUs Ray shows each actor its GPU and the teacher loads on cuda;
    on CPU each actor computes on cpu_per_worker threads (Ray's OMP_NUM_THREADS). Until 2026-12 a CPU
    study extracted with one 1-CPU actor, leaving all but one core idle. The batch is
    teacher.options.eval_batch_size when the study sets it. None of this is in the features key: it
    changes where and how fast the features are computed, not what they are."""
    tr = spec.teacher_resources
    res = {"CPU": tr.cpu_per_worker, **({"GPU": tr.gpu_per_worker} if tr.gpu_per_worker > 0 else {})}
    kw: dict = {"workers": tr.num_workers, "resources_per_worker": res}
    opts = spec.teacher.options if spec.teacher is not None else None
    if opts is not None and "eval_batch_size" in opts.model_fields_set:
        kw["batch_size"] = opts.eval_batch_size
    return kw


def run(study: Study, u: Unit) -> Path:
    from leader.features.extract import extract_features

    ds, teacher_dir, bb = study.need(u, "data"), study.need(u, "teacher"), u.backbone
    out = study.dir / "features" / ds.name / bb
    kw = extract_options(study.spec)  # workers / resources / batch: not in the key (same features)
    study.state.stage(
        u, lambda: {"dir": str(extract_features(ds, teacher_dir, out, backbone=bb, **kw)), "_files": [out]}
    )
    return out


def teacher_eval(study: Study, u: Unit) -> None:
    from leader.features.store import load_features

    ds, feat_dir = study.need(u, "data"), study.need(u, "features")

    def run_():
        from leader.evaluation import test_frame

        feats = load_features(feat_dir)
        _, probs = feats.align(test_frame(ds)["sample_id"].to_numpy(np.int64))
        thr = teacher_threshold(study.spec)  # the teacher's own threshold option, else the student's
        kw = {"stage": "teacher", "dataset": ds.name, "backbone": u.backbone, "model": "LEADER(T)"}
        parts = score(study, u.name, ds, probs, threshold=thr, **kw)
        return {"parts": parts, "_files": parts}

    study.state.stage(u, run_)
