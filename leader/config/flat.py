"""The one translator from flat names to the nested trainer config.

Study files, Tune search spaces, ablation overrides, sensitivity grids and `--set` name the
student's settings flat, as the paper does (`alpha`, `lr`, `set_pooling`); StudentTrainConfig
nests them (trainer fields at the top, loss terms under `loss`, model fields under `student`).
Every place that turns one into the other calls this module, so a name means one thing
everywhere and a new field needs no second mapping.

Contract:
    STUDENT_PATHS: {flat name: dotted path}   alpha -> loss.alpha, d_model -> student.d_model,
                                              lr -> lr
    nest_student(params, strict=True) -> dict  the nested mapping StudentTrainConfig validates;
        accepts flat names, `<section>.<field>` and `<section>: {...}` (sections: loss, student);
        later keys win. strict: an unknown name is a ConfigError; otherwise it stays at the top
        level for pydantic to refuse.
    fold_dotted(params, section='student') -> dict   `student.x` keys folded into `student: {x}`,
        flat names left flat (the study file's flat schema, leader.study.options)
    student_config(params) -> StudentTrainConfig     a ConfigError names the bad field
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from leader.config.student import LossConfig, StudentConfig, StudentTrainConfig, StudentTrainFields
from leader.errors import ConfigError

TRAINER_FIELDS = frozenset(StudentTrainFields.model_fields)
LOSS_FIELDS = frozenset(LossConfig.model_fields)
MODEL_FIELDS = frozenset(StudentConfig.model_fields)
SECTIONS = {"loss": LOSS_FIELDS, "student": MODEL_FIELDS}
STUDENT_PATHS: dict[str, str] = {
    **{k: k for k in TRAINER_FIELDS},
    **{k: f"{sec}.{k}" for sec, names in SECTIONS.items() for k in names},
}
assert len(STUDENT_PATHS) == len(TRAINER_FIELDS) + len(LOSS_FIELDS) + len(MODEL_FIELDS), "a flat name is ambiguous"


def _path(key: str) -> tuple[str, str] | None:
    """(section or '', field) for a flat or dotted student name, None when it names nothing."""
    sec, dot, field = key.partition(".")
    if dot:
        return (sec, field) if field in SECTIONS.get(sec, ()) else None
    if key not in STUDENT_PATHS:
        return None
    sec, _, field = STUDENT_PATHS[key].rpartition(".")
    return sec, field


def nest_student(params: Mapping[str, Any], strict: bool = True) -> dict:
    out: dict[str, Any] = {}
    parts: dict[str, list] = {}  # section -> its contributions, in order: mappings / (field, value)
    for k, v in params.items():
        where = ("section", k) if k in SECTIONS and isinstance(v, Mapping | BaseModel) else _path(k)
        if where is None:
            if strict:
                raise ConfigError(f"unknown student field {k!r}")
            out[k] = v
        elif where[0] == "section":
            parts.setdefault(k, []).append(v)
        elif where[0]:
            parts.setdefault(where[0], []).append((where[1], v))
        else:
            out[k] = v
    for sec, got in parts.items():
        out[sec] = got[0] if len(got) == 1 and not isinstance(got[0], tuple) else _merge(got)
    return out


def _merge(parts: list) -> dict:
    merged: dict[str, Any] = {}
    for p in parts:
        if isinstance(p, tuple):
            merged[p[0]] = p[1]
        else:
            merged.update(p.model_dump() if isinstance(p, BaseModel) else p)
    return merged


def fold_dotted(params: Mapping[str, Any], section: str = "student") -> dict:
    flat = {k: v for k, v in params.items() if not k.startswith(section + ".")}
    dotted = {k[len(section) + 1 :]: v for k, v in params.items() if k.startswith(section + ".")}
    if dotted:
        flat[section] = {**(flat.get(section) or {}), **dotted}
    return flat


def student_config(params: Mapping[str, Any]) -> StudentTrainConfig:
    try:
        return StudentTrainConfig.model_validate(nest_student(params))
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"field {loc!r}: {err['msg']}") from None
