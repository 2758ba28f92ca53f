"""A teacher given in `teacher.checkpoints` must come from the study's own cohort: another cohort
is refused with the field and the two fingerprints, not a KeyError inside the probe unit."""

import json
from types import SimpleNamespace

import pytest

from leader.errors import CheckpointError
from leader.study.stages.teacher import _same_cohort


def _teacher(tmp_path, fingerprint):
    (tmp_path / "meta.json").write_text(json.dumps({"dataset": "syn", "dataset_fingerprint": fingerprint}))
    return tmp_path


def test_a_teacher_of_this_cohort_is_taken(tmp_path):
    _same_cohort(_teacher(tmp_path, "abc"), SimpleNamespace(name="syn", fingerprint="abc"), "teacher.checkpoints['m']")


def test_a_teacher_of_another_cohort_is_refused_naming_field_and_fingerprints(tmp_path):
    with pytest.raises(CheckpointError) as e:
        _same_cohort(
            _teacher(tmp_path, "abc"), SimpleNamespace(name="syn", fingerprint="xyz"), "teacher.checkpoints['m']"
        )
    msg = str(e.value)
    assert "teacher.checkpoints['m']" in msg and "dataset_fingerprint" in msg and "abc" in msg and "xyz" in msg


def test_a_folder_without_meta_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="meta.json"):
        _same_cohort(tmp_path, SimpleNamespace(name="syn", fingerprint="x"), "teacher.checkpoints['m']")
