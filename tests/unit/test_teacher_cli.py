"""`leader teacher train` command line surface."""

import re

from typer.testing import CliRunner

from leader.cli.main import app


def test_teacher_train_help_lists_options():
    r = CliRunner().invoke(app, ["teacher", "train", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert r.exit_code == 0, r.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", r.output)
    for opt in ("--backbone", "--dataset", "--root", "--workers", "--zero", "--epochs", "--max-steps", "--batch-size",
                "--max-length", "--deepspeed-config", "--storage-path", "--out", "--address"):
        assert opt in text, opt


def test_teacher_train_bad_zero_stage_is_config_error(tmp_path):
    from leader.errors import ConfigError

    r = CliRunner().invoke(app, ["teacher", "train", "--zero", "4", "--storage-path", str(tmp_path)])
    assert isinstance(r.exception, ConfigError) and "option --zero:" in str(r.exception)
