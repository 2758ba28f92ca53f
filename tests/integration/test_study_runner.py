"""End-to-end studies on real Ray / Tune / Optuna (and Ray Train + DeepSpeed for the teacher)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

# the `ray` CLI of this interpreter's environment, whether or not the venv is activated
RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"
REPO = Path(__file__).resolve().parents[2]
LEADER = [sys.executable, "-m", "leader.cli.main"]
pytestmark = pytest.mark.slow

STUDENT_ONLY = """\
name: {name}
storage_path: {storage}
datasets:
  - name: syn
    source: synthetic
    prepare: {{n_patients: 60}}
student: {{epochs: {epochs}, patience: {epochs}, kd: none, d_model: 16, d_embed: 16, n_heads: 2, batch_size: 32}}
search:
  space:
    lr: {{type: loguniform, low: 0.001, high: 0.01}}
  sampler: random
  num_samples: {n}
  max_concurrent: 1
  scheduler: {{type: fifo}}
ablations: {{variants: [full, no_align]}}
seeds: [0]
evaluation: {{bootstrap_rounds: 3, latency_batch_sizes: [1]}}
report: {{enabled: false}}
"""


def _env():
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    # console scripts (ray, leader) of this interpreter first on PATH: job entrypoints need them
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("RAY_AUTH_MODE", "token")  # Ray 2.60 clusters require the token (~/.ray/auth_token)
    return env


def test_trimmed_quickstart_end_to_end(tmp_path):
    text = (REPO / "studies" / "quickstart.yaml").read_text()
    import yaml

    d = yaml.safe_load(text)
    d["datasets"] = [{"name": "syn", "source": "synthetic", "prepare": {"n_patients": 60}}]
    d["student"]["epochs"] = 1
    d["baselines"]["tuned"]["retain"]["params"].update(epochs=2, patience=1)
    d["search"].update(num_samples=2)
    d["search"]["scheduler"]["grace_period"] = 1  # <= the trimmed epochs
    d["ablations"] = {"variants": ["full", "no_kd", "kd_shuffled"]}
    # the real MiniLM teacher, trimmed to mechanics: a few probe epochs and LoRA steps on 60 patients
    # (too little data to demand that it learns: the guard is tested on its own)
    d["teacher"]["options"].update(lp_epochs=3, max_steps=2, eval_every=0, max_length=96, require_learning=False)
    d["sensitivity"] = {"alpha": [0.5], "beta": []}
    d["storage_path"] = str(tmp_path / "out")
    d["tracking"] = "mlflow"
    p = tmp_path / "qs.yaml"
    p.write_text(yaml.safe_dump(d))
    r = subprocess.run(LEADER + ["study", "run", str(p)], env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sd = tmp_path / "out" / "quickstart"
    m = pd.read_parquet(sd / "results" / "metrics.parquet")
    assert {"baseline", "teacher", "best", "ablation", "sensitivity"} <= set(m["stage"])
    assert set(m[m.stage == "ablation"]["variant"]) == {"full", "no_kd", "kd_shuffled"}
    assert {"overall", "single", "multi", "history", "no_history"} <= set(m["group"])
    assert {"Prior", "CoOccurrence", "LogReg", "Probe"} <= set(m[m.stage == "baseline"]["model"])
    paired = pd.read_parquet(sd / "results" / "paired.parquet")
    assert {"full_vs_no_kd", "full_vs_kd_shuffled", "student_vs_teacher", "student_vs_LogReg"} <= set(
        paired["comparison"]
    )
    eff = pd.read_parquet(sd / "results" / "efficiency.parquet")
    assert {"LEADER(S)", "LEADER(T)"} <= set(eff["model"])
    assert len(pd.read_parquet(sd / "results" / "optuna_trials.parquet")) == 2
    import optuna  # the search is in the study's own sqlite file, as optuna-dashboard reads it

    db = f"sqlite:///{sd / 'optuna.db'}"
    (sweep,) = [n for n in optuna.get_all_study_names(db) if n.startswith("quickstart-sweep-syn-")]
    assert len(optuna.load_study(study_name=sweep, storage=db).trials) == 2
    import mlflow  # tracking: mlflow -> every sweep trial is an MLflow run in the study's mlflow.db

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{sd / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name.startswith("quickstart-sweep-syn-")]
    assert len(client.search_runs([exp.experiment_id])) == 2
    # the console says what matters: no worker tracebacks, no Ray Train cleaner chatter
    console = r.stdout + r.stderr
    assert "Traceback" not in console and "PlacementGroupCleaner" not in console, console[-3000:]
    assert len(console.splitlines()) < 80, console
    assert "[done] teacher/syn/minilm in " in r.stdout and "syn: test PRAUC LEADER(S) [minilm] " in r.stdout
    assert (sd / "features" / "syn" / "minilm" / "manifest.json").is_file()
    state = json.loads((sd / "state.json").read_text())["stages"]
    assert all(v["status"] in ("done", "skipped") for v in state.values())
    # no patient identifier in any folder name or text file the study wrote (Tune trial folders,
    # params/result JSON, logs, state, report): only binary payloads inside storage hold records
    from leader.data.cache import PrepareOptions, prepare
    from leader.security import scan_tree

    visits = prepare("synthetic", None, PrepareOptions(n_patients=60)).visits
    ids = set(visits["patient_id"]) | set(visits["visit_id"])  # MIMIC subject_id / hadm_id
    assert len(ids) > 60 and not scan_tree(sd, ids)
    reports = sd / "report"  # the report lives in the study's own folder, and the run says where
    assert reports.is_dir() and not scan_tree(reports, ids) and f"report: {reports / 'index.html'}" in r.stdout
    assert "## Findings" in (reports / "index.md").read_text()
    # re-run: every stage skipped, nothing retrained
    r2 = subprocess.run(LEADER + ["study", "run", str(p)], env=_env(), capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0 and "[run ] sweep" not in r2.stdout and "[reuse] teacher/syn/minilm" in r2.stdout


def _finished(exp: Path, epochs: int) -> dict[str, str]:
    """Trials whose every epoch is in result.json (no early stopping: patience = epochs)."""
    from leader.study.status import trial_dirs

    out = {}
    for t in trial_dirs(exp):
        rj = t / "result.json"
        if rj.is_file():
            lines = rj.read_text().strip().splitlines()
            if len(lines) >= epochs:
                out[t.name] = rj.read_text()
    return out


def test_kill_driver_mid_sweep_then_resume(tmp_path):
    p = tmp_path / "r.yaml"
    # Tune reuses trial actors and a 60-patient epoch takes milliseconds, so trials are short: enough
    # of them, and enough epochs each, that the kill lands mid-sweep (6 epochs x 10 trials finished
    # inside the 2.5 s between "2 done" and the kill once batches were trimmed)
    n, epochs = 16, 30
    p.write_text(STUDENT_ONLY.format(name="resume", storage=tmp_path / "out", epochs=epochs, n=n))
    proc = subprocess.Popen(
        LEADER + ["study", "run", str(p)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tune_dir = tmp_path / "out" / "resume" / "tune"
    deadline = time.time() + 300
    while time.time() < deadline and not list(tune_dir.glob("sweep-syn-none-*")):
        time.sleep(1)
    exp = next(tune_dir.glob("sweep-syn-none-*"))  # the experiment's name carries the sweep's key
    while time.time() < deadline and len(_finished(exp, epochs)) < 2:
        time.sleep(1)
    time.sleep(1.5)  # let Tune write its experiment state
    before = _finished(exp, epochs)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    assert 2 <= len(before) < n, f"sweep finished too fast or too slow: {len(before)}"
    r = subprocess.run(LEADER + ["study", "run", str(p)], env=_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "restoring interrupted Tune experiment" in r.stdout and "stale lock" in r.stdout
    after = _finished(exp, epochs)
    for name, text in before.items():
        assert after[name] == text, f"finished trial {name} was run again"
    trials = pd.read_parquet(tmp_path / "out" / "resume" / "results" / "optuna_trials.parquet")
    assert len(trials) == n and (trials["state"] == "COMPLETE").all()


def test_failed_trials_fail_the_study_loudly(tmp_path):
    """Every trial errors (n_heads must divide d_model): the stage fails, the command exits
    non-zero naming the trials' traceback files, and the report says first that it is incomplete."""
    p = tmp_path / "f.yaml"
    text = STUDENT_ONLY.format(name="fails", storage=tmp_path / "out", epochs=1, n=2)
    p.write_text(
        text.replace("report: {enabled: false}", "report: {enabled: true}").replace(
            "    lr: {type: loguniform, low: 0.001, high: 0.01}", "    n_heads: {type: choice, values: [3]}"
        )
    )
    r = subprocess.run(LEADER + ["study", "run", str(p)], env=_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode != 0, r.stdout[-3000:]
    assert "INCOMPLETE" in r.stderr and "sweep/syn/none" in r.stderr and "error.txt" in r.stderr, r.stderr[-3000:]
    errs = [Path(x) for x in re.findall(r"-> (\S+error\.txt)", r.stderr)]
    assert len(errs) == 2 and all(e.is_file() for e in errs)
    sd = tmp_path / "out" / "fails"
    assert json.loads((sd / "state.json").read_text())["stages"]["sweep/syn/none"]["status"] == "failed"
    first = (sd / "report" / "index.md").read_text().splitlines()[0]
    assert "INCOMPLETE STUDY" in first


def test_invalid_study_fails_fast(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(STUDENT_ONLY.format(name="bad", storage=tmp_path, epochs=1, n=0))
    t0 = time.time()
    r = subprocess.run(LEADER + ["study", "run", str(p)], env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "search.num_samples" in r.stderr and "bad.yaml:" in r.stderr
    assert time.time() - t0 < 30 and not (tmp_path / "bad").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def shared_mount():
    """/mnt/leader as cluster/runtime_env.yaml names it: the test uses the file as written, so
    it needs that folder (made here when it can be, and removed again if this test made it)."""
    import shutil
    import uuid

    root = Path("/mnt/leader")
    made = not root.exists()
    try:
        (root / "storage").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        pytest.skip(f"cannot create {root} for cluster/runtime_env.yaml ({e})")
    name = f"job_{uuid.uuid4().hex[:8]}"
    yield root, name
    shutil.rmtree(root if made else root / "storage" / name, ignore_errors=True)


def test_ray_job_submit(tmp_path, shared_mount):
    """The README's cluster command, verbatim: `ray job submit --runtime-env cluster/runtime_env.yaml
    --working-dir .` to a `ray start --head` cluster, results in $LEADER_STORAGE."""
    import ray

    root, name = shared_mount

    ray.shutdown()  # an in-process Ray left by an earlier test holds the default agent ports
    env = _env()
    if not (Path.home() / ".ray" / "auth_token").is_file():  # as docs/cluster.md says: once per machine
        subprocess.run([RAY, "get-auth-token", "--generate"], env=env, capture_output=True, check=True, timeout=60)
    # every port explicit: a second Ray on this machine (another test's, a user's) would otherwise
    # take the dashboard agent's default port, and this head would never get a job agent
    ports = {
        f"--{k}": str(_free_port())
        for k in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "metrics-export-port",
            "runtime-env-agent-port",
        )
    }
    head = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--dashboard-host",
            "127.0.0.1",
            "--num-cpus",
            "2",
            "--port",
            "6391",
            "--dashboard-port",
            "8275",
            *[x for kv in ports.items() for x in kv],
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert head.returncode == 0, head.stderr
    try:
        assert (Path.home() / ".ray" / "auth_token").is_file()
        p = REPO / "studies" / "_test_job.yaml"  # inside the working dir that is uploaded
        p.write_text(STUDENT_ONLY.format(name=name, storage="${LEADER_STORAGE}", epochs=1, n=2))
        cmd = [
            RAY,
            "job",
            "submit",
            "--address",
            "http://127.0.0.1:8275",
            "--runtime-env",
            "cluster/runtime_env.yaml",
            "--working-dir",
            ".",
            "--",
            "leader",
            "study",
            "run",
            "studies/_test_job.yaml",
        ]
        for _ in range(6):
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500, cwd=REPO)
            # a freshly started head's job agent can still be registering (Ray answers 500, no job is created);
            # users see the same message and retry, as the docs say
            if "No available agent to submit job" not in r.stderr + r.stdout:
                break
            time.sleep(10)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "study finished" in r.stdout
        assert (root / "storage" / name / "results" / "metrics.parquet").is_file()
        # the same cluster refuses a relative storage_path before any work (it would land in the job's
        # unpacked working_dir on the head)
        p.write_text(STUDENT_ONLY.format(name=name + "_rel", storage="studies_out", epochs=1, n=2))
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
        assert r.returncode != 0
        assert "storage_path" in r.stdout + r.stderr and "relative" in r.stdout + r.stderr
    finally:
        (REPO / "studies" / "_test_job.yaml").unlink(missing_ok=True)
        _stop_cluster("6391")


def _stop_cluster(port: str) -> None:
    """Stop only the cluster this test started (`ray stop` would stop every Ray on the machine)."""
    import psutil

    procs = []
    for pr in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(pr.info["cmdline"] or [])
        if f":{port}" in cmd or f"port={port}" in cmd or f"port {port}" in cmd:
            procs.append(pr)
    for pr in procs:
        try:
            pr.terminate()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=20)
    for pr in procs:
        try:
            pr.kill()
        except psutil.Error:
            pass
