"""The teacher's options: validated once where the study file is read, then copied (not re-parsed)
into each run's config; test-only fault injection is no option a study file can set."""

import pytest
from pydantic import ValidationError

from leader.config.teacher import FAIL_AT_STEP_ENV, TeacherTrainConfig, fail_at_step, run_config
from leader.errors import ConfigError


def test_run_config_equals_validating_the_set_options_again():
    from leader.study.options import TeacherOptions

    opts = TeacherOptions.model_validate({"lr": 1, "workers": 3, "max_steps": 24, "lp_epochs": 30})
    res = {"workers": 2, "use_gpu": False, "cpus_per_worker": 1.0}
    old = {**opts.model_dump(exclude_unset=True), "backbone": "minilm"}
    for k, v in res.items():
        old.setdefault(k, v)
    got = run_config(opts, "minilm", **res)
    assert type(got) is TeacherTrainConfig and got.model_dump() == TeacherTrainConfig(**old).model_dump()
    assert got.workers == 3 and got.cpus_per_worker == 1.0 and got.lr == 1.0 and isinstance(got.lr, float)


def test_fault_injection_is_not_an_option():
    from leader.study.options import TeacherOptions

    for cls in (TeacherTrainConfig, TeacherOptions):
        with pytest.raises(ValidationError, match=f"fail_at_step is not a teacher option.*{FAIL_AT_STEP_ENV}"):
            cls(fail_at_step=3)
    assert "fail_at_step" not in TeacherTrainConfig.model_json_schema()["properties"]


def test_fault_injection_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(FAIL_AT_STEP_ENV, raising=False)
    assert fail_at_step() is None
    monkeypatch.setenv(FAIL_AT_STEP_ENV, "3")
    assert fail_at_step() == 3
    monkeypatch.setenv(FAIL_AT_STEP_ENV, "three")
    with pytest.raises(ConfigError, match=FAIL_AT_STEP_ENV):
        fail_at_step()
