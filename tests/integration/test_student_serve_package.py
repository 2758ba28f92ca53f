"""The compiled student (torch.export + AOTInductor) returns the eager student's logits, for any
batch size and history length, from a package built once."""

import numpy as np
import pytest
import torch

from leader.config.student import StudentConfig
from leader.student.model import LeaderStudent, encode_dataset
from leader.student.serve import ServedStudent, compile_student

pytestmark = pytest.mark.slow
CFG = StudentConfig(d_embed=16, d_model=16, n_heads=2, dropout=0.0, max_visits=4)


def test_compiled_student_equals_eager(random_ds, tmp_path, monkeypatch):
    torch.manual_seed(0)
    m = LeaderStudent.for_dataset(random_ds, CFG).eval()
    enc = encode_dataset(random_ds, CFG)
    idx = np.arange(len(enc.sample_ids))
    package = compile_student(m, enc.batch(idx[:8]), tmp_path / "student.pt2")
    served = ServedStudent(package)
    batches = [enc.batch(idx[i : i + 1]) for i in idx] + [enc.batch(idx), enc.batch(np.resize(idx, 300))]
    assert len({b["diag"].shape[1:] for b in batches}) > 3  # several history lengths and set widths
    with torch.no_grad():
        for b in batches:
            torch.testing.assert_close(served(b), m(b)["logits"], atol=1e-5, rtol=1e-5)

    # the efficiency stage's rows from the same package (its compile step replaced by this one's)
    import shutil

    from leader.student import serve
    from leader.study.stages.efficiency import _compiled_rows

    monkeypatch.setattr(serve, "compile_student", lambda model, ex, path: shutil.copy(package, path))
    rows = _compiled_rows(m, enc, idx, (1, 4))
    assert [(r["model"], r["batch_size"]) for r in rows] == [("LEADER(S) compiled", 1), ("LEADER(S) compiled", 4)]
    assert all(r["latency_ms_per_patient"] > 0 and r["peak_mem_mb"] > 0 for r in rows)
