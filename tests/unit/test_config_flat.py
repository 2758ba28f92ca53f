"""leader.config.flat, the one translator from flat names (study files, sweeps, ablations, --set)
to the nested student config: every entry point gives the same config for the same names."""

import pytest

from leader.config.flat import STUDENT_PATHS, fold_dotted, nest_student, student_config
from leader.config.student import LossConfig, StudentConfig, StudentTrainConfig, StudentTrainFields
from leader.errors import ConfigError


def test_every_field_has_one_flat_name():
    assert set(STUDENT_PATHS) == (
        set(StudentTrainFields.model_fields) | set(LossConfig.model_fields) | set(StudentConfig.model_fields)
    )
    assert (STUDENT_PATHS["alpha"], STUDENT_PATHS["set_pooling"], STUDENT_PATHS["lr"]) == (
        "loss.alpha",
        "student.set_pooling",
        "lr",
    )


def test_flat_dotted_and_nested_names_meet_and_later_wins():
    got = nest_student({"lr": 0.01, "alpha": 0.2, "student": {"d_model": 32}, "student.dropout": 0.1, "d_model": 48})
    assert got == {"lr": 0.01, "loss": {"alpha": 0.2}, "student": {"d_model": 48, "dropout": 0.1}}
    assert nest_student({"d_model": 48, "student": {"d_model": 32}})["student"] == {"d_model": 32}
    with pytest.raises(ConfigError, match="unknown student field 'alpah'"):
        nest_student({"alpah": 0.2})
    assert nest_student({"alpah": 0.2}, strict=False) == {"alpah": 0.2}  # left for pydantic to refuse


def test_an_untouched_section_object_is_passed_through():
    cfg = StudentConfig(d_model=32)
    assert nest_student({"student": cfg, "kd": "none"})["student"] is cfg
    merged = nest_student({"student": cfg, "dropout": 0.2})["student"]
    assert merged["d_model"] == 32 and merged["dropout"] == 0.2


def test_every_entry_point_gives_the_same_config():
    flat = {"alpha": 0.3, "kd": "output", "d_model": 48, "student.dropout": 0.2, "lr": 3e-3, "epochs": 4}
    a = student_config(flat)  # sweeps, ablations, study runs
    b = StudentTrainConfig(**fold_dotted(flat))  # a direct construction with flat names
    from leader.cli.common import build_config

    c = build_config(  # `leader student train --set ...`
        StudentTrainConfig, {}, [f"{k}={v}" for k, v in flat.items()], aliases=STUDENT_PATHS
    )
    assert a == b == c
    assert (a.loss.alpha, a.loss.kd, a.student.d_model, a.student.dropout) == (0.3, "output", 48, 0.2)


def test_study_validation_folds_the_same_dotted_names():
    from leader.study.options import check_student

    opts = check_student({"student.d_model": 40, "alpha": 0.1})
    assert opts.student.d_model == 40 and opts.alpha == 0.1


def test_a_bad_value_names_the_nested_field():
    with pytest.raises(ConfigError, match="field 'loss.alpha'"):
        student_config({"alpha": -1})
    with pytest.raises(ConfigError, match="field 'student.d_model'"):
        student_config({"d_model": 1})
