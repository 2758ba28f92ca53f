"""Orchestration at paper scale: a study with the trial-matrix shape of the paper studies (per
backbone: an Optuna sweep, ablation variants x seeds, sensitivity alpha/beta values x seeds and the
released rows; per dataset: every tuned baseline swept with the student's budget), run on CPU at
two sizes (~70 and ~730 trials) in one invocation, so the 700/70 ratios come from one machine
state. Writes reports/bench/orchestration.json.

Trials are tiny on purpose (150 synthetic patients, d_model 8, 1 epoch, 2 bootstrap rounds, a
1-step teacher on tiny backbones): what is measured is the driver, not the training. Both sizes
share the teachers: a first, untimed `prep` study trains them and the measured studies reuse them
through `teacher.checkpoints` (a teacher is per backbone, not per trial, so it would only add a
fixed cost to both sizes).

Figures (each per size, `_70` / `_700` suffix, and `ratio_*` = 700 / 70):
- driver_cpu_s_per_trial: CPU seconds (user + system) of the `leader study run` process itself
  (not Ray's raylet/GCS or the trial workers, its children), divided by the Tune trials run. This is
  the driver's own work per trial: Tune's controller loop, the stages' per-trial bookkeeping,
  state.json, results assembly, the report.
- driver_cpu_s_per_trial_in_trial_stages: the same, counted only while a Tune stage (sweep, grid,
  tuned baseline) runs, from the driver's '[run ]' / '[done]' lines.
- driver_cpu_s_<stage>_per_trial, wall_s_<stage>_per_trial: per Tune stage kind (sweep, grid,
  tuned baseline), the driver's CPU seconds and the wall seconds of its units / that stage's trials
  (each Tune experiment's start-up included, so a 6-trial sweep pays it over fewer trials).
- wall_s_per_trial: wall seconds of the whole run / trials (2 trials at once).
- marginal_<x>_per_trial: (x at ~730 trials - x at ~70) / (trial difference): what one more trial
  costs once the fixed costs of a study (imports, Ray start, features, efficiency, figures) cancel.
- peak_driver_rss_mb: peak resident memory of the driver process (sampled every 0.2 s); the peak of
  all its descendants together (Ray processes + trial workers) beside it.
- tune_experiment_state_bytes: bytes of Tune's experiment_state-*.json files (all experiments);
  tune_dir_bytes: the whole tune/ folder; both also per trial.
- status_s: `leader study status <study dir>` wall time (fresh process, includes imports);
  report_s: `leader report build` wall time (fresh process), and per trial.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

BACKBONES = ["tiny-llama", "tiny-qwen2", "minilm"]
TUNED = ["retain", "gamenet", "micron", "cognet"]
# The paper studies' matrix (studies/base.yaml + mimic3_paper.yaml) and the same shape scaled by
# ~1/10: each stage keeps its share of the trials (sweep ~26 %, grid ~39 %, baselines ~35 %).
SHAPES = {
    700: dict(
        num_samples=64,
        seeds=[0, 1, 2, 3, 4],
        variants=["full", "no_kd", "output_kd", "no_align", "split_visit_encoder"],
        alpha=[0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0],
        beta=[0.0, 0.001, 0.005, 0.01, 0.05, 0.1],
    ),
    70: dict(
        num_samples=6,
        seeds=[0],
        variants=["full", "no_kd", "output_kd"],
        alpha=[0.1, 0.4, 1.0],
        beta=[0.005, 0.05],
    ),
}


def study_file(name: str, root: Path, shape: dict, teachers: dict | None) -> dict:
    """A paper-shaped study (preset: paper, 3 backbones, 4 tuned baselines) with tiny trials.
    `teachers` (backbone -> folder): reuse those teachers instead of training them."""
    teacher: dict = {
        "backbones": BACKBONES,
        "options": {
            "max_steps": 1,
            "lp_epochs": 1,
            "batch_size": 8,
            "max_length": 64,
            "eval_batch_size": 64,
            "eval_every": 0,
            "checkpoint_every": 1000,
            "require_learning": False,
            "lora_rank": 2,
            "lora_alpha": 4,
            "gradient_checkpointing": False,
        },
    }
    if teachers:
        teacher.update(train=False, checkpoints=teachers)
    return {
        "name": name,
        "preset": "paper",
        "storage_path": str(root),
        "datasets": [{"name": "syn", "source": "synthetic", "prepare": {"n_patients": 150, "synthetic_seed": 0}}],
        "teacher": teacher,
        "teacher_resources": {"num_workers": 1, "cpu_per_worker": 1},
        "student": {
            "epochs": 1,
            "patience": 1,
            "d_model": 8,
            "d_embed": 8,
            "n_heads": 1,
            "batch_size": 64,
            "threshold": 0.3,
        },
        "search": {
            "space": {
                "lr": {"type": "loguniform", "low": 0.001, "high": 0.01},
                "alpha": {"type": "loguniform", "low": 0.01, "high": 1.0},
                "beta": {"type": "loguniform", "low": 0.001, "high": 0.1},
                "dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
            },
            "sampler": "tpe",
            "metric": "val_prauc",
            "mode": "max",
            "num_samples": shape["num_samples"],
            "max_concurrent": 2,
            "storage": "sqlite:///optuna.db",
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        },
        "ablations": {"variants": shape["variants"]},
        "sensitivity": {"alpha": shape["alpha"], "beta": shape["beta"]},
        "seeds": shape["seeds"],
        "resources": {"cpu": 1, "gpu": 0},
        "evaluation": {"bootstrap_rounds": 2, "latency_batch_sizes": [1]},
        "baselines": {"trivial": ["prior"], "tuned": {b: {"params": {"epochs": 1}} for b in TUNED}},
        "report": {"enabled": True},
    }


def leader(*args: str) -> list[str]:
    return [sys.executable, "-m", "leader.cli.main", *args]


def validate(path: Path) -> dict:
    out = subprocess.run(leader("study", "validate", str(path), "--json"), capture_output=True, text=True, check=True)
    return json.loads(out.stdout[out.stdout.index("{") :])["summary"]


def tree_bytes(path: Path, pattern: str = "**/*") -> int:
    return sum(f.stat().st_size for f in path.glob(pattern) if f.is_file())


class Sampler(threading.Thread):
    """Peak RSS of the driver and of its whole process tree, every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.proc, self.every, self.stop = psutil.Process(pid), every, threading.Event()
        self.peak_driver = self.peak_tree = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                kids = 0
                for c in self.proc.children(recursive=True):
                    try:
                        kids += c.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self.peak_driver, self.peak_tree = max(self.peak_driver, rss), max(self.peak_tree, rss + kids)
            self.stop.wait(self.every)


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


TRIAL_UNIT = re.compile(r"^\[(run |done)\] ((sweep|grid|baseline)/\S+?):?\s")


def tune_kind(unit: str) -> str | None:
    """The Tune stage a unit name belongs to (sweep, grid, tuned baseline), else None."""
    head, tail = unit.split("/")[0], unit.split("/")[-1]
    if head in ("sweep", "grid"):
        return head
    return "baseline" if head == "baseline" and tail in TUNED else None


def run_study(path: Path, log: Path) -> dict:
    """`leader study run` as a child process; its own CPU time, total and inside Tune stages, read
    at each '[run ]' / '[done]' line of a Tune stage, and its peak memory."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        p = subprocess.Popen(leader("study", "run", str(path)), stdout=subprocess.PIPE, stderr=fh, text=True)
        proc = psutil.Process(p.pid)
        sampler = Sampler(p.pid)
        sampler.start()
        # per Tune stage kind: [driver CPU s, wall s], from each unit's '[run ]' to its '[done]' line
        stages: dict[str, list[float]] = {k: [0.0, 0.0] for k in ("sweep", "grid", "baseline")}
        started, last = None, 0.0
        for line in p.stdout:
            fh.write(line)
            fh.flush()
            try:
                last = cpu_s(proc)
            except psutil.Error:
                pass
            m = TRIAL_UNIT.match(line)
            k = tune_kind(m.group(2)) if m else None
            if k and m.group(1) == "run ":
                started = (last, time.perf_counter())
            elif k and started is not None:
                stages[k][0] += last - started[0]
                stages[k][1] += time.perf_counter() - started[1]
                started = None
        # last reading before exit: poll the driver's own CPU time until it is gone
        while p.poll() is None:
            try:
                last = cpu_s(proc)
            except psutil.Error:
                break
            time.sleep(0.05)
        rc = p.wait()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if rc != 0:
        raise SystemExit(f"study run failed (rc {rc}); see {log}")
    return {
        "wall": wall,
        "driver_cpu": last,
        "driver_cpu_trial_stages": sum(v[0] for v in stages.values()),
        "stages": stages,
        "peak_driver": sampler.peak_driver,
        "peak_tree": sampler.peak_tree,
    }


def timed(cmd: list[str], repeats: int) -> float:
    """Fastest of `repeats` runs (a shared machine is noisy)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def measure(n: int, root: Path, teachers: dict, repeats: int, reuse: bool) -> dict:
    """Run the study of size `n` and time status / report on its folder. `reuse`: take the run's
    figures from its earlier run (root/orch_<n>.run.json) and only time status and report again."""
    name = f"orch_{n}"
    path, saved = root / f"{name}.yaml", root / f"{name}.run.json"
    if not reuse:
        shutil.rmtree(root / name, ignore_errors=True)
        path.write_text(yaml.safe_dump(study_file(name, root, SHAPES[n], teachers), sort_keys=False))
    plan = validate(path)
    plan["grid_trials"] = plan["ablation_trials"] + plan["sensitivity_trials"] + plan["released_trials"]
    trials = int(plan["total_trials"])
    print(f"[bench] {name}: {trials} trials planned", flush=True)
    if reuse:
        r = json.loads(saved.read_text())
    else:
        r = run_study(path, root / f"{name}.log")
        saved.write_text(json.dumps(r))
    d = root / name
    status = timed(leader("study", "status", str(d)), repeats)
    report = timed(leader("report", "build", str(d), "--out", str(root / f"{name}_report")), repeats)
    state_b = tree_bytes(d / "tune", "*/experiment_state-*.json")
    tune_b = tree_bytes(d / "tune")
    mb = 1 / 2**20
    out = {
        "trials": trials,
        "sweep_trials": plan["sweep_trials"],
        "grid_trials": plan["grid_trials"],
        "baseline_trials": plan["baseline_trials"],
        "wall_s": round(r["wall"], 1),
        "wall_s_per_trial": round(r["wall"] / trials, 3),
        "driver_cpu_s": round(r["driver_cpu"], 1),
        "driver_cpu_s_per_trial": round(r["driver_cpu"] / trials, 4),
        "driver_cpu_s_per_trial_in_trial_stages": round(r["driver_cpu_trial_stages"] / trials, 4),
        **{
            f"{x}_{k}_per_trial": round(r["stages"][k][i] / plan[f"{k}_trials"], 4)
            for k in ("sweep", "grid", "baseline")
            for i, x in enumerate(("driver_cpu_s", "wall_s"))
        },
        "peak_driver_rss_mb": round(r["peak_driver"] * mb, 1),
        "peak_process_tree_rss_mb": round(r["peak_tree"] * mb, 1),
        "tune_experiment_state_bytes": state_b,
        "tune_experiment_state_bytes_per_trial": round(state_b / trials, 1),
        "tune_dir_bytes": tune_b,
        "tune_dir_bytes_per_trial": round(tune_b / trials, 1),
        "state_json_bytes": (d / "state.json").stat().st_size,
        "status_s": round(status, 2),
        "report_s": round(report, 2),
        "report_s_per_trial": round(report / trials, 4),
    }
    print(f"[bench] {name}: {json.dumps(out)}", flush=True)
    return out


def prep_teachers(root: Path) -> dict:
    """Train the three tiny teachers once (a minimal study with the measured studies' data protocol,
    preset included: 1 sweep trial, 2 grid rows) and return backbone -> teacher folder."""
    shape = dict(num_samples=1, seeds=[0], variants=["full"], alpha=[], beta=[])
    spec = study_file("orch_prep", root, shape, None)
    spec["baselines"] = {"trivial": [], "tuned": {}}
    d = root / "orch_prep"
    path = root / "orch_prep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = {bb: str(d / "teacher" / "syn" / bb) for bb in BACKBONES}
    if not all(Path(p, "meta.json").is_file() for p in out.values()):
        print("[bench] training the tiny teachers once (prep study)", flush=True)
        subprocess.run(leader("study", "run", str(path)), check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/orch_bench", help="study outputs (outside the repo)")
    ap.add_argument("--sizes", default="70,700")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of status / report (fastest kept)")
    ap.add_argument("--out", default="reports/bench/orchestration.json")
    ap.add_argument(
        "--reuse-runs", action="store_true", help="keep the studies of an earlier run; time status and report again"
    )
    a = ap.parse_args()
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    # on a loaded shared machine Ray's dashboard can take over its 60 s default to start
    os.environ.setdefault("RAY_DASHBOARD_STARTUP_TIMEOUT_S", "300")
    teachers = {} if a.reuse_runs else prep_teachers(root)
    sizes = [int(s) for s in a.sizes.split(",")]
    res = {n: measure(n, root, teachers, a.repeats, a.reuse_runs) for n in sizes}
    out: dict = {"command": " ".join(["python", *sys.argv]), "cpus": os.cpu_count(), "concurrency": 2}
    for n, r in res.items():
        out.update({f"{k}_{n}": v for k, v in r.items()})
    if len(sizes) == 2:
        lo, hi = sorted(sizes)
        for k in res[hi]:
            if "_per_trial" in k or k == "peak_driver_rss_mb":
                out[f"ratio_{k}"] = round(res[hi][k] / res[lo][k], 3) if res[lo][k] else None
        # what one more trial costs (the fixed costs of a study, paid at both sizes, cancel out)
        dn = res[hi]["trials"] - res[lo]["trials"]
        for k in ("driver_cpu_s", "wall_s", "report_s", "tune_dir_bytes"):
            out[f"marginal_{k}_per_trial"] = round((res[hi][k] - res[lo][k]) / dn, 4)
    out["notes"] = __doc__.split("Figures", 1)[1].strip()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
