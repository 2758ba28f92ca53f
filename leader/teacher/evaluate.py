"""Inference inside a teacher run, sharded over the ranks: validation, test metrics by group, and
the LP stage's frozen pass.

Why equal shards: under ZeRO-3 every forward is collective (each rank gathers the parameters it
lacks), so every rank must run the same number of batches; the last rank repeats an item rather
than run fewer. Results are gathered back in input order on every rank.
"""

from __future__ import annotations

import math

import numpy as np

from leader.teacher.inputs import encoded_batches


def shard_gather(fn, items: list, rank: int, world: int, dist) -> list:
    """Run `fn` on this rank's contiguous slice (equal sizes) and gather every rank's outputs back
    in `items` order. `fn(list) -> np.ndarray` with one row per item."""
    n = len(items)
    per = math.ceil(n / world) if n else 0
    idx = [min(i, n - 1) for i in range(rank * per, (rank + 1) * per)] if n else []
    mine = (list(range(rank * per, (rank + 1) * per)), fn([items[j] for j in idx]) if idx else None)
    if world == 1:
        return list(mine[1][:n]) if n else []
    gathered = [None] * world
    dist.all_gather_object(gathered, mine)
    out = [None] * n
    for pos, rows in gathered:
        for k, j in enumerate(pos):
            if j < n and rows is not None:
                out[j] = rows[k]
    return out


def predict(module, prompts: list[str], max_length: int, bs: int, device=None):
    """Sigmoid probabilities of `prompts` (in order), batched by token length."""
    import torch

    out = np.zeros((len(prompts), module.cfg.n_meds), np.float32)
    with torch.no_grad():
        for idx, ii, mm in encoded_batches(module.tokenizer, prompts, max_length, bs, device, module.append_eos):
            logits, _ = module(ii, mm)
            out[idx] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def eval_sharded(engine, prompts, max_length, bs, rank, world, dist):
    """Probabilities of `prompts` from the engine's module, every rank computing its shard."""
    engine.eval()
    fn = lambda ps: predict(engine.module, ps, max_length, bs, engine.device)  # noqa: E731
    rows = shard_gather(fn, prompts, rank, world, dist)
    engine.train()
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, engine.module.cfg.n_meds), np.float32)


def group_metrics(y, p, groups, prefix: str, threshold: float = 0.5) -> dict:
    """Bootstrap means by patient group (overall / single / multi visit), named `<prefix>_<group>_<metric>`;
    F1 and Jaccard at `threshold` (the teacher's `threshold` option, 0.5 when unset)."""
    from leader.metrics import bootstrap_metrics, summarize

    s = summarize(bootstrap_metrics(y, p, np.asarray(groups), threshold=threshold))
    return {f"{prefix}_{r.group}_{r.metric}": float(r.mean) for r in s.itertuples()}
