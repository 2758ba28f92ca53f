"""One list of units: a unit kind added in ONE place (leader.study.units.KINDS) shows up in
`validate`, `plan`, the runner's walk and `status`. No Ray, no torch: every stage of the walk is
a recorder, the fake kind's records itself in state.json as a real stage does."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from leader.cli.main import app
from leader.study import units as U
from leader.study.spec import load_study, resolved_yaml

SPEC = """\
name: u
storage_path: {out}
datasets:
  - name: syn
    source: synthetic
    prepare: {{n_patients: 60}}
student: {{kd: none, epochs: 2, patience: 2}}
search: {{num_samples: 2, scheduler: {{type: fifo}}}}
ablations: {{variants: [full]}}
baselines: {{trivial: [prior]}}
"""


def _fake_units(w: U.Where) -> list[U.Unit]:
    d, bb = w.dataset.name, w.backbone
    needs = {"data": f"data/{d}", "sweep": f"sweep/{d}/{bb}"}
    return [w.unit(f"fake/{d}/{bb}", "fake", {"fake.knob": 1}, w.keys(*needs.values()), needs, detail="a fake unit")]


def _fake_stage(study, u):
    study.state.stage(u, lambda: {"seen": [study.need(u, "data"), study.need(u, "sweep")]})
    return "fake-out"


@pytest.fixture
def fake_kind(monkeypatch):
    """The fake kind, added in the one place kinds are declared (before the grid)."""
    kinds = list(U.KINDS)
    at = next(i for i, k in enumerate(kinds) if k.name == "grid")
    kinds.insert(at, U.Kind("fake", "backbone", _fake_units, _fake_stage))
    monkeypatch.setattr(U, "KINDS", kinds)
    return kinds


@pytest.fixture
def study_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(SPEC.format(out=tmp_path / "out"))
    return p


def test_validate_lists_the_fake_unit(fake_kind, study_file):
    r = CliRunner().invoke(app, ["study", "validate", str(study_file), "--json"])
    assert r.exit_code == 0, r.output
    names = [u["unit"] for u in json.loads(r.output)["units"]]
    assert names.index("sweep/syn/none") < names.index("fake/syn/none") < names.index("grid/syn/none")
    r = CliRunner().invoke(app, ["study", "validate", str(study_file)], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "fake/syn/none" in r.output and "a fake unit" in r.output, r.output


def test_plan_run_and_status_see_the_fake_unit(fake_kind, study_file, tmp_path, monkeypatch):
    from leader.study.runner import StudyRunner

    spec = load_study(study_file)
    sd = spec.study_dir()
    r = CliRunner().invoke(app, ["study", "plan", str(study_file)])
    assert r.exit_code == 0 and "fake/syn/none" in r.output, r.output

    # the walk: every other stage is a recorder returning its unit's name
    walked = []

    def recorder(study, u):
        walked.append(u.name)
        return f"out:{u.name}"

    kinds = [k if k.name == "fake" else dataclasses.replace(k, stage=recorder) for k in fake_kind]
    monkeypatch.setattr(U, "KINDS", kinds)
    runner = StudyRunner(spec, sd, echo=lambda *_: None)
    runner.walk()
    assert walked == [u.name for u in U.units(spec) if u.kind not in ("fake", "report")]
    fake = runner.state.get("fake/syn/none")
    assert fake["status"] == "done" and fake["outputs"]["seen"] == ["out:data/syn", "out:sweep/syn/none"]
    assert runner.study.out["fake/syn/none"] == "fake-out"

    (sd / "spec.yaml").write_text(resolved_yaml(spec))  # what run_study leaves in the folder
    r = CliRunner().invoke(app, ["study", "status", str(sd)], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "fake/syn/none" in r.output and "pending" in r.output, r.output
    from leader.study.status import status_rows

    rows = {row["unit"]: row["status"] for row in status_rows(sd)[1]}
    assert rows["fake/syn/none"] == "done" and rows["grid/syn/none"] == "pending"

    r = CliRunner().invoke(app, ["study", "plan", str(study_file), "--json"])
    plan = {u["unit"]: u["action"] for u in json.loads(r.output)["units"]}
    assert plan["fake/syn/none"] == "reuse" and plan["grid/syn/none"] == "run"


def test_a_skipped_dataset_leaves_out_what_needs_it(fake_kind, study_file, monkeypatch):
    from leader.study.context import SKIPPED
    from leader.study.runner import StudyRunner

    walked = []

    def recorder(study, u):
        walked.append(u.name)
        return SKIPPED if u.kind == "data" else None

    monkeypatch.setattr(U, "KINDS", [dataclasses.replace(k, stage=recorder) for k in fake_kind])
    spec = load_study(study_file)
    runner = StudyRunner(spec, spec.study_dir(), echo=lambda *_: None)
    runner.walk()
    assert walked == ["data/syn"] and runner.state.get("data/syn")["status"] == "skipped"
