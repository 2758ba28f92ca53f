"""THE list of a study's units of work: `validate` prints it, `plan` compares it with state.json,
the runner walks it and `status` shows it, so the four can never disagree. Torch-free.

A unit kind is one entry in KINDS: how its units are made from the spec (name, key inputs,
what it needs upstream, what `validate` says about it) and the stage function that runs one
(`leader/study/stages/<kind>.py`). To add a unit kind, add a Kind here and its stage.

Each unit's identity (`Unit.key`) hashes its own resolved config, the keys of the units it reads
(dataset -> teacher -> features -> sweep -> grid trials -> report) and the code version, so
changing an input re-runs exactly what is downstream of it. Two units carry more than one key:
a sweep is keyed without `num_samples` (raising it extends the finished sweep with new trials),
and each ablation/sensitivity row of a grid is its own trial key (a new variant or seed runs
only the new rows; a removed seed is left out of the results)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from leader.study.grid import grid_rows, grid_trial_keys
from leader.study.keys import code_version, data_cache_key, digest, flatten
from leader.study.spec import DatasetSpec, StudySpec


@dataclass
class Unit:
    """One unit of work. `needs` (role -> unit name) is what its stage reads from upstream units;
    `inputs` (unit name -> key) is what its key hashes of them."""

    name: str  # state.json name, printed by validate, plan, run and status: teacher/syn/minilm
    kind: str  # its entry in KINDS
    config: dict  # flat field path -> value
    inputs: dict
    code: str
    dataset: str = ""
    backbone: str = ""
    model: str = ""  # a baseline's registry name
    needs: dict[str, str] = field(default_factory=dict)
    trials: int = 0  # Tune trials (0 for non-Tune units)
    trial_keys: dict = field(default_factory=dict)  # grid: trial key -> row
    detail: str = ""
    cpu: float = 0.0
    gpu: float = 0.0
    variants: tuple = ()

    @property
    def stage(self) -> str:
        return self.name.split("/")[0]

    @property
    def key(self) -> str:
        return digest({"config": self.config, "inputs": self.inputs, "code": self.code})


@dataclass
class Where:
    """What a kind's builder sees: the spec, the units made so far, and its dataset/backbone."""

    spec: StudySpec
    code: str
    units: dict[str, Unit]
    dataset: DatasetSpec | None = None
    backbone: str = ""
    cache_key: str | None = None

    def unit(self, name: str, kind: str, config: dict, inputs: dict, needs: dict[str, str | None], **kw) -> Unit:
        """A unit keyed on `config` and `inputs` (unit name -> key, see `keys`); `needs` names
        the upstream units its stage reads (None: absent in this study)."""
        ds, bb = (self.dataset.name if self.dataset else ""), self.backbone
        needs_ = {r: n for r, n in needs.items() if n is not None}
        return Unit(name, kind, flatten(config), inputs, self.code, ds, bb, needs=needs_, **kw)

    def keys(self, *names: str | None) -> dict[str, str]:
        return {n: self.units[n].key for n in names if n is not None}

    def get(self, name: str) -> str | None:
        return name if name in self.units else None


@dataclass(frozen=True)
class Kind:
    name: str
    scope: Literal["dataset", "backbone", "study"]  # made once per dataset, per dataset x backbone, or once
    build: Callable[[Where], list[Unit]]
    stage: str | Callable  # "module:function" (imported when it runs: validate stays torch-free) or the function
    final: bool = False  # runs after the results are assembled, also when a unit failed (the report)


# ----------------------------------------------------------------------------- per dataset
def _evaluation(spec: StudySpec) -> dict:
    """The evaluation options a unit's test scores depend on: `bootstrap_ddof` is left out (only
    the assembly of results/ reads it, so the report's key holds it and nothing re-trains)."""
    return spec.evaluation.model_dump(mode="json", exclude={"bootstrap_ddof"})


def _scoring(spec: StudySpec) -> dict:
    return {"evaluation": _evaluation(spec), "student.threshold": spec.student.threshold}


def teacher_threshold(spec: StudySpec) -> float:
    """The threshold LEADER(T)'s test F1/Jaccard are scored at: the teacher's own `threshold`
    option, else the student's (what every study did before the option existed)."""
    t = spec.teacher.options.threshold if spec.teacher is not None else None
    return spec.student.threshold if t is None else t


def _data(w: Where) -> list[Unit]:
    d = w.dataset
    cfg = {f"datasets[{d.name}]": d.model_dump(mode="json")}
    detail = f"source={d.source}" + (" (optional)" if d.optional else "")
    return [w.unit(f"data/{d.name}", "data", cfg, {"cache": w.cache_key or "absent"}, {}, detail=detail)]


def _trivial(w: Where) -> list[Unit]:
    d, ev, thr = w.dataset, _evaluation(w.spec), w.spec.student.threshold
    return [
        w.unit(
            f"baseline/{d.name}/{b}",
            "baseline",
            {"baselines.trivial": b, "evaluation": ev, "student.threshold": thr},
            w.keys(f"data/{d.name}"),
            {"data": f"data/{d.name}"},
            model=b,
            detail=f"{b}: fit once on train, test bootstrap",
        )
        for b in w.spec.baselines.trivial
    ]


def _tuned(w: Where) -> list[Unit]:
    s, d = w.spec, w.dataset
    sp, r = s.search, s.resources
    return [
        w.unit(
            f"baseline/{d.name}/{b}",
            "tuned_baseline",
            {
                f"baselines.tuned.{b}": bs.model_dump(mode="json"),
                "student.threshold": s.student.threshold,
                "search": sp.model_dump(mode="json"),
                "evaluation": _evaluation(s),
                "resources": r.model_dump(mode="json"),
            },
            w.keys(f"data/{d.name}"),
            {"data": f"data/{d.name}"},
            model=b,
            trials=sp.num_samples,
            cpu=r.cpu * sp.max_concurrent,
            detail=f"{b}: Optuna {sp.sampler}, {sp.scheduler.type}, the student's budget",
        )
        for b, bs in s.baselines.tuned.items()
    ]


# ----------------------------------------------------------------------------- per backbone: teacher
def _teacher(w: Where) -> list[Unit]:
    s, d, bb = w.spec, w.dataset, w.backbone
    if s.teacher is None:
        return []
    t, tr = s.teacher, s.teacher_resources
    ck = t.checkpoints.get(f"{d.name}/{bb}", t.checkpoints.get(bb))
    cfg = (
        {"teacher.checkpoints": ck}
        if ck
        else {
            "teacher.backbones": bb,
            # the threshold only scores the teacher (teacher_eval's key): changing it re-trains nothing
            "teacher.options": t.options.model_dump(mode="json", exclude={"threshold"}),
            "teacher_resources": tr.model_dump(mode="json"),
        }
    )
    if t.train:
        kw: dict[str, Any] = {
            "detail": f"Ray Train x{tr.num_workers} (skipped if a matching checkpoint exists)",
            "cpu": tr.num_workers * tr.cpu_per_worker,
            "gpu": tr.num_workers * tr.gpu_per_worker,
        }
    else:
        kw = {"detail": "reuse checkpoint"}
    return [
        w.unit(f"teacher/{d.name}/{bb}", "teacher", cfg, w.keys(f"data/{d.name}"), {"data": f"data/{d.name}"}, **kw)
    ]


def _probe(w: Where) -> list[Unit]:
    d, bb = w.dataset.name, w.backbone
    if (teacher := w.get(f"teacher/{d}/{bb}")) is None:
        return []
    needs = {"data": f"data/{d}", "teacher": teacher}
    detail = "frozen-backbone linear probe (when the teacher ran its LP stage), test bootstrap"
    return [
        w.unit(
            f"baseline/{d}/probe-{bb}", "probe", _scoring(w.spec), w.keys(teacher), needs, model="probe", detail=detail
        )
    ]


def _features(w: Where) -> list[Unit]:
    d, bb = w.dataset.name, w.backbone
    if (teacher := w.get(f"teacher/{d}/{bb}")) is None:
        return []
    needs = {"data": f"data/{d}", "teacher": teacher}
    return [
        w.unit(
            f"features/{d}/{bb}",
            "features",
            {"teacher.backbones": bb},
            w.keys(teacher),
            needs,
            detail="teacher inference, all splits",
        )
    ]


def _teacher_eval(w: Where) -> list[Unit]:
    d, bb = w.dataset.name, w.backbone
    if (feats := w.get(f"features/{d}/{bb}")) is None:
        return []
    needs = {"data": f"data/{d}", "features": feats}
    return [
        w.unit(
            f"teacher_eval/{d}/{bb}",
            "teacher_eval",
            {"evaluation": _evaluation(w.spec), "teacher.threshold": teacher_threshold(w.spec)},
            w.keys(feats),
            needs,
            detail="LEADER(T) test bootstrap",
        )
    ]


# ----------------------------------------------------------------------------- per backbone: student
def _sweep(w: Where) -> list[Unit]:
    s, d, bb = w.spec, w.dataset.name, w.backbone
    sp, r = s.search, s.resources
    search = sp.model_dump(mode="json")
    search.pop("num_samples")
    conc = sp.max_concurrent  # sweep and grid stages both run this many trials at once
    cfg = {"search": search, "student": s.student.model_dump(mode="json"), "resources": r.model_dump(mode="json")}
    needs = {"data": f"data/{d}", "features": w.get(f"features/{d}/{bb}")}
    detail = (
        f"Optuna {sp.sampler} x {len(sp.space)} params, {sp.scheduler.type} <= "
        f"{s.max_epochs()} epochs, {conc} concurrent"
    )
    return [
        w.unit(
            f"sweep/{d}/{bb}",
            "sweep",
            cfg,
            w.keys(needs["data"], needs["features"]),
            needs,
            trials=sp.num_samples,
            cpu=r.cpu * conc,
            gpu=r.gpu * conc,
            detail=detail,
        )
    ]


def _grid_detail(spec: StudySpec, rows: list[dict], variants: tuple) -> str:
    n_se, seeds = sum(1 for x in rows if x["stage"] == "sensitivity"), len(spec.seeds)
    text = f"ablation: {len(variants)} variants x {seeds} seeds on the best config"
    if n_se:
        text += f"; sensitivity: alpha {spec.sensitivity.alpha}, beta {spec.sensitivity.beta} x {seeds} seeds"
    if spec.preset:
        text += f"; released ({spec.preset} preset) config x {seeds} seeds"
    return text


def _grid(w: Where) -> list[Unit]:
    s, d, bb = w.spec, w.dataset.name, w.backbone
    r, conc = s.resources, s.search.max_concurrent
    cfg = {
        "student": s.student.model_dump(mode="json"),
        "evaluation": _evaluation(s),
        "resources": r.model_dump(mode="json"),
    }
    sweep, feats = f"sweep/{d}/{bb}", w.get(f"features/{d}/{bb}")
    needs = {"data": f"data/{d}", "features": feats, "sweep": sweep}
    inputs = {**w.keys(f"data/{d}", feats), sweep: f"{w.units[sweep].key}:{s.search.num_samples}"}
    rows = grid_rows(s)
    variants = tuple(dict.fromkeys(x["variant"] for x in rows if x["stage"] == "ablation"))
    u = w.unit(f"grid/{d}/{bb}", "grid", cfg, inputs, needs, cpu=r.cpu * conc, gpu=r.gpu * conc)
    u.trial_keys = grid_trial_keys(s, u.key)
    u.trials, u.variants, u.detail = len(u.trial_keys), variants, _grid_detail(s, rows, variants)
    return [u]


def _efficiency(w: Where) -> list[Unit]:
    s, d, bb = w.spec, w.dataset.name, w.backbone
    cfg = {
        "evaluation.latency_batch_sizes": s.evaluation.latency_batch_sizes,
        "resources.cpu": s.resources.cpu,
        # timed on a GPU when the study declares teacher GPUs (stages.efficiency.measure_options);
        # only then in the key, so CPU studies keep their keys
        **({"efficiency.device": "cuda"} if s.teacher_resources.gpu_per_worker > 0 else {}),
        # only when on, so studies that do not ask keep their keys
        **({"evaluation.compiled_student": True} if s.evaluation.compiled_student else {}),
    }
    needs = {"data": f"data/{d}", "grid": f"grid/{d}/{bb}", "teacher": w.get(f"teacher/{d}/{bb}")}
    detail = "latency/patient + peak memory, teacher vs student"
    return [
        w.unit(f"efficiency/{d}/{bb}", "efficiency", cfg, w.keys(needs["grid"], needs["teacher"]), needs, detail=detail)
    ]


def _report(w: Where) -> list[Unit]:
    s = w.spec
    if not s.report.enabled:
        return []
    ins = {u.name: u.key for u in w.units.values()}
    ins.update({f"{u.name}#trials": digest(sorted(u.trial_keys)) for u in w.units.values() if u.trial_keys})
    cfg = {
        "report": s.report.model_dump(mode="json"),
        "search.num_samples": s.search.num_samples,
        "evaluation.bootstrap_ddof": s.evaluation.bootstrap_ddof,  # results/metrics.parquet's std
    }
    detail = f"{len(s.report.tables)} tables, {len(s.report.figures)} figures"
    return [w.unit("report", "report", cfg, ins, {}, detail=detail)]


_S = "leader.study.stages."
KINDS: list[Kind] = [
    Kind("data", "dataset", _data, _S + "data:run"),
    Kind("baseline", "dataset", _trivial, _S + "baselines:trivial"),
    Kind("tuned_baseline", "dataset", _tuned, _S + "baselines:tuned"),
    Kind("teacher", "backbone", _teacher, _S + "teacher:run"),
    Kind("probe", "backbone", _probe, _S + "baselines:probe"),
    Kind("features", "backbone", _features, _S + "features:run"),
    Kind("teacher_eval", "backbone", _teacher_eval, _S + "features:teacher_eval"),
    Kind("sweep", "backbone", _sweep, _S + "sweep:run"),
    Kind("grid", "backbone", _grid, _S + "ablations:run"),
    Kind("efficiency", "backbone", _efficiency, _S + "efficiency:run"),
    Kind("report", "study", _report, _S + "results:report", final=True),
]


def kind(name: str) -> Kind:
    return next(k for k in KINDS if k.name == name)


def units(spec: StudySpec, cache_keys: dict[str, str | None] | None = None) -> list[Unit]:
    """Every unit of the study in run order, with its key. `cache_keys` (dataset -> data cache
    key) defaults to computing them, which only stats the input files."""
    code, made = code_version(), {}
    cache_keys = cache_keys if cache_keys is not None else {d.name: data_cache_key(d) for d in spec.datasets}

    def add(w: Where, scope: str) -> None:
        for k in KINDS:
            if k.scope == scope:
                made.update((u.name, u) for u in k.build(w))

    for d in spec.datasets:
        add(Where(spec, code, made, d, cache_key=cache_keys.get(d.name)), "dataset")
        for bb in spec.backbones():
            add(Where(spec, code, made, d, bb), "backbone")
    add(Where(spec, code, made), "study")
    return list(made.values())


def unit_map(spec: StudySpec, cache_keys: dict[str, str | None] | None = None) -> dict[str, Unit]:
    return {u.name: u for u in units(spec, cache_keys)}


def summary(spec: StudySpec, us: list[Unit]) -> dict:
    """The totals `validate` prints under the unit table."""
    conc = spec.search.max_concurrent
    rows = [r for u in us for r in u.trial_keys.values()]
    teachers = [u for u in us if u.kind == "teacher"]
    return {
        "datasets": len(spec.datasets),
        "backbones": len(spec.backbones()),
        "teacher_trainings": sum(1 for u in teachers if u.cpu > 0),
        "sweep_trials": sum(u.trials for u in us if u.kind == "sweep"),
        "ablation_trials": sum(1 for r in rows if r["stage"] == "ablation"),
        "sensitivity_trials": sum(1 for r in rows if r["stage"] == "sensitivity"),
        "released_trials": sum(1 for r in rows if r["stage"] == "released"),
        "baseline_trials": sum(u.trials for u in us if u.stage == "baseline"),
        "total_trials": sum(u.trials for u in us),
        "trial_cpu": spec.resources.cpu,
        "trial_gpu": spec.resources.gpu,
        "peak_cpu": max([spec.resources.cpu * conc] + [u.cpu for u in teachers]),
        "peak_gpu": max([spec.resources.gpu * conc] + [u.gpu for u in teachers]),
    }
