"""Typed option blocks of the study file (dataset `prepare`, `teacher.options`, `student`), each
with extra="forbid", so `leader study validate` rejects a typo such as `n_patient` with its
file:line and the nearest valid name, before any cluster time is spent.

Why mirrors for the student: its trainer configs live in torch modules, and `validate` must stay
torch-free and fast. `StudentOptions` repeats their fields and bounds; a unit test
(tests/unit/test_study_options.py) compares it field by field with StudentTrainConfig,
LossConfig and StudentConfig, so the two cannot drift apart silently. `prepare` and
`teacher.options` are the real (torch-free) configs made strict by subclassing."""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from leader.data.cache import PrepareOptions
from leader.train.teacher import TeacherTrainConfig


class PrepareSpec(PrepareOptions):
    """leader.data.cache.PrepareOptions, unknown keys refused."""

    model_config = ConfigDict(extra="forbid")


class TeacherOptions(TeacherTrainConfig):
    """leader.train.teacher.TeacherTrainConfig, unknown keys refused (`backbone` comes from
    teacher.backbones; `workers` / `use_gpu` default to teacher_resources)."""

    model_config = ConfigDict(extra="forbid")


class StudentModelOptions(BaseModel):
    """Mirror of leader.models.student.StudentConfig."""

    model_config = ConfigDict(extra="forbid")
    d_embed: int = Field(64, ge=4, description="Code embedding width d_e.")
    d_model: int = Field(64, ge=4, description="Transformer / representation width d_t.")
    n_set_layers: int = Field(1, ge=1, description="Transformer layers in each code-set encoder.")
    n_visit_layers: int = Field(1, ge=1, description="Transformer layers in the visit encoder.")
    n_heads: int = Field(4, ge=1, description="Attention heads (must divide d_model).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in encoders and MLP.")
    max_visits: int = Field(10, ge=1, description="Keep at most this many MOST RECENT visits (current included).")
    max_codes: int = Field(64, ge=1, description="Truncate a code set to this many codes.")
    shared_visit_encoder: bool = Field(True, description="One visit encoder for diag/proc/med sequences.")


class StudentLossOptions(BaseModel):
    """Mirror of leader.losses.LossConfig (named flat in study files, as in the paper)."""

    model_config = ConfigDict(extra="forbid")
    kd: Literal["feature", "output", "none"] = Field("feature", description="Distillation kind.")
    alpha: float = Field(0.5, ge=0, description="Weight of the KD term.")
    beta: float = Field(0.1, ge=0, description="Weight of the profile alignment (InfoNCE) term.")
    tau: float = Field(0.1, gt=0, description="InfoNCE temperature.")
    kd_temperature: float = Field(1.0, gt=0, description="Temperature for output KD.")
    align: bool = Field(True, description="Use the profile alignment loss.")
    kd_shuffle: bool = Field(False, description="Negative control: KD from teacher states permuted across samples.")
    kd_head_init: Literal["teacher_mean", "default"] = Field(
        "teacher_mean", description="Feature-KD projection start: zero weights + teacher train-mean bias, or default."
    )
    kd_target: Literal["raw", "standardized"] = Field(
        "raw", description="Feature-KD target: raw teacher states (Eq. 9) or z-scored per dimension (train split)."
    )


class StudentTrainOptions(BaseModel):
    """Mirror of the scalar fields of leader.train.student.StudentTrainConfig."""

    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay.")
    epochs: int = Field(30, ge=1, description="Maximum epochs.")
    batch_size: int = Field(64, ge=2, description="Training batch size (also the InfoNCE negatives pool).")
    patience: int = Field(5, ge=1, description="Stop after this many epochs without a better validation PRAUC.")
    seed: int = Field(0, description="Seed for init, shuffling and dropout.")
    threshold: float = Field(0.5, gt=0, lt=1, description="Decision threshold for Jaccard/F1 (p > threshold).")
    init_bias_from_prior: bool = Field(True, description="Start the output bias at logit(train drug frequency).")
    num_threads: int = Field(1, ge=1, description="torch intra-op threads (the trial's CPUs).")


class StudentOptions(StudentTrainOptions, StudentLossOptions, StudentModelOptions):
    """The study's `student:` block: trainer, loss and model fields named flat (a nested
    `student:` mapping of model fields is accepted too)."""

    model_config = ConfigDict(extra="forbid")
    student: StudentModelOptions | None = Field(None, description="Model fields, nested (same as naming them flat).")


MODEL_FIELDS = frozenset(StudentModelOptions.model_fields)
PARAM_NAMES = frozenset(set(StudentOptions.model_fields) - {"student"})


def is_student_param(name: str) -> bool:
    """A name a search space or ablation may set: flat, or `student.<model field>`."""
    return name in PARAM_NAMES or (name.startswith("student.") and name[8:] in MODEL_FIELDS)


def check_student(params: dict) -> StudentOptions:
    """Flat student params (with `student.x` keys folded) validated torch-free."""
    flat = {k: v for k, v in params.items() if not k.startswith("student.")}
    nested = {k[8:]: v for k, v in params.items() if k.startswith("student.")}
    if nested:
        flat["student"] = {**(flat.get("student") or {}), **nested}
    return StudentOptions.model_validate(flat)


def did_you_mean(name: str, valid) -> str:
    close = difflib.get_close_matches(str(name), sorted(map(str, valid)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
