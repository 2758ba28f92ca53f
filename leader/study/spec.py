"""The study file schema: one YAML declares data, teachers, the student search, ablations,
sensitivity grids, seeds, resources and report outputs. Validated completely before anything
runs; every error names the field and the file:line it came from."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leader.baselines import TRIVIAL_BASELINES, TUNED_BASELINES
from leader.errors import ConfigError
from leader.metrics import BOOTSTRAP_DDOF
from leader.report.names import FIGURE_ALIASES, TABLE_ALIASES
from leader.report.names import FIGURES as REPORT_FIGURES
from leader.report.names import TABLES as REPORT_TABLES
from leader.study.options import (
    PARAM_NAMES,
    PrepareSpec,
    StudentOptions,
    TeacherOptions,
    check_student,
    did_you_mean,
    is_student_param,
)
from leader.study.preset import apply_preset, preset_overlay
from leader.study.space import Dist, SearchSpec
from leader.study.variants import AblationSpec, SensitivitySpec
from leader.study.yamlmap import LineMap, load_with_extends, where

TABLES = (*TABLE_ALIASES, *REPORT_TABLES)
FIGURES = (*FIGURE_ALIASES, *REPORT_FIGURES)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- data / teacher
class DatasetSpec(_Strict):
    name: str = Field(description="Short name used in result tables and folder names.", pattern=r"^[A-Za-z0-9_.-]+$")
    source: Literal["demo", "synthetic", "mimic3", "mimic4"] = Field(description="Which reader builds the dataset.")
    root: str | None = Field(None, description="Folder with the CSVs (demo: found automatically; synthetic: unused).")
    optional: bool = Field(False, description="Skip this dataset (with a note) when its files are not on this machine.")
    prepare: PrepareSpec = Field(default_factory=PrepareSpec, description="leader.data.cache.PrepareOptions fields.")


class TeacherSpec(_Strict):
    backbones: list[
        Literal["llama-7b", "qwen-7b", "qwen-1.8b", "tiny-llama", "tiny-qwen2", "minilm", "smollm2-135m"]
    ] = Field(min_length=1, description="Teacher LLM backbones; each is trained (or reused) per dataset.")
    train: bool = Field(True, description="Fine-tune the teacher; False requires `checkpoints` for every backbone.")
    checkpoints: dict[str, str] = Field(
        default_factory=dict, description="Reuse: backbone (or 'dataset/backbone') -> trained teacher folder."
    )
    options: TeacherOptions = Field(
        default_factory=TeacherOptions, description="leader.config.teacher.TeacherTrainConfig fields."
    )
    eval_rounds: int = Field(10, ge=1, description="Bootstrap rounds of the teacher's test evaluation.")

    @model_validator(mode="after")
    def _reuse(self):
        if self.options.pooling == "eos" and "minilm" in self.backbones:  # found here, not after hours of data
            raise ValueError("options.pooling: eos needs an EOS token, and minilm's tokenizer has none: use last")
        if not self.train:
            missing = [b for b in self.backbones if not any(k == b or k.endswith("/" + b) for k in self.checkpoints)]
            if missing:
                raise ValueError(f"train: false but no checkpoint given for backbone(s) {missing}")
        return self


class TunedBaselineSpec(_Strict):
    space: dict[str, Dist] | None = Field(
        None, description="Search space (default: the model's registry suggestion, leader.baselines)."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Fixed hyper-parameters (e.g. epochs, patience).")


class BaselinesSpec(_Strict):
    trivial: list[Literal["prior", "cooccurrence", "logreg"]] = Field(
        default_factory=lambda: list(TRIVIAL_BASELINES),
        description="Baselines fitted once on train and shown beside LEADER in every report: prior (drug frequency), "
        "cooccurrence (P(drug | diagnosis)), logreg (multi-hot codes + last visit's drugs). The frozen "
        "teacher's linear probe is added automatically when the teacher runs its LP stage.",
    )
    tuned: dict[Literal[TUNED_BASELINES], TunedBaselineSpec] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="Table III baselines swept like the student: the same Tune + Optuna sampler, scheduler and "
        "search.num_samples budget, selected on validation PRAUC, evaluated once on test. "
        "Multi-visit-only models (micron, cognet) report only the with-history group.",
    )


class ResourceSpec(_Strict):
    cpu: float = Field(1, gt=0, description="CPUs per student trial.")
    gpu: float = Field(0, ge=0, description="GPUs per student trial (fractions share a GPU).")


class TeacherResourceSpec(_Strict):
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DeepSpeed ranks) for teacher fine-tuning.")
    cpu_per_worker: float = Field(1, gt=0)
    gpu_per_worker: float = Field(0, ge=0)
    gpu_memory_gb: float = Field(
        32, gt=0, description="Memory of one GPU (V100: 16 or 32); `study plan` refuses a teacher that cannot fit."
    )
    gpu_peak_tflops: float = Field(
        125, gt=0, description="Peak dense TFLOP/s of one GPU at the training precision (V100 fp16 tensor cores: 125)."
    )
    assumed_mfu: float = Field(
        0.3, gt=0, le=1, description="Share of the peak a teacher step reaches, for `study plan`'s GPU-hour estimate."
    )


class ReportSpec(_Strict):
    enabled: bool = Field(True, description="Build the report after the last stage.")
    tables: list[Literal[TABLES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["main", "ablation", "sensitivity", "efficiency", "dataset_stats", "optuna"],
        description=f"Tables to emit: {', '.join(TABLES)} ('main' = overall; 'backbone' is added when "
        "several teachers).",
    )
    figures: list[Literal[FIGURES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["groups", "ablation", "sensitivity", "efficiency", "optuna_history"],
        description=f"Figures to emit: {', '.join(FIGURES)} ('sensitivity' = alpha and beta; importances "
        "come with the history).",
    )
    formats: list[Literal["md", "html"]] = Field(default_factory=lambda: ["md", "html"])


class EvalSpec(_Strict):
    bootstrap_rounds: int = Field(10, ge=1, description="Bootstrap rounds for test metrics (paper: 10).")
    bootstrap_frac: float = Field(0.8, gt=0, le=1, description="Share of test patients per bootstrap round.")
    bootstrap_ddof: Literal[0, 1] = Field(
        BOOTSTRAP_DDOF,
        description="Delta degrees of freedom of the std over bootstrap rounds in results/metrics.parquet: 1 = the "
        "sample std, 0 = numpy's default (the authors' evaluation). Only the assembly of results reads it.",
    )
    latency_batch_sizes: list[int] = Field(default_factory=lambda: [1, 64], description="Batch sizes for latency.")
    compiled_student: bool = Field(
        False,
        description="Also time the student AOT-compiled (torch.export + AOTInductor, leader.student.serve) as "
        "'LEADER(S) compiled'; its outputs are checked against the eager student first. Costs minutes of "
        "compilation on a CPU, so off by default.",
    )


class StudySpec(_Strict):
    name: str = Field(description="Study name: the results folder under storage_path.", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    preset: Literal["paper", "authors"] | None = Field(
        None,
        description="Reproduce the LEADER paper's configuration ('paper') or the authors' release ('authors'): "
        "their data protocol, student, losses, teacher and evaluation settings fill what this file leaves unset "
        "(leader/config/paper.py); the report lists every deviation.",
    )
    storage_path: str = Field(
        "./studies_out",
        description="Where the study folder lives; relative to the working directory; ${VAR} and ~ are expanded.",
    )
    datasets: list[DatasetSpec] = Field(min_length=1)
    teacher: TeacherSpec | None = Field(None, description="Teacher LLMs; omit for a student-only study (kd: none).")
    student: StudentOptions = Field(
        default_factory=StudentOptions, description="Base StudentTrainConfig (flat names like dropout/d_model allowed)."
    )
    max_failed_trials: int = Field(
        0,
        ge=0,
        description="Failed trials a Tune stage tolerates before it fails (and stops the study with a non-zero exit).",
    )
    search: SearchSpec = Field(default_factory=SearchSpec)
    ablations: AblationSpec = Field(default_factory=AblationSpec)
    sensitivity: SensitivitySpec = Field(default_factory=SensitivitySpec)
    baselines: BaselinesSpec = Field(default_factory=BaselinesSpec)
    seeds: list[int] = Field(
        default_factory=lambda: [0], min_length=1, description="Seeds of every final/ablation/sensitivity run."
    )
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    teacher_resources: TeacherResourceSpec = Field(default_factory=TeacherResourceSpec)
    evaluation: EvalSpec = Field(default_factory=EvalSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    tracking: Literal["none", "mlflow"] = Field(
        "none",
        description="Also log every Tune trial to MLflow (pip install leader-studies[mlflow]); the store is "
        "$MLFLOW_TRACKING_URI, else the study's own mlflow.db (sqlite).",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        return apply_preset(data)

    @field_validator("tracking")
    @classmethod
    def _tracking_installed(cls, v):
        import importlib.util

        if v == "mlflow" and importlib.util.find_spec("mlflow") is None:
            raise ValueError("mlflow is not installed: pip install 'leader-studies[mlflow]'")
        return v

    @field_validator("datasets")
    @classmethod
    def _unique(cls, v):
        names = [d.name for d in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"dataset names must be unique, repeated: {sorted(dup)}")
        return v

    @field_validator("seeds")
    @classmethod
    def _useeds(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        return v

    @model_validator(mode="after")
    def _student_fields(self):
        # Typos and bad values fail here, torch-free, not inside trial 17 (search-space keys are
        # checked in `load_study`, where their lines are known).
        if self.teacher is None and self.student.kd != "none":
            raise ValueError("student.kd must be 'none' when no teacher is declared")
        for name in self.ablations.variants:
            try:
                check_student({**self.student_params(), **self.ablations.overrides(name)})
            except ValidationError as e:
                err = e.errors()[0]
                raise ValueError(
                    f"ablations: variant {name!r}: field {'.'.join(map(str, err['loc']))!r}: {err['msg']}"
                ) from None
        sch = self.search.scheduler
        if sch.type == "asha" and sch.grace_period > self.max_epochs():
            raise ValueError(
                f"search.scheduler.grace_period ({sch.grace_period}) exceeds the epochs a trial runs "
                f"({self.max_epochs()}: search.scheduler.max_t or student.epochs)"
            )
        return self

    # --------------------------------------------------------------- derived
    def study_dir(self, override: str | Path | None = None) -> Path:
        base = Path(expand_env(str(override or self.storage_path)))
        return (base / self.name).resolve()

    def backbones(self) -> list[str]:
        return list(self.teacher.backbones) if self.teacher else ["none"]

    def max_epochs(self) -> int:
        return int(self.search.scheduler.max_t or self.student.epochs)

    def student_params(self) -> dict:
        """The student block as the user wrote it (flat names; defaults left to the trainer)."""
        return self.student.model_dump(exclude_unset=True)


def expand_env(text: str) -> str:
    """${VAR} and ${VAR:-default} (shell style), then ~. Only environment lookups: no code."""
    out = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), text)
    return os.path.expanduser(out)


# ----------------------------------------------------------------------------- loading
def _valid_names(loc: tuple) -> list[str]:
    """Field names allowed at `loc`'s parent, for a did-you-mean (walks the typed schema)."""
    import types
    import typing

    tp: Any = StudySpec
    for part in loc[:-1]:
        while typing.get_origin(tp) in (Union, Annotated, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if args else tp
            if typing.get_origin(tp) is Annotated:
                tp = typing.get_args(tp)[0]
        if isinstance(part, int) and typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return []
    while typing.get_origin(tp) is not None and not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if not args:
            return []
        tp = args[0]
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _fmt_error(err: dict, lines: LineMap, file: str) -> str:
    loc = tuple(err["loc"])
    # A discriminated union adds its tag after the key ('search','space','lr','loguniform','low').
    clean = tuple(
        x
        for i, x in enumerate(loc)
        if not (i >= 2 and loc[i - 2] == "space" and x in ("uniform", "loguniform", "int", "choice"))
    )
    field = ".".join(str(x) for x in clean) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field (typo?)" + did_you_mean(clean[-1], _valid_names(clean))
    return f"{where(lines, clean, file)}: field {field!r}: {msg}"


def _name_errors(spec: StudySpec, lines: LineMap, file: str) -> list[str]:
    """Search-space keys and custom ablation overrides must be student fields (dict keys the
    typed schema cannot know)."""
    out = []
    named = [(("search", "space", k), k) for k in spec.search.space]
    named += [(("ablations", "custom", v, k), k) for v, o in spec.ablations.custom.items() for k in o]
    for loc, k in named:
        if not is_student_param(k):
            out.append(
                f"{where(lines, loc, file)}: field {'.'.join(map(str, loc))!r}: {k!r} is not a student "
                f"hyper-parameter{did_you_mean(k, PARAM_NAMES)}"
            )
    return out


def load_study(path: str | Path) -> StudySpec:
    """Parse, merge `extends`, validate. Raises ConfigError listing every problem with file:line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    data, lines = load_with_extends(path, overlay=preset_overlay)
    try:
        spec = StudySpec.model_validate(data)
        msgs = _name_errors(spec, lines, str(path))
    except ValidationError as e:
        msgs = [_fmt_error(err, lines, str(path)) for err in e.errors()]
    if msgs:
        raise ConfigError(f"invalid study file {path}:\n  " + "\n  ".join(msgs)) from None
    return spec


def resolved_yaml(spec: StudySpec) -> str:
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def with_sets(spec, sets: list[str]):
    """The spec with `--set a.b=value` overrides (YAML scalars), validated again as a whole."""
    import yaml

    data = spec.model_dump(exclude_unset=True)
    for item in sets:
        key, sep, raw = item.partition("=")
        *parents, last = key.strip().split(".")
        if not sep or not last:
            raise ConfigError(f"--set {item!r}: expected key=value")
        node = data
        for p in parents:
            node = _child(node, p, key)
        if isinstance(node, list):
            node[_index(node, last, key)] = yaml.safe_load(raw)
        else:
            node[last] = yaml.safe_load(raw)
    return StudySpec.model_validate(data)


def _index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a {len(node)}-item list")
    return int(part)


def _child(node, part: str, key: str):
    """One step of a dotted --set path: a mapping's field (created when absent) or a list's index
    (`datasets.0.source`)."""
    if isinstance(node, list):
        return node[_index(node, part, key)]
    child = node.setdefault(part, {})
    if not isinstance(child, dict | list):
        raise ConfigError(f"--set {key}: {part!r} has no sub-fields")
    return child
