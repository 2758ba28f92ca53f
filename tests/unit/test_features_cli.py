"""`leader features info` on a stored feature set, and a clear error for a bad one."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from leader.cli.main import app
from leader.features.store import save_features
from leader.features.types import TeacherFeatures


def test_info_and_verify(tmp_path):
    rng = np.random.default_rng(0)
    f = TeacherFeatures(
        np.arange(30, dtype=np.int64),
        rng.standard_normal((30, 4)).astype(np.float16),
        rng.random((30, 3)).astype(np.float32),
    )
    save_features(
        tmp_path, f, shard_size=10, dataset="t", dataset_fingerprint="abc", teacher_hash="h", backbone="minilm"
    )
    r = CliRunner().invoke(app, ["features", "info", str(tmp_path), "--json", "--verify"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["rows"] == 30 and s["shards"] == 3 and s["backbone"] == "minilm" and s["verified"]
    assert s["precision"] == "not recorded"  # saved from memory: no teacher ran
    (tmp_path / "shard-00001.hidden.npy").write_bytes(b"x")
    r = CliRunner().invoke(app, ["features", "info", str(tmp_path), "--verify"])
    assert r.exit_code == 2 and "shard-00001.hidden.npy" in r.stderr and "Traceback" not in r.output
