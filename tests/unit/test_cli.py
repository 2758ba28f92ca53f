"""What every `leader` command shares: --version, one-line user errors (exit 2, no traceback unless
--debug, wherever it is typed), and `--set key=value` checked against the command's config."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from leader import __version__
from leader.cli.main import app


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leader.cli.main", *args], capture_output=True, text=True, timeout=120)


def test_version():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"leader-studies {__version__}"


def test_bad_value_is_one_line_and_debug_shows_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    p = _run("data", "prepare", "--dataset", "synthetic", "--n-patients", "3")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(lines) == 2 and lines[0].startswith("error: option --n-patients:") and lines[1].startswith("hint:")
    assert "leader data prepare --help" in lines[1]
    p = _run("data", "prepare", "--dataset", "synthetic", "--n-patients", "3", "--debug")
    assert p.returncode == 2 and "Traceback" in p.stderr and "error: option --n-patients:" in p.stderr


def test_pydantic_error_from_any_command_is_one_line(tmp_path):
    """A ValidationError no command turned into a ConfigError still prints one line (main.py)."""
    bad = tmp_path / "s.yaml"
    bad.write_text("name: x\nstorage_path: 3\nnot_a_field: 1\n")
    p = _run("study", "validate", str(bad))
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.startswith("error:"), p.stderr
    assert len(p.stderr.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["data", "prepare", "--dataset", "synthetic", "--set", "n_patiens=50"],
            "--set n_patiens: unknown config key (did you mean 'n_patients'?)",
        ),
        (
            ["student", "train", "--set", "loss.alpah=0.2"],
            "--set loss.alpah: unknown config key (did you mean 'alpha'?)",
        ),
        (["teacher", "train", "--set", "lora_rnk=4"], "did you mean 'lora_rank'?"),
        (["data", "prepare", "--dataset", "synthetic", "--set", "n_patients"], "expected key=value"),
        (["data", "prepare", "--dataset", "synthetic", "--set", "n_patients=5"], "--set n_patients=5: Input should be"),
    ],
)
def test_set_is_checked_against_the_config(argv, message, tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.output, r.output


def test_set_overrides_reach_the_config():
    from leader.cli.common import build_config
    from leader.config.flat import STUDENT_PATHS
    from leader.config.student import StudentTrainConfig

    options = {"epochs": 3, "loss": {"alpha": 0.5, "kd": "none"}}
    cfg = build_config(
        StudentTrainConfig, options, ["alpha=0.2", "student.dropout=0.3", "epochs=4"], aliases=STUDENT_PATHS
    )
    assert (cfg.loss.alpha, cfg.student.dropout, cfg.epochs, cfg.loss.kd) == (0.2, 0.3, 4, "none")


def test_source_is_a_deprecated_alias_of_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path))
    r = CliRunner().invoke(app, ["data", "prepare", "--source", "synthetic", "--n-patients", "40", "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert "--source is deprecated" in r.stderr and '"patients": 40' in r.stdout


def test_study_validate_expands_the_sets_that_run_would_apply():
    """`validate --set` expands the same trial matrix `run --set` executes (one with_sets)."""
    import json
    from pathlib import Path

    qs = str(Path(__file__).parents[2] / "studies" / "quickstart.yaml")
    base = CliRunner().invoke(app, ["study", "validate", qs, "--json"])
    more = CliRunner().invoke(app, ["study", "validate", qs, "--json", "--set", "search.num_samples=7"])
    assert base.exit_code == 0 and more.exit_code == 0, base.output + more.output
    a, b = json.loads(base.stdout)["summary"], json.loads(more.stdout)["summary"]
    import yaml

    n = yaml.safe_load(Path(qs).read_text())["search"]["num_samples"]
    assert a["sweep_trials"] % n == 0 and b["sweep_trials"] == a["sweep_trials"] // n * 7
    bad = CliRunner().invoke(app, ["study", "validate", qs, "--set", "search.num_sample=7"])
    assert bad.exit_code != 0
