"""PHI guards that need no cluster: trial naming and the identifier scanner."""

from __future__ import annotations

from types import SimpleNamespace

from leader.security import find_identifiers, scan_tree, trial_dirname, trial_name


def test_trial_names_carry_no_config_values():
    trial = SimpleNamespace(trainable_name="student", trial_id="a1b2c_00003", config={"patient": 10006, "alpha": 0.1})
    assert trial_name(trial) == trial_dirname(trial) == "student_a1b2c_00003"
    assert find_identifiers([trial_name(trial)], [10006]) == []


def test_find_identifiers_whole_tokens_only():
    text = "loss 0.100061 step 210006 subject=10006 hadm 100375."
    assert find_identifiers([text], [10006, 100375, 42]) == ["10006", "100375"]
    assert find_identifiers(["nothing here"], []) == []


def test_scan_tree_reports_names_and_text(tmp_path):
    (tmp_path / "tune" / "trial_alpha=0.1_pid=10006").mkdir(parents=True)
    (tmp_path / "tune" / "ok_trial").mkdir()
    (tmp_path / "tune" / "ok_trial" / "result.json").write_text('{"loss": 0.5, "visit": 100375}')
    (tmp_path / "tune" / "ok_trial" / "weights.bin").write_bytes(b"10006")  # binary: not scanned
    hits = scan_tree(tmp_path, [10006, 100375])
    assert hits == {"tune/trial_alpha=0.1_pid=10006": ["10006"], "tune/ok_trial/result.json": ["100375"]}
    assert scan_tree(tmp_path, [100375], names_only=True) == {}


def test_scan_tree_skips_a_backbones_vocabulary_but_not_its_folder_name(tmp_path):
    tok = tmp_path / "teacher" / "tokenizer"
    tok.mkdir(parents=True)
    (tok / "tokenizer.json").write_text('{"vocab": {"10006": 4211}}')  # a pretrained number token
    (tok / "notes.txt").write_text("patient 10006")
    assert scan_tree(tmp_path, [10006]) == {"teacher/tokenizer/notes.txt": ["10006"]}
    (tmp_path / "run=10006").mkdir()
    assert "run=10006" in scan_tree(tmp_path, [10006])
