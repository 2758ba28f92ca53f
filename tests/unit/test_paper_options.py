"""The options behind `preset: paper | authors` that used to be fixed project choices: EOS pooling,
the kept teacher state, the teacher's threshold, the bootstrap std's ddof and the authors' prompt
wording (with their bug only when asked). Each on a tiny input whose answer is known by hand."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from leader.config import paper
from leader.config.teacher import TeacherTrainConfig
from leader.data.prompts import build_prompts, fit_prompts, render, teacher_prompts
from leader.metrics import mean_std, summarize
from leader.teacher.inputs import encode, prompt_options, token_lengths

STUDIES = Path(__file__).resolve().parents[2] / "studies"
NEW_KEYS = (
    "teacher.pooling",
    "teacher.checkpoint",
    "teacher.threshold",
    "teacher.prompt_style",
    "teacher.authors_prompt_bug",
    "teacher.max_past_visits",
    "evaluation.bootstrap_ddof",
)


# ------------------------------------------------------------------ the authors' prompt
def _hand_patient():
    """Visit 1: fever, cough / x-ray / aspirin; visit 2 (current): sepsis / dialysis."""
    names = {"diag": ["fever", "cough", "sepsis"], "proc": ["x-ray", "dialysis"], "med": ["aspirin", "heparin"]}
    ds = SimpleNamespace(vocabs={k: SimpleNamespace(names=v) for k, v in names.items()})
    v1 = pd.Series({"diag": [0, 1], "proc": [0], "med": [0]})
    v2 = pd.Series({"diag": [2], "proc": [1], "med": [1]})
    return ds, v1, v2


def test_authors_prompt_is_the_release_template_exactly():
    ds, v1, v2 = _hand_patient()
    assert render(ds, [v1], v2, style="authors") == (
        "The patient has 1 times ICU visits. \n In 1 visit, the patient had diagnosis: fever, cough; "
        "procedures: x-ray. The patient was prescribed drugs: aspirin. \n In this visit, he has diagnosis: "
        "sepsis; procedures: dialysis. Then, the patient should be prescribed: "
    )
    # no history: the header counts past visits only, and the separators stay
    assert render(ds, [], v2, style="authors") == (
        "The patient has 0 times ICU visits. \n  In this visit, he has diagnosis: sepsis; procedures: dialysis. "
        "Then, the patient should be prescribed: "
    )
    # the package's own wording is untouched
    assert render(ds, [v1], v2).splitlines() == [
        "The patient has 2 times ICU visits.",
        "In the 1-th visit, the patient had diagnosis: fever, cough; procedures: x-ray. "
        "The patient was prescribed drugs: aspirin.",
        "In this visit, the patient has diagnosis: sepsis; procedures: dialysis. Then, the patient should be "
        "prescribed:",
    ]


def test_authors_bug_shows_the_current_diagnoses_in_past_visits_only_when_asked():
    ds, v1, v2 = _hand_patient()
    buggy = render(ds, [v1], v2, style="authors", authors_bug=True)
    assert "In 1 visit, the patient had diagnosis: sepsis; procedures: x-ray." in buggy
    assert "fever" not in buggy
    assert "fever, cough" in render(ds, [v1], v2, style="authors")
    with pytest.raises(ValidationError, match="prompt_style: authors"):
        TeacherTrainConfig(authors_prompt_bug=True)


def test_authors_history_keeps_the_three_latest_visits_with_their_ordinals():
    ds, v1, v2 = _hand_patient()
    text = render(ds, [v1] * 5, v2, style="authors", max_past_visits=3)
    assert [s for s in ("In 1 visit", "In 2 visit", "In 3 visit", "In 4 visit", "In 5 visit") if s in text] == [
        "In 3 visit",
        "In 4 visit",
        "In 5 visit",
    ]
    assert text.startswith("The patient has 5 times ICU visits.")


def test_teacher_prompts_carry_the_style_into_every_path(random_ds):
    ids = random_ds.samples("train")["sample_id"].to_numpy()[:20]
    plain, _ = teacher_prompts(random_ds, ids, style="authors", max_past_visits=1)
    assert plain == build_prompts(random_ds, ids, style="authors", max_past_visits=1)
    assert all(p.endswith("Then, the patient should be prescribed: ") and " he has " in p for p in plain)


# ------------------------------------------------------------------ EOS pooling
@pytest.fixture(scope="module")
def tok():
    from leader.teacher.tokenizer import train_tokenizer

    return train_tokenizer(["the patient has fever and cough", "in this visit the patient has sepsis"] * 20)


def test_eos_is_appended_after_the_cut_and_is_the_last_attended_token(tok):
    prompts = ["the patient has fever", "in this visit the patient has sepsis and fever and cough"]
    plain_ids, plain_mask = encode(tok, prompts, 64)
    ids, mask = encode(tok, prompts, 64, append_eos=True)
    n = plain_mask.sum(1)
    assert mask.sum(1).tolist() == (n + 1).tolist()  # one more token each
    for i in range(2):
        assert ids[i, n[i]].item() == tok.eos_token_id  # right after the prompt
        assert torch.equal(ids[i, : n[i]], plain_ids[i, : n[i]])
    # a cut prompt still ends in EOS, within max_length, and keeps its END (left truncation)
    cut_ids, cut_mask = encode(tok, prompts[1:], 6, append_eos=True)
    assert cut_ids.shape[1] == 6 and cut_ids[0, -1].item() == tok.eos_token_id
    assert torch.equal(cut_ids[0, :5], plain_ids[1, n[1] - 5 : n[1]])
    assert token_lengths(tok, prompts, 64, append_eos=True).tolist() == (n + 1).tolist()


def test_eos_pooling_reads_the_state_at_the_eos_position():
    from leader.teacher.model import build_teacher

    m = build_teacher("tiny-llama", 3, lora_rank=2, pooling="eos").eval()
    ids, mask = encode(m.tokenizer, ["The patient has 1 times ICU visits.", "short"], 64, append_eos=m.append_eos)
    with torch.no_grad():
        h = m.pooled(ids, mask)
        states = m.backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    eos_pos = (ids == m.tokenizer.eos_token_id).long().argmax(1)  # the only EOS of each row
    torch.testing.assert_close(h, states[torch.arange(2), eos_pos])
    assert eos_pos.tolist() == (mask.sum(1) - 1).tolist()


def test_fitted_prompts_leave_room_for_the_eos(random_ds):
    from leader.teacher.tokenizer import train_tokenizer

    ids = random_ds.samples("train")["sample_id"].to_numpy()[:30]
    tk = train_tokenizer(build_prompts(random_ds, ids))
    n = lambda ps: [len(tk(p)["input_ids"]) for p in ps]  # noqa: E731
    L = max(n(build_prompts(random_ds, ids, max_past_visits=0))) + 12  # every current visit fits
    plain, d0 = fit_prompts(random_ds, ids, tk, L)
    room, d1 = fit_prompts(random_ds, ids, tk, L, reserve=1)
    assert max(n(plain)) <= L and max(n(room)) <= L - 1 and sum(d0) > 0 and sum(d1) >= sum(d0)
    assert plain == teacher_prompts(random_ds, ids, tk, fit_max_length=L)[0]
    assert room == teacher_prompts(random_ds, ids, tk, fit_max_length=L, append_eos=True)[0]


def test_prompt_options_of_a_default_teacher_are_unchanged():
    assert prompt_options(TeacherTrainConfig()) == {"fit_max_length": 256, "token_budget": None}
    cfg = TeacherTrainConfig(pooling="eos", prompt_style="authors", authors_prompt_bug=True, max_past_visits=3)
    assert prompt_options(cfg) == {
        "fit_max_length": 256,
        "token_budget": None,
        "append_eos": True,
        "style": "authors",
        "authors_bug": True,
        "max_past_visits": 3,
    }


# ------------------------------------------------------------------ kept state: best or last
def test_keep_policy():
    from leader.teacher.checkpoint import keeps

    assert keeps("best", None, 0.1) and keeps("best", 0.5, 0.6)
    assert not keeps("best", 0.5, 0.4) and not keeps("best", 0.5, 0.5)  # strictly better only
    assert keeps("last", 0.5, 0.4)
    with pytest.raises(ValueError):
        keeps("first", 0.5, 0.4)


@pytest.mark.parametrize("policy, kept_step, copied", [("best", 1, True), ("last", 2, False)])
def test_validation_keeps_the_best_or_the_last_state(monkeypatch, policy, kept_step, copied):
    """Validation PRAUC 1.0 at step 1, 0.5 at step 2: 'best' keeps step 1's copy, 'last' keeps the
    engine's own (final) state and copies nothing."""
    from leader.teacher import checkpoint as ckpt_io
    from leader.teacher.worker import TeacherRun

    run = TeacherRun.__new__(TeacherRun)  # the validation logic alone, without a backbone
    run.cfg = TeacherTrainConfig(checkpoint=policy)
    run.data = {"val": {"prompts": ["a", "b"], "labels": [[1, 0], [0, 1]]}}
    run.st = {"step": 0, "history": [], "best_val": None, "best_step": None}
    run.best_state, run.engine = None, None
    preds = iter([np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([[0.1, 0.9], [0.9, 0.1]])])
    run._predict = lambda prompts: next(preds)
    monkeypatch.setattr(ckpt_io, "trainable_state", lambda engine: {"step": run.st["step"]})
    for step in (1, 2):
        run.st["step"] = step
        run.validate(0)
    assert [h["val_prauc"] for h in run.st["history"]] == [1.0, 0.5]
    assert run.st["best_step"] == kept_step
    assert (run.best_state == {"step": 1}) if copied else run.best_state is None


# ------------------------------------------------------------------ thresholds and ddof
def test_teacher_threshold_changes_its_f1():
    from leader.teacher.evaluate import group_metrics

    y, p = np.array([[1, 0]]), np.array([[0.4, 0.1]])
    assert group_metrics(y, p, ["single"], "test")["test_overall_f1"] == 0.0  # 0.4 < 0.5
    assert group_metrics(y, p, ["single"], "test", threshold=0.3)["test_overall_f1"] == 1.0


def test_bootstrap_std_ddof():
    df = pd.DataFrame({"group": "overall", "metric": "f1", "value": [1.0, 2.0, 3.0]})
    assert summarize(df)["std"].iloc[0] == pytest.approx(1.0)
    assert summarize(df, ddof=0)["std"].iloc[0] == pytest.approx(0.8164966, abs=1e-6)
    assert mean_std(df, ["group"], 0)["std"].iloc[0] == pytest.approx(np.std([1.0, 2.0, 3.0]))


# ------------------------------------------------------------------ presets, keys, deviations
def _load(monkeypatch, name: str, sets: list[str] | None = None, preset: str | None = None, tmp=None):
    """The resolved study (and its spec.yaml mapping); `preset` swaps the file's own preset."""
    import yaml

    from leader.study.spec import load_study, with_sets

    monkeypatch.setenv("MIMIC3_ROOT", "/nonexistent")
    path = STUDIES / name
    if preset is not None:
        text = path.read_text().replace("preset: paper", f"preset: {preset}")
        path = tmp / name
        path.write_text(text.replace("extends: base.yaml", f"extends: {STUDIES / 'base.yaml'}"))
    spec = load_study(path)
    spec = with_sets(spec, sets) if sets else spec
    return spec, yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json")))


def test_every_new_setting_is_settable_with_sources():
    for k in NEW_KEYS:
        s = paper.BY_KEY[k]
        assert s.settable and s.paper_source and s.authors_source, k
    assert not [s.key for s in paper.SETTINGS if not s.settable]  # nothing left the package cannot set
    bug = paper.BY_KEY["teacher.authors_prompt_bug"]
    assert (bug.paper, bug.authors) == (False, False) and "NEITHER preset" in bug.why


@pytest.mark.parametrize("preset, style", [("paper", "package"), ("authors", "authors")])
def test_presets_set_the_new_options_and_list_no_deviation_for_them(monkeypatch, tmp_path, preset, style):
    from leader.report.deviations import _resolved, deviations_for

    spec, raw = _load(monkeypatch, "mimic3_paper.yaml", preset=preset, tmp=tmp_path)
    assert spec.preset == preset
    o = spec.teacher.options
    assert (o.pooling, o.checkpoint, o.threshold, o.prompt_style) == ("eos", "last", 0.5, style)
    assert (o.authors_prompt_bug, o.max_past_visits, spec.evaluation.bootstrap_ddof) == (False, 3, 0)
    assert all(k in _resolved(raw) for k in NEW_KEYS)
    assert not [d.key for d in deviations_for(raw, preset) if d.key in NEW_KEYS]


def test_a_study_without_preset_keeps_todays_values(monkeypatch):
    from leader.report.deviations import _resolved
    from leader.study.units import teacher_threshold

    spec, raw = _load(monkeypatch, "quickstart.yaml")
    o = spec.teacher.options
    assert (o.pooling, o.checkpoint, o.threshold, o.prompt_style, o.authors_prompt_bug, o.max_past_visits) == (
        "last",
        "best",
        None,
        "package",
        False,
        None,
    )
    assert spec.evaluation.bootstrap_ddof == 1
    assert teacher_threshold(spec) == spec.student.threshold  # LEADER(T) scored as before
    assert _resolved(raw)["teacher.threshold"] == spec.student.threshold
    with pytest.raises(ValidationError, match="minilm's tokenizer has none"):  # its backbone: minilm
        _load(monkeypatch, "quickstart.yaml", ["teacher.options.pooling=eos"])


def test_scoring_options_rekey_only_what_they_change(monkeypatch):
    from leader.study.units import units

    def keys(sets):
        spec, _ = _load(monkeypatch, "quickstart.yaml", sets)
        return {u.name: u.key for u in units(spec, cache_keys={d.name: "k" for d in spec.datasets})}

    base = keys([])
    thr = keys(["teacher.options.threshold=0.5"])  # the quickstart student's is 0.3
    changed = {n for n in base if base[n] != thr[n]}
    assert changed and all(n.startswith(("teacher_eval/", "report")) for n in changed)
    ddof = keys(["evaluation.bootstrap_ddof=0"])
    assert {n for n in base if base[n] != ddof[n]} == {"report"}
