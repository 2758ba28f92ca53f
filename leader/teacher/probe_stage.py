"""The LP stage of LP-FT inside a teacher run (see leader.teacher.probe for why): a frozen pass over
the prompts it needs, sharded over the ranks on the training device; the standardisation and the
linear probe fitted on rank 0; the result broadcast so every rank fine-tunes from the same head.
"""

from __future__ import annotations

import time

import numpy as np

from leader.config.teacher import TeacherTrainConfig
from leader.teacher.evaluate import shard_gather


def head_of(state: dict) -> dict:
    """The head's tensors of a trainable state (keys 'weight', 'bias'), e.g. to seed the LP copy."""
    return {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}


def _fit_probe_head(head, cfg: TeacherTrainConfig, H_tr, y_tr, H_va, y_va) -> dict:
    """Rank 0, on a CPU copy of the head: the standardisation of the frozen states, then the
    linear probe on them (LP of LP-FT)."""
    from leader.teacher.probe import fit_probe

    mean, std = H_tr.mean(0), H_tr.std(0)
    head.set_standardization(mean, std)
    res = None
    if cfg.lp_epochs and H_va is not None:
        res = fit_probe(
            head,
            H_tr,
            y_tr,
            H_va,
            np.asarray(y_va),
            epochs=cfg.lp_epochs,
            lr=cfg.lp_lr,
            weight_decay=cfg.lp_weight_decay,
            seed=cfg.seed,
        )
    return {
        "mean": mean,
        "std": std,
        "head": res.head_state if res else None,
        "probe_val_prauc": res.best_val_prauc if res else None,
        "probe_epoch": res.best_epoch if res else None,
        "probe_history": res.history if res else [],
    }


def _frozen_states(module, cfg: TeacherTrainConfig, data: dict, rank: int, world: int, dist, device) -> dict:
    """Pooled states of the frozen backbone (LoRA still at its zero init) for the prompts the LP
    stage needs, sharded over ranks and computed on the training device."""
    from leader.teacher.probe import frozen_features

    tr, va, te = data["train"], data["val"], data["test"]
    n_norm = len(tr["prompts"]) if cfg.lp_epochs else min(256, len(tr["prompts"]))
    # a fresh run, before its first step: LoRA is at its zero init, so its adapters add nothing
    feats = lambda ps: frozen_features(module, ps, cfg.max_length, cfg.eval_batch_size, device, skip_zero_adapters=True)  # noqa: E731
    want_val = bool(cfg.lp_epochs and va["prompts"])
    want_test = bool(cfg.lp_epochs and cfg.eval_test and te["prompts"])
    if rank == 0:
        n_all = n_norm + len(va["prompts"]) * want_val + len(te["prompts"]) * want_test
        print(
            f"[teacher] frozen pass over {n_all} prompts on {world} worker(s), {device} "
            f"(linear probe: {cfg.lp_epochs} epochs)",
            flush=True,
        )
    return {
        "n_norm": n_norm,
        "H_tr": np.stack(shard_gather(feats, tr["prompts"][:n_norm], rank, world, dist)),
        "H_va": np.stack(shard_gather(feats, va["prompts"], rank, world, dist)) if want_val else None,
        "H_te": np.stack(shard_gather(feats, te["prompts"], rank, world, dist)) if want_test else None,
    }


def _fit_on_rank0(H: dict, cfg: TeacherTrainConfig, data: dict, head_state, out: dict) -> dict:
    """Standardisation + probe on a CPU copy of the head; the probe's test probabilities go to `out`."""
    import torch

    from leader.metrics import mean_metrics
    from leader.teacher.model import TeacherHead

    tr, te = data["train"], data["test"]
    print(f"[teacher] frozen pass done in {out['frozen_pass_s']:.0f} s", flush=True)
    head = TeacherHead(H["H_tr"].shape[1], len(tr["labels"][0]), head_state)
    fit = _fit_probe_head(
        head, cfg, H["H_tr"], np.asarray(tr["labels"])[: H["n_norm"]], H["H_va"], data["val"]["labels"]
    )
    if fit["head"] is not None:
        head.head.load_state_dict(fit["head"])
    if H["H_te"] is not None:
        with torch.no_grad():
            p_te = torch.sigmoid(head.head_logits(torch.from_numpy(H["H_te"]))).numpy()
        out["probe_test_probs"] = p_te
        out["probe_test_prauc"] = mean_metrics(np.asarray(te["labels"]), p_te)["prauc"]
        fit["probe_test_prauc"] = out["probe_test_prauc"]
    if fit["probe_val_prauc"] is not None:
        print(
            f"[teacher] linear probe: val PRAUC {fit['probe_val_prauc']:.3f} (epoch {fit['probe_epoch']})", flush=True
        )
    return fit


def probe_stage(module, cfg: TeacherTrainConfig, data: dict, rank: int, world: int, dist, device, head_state) -> dict:
    """Frozen pass (sharded over ranks, on `device`) -> standardisation -> linear probe, fitted on
    rank 0 on a CPU copy of the head (`head_state`: its current weights) and broadcast, so every
    rank starts fine-tuning from the same head. Returns the fitted norm and head ('mean', 'std',
    'head') and what the checkpoint must remember (probe metrics, probe test probabilities)."""
    t0 = time.perf_counter()
    H = _frozen_states(module, cfg, data, rank, world, dist, device)
    out: dict = {"frozen_pass_s": time.perf_counter() - t0, "frozen_pass_device": str(device)}
    payload: list = [_fit_on_rank0(H, cfg, data, head_state, out) if rank == 0 else None]
    if world > 1:
        dist.broadcast_object_list(payload, src=0)
    got = payload[0]
    out.update({k: got.get(k) for k in ("mean", "std", "head", "probe_val_prauc", "probe_epoch", "probe_history")})
    if got.get("probe_test_prauc") is not None:
        out["probe_test_prauc"] = got["probe_test_prauc"]
    return out
