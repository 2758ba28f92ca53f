"""The `efficiency/<dataset>/<backbone>` unit: latency per patient and memory of the student and
the teacher, each measured in its own fresh Ray task on the same device and test patients."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leader.study.context import Study
from leader.study.spec import StudySpec
from leader.study.stages.scoring import part_name
from leader.study.state import write_frame
from leader.study.units import Unit


def measure(ds, model_dir, teacher_dir, sizes, compiled: bool = False) -> list[dict]:
    """Latency per patient (warm, median) at each batch size, and memory from the allocator:
    parameter + buffer bytes plus the peak activation bytes of one forward pass at the largest
    batch (leader.efficiency). Same device and the same test patients for both models. `compiled`
    adds the student's AOT-compiled package (CPU only), timed on the same batches."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    ids = ds.samples("test")["sample_id"].to_numpy()[: max(sizes)]
    rows = []
    if model_dir:
        from leader.fit import to_device
        from leader.student.model import encode_dataset
        from leader.student.train import load_student

        m = load_student(model_dir).model.to(dev).eval()
        enc = encode_dataset(ds, m.cfg)
        pos = {int(v): i for i, v in enumerate(enc.sample_ids)}
        idx = np.array([pos[int(i)] for i in ids])

        def fwd(b):
            batch = to_device(enc.batch(np.resize(idx, b)), dev)  # inputs on the model's device
            return lambda: m(batch)

        rows += _rows("LEADER(S)", m, fwd, sizes, dev)
        if compiled and dev == "cpu":
            rows += _compiled_rows(m, enc, idx, sizes)
    if teacher_dir:
        from leader.teacher.model import load_teacher

        t = load_teacher(teacher_dir, device=dev)
        pool = t.prompts(ds, ids)

        def fwd(b):
            prompts = [pool[i % len(pool)] for i in range(b)]
            return lambda: t.infer(prompts, batch_size=b)

        rows += _rows("LEADER(T)", t.model, fwd, sizes, dev)
    return rows


def _compiled_rows(m, enc, idx, sizes) -> list[dict]:
    """'LEADER(S) compiled' rows: the package is built in a temporary folder, and refused (a
    RuntimeError fails the unit) unless its logits equal the eager student's on the timed batches."""
    import tempfile

    import torch

    from leader.student.serve import ServedStudent, compile_student

    batches = {b: enc.batch(np.resize(idx, b)) for b in sizes}  # the batches checked are the ones timed
    with tempfile.TemporaryDirectory() as tmp:
        served = ServedStudent(compile_student(m, enc.batch(idx[:8]), f"{tmp}/student.pt2"))
        with torch.no_grad():
            for b, batch in batches.items():
                err = float((served(batch) - m(batch)["logits"]).abs().max())
                if err > 1e-4:
                    raise RuntimeError(f"compiled student differs from eager by {err:.2e} at batch {b}")
        return _rows("LEADER(S) compiled", m, lambda b: lambda: served(batches[b]), sizes, "cpu")


def _rows(name, module, fwd, sizes, dev) -> list[dict]:
    from leader.efficiency import latency_ms, model_bytes, peak_activation_bytes

    weights = model_bytes(module)
    act = peak_activation_bytes(fwd(max(sizes)), dev)
    return [
        {
            "model": name,
            "latency_ms_per_patient": latency_ms(fwd(b), b, device=dev),  # synchronised on a GPU
            "batch_size": b,
            "device": dev,
            "param_mb": weights / 2**20,
            "peak_activation_mb": act / 2**20,
            "peak_mem_mb": (weights + act) / 2**20,
            "n_params": int(sum(p.numel() for p in module.parameters())),
        }
        for b in sizes
    ]


def measure_options(spec: StudySpec) -> dict:
    """Ray options of the efficiency task. Ray hides every GPU from a task that asks for none, so a
    study with teacher GPUs asks for one (and a teacher worker's CPUs): teacher and student are then
    timed on the GPU the teacher runs on. Otherwise as before: the student trial's CPUs."""
    tr = spec.teacher_resources
    if tr.gpu_per_worker > 0:
        return {"num_cpus": tr.cpu_per_worker, "num_gpus": 1}
    return {"num_cpus": spec.resources.cpu}


def remote_measure():
    """`measure` as a Ray task that runs in a fresh process each call (max_calls=1)."""
    import ray

    return ray.remote(num_cpus=1, max_calls=1)(measure)


def run(study: Study, u: Unit) -> None:
    ds, teacher_dir, bb = study.need(u, "data"), study.need(u, "teacher"), u.backbone
    model_dir = study.state.get(u.needs["grid"]).get("outputs", {}).get("model_dir")

    def run_():
        import ray

        sizes = tuple(study.spec.evaluation.latency_batch_sizes)
        # student and teacher in separate fresh processes, on the same device (measure_options)
        m = remote_measure().options(**measure_options(study.spec))
        rows = ray.get(m.remote(ds, model_dir, None, sizes, study.spec.evaluation.compiled_student))
        if teacher_dir:
            rows += ray.get(m.remote(ds, None, str(teacher_dir), sizes))
        for r in rows:
            r.update(dataset=ds.name, backbone=bb)
        part = study.parts / f"{part_name(u.name)}.eff.parquet"
        write_frame(pd.DataFrame(rows), part)
        rel = str(part.relative_to(study.dir))
        return {"parts": [rel], "_files": [rel]}

    study.state.stage(u, run_)
