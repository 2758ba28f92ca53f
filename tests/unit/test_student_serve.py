"""The serving layout of the student (leader.student.serve) changes no output: the branch-free
path equals the eager one, and padding the visit axis is masked everywhere. The compiled
package itself is checked in tests/integration/test_student_serve_package.py (it takes minutes to build)."""

import numpy as np
import torch

from leader.config.student import StudentConfig
from leader.student.model import LeaderStudent, encode_dataset
from leader.student.serve import SERVE_KEYS, serving_inputs

CFG = StudentConfig(d_embed=16, d_model=16, n_heads=2, dropout=0.0, max_visits=4)


def _setup(ds, cfg=CFG):
    torch.manual_seed(0)
    return LeaderStudent.for_dataset(ds, cfg).eval(), encode_dataset(ds, cfg)


def test_branch_free_path_equals_the_eager_path(random_ds):
    m, enc = _setup(random_ds)
    idx = np.arange(len(enc.sample_ids))
    with torch.no_grad():
        for chunk in (idx[:1], idx[:7], idx):  # first visits have empty med sets: both paths skip them
            b = enc.batch(chunk, with_target=True)
            eager, free = m(b), m(b, branch_free=True)
            for k in ("logits", "z", "align_m"):
                torch.testing.assert_close(free[k], eager[k], atol=1e-5, rtol=1e-5)


def test_padded_visits_and_codes_change_no_output(random_ds):
    m, enc = _setup(random_ds)
    b = enc.batch(np.arange(12))
    p = serving_inputs(b, min_size=CFG.max_visits + 5)
    assert set(p) == set(SERVE_KEYS) and p["visit_mask"].shape[1] == CFG.max_visits + 5
    assert p["diag"].shape[1:] == (CFG.max_visits + 5, max(CFG.max_visits + 5, b["diag"].shape[2]))
    with torch.no_grad():
        torch.testing.assert_close(m(p, branch_free=True)["logits"], m(b)["logits"], atol=1e-5, rtol=1e-5)


def test_padding_a_visit_that_is_real_would_change_the_output(random_ds):
    """The check above can fail: unmasking a padded visit moves the logits."""
    m, enc = _setup(random_ds)
    short = np.flatnonzero(enc.visit_mask.sum(1) < CFG.max_visits)[:4]
    b = enc.batch(short)
    p = serving_inputs(b, min_size=b["visit_mask"].shape[1] + 1)
    p["visit_mask"] = p["visit_mask"].clone()
    p["visit_mask"][:, -1] = True
    with torch.no_grad():
        assert (m(p, branch_free=True)["logits"] - m(b)["logits"]).abs().max() > 1e-4


def test_efficiency_table_shows_the_compiled_student_only_when_measured():
    import pandas as pd

    from leader.report.tables_run import efficiency_table

    rows = [
        dict(dataset="d", backbone="b", model=m, batch_size=1, latency_ms_per_patient=ms, peak_mem_mb=1.0, device="cpu")
        for m, ms in (("LEADER(T)", 40.0), ("LEADER(S)", 2.0), ("LEADER(S) compiled", 0.5))
    ]
    with_compiled = efficiency_table(pd.DataFrame(rows))
    assert with_compiled.columns[-1] == "LEADER(S) compiled latency (ms/patient)"
    assert with_compiled.cells[0][-1].text == "0.5"
    long = with_compiled.long.set_index("metric")["mean"]
    assert long["latency_student_compiled_ms"] == 0.5 and long["speedup"] == 20.0
    without = efficiency_table(pd.DataFrame(rows[:2]))
    assert "LEADER(S) compiled latency (ms/patient)" not in without.columns
    assert len(without.cells[0]) == len(without.columns)
