"""read_json: every hand-written or stage-written JSON file fails with the file and field named."""

import pytest

from leader.errors import CheckpointError, ConfigError, DataError, read_json


def test_read_json_names_file_and_field(tmp_path):
    p = tmp_path / "meta.json"
    with pytest.raises(CheckpointError, match="teacher checkpoint: .*meta.json missing"):
        read_json(p, what="teacher checkpoint")
    p.write_text('{"n_meds": 3')  # truncated, as after a crash mid-write
    with pytest.raises(ConfigError, match="meta.json is not valid JSON"):
        read_json(p, ConfigError)
    p.write_text('{"n_meds": 3}')
    with pytest.raises(DataError, match="field 'd_hidden' missing"):
        read_json(p, DataError, required=("n_meds", "d_hidden"))
    assert read_json(p, required=("n_meds",)) == {"n_meds": 3}


def test_load_student_with_corrupt_meta_is_checkpoint_error(tmp_path):
    from leader.student.train import load_student

    for f in ("model.pt", "config.json"):
        (tmp_path / f).write_text("{}")
    (tmp_path / "meta.json").write_text("not json")
    with pytest.raises(CheckpointError, match="meta.json"):
        load_student(tmp_path)
