"""`preset: paper | authors`: the reference fills what the study file leaves unset (over its
`extends` parents, under the file and `--set`), and the report's deviation list is exactly the
overrides given (every reference setting is an option of the package, so none deviates by design)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leader.config import paper
from leader.errors import ConfigError
from leader.report.deviations import closest_preset, deviations_for, deviations_markdown
from leader.study.spec import load_study
from leader.study.spec import with_sets as _with_sets

STUDIES = Path(__file__).resolve().parents[2] / "studies"
# the dress rehearsal's overrides: CPU data, backbones, size (issue #23)
REHEARSAL = {
    "datasets.0.source": "synthetic",
    "teacher.backbones": "[tiny-llama]",
    "teacher.options.max_steps": "4",
    "student.epochs": "2",
    "search.num_samples": "2",
    "search.scheduler.grace_period": "1",
    "seeds": "[0, 1]",
}


def _spec(monkeypatch, name: str, sets: dict | None = None):
    monkeypatch.setenv("MIMIC3_ROOT", "/nonexistent")
    monkeypatch.setenv("MIMIC4_ROOT", "/nonexistent")
    spec = load_study(STUDIES / name)
    if sets:
        spec = _with_sets(spec, [f"{k}={v}" for k, v in sets.items()])
    return spec, yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json")))


def test_preset_beats_the_parents_and_the_file_beats_the_preset(monkeypatch):
    spec, _ = _spec(monkeypatch, "mimic3_paper.yaml")
    st = spec.student_params()
    assert st["tau"] == 1.0  # base.yaml says 0.1; the paper preset wins over the parent
    assert (st["set_pooling"], st["align_form"], st["kd_input"]) == ("mean", "paper", "pre_activation")
    assert (st["alpha"], st["beta"], st["batch_size"], st["threshold"]) == (0.4, 0.005, 4, 0.5)
    opts = spec.teacher.options
    assert (opts.lora_alpha, opts.lp_epochs) == (32, 0)  # preset over base.yaml's 16 / 30
    assert opts.grad_accum == 1  # the file's own value over the preset's 2
    prep = spec.datasets[0].prepare
    assert (prep.samples, prep.split, prep.top_k_diag, prep.top_k_med) == ("last_visit", "sequential", 2000, 300)
    assert prep.first_24h is True  # the file's own prepare field stays


def test_mimic4_takes_the_releases_mimic4_values(monkeypatch):
    spec, _ = _spec(monkeypatch, "mimic4_paper.yaml")
    st = spec.student_params()
    assert (st["alpha"], st["beta"], st["batch_size"]) == (0.8, 0.01, 16)
    prep = spec.datasets[0].prepare
    assert (prep.patient_fraction, prep.top_k_proc, prep.protocol_seed) == (0.15, 1001, 42)


def test_deviations_are_exactly_the_overrides_plus_the_documented_ones(monkeypatch):
    _, spec = _spec(monkeypatch, "mimic3_paper.yaml", REHEARSAL)
    devs = deviations_for(spec, "paper")
    keys = {d.key for d in devs}
    assert not [s.key for s in paper.SETTINGS if not s.settable]  # none deviates by design any more
    # of the rehearsal's overrides, those the reference has a value for; plus the file's own grad_accum
    assert keys == {"teacher.max_steps", "train.epochs", "teacher.grad_accum"}
    assert all(d.reason == paper.OVERRIDE for d in devs)
    sets = [f"{k}={v}" for k, v in REHEARSAL.items()]
    md = deviations_markdown(spec, sets)
    assert "- train.epochs: 100 in the reference, 2 here (user override)" in md
    assert all(f"- `{s}`" in md for s in sets)  # every --set of the run, each once
    assert "SafeDrug" in md


def test_a_data_override_is_listed_per_dataset(monkeypatch):
    _, spec = _spec(monkeypatch, "mimic3_paper.yaml", {"datasets.0.prepare.samples": "per_visit"})
    (dev,) = [d for d in deviations_for(spec, "paper") if d.key.startswith("data[")]
    assert (dev.key, dev.reference, dev.value) == ("data[mimic3].samples", "last_visit", "per_visit")


def test_a_study_without_a_preset_names_the_closest(monkeypatch):
    _, spec = _spec(monkeypatch, "quickstart.yaml")
    preset, devs = closest_preset(spec)
    assert preset in paper.PRESETS and devs
    assert "declares no preset; the closest is" in deviations_markdown(spec)


def test_set_indexes_lists_and_refuses_bad_indices(monkeypatch):
    spec, _ = _spec(monkeypatch, "mimic3_paper.yaml", {"datasets.0.source": "synthetic"})
    assert spec.datasets[0].source == "synthetic"
    with pytest.raises(ConfigError, match="not an index"):
        _spec(monkeypatch, "mimic3_paper.yaml", {"datasets.3.source": "synthetic"})


def test_a_preset_study_runs_its_released_config_beside_the_tuned_one(monkeypatch):
    from leader.student.train import trial_params
    from leader.study.grid import grid_rows

    spec, _ = _spec(monkeypatch, "mimic3_paper.yaml")
    released = [r for r in grid_rows(spec) if r["stage"] == "released"]
    assert [r["seed"] for r in released] == spec.seeds  # the same seeds as the tuned rows
    params = released[0]["params"]
    assert set(params) == set(spec.search.space) and (params["alpha"], params["tau"]) == (0.4, 1.0)
    # the sweep's best is in the trial config; the released row puts the study's values back
    best = {"alpha": 0.07, "tau": 0.2, "lr": 0.001}
    got = trial_params({**best, "run": released[0]}, spec.student_params(), {})
    assert (got["alpha"], got["tau"], got["lr"]) == (0.4, 1.0, 0.0005)
    tuned = next(r for r in grid_rows(spec) if r["stage"] == "ablation" and r["variant"] == "full")
    assert trial_params({**best, "run": tuned}, spec.student_params(), {})["alpha"] == 0.07


def test_a_study_without_a_preset_has_no_released_rows(monkeypatch):
    from leader.study.grid import grid_rows

    spec, _ = _spec(monkeypatch, "quickstart.yaml")
    assert not [r for r in grid_rows(spec) if r["stage"] == "released"]
