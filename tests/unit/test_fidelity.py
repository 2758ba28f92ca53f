"""Fidelity 2/2 controls: paired significance, the kd_shuffled control, both group definitions,
the student's prior-initialised output, Findings that say 'inconclusive', allocator-based memory."""

import numpy as np
import pandas as pd
import pytest
import torch

from leader.metrics import bootstrap_metrics, group_index, sample_metrics
from leader.significance import paired_test


def test_paired_test_detects_a_clear_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    n = 300
    clusters = np.repeat(np.arange(100), 3)
    b = rng.uniform(0.3, 0.7, (3, n))
    a = b + 0.05 + rng.normal(0, 0.02, (3, n))
    clear = paired_test(a, b, clusters)
    assert clear.diff == pytest.approx(0.05, abs=0.01) and clear.p_bootstrap < 0.05 and clear.p_wilcoxon < 0.05
    assert clear.ci_low > 0 and clear.n_patients == 100
    same = paired_test(b, b.copy(), clusters)
    assert same.diff == 0 and same.p_bootstrap > 0.5 and same.p_wilcoxon > 0.5
    # pure noise around zero: not significant
    noise = paired_test(b + rng.normal(0, 0.05, (3, n)), b, clusters)
    assert noise.p_bootstrap > 0.05


def test_kd_shuffled_features_are_a_permutation_of_the_real_ones():
    from leader.features.types import TeacherFeatures
    from leader.student.kd import kd_targets

    ids = np.arange(50, dtype=np.int64) * 7
    hidden = np.random.default_rng(1).normal(size=(50, 6)).astype(np.float16)
    probs = np.random.default_rng(2).uniform(size=(50, 4)).astype(np.float32)
    f = TeacherFeatures(ids, hidden, probs)
    h, p = kd_targets(f, ids, shuffle=False, seed=0)
    hs, ps = kd_targets(f, ids, shuffle=True, seed=0)
    np.testing.assert_array_equal(h, hidden)
    # the same rows ...
    assert sorted(map(bytes, np.asarray(hs))) == sorted(map(bytes, np.asarray(h)))
    # ... given to other owners, with hidden and probs moved together
    moved = (np.asarray(hs) != np.asarray(h)).any(1)
    assert moved.mean() > 0.9
    rows = {bytes(np.asarray(h)[i]): i for i in range(50)}
    for i in range(50):
        np.testing.assert_array_equal(ps[i], p[rows[bytes(np.asarray(hs)[i])]])
    h2, _ = kd_targets(f, ids, shuffle=True, seed=0)
    np.testing.assert_array_equal(h2, hs)  # seeded


def test_standardized_kd_targets_are_z_scored_and_shuffling_keeps_their_statistics():
    from leader.features.types import TeacherFeatures
    from leader.student.kd import kd_targets, standardize_rows

    rng = np.random.default_rng(3)
    ids = np.arange(80, dtype=np.int64)
    hidden = (rng.normal(0.2, 0.05, size=(80, 5)) * np.array([1, 2, 3, 4, 0])).astype(np.float32)  # last: constant
    f = TeacherFeatures(ids, hidden, rng.uniform(size=(80, 3)).astype(np.float32))
    z = standardize_rows(np.asarray(kd_targets(f, ids, shuffle=False, seed=0)[0]))
    np.testing.assert_allclose(z[:, :4].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :4].std(0), 1, atol=1e-3)
    assert np.all(z[:, 4] == 0)  # a constant dimension carries nothing: no division blow-up
    zs = standardize_rows(np.asarray(kd_targets(f, ids, shuffle=True, seed=0)[0]))
    np.testing.assert_allclose(np.sort(zs, 0), np.sort(z, 0), atol=1e-5)  # the control keeps the same values
    assert (zs != z).any(1).mean() > 0.9


def test_kd_target_option_reaches_the_loss_config():
    from leader.config.student import StudentTrainConfig

    assert StudentTrainConfig().loss.kd_target == "standardized"
    assert StudentTrainConfig(kd_target="raw").loss.kd_target == "raw"  # flat, as study files (Eq. 9)
    with pytest.raises(ValueError):
        StudentTrainConfig(kd_target="scaled")


def test_both_group_definitions_count_what_they_should():
    from helpers import random_dataset

    ds = random_dataset(n_patients=40, seed=3)
    s = ds.samples()
    single_patients = set(ds.patients.loc[ds.patients.n_visits == 1, "patient_id"])
    want_single = s["patient_id"].isin(single_patients).sum()
    want_no_history = (s["visit_index"] == 0).sum()  # every patient's first visit
    assert want_no_history == len(ds.patients) and want_no_history > want_single > 0
    idx = group_index(s["group"].to_numpy(), s["history"].to_numpy())
    assert len(idx["single"]) == want_single and len(idx["no_history"]) == want_no_history
    assert len(idx["multi"]) + len(idx["single"]) == len(s) == len(idx["history"]) + len(idx["no_history"])
    # a single-visit patient's visit is always a no-history sample, not the other way round
    assert set(idx["single"]) < set(idx["no_history"])
    y = np.eye(4)[np.arange(len(s)) % 4]
    boot = bootstrap_metrics(y, y, s["group"].to_numpy(), history=s["history"].to_numpy(), rounds=2)
    assert set(boot["group"]) == {"overall", "multi", "single", "history", "no_history"}


def test_threshold_is_strict_as_in_the_authors_code():
    y = np.array([[1, 0, 1]])
    p = np.array([[0.3, 0.3, 0.9]])
    m = sample_metrics(y, p, threshold=0.3)
    assert m["jaccard"][0] == pytest.approx(0.5)  # only the 0.9 drug is predicted


def test_student_output_starts_at_the_drug_prior():
    from helpers import random_dataset

    from leader.config.student import StudentConfig
    from leader.student.model import LeaderStudent, encode_dataset

    ds = random_dataset(n_patients=30, seed=0)
    cfg = StudentConfig(d_model=16, d_embed=16, n_heads=2)
    m = LeaderStudent.for_dataset(ds, cfg)
    enc = encode_dataset(ds, cfg)
    tr = enc.indices("train")
    freq = enc.labels[tr].mean(0)
    m.init_output_bias(freq)
    f = np.clip(freq, 1e-4, 1 - 1e-4)
    np.testing.assert_allclose(m.out.bias.detach().numpy(), np.log(f / (1 - f)), rtol=1e-5)
    with torch.no_grad():
        torch.nn.init.zeros_(m.out.weight)
        p = torch.sigmoid(m(enc.batch(tr[:5]))["logits"]).numpy()
    np.testing.assert_allclose(p, np.tile(f, (5, 1)), rtol=1e-4)


def _metrics_rows(student_prauc: float, baseline_prauc: float) -> pd.DataFrame:
    rows = []
    for model, stage, v in (("LEADER(S)", "ablation", student_prauc), ("Prior", "baseline", baseline_prauc)):
        rows.append(
            {
                "dataset": "syn",
                "stage": stage,
                "model": model,
                "variant": "full",
                "param": "",
                "param_value": np.nan,
                "group": "overall",
                "metric": "prauc",
                "mean": v,
                "std": 0.0,
            }
        )
    return pd.DataFrame(rows)


def _paired_row(comparison: str, diff: float, p: float, group: str = "overall") -> dict:
    return {
        "dataset": "syn",
        "backbone": "minilm",
        "comparison": comparison,
        "a": "",
        "b": "",
        "group": group,
        "metric": "prauc",
        "diff": diff,
        "ci_low": diff - 0.01,
        "ci_high": diff + 0.01,
        "p_bootstrap": p,
        "p_wilcoxon": p,
        "n_samples": 100,
        "n_patients": 50,
        "seeds_a": 3,
        "seeds_b": 3,
    }


def test_findings_say_inconclusive_when_a_claim_is_not_shown():
    from leader.report.findings import findings, findings_markdown

    metrics = _metrics_rows(0.60, 0.55)
    paired = pd.DataFrame(
        [
            _paired_row("full_vs_no_kd", -0.004, 0.40),
            _paired_row("student_vs_Prior", 0.05, 0.001),
            _paired_row("full_vs_kd_shuffled", 0.02, 0.01),
        ]
    )
    out = {f.claim: f for f in findings(metrics, paired, pd.DataFrame())}
    assert out["distillation helps: LEADER(S) > LEADER(S) w/o KD"].status == "inconclusive"
    assert out["LEADER(S) beats every baseline"].status == "held"
    assert out["the gain is transfer, not regularisation: LEADER(S) > KD to shuffled teacher states"].status == "held"
    assert out["feature-level KD > output-level KD"].status == "cannot test"
    assert out["PRAUC rises then falls along alpha (an interior optimum)"].status == "cannot test"
    md = findings_markdown(list(out.values()))
    assert "| inconclusive |" in md and "-0.0040" in md
    # a positive but non-significant difference is not a finding either
    weak = pd.DataFrame([_paired_row("full_vs_no_kd", 0.01, 0.2)])
    f = {x.claim: x for x in findings(metrics, weak, pd.DataFrame())}
    assert f["distillation helps: LEADER(S) > LEADER(S) w/o KD"].status == "inconclusive"


def test_memory_is_measured_from_the_allocator():
    from leader.efficiency import model_bytes, peak_activation_bytes

    m = torch.nn.Sequential(torch.nn.Linear(64, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 8))
    x = torch.randn(32, 64)
    assert model_bytes(m) == 4 * (64 * 1024 + 1024 + 1024 * 8 + 8)
    peak = peak_activation_bytes(lambda: m(x))
    assert 32 * 1024 * 4 <= peak <= 4 * 32 * 1024 * 4  # the hidden activations, not the process
