"""Student benchmark -> reports/bench/student.json: training throughput (samples/s), inference
latency per patient at batch 1 and 256, peak memory, on the synthetic cohort.

Also, measured in the same run: train-step throughput of this tree's model and optimizer against
the model file of an earlier commit (`--before REF --before-path FILE`; default: the last commit
with upstream `nn.TransformerEncoderLayer.forward`, `nn.Dropout` and the for-loop Adam, before
leader.student.layers), same data, shape, batch size and threads. An older comparison (0.6.x
commit 6b4a883, which padded every batch to max_visits) is `--before 6b4a883 --before-path
leader/models/student.py --before-adam loop`.

`--tree-before REF` also times the train steps of this tree against the whole tree at REF (model,
layers, dropout: every file), each in a fresh process, three times in turn, the best of each kept, in
the same run.

Usage: python scripts/bench_student.py [--patients 2000] [--epochs 3] [--threads N] [--d-model 64]
    [--batch-size 64] [--before REF] [--before-path FILE] [--before-adam loop|fused] [--tree-before REF]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch


def _module_at(ref: str, path: str, name: str) -> types.ModuleType:
    """The file `path` as it was at git `ref`, imported under `name`."""
    src = subprocess.run(["git", "show", f"{ref}:{path}"], capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType(name)
    mod.__file__ = f"{ref}:{path}"
    sys.modules[name] = mod
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


def _train_steps_per_s(mod, ds, cfg, batch_size: int, fused: bool, seed: int = 0) -> float:
    """Samples/s of one epoch of forward + BCE + backward + Adam step with module `mod`'s model
    and batches (dropout on, as in training); `fused`: the single-kernel Adam the trainer uses."""
    import numpy as np
    import torch.nn.functional as F

    enc = mod.encode_dataset(ds, cfg)
    torch.manual_seed(seed)
    model = mod.LeaderStudent.for_dataset(ds, cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    tr = np.random.default_rng(seed).permutation(enc.indices("train"))
    y = torch.from_numpy(enc.labels)
    t0 = time.perf_counter()
    for i in range(0, len(tr), batch_size):
        bi = tr[i : i + batch_size]
        loss = F.binary_cross_entropy_with_logits(model(enc.batch(bi))["logits"], y[bi])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(tr) / (time.perf_counter() - t0)


def _steps_in_fresh_process(tree: str, a: argparse.Namespace) -> float:
    """Train-step samples/s of the `leader` package found in `tree` (this script, `--steps-only`)."""
    env = {**os.environ, "PYTHONPATH": tree}
    cmd = [sys.executable, __file__, "--steps-only", "--patients", str(a.patients), "--threads", str(a.threads)]
    cmd += ["--d-model", str(a.d_model), "--batch-size", str(a.batch_size)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _tree_comparison(a: argparse.Namespace) -> dict:
    """This tree's train steps vs the whole tree at `a.tree_before`, in turn: best of three each."""
    here = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        tree = str(Path(tmp) / "tree")
        git = ["git", "-C", here, "worktree"]
        subprocess.run([*git, "add", "--detach", tree, a.tree_before], check=True, capture_output=True)
        try:
            runs = [(_steps_in_fresh_process(here, a), _steps_in_fresh_process(tree, a)) for _ in range(3)]
        finally:
            subprocess.run([*git, "remove", "--force", tree], check=False, capture_output=True)
    now, before = max(r[0] for r in runs), max(r[1] for r in runs)
    ref = a.tree_before
    return {
        "train_step_samples_per_s_this_tree": now,
        f"train_step_samples_per_s_tree_{ref}": before,
        f"train_step_speedup_vs_tree_{ref}": now / before,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--d-model", type=int, default=64, help="d_model = d_embed (the quickstart: 32)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--before", default="2acd665", help="git ref of the model to compare train steps with")
    ap.add_argument("--before-path", default="leader/student/model.py", help="the model file at that ref")
    ap.add_argument("--before-adam", choices=["loop", "fused"], default="loop", help="the Adam of that ref")
    ap.add_argument("--tree-before", default=None, help="git ref of a whole tree to compare train steps with")
    ap.add_argument("--steps-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="reports/bench/student.json")
    a = ap.parse_args()

    from leader.config.student import StudentConfig, StudentTrainConfig
    from leader.data.cache import PrepareOptions, prepare
    from leader.student.model import encode_dataset
    from leader.student.train import measure_student_latency, train_student

    ds = prepare("synthetic", opts=PrepareOptions(n_patients=a.patients, synthetic_seed=0))
    shape = StudentConfig(d_model=a.d_model, d_embed=a.d_model, n_heads=max(1, a.d_model // 16))
    if a.steps_only:  # the child of _steps_in_fresh_process: whichever `leader` PYTHONPATH gives
        import leader.student.model as mod

        torch.set_num_threads(a.threads)
        _train_steps_per_s(mod, ds, shape, a.batch_size, fused=True)  # warm-up
        print(_train_steps_per_s(mod, ds, shape, a.batch_size, fused=True))
        return
    cfg = StudentTrainConfig(
        student=shape, kd="none", epochs=a.epochs, patience=a.epochs, num_threads=a.threads, batch_size=a.batch_size
    )
    t0 = time.perf_counter()
    encode_dataset(ds, cfg.student)
    t_enc = time.perf_counter() - t0
    res = train_student(ds, cfg)
    thr = [h["samples_per_s"] for h in res.history]
    lat = measure_student_latency(res.model, ds, batch_sizes=(1, 256), repeats=20)
    torch.set_num_threads(a.threads)
    import leader.student.model as now

    before = _module_at(a.before, a.before_path, "student_before")
    step_now = _train_steps_per_s(now, ds, shape, cfg.batch_size, fused=True)
    step_before = _train_steps_per_s(before, ds, shape, cfg.batch_size, fused=a.before_adam == "fused")
    out = {
        "command": " ".join(["python", "scripts/bench_student.py", *sys.argv[1:]]),
        "n_patients": a.patients,
        "n_samples": int(len(ds.visits)),
        "n_train_samples": int(ds.samples("train").shape[0]),
        "threads": a.threads,
        "d_model": a.d_model,
        "batch_size": a.batch_size,
        "encode_s": t_enc,
        "train_samples_per_s": max(thr),
        "train_samples_per_s_first_epoch": thr[0],
        "latency_ms_per_patient_b1": lat["latency_ms_per_patient_b1"],
        "latency_ms_per_patient_b256": lat["latency_ms_per_patient_b256"],
        "batch256_speedup_per_patient": lat["latency_ms_per_patient_b1"] / lat["latency_ms_per_patient_b256"],
        "train_step_samples_per_s": step_now,
        f"train_step_samples_per_s_at_{a.before}": step_before,
        "train_step_speedup_vs_before": step_now / step_before,
        **(_tree_comparison(a) if a.tree_before else {}),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_traced_mb_b256": lat["peak_traced_mb"],
        "n_params": lat["n_params"],
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
