"""The report's "Deviations from the paper": the study's resolved configuration diffed against the
paper/authors reference (leader.config.paper), one line per difference with both values and the
reason. A study without a preset is diffed against both presets and named after the closer one.

What the study runs is resolved here the way the trainers resolve it: the preset's values, then the
study file's (and `--set`'s) values on top, then each config class's defaults for the rest. A key the
user set to something other than the preset is a "user override"; a default that differs is a
"documented project choice".
"""

from __future__ import annotations

from leader.config import paper
from leader.config.protocol import authors_protocol
from leader.config.student import LossConfig, StudentConfig, StudentTrainFields
from leader.config.teacher import TeacherTrainConfig
from leader.data.cache import PrepareOptions
from leader.metrics import BOOTSTRAP_DDOF

UNAVAILABLE_BASELINES = {
    "SafeDrug": "needs DrugBank molecule SMILES, not available offline",
    "G-Bert": "needs its ontology pre-training corpus and checkpoints, not available offline",
    "REFINE": "needs its drug-drug interaction severity tables, not available offline",
    "TALLRec": "needs a LLaMA-7B instruction-tuned checkpoint, not available offline",
}
_STUDENT_SECTIONS = {"student": StudentConfig, "loss": LossConfig, "train": StudentTrainFields}


def study_preset(spec: dict) -> str | None:
    p = spec.get("preset")
    return str(p) if p else None


NO_PRESET = "the package's value (the study declares no preset)"


def _resolved(spec: dict) -> dict[str, object]:
    """{'<section>.<field>': value} as the study runs it: spec.yaml holds the resolved study (the
    preset already applied), each config class's default fills what it leaves out."""
    user = {k: v for k, v in (spec.get("student") or {}).items() if not isinstance(v, dict)}
    out = {
        f"{sec}.{n}": user.get(n, f.default)
        for sec, cls in _STUDENT_SECTIONS.items()
        for n, f in cls.model_fields.items()
    }
    opts = dict(((spec.get("teacher") or {}).get("options")) or {})
    out.update({f"teacher.{n}": opts.get(n, f.default) for n, f in TeacherTrainConfig.model_fields.items()})
    if out["teacher.threshold"] is None:  # unset: LEADER(T) is scored at the student's threshold
        out["teacher.threshold"] = out["train.threshold"]
    ev = dict(spec.get("evaluation") or {})
    out["evaluation.bootstrap_ddof"] = ev.get("bootstrap_ddof", BOOTSTRAP_DDOF)
    return out


def _data_deviations(spec: dict, reason: str) -> list[paper.Deviation]:
    """Per dataset: its prepare options against the authors' protocol for its source."""
    out = []
    for d in spec.get("datasets") or []:
        given = dict(d.get("prepare") or {})
        for k, want in authors_protocol(str(d.get("source", ""))).items():
            have = given.get(k, PrepareOptions.model_fields[k].default)
            if not paper._same(have, want):
                out.append(paper.Deviation(f"data[{d.get('name')}].{k}", want, have, reason))
    return out


def deviations_for(spec: dict, preset: str) -> list[paper.Deviation]:
    """Every difference between the study and `preset`: data first, then the reference's order.
    With the study's own preset every settable difference was asked for: a user override."""
    own = study_preset(spec) == preset
    devs = paper.deviations(preset, _resolved(spec), source=paper.single_source(spec.get("datasets")))
    settable_reason = paper.OVERRIDE if own else NO_PRESET
    devs = [
        d if not paper.BY_KEY[d.key].settable else paper.Deviation(d.key, d.reference, d.value, settable_reason)
        for d in devs
        if not d.key.startswith("data.")
    ]
    return _data_deviations(spec, settable_reason) + devs


def closest_preset(spec: dict) -> tuple[str, list[paper.Deviation]]:
    """The study's own preset, or the one with fewer differences (ties: 'paper')."""
    own = study_preset(spec)
    if own:
        return own, deviations_for(spec, own)
    scored = [(deviations_for(spec, p), p) for p in paper.PRESETS]
    devs, best = min(scored, key=lambda x: len(x[0]))  # first (paper) on a tie
    return best, devs


def _head(spec: dict) -> tuple[str, list[paper.Deviation]]:
    preset, devs = closest_preset(spec)
    own = study_preset(spec) is not None
    head = (
        f"This study reproduces `preset: {preset}`; {len(devs)} differences from it:"
        if own
        else f"This study declares no preset; the closest is `{preset}`, with {len(devs)} differences:"
    )
    return head, devs


def deviations_markdown(spec: dict, sets: list[str] | None = None) -> str:
    head, devs = _head(spec)
    lines = ["## Deviations from the paper", "", head, ""]
    lines += [f"- {d.line()}" for d in devs] or ["- none"]
    if sets:
        lines += ["", "Given on the command line (`--set`, user overrides over the study file):"]
        lines += [f"- `{s}`" for s in sets]
    lines += ["", "Baselines of the paper's Table III not run here:"]
    lines += [f"- {name}: {why}" for name, why in UNAVAILABLE_BASELINES.items()]
    return "\n".join(lines) + "\n"


def deviations_html(spec: dict, sets: list[str] | None = None) -> str:
    import html

    head, devs = _head(spec)
    given = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in sets or [])
    given = f"<p>Given on the command line (<code>--set</code>, user overrides):</p><ul>{given}</ul>" if sets else ""
    rows = "".join(
        f"<tr><td><code>{html.escape(d.key)}</code></td><td>{html.escape(repr(d.reference))}</td>"
        f"<td>{html.escape(repr(d.value))}</td><td>{html.escape(d.reason)}</td></tr>"
        for d in devs
    )
    missing = "".join(f"<li>{html.escape(n)}: {html.escape(w)}</li>" for n, w in UNAVAILABLE_BASELINES.items())
    return (
        f'<h2 id="deviations">Deviations from the paper</h2><p>{html.escape(head)}</p>'
        f"<table><thead><tr><th>setting</th><th>reference</th><th>this study</th><th>reason</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{given}<p>Baselines of the paper's Table III not run here:</p><ul>{missing}</ul>"
    )


def deviations_frame(spec: dict, sets: list[str] | None = None):
    import pandas as pd

    _, devs = _head(spec)
    rows = [
        {"setting": d.key, "reference": repr(d.reference), "value": repr(d.value), "reason": d.reason} for d in devs
    ]
    for s in sets or []:
        key, _, value = s.partition("=")
        rows.append({"setting": key, "reference": "", "value": value, "reason": "--set"})
    return pd.DataFrame(rows, columns=["setting", "reference", "value", "reason"])


def command_line_sets(study_dir) -> list[str]:
    """The `--set` overrides of the study's last run (overrides.json, written by the runner)."""
    import json
    from pathlib import Path

    path = Path(study_dir) / "overrides.json"
    try:
        sets = json.loads(path.read_text()) if path.is_file() else []
    except json.JSONDecodeError:
        return []
    return [str(x) for x in sets] if isinstance(sets, list) else []
