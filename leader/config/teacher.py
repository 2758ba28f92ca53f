"""The teacher's training options, torch-free: the study file's `teacher.options` block IS this
class (leader.study.options subclasses it), so what `leader study validate` accepts is what the
worker trains with. Validated once, where the study file (or the CLI's --set) is read; after that
the object itself travels to the worker (see `run_config`), never re-parsed from a dict.

Fault injection for the resume tests is no field here: a study file cannot ask for a crash. It is
read from $LEADER_TEST_FAIL_AT_STEP by the driver (`fail_at_step`).
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from leader.errors import ConfigError

FAIL_AT_STEP_ENV = "LEADER_TEST_FAIL_AT_STEP"


class TeacherTrainConfig(BaseModel):
    """One LoRA fine-tuning run of a teacher (LP-FT recipe, DeepSpeed ZeRO-2/3, Ray Train)."""

    backbone: str = Field(
        "tiny-llama",
        description="Registry name (llama-7b, qwen-7b, qwen-1.8b, tiny-llama, tiny-qwen2, minilm, smollm2-135m) "
        "or a local checkpoint folder.",
    )
    backbone_path: str | None = Field(
        None, description="Explicit local folder for a large backbone (else its $LEADER_*_PATH env var)."
    )
    workers: int = Field(2, ge=1, description="Ray Train workers (one process each; one GPU each when use_gpu).")
    use_gpu: bool = Field(False, description="Give each worker a GPU (NCCL); False = CPU/gloo.")
    zero_stage: Literal[2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    deepspeed_config: str | None = Field(
        None,
        description="DeepSpeed JSON (default: cluster/deepspeed/zero{2,3}_v100_fp16.json on GPUs, "
        "zero{2,3}_cpu.json on CPU); batch sizes, grad accumulation, precision and offload are then set from "
        "this config's fields.",
    )
    cpus_per_worker: float = Field(1, gt=0, description="CPUs Ray reserves for each training worker.")
    fp16: bool = Field(False, description="fp16 mixed precision with loss scaling (GPU only).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Backbone number format (leader.precision): auto = bf16 autocast on a CPU with AVX512-BF16/AMX, "
        "else fp32; on GPUs the fp16 flag (DeepSpeed loss scaling). Master weights, head and loss stay fp32.",
    )
    cpu_kernels: bool = Field(
        True,
        description="On a CPU, the backbone's kernels from leader.teacher.cpu_kernels (fp32 attention, 16-bit "
        "dropout draws, a bf16-stored frozen base under bf16); false = transformers' own (for comparison).",
    )
    cpu_offload: bool = Field(False, description="Offload optimizer state (and ZeRO-3 params) to CPU memory.")
    epochs: int = Field(1, ge=1, description="Passes over the training split.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (across epochs).")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate (AdamW) of the LoRA weights.")
    head_lr_mult: float = Field(
        10.0,
        gt=0,
        description="The head's LR = lr x this (own parameter group): a fresh head "
        "must grow far faster than LoRA's small updates.",
    )
    head_init: Literal["prior", "default"] = Field(
        "prior",
        description="prior: head bias = logit(train frequency of each "
        "drug), weights 0; default: nn.Linear's init (p ~ 0.5 everywhere).",
    )
    lp_epochs: int = Field(
        0,
        ge=0,
        description="LP-FT: epochs of a linear probe on cached frozen features before "
        "LoRA fine-tuning (0 = off). Costs one forward pass over train + val.",
    )
    lp_lr: float = Field(1e-2, gt=0, description="Adam LR of the linear-probe stage.")
    lp_weight_decay: float = Field(0.0, ge=0, description="Weight decay of the linear-probe stage.")
    standardize: bool | None = Field(
        None,
        description="Fixed standardisation of the pooled state before the head, from "
        "frozen train features (default: on when lp_epochs > 0).",
    )
    checkpoint: Literal["best", "last"] = Field(
        "best",
        description="Which state the teacher keeps: best = the best validation PRAUC (the probe included, so "
        "never below its own linear probe); last = the final LoRA + head state, as the authors' release "
        "(save_steps = MAX_STEPS).",
    )
    pooling: Literal["last", "eos"] = Field(
        "last",
        description="The state the head reads: last = the last non-pad token of the prompt (encoders: the "
        "masked mean); eos = the tokenizer's EOS token appended to every prompt, and the state AT it, as the "
        "authors' release (the prompts are fitted to max_length with that token included).",
    )
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Probability threshold of the teacher's test F1/Jaccard (its own test metrics and "
        "LEADER(T)'s rows in a study). None = the study's student threshold (train.threshold), 0.5 outside "
        "a study.",
    )
    prompt_style: Literal["package", "authors"] = Field(
        "package",
        description="Prompt wording (leader.data.prompts): package = 'In the k-th visit, ...' (the paper's Fig. "
        "2); authors = the release's notebook templates ('In k visit, ...', 'he has', the header counts past "
        "visits).",
    )
    authors_prompt_bug: bool = Field(
        False,
        description="Reproduce the release's prompt bug: every past visit shows the CURRENT visit's diagnoses. "
        "Needs prompt_style: authors; no preset sets it.",
    )
    max_past_visits: int | None = Field(
        None,
        ge=0,
        description="Show at most this many past visits (the most recent; the release shows 3); None = all "
        "that fit max_length.",
    )
    eval_every: int = Field(0, ge=0, description="Also validate every N optimizer steps (0 = epoch ends only).")
    require_learning: bool = Field(
        True,
        description="Fail the run when the final training loss is not below the "
        "prior-level BCE (the teacher learned nothing about patients).",
    )
    length_buckets: bool = Field(
        True,
        description="Batch prompts of similar token length together across the epoch (shuffled buckets): less "
        "padding computed. False = random global batches (each still sorted into micro batches).",
    )
    fit_prompts: bool = Field(
        True,
        description="Drop the OLDEST whole past visits until a prompt fits max_length "
        "tokens (else the tokenizer cuts mid-visit on the left).",
    )
    progress_every_s: float = Field(15.0, ge=0, description="Worker 0 prints a progress line at most this often.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(4, ge=1, description="Micro batch per worker.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    grad_clip: float = Field(1.0, ge=0, description="Global gradient norm clip (0 = off).")
    max_length: int = Field(256, ge=8, description="Max prompt tokens (see fit_prompts; the rest is cut on the LEFT).")
    token_budget: int | None = Field(
        None, description="Word budget passed to build_prompts (drops oldest past visits first)."
    )
    schedule: Literal["cosine", "linear"] = Field("cosine", description="LR decay after warmup.")
    warmup: float = Field(0.0, ge=0, description="Warmup: fraction of total steps if < 1, else a step count.")
    checkpoint_every: int = Field(
        0, ge=0, description="Report a Ray Train checkpoint every N optimizer steps (0 = only at epoch ends)."
    )
    num_to_keep: int = Field(2, ge=1, description="Checkpoints kept by Ray Train.")
    seed: int = Field(0, description="Seed of init, LoRA, head and data order.")
    lora_rank: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the LoRA branch (the authors' release uses 0.1)."
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute backbone activations in backward: needed for 7B models with long prompts on "
        "32 GB V100s.",
    )
    max_failures: int = Field(
        3,
        ge=-1,
        description="Ray Train worker-group restarts after a failure (resume from the latest checkpoint); "
        "-1 = unlimited. Each preemption of a spot GPU node costs one.",
    )
    max_nonfinite_steps: int = Field(
        10,
        ge=1,
        description="Consecutive optimizer steps whose loss is NaN/inf (fp16 overflow in the forward) before the "
        "run fails; each such step is skipped on every rank and counted.",
    )
    max_train_samples: int | None = Field(
        None, ge=1, description="Use only the first N training samples (smoke tests)."
    )
    max_eval_samples: int | None = Field(None, ge=1, description="Use only the first N val/test samples.")
    eval_batch_size: int = Field(16, ge=1, description="Batch size of validation/test inference.")
    eval_test: bool = Field(True, description="Compute final test metrics by group.")

    @model_validator(mode="before")
    @classmethod
    def _no_fault_injection(cls, data: object) -> object:
        if isinstance(data, dict) and "fail_at_step" in data:
            raise ValueError(
                f"fail_at_step is not a teacher option (fault injection for tests only: set ${FAIL_AT_STEP_ENV})"
            )
        return data

    @model_validator(mode="after")
    def _bug_needs_the_authors_wording(self):
        if self.authors_prompt_bug and self.prompt_style != "authors":
            raise ValueError("authors_prompt_bug reproduces the release's prompt: it needs prompt_style: authors")
        return self

    @property
    def uses_standardization(self) -> bool:
        return self.lp_epochs > 0 if self.standardize is None else bool(self.standardize)


def run_config(options: TeacherTrainConfig, backbone: str, **defaults: object) -> TeacherTrainConfig:
    """The options of one teacher run: `backbone` set, `defaults` (workers, use_gpu, cpus_per_worker
    from the study's resources) for the fields the study file left unset. The options were
    validated when the study was read, so they are copied as they are, not validated again."""
    unset = {k: v for k, v in defaults.items() if k not in options.model_fields_set}
    values = {**dict(options), "backbone": backbone, **unset}
    return TeacherTrainConfig.model_construct(options.model_fields_set | {"backbone", *unset}, **values)


def fail_at_step() -> int | None:
    """Test-only fault injection: the last worker exits at this step on its first attempt."""
    raw = os.environ.get(FAIL_AT_STEP_ENV, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"${FAIL_AT_STEP_ENV}: {raw!r} is not a step number") from None
