"""What the LEADER paper and the authors' release set, value by value, with where each comes from.

Two presets, because the paper (Liu et al., "LEADER: Large Language Model Distilling Medication
Recommendation", Sec. II-III, Eq. 2-12) and its code (github liuqidong07/LEADER-pytorch) disagree
in places; where they do, `why` says so. A study with `preset: paper` or `preset: authors` starts
from these values; its report diffs the resolved configuration against them ("Deviations from the
paper"). Keys are `<section>.<field>` in the study file's own names where the package has the knob;
a key the package cannot set (`settable=False`) is always a declared deviation with its reason.

Release paths below are relative to the repository root of LEADER-pytorch at its published HEAD.
`NOT_STATED` marks a value the paper's text leaves to its code: the paper preset then takes the
release's value, and the source says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PRESETS = ("paper", "authors")
_DISTILL = "experiment/mimic3/offline_distill.bash"
_DISTILL4 = "experiment/mimic4/offline_distill.bash"
_ARGS = "main_distill.py argparse defaults"
_LLM = "experiment/llm_cls.bash"
_PROC = "llm/data_processor/llama.py"
_NB3, _NB4 = "data/mimic3/construction.ipynb", "data/mimic4/construction.ipynb"
NOT_STATED = "not stated in the paper: the release's value"


@dataclass(frozen=True)
class Setting:
    key: str  # <section>.<field>
    paper: object
    authors: object
    paper_source: str
    authors_source: str
    why: str = ""  # why the two differ, or why the package cannot set it
    settable: bool = True  # the package has this knob under this name
    mimic4: object = None  # the release's MIMIC-IV value where it differs (both presets)
    mimic4_source: str = ""

    def value(self, preset: str, source: str | None = None) -> object:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
        if source == "mimic4" and self.mimic4 is not None:
            return self.mimic4
        return getattr(self, preset)


SETTINGS: tuple[Setting, ...] = (
    # ---- student model (leader/config/student.py: StudentConfig)
    Setting(
        "student.set_pooling",
        "mean",
        "mean",
        "Eq. 5: average of the set encoder's outputs",
        "models/LEADER.py:173 (masked mean)",
    ),
    Setting("student.visit_pooling", "mean", "mean", NOT_STATED, "models/LEADER.py:200 (masked mean over visits)"),
    Setting("student.visit_positions", False, False, NOT_STATED, "models/LEADER.py (no position embedding)"),
    Setting("student.d_model", 64, 64, NOT_STATED, f"{_ARGS}: hidden_size=64"),
    Setting("student.d_embed", 64, 64, NOT_STATED, f"{_ARGS}: hidden_size=64"),
    Setting("student.n_set_layers", 1, 1, NOT_STATED, f"{_ARGS}: num_trm_layers=1"),
    Setting("student.n_visit_layers", 1, 1, NOT_STATED, f"{_ARGS}: num_trm_layers=1"),
    Setting(
        "student.max_visits",
        10,
        10,
        NOT_STATED,
        f"{_ARGS}: max_record_num=10; generators/data.py:182-183 fill_to_max_seq keeps the FIRST 10 records, so "
        "a patient with more than 10 visits loses the current one (a release bug the package does not reproduce: "
        "it keeps the 10 most recent, the current visit last, under both presets)",
    ),
    # ---- student losses (LossConfig)
    Setting("loss.kd", "feature", "feature", "Eq. 9: MSE to the teacher's hidden state", f"{_DISTILL}: --d_loss mse"),
    Setting(
        "loss.alpha",
        0.4,
        0.4,
        NOT_STATED,
        f"{_DISTILL}: --alpha 0.4",
        mimic4=0.8,
        mimic4_source=f"{_DISTILL4}: --alpha 0.8",
    ),
    Setting(
        "loss.beta",
        0.005,
        0.005,
        NOT_STATED,
        f"{_DISTILL}: --align_weight 0.005",
        mimic4=0.01,
        mimic4_source=f"{_DISTILL4}: --align_weight 0.01",
    ),
    Setting("loss.tau", 1.0, 1.0, "Eq. 11-12", "models/utils.py Contrastive_Loss(tau=1)"),
    Setting(
        "loss.kd_input",
        "pre_activation",
        "pre_activation",
        "Eq. 9: W_proj(W1 x + b1)",
        "models/LEADER.py:214 projector(medrec[1](medrec[0](x)))",
    ),
    Setting("loss.kd_target", "raw", "raw", "Eq. 9: the teacher's hidden state", "models/LEADER.py:216 hidden_states"),
    Setting(
        "loss.align_form",
        "paper",
        "paper",
        "Eq. 11-12: positive excluded, both directions",
        "models/utils.py Contrastive_Loss.compute_cl",
    ),
    Setting("loss.kd_head_init", "default", "default", "Eq. 9: W_proj", "models/LEADER.py:125 nn.Linear"),
    # ---- student trainer (StudentTrainFields)
    Setting("train.lr", 5e-4, 5e-4, NOT_STATED, f"{_ARGS}: learning_rate=5e-4"),
    Setting(
        "train.batch_size",
        4,
        4,
        NOT_STATED,
        f"{_DISTILL}: --train_batch_size 4",
        mimic4=16,
        mimic4_source=f"{_DISTILL4}: --train_batch_size 16",
    ),
    Setting("train.epochs", 100, 100, NOT_STATED, f"{_DISTILL}: --num_train_epochs 100"),
    Setting("train.patience", 10, 10, NOT_STATED, f"{_ARGS}: patience=10"),
    Setting("train.weight_decay", 0.0, 0.0, NOT_STATED, f"{_ARGS}: l2=0"),
    Setting(
        "train.threshold",
        0.5,
        0.3,
        "evaluation threshold 0.5",
        f"{_ARGS}: therhold=0.3",
        why="the paper evaluates at 0.5; the release's student default is 0.3",
    ),
    # ---- teacher (leader/config/teacher.py: TeacherTrainConfig)
    Setting("teacher.lora_rank", 8, 8, NOT_STATED, f"{_LLM}: lora_rank=8"),
    Setting("teacher.lora_alpha", 32, 32, NOT_STATED, "llm/arguments.py: lora_alpha=32."),
    Setting("teacher.lr", 2e-4, 2e-4, NOT_STATED, f"{_LLM}: LR=2e-4"),
    Setting("teacher.max_steps", 3000, 3000, NOT_STATED, f"{_LLM}: MAX_STEPS=3000"),
    Setting("teacher.batch_size", 4, 4, NOT_STATED, f"{_LLM}: per_device_train_batch_size 4 (x4 GPUs)"),
    Setting("teacher.grad_accum", 2, 2, NOT_STATED, f"{_LLM}: gradient_accumulation_steps 2"),
    Setting("teacher.max_length", 2048, 2048, NOT_STATED, f"{_LLM}: MAX_SOURCE_LENGTH=2048"),
    Setting("teacher.lp_epochs", 0, 0, NOT_STATED, "main_llm_cls.py (LoRA + head from a fresh head, no probe stage)"),
    Setting("teacher.lora_dropout", 0.1, 0.1, NOT_STATED, f"{_LLM}: lora_dropout=0.1"),
    Setting(
        "teacher.pooling",
        "eos",
        "eos",
        "the state at the appended EOS token",
        f"{_PROC}:150-158 (prompt encoded without special tokens, cut to MAX_SOURCE_LENGTH - 1, then "
        "eos_token_id appended), llm/llama.py:78,97 (the hidden state at the last non-pad token, i.e. that EOS); "
        "main_llm_cls.py:135 (the same processor for prediction). A prompt over the limit loses its END there "
        "(a_ids[: MAX_SOURCE_LENGTH - 1], line 153); the package drops the oldest past visits instead (fit_prompts)",
    ),
    Setting(
        "teacher.checkpoint",
        "last",
        "last",
        NOT_STATED,
        f"{_LLM}:35 save_steps=MAX_STEPS, :52 the test loads checkpoint-$MAX_STEPS (the last state)",
    ),
    Setting(
        "teacher.threshold",
        0.5,
        0.5,
        "evaluation threshold 0.5",
        "main_llm_cls.py:209 evaluate_jsonlines(...) at evaluate.py:10's default threshold=0.5",
    ),
    Setting(
        "teacher.prompt_style",
        "package",
        "authors",
        "Fig. 2 (the package's template, leader/data/prompts.py)",
        f"{_NB3} cell 37 lines 2-3 (templates), cell 40 lines 5 and 20-40 (filled); MIMIC-IV: {_NB4} cell 39",
        why="the release's notebook words it 'In {k} visit', 'he has', counts only past visits in the header and "
        "joins with ' \\n '; it also shows the current visit's diagnoses in every past visit, a bug the authors "
        "preset does NOT reproduce (teacher.authors_prompt_bug)",
    ),
    Setting(
        "teacher.authors_prompt_bug",
        False,
        False,
        "Fig. 2: each past visit with its own diagnoses",
        f"{_NB3} cell 40 line 23 replaces '<DIGNOSIS>' (typo), so line 39's '<DIAGNOSIS>' replace puts the "
        "current visit's diagnoses into every past visit",
        why="a bug of the release, reproduced by NEITHER preset: only a study that sets "
        "teacher.authors_prompt_bug: true (with prompt_style: authors) shows it",
    ),
    Setting(
        "teacher.max_past_visits",
        3,
        3,
        NOT_STATED,
        f"{_NB3} cell 40 lines 29-30 `patient = patient[-3:]` (the 3 most recent past visits)",
    ),
    # ---- evaluation (the study file's `evaluation:` section)
    Setting(
        "evaluation.bootstrap_ddof",
        0,
        0,
        NOT_STATED,
        "utils/utils.py:317 multi_test `result.std(axis=0)` (numpy, ddof 0), via multi_label_metric "
        "from evaluate.py:39",
    ),
)


def _data_settings() -> tuple[Setting, ...]:
    """The data protocol, from leader.config.protocol (the authors' notebooks); the paper's text
    gives the same cohort without the code-level details, so both presets take the release's."""
    from leader.config.protocol import AUTHORS_PROTOCOL, AUTHORS_SOURCES

    return tuple(
        Setting(f"data.{k}", v, v, NOT_STATED, AUTHORS_SOURCES.get(k, "leader/config/protocol.py"))
        for k, v in AUTHORS_PROTOCOL.items()
    )


SETTINGS = _data_settings() + SETTINGS
BY_KEY = {s.key: s for s in SETTINGS}

# The student's design as the paper writes it (equation choices, not tuned numbers): what
# `reports/bench/paper_preset.json` swaps into the package's student to measure what its own
# design changes are worth.
DESIGN_KEYS = (
    "student.set_pooling",
    "student.visit_pooling",
    "student.visit_positions",
    "loss.kd_input",
    "loss.kd_target",
    "loss.kd_head_init",
    "loss.align_form",
    "loss.tau",
)


def design_overrides(preset: str = "paper") -> dict[str, object]:
    """{flat student field: value} of DESIGN_KEYS under `preset`."""
    return {k.split(".", 1)[1]: BY_KEY[k].value(preset) for k in DESIGN_KEYS}


def preset_values(preset: str, section: str | None = None, source: str | None = None) -> dict[str, object]:
    """{field: value} of the settable keys of a preset (of one section when given; `source`
    'mimic4' takes the release's MIMIC-IV values)."""
    out = {}
    for s in SETTINGS:
        sec, name = s.key.split(".", 1)
        if s.settable and (section is None or sec == section):
            out[name if section else s.key] = s.value(preset, source)
    return out


def single_source(datasets) -> str | None:
    """The datasets' one source when they share it ('mimic4' selects the release's MIMIC-IV values
    for the study-wide student and teacher settings), else None (the MIMIC-III values)."""
    sources = {str(d.get("source")) for d in datasets or [] if isinstance(d, dict | Mapping)}
    return sources.pop() if len(sources) == 1 else None


@dataclass(frozen=True)
class Deviation:
    key: str
    reference: object  # the preset's value
    value: object  # what the study runs
    reason: str

    def line(self) -> str:
        return f"{self.key}: {self.reference!r} in the reference, {self.value!r} here ({self.reason})"


OVERRIDE = "user override"
PROJECT_CHOICE = "documented project choice"


def deviations(
    preset: str, resolved: dict[str, object], overrides: set[str] | frozenset = frozenset(), source: str | None = None
) -> list[Deviation]:
    """Every way the resolved study differs from the preset, one entry per key, in reference order.

    `resolved` maps `<section>.<field>` to what the study runs; `overrides` names the keys the user
    set (study file or `--set`) on top of the preset. A key the package cannot set deviates by
    design: its reason is the reference's `why`."""
    out = []
    for s in SETTINGS:
        ref = s.value(preset, source)
        if not s.settable:
            out.append(Deviation(s.key, ref, resolved.get(s.key, "n/a"), f"{PROJECT_CHOICE}: {s.why}"))
        elif s.key in resolved and not _same(resolved[s.key], ref):
            reason = OVERRIDE if s.key in overrides else PROJECT_CHOICE + (f": {s.why}" if s.why else "")
            out.append(Deviation(s.key, ref, resolved[s.key], reason))
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
    return a == b
