"""Chaos test of `leader study run`: a small real study (local Ray, CPU, the quickstart's shape
trimmed: synthetic cohort, tiny-llama teacher via Ray Train + DeepSpeed, feature store, Tune +
Optuna sweep, ablation trials over two seeds, report) run once uninterrupted as the reference,
then again under injected faults. After each fault the study is run again to completion and
checked: the same set of units, each completed once, the same final metrics (seeded), no unit
reused when its key or outputs changed, the exit code right (non-zero exactly when a fault must
fail the run). Writes reports/bench/chaos.json.

    python scripts/chaos_study.py [--work /tmp/chaos] [--out reports/bench/chaos.json]

The code under test is a snapshot of the committed tree (git archive HEAD), so the code
version in every unit key stays the same for the whole run even if the checkout moves on.
Everything is judged from the runner's own records, never its console: kill points wait for a
unit to be marked in state.json, a unit "ran" when its state.json entry changed during the run,
and exactly-once reads each unit's `completions` of the work it `completed`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 1500

STUDY = {
    "name": "chaos",
    "datasets": [{"name": "syn", "source": "synthetic", "prepare": {"n_patients": 60}}],
    "teacher": {
        "backbones": ["tiny-llama"],
        "train": True,
        "options": {
            "max_steps": 6,
            "checkpoint_every": 1,
            "eval_every": 0,
            "max_length": 96,
            "batch_size": 4,
            "require_learning": False,
            "lr": 0.002,
        },
    },
    "teacher_resources": {"num_workers": 1, "cpu_per_worker": 1},
    "student": {
        "epochs": 3,
        "patience": 3,
        "d_model": 16,
        "d_embed": 16,
        "n_heads": 2,
        "batch_size": 32,
        "threshold": 0.3,
    },
    "search": {
        "space": {
            "lr": {"type": "loguniform", "low": 0.002, "high": 0.02},
            "alpha": {"type": "uniform", "low": 0.1, "high": 1.0},
        },
        "sampler": "random",
        "num_samples": 3,
        "max_concurrent": 1,
        "seed": 0,
        "scheduler": {"type": "fifo"},
    },
    "ablations": {"variants": ["full", "no_kd"]},
    "baselines": {"trivial": ["prior"]},
    "seeds": [0, 1],
    "evaluation": {"bootstrap_rounds": 3, "latency_batch_sizes": [1]},
    "report": {"enabled": True},
}


class Chaos:
    def __init__(self, work: Path, src: Path):
        self.work, self.src = work, src
        self.env = dict(os.environ, PYTHONPATH=str(src), RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "token"))
        self.env.pop("RAY_ADDRESS", None)
        self.scenarios: list[dict] = []
        self.out: Path | None = None
        self.t0, self.ref_s = time.time(), None

    def flush(self) -> dict:
        """Write the summary after every scenario, so an interrupted chaos run still reports."""
        sc = self.scenarios
        out = {
            "kills": len(sc),
            "driver_kills": sum(1 for s in sc if s["kind"] == "kill" and "worker" not in s["fault"]),
            "recovered": sum(1 for s in sc if s.get("recovered")),
            "stuck": sum(1 for s in sc if s.get("stuck") or s.get("first_attempt_stuck")),
            "duplicate_trials": sum(s.get("duplicate_trials", 0) for s in sc),
            "lost_trials": sum(s.get("lost_trials", 0) for s in sc),
            "stale_reuses": sum(len(s.get("stale_reuses", [])) for s in sc),
            "unexpected_runs": sum(len(s.get("unexpected_runs", [])) + len(s.get("duplicate_units", [])) for s in sc),
            "wrong_exit_codes": sum(
                1 for s in sc if s.get("wrong_exit") or (s["kind"] == "kill" and s.get("rerun_rc"))
            ),
            "reference_seconds": self.ref_s,
            "total_seconds": round(time.time() - self.t0, 1),
            "command": "python scripts/chaos_study.py",
            "scenarios": sc,
        }
        if self.out:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(json.dumps(out, indent=1, default=str))
        return out

    # ------------------------------------------------------------------ running
    def write_spec(self, name: str, spec: dict) -> Path:
        p = self.work / f"{name}.yaml"
        p.write_text(yaml.safe_dump({**spec, "storage_path": str(self.work / name)}, sort_keys=False))
        return p

    def run(self, spec_file: Path, kill_when=None, env: dict | None = None, log: str = "") -> dict:
        """One `leader study run`; `kill_when(t0, study_dir, proc)`, polled while it runs, -> True
        SIGKILLs the driver's whole process group at that moment. A thread drains the output
        meanwhile, so a waiting kill condition never blocks the driver on a full pipe. `before`
        is state.json as the run found it (what `ran_units` compares with)."""
        import threading

        cmd = [sys.executable, "-m", "leader.cli.main", "study", "run", str(spec_file), "--no-dashboard"]
        before = state_of(self.study_dir(spec_file))
        t0 = time.time()
        proc = subprocess.Popen(
            cmd,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            cwd=self.src,
        )
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
        reader.start()
        killed, study_dir = False, self.study_dir(spec_file)
        while kill_when is not None and not killed and proc.poll() is None:
            if kill_when(t0, study_dir, proc) and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
            else:
                time.sleep(0.1)
            if time.time() - t0 > RUN_TIMEOUT:
                break
        try:
            proc.wait(timeout=max(1, RUN_TIMEOUT - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {
                "rc": None,
                "log": "".join(out),
                "before": before,
                "killed": killed,
                "stuck": True,
                "s": time.time() - t0,
            }
        reader.join(timeout=30)
        if killed:
            time.sleep(3)  # Ray's own processes notice the dead driver and exit
        text = "".join(out)
        if log:
            (self.work / f"{log}.log").write_text(text)
        return {
            "rc": proc.returncode,
            "log": text,
            "before": before,
            "killed": killed,
            "stuck": False,
            "s": round(time.time() - t0, 1),
        }

    def study_dir(self, spec_file: Path) -> Path:
        return Path(yaml.safe_load(spec_file.read_text())["storage_path"]) / "chaos"

    def keys_of(self, spec_file: Path) -> dict:
        code = (
            "import json,sys; from leader.study.spec import load_study; from leader.study.units import units;"
            "u=units(load_study(sys.argv[1]));"
            "print(json.dumps({k.name:{'key':k.key,'trials':k.trials,'tks':sorted(k.trial_keys)} for k in u}))"
        )
        r = subprocess.run(
            [sys.executable, "-c", code, str(spec_file)],
            env=self.env,
            capture_output=True,
            text=True,
            cwd=self.src,
            check=True,
        )
        return json.loads(r.stdout)


# ---------------------------------------------------------------------- checks
def state_of(study_dir: Path) -> dict:
    """state.json's units ({} before the study's first run)."""
    f = study_dir / "state.json"
    return json.loads(f.read_text())["stages"] if f.is_file() else {}


def ran_units(before: dict, after: dict) -> set[str]:
    """Units a run worked on: their state.json entry was marked during it (a reused unit's is
    never touched)."""
    return {n for n, v in after.items() if v.get("time") != before.get(n, {}).get("time")}


def landed_in(study_dir: Path) -> str:
    """The unit the driver was running when it was killed: the one state.json has running,
    else the last one marked."""
    st = state_of(study_dir)
    running = [n for n, v in st.items() if v.get("status") == "running"]
    if running:
        return running[0]
    return max(st, key=lambda n: st[n].get("time", 0)) if st else "(before the first unit)"


def marked_since(study_dir: Path, prefix: str, t0: float) -> bool:
    """A unit whose name starts with `prefix` was marked in state.json after `t0` (it began)."""
    return any(n.startswith(prefix) and v.get("time", 0) >= t0 for n, v in state_of(study_dir).items())


def completion_counts(study_dir: Path, keys: dict) -> tuple[dict, dict]:
    """(unit -> times its current work completed, grid trial key -> times completed)."""
    st, units, trials = state_of(study_dir), {}, {}
    for name, k in keys.items():
        s = st.get(name, {})
        done = s.get("key") == k["key"] and s.get("status") == "done"
        units[name] = s.get("completions", {}).get(s.get("completed"), 0) if done else 0
        for tk in k["tks"]:
            trials[tk] = s.get("trial_completions", {}).get(tk, 0)
    return units, trials


def metrics(study_dir: Path) -> pd.Series:
    m = pd.read_parquet(study_dir / "results" / "metrics.parquet")
    return m.set_index(["run_id", "group", "metric"])["mean"].sort_index()


def compare(ref: pd.Series, got: pd.Series) -> str | None:
    if set(ref.index) != set(got.index):
        return f"result rows differ: {len(set(ref.index) ^ set(got.index))} not in both"
    diff = float(np.nanmax(np.abs(ref.values - got.reindex(ref.index).values)))
    return None if diff <= 1e-6 else f"metrics differ by up to {diff:.3g}"


def verdict(c: Chaos, spec_file: Path, keys: dict, ref: pd.Series | None, expect_once: bool = True) -> dict:
    """Checks of a study after its run to completion: units, exactly-once, trials, metrics."""
    d = c.study_dir(spec_file)
    units, trials = completion_counts(d, keys)
    missing = [u for u, n in units.items() if n == 0 and not u.startswith("baseline/syn/probe")]
    # the report is a pure function of the results, rebuilt on purpose after any later change
    # (or flagged incomplete by a failed attempt): exactly-once is a promise about training units
    dup_units = [u for u, n in units.items() if n > 1 and u != "report"] if expect_once else []
    dup_trials = sum(n - 1 for n in trials.values() if n > 1)
    lost = sum(1 for n in trials.values() if n == 0)
    opt = pd.read_parquet(d / "results" / "optuna_trials.parquet")
    n = keys[next(k for k in keys if k.startswith("sweep/"))]["trials"]
    dup_trials += max(0, len(opt) - n)
    lost += max(0, n - int(opt["state"].isin(["COMPLETE", "PRUNED"]).sum()))
    out = {"missing_units": missing, "duplicate_units": dup_units, "duplicate_trials": dup_trials, "lost_trials": lost}
    if ref is not None:
        out["metrics"] = compare(ref, metrics(d)) or "same"
    return out


def ok(v: dict) -> bool:
    return (
        not v["missing_units"]
        and not v["duplicate_units"]
        and not v["duplicate_trials"]
        and not v["lost_trials"]
        and v.get("metrics", "same") == "same"
    )


# ---------------------------------------------------------------------- kill points
def after(unit: str, delay: float = 0.0, path_glob: str | None = None, count: int = 1):
    """Kill `delay` s after the run began a unit whose name starts with `unit` (state.json marks
    it), and, if given, once `count` paths match `path_glob` under the study folder."""
    state = {"seen": None}

    def when(t0, study_dir, proc):
        if state["seen"] is None and marked_since(study_dir, unit, t0):
            state["seen"] = time.time()
        if state["seen"] is None:
            return False
        while path_glob and len(list(study_dir.glob(path_glob))) < count:
            time.sleep(0.2)
            if proc.poll() is not None or time.time() - state["seen"] > 300:
                return False  # the run ended (or never got there): recorded as a kill that did not land
        time.sleep(max(0.0, delay - (time.time() - state["seen"])))
        return proc.poll() is None

    return when


KILL_POINTS = [  # (name, kill condition, unit that must be resumed)
    ("driver SIGKILL during data preparation", after("data/syn", 0.3), "data/syn"),
    (
        "driver SIGKILL mid-teacher (after its first Ray Train checkpoint)",
        after("teacher/", 0, "teacher/_ray/**/checkpoint_*"),
        "teacher/syn/tiny-llama",
    ),
    ("driver SIGKILL during feature extraction", after("features/", 2.0), "features/syn/tiny-llama"),
    ("driver SIGKILL in the first 2 s of the Tune sweep", after("sweep/", 1.5), "sweep/syn/tiny-llama"),
    # trial folders reach the experiment folder only when Tune syncs them, so mid-sweep is timed
    ("driver SIGKILL mid-sweep (8 s into the Tune stage)", after("sweep/", 8.0), "sweep/syn/tiny-llama"),
    (
        "driver SIGKILL mid-grid (after a finished ablation trial)",
        after("grid/", 0, "tune/grid-*/*/checkpoint_*"),
        "grid/syn/tiny-llama",
    ),
    ("driver SIGKILL while writing the report", after("report", 1.0), "report"),
]


def kill_chain(c: Chaos, spec: Path, keys: dict, ref: pd.Series) -> None:
    """Each kill lands in the re-run that recovered from the previous one, so every recovery
    (resume of the killed unit) is exercised before the next fault; the last run completes."""
    for i, (what, when, unit) in enumerate(KILL_POINTS):
        r = c.run(spec, kill_when=when, log=f"kill{i}")
        sc = {
            "fault": what,
            "kind": "kill",
            "killed": r["killed"],
            "stuck": r["stuck"],
            "seconds": r["s"],
            "unit": unit,
            "landed_in": landed_in(c.study_dir(spec)),
        }
        if not r["killed"]:
            sc["outcome"] = f"run ended (rc {r['rc']}) before the kill point"
        c.scenarios.append(sc)
    r = c.run(spec, log="kill_final")
    v = verdict(c, spec, keys, ref)
    for sc in c.scenarios:
        if sc["kind"] == "kill":
            sc.update(rerun_rc=r["rc"], **v, recovered=bool(sc["killed"] and r["rc"] == 0 and ok(v)))


def _between_runs(
    c: Chaos,
    spec: Path,
    fault: str,
    expect_run: set[str],
    prepare=None,
    env=None,
    expect_fail: bool = False,
    ref: pd.Series | None = None,
    kill_when=None,
    check=None,
) -> dict:
    """Apply a fault or an edit (`prepare`), run, and check exactly `expect_run` units ran
    (fewer: a stale reuse; more: duplicated work) and the exit code; with `expect_fail`, run
    once more without the fault and check that one."""
    if prepare:
        prepare()
    keys = c.keys_of(spec)
    r = c.run(spec, env=env, kill_when=kill_when, log=re.sub(r"\W+", "_", fault)[:40])
    sc = {"fault": fault, "kind": "fault", "rc": r["rc"], "stuck": r["stuck"], "seconds": r["s"]}
    if expect_fail:
        sc["first_rc"], sc["error_named_file"] = r["rc"], "No space left" in r["log"]
        sc["wrong_exit"] = r["rc"] in (0, None)
        r = c.run(spec, log="after_" + re.sub(r"\W+", "_", fault)[:30])
        sc.update(rc=r["rc"], stuck=sc["stuck"] or r["stuck"])
    else:
        sc["wrong_exit"] = r["rc"] != 0
    ran = ran_units(r["before"], state_of(c.study_dir(spec)))
    sc["ran"], sc["expected"] = sorted(ran), sorted(expect_run)
    sc["stale_reuses"] = sorted(expect_run - ran)
    sc["unexpected_runs"] = sorted(ran - expect_run)
    if r["rc"] == 0:
        sc.update(verdict(c, spec, keys, ref, expect_once=False))
        sc["check"] = check() if check else "ok"
    sc["recovered"] = bool(
        r["rc"] == 0
        and not sc["wrong_exit"]
        and not sc["stale_reuses"]
        and not sc["stuck"]
        and not sc["unexpected_runs"]
        and sc.get("check") == "ok"
        and not sc.get("lost_trials")
        and not sc.get("duplicate_trials")
        and not sc.get("missing_units")
        and sc.get("metrics", "same") == "same"
    )
    c.scenarios.append(sc)
    c.flush()
    return sc


def _flip(path: Path) -> None:
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0xFF
    path.write_bytes(bytes(b))


def _edit(spec: Path, fn):
    def go():
        d = yaml.safe_load(spec.read_text())
        fn(d)
        spec.write_text(yaml.safe_dump(d, sort_keys=False))

    return go


def _changed_units(c: Chaos, spec: Path, fn, present: set[str]) -> set[str]:
    before = c.keys_of(spec)
    tmp = spec.with_name("_probe.yaml")
    d = yaml.safe_load(spec.read_text())
    fn(d)
    tmp.write_text(yaml.safe_dump(d, sort_keys=False))
    after_ = c.keys_of(tmp)
    tmp.unlink()
    return {
        u
        for u in after_
        if u in present
        and (
            u not in before
            or before[u]["key"] != after_[u]["key"]
            or before[u]["trials"] != after_[u]["trials"]
            or before[u]["tks"] != after_[u]["tks"]
        )
    }


def faults(c: Chaos, spec: Path, ref: pd.Series) -> None:
    d = c.study_dir(spec)
    shard = sorted((d / "features" / "syn" / "tiny-llama").glob("shard-*.npy"))[0]
    _between_runs(
        c,
        spec,
        f"corrupted feature shard ({shard.name})",
        {"features/syn/tiny-llama"},
        prepare=lambda: _flip(shard),
        ref=ref,
    )
    ck = max(
        (p for p in (d / "teacher" / "syn" / "tiny-llama").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    _between_runs(
        c,
        spec,
        f"corrupted teacher checkpoint ({ck.name})",
        {"teacher/syn/tiny-llama"},
        prepare=lambda: _flip(ck),
        ref=ref,
    )
    _between_runs(
        c,
        spec,
        "disk full while writing results (OSError ENOSPC on results/metrics.parquet)",
        {"report"},
        env={"LEADER_FAULT_WRITE": "results/metrics.parquet"},
        expect_fail=True,
        ref=ref,
    )


def edits(c: Chaos, spec: Path) -> None:  # noqa: C901 - four edit scenarios in sequence, each a few checks
    present = set(state_of(c.study_dir(spec)))
    d = c.study_dir(spec)

    def lr(x):
        x["teacher"]["options"]["lr"] = 0.003

    _between_runs(
        c,
        spec,
        "study edited: teacher.options.lr 0.002 -> 0.003",
        _changed_units(c, spec, lr, present),
        prepare=_edit(spec, lr),
    )
    before = pd.read_parquet(d / "results" / "optuna_trials.parquet")

    def grow(x):
        x["search"]["num_samples"] = 4

    def kept():
        now = pd.read_parquet(d / "results" / "optuna_trials.parquet")
        same = now.merge(before, on=["trial_id", "value"], how="inner")
        return "ok" if len(now) == 4 and len(same) == 3 else f"{len(now)} trials, {len(same)} kept of 3"

    _between_runs(
        c,
        spec,
        "study edited: search.num_samples 3 -> 4",
        _changed_units(c, spec, grow, present),
        prepare=_edit(spec, grow),
        check=kept,
    )
    m0 = metrics(d)

    def variant(x):
        x["ablations"]["variants"] = ["full", "no_kd", "no_align"]

    killed = {"n": 0}

    def kill_trial(t0, study_dir, proc):  # and SIGKILL a Tune trial worker while the new trials run
        import psutil

        if killed["n"] == 0 and marked_since(study_dir, "grid/", t0):
            for _ in range(600):  # only this run's own Ray processes (descendants of its driver)
                for p in psutil.Process(proc.pid).children(recursive=True):
                    try:
                        hit = "ImplicitFunc" in " ".join(p.cmdline() or [])
                    except psutil.Error:
                        continue
                    if hit:
                        os.kill(p.pid, signal.SIGKILL)
                        killed["n"] += 1
                        return False
                time.sleep(0.1)
        return False

    def old_rows_kept():
        m = metrics(d)
        return (
            "ok"
            if compare(m0, m.reindex(m0.index)) is None and killed["n"]
            else f"old rows changed or no worker killed ({killed['n']})"
        )

    sc = _between_runs(
        c,
        spec,
        "study edited: new ablation variant no_align (+ SIGKILL of a Tune trial worker)",
        {"grid/syn/tiny-llama", "report"},
        prepare=_edit(spec, variant),
        check=old_rows_kept,
        kill_when=kill_trial,
    )
    sc["trial_worker_kills"] = killed["n"]
    m1 = metrics(d)

    def seed(x):
        x["seeds"] = [0]

    def dropped():
        m = metrics(d)
        gone = [i for i in m1.index if "/s1" in i[0]]
        return (
            "ok"
            if not any("/s1" in i[0] for i in m.index) and gone and compare(m1.drop(gone), m) is None
            else "seed-1 rows left or others changed"
        )

    _between_runs(c, spec, "study edited: seed 1 removed", {"report"}, prepare=_edit(spec, seed), check=dropped)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "leader_chaos")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench" / "chaos.json")
    a = ap.parse_args()
    import shutil

    src = a.work / "src"
    shutil.rmtree(a.work, ignore_errors=True)
    src.mkdir(parents=True)
    subprocess.run(f"git -C {REPO} archive HEAD | tar -x -C {src}", shell=True, check=True)
    c = Chaos(a.work, src)
    c.out = a.out
    ref_spec = c.write_spec("reference", STUDY)
    r = c.run(ref_spec, log="reference")
    if r["rc"] != 0:
        raise SystemExit(f"reference run failed (rc {r['rc']}):\n{r['log'][-3000:]}")
    c.ref_s = r["s"]
    ref = metrics(c.study_dir(ref_spec))
    spec = c.write_spec("faults", STUDY)
    kill_chain(c, spec, c.keys_of(spec), ref)
    c.flush()
    faults(c, spec, ref)
    edits(c, spec)
    print(json.dumps({k: v for k, v in c.flush().items() if k != "scenarios"}, indent=1))


if __name__ == "__main__":
    main()
