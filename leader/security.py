"""Keeping patient identifiers out of what a study writes outside its storage: trial names and
folders (Ray Tune's defaults embed every sampled config value, which can carry anything a study
file puts there), and a scanner that tests and audits use to prove no identifier leaked into
logs, trial names or reports."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# Files worth scanning for leaked identifiers: text a person or a dashboard will read.
TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".md", ".html", ".txt", ".log", ".csv", ".out", ".err")
# A backbone's vocabulary saved beside a teacher: pretrained vocabularies hold number tokens
# ("10006") that collide with MIMIC ids, and they are the model's, not the cohort's (tiny models'
# tokenizers are trained on prompts, which carry code names, never ids). Their names are still scanned.
VOCAB_FILES = frozenset(
    {"tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"}
)


def trial_name(trial) -> str:
    """`tune.TuneConfig(trial_name_creator=...)`: the trainable and Tune's random trial id, never
    config values."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def trial_dirname(trial) -> str:
    """`tune.TuneConfig(trial_dirname_creator=...)`: same as the name, so folder listings on
    shared storage show no config values either."""
    return trial_name(trial)


def _pattern(identifiers: Iterable[int | str]) -> re.Pattern | None:
    ids = sorted({str(i) for i in identifiers if str(i).strip()}, key=len, reverse=True)
    if not ids:
        return None
    # whole tokens only: 10006 must not match inside 0.100061 or 210006
    return re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, ids)) + r")(?![\w])")


def find_identifiers(texts: Iterable[str], identifiers: Iterable[int | str]) -> list[str]:
    """The identifiers (as strings) that occur as whole tokens in any of `texts`."""
    pat = _pattern(identifiers)
    if pat is None:
        return []
    return sorted({m.group(0) for t in texts for m in pat.finditer(t)})


def scan_tree(root: Path, identifiers: Iterable[int | str], *, names_only: bool = False) -> dict[str, list[str]]:
    """Leaked identifiers under `root`, by relative path: in every file and folder name, and
    (unless `names_only`) in the contents of text files (TEXT_SUFFIXES). Binary payloads
    (checkpoints, feature shards, parquet) are skipped: they belong inside storage."""
    pat = _pattern(identifiers)
    hits: dict[str, list[str]] = {}
    if pat is None:
        return hits
    root = Path(root)
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        found = {m.group(0) for m in pat.finditer(p.name)}
        if not names_only and p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and p.name not in VOCAB_FILES:
            found |= {m.group(0) for m in pat.finditer(p.read_text(errors="replace"))}
        if found:
            hits[rel] = sorted(found)
    return hits
