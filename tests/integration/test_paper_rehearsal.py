"""The paper study's CPU dress rehearsal (issue #23), end to end: scripts/rehearse_paper.sh runs
studies/mimic3_paper.yaml unchanged, with only the --set overrides of scripts/rehearse_paper.sets
(synthetic MIMIC-III-shaped data, two tiny CPU backbones, small counts), through `leader study run`.
Its report must hold every paper artifact of leader.report.names.PAPER_ARTIFACTS per backbone (and
per group where the paper splits by group), and its Deviations must list exactly the overrides
given plus the documented deviations, derived here from leader.config.paper and
leader.report.deviations rather than written down, so a setting that becomes settable keeps this
test right."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "rehearse_paper.sh"
STUDY_FILE = REPO / "studies" / "mimic3_paper.yaml"


def rehearsal_sets() -> list[str]:
    """The script's overrides, from the one file it reads."""
    lines = (REPO / "scripts" / "rehearse_paper.sets").read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["MIMIC3_ROOT"] = "/nonexistent"  # the file's root is overridden; a real one must not be read
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), str(root)], env=env, capture_output=True, text=True, timeout=2200)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(f"\nrehearsal wall time: {wall:.0f} s")
    study = root / "mimic3_paper"
    return study, study / "report", yaml.safe_load((study / "spec.yaml").read_text())


def test_the_report_has_every_paper_artifact_per_backbone_and_group(rehearsal, tmp_path):
    from leader.report.names import PAPER_ARTIFACTS
    from leader.report.paper_artifacts import paper_gaps

    study, report, spec = rehearsal
    backbones = spec["teacher"]["backbones"]
    assert len(backbones) == 2  # "per backbone" is tested only with more than one
    results = pd.read_parquet(report / "results.parquet")
    assert paper_gaps(results, report, spec) == {a.paper: [] for a in PAPER_ARTIFACTS}
    shown = pd.read_csv(report / "tables" / "paper_artifacts.csv")
    assert list(shown["paper"]) == [a.paper for a in PAPER_ARTIFACTS] and set(shown["status"]) == {"complete"}
    captions = [line for line in (report / "index.md").read_text().splitlines() if line.startswith("*Paper: ")]
    for a in PAPER_ARTIFACTS:  # each table's and figure's caption names the paper artifact it reproduces
        assert sum(f"{a.paper} ({a.what})" in c for c in captions) == len(a.items), a.paper
    # the same, read straight from the CSV faces a reader opens
    tab = {n: pd.read_csv(report / "tables" / f"{n}.csv") for n in ("overall", "ablation", "backbone", "efficiency")}
    for bb in backbones:
        assert {f"LEADER(T) [{bb}]", f"LEADER(S) [{bb}]"} <= set(tab["overall"]["Model"])
        rows = {n: t[t["Backbone"] == bb] for n, t in tab.items() if n != "overall"}
        assert len(rows["ablation"]) == len(spec["ablations"]["variants"])
        assert set(rows["backbone"]["Model"]) == {"LEADER(T)", "LEADER(S)"}
        assert len(rows["efficiency"]) == len(spec["evaluation"]["latency_batch_sizes"])
    for col in ("Multi-visit (has history) PRAUC", "Single-visit (no history) PRAUC"):  # Table V's groups
        leader = tab["overall"][tab["overall"]["Model"].str.startswith("LEADER(")]
        assert not leader[col].str.startswith("missing").any(), col

    # the check can fail: a dropped table, a dropped figure, one backbone's rows gone
    cut = tmp_path / "report"
    shutil.copytree(report, cut)
    (cut / "tables" / "ablation.csv").unlink()
    (cut / "figures" / "sensitivity_beta.png").unlink()
    gaps = paper_gaps(results[results["backbone"] != backbones[1]], cut, spec)
    assert "table ablation: not written" in gaps["Table IV"]
    assert "figure sensitivity_beta: not drawn" in gaps["Fig. 3"]
    for paper in ("Table III", "Table V", "Table VII", "Fig. 2", "Fig. 4"):
        assert any(f"/ {backbones[1]}," in g for g in gaps[paper]), paper
    assert gaps["Table VI"] == []  # dataset statistics are not per backbone


def _setting_key(key: str, spec: dict) -> str | None:
    """The paper reference's key (leader.config.paper) a study-file / --set key reaches, if any."""
    from leader.config import paper
    from leader.config.flat import STUDENT_PATHS
    from leader.config.protocol import authors_protocol

    parts = key.split(".")
    if parts[0] == "datasets" and len(parts) == 4 and parts[2] == "prepare":
        d = spec["datasets"][int(parts[1])]
        return f"data[{d['name']}].{parts[3]}" if parts[3] in authors_protocol(d["source"]) else None
    if parts[:2] == ["teacher", "options"] and len(parts) == 3:
        k = f"teacher.{parts[2]}"
    elif parts[0] == "student" and len(parts) == 2 and parts[1] in STUDENT_PATHS:
        path = STUDENT_PATHS[parts[1]]
        k = path if "." in path else f"train.{path}"
    else:
        return None
    return k if k in paper.BY_KEY and paper.BY_KEY[k].settable else None


def _reference(setting: str, spec: dict):
    from leader.config import paper
    from leader.config.protocol import authors_protocol

    if setting.startswith("data["):
        name, field = setting[5:].split("].")
        d = next(x for x in spec["datasets"] if x["name"] == name)
        return authors_protocol(d["source"])[field]
    return paper.BY_KEY[setting].value("paper", paper.single_source(spec["datasets"]))


def _flat(d, prefix=""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flat(v, key + ".")
        elif isinstance(v, list) and key == "datasets":
            for i, x in enumerate(v):
                yield from _flat(x, f"{key}.{i}.")
        else:
            yield key, v


def expected_overrides(sets: list[str], spec: dict) -> set[str]:
    """The reference keys the study file itself or a --set moves off the paper's value."""
    from leader.config import paper

    given = dict(_flat(yaml.safe_load(STUDY_FILE.read_text())))  # the file's own values, under --set
    given.update({k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in sets)})
    out = set()
    for key, value in given.items():
        setting = _setting_key(key, spec)
        if setting is not None and not paper._same(value, _reference(setting, spec)):
            out.add(setting)
    return out


def test_deviations_are_exactly_the_overrides_plus_the_documented_ones(rehearsal):
    from leader.config import paper
    from leader.report.deviations import UNAVAILABLE_BASELINES

    study, report, spec = rehearsal
    sets = rehearsal_sets()
    dev = pd.read_csv(report / "tables" / "deviations.csv", keep_default_na=False)
    given = dev[dev["reason"] == "--set"]
    assert [f"{k}={v}" for k, v in zip(given["setting"], given["value"], strict=True)] == sets
    documented = dev[dev["reason"].str.startswith(paper.PROJECT_CHOICE)]
    assert set(documented["setting"]) == {s.key for s in paper.SETTINGS if not s.settable}
    overridden = dev[dev["reason"] == paper.OVERRIDE]
    assert set(overridden["setting"]) == expected_overrides(sets, spec)
    assert len(given) + len(documented) + len(overridden) == len(dev)  # nothing else
    # the rendered section: every --set once, the documented lines, the baselines not run
    md = (report / "index.md").read_text()
    section = md.split("## Deviations from the paper", 1)[1].split("\n## ", 1)[0]
    assert [line[3:-1] for line in section.splitlines() if line.startswith("- `")] == sets
    for key in documented["setting"]:
        assert f"\n- {key}: " in section and paper.BY_KEY[key].why in section
    missing = section.split("Baselines of the paper's Table III not run here:", 1)[1]
    assert [line[2:].split(":")[0] for line in missing.splitlines() if line.startswith("- ")] == list(
        UNAVAILABLE_BASELINES
    )
    # the check can fail: one override fewer, or one more, is a different list
    assert [f"{k}={v}" for k, v in zip(given["setting"], given["value"], strict=True)] != sets[1:]
    fewer = expected_overrides([s for s in sets if not s.startswith("teacher.options.max_steps=")], spec)
    assert fewer != set(overridden["setting"]) and "teacher.max_steps" not in fewer
