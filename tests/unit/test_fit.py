"""The one training loop (leader.fit): its keep-best / early-stopping rule, and the student, a tuned
baseline and the teacher's probe each training through it with the numbers they had before it
existed (issue #22: the refactor changed where the loop lives, not what it computes)."""

import numpy as np
import pytest
import torch
from helpers import random_dataset

import leader.baselines.train as tb
import leader.student.train as ts
import leader.teacher.probe as tp
from leader import fit as F
from leader.config.student import StudentTrainConfig
from leader.features.types import TeacherFeatures

# Golden numbers: produced by the three loops as they were before leader.fit (commit 3f6d86b:
# leader/train/student.py, leader/train/baselines.py `_fit`, leader/train/probe.py `fit_probe`),
# with exactly the set-ups below, on CPU with one torch thread; (best val PRAUC, best epoch,
# last epoch's train loss, epochs run). Whole histories, final weights and the baseline's test
# probabilities were also compared equal bit for bit at the refactor. The student's row was
# re-recorded when its training arithmetic changed on purpose (leader.student.layers: other dropout
# draws, fused Adam; was (0.21778759724163876, 1, 1.161650208402271, 4); then one draw for a layer's
# dropouts, batched encoders, the written-out softmax; was (0.2362688557502792, 3, 1.139371610870046,
# 6)): the loop is the same.
GOLDEN = {
    "student": (0.2285733316954321, 3, 1.1450880312722576, 6),
    "baseline": (0.2279967468273707, 1, 0.398558165908845, 4),
    "probe": (0.8937037037037038, 6, 0.35766621828079226, 7),
}


@pytest.fixture(scope="module")
def ds():
    torch.set_num_threads(1)
    return random_dataset(n_patients=60, seed=1)


@pytest.fixture()
def calls(monkeypatch):
    """Records every trainer's call of leader.fit.fit (each module imported it by name)."""
    seen = []

    def spy(*a, **k):
        seen.append(k)
        return F.fit(*a, **k)

    for mod in (ts, tb, tp):
        monkeypatch.setattr(mod, "fit", spy)
    return seen


def _check(got, name):
    want = GOLDEN[name]
    assert got[1] == want[1] and got[3] == want[3], (name, got)
    assert got[0] == pytest.approx(want[0], abs=1e-7) and got[2] == pytest.approx(want[2], abs=1e-7), (name, got)


def test_student_trains_through_fit_unchanged(ds, calls):
    ids = np.sort(ds.samples("train")["sample_id"].to_numpy(np.int64))
    rng = np.random.default_rng(3)
    feats = TeacherFeatures(
        ids,
        rng.normal(size=(len(ids), 8)).astype(np.float16),
        rng.uniform(size=(len(ids), ds.n_meds)).astype(np.float32),
    )
    cfg = StudentTrainConfig(
        epochs=6,
        patience=2,
        batch_size=16,
        lr=3e-3,
        seed=1,
        student={"d_embed": 16, "d_model": 16, "n_heads": 2},
        loss={"kd": "feature", "alpha": 0.5, "beta": 0.1},
    )
    rows = []
    r = ts.train_student(ds, cfg, features=feats, report=rows.append)
    assert len(calls) == 1 and calls[0]["patience"] == 2
    assert rows == r.history and list(r.history[0])[-2:] == ["samples_per_s", "best_val_prauc"]
    _check((r.best_val["val_prauc"], r.best_epoch, r.history[-1]["train_loss"], len(r.history)), "student")


def test_tuned_baseline_trains_through_fit_unchanged(ds, calls):
    params = {"emb_dim": 16, "epochs": 6, "patience": 2, "batch_size": 16, "lr": 3e-3}
    rows = []
    r = tb.train_baseline(ds, "retain", params, seed=2, report=rows.append)
    assert len(calls) == 1 and calls[0]["best"].epoch == 0  # a baseline that never improves keeps its init
    keys = ["epoch", "train_loss", "val_prauc", "val_jaccard", "val_f1", "best_val_prauc"]
    assert rows == r.history and list(r.history[0]) == keys
    _check((r.val_prauc, r.best_epoch, r.history[-1]["train_loss"], len(r.history)), "baseline")


class _Head(torch.nn.Module):
    """What fit_probe reads of a teacher: `head` and `head_logits`."""

    def __init__(self, d: int, m: int):
        super().__init__()
        self.head = torch.nn.Linear(d, m)

    def head_logits(self, h):
        return self.head(h)


def test_probe_trains_through_fit_unchanged(calls):
    torch.manual_seed(0)
    m = _Head(8, 5)
    rng = np.random.default_rng(4)
    H = rng.normal(size=(90, 8)).astype(np.float32)
    Y = (H @ rng.normal(size=(8, 5)) + rng.normal(size=(90, 5)) > 0.5).astype(np.float32)
    r = tp.fit_probe(m, H[:60], Y[:60], H[60:], Y[60:], epochs=7, lr=3e-2, batch_size=16, seed=5)
    assert len(calls) == 1 and calls[0].get("patience") is None  # the probe runs every epoch
    assert list(r.history[0]) == ["epoch", "train_loss", "val_prauc"]
    _check((r.best_val_prauc, r.best_epoch, r.history[-1]["train_loss"], len(r.history)), "probe")
    assert all(torch.equal(v, m.head.state_dict()[k]) for k, v in r.head_state.items())  # the kept head is loaded


def test_keep_best_is_strict_and_patience_stops():
    scores = [0.5, 0.5, 0.7, 0.6, 0.7, 0.1]
    state = {"w": 0}
    loaded = []

    def run_epoch(epoch):
        state["w"] = epoch
        return scores[epoch], {"epoch": epoch}

    seen = []
    r = F.fit(6, run_epoch, lambda: dict(state), loaded.append, patience=2, best_key="best", report=seen.append)
    # a tie is not an improvement: epoch 4's 0.7 neither replaces epoch 2 nor resets patience
    assert (r.best, r.best_epoch, len(r.history)) == (0.7, 2, 5)
    assert loaded == [{"w": 2}] and r.state == {"w": 2}
    assert [h["best"] for h in r.history] == [0.5, 0.5, 0.7, 0.7, 0.7] and seen == r.history


def test_a_start_that_is_never_beaten_is_kept():
    r = F.fit(3, lambda e: (0.1, {"epoch": e}), lambda: "trained", lambda s: None, best=F.Best(0.9, -1, "initial"))
    assert (r.best, r.best_epoch, r.state, len(r.history)) == (0.9, -1, "initial", 3)
