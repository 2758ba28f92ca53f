"""`leader teacher train` command line surface."""

import re

from typer.testing import CliRunner

from leader.cli.main import app


def test_teacher_train_help_lists_options():
    r = CliRunner().invoke(app, ["teacher", "train", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert r.exit_code == 0, r.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", r.output)
    for opt in (
        "--backbone",
        "--dataset",
        "--root",
        "--workers",
        "--zero",
        "--epochs",
        "--max-steps",
        "--batch-size",
        "--max-length",
        "--deepspeed-config",
        "--set",
        "--out",
        "--export",
        "--address",
    ):
        assert opt in text, opt

    assert "--storage-path" not in text  # the deprecated spelling of --out stays hidden


def test_teacher_train_bad_zero_stage_is_config_error(tmp_path):
    r = CliRunner().invoke(app, ["teacher", "train", "--zero", "4", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "error: option --zero:" in r.stderr and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["teacher", "train", "--set", "zero_stage=4", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "error: --set zero_stage=4:" in r.stderr
