"""The teacher's input: the paper's prompt template filled with code NAMES.

Template (LEADER, Fig. 2), one line per part:

    The patient has {n} times ICU visits.
    In the {k}-th visit, the patient had diagnosis: {names}; procedures: {names}. The patient was prescribed drugs: {names}.
    ... (one line per shown past visit, oldest first)
    In this visit, the patient has diagnosis: {names}; procedures: {names}. Then, the patient should be prescribed:

Only PAST visits contribute medications; the current visit contributes only its own diagnoses
and procedures (the reference implementation leaked the current visit's diagnoses into past
visits; `build_prompt` reads each past visit's own row). Past visits beyond `max_past_visits`,
or beyond the token budget, are dropped OLDEST first; the current visit is never dropped, and
past visits keep their true ordinal so the model still sees how long the history is.
"""

from __future__ import annotations

from typing import Callable, Iterable

import pandas as pd

from leader.data.dataset import EHRDataset

HEADER = "The patient has {n} times ICU visits."
PAST = "In the {k}-th visit, the patient had diagnosis: {diag}; procedures: {proc}. The patient was prescribed drugs: {med}."
CURRENT = "In this visit, the patient has diagnosis: {diag}; procedures: {proc}. Then, the patient should be prescribed:"


def _words(text: str) -> int:
    """Default token counter: whitespace words (a tokenizer's count can be passed instead)."""
    return len(text.split())


def _names(vocab, idx: Iterable[int]) -> str:
    return ", ".join(vocab.names[i] for i in idx)


def render(ds: EHRDataset, past: list[pd.Series], current: pd.Series, *, max_past_visits: int | None = None,
           token_budget: int | None = None, count_tokens: Callable[[str], int] = _words) -> str:
    """Prompt for one sample from its past visit rows (oldest first) and current visit row."""
    dv, pv, mv = ds.vocabs["diag"], ds.vocabs["proc"], ds.vocabs["med"]
    n_total = len(past) + 1
    past_lines = [PAST.format(k=i + 1, diag=_names(dv, r["diag"]), proc=_names(pv, r["proc"]), med=_names(mv, r["med"]))
                  for i, r in enumerate(past)]
    if max_past_visits is not None:
        past_lines = past_lines[len(past_lines) - max_past_visits:] if max_past_visits > 0 else []
    head = HEADER.format(n=n_total)
    cur = CURRENT.format(diag=_names(dv, current["diag"]), proc=_names(pv, current["proc"]))
    if token_budget is not None:
        fixed = count_tokens(head) + count_tokens(cur)
        costs = [count_tokens(line) for line in past_lines]
        while past_lines and fixed + sum(costs) > token_budget:
            past_lines.pop(0)  # oldest first; the current visit is never dropped
            costs.pop(0)
    return "\n".join([head, *past_lines, cur])


def build_prompt(ds: EHRDataset, sample_id: int, **kwargs) -> str:
    past, cur = ds.history(int(sample_id))
    return render(ds, [r for _, r in past.iterrows()], cur, **kwargs)


def build_prompts(ds: EHRDataset, sample_ids: Iterable[int] | None = None, **kwargs) -> list[str]:
    """Prompts for many samples in `sample_ids` order (default: every visit), one pass per patient."""
    by_visit: dict[int, str] = {}
    wanted = None if sample_ids is None else [int(s) for s in sample_ids]
    wanted_set = None if wanted is None else set(wanted)
    for _, rows in ds.visits.groupby("patient_id", sort=False):
        rows = rows.sort_values("visit_index")
        recs = [r for _, r in rows.iterrows()]
        for i, r in enumerate(recs):
            vid = int(r["visit_id"])
            if wanted_set is None or vid in wanted_set:
                by_visit[vid] = render(ds, recs[:i], r, **kwargs)
    if wanted is None:
        return [by_visit[int(v)] for v in ds.visits["visit_id"]]
    missing = [s for s in wanted if s not in by_visit]
    if missing:
        raise KeyError(f"unknown sample_id {missing[0]} ({len(missing)} missing)")
    return [by_visit[s] for s in wanted]
