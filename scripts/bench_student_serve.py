"""Student serving benchmark -> reports/bench/student_serve.json: latency per patient of the eager
student against its AOT-compiled package (leader.student.serve), at batch 1 and batch 256, on one
thread, same weights and patients, measured in one run; and the largest output difference.

Batch 1 cycles through every test patient (their histories and code sets differ, so each call has
its own shapes, as in serving); the figure is the best of `--repeats` passes of the mean per call.
Batch 256 is the test patients repeated to 256. Weights are the initialisation (latency does not
depend on their values); the output check compares logits on every test patient.

Usage: python scripts/bench_student_serve.py [--patients 1000] [--d-models 32 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _per_call_ms(fn, batches: list, repeats: int) -> float:
    """Best over `repeats` passes of the mean wall ms per call (after one warm pass)."""
    with torch.no_grad():
        for b in batches:
            fn(b)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for b in batches:
                fn(b)
            best = min(best, (time.perf_counter() - t0) / len(batches))
    return 1000 * best


def _one_size(ds, d_model: int, repeats: int, folder: Path) -> dict:
    from leader.config.student import StudentConfig
    from leader.student.model import LeaderStudent, encode_dataset
    from leader.student.serve import ServedStudent, compile_student

    cfg = StudentConfig(d_model=d_model, d_embed=d_model)
    torch.manual_seed(0)
    model = LeaderStudent.for_dataset(ds, cfg).eval()
    enc = encode_dataset(ds, cfg)
    test = enc.indices("test")
    t0 = time.perf_counter()
    path = compile_student(model, enc.batch(test[:8]), folder / f"student_d{d_model}.pt2")
    compile_s = time.perf_counter() - t0
    served = ServedStudent(path)
    eager = lambda b: model(b)["logits"]  # noqa: E731
    b1 = [enc.batch(test[i : i + 1]) for i in range(len(test))]
    b256 = [enc.batch(np.resize(test, 256))]
    with torch.no_grad():
        diff = max(float((served(b) - eager(b)).abs().max()) for b in b1 + b256)
    out = {"compile_s": compile_s, "max_abs_logit_diff": diff, "n_params": sum(p.numel() for p in model.parameters())}
    for name, fn in (("eager", eager), ("compiled", served)):
        out[f"{name}_ms_per_patient_b1"] = _per_call_ms(fn, b1, repeats)
        out[f"{name}_ms_per_patient_b256"] = _per_call_ms(fn, b256, repeats) / 256
    out["speedup_b1"] = out["eager_ms_per_patient_b1"] / out["compiled_ms_per_patient_b1"]
    out["speedup_b256"] = out["eager_ms_per_patient_b256"] / out["compiled_ms_per_patient_b256"]
    return {f"d{d_model}_{k}": v for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--d-models", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="reports/bench/student_serve.json")
    a = ap.parse_args()
    torch.set_num_threads(1)

    from leader.data.cache import PrepareOptions, prepare

    ds = prepare("synthetic", opts=PrepareOptions(n_patients=a.patients, synthetic_seed=0))
    res = {"command": "python " + " ".join(sys.argv), "n_patients": a.patients, "threads": 1}
    res["n_test_patients"] = int((ds.samples("test")["split"] == "test").sum())
    with tempfile.TemporaryDirectory() as tmp:
        for d in a.d_models:
            res.update(_one_size(ds, d, a.repeats, Path(tmp)))
    res.update(machine=platform.machine(), torch=torch.__version__)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
