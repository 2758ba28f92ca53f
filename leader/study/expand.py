"""The study as a list of units of work, before anything runs: what `validate` prints and what
the runner iterates over, so the two can never disagree."""

from __future__ import annotations

from dataclasses import dataclass, field

from leader.study.spec import StudySpec


@dataclass(frozen=True)
class Unit:
    """One unit of work. `trials` counts Tune trials (0 for non-Tune stages)."""

    stage: str  # data|teacher|features|baseline|teacher_eval|sweep|ablation|sensitivity|final|efficiency|report
    dataset: str = ""
    backbone: str = ""
    trials: int = 0
    detail: str = ""
    cpu: float = 0.0
    gpu: float = 0.0
    variants: tuple = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.stage, self.dataset, self.backbone) if p)


def grid_rows(spec: StudySpec) -> list[dict]:
    """Every ablation and sensitivity run: (stage, variant, param, value, seed) applied to the best
    config. 'full' is always run (it is the 'best' row of the main table)."""
    rows = []
    variants = list(dict.fromkeys(["full", *spec.ablations.variants]))
    for v in variants:
        for s in spec.seeds:
            rows.append({"stage": "ablation", "variant": v, "param": "", "value": None, "seed": s})
    for param in ("alpha", "beta"):
        for x in getattr(spec.sensitivity, param):
            for s in spec.seeds:
                rows.append({"stage": "sensitivity", "variant": "full", "param": param, "value": float(x), "seed": s})
    return rows


def _teacher_units(spec: StudySpec, dataset: str, backbone: str) -> list[Unit]:
    if spec.teacher is None:
        return []
    tr = spec.teacher_resources
    if spec.teacher.train:
        train = Unit(
            "teacher",
            dataset,
            backbone,
            detail=f"Ray Train x{tr.num_workers} (skipped if a matching checkpoint exists)",
            cpu=tr.num_workers * tr.cpu_per_worker,
            gpu=tr.num_workers * tr.gpu_per_worker,
        )
    else:
        train = Unit("teacher", dataset, backbone, detail="reuse checkpoint")
    return [
        train,
        Unit("features", dataset, backbone, detail="teacher inference, all splits"),
        Unit("teacher_eval", dataset, backbone, detail="LEADER(T) test bootstrap"),
    ]


def _student_units(spec: StudySpec, dataset: str, backbone: str) -> list[Unit]:
    r, sp = spec.resources, spec.search
    conc = sp.max_concurrent  # sweep and grid stages both run this many trials at once
    units = [
        Unit(
            "sweep",
            dataset,
            backbone,
            trials=sp.num_samples,
            detail=f"Optuna {sp.sampler} x {len(sp.space)} params, {sp.scheduler.type} <= "
            f"{spec.max_epochs()} epochs, {conc} concurrent",
            cpu=r.cpu * conc,
            gpu=r.gpu * conc,
        )
    ]
    rows = grid_rows(spec)
    n_ab = sum(1 for x in rows if x["stage"] == "ablation")
    n_se = len(rows) - n_ab
    variants = tuple(dict.fromkeys(x["variant"] for x in rows if x["stage"] == "ablation"))
    units.append(
        Unit(
            "ablation",
            dataset,
            backbone,
            trials=n_ab,
            detail=f"{len(variants)} variants x {len(spec.seeds)} seeds on the best config",
            cpu=r.cpu * conc,
            gpu=r.gpu * conc,
            variants=variants,
        )
    )
    if n_se:
        units.append(
            Unit(
                "sensitivity",
                dataset,
                backbone,
                trials=n_se,
                detail=f"alpha {spec.sensitivity.alpha}, beta {spec.sensitivity.beta} x {len(spec.seeds)} seeds",
                cpu=r.cpu * conc,
                gpu=r.gpu * conc,
            )
        )
    return units


def expand(spec: StudySpec) -> list[Unit]:
    units: list[Unit] = []
    for d in spec.datasets:
        units.append(Unit("data", d.name, detail=f"source={d.source}" + (" (optional)" if d.optional else "")))
        for b in spec.baselines.trivial:
            units.append(Unit("baseline", d.name, b, detail=f"{b}: fit once on train, test bootstrap"))
        sp, r = spec.search, spec.resources
        for b in spec.baselines.tuned:
            units.append(
                Unit(
                    "baseline",
                    d.name,
                    b,
                    trials=sp.num_samples,
                    cpu=r.cpu * sp.max_concurrent,
                    detail=f"{b}: Optuna {sp.sampler}, {sp.scheduler.type}, the student's budget",
                )
            )
        for b in spec.backbones():
            units += _teacher_units(spec, d.name, b)
            units += _student_units(spec, d.name, b)
            units.append(Unit("efficiency", d.name, b, detail="latency/patient + peak memory, teacher vs student"))
    if spec.report.enabled:
        units.append(Unit("report", detail=f"{len(spec.report.tables)} tables, {len(spec.report.figures)} figures"))
    return units


def summary(spec: StudySpec, units: list[Unit] | None = None) -> dict:
    units = units or expand(spec)
    conc = spec.search.max_concurrent
    return {
        "datasets": len(spec.datasets),
        "backbones": len(spec.backbones()),
        "teacher_trainings": sum(1 for u in units if u.stage == "teacher" and u.cpu > 0),
        "sweep_trials": sum(u.trials for u in units if u.stage == "sweep"),
        "ablation_trials": sum(u.trials for u in units if u.stage == "ablation"),
        "sensitivity_trials": sum(u.trials for u in units if u.stage == "sensitivity"),
        "baseline_trials": sum(u.trials for u in units if u.stage == "baseline"),
        "total_trials": sum(u.trials for u in units),
        "trial_cpu": spec.resources.cpu,
        "trial_gpu": spec.resources.gpu,
        "peak_cpu": max([spec.resources.cpu * conc] + [u.cpu for u in units if u.stage == "teacher"]),
        "peak_gpu": max([spec.resources.gpu * conc] + [u.gpu for u in units if u.stage == "teacher"]),
    }
