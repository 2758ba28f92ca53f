"""The fine-tuning recipe every teacher run shares: the model as the options describe it, the
head's own learning rate and prior init, and the two guards that fail a run loudly (a teacher
that learned nothing, too many non-finite steps).

Why a prior-initialised head in its own parameter group: a fresh head starts at p = 0.5 for every
drug (true rate ~15 %) and must grow far faster than LoRA's small updates.
"""

from __future__ import annotations

import math

import numpy as np

from leader.config.teacher import TeacherTrainConfig
from leader.errors import LeaderError
from leader.teacher.deepspeed_config import resolve_precision


def build_model(cfg: TeacherTrainConfig, n_meds: int, backbone_path: str | None, corpus, *, train: bool = True):
    """The teacher as `cfg` describes it, the same in every worker and in the ZeRO-3 save copy."""
    from leader.teacher.model import build_teacher, enable_gradient_checkpointing

    model = build_teacher(
        cfg.backbone,
        n_meds,
        cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        seed=cfg.seed,
        backbone_path=backbone_path,
        corpus=corpus,
        pooling=cfg.pooling,
    )
    if train and cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    dev = "cuda" if cfg.use_gpu else "cpu"
    model.set_precision(resolve_precision(cfg, dev), dev, cpu_kernels=cfg.cpu_kernels)
    return model


def optimizer_groups(model, cfg: TeacherTrainConfig) -> list[dict]:
    """LoRA at `lr`, the head in its own group at `lr * head_lr_mult`."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("head.")]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    return [
        {"params": lora, "lr": cfg.lr, "name": "lora"},
        {"params": head, "lr": cfg.lr * cfg.head_lr_mult, "name": "head"},
    ]


def init_head(model, cfg: TeacherTrainConfig, y_train: np.ndarray) -> None:
    if cfg.head_init == "prior":
        model.init_head_from_prior(np.asarray(y_train, np.float64).mean(0))


class LearnedNothingError(LeaderError):
    """The teacher's training loss never went below what drug frequencies alone give."""


class NonFiniteLossError(LeaderError):
    """Too many consecutive optimizer steps had a NaN/inf loss (fp16 overflow, a broken batch)."""


def check_learning(metrics: dict, cfg: TeacherTrainConfig) -> None:
    """The learned-nothing guard: a teacher at the prior-level BCE distils noise into every
    student downstream, so the stage fails loudly instead of passing its features on."""
    final, prior = metrics.get("final_train_loss"), metrics.get("prior_bce")
    if cfg.require_learning and final is not None and prior is not None and not final < prior:
        raise LearnedNothingError(
            f"teacher {cfg.backbone}: final training loss {final:.4f} is not below the prior-level BCE {prior:.4f} "
            f"(predicting each drug at its training frequency): it learned nothing about the patients. Try a higher "
            f"lr / head_lr_mult, more steps, or lp_epochs > 0 (set require_learning: false to keep it anyway)."
        )


def final_train_loss(losses: list[float]) -> float | None:
    """Mean of the last 10 % of step losses (one step is too noisy to judge); skipped non-finite
    steps are recorded as NaN and left out."""
    finite = [x for x in losses if x is not None and math.isfinite(x)]
    if not finite:
        return None
    k = max(1, len(finite) // 10)
    return float(np.mean(finite[-k:]))
