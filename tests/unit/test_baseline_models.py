"""Baselines (trivial + Table III): registry, shapes, padding, history refusal, learning a
planted rule better than the drug-frequency prior, and the output-bias initialisation."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import random_dataset

from leader.baselines import BASELINES, TRAIN_DEFAULTS, UNAVAILABLE, get_baseline
from leader.baselines.gamenet import ehr_graph
from leader.baselines.train import train_baseline
from leader.baselines.trivial import frequency_baseline, logreg_features, train_prior
from leader.config.student import StudentConfig
from leader.data.assemble import assemble
from leader.errors import ConfigError
from leader.metrics import mean_metrics
from leader.student.model import encode_dataset

torch.set_num_threads(1)
TORCH = [n for n, i in BASELINES.items() if i.kind == "torch"]
SMALL = {"emb_dim": 16, "epochs": 1}
ENC = StudentConfig(max_visits=4, max_codes=16)


@pytest.fixture(scope="module")
def rand_ds():
    return random_dataset(n_patients=60, seed=1)


@pytest.fixture(scope="module")
def planted_ds():
    """Drug j is prescribed iff diagnosis j is present (8 of each); procedures are noise."""
    rng = np.random.default_rng(0)
    rows, vid = [], 1000
    for p in range(160):
        for k in range(int(rng.choice([1, 2, 3, 3]))):
            vid += 1
            d = rng.choice(8, int(rng.integers(1, 4)), replace=False)
            rows.append(
                {
                    "patient_id": f"P{p:04d}",
                    "visit_id": vid,
                    "admittime": pd.Timestamp("2100-01-01") + pd.Timedelta(days=30 * k),
                    "diag": [f"D{x}" for x in d],
                    "proc": [f"R{int(rng.integers(3))}"],
                    "med": [f"M{x}" for x in d],
                    "sex": "F",
                }
            )
    names = {
        "diag": {f"D{i}": f"d{i}" for i in range(8)},
        "proc": {f"R{i}": f"r{i}" for i in range(3)},
        "med": {f"M{i}": f"m{i}" for i in range(8)},
    }
    return assemble("planted", pd.DataFrame(rows), names, ["sex"], split_ratios=(0.6, 0.2, 0.2), seed=0)


def _model(ds, name, **over):
    info = BASELINES[name]
    enc = encode_dataset(ds, ENC)
    mp = {k: info.defaults[k] for k in info.model_keys} | {"emb_dim": 16} | over
    torch.manual_seed(0)
    m = info.impl.build(ds, enc, enc.indices("train"), mp, None).eval()
    return m, enc


def _batch(enc, m, ds, rows):
    b = enc.batch(rows)
    b["sample_id"] = torch.from_numpy(enc.sample_ids[rows])
    for k, v in m.extra_inputs(ds, enc, enc.indices("train")).items():
        b[k] = torch.from_numpy(v[rows])
    return b


def _prauc_vs_prior(ds, r):
    y = ds.labels(r.sample_ids)
    return mean_metrics(y, r.probs)["prauc"], mean_metrics(y, np.tile(train_prior(ds), (len(y), 1)))["prauc"]


# ----------------------------------------------------------------------------- registry
def test_registry_fields_and_unavailable():
    assert {"prior", "cooccurrence", "logreg", "retain", "gamenet", "micron", "cognet"} <= set(BASELINES)
    for name, info in BASELINES.items():
        assert info.name == name and info.citation and set(info.search_space) <= set(info.defaults)
    assert not BASELINES["prior"].learned and not BASELINES["cooccurrence"].learned and BASELINES["logreg"].learned
    assert BASELINES["micron"].needs_history and BASELINES["cognet"].needs_history
    assert not BASELINES["retain"].needs_history and not BASELINES["gamenet"].needs_history
    assert "safedrug" in UNAVAILABLE and "safedrug" not in BASELINES
    with pytest.raises(ConfigError, match="molecul"):
        get_baseline("safedrug")
    with pytest.raises(ConfigError, match="unknown baseline"):
        get_baseline("leap")


def test_the_registry_is_the_only_list():
    """Names, labels and the study's lists all come from the registry entries (a new tuned
    baseline needs its entry only), and the entry's history flag is its model's."""
    from leader.baselines import BASELINE_LABELS, TRIVIAL_BASELINES, TUNED_BASELINES

    assert TRIVIAL_BASELINES == ("prior", "cooccurrence", "logreg")
    assert TUNED_BASELINES == ("retain", "gamenet", "micron", "cognet", "logreg")
    assert BASELINE_LABELS == {n: i.label for n, i in BASELINES.items()} and BASELINE_LABELS["gamenet"] == "GAMENet"
    for info in BASELINES.values():
        assert info.tunable == bool(info.search_space)
        if info.kind == "torch":
            assert info.impl.needs_history == info.needs_history and info.impl.name == info.name
            assert info.model_keys == set(info.defaults) - set(TRAIN_DEFAULTS)
        else:
            assert callable(info.impl) and info.model_keys == set()


def test_the_registry_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, leader.baselines; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_unknown_param_is_config_error(rand_ds):
    with pytest.raises(ConfigError, match="lr_max"):
        train_baseline(rand_ds, "retain", {"lr_max": 1.0})


# ----------------------------------------------------------------------------- shapes / history
@pytest.mark.parametrize("name", list(BASELINES))
def test_result_shapes_history_and_report(rand_ds, name):
    rows = []
    r = train_baseline(
        rand_ds,
        name,
        {k: v for k, v in (SMALL | {"epochs": 2}).items() if k in BASELINES[name].defaults},
        report=rows.append,
    )
    test = rand_ds.samples("test")
    assert r.probs.dtype == np.float32 and r.probs.shape == (len(r.sample_ids), rand_ds.n_meds)
    assert np.isfinite(r.probs).all() and (r.probs >= 0).all() and (r.probs <= 1).all()
    assert rows == r.history and all({"epoch", "train_loss", "val_prauc"} <= set(h) for h in rows)
    assert r.val_prauc == max(h["val_prauc"] for h in rows) and r.n_params > 0 and r.train_s >= 0
    vi = test.set_index("sample_id").loc[r.sample_ids, "visit_index"].to_numpy()
    if BASELINES[name].needs_history:  # only samples with an earlier visit, and the note says so
        assert (vi >= 1).all() and len(r.sample_ids) == (test["visit_index"] >= 1).sum()
        assert "multi-visit only" in r.eval_mask_note
    else:
        assert len(r.sample_ids) == len(test)


@pytest.mark.parametrize("name", ["micron", "cognet"])
def test_multi_visit_only_refuses_sample_without_history(rand_ds, name):
    m, enc = _model(rand_ds, name)
    rows = np.r_[np.flatnonzero(enc.visit_mask.sum(1) >= 2)[:3], np.flatnonzero(enc.visit_mask.sum(1) == 1)[:1]]
    sid = int(enc.sample_ids[rows[-1]])
    with pytest.raises(ValueError, match=rf"{name}.*earlier visit.*{sid}"):
        m(_batch(enc, m, rand_ds, rows))
    assert m(_batch(enc, m, rand_ds, rows[:3]))["logits"].shape == (3, rand_ds.n_meds)


@pytest.mark.parametrize("name", TORCH)
def test_padding_does_not_change_output(rand_ds, name):
    m, enc = _model(rand_ds, name)
    ok = np.flatnonzero(enc.visit_mask.sum(1) >= (2 if m.needs_history else 1))
    rows = np.r_[ok[enc.visit_mask[ok].sum(1) == 1][:2], ok[enc.visit_mask[ok].sum(1) >= 2][:4]]
    b = _batch(enc, m, rand_ds, rows)
    with torch.no_grad():
        ref = m(b)["logits"]
        padded = dict(b)
        for k in ("diag", "proc", "med", "nb_diag", "nb_proc", "nb_med"):
            if k in b:  # 3 more empty code slots everywhere
                padded[k] = torch.nn.functional.pad(b[k], (0, 3))
        for k in ("diag", "proc", "med"):  # 2 more empty visits
            padded[k] = torch.nn.functional.pad(padded[k], (0, 0, 0, 2))
        padded["visit_mask"] = torch.nn.functional.pad(b["visit_mask"], (0, 2))
        out = m(padded)["logits"]
    assert ref.shape == (len(rows), rand_ds.n_meds)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- learning
@pytest.mark.parametrize("name", TORCH)
def test_learned_model_beats_prior_on_planted_rule(planted_ds, name):
    r = train_baseline(
        planted_ds, name, {"emb_dim": 16, "lr": 1e-2, "epochs": 12, "batch_size": 32, "patience": 12, "dropout": 0.0}
    )
    got, prior = _prauc_vs_prior(planted_ds, r)
    assert got > prior + 0.2, (name, got, prior)


def test_trivial_baselines_on_planted_rule(planted_ds):
    pr = train_baseline(planted_ds, "prior", {})
    np.testing.assert_allclose(pr.probs, np.tile(train_prior(planted_ds), (len(pr.sample_ids), 1)), rtol=1e-6)
    co = train_baseline(planted_ds, "cooccurrence", {})
    lr = train_baseline(planted_ds, "logreg", {"C": 10.0})
    got_co, prior = _prauc_vs_prior(planted_ds, co)
    got_lr, _ = _prauc_vs_prior(planted_ds, lr)
    assert _prauc_vs_prior(planted_ds, pr)[0] == pytest.approx(prior)
    assert got_co > prior + 0.1 and got_lr > 0.95 > prior + 0.2, (got_co, got_lr, prior)


def test_cooccurrence_matches_frequency_baseline(rand_ds):
    r = train_baseline(rand_ds, "cooccurrence", {})
    ids, probs = frequency_baseline(rand_ds, "test")
    np.testing.assert_array_equal(r.sample_ids, ids)
    np.testing.assert_allclose(r.probs, probs, rtol=1e-6)


def test_logreg_features_use_last_earlier_visit(rand_ds):
    s = rand_ds.samples()
    ids = s["sample_id"].to_numpy()
    X = logreg_features(rand_ds, ids).toarray()
    nd, npr = len(rand_ds.vocabs["diag"]), len(rand_ds.vocabs["proc"])
    meds = X[:, nd + npr :]
    first = s["visit_index"].to_numpy() == 0
    assert (meds[first] == 0).all()
    i = int(np.flatnonzero(~first)[0])
    hist, cur = rand_ds.history(int(ids[i]))
    assert sorted(np.flatnonzero(meds[i])) == sorted(hist.iloc[-1]["med"])
    assert sorted(np.flatnonzero(X[i, :nd])) == sorted(cur["diag"])


# ----------------------------------------------------------------------------- init / GAMENet data
@pytest.mark.parametrize("name", ["retain", "gamenet"])
def test_output_bias_starts_at_logit_train_frequency(rand_ds, name):
    r = train_baseline(rand_ds, name, {"emb_dim": 16, "epochs": 1, "lr": 1e-12, "weight_decay": 0.0})
    freq = np.clip(train_prior(rand_ds), 1e-4, 1 - 1e-4)
    np.testing.assert_allclose(r.model.out_bias.detach().numpy(), np.log(freq / (1 - freq)), atol=1e-4)


def test_gamenet_neighbours_and_train_only_graph(rand_ds):
    m, enc = _model(rand_ds, "gamenet")
    ex = m.extra_inputs(rand_ds, enc, enc.indices("train"))
    no_hist = enc.visit_mask.sum(1) == 1
    assert ex["nb_mask"][no_hist].all() and not ex["nb_mask"][~no_hist].any()
    pid = rand_ds.samples().set_index("sample_id").loc[enc.sample_ids, "patient_id"].to_numpy()
    i = int(np.flatnonzero(no_hist)[0])
    nb_meds = {tuple(sorted(x[x > 0] - 1)) for x in ex["nb_med"][i]}
    train = enc.indices("train")
    cands = {tuple(sorted(enc.target_med[j][enc.target_med[j] > 0] - 1)) for j in train if pid[j] != pid[i]}
    assert nb_meds <= cands  # neighbours are other patients' train visits
    adj = ehr_graph(enc, train, rand_ds.n_meds)
    y = enc.labels[train] > 0
    j, k = np.nonzero(adj)
    assert (y[:, j] & y[:, k]).any(0).all() and (np.diag(adj) == 0).all()


def test_embeddings_start_small_and_pad_stays_zero(rand_ds):
    """N(0, 1) embeddings summed over a visit's codes saturate the GRUs (RETAIN stayed at the prior)."""
    r = train_baseline(rand_ds, "retain", {"emb_dim": 16, "epochs": 1, "lr": 1e-12, "weight_decay": 0.0})
    w = r.model.emb_diag.weight.detach()
    assert (w[0] == 0).all() and 0.15 < float(w[1:].std()) < 0.35  # 1/sqrt(16) = 0.25


# ----------------------------------------------------------------------------- report / study
def test_overall_table_shows_dash_for_multi_visit_only_model():
    """A model that scored only the with-history group gets '-' (not a number, not 'missing')
    under Overall and Single-visit, its numbers under Multi-visit; a model with no rows at all
    stays 'missing'."""
    from leader.report.tables import GROUPS, METRICS, overall_table

    rows = []
    for model, groups in (("Prior", [g for g, _ in GROUPS]), ("MICRON", ["history"])):
        for g in groups:
            for m, _ in METRICS:
                rows.append(
                    dict(
                        run_id=model,
                        stage="baseline",
                        dataset="syn",
                        backbone="",
                        model=model,
                        variant="full",
                        param="",
                        param_value=float("nan"),
                        seed=0,
                        group=g,
                        metric=m,
                        mean=0.5,
                        std=0.01,
                    )
                )
    t = overall_table(pd.DataFrame(rows), pd.DataFrame(), declared_models=["COGNet"])
    cells = {r[1]: [c.text for c in cs] for r, cs in zip(t.rows, t.cells, strict=False)}
    cols = [g for g, _ in GROUPS for _ in METRICS]
    micron = dict(zip(range(len(cols)), cells["MICRON"], strict=False))
    assert all(micron[i] == "-" for i, g in enumerate(cols) if g != "history"), cells["MICRON"]
    assert all(micron[i].startswith("0.5") for i, g in enumerate(cols) if g == "history")
    assert all(c == "missing" for c in cells["COGNet"]) and all(c.startswith("0.5") for c in cells["Prior"])
    na = t.long[(t.long["row"] == "MICRON") & (t.long["group"] == "overall")]
    assert na["mean"].isna().all() and na["note"].str.contains("multi-visit-only").all()


@pytest.mark.slow
def test_tuned_baseline_keeps_trials_that_train_every_epoch(tmp_path):
    """Under ASHA, a baseline trial that trains all its epochs (no early stop) still delivers its
    test probabilities (the report after the last epoch), so the sweep selects among them."""
    import ray

    from leader.study.runner import StudyRunner
    from leader.study.spec import StudySpec

    spec = StudySpec.model_validate(
        {
            "name": "tb",
            "storage_path": str(tmp_path),
            "datasets": [{"name": "random", "source": "synthetic"}],
            "student": {"kd": "none", "epochs": 2},
            "ablations": {"variants": ["full"]},
            "search": {"num_samples": 2, "sampler": "random", "scheduler": {"type": "asha", "grace_period": 1}},
            "baselines": {"trivial": [], "tuned": {"micron": {"params": {"epochs": 2, "patience": 5, "emb_dim": 16}}}},
            "evaluation": {"bootstrap_rounds": 2},
        }
    )
    ds = random_dataset(n_patients=60, seed=1)
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        runner = StudyRunner(spec, spec.study_dir(), echo=lambda *_: None)
        u = runner.study.units["baseline/random/micron"]
        runner.study.out[u.needs["data"]] = ds  # what the data unit would have returned
        runner.run_unit(u)
    finally:
        ray.shutdown()
    out = runner.state.get(f"baseline/{ds.name}/micron")
    assert out["status"] == "done" and out["outputs"]["trials"] == 2, out
    boot = pd.read_parquet(next((spec.study_dir() / "results" / "parts").glob("*micron*.boot.parquet")))
    assert set(boot["group"]) == {"history"}  # multi-visit only: never an overall / single number
