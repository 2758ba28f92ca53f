"""`preset: paper | authors` in a study file: the reference's values (leader.config.paper, the
data protocol in leader.config.protocol) fill every setting the study file leaves unset, so a
study says which configuration it reproduces and states only where it departs from it.

Order, lowest first: the `extends` parents (the project's defaults), the preset, the file itself,
`--set`. Applied before validation, so validate, plan, run and the report all see the same resolved
values; the report's "Deviations from the paper" lists every value above the preset that differs
from it as a user override.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from leader.config import paper
from leader.config.protocol import authors_protocol

STUDENT_SECTIONS = ("student", "loss", "train")


def _fill(given: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict:
    return {**defaults, **dict(given or {})}


def apply_preset(data: Any) -> Any:
    """The raw study mapping with the preset's values under what the file sets (no preset: as is)."""
    if not isinstance(data, Mapping) or not data.get("preset"):
        return data
    preset = str(data["preset"])
    if preset not in paper.PRESETS:
        return data  # the schema refuses it, naming the field
    out = dict(data)
    source = study_source(out)
    student = {k: v for sec in STUDENT_SECTIONS for k, v in paper.preset_values(preset, sec, source).items()}
    out["student"] = _fill(out.get("student"), student)
    if isinstance(out.get("teacher"), Mapping):
        teacher = dict(out["teacher"])
        teacher["options"] = _fill(teacher.get("options"), paper.preset_values(preset, "teacher", source))
        out["teacher"] = teacher
    if isinstance(out.get("datasets"), list):
        out["datasets"] = [_dataset(d) for d in out["datasets"]]
    return out


def study_source(data: Mapping) -> str | None:
    """The datasets' one source when they share it ('mimic4' selects the release's MIMIC-IV values
    for the study-wide student and teacher settings), else None (the MIMIC-III values)."""
    sources = {str(d.get("source")) for d in data.get("datasets") or [] if isinstance(d, Mapping)}
    return sources.pop() if len(sources) == 1 else None


def preset_overlay(data: Mapping) -> dict:
    """What a file's `preset` puts between its `extends` parents and the file itself: the preset
    overrides the parents' (project) defaults, the file's own values override the preset."""
    preset = data.get("preset") if isinstance(data, Mapping) else None
    if preset not in paper.PRESETS:
        return {}
    source = study_source(data)
    out: dict = {
        "student": {k: v for sec in STUDENT_SECTIONS for k, v in paper.preset_values(preset, sec, source).items()}
    }
    if isinstance(data.get("teacher"), Mapping):
        out["teacher"] = {"options": paper.preset_values(preset, "teacher", source)}
    return out


def _dataset(d: Any) -> Any:
    if not isinstance(d, Mapping):
        return d
    protocol = authors_protocol(str(d.get("source", "")))
    protocol["split_ratios"] = list(protocol["split_ratios"])
    return {**d, "prepare": _fill(d.get("prepare"), protocol)}
