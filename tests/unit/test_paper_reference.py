"""The paper/authors reference: every settable key names a real option, and the deviation list is
exactly the overrides given plus the documented, unsettable differences (none today: every
reference setting is an option of the package, see test_paper_options)."""

from __future__ import annotations

import pytest

from leader.config import paper


def _option_fields() -> dict[str, set[str]]:
    from leader.config.student import LossConfig, StudentConfig, StudentTrainFields
    from leader.config.teacher import TeacherTrainConfig
    from leader.data.cache import PrepareOptions
    from leader.study.spec import EvalSpec

    return {
        "student": set(StudentConfig.model_fields),
        "loss": set(LossConfig.model_fields),
        "train": set(StudentTrainFields.model_fields),
        "teacher": set(TeacherTrainConfig.model_fields),
        "data": set(PrepareOptions.model_fields),
        "evaluation": set(EvalSpec.model_fields),
    }


def test_every_settable_key_is_an_option():
    fields = _option_fields()
    missing = []
    for s in paper.SETTINGS:
        section, name = s.key.split(".", 1)
        if s.settable and name not in fields.get(section, set()):
            missing.append(s.key)
    assert not missing, f"reference keys with no option of that name: {missing}"


def test_unsettable_keys_say_why():
    assert all(s.why for s in paper.SETTINGS if not s.settable)


def test_presets_differ_exactly_where_the_reference_says_why():
    for s in paper.SETTINGS:
        if s.paper != s.authors:
            assert s.why, f"{s.key}: paper and authors differ without a reason"


def test_deviations_are_the_overrides_plus_the_documented_ones():
    resolved = {k: v for k, v in paper.preset_values("paper").items()}
    resolved["loss.alpha"] = 0.1  # user override
    resolved["train.epochs"] = 2  # user override
    devs = paper.deviations("paper", resolved, overrides={"loss.alpha", "train.epochs"})
    by_key = {d.key: d for d in devs}
    unsettable = {s.key for s in paper.SETTINGS if not s.settable}
    assert unsettable == set()  # the package can set every reference value
    assert set(by_key) == {"loss.alpha", "train.epochs"}
    assert by_key["loss.alpha"].reason == paper.OVERRIDE
    assert (by_key["loss.alpha"].reference, by_key["loss.alpha"].value) == (0.4, 0.1)
    assert "0.4 in the reference, 0.1 here (user override)" in by_key["loss.alpha"].line()
    assert all(by_key[k].reason.startswith(paper.PROJECT_CHOICE) for k in unsettable)


def test_a_changed_value_nobody_asked_for_is_a_project_choice():
    resolved = paper.preset_values("authors")
    resolved["student.set_pooling"] = "sum"
    (dev,) = [d for d in paper.deviations("authors", resolved) if d.key == "student.set_pooling"]
    assert dev.reason.startswith(paper.PROJECT_CHOICE) and dev.value == "sum"


def test_equal_floats_are_not_deviations():
    resolved = paper.preset_values("paper")
    resolved["train.lr"] = 0.0005000000000000001
    assert "train.lr" not in {d.key for d in paper.deviations("paper", resolved)}


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        paper.preset_values("mine")
