"""Typed option blocks of the study file (dataset `prepare`, `teacher.options`, `student`), each
with extra="forbid", so `leader study validate` rejects a typo such as `n_patient` with its
file:line and the nearest valid name, before any cluster time is spent. Every block IS the
trainer's own (torch-free) config class, so what `validate` accepts is what `run` trains."""

from __future__ import annotations

import difflib

from pydantic import ConfigDict, Field

from leader.config.flat import fold_dotted
from leader.config.student import LossConfig, StudentConfig, StudentTrainFields
from leader.config.teacher import TeacherTrainConfig
from leader.data.cache import PrepareOptions


class PrepareSpec(PrepareOptions):
    """leader.data.cache.PrepareOptions, unknown keys refused."""

    model_config = ConfigDict(extra="forbid")


class TeacherOptions(TeacherTrainConfig):
    """leader.config.teacher.TeacherTrainConfig, unknown keys refused (`backbone` comes from
    teacher.backbones; `workers` / `use_gpu` default to teacher_resources)."""

    model_config = ConfigDict(extra="forbid")


class StudentOptions(StudentTrainFields, LossConfig, StudentConfig):
    """The study's `student:` block: trainer, loss and model fields named flat (a nested
    `student:` mapping of model fields is accepted too)."""

    model_config = ConfigDict(extra="forbid")
    student: StudentConfig | None = Field(None, description="Model fields, nested (same as naming them flat).")


MODEL_FIELDS = frozenset(StudentConfig.model_fields)
PARAM_NAMES = frozenset(set(StudentOptions.model_fields) - {"student"})


def is_student_param(name: str) -> bool:
    """A name a search space or ablation may set: flat, or `student.<model field>`."""
    return name in PARAM_NAMES or (name.startswith("student.") and name[8:] in MODEL_FIELDS)


def check_student(params: dict) -> StudentOptions:
    """Flat student params (with `student.x` keys folded by leader.config.flat) validated torch-free."""
    return StudentOptions.model_validate(fold_dotted(params, "student"))


def did_you_mean(name: str, valid) -> str:
    close = difflib.get_close_matches(str(name), sorted(map(str, valid)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
