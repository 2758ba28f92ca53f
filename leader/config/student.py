"""The student's configs, torch-free: `leader study validate` checks study files against these
very classes (leader.study.options), without importing torch, so no mirror can drift.

    StudentConfig       model (LeaderStudent)
    LossConfig          loss terms (BCE + alpha * KD + beta * alignment)
    StudentTrainFields  trainer scalars (lr, epochs, ...)
    StudentTrainConfig  StudentTrainFields + student + loss; fields may be named flat
                        (leader.config.flat translates them)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StudentConfig(BaseModel):
    """LEADER(S) model hyper-parameters (leader.student.model)."""

    model_config = ConfigDict(extra="forbid")
    d_embed: int = Field(64, ge=4, description="Code embedding width d_e.")
    d_model: int = Field(64, ge=4, description="Transformer / representation width d_t.")
    n_set_layers: int = Field(1, ge=1, description="Transformer layers in each code-set encoder.")
    n_visit_layers: int = Field(1, ge=1, description="Transformer layers in the visit encoder.")
    n_heads: int = Field(4, ge=1, description="Attention heads (must divide d_model).")
    dropout: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="Dropout in encoders and MLP. 0.3: at 0.1 the student overfits a 1,000-patient cohort "
        "within ~10 epochs (reports/bench/student_design.json).",
    )
    max_visits: int = Field(10, ge=1, description="Keep at most this many MOST RECENT visits (current included).")
    max_codes: int = Field(64, ge=1, description="Truncate a code set to this many codes.")
    shared_visit_encoder: bool = Field(
        True, description="One visit encoder for diag/proc/med sequences (False: one per type, ablation)."
    )
    set_pooling: Literal["mean", "sum"] = Field(
        "sum",
        description="Pool a code set's encoded codes by their sum (an embedding bag: each code adds its evidence, "
        "as in the multi-hot baselines) or by their mean (one code's weight shrinks as the set grows).",
    )
    wide: bool = Field(
        False,
        description="Add a linear path from the current visit's codes and the previous visit's drugs to the "
        "logits (Wide & Deep, Cheng et al. 2016): the multi-hot logistic regression baseline's function class "
        "inside the student. A deviation from the paper's LEADER(S).",
    )
    visit_pooling: Literal["mean", "current"] = Field(
        "current",
        description="Summarise a visit sequence by the mean over its visits, or by the encoder's output at the "
        "current visit (the profile pseudo-record for medications), which attends to the history.",
    )
    visit_positions: bool = Field(
        True,
        description="Add learned recency positions (0 = current visit) to the visit sequences; the authors' "
        "release adds none (models/LEADER.py), which with visit_pooling='mean' makes the readout order-free.",
    )


class LossConfig(BaseModel):
    """The student's loss terms (leader.student.losses); each ablation is a switch here."""

    model_config = ConfigDict(extra="forbid")
    kd: Literal["feature", "output", "none"] = Field(
        "feature", description="Distillation: teacher hidden-state MSE, teacher-probability KD, or none."
    )
    alpha: float = Field(0.5, ge=0, description="Weight of the KD term.")
    beta: float = Field(0.1, ge=0, description="Weight of the profile alignment (InfoNCE) term.")
    tau: float = Field(0.1, gt=0, description="InfoNCE temperature.")
    kd_temperature: float = Field(1.0, gt=0, description="Temperature for output KD.")
    align: bool = Field(True, description="Use the profile alignment loss.")
    kd_shuffle: bool = Field(
        False,
        description="Negative control: distil from teacher states permuted across training "
        "samples (same statistics, no information about the patient).",
    )
    kd_head_init: Literal["teacher_mean", "default"] = Field(
        "teacher_mean",
        description="Start of the feature-KD projection: zero weights and the teacher's train-mean state as "
        "bias (KD starts at the states' variance and cannot pull the student's representation to zero), or "
        "torch's default Linear init.",
    )
    kd_target: Literal["raw", "standardized"] = Field(
        "standardized",
        description="Feature-KD target: the teacher's hidden state z-scored per dimension with train-split "
        "statistics (default; a deviation from Eq. 9 in scale only), so alpha weighs the same for every "
        "backbone, or the raw state as Eq. 9 writes it. Raw MiniLM states have E[h^2] ~ 0.008, so alpha * MSE "
        "is ~0 and raw feature-KD leaves the student as it is without KD (README, 'Does the method hold here?').",
    )

    kd_input: Literal["hidden", "pre_activation"] = Field(
        "hidden",
        description="Student side of feature KD: the first MLP layer's output after ReLU and dropout (the "
        "representation the output layer reads), or W1 x + b1 before them, as Eq. 9 and the authors' release "
        "write it.",
    )
    align_form: Literal["symmetric_ce", "paper"] = Field(
        "symmetric_ce",
        description="Alignment loss: the mean of the two directions' cross-entropy over the batch (the positive "
        "in the denominator, CLIP-style), or Eq. 11-12 as written: cosine similarity, the positive excluded from "
        "the denominator, both directions summed.",
    )


class StudentTrainFields(BaseModel):
    """The trainer's own scalar settings (named flat in study files and sweeps)."""

    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay.")
    epochs: int = Field(30, ge=1, description="Maximum epochs.")
    batch_size: int = Field(64, ge=2, description="Training batch size (also the InfoNCE negatives pool).")
    patience: int = Field(5, ge=1, description="Stop after this many epochs without a better validation PRAUC.")
    seed: int = Field(0, description="Seed for init, shuffling and dropout.")
    threshold: float = Field(0.5, gt=0, lt=1, description="Decision threshold for Jaccard/F1 (p > threshold).")
    init_bias_from_prior: bool = Field(True, description="Start the output bias at logit(train drug frequency).")
    num_threads: int = Field(1, ge=1, description="torch intra-op threads (the trial's CPUs).")


class StudentTrainConfig(StudentTrainFields):
    """Everything train_student needs: trainer settings, the model (`student`) and the loss."""

    model_config = ConfigDict(extra="forbid")
    student: StudentConfig = Field(default_factory=StudentConfig, description="Model hyper-parameters.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Loss terms: KD kind and weight, alignment.")

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data):
        """Study files, the CLI and sweeps name fields flat (alpha, d_model, ...), as the paper does."""
        from leader.config.flat import nest_student  # flat.py reads this module's classes

        return nest_student(data, strict=False) if isinstance(data, dict) else data
