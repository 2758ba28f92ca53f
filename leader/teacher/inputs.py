"""What the teacher reads: the prompts of each split (fitted to its tokenizer) and batches of
token ids. Every forward of a teacher (training step, validation, LP frozen pass, feature
extraction) tokenises through `encode`, so a prompt is cut the same way wherever it is read.

Why length buckets: inference pads each batch only to its own longest prompt, so batching prompts
of similar length spends (almost) no FLOPs on padding.

Why `append_eos` here (pooling: eos, the authors' release): the EOS must be the last token the
model reads whatever the cut, so it is appended AFTER the prompt is cut to max_length - 1, in the
same one function every forward goes through.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from leader.config.teacher import TeacherTrainConfig
from leader.errors import ConfigError


def encode(tokenizer, prompts: list[str], max_length: int, device=None, append_eos: bool = False):
    """Token ids and mask (B, L), padded to the longest prompt, cut on the tokenizer's side (left:
    see backbones.prepare_tokenizer), on `device`: DeepSpeed moves the model, never the inputs.
    `append_eos`: cut to max_length - 1, then the tokenizer's EOS id ends every row (mask 1)."""
    if append_eos:
        ids, mask = _with_eos(tokenizer, prompts, max_length)
    else:
        enc = tokenizer(prompts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
    if device is None:
        return ids, mask
    return ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)


def _with_eos(tokenizer, prompts: list[str], max_length: int):
    """(ids, mask) of `prompts` cut to max_length - 1 tokens, each followed by EOS, right-padded."""
    import torch

    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("pooling: eos needs a tokenizer with an EOS token; this backbone's has none (use last)")
    rows = [x + [eos] for x in tokenizer(prompts, truncation=True, max_length=max_length - 1)["input_ids"]]
    L = max((len(x) for x in rows), default=0)
    ids = torch.full((len(rows), L), int(tokenizer.pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, x in enumerate(rows):
        ids[i, : len(x)], mask[i, : len(x)] = torch.tensor(x, dtype=torch.long), 1
    return ids, mask


def length_buckets(tokenizer, prompts: list[str], batch_size: int) -> list[np.ndarray]:
    """Index batches of prompts sorted by token length, longest first (an appended EOS adds one
    token to every prompt, so it changes no order)."""
    lens = (
        np.array([len(x) for x in tokenizer(prompts, add_special_tokens=True)["input_ids"]]) if prompts else np.zeros(0)
    )
    order = np.argsort(-lens, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def encoded_batches(
    tokenizer, prompts: list[str], max_length: int, batch_size: int, device=None, append_eos: bool = False
) -> Iterator[tuple[np.ndarray, object, object]]:
    """(indices into `prompts`, ids, mask) per length bucket: the one inference batching."""
    for idx in length_buckets(tokenizer, prompts, batch_size):
        ids, mask = encode(tokenizer, [prompts[i] for i in idx], max_length, device, append_eos)
        yield idx, ids, mask


def token_lengths(tokenizer, prompts: list[str], max_length: int, append_eos: bool = False) -> np.ndarray:
    """Tokens each prompt costs (cut at max_length, as the batches are; the EOS included)."""
    ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    if append_eos:
        return np.array([min(len(x), max_length - 1) + 1 for x in ids], dtype=np.int64)
    return np.minimum(np.array([len(x) for x in ids]), max_length)


def prompt_options(cfg: TeacherTrainConfig) -> dict:
    """Saved in the checkpoint's meta, so extraction and latency runs rebuild the same prompts.
    The options added with the paper presets appear only when they differ from the package's
    defaults, so the meta (and the feature plan hashed from it) of a default teacher is unchanged."""
    out: dict = {"fit_max_length": cfg.max_length if cfg.fit_prompts else None, "token_budget": cfg.token_budget}
    if cfg.pooling == "eos":
        out["append_eos"] = True
    if cfg.prompt_style != "package":
        out["style"] = cfg.prompt_style
    if cfg.authors_prompt_bug:
        out["authors_bug"] = True
    if cfg.max_past_visits is not None:
        out["max_past_visits"] = cfg.max_past_visits
    return out


def text_options(cfg: TeacherTrainConfig) -> dict:
    """The wording options of `prompt_options` (for the untrimmed prompts, e.g. a tiny corpus)."""
    return {k: v for k, v in prompt_options(cfg).items() if k in ("style", "authors_bug", "max_past_visits")}


def prompt_stats(data: dict) -> dict:
    """How much history the length limit cost (the study results show it)."""
    d = [x for v in data.values() for x in v["dropped"]]
    return {"prompts": len(d), "prompts_with_dropped_visits": int(sum(x > 0 for x in d)), "visits_dropped": int(sum(d))}


def prepare_inputs(ds, cfg: TeacherTrainConfig, tokenizer=None) -> dict:
    """Prompts, labels and groups per split; with `fit_prompts`, prompts are fitted to
    `tokenizer` and `max_length` by dropping the oldest whole visits."""
    from leader.data.prompts import teacher_prompts

    out = {}
    opts = prompt_options(cfg)
    for split in ("train", "val", "test"):
        s = ds.samples(split)
        lim = cfg.max_train_samples if split == "train" else cfg.max_eval_samples
        if lim:
            s = s.iloc[:lim]
        ids = s["sample_id"].to_numpy()
        prompts, dropped = teacher_prompts(ds, ids, tokenizer, **opts)
        out[split] = {
            "ids": ids.tolist(),
            "prompts": prompts,
            "dropped": dropped,
            "labels": ds.labels(ids),
            "groups": s["group"].astype(str).tolist(),
        }
    if not out["train"]["ids"]:
        raise ConfigError(f"dataset {ds.name}: empty training split")
    return out


def inputs_and_spec(ds, cfg: TeacherTrainConfig):
    """(prompts per split, backbone spec, tiny-model corpus). A tiny backbone's tokenizer is
    trained on the raw training prompts, so it is built before prompts are fitted to it."""
    from leader.data.prompts import build_prompts
    from leader.teacher.backbones import load_tokenizer, resolve_backbone

    spec = resolve_backbone(cfg.backbone, cfg.backbone_path, seed=cfg.seed)
    corpus = None
    if spec.is_tiny:
        ids = ds.samples("train")["sample_id"].to_numpy()
        ids = ids[: cfg.max_train_samples] if cfg.max_train_samples else ids
        corpus = build_prompts(ds, ids, **text_options(cfg))[:2000]
    path = spec.materialize(corpus)  # build the tiny model once, before workers race for it
    data = prepare_inputs(ds, cfg, load_tokenizer(path) if cfg.fit_prompts else None)
    return data, spec, corpus
