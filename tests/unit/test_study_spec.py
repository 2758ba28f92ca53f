"""Study file schema: errors name field + line, extends merge, cycles, unsafe YAML, matrix counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from leader.errors import ConfigError
from leader.study.grid import grid_rows
from leader.study.spec import load_study
from leader.study.units import summary, units

REPO = Path(__file__).resolve().parents[2]

MIN = """\
name: t
datasets:
  - name: syn
    source: synthetic
teacher:
  backbones: [tiny-llama]
"""


def _write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_minimal_valid(tmp_path):
    spec = load_study(_write(tmp_path, MIN))
    assert spec.name == "t" and spec.backbones() == ["tiny-llama"]


def test_error_names_field_and_line(tmp_path):
    bad = MIN + "search:\n  space:\n    lr: {type: loguniform, low: 0, high: 0.1}\n  num_samles: 3\n"
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, bad))
    msg = str(e.value)
    assert "s.yaml:9: field 'search.space.lr'" in msg and "low > 0" in msg
    assert "s.yaml:10: field 'search.num_samles'" in msg and "unknown field" in msg


def test_unknown_backbone_and_student_param(tmp_path):
    with pytest.raises(ConfigError, match=r"s.yaml:6: field 'teacher.backbones.0'"):
        load_study(_write(tmp_path, MIN.replace("tiny-llama", "gpt-5")))
    with pytest.raises(ConfigError, match="not a student hyper-parameter"):
        load_study(_write(tmp_path, MIN + "search:\n  space:\n    bogus: {type: uniform, low: 0, high: 1}\n"))


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['echo pwned']", "!!python/name:os.system"])
def test_unsafe_tags_rejected(tmp_path, tag):
    with pytest.raises(ConfigError, match=r"s.yaml:7: invalid YAML.*construct objects"):
        load_study(_write(tmp_path, MIN + f"description: {tag}\n"))


def test_duplicate_key_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"s.yaml:7: duplicate key 'name' \(first defined on line 1\)"):
        load_study(_write(tmp_path, MIN + "name: again\n"))


def test_extends_deep_merge_and_lines(tmp_path):
    _write(tmp_path, MIN + "search:\n  num_samples: 7\n  max_concurrent: 3\nseeds: [0, 1, 2]\n", "base.yaml")
    child = _write(tmp_path, "extends: base.yaml\nname: child\nsearch:\n  num_samples: 2\nseeds: [5]\n")
    spec = load_study(child)
    assert spec.name == "child" and spec.search.num_samples == 2 and spec.search.max_concurrent == 3
    assert spec.seeds == [5]  # lists are replaced, not merged
    # an error in an inherited value points at the parent file's line
    _write(tmp_path, MIN + "resources: {cpu: -1}\n", "base.yaml")
    with pytest.raises(ConfigError, match=r"base.yaml:7: field 'resources.cpu'"):
        load_study(child)


def test_extends_cycle(tmp_path):
    _write(tmp_path, "extends: b.yaml\n" + MIN, "a.yaml")
    _write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_study(tmp_path / "a.yaml")


def test_matrix_counts(tmp_path):
    spec = load_study(
        _write(
            tmp_path,
            MIN.replace("[tiny-llama]", "[tiny-llama, minilm]")
            + """\
search: {num_samples: 5, max_concurrent: 2}
ablations: {variants: [no_kd, output_kd]}
sensitivity: {alpha: [0.1, 0.5, 1.0], beta: [0.0]}
seeds: [0, 1]
""",
        )
    )
    rows = grid_rows(spec)
    assert sum(r["stage"] == "ablation" for r in rows) == 3 * 2  # full is always added
    assert sum(r["stage"] == "sensitivity" for r in rows) == 4 * 2
    s = summary(spec, units(spec))
    assert s["sweep_trials"] == 10 and s["ablation_trials"] == 12 and s["sensitivity_trials"] == 16
    assert s["total_trials"] == 38 and s["teacher_trainings"] == 2 and s["peak_cpu"] == 2


@pytest.mark.parametrize("name", ["quickstart", "mimic3_paper", "mimic4_paper"])
def test_shipped_studies_valid(name):
    spec = load_study(REPO / "studies" / f"{name}.yaml")
    assert units(spec)


def test_cli_validate_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "leader.cli.main", "study", "validate", str(REPO / "studies/quickstart.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "sweep" in ok.stdout and "valid" in ok.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "leader.cli.main",
            "study",
            "validate",
            str(_write(tmp_path, MIN.replace("synthetic", "mimic9"))),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "datasets.0.source" in bad.stderr and "s.yaml:4" in bad.stderr


def test_asha_grace_period_longer_than_the_trials_is_refused(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(
        "name: g\ndatasets: [{name: syn, source: synthetic}]\n"
        "student: {epochs: 2, kd: none}\n"
        "search:\n  space: {lr: {type: loguniform, low: 0.001, high: 0.01}}\n"
        "  scheduler: {type: asha, grace_period: 4}\n"
    )
    with pytest.raises(ConfigError, match="grace_period"):
        load_study(p)
