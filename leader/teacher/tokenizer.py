"""A byte-level BPE tokenizer trained locally for the tiny CPU backbones.

Why: tiny models are built from configs (no pretrained checkpoint exists), so they need a
tokenizer that never touches the hub. Byte-level BPE never produces <unk>, so prompts from any
dataset (MIMIC names, synthetic names) tokenize even if the corpus did not contain them.
The corpus defaults to the prompt template plus every code name in leader/resources/curated.json;
`train_tokenizer(corpus=...)` accepts a dataset's own prompts instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from leader.paths import resources_dir

SPECIAL = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>"}


def default_corpus() -> list[str]:
    """Prompt template lines + all names in the curated code resource (deterministic)."""
    from leader.data import prompts as P

    out = [P.HEADER.format(n=3), P.PAST.format(k=1, diag="x", proc="y", med="z"), P.CURRENT.format(diag="x", proc="y")]

    def walk(x) -> None:
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    p = resources_dir() / "curated.json"
    if p.exists():
        walk(json.loads(p.read_text()))
    return out


def train_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 2000, model_max_length: int = 4096):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer
    (right padding: decoder pooling then reads the last real token without position shifts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(corpus) if corpus is not None else default_corpus()
    tok = Tokenizer(models.BPE(unk_token=SPECIAL["unk"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=SPECIAL["pad"],
        unk_token=SPECIAL["unk"],
        bos_token=SPECIAL["bos"],
        eos_token=SPECIAL["eos"],
        padding_side="right",
        truncation_side="left",
        model_max_length=model_max_length,
    )
