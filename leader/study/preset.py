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
from leader.study.yamlmap import deep_merge

STUDENT_SECTIONS = ("student", "loss", "train")


def apply_preset(data: Any) -> Any:
    """The raw study mapping with the preset's values under what it sets (no preset: as is): the
    same overlay a study file gets between its parents and itself, plus each dataset's protocol."""
    overlay = preset_overlay(data)
    if not overlay:
        return data
    out = deep_merge(overlay, dict(data))
    if isinstance(out.get("datasets"), list):
        out["datasets"] = [_dataset(d) for d in out["datasets"]]
    return out


def preset_overlay(data: Mapping) -> dict:
    """What a file's `preset` puts between its `extends` parents and the file itself: the preset
    overrides the parents' (project) defaults, the file's own values override the preset."""
    preset = data.get("preset") if isinstance(data, Mapping) else None
    if preset not in paper.PRESETS:
        return {}
    source = paper.single_source(data.get("datasets"))
    out: dict = {
        "student": {k: v for sec in STUDENT_SECTIONS for k, v in paper.preset_values(preset, sec, source).items()}
    }
    if isinstance(data.get("teacher"), Mapping):
        out["teacher"] = {"options": paper.preset_values(preset, "teacher", source)}
    out["evaluation"] = paper.preset_values(preset, "evaluation", source)
    return out


def _dataset(d: Any) -> Any:
    if not isinstance(d, Mapping):
        return d
    protocol = authors_protocol(str(d.get("source", "")))
    protocol["split_ratios"] = list(protocol["split_ratios"])
    return {**d, "prepare": {**protocol, **dict(d.get("prepare") or {})}}
