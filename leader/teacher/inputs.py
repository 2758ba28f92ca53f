"""What the teacher reads: the prompts of each split (fitted to its tokenizer) and batches of
token ids. Every forward of a teacher (training step, validation, LP frozen pass, feature
extraction) tokenises through `encode`, so a prompt is cut the same way wherever it is read.

Why length buckets: inference pads each batch only to its own longest prompt, so batching prompts
of similar length spends (almost) no FLOPs on padding.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from leader.config.teacher import TeacherTrainConfig
from leader.errors import ConfigError


def encode(tokenizer, prompts: list[str], max_length: int, device=None):
    """Token ids and mask (B, L), padded to the longest prompt, cut on the tokenizer's side (left:
    see backbones.prepare_tokenizer), on `device`: DeepSpeed moves the model, never the inputs."""
    enc = tokenizer(prompts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    if device is None:
        return enc["input_ids"], enc["attention_mask"]
    return enc["input_ids"].to(device, non_blocking=True), enc["attention_mask"].to(device, non_blocking=True)


def length_buckets(tokenizer, prompts: list[str], batch_size: int) -> list[np.ndarray]:
    """Index batches of prompts sorted by token length, longest first."""
    lens = (
        np.array([len(x) for x in tokenizer(prompts, add_special_tokens=True)["input_ids"]]) if prompts else np.zeros(0)
    )
    order = np.argsort(-lens, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def encoded_batches(
    tokenizer, prompts: list[str], max_length: int, batch_size: int, device=None
) -> Iterator[tuple[np.ndarray, object, object]]:
    """(indices into `prompts`, ids, mask) per length bucket: the one inference batching."""
    for idx in length_buckets(tokenizer, prompts, batch_size):
        ids, mask = encode(tokenizer, [prompts[i] for i in idx], max_length, device)
        yield idx, ids, mask


def token_lengths(tokenizer, prompts: list[str], max_length: int) -> np.ndarray:
    """Tokens each prompt costs (cut at max_length, as the batches are)."""
    ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    return np.minimum(np.array([len(x) for x in ids]), max_length)


def prompt_options(cfg: TeacherTrainConfig) -> dict:
    """Saved in the checkpoint's meta, so extraction and latency runs rebuild the same prompts."""
    return {"fit_max_length": cfg.max_length if cfg.fit_prompts else None, "token_budget": cfg.token_budget}


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
        corpus = build_prompts(ds, ids[: cfg.max_train_samples] if cfg.max_train_samples else ids)[:2000]
    path = spec.materialize(corpus)  # build the tiny model once, before workers race for it
    data = prepare_inputs(ds, cfg, load_tokenizer(path) if cfg.fit_prompts else None)
    return data, spec, corpus
