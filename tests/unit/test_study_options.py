"""The study's typed option blocks: typos named with file:line and a did-you-mean, the torch-free
student mirror equal to the trainer configs, and `validate` free of torch / ray / transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from leader.errors import ConfigError
from leader.study.spec import load_study

REPO = Path(__file__).resolve().parents[2]
MIN = "name: t\ndatasets:\n  - name: syn\n    source: synthetic\n"


def _load(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return load_study(p)


def test_prepare_typo_named_with_line_and_suggestion(tmp_path):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, MIN + "    prepare:\n      n_patient: 60\n")
    assert "s.yaml:6: field 'datasets.0.prepare.n_patient': unknown field" in str(e.value)
    assert "did you mean 'n_patients'?" in str(e.value)


def test_teacher_option_and_student_typos(tmp_path):
    text = MIN + "teacher:\n  backbones: [tiny-llama]\n  options:\n    max_step: 3\nstudent:\n  dropot: 0.1\n"
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert "s.yaml:8: field 'teacher.options.max_step'" in msg and "did you mean 'max_steps'?" in msg
    assert "s.yaml:10: field 'student.dropot'" in msg and "did you mean 'dropout'?" in msg


def test_search_space_key_typo_named_with_line(tmp_path):
    text = MIN + "student: {kd: none}\nsearch:\n  space:\n    lrr: {type: uniform, low: 0.1, high: 1}\n"
    with pytest.raises(ConfigError, match=r"s.yaml:8: field 'search.space.lrr'.*did you mean 'lr'\?"):
        _load(tmp_path, text)


def test_student_value_checked_without_torch(tmp_path):
    with pytest.raises(ConfigError, match=r"s.yaml:5: field 'student.dropout'"):
        _load(tmp_path, MIN + "student: {kd: none, dropout: 1.5}\n")


def test_student_block_is_the_trainer_configs():
    """validate checks the study's student block against the trainer's own classes (no mirror):
    every flat name is a field of exactly the config the runner builds."""
    from leader.config.student import LossConfig, StudentConfig, StudentTrainConfig, StudentTrainFields
    from leader.study.options import MODEL_FIELDS, PARAM_NAMES, StudentOptions

    assert issubclass(StudentOptions, (StudentTrainFields, LossConfig, StudentConfig))
    assert MODEL_FIELDS == set(StudentConfig.model_fields)
    assert PARAM_NAMES == set(StudentTrainFields.model_fields) | set(LossConfig.model_fields) | MODEL_FIELDS
    assert set(StudentTrainConfig.model_fields) == set(StudentTrainFields.model_fields) | {"student", "loss"}
    for cls in (StudentConfig, LossConfig, StudentTrainConfig):
        with pytest.raises(ValueError, match="Extra inputs"):
            cls(no_such_field=1)


def test_validate_and_plan_import_no_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from leader.cli.main import app\n"
        "for cmd in ('validate', 'plan'):\n"
        "    r = CliRunner().invoke(app, ['study', cmd, 'studies/quickstart.yaml'])\n"
        "    assert r.exit_code == 0, r.output\n"
        "bad = [m for m in ('torch', 'ray', 'transformers') if m in sys.modules]; assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
