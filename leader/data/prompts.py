"""The teacher's input: a prompt template filled with code NAMES, in one of two wordings.

`package` (the default; LEADER, Fig. 2), one line per part (long lines wrapped here with a
trailing backslash):

    The patient has {n} times ICU visits.
    In the {k}-th visit, the patient had diagnosis: {names}; procedures: {names}. \
The patient was prescribed drugs: {names}.
    ... (one line per shown past visit, oldest first)
    In this visit, the patient has diagnosis: {names}; procedures: {names}. Then, the patient should be prescribed:

`authors` (the release's data/mimic3/construction.ipynb cell 37, filled in cell 40; MIMIC-IV's
notebook has the same templates in cell 39): "In {k} visit, ..." (no "the ...-th"), "he has" in
the current visit, the header counts the PAST visits only (cell 40 line 5: `visit_num =
item_df.shape[0] - 1`), and their separators: header + " \n ", each past visit + " \n", then
" " + the current visit, which ends in "prescribed: " (trailing space).

Only PAST visits contribute medications; the current visit contributes only its own diagnoses
and procedures. The release's notebook shows the current visit's diagnoses in every past visit
(cell 40 line 23 replaces "<DIGNOSIS>", a typo, so the later "<DIAGNOSIS>" replace on line 39
fills the past visits too); that bug is reproduced only with `authors_bug=True`. Past visits
beyond `max_past_visits`, or beyond the token budget, are dropped OLDEST first; the current visit
is never dropped, and past visits keep their true ordinal so the model still sees how long the
history is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from leader.data.dataset import EHRDataset

HEADER = "The patient has {n} times ICU visits."
PAST = "In the {k}-th visit, the patient had diagnosis: {diag}; procedures: {proc}. The patient was prescribed drugs: {med}."  # noqa: E501
CURRENT = (
    "In this visit, the patient has diagnosis: {diag}; procedures: {proc}. Then, the patient should be prescribed:"
)


@dataclass(frozen=True)
class Style:
    """One wording of the prompt: its three templates, what goes between the parts, and whether
    the header counts the past visits only (the release) or every visit (the package)."""

    header: str
    past: str
    current: str
    after_header: str
    after_past: str
    before_current: str
    count_past_only: bool

    def join(self, head: str, past_lines: list[str], cur: str) -> str:
        return head + self.after_header + "".join(x + self.after_past for x in past_lines) + self.before_current + cur


STYLES = {
    "package": Style(HEADER, PAST, CURRENT, "\n", "\n", "", False),
    "authors": Style(
        HEADER,
        "In {k} visit, the patient had diagnosis: {diag}; procedures: {proc}. The patient was prescribed drugs: {med}.",
        "In this visit, he has diagnosis: {diag}; procedures: {proc}. Then, the patient should be prescribed: ",
        " \n ",
        " \n",
        " ",
        True,
    ),
}


def _style(name: str) -> Style:
    if name not in STYLES:
        raise ValueError(f"unknown prompt style {name!r}; choose one of {tuple(STYLES)}")
    return STYLES[name]


def _words(text: str) -> int:
    """Default token counter: whitespace words (a tokenizer's count can be passed instead)."""
    return len(text.split())


def _names(vocab, idx: Iterable[int]) -> str:
    return ", ".join(vocab.names[i] for i in idx)


def render_parts(
    ds: EHRDataset,
    past: list[pd.Series],
    current: pd.Series,
    *,
    max_past_visits: int | None = None,
    style: str = "package",
    authors_bug: bool = False,
) -> tuple[str, list[str], str]:
    """(header, past visit lines oldest first, current visit line) of one sample, before any
    token budget. `authors_bug` shows the CURRENT visit's diagnoses in every past visit."""
    st, dv, pv, mv = _style(style), ds.vocabs["diag"], ds.vocabs["proc"], ds.vocabs["med"]
    past_lines = [
        st.past.format(
            k=i + 1,
            diag=_names(dv, (current if authors_bug else r)["diag"]),
            proc=_names(pv, r["proc"]),
            med=_names(mv, r["med"]),
        )
        for i, r in enumerate(past)
    ]
    if max_past_visits is not None:
        past_lines = past_lines[len(past_lines) - max_past_visits :] if max_past_visits > 0 else []
    head = st.header.format(n=len(past) + (0 if st.count_past_only else 1))
    return head, past_lines, st.current.format(diag=_names(dv, current["diag"]), proc=_names(pv, current["proc"]))


def _fit_budget(
    head: str, past_lines: list[str], cur: str, token_budget: int | None, count_tokens: Callable[[str], int]
) -> list[str]:
    """The past lines kept under `token_budget` (counted line by line): oldest dropped first."""
    if token_budget is None:
        return past_lines
    kept = list(past_lines)
    fixed = count_tokens(head) + count_tokens(cur)
    costs = [count_tokens(line) for line in kept]
    while kept and fixed + sum(costs) > token_budget:
        kept.pop(0)  # oldest first; the current visit is never dropped
        costs.pop(0)
    return kept


def render(
    ds: EHRDataset,
    past: list[pd.Series],
    current: pd.Series,
    *,
    max_past_visits: int | None = None,
    token_budget: int | None = None,
    count_tokens: Callable[[str], int] = _words,
    style: str = "package",
    authors_bug: bool = False,
) -> str:
    """Prompt for one sample from its past visit rows (oldest first) and current visit row."""
    return render_counted(
        ds,
        past,
        current,
        max_past_visits=max_past_visits,
        token_budget=token_budget,
        count_tokens=count_tokens,
        style=style,
        authors_bug=authors_bug,
    )[0]


def render_counted(
    ds: EHRDataset,
    past: list[pd.Series],
    current: pd.Series,
    *,
    max_past_visits: int | None = None,
    token_budget: int | None = None,
    count_tokens: Callable[[str], int] = _words,
    style: str = "package",
    authors_bug: bool = False,
) -> tuple[str, int]:
    """(prompt, number of past visits dropped to respect `max_past_visits` / `token_budget`)."""
    head, lines, cur = render_parts(
        ds, past, current, max_past_visits=max_past_visits, style=style, authors_bug=authors_bug
    )
    lines = _fit_budget(head, lines, cur, token_budget, count_tokens)
    return _style(style).join(head, lines, cur), len(past) - len(lines)


def build_prompt(ds: EHRDataset, sample_id: int, **kwargs) -> str:
    past, cur = ds.history(int(sample_id))
    return render(ds, [r for _, r in past.iterrows()], cur, **kwargs)


def build_prompts(ds: EHRDataset, sample_ids: Iterable[int] | None = None, **kwargs) -> list[str]:
    """Prompts for many samples in `sample_ids` order (default: every visit), one pass per patient."""
    return build_prompts_counted(ds, sample_ids, **kwargs)[0]


def _per_sample(ds: EHRDataset, sample_ids: Iterable[int] | None, fn: Callable) -> list:
    """fn(past rows, current row) for each sample in `sample_ids` order (default: every visit),
    one pass per patient."""
    out: dict[int, object] = {}
    wanted = None if sample_ids is None else [int(s) for s in sample_ids]
    wanted_set = None if wanted is None else set(wanted)
    for _, rows in ds.visits.groupby("patient_id", sort=False):
        rows = rows.sort_values("visit_index")
        recs = [r for _, r in rows.iterrows()]
        for i, r in enumerate(recs):
            vid = int(r["visit_id"])
            if wanted_set is None or vid in wanted_set:
                out[vid] = fn(recs[:i], r)
    if wanted is None:
        wanted = [int(v) for v in ds.visits["visit_id"]]
    missing = [s for s in wanted if s not in out]
    if missing:
        raise KeyError(f"unknown sample_id {missing[0]} ({len(missing)} missing)")
    return [out[s] for s in wanted]


def build_prompts_counted(
    ds: EHRDataset, sample_ids: Iterable[int] | None = None, **kwargs
) -> tuple[list[str], list[int]]:
    """(prompts, past visits dropped per prompt), both in `sample_ids` order."""
    got = _per_sample(ds, sample_ids, lambda past, cur: render_counted(ds, past, cur, **kwargs))
    return [p for p, _ in got], [d for _, d in got]


def token_counter(tokenizer) -> Callable[[str], int]:
    """Tokens a line costs inside a prompt (no special tokens; +1 for the joining newline).
    Cached: a patient's past-visit lines recur in every later visit's prompt."""
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in cache:
            cache[text] = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
        return cache[text]

    return count


def fit_prompts(
    ds: EHRDataset,
    sample_ids: Iterable[int],
    tokenizer,
    max_length: int,
    *,
    reserve: int = 0,
    style: str = "package",
    authors_bug: bool = False,
    max_past_visits: int | None = None,
) -> tuple[list[str], list[int]]:
    """Prompts that fit `max_length - reserve` tokens of `tokenizer` whole (`reserve`: tokens the
    teacher appends after tokenising, its EOS): the OLDEST past visits are dropped until the
    prompt fits, so truncation never cuts a visit in half and the current visit ("In this visit
    ... should be prescribed:") always survives. Returns the prompts and the past visits dropped
    per prompt (reported in the study results).

    Per-line counts approximate the joined prompt's count (BPE merges across a newline are
    rare), so each prompt is re-checked with the real tokenizer and trimmed further if needed."""
    limit = int(max_length) - int(reserve)
    budget = max(1, limit - len(tokenizer("", add_special_tokens=True)["input_ids"]))
    count, st = token_counter(tokenizer), _style(style)

    def one(past: list[pd.Series], cur_row: pd.Series) -> tuple[str, int]:
        head, lines, cur = render_parts(
            ds, past, cur_row, max_past_visits=max_past_visits, style=style, authors_bug=authors_bug
        )
        lines = _fit_budget(head, lines, cur, budget, count)
        text = st.join(head, lines, cur)
        while lines and len(tokenizer(text, add_special_tokens=True)["input_ids"]) > limit:
            lines = lines[1:]  # oldest remaining past visit; header and current visit stay
            text = st.join(head, lines, cur)
        return text, len(past) - len(lines)

    got = _per_sample(ds, [int(s) for s in sample_ids], one)
    return [p for p, _ in got], [d for _, d in got]


def teacher_prompts(
    ds: EHRDataset,
    sample_ids: Iterable[int],
    tokenizer=None,
    *,
    fit_max_length: int | None = None,
    token_budget: int | None = None,
    append_eos: bool = False,
    style: str = "package",
    authors_bug: bool = False,
    max_past_visits: int | None = None,
) -> tuple[list[str], list[int]]:
    """The prompts a teacher was trained on, from its saved `prompt_options`: fitted to its
    tokenizer when `fit_max_length` is set (one token kept free for the EOS the teacher appends
    with `append_eos`), else the word-budget / untrimmed template. Training, feature extraction
    and latency measurements all call this, so they see the same text."""
    text = {"style": style, "authors_bug": authors_bug, "max_past_visits": max_past_visits}
    if fit_max_length and tokenizer is not None:
        return fit_prompts(ds, sample_ids, tokenizer, int(fit_max_length), reserve=int(append_eos), **text)
    return build_prompts_counted(ds, sample_ids, **({"token_budget": token_budget} if token_budget else {}), **text)
