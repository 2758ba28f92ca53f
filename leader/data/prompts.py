"""The teacher's input: the paper's prompt template filled with code NAMES.

Template (LEADER, Fig. 2), one line per part (long lines wrapped here with a trailing backslash):

    The patient has {n} times ICU visits.
    In the {k}-th visit, the patient had diagnosis: {names}; procedures: {names}. \
The patient was prescribed drugs: {names}.
    ... (one line per shown past visit, oldest first)
    In this visit, the patient has diagnosis: {names}; procedures: {names}. Then, the patient should be prescribed:

Only PAST visits contribute medications; the current visit contributes only its own diagnoses
and procedures (the reference implementation leaked the current visit's diagnoses into past
visits; `build_prompt` reads each past visit's own row). Past visits beyond `max_past_visits`,
or beyond the token budget, are dropped OLDEST first; the current visit is never dropped, and
past visits keep their true ordinal so the model still sees how long the history is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from leader.data.dataset import EHRDataset

HEADER = "The patient has {n} times ICU visits."
PAST = "In the {k}-th visit, the patient had diagnosis: {diag}; procedures: {proc}. The patient was prescribed drugs: {med}."  # noqa: E501
CURRENT = (
    "In this visit, the patient has diagnosis: {diag}; procedures: {proc}. Then, the patient should be prescribed:"
)


def _words(text: str) -> int:
    """Default token counter: whitespace words (a tokenizer's count can be passed instead)."""
    return len(text.split())


def _names(vocab, idx: Iterable[int]) -> str:
    return ", ".join(vocab.names[i] for i in idx)


def render(
    ds: EHRDataset,
    past: list[pd.Series],
    current: pd.Series,
    *,
    max_past_visits: int | None = None,
    token_budget: int | None = None,
    count_tokens: Callable[[str], int] = _words,
) -> str:
    """Prompt for one sample from its past visit rows (oldest first) and current visit row."""
    return render_counted(
        ds, past, current, max_past_visits=max_past_visits, token_budget=token_budget, count_tokens=count_tokens
    )[0]


def render_counted(
    ds: EHRDataset,
    past: list[pd.Series],
    current: pd.Series,
    *,
    max_past_visits: int | None = None,
    token_budget: int | None = None,
    count_tokens: Callable[[str], int] = _words,
) -> tuple[str, int]:
    """(prompt, number of past visits dropped to respect `max_past_visits` / `token_budget`)."""
    dv, pv, mv = ds.vocabs["diag"], ds.vocabs["proc"], ds.vocabs["med"]
    n_total = len(past) + 1
    past_lines = [
        PAST.format(k=i + 1, diag=_names(dv, r["diag"]), proc=_names(pv, r["proc"]), med=_names(mv, r["med"]))
        for i, r in enumerate(past)
    ]
    if max_past_visits is not None:
        past_lines = past_lines[len(past_lines) - max_past_visits :] if max_past_visits > 0 else []
    head = HEADER.format(n=n_total)
    cur = CURRENT.format(diag=_names(dv, current["diag"]), proc=_names(pv, current["proc"]))
    if token_budget is not None:
        fixed = count_tokens(head) + count_tokens(cur)
        costs = [count_tokens(line) for line in past_lines]
        while past_lines and fixed + sum(costs) > token_budget:
            past_lines.pop(0)  # oldest first; the current visit is never dropped
            costs.pop(0)
    return "\n".join([head, *past_lines, cur]), len(past) - len(past_lines)


def build_prompt(ds: EHRDataset, sample_id: int, **kwargs) -> str:
    past, cur = ds.history(int(sample_id))
    return render(ds, [r for _, r in past.iterrows()], cur, **kwargs)


def build_prompts(ds: EHRDataset, sample_ids: Iterable[int] | None = None, **kwargs) -> list[str]:
    """Prompts for many samples in `sample_ids` order (default: every visit), one pass per patient."""
    return build_prompts_counted(ds, sample_ids, **kwargs)[0]


def build_prompts_counted(
    ds: EHRDataset, sample_ids: Iterable[int] | None = None, **kwargs
) -> tuple[list[str], list[int]]:
    """(prompts, past visits dropped per prompt), both in `sample_ids` order."""
    by_visit: dict[int, tuple[str, int]] = {}
    wanted = None if sample_ids is None else [int(s) for s in sample_ids]
    wanted_set = None if wanted is None else set(wanted)
    for _, rows in ds.visits.groupby("patient_id", sort=False):
        rows = rows.sort_values("visit_index")
        recs = [r for _, r in rows.iterrows()]
        for i, r in enumerate(recs):
            vid = int(r["visit_id"])
            if wanted_set is None or vid in wanted_set:
                by_visit[vid] = render_counted(ds, recs[:i], r, **kwargs)
    if wanted is None:
        wanted = [int(v) for v in ds.visits["visit_id"]]
    missing = [s for s in wanted if s not in by_visit]
    if missing:
        raise KeyError(f"unknown sample_id {missing[0]} ({len(missing)} missing)")
    return [by_visit[s][0] for s in wanted], [by_visit[s][1] for s in wanted]


def token_counter(tokenizer) -> Callable[[str], int]:
    """Tokens a line costs inside a prompt (no special tokens; +1 for the joining newline).
    Cached: a patient's past-visit lines recur in every later visit's prompt."""
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in cache:
            cache[text] = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
        return cache[text]

    return count


def fit_prompts(ds: EHRDataset, sample_ids: Iterable[int], tokenizer, max_length: int) -> tuple[list[str], list[int]]:
    """Prompts that fit `max_length` tokens of `tokenizer` whole: the OLDEST past visits are
    dropped until the prompt fits, so truncation never cuts a visit in half and the current
    visit ("In this visit ... should be prescribed:") always survives. Returns the prompts and
    the past visits dropped per prompt (reported in the study results).

    Per-line counts approximate the joined prompt's count (BPE merges across a newline are
    rare), so each prompt is re-checked with the real tokenizer and trimmed further if needed."""
    ids = [int(s) for s in sample_ids]
    special = len(tokenizer("", add_special_tokens=True)["input_ids"])
    budget = max(1, int(max_length) - special)
    prompts, dropped = build_prompts_counted(ds, ids, token_budget=budget, count_tokens=token_counter(tokenizer))
    for i, p in enumerate(prompts):
        lines = p.split("\n")
        while len(lines) > 2 and len(tokenizer("\n".join(lines), add_special_tokens=True)["input_ids"]) > max_length:
            lines.pop(1)  # oldest remaining past visit; header and current visit stay
            dropped[i] += 1
        prompts[i] = "\n".join(lines)
    return prompts, dropped


def teacher_prompts(
    ds: EHRDataset,
    sample_ids: Iterable[int],
    tokenizer=None,
    *,
    fit_max_length: int | None = None,
    token_budget: int | None = None,
) -> tuple[list[str], list[int]]:
    """The prompts a teacher was trained on, from its saved `prompt_options`: fitted to its
    tokenizer when `fit_max_length` is set, else the word-budget / untrimmed template. Training,
    feature extraction and latency measurements all call this, so they see the same text."""
    if fit_max_length and tokenizer is not None:
        return fit_prompts(ds, sample_ids, tokenizer, int(fit_max_length))
    return build_prompts_counted(ds, sample_ids, **({"token_budget": token_budget} if token_budget else {}))
