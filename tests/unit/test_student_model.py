import json
import shutil

import numpy as np
import pytest
import torch

from leader.config.student import StudentConfig, StudentTrainConfig
from leader.errors import CheckpointError, ConfigError
from leader.features.types import TeacherFeatures
from leader.student.model import LeaderStudent, encode_dataset
from leader.student.train import (
    evaluate_student,
    load_student,
    measure_student_latency,
    predict_proba,
    train_student,
)

CFG = StudentConfig(d_embed=16, d_model=16, n_heads=2, dropout=0.0, max_visits=3)


def _model(ds, cfg=CFG):
    torch.manual_seed(0)
    return LeaderStudent.for_dataset(ds, cfg).eval()


def test_encoding_shapes_recent_visits_and_no_label_leak(random_ds):
    enc = encode_dataset(random_ds, CFG)
    n = len(random_ds.visits)
    assert enc.diag.shape[:2] == (n, 3) and enc.visit_mask.shape == (n, 3)
    assert enc.profile.shape == (n, len(random_ds.profile_vocabs)) and enc.labels.shape == (n, random_ds.n_meds)
    s = random_ds.samples().set_index("sample_id")
    vi = s.loc[enc.sample_ids, "visit_index"].to_numpy()
    np.testing.assert_array_equal(enc.visit_mask.sum(1), np.minimum(vi + 1, 3))
    last = enc.visit_mask.sum(1) - 1
    r = np.arange(n)
    assert (enc.med[r, last] == 0).all()  # current meds are the label, never the input
    # the current visit's diagnoses sit in the last real slot
    i = int(np.flatnonzero(vi >= 3)[0])
    _, cur = random_ds.history(int(enc.sample_ids[i]))
    assert sorted(enc.diag[i, 2][enc.diag[i, 2] > 0] - 1) == sorted(cur["diag"])
    np.testing.assert_array_equal(enc.labels, random_ds.labels(enc.sample_ids))


def test_forward_shapes_and_single_visit(random_ds):
    enc = encode_dataset(random_ds, CFG)
    m = _model(random_ds)
    single = np.flatnonzero(enc.visit_mask.sum(1) == 1)[:4]
    out = m(enc.batch(single, with_target=True))
    assert out["logits"].shape == (len(single), random_ds.n_meds)
    assert out["z"].shape == (len(single), 16) and out["align_p"].shape == out["align_m"].shape == (len(single), 16)
    assert torch.isfinite(out["logits"]).all()


def test_padding_does_not_change_output(random_ds):
    enc = encode_dataset(random_ds, CFG)
    m = _model(random_ds)
    b = enc.batch(np.arange(8), with_target=True)
    ref = m(b)
    padded = {k: v.clone() for k, v in b.items()}
    for k in ("diag", "proc", "med"):  # one more padded code column
        padded[k] = torch.cat([v := padded[k], torch.zeros_like(v[..., :1])], -1)
    padded["target_med"] = torch.cat([b["target_med"], torch.zeros_like(b["target_med"][:, :2])], -1)
    # garbage in padded visit slots must be ignored
    vm = padded["visit_mask"]
    padded["diag"][..., 0] = torch.where(vm, padded["diag"][..., 0], torch.ones_like(padded["diag"][..., 0]))
    out = m(padded)
    for k in ("logits", "z", "align_m"):
        torch.testing.assert_close(out[k], ref[k], atol=1e-5, rtol=1e-5)
    # and a real change does change it
    changed = {k: v.clone() for k, v in b.items()}
    changed["diag"][0, 0, 0] = (changed["diag"][0, 0, 0] % random_ds.vocabs["diag"].__len__()) + 1
    assert not torch.allclose(m(changed)["logits"][0], ref["logits"][0])


@pytest.mark.parametrize(
    "pooling",
    [
        {"set_pooling": "mean", "visit_pooling": "mean"},
        {"set_pooling": "sum", "visit_pooling": "current"},
        {"wide": True},
    ],
)
def test_prediction_does_not_depend_on_the_batch(random_ds, pooling):
    """Batches are trimmed to their longest history and code set: a single-visit sample must get
    the same output alone as beside a patient with a full history (the profile pseudo-record's
    position and the current visit's must not move with the batch)."""
    cfg = CFG.model_copy(update=pooling)
    enc = encode_dataset(random_ds, cfg)
    m = _model(random_ds, cfg)
    for e in getattr(m, "wide", {}).values():  # the linear path starts at zero: make it count
        torch.nn.init.normal_(e.weight)
    single = int(np.flatnonzero(enc.visit_mask.sum(1) == 1)[0])
    full = int(np.flatnonzero(enc.visit_mask.sum(1) == 3)[0])
    alone = m(enc.batch(np.array([single])))
    assert alone["logits"].shape == (1, random_ds.n_meds)
    both = m(enc.batch(np.array([single, full])))
    torch.testing.assert_close(both["logits"][:1], alone["logits"], atol=1e-5, rtol=1e-5)
    assert enc.batch(np.array([single]))["visit_mask"].shape[1] == 1  # trimmed


def test_split_visit_encoder(random_ds):
    m = _model(random_ds, CFG.model_copy(update={"shared_visit_encoder": False}))
    assert len(m.visit_enc) == 3
    assert m(encode_dataset(random_ds, CFG).batch(np.arange(3)))["logits"].shape == (3, random_ds.n_meds)


def _tcfg(**kw):
    return StudentTrainConfig(student=CFG, epochs=2, batch_size=32, **kw)


def test_kd_without_features_is_config_error(random_ds):
    with pytest.raises(ConfigError, match="features"):
        train_student(random_ds, _tcfg(kd="feature"))


def test_train_deterministic_reports_and_checkpoint(random_ds, tmp_path):
    seen = []
    a = train_student(random_ds, _tcfg(kd="none"), report=seen.append, checkpoint_dir=tmp_path / "ck")
    b = train_student(random_ds, _tcfg(kd="none"))
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert len(seen) == len(a.history) == 2
    assert {"epoch", "train_loss", "val_prauc", "val_jaccard", "val_f1"} <= set(seen[0])
    ck = load_student(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "meta.json").read_text())
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "ck", old)
    meta.pop("student_format")
    (old / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="student_format"):  # an older student: refused, not misread
        load_student(old)
    ids, p1 = predict_proba(a.model, random_ds, "test")
    _, p2 = predict_proba(ck.model, random_ds, "test")
    np.testing.assert_allclose(p1, p2, atol=1e-6)
    df = evaluate_student(ck.model, random_ds, "test", rounds=3)
    assert set(df["group"]) <= {"overall", "single", "multi"} and df["value"].between(0, 1).all()
    lat = measure_student_latency(ck.model, random_ds, batch_sizes=(1, 8))
    assert lat["latency_ms_per_patient_b1"] > 0 and lat["latency_ms_per_patient_b8"] > 0


@pytest.mark.parametrize("kd", ["feature", "output"])
def test_train_with_teacher_features_aligned_by_id(random_ds, kd):
    s = random_ds.samples()
    rng = np.random.default_rng(0)
    ids = s["sample_id"].to_numpy()[rng.permutation(len(s))]  # shuffled: alignment must be by id
    feats = TeacherFeatures(
        ids,
        rng.standard_normal((len(ids), 24)).astype(np.float16),
        rng.random((len(ids), random_ds.n_meds)).astype(np.float32),
    )
    r = train_student(random_ds, _tcfg(kd=kd, alpha=1.0), features=feats)
    assert "train_kd" in r.history[0] and np.isfinite(r.history[-1]["train_loss"])


def test_loss_fields_are_named_flat_and_nested_once():
    from leader.config.flat import student_config

    cfg = StudentTrainConfig(kd="output", alpha=0.3, loss={"beta": 0.2})
    assert (cfg.loss.kd, cfg.loss.alpha, cfg.loss.beta) == ("output", 0.3, 0.2)
    again = StudentTrainConfig.model_validate_json(cfg.model_dump_json())  # checkpoint config.json round trip
    assert again == cfg and "alpha" not in again.model_dump()  # stored once, under loss
    routed = student_config({"alpha": 0.7, "tau": 0.05, "d_model": 48, "lr": 1e-3})
    assert routed.loss.alpha == 0.7 and routed.loss.tau == 0.05 and routed.student.d_model == 48
    with pytest.raises(Exception, match="alpha"):
        student_config({"alpha": -1})
