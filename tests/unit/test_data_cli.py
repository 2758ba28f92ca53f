"""`leader data prepare` / `leader data stats` through the real Typer app."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from leader.cli.main import app


def test_prepare_and_stats(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    r = CliRunner().invoke(
        app, ["data", "prepare", "--dataset", "synthetic", "--n-patients", "60", "--top-k-med", "15", "--json"]
    )
    assert r.exit_code == 0, r.output
    st = json.loads(r.stdout[r.stdout.index("{") :])
    assert st["n_med"] == 15 and st["warnings"]["med_codes_dropped_top_k"] > 0
    r = CliRunner().invoke(app, ["data", "stats"])
    assert r.exit_code == 0, r.output
    assert "single-visit patients" in r.stdout and "# medications" in r.stdout


def test_stats_without_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    r = CliRunner().invoke(app, ["data", "stats"])
    assert r.exit_code == 1 and "no prepared datasets" in r.stdout


def test_error_is_one_line(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "leader.cli.main",
            "data",
            "prepare",
            "--dataset",
            "mimic3",
            "--root",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "error:" in p.stderr and "does not exist" in p.stderr and "Traceback" not in p.stderr
