"""Student losses: BCE + alpha * KD + beta * profile alignment (LEADER, Sec. 3.3).

Contract:
    bce(logits (B,M), targets (B,M)) -> scalar
    feature_kd(h_teacher (B,d_h), z_student (B,d), proj: nn.Linear(d, d_h)) -> scalar MSE
    output_kd(student_logits (B,M), teacher_probs (B,M), temperature) -> scalar
    profile_alignment(p (B,d), m (B,d), tau) -> scalar symmetric InfoNCE (positive in the denominator)
    profile_alignment_paper(p, m, tau) -> scalar, Eq. 11-12 exactly (LossConfig.align_form='paper')
    LossConfig(kd, alpha, beta, tau, kd_temperature, align) ; total_loss(...)

The projector width follows the teacher's hidden size (d_h is read from the features), so any
backbone distils into the same student. Each ablation is a switch on LossConfig.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leader.config.student import LossConfig


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets.float())


def feature_kd(h_teacher: torch.Tensor, z_student: torch.Tensor, proj: nn.Module) -> torch.Tensor:
    """MSE between the teacher hidden state (B, d_h) and proj(student first-MLP output)."""
    return F.mse_loss(proj(z_student), h_teacher.float())


def output_kd(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """BCE between temperature-softened teacher and student probabilities, times T^2 (Hinton)
    so the gradient scale does not shrink with T. Each drug is an independent Bernoulli, so
    this is the per-label KL up to the teacher's (constant) entropy."""
    t = float(temperature)
    p = teacher_probs.float().clamp(1e-6, 1 - 1e-6)
    soft_target = torch.sigmoid(torch.logit(p) / t)
    return F.binary_cross_entropy_with_logits(student_logits / t, soft_target) * t * t


def profile_alignment(p: torch.Tensor, m: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE: the i-th profile should match the i-th target medication set
    against the other sets in the batch (and vice versa)."""
    p = F.normalize(p, dim=-1)
    m = F.normalize(m, dim=-1)
    sim = p @ m.T / tau  # (B, B)
    target = torch.arange(p.shape[0], device=p.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


def profile_alignment_paper(p: torch.Tensor, m: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Eq. 11-12 as written (and as the authors' Contrastive_Loss computes it): cosine similarity,
    the positive EXCLUDED from the denominator, the two directions summed, mean over the batch."""
    sim = F.cosine_similarity(p.unsqueeze(1), m.unsqueeze(0), dim=2) / tau  # (B, B): sim[i, j] = cos(p_i, m_j)
    e = torch.exp(sim)
    pos = torch.diagonal(e)  # (B,)
    p_to_m = -torch.log(pos / (e.sum(0) - pos))  # column sums: the profiles' negatives for m_i
    m_to_p = -torch.log(pos / (e.sum(1) - pos))  # row sums: the sets' negatives for p_i
    return (p_to_m + m_to_p).mean()


ALIGNMENTS = {"symmetric_ce": profile_alignment, "paper": profile_alignment_paper}


def total_loss(
    out: dict,
    targets: torch.Tensor,
    cfg: LossConfig,
    proj: nn.Module | None = None,
    h_teacher: torch.Tensor | None = None,
    teacher_probs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """BCE + alpha*KD + beta*align; returns (loss, parts as floats)."""
    loss = bce(out["logits"], targets)
    parts = {"bce": float(loss.detach())}
    if cfg.kd == "feature" and cfg.alpha > 0:
        kd = feature_kd(h_teacher, out["z_pre" if cfg.kd_input == "pre_activation" else "z"], proj)
        loss = loss + cfg.alpha * kd
        parts["kd"] = float(kd.detach())
    elif cfg.kd == "output" and cfg.alpha > 0:
        kd = output_kd(out["logits"], teacher_probs, cfg.kd_temperature)
        loss = loss + cfg.alpha * kd
        parts["kd"] = float(kd.detach())
    if cfg.align and cfg.beta > 0 and "align_m" in out and out["align_p"].shape[0] > 1:
        al = ALIGNMENTS[cfg.align_form](out["align_p"], out["align_m"], cfg.tau)
        loss = loss + cfg.beta * al
        parts["align"] = float(al.detach())
    return loss, parts
