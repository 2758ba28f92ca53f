"""Unit identity: a change re-keys exactly the units downstream of it; plan says why; a stale
driver lock is taken over. No Ray, no torch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leader.errors import ConfigError
from leader.study.lock import StudyLock
from leader.study.plan import format_plan, plan
from leader.study.spec import load_study
from leader.study.units import unit_map

BASE = """\
name: k
storage_path: {out}
datasets:
  - name: syn
    source: synthetic
    prepare: {{n_patients: 60}}
teacher:
  backbones: [tiny-llama]
  options: {{lr: {lr}, max_steps: 2}}
student: {{epochs: 2, patience: 2}}
search:
  space: {{lr: {{type: loguniform, low: 0.001, high: 0.01}}}}
  num_samples: {n}
  scheduler: {{type: fifo}}
ablations: {{variants: {variants}}}
baselines: {{trivial: [prior]}}
seeds: {seeds}
"""


def _spec(tmp_path, lr=0.001, n=2, variants="[full, no_kd]", seeds="[0, 1]", name="s.yaml"):
    p = tmp_path / name
    p.write_text(BASE.format(out=tmp_path / "out", lr=lr, n=n, variants=variants, seeds=seeds))
    return load_study(p)


def _keys(spec):
    return {n: u.key for n, u in unit_map(spec, {"syn": "cache0"}).items()}


def _changed(a, b):
    return {n for n in a if a[n] != b.get(n)}


def test_teacher_option_rekeys_only_downstream(tmp_path):
    a, b = _keys(_spec(tmp_path)), _keys(_spec(tmp_path, lr=0.002))
    assert _changed(a, b) == {
        "teacher/syn/tiny-llama",
        "baseline/syn/probe-tiny-llama",
        "features/syn/tiny-llama",
        "teacher_eval/syn/tiny-llama",
        "sweep/syn/tiny-llama",
        "grid/syn/tiny-llama",
        "efficiency/syn/tiny-llama",
        "report",
    }


def test_data_change_rekeys_everything_but_code_free_units(tmp_path):
    spec = _spec(tmp_path)
    a = _keys(spec)
    b = {n: u.key for n, u in unit_map(spec, {"syn": "cache1"}).items()}
    assert _changed(a, b) == set(a)


def test_num_samples_keeps_the_sweep_key_and_rekeys_its_consumers(tmp_path):
    s2, s3 = _spec(tmp_path, n=2), _spec(tmp_path, n=3)
    a, b = _keys(s2), _keys(s3)
    assert _changed(a, b) == {"grid/syn/tiny-llama", "efficiency/syn/tiny-llama", "report"}
    assert unit_map(s3, {"syn": "c"})["sweep/syn/tiny-llama"].trials == 3


def test_new_variant_and_removed_seed_touch_only_their_trials(tmp_path):
    g = "grid/syn/tiny-llama"
    a = unit_map(_spec(tmp_path), {"syn": "c"})[g]
    b = unit_map(_spec(tmp_path, variants="[full, no_kd, no_align]"), {"syn": "c"})[g]
    c = unit_map(_spec(tmp_path, seeds="[0]"), {"syn": "c"})[g]
    assert a.key == b.key == c.key
    assert set(a.trial_keys) < set(b.trial_keys) and len(b.trial_keys) - len(a.trial_keys) == 2
    assert set(c.trial_keys) < set(a.trial_keys) and {r["seed"] for r in c.trial_keys.values()} == {0}


def _record(spec, study_dir: Path, status="done"):
    """state.json as a finished run of `spec` leaves it (no output files to verify)."""
    stages = {}
    for n, u in unit_map(spec).items():
        out = {"seconds": 10.0, "trials": u.trials}
        if u.stage == "sweep":
            out["experiments"] = [{"name": "e", "n": u.trials, "done": True}]
        if u.trial_keys:
            out["trials"] = {tk: {"parts": [], "files": {}} for tk in u.trial_keys}
        stages[n] = {
            "status": status,
            "key": u.key,
            "config": u.config,
            "inputs": u.inputs,
            "code": u.code,
            "files": {},
            "outputs": out,
        }
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / "state.json").write_text(json.dumps({"stages": stages}))


def test_plan_says_why(tmp_path):
    d = tmp_path / "study"
    _record(_spec(tmp_path), d)
    rows = {r["unit"]: r["action"] for r in plan(_spec(tmp_path), d)}
    assert set(rows.values()) == {"reuse"}
    new = _spec(tmp_path, lr=0.002, n=4, variants="[full, no_kd, no_align]")
    rows = {r["unit"]: r for r in plan(new, d)}
    assert rows["data/syn"]["action"] == "reuse" and rows["baseline/syn/prior"]["action"] == "reuse"
    assert rows["teacher/syn/tiny-llama"]["action"] == "re-run because teacher.options.lr changed (0.001 -> 0.002)"
    assert rows["features/syn/tiny-llama"]["action"] == "re-run because upstream teacher/syn/tiny-llama changed"
    text = format_plan(list(rows.values()), d)
    assert "re-run because teacher.options.lr changed (0.001 -> 0.002)" in text and "~10 s" in text


def test_plan_extends_a_grown_sweep_and_runs_only_new_trials(tmp_path):
    d = tmp_path / "study"
    _record(_spec(tmp_path), d)
    rows = {r["unit"]: r for r in plan(_spec(tmp_path, n=5), d)}
    assert rows["sweep/syn/tiny-llama"]["action"].startswith("extend: 3 new trial(s), 2 kept")
    assert rows["teacher/syn/tiny-llama"]["action"] == "reuse"
    rows = {r["unit"]: r for r in plan(_spec(tmp_path, variants="[full, no_kd, no_align]"), d)}
    assert rows["grid/syn/tiny-llama"]["action"] == "run 2 new or unfinished trial(s), 4 kept"


def test_plan_detects_a_changed_output(tmp_path):
    d = tmp_path / "study"
    spec = _spec(tmp_path)
    _record(spec, d)
    state = json.loads((d / "state.json").read_text())
    (d / "shard.npy").write_bytes(b"ok")
    state["stages"]["features/syn/tiny-llama"]["files"] = {"shard.npy": "0" * 64}
    (d / "state.json").write_text(json.dumps(state))
    rows = {r["unit"]: r["action"] for r in plan(spec, d)}
    assert rows["features/syn/tiny-llama"] == "re-run because its output shard.npy changed since it was written"
    assert rows["teacher_eval/syn/tiny-llama"] == "reuse"


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_running_stage_with_dead_owner_is_resumed(tmp_path):
    d = tmp_path / "study"
    spec = _spec(tmp_path)
    _record(spec, d)
    state = json.loads((d / "state.json").read_text())
    state["stages"]["sweep/syn/tiny-llama"]["status"] = "running"
    (d / "state.json").write_text(json.dumps(state))
    (d / "driver.lock").write_text(
        json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "heartbeat": time.time()})
    )
    said = []
    with StudyLock(d, echo=said.append):
        assert json.loads((d / "driver.lock").read_text())["pid"] == os.getpid()
    assert said and "is dead" in said[0] and "resumed" in said[0]
    assert not (d / "driver.lock").exists()
    rows = {r["unit"]: r["action"] for r in plan(spec, d)}
    assert rows["sweep/syn/tiny-llama"] == "re-run because it was left running"


def test_live_owner_is_not_run_over(tmp_path):
    (tmp_path / "driver.lock").write_text(
        json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "heartbeat": time.time()})
    )
    with pytest.raises(ConfigError, match="being run by pid"):
        StudyLock(tmp_path, echo=lambda s: None).acquire()
    # another host's driver that stopped sending heartbeats is gone
    (tmp_path / "driver.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "heartbeat": time.time() - 3600}))
    lock = StudyLock(tmp_path, echo=lambda s: None)
    lock.acquire()
    lock.release()


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    from leader.study.state import FAULT_ENV, write_text

    f = tmp_path / "results" / "metrics.json"
    write_text(f, "old")
    monkeypatch.setenv(FAULT_ENV, "results/metrics")
    with pytest.raises(OSError, match="No space left"):
        write_text(f, "new")
    assert f.read_text() == "old" and [p.name for p in f.parent.iterdir()] == ["metrics.json"]


def test_trial_state_tells_pruned_from_early_stopped_and_complete():
    import pandas as pd

    from leader.study.stages.sweep import trial_state

    p = {"epochs": 10, "patience": 3}
    rising = pd.DataFrame({"val_prauc": [0.1, 0.2, 0.3, 0.4]})  # cut while still improving
    assert trial_state(rising, p, max_t=10) == "PRUNED"
    stalled = pd.DataFrame({"val_prauc": [0.1, 0.5, 0.4, 0.4, 0.3]})  # its own patience fired
    assert trial_state(stalled, p, max_t=10) == "COMPLETE"
    assert trial_state(pd.DataFrame({"val_prauc": [0.1] * 10}), p, max_t=10) == "COMPLETE"
    assert trial_state(rising, p, max_t=4) == "COMPLETE"  # ran the search's whole budget
