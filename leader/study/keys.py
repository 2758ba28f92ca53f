"""One identity per unit of work. Every stage's key hashes its own resolved config, the keys of
the units it reads (dataset -> teacher -> features -> sweep -> ablation/sensitivity trials ->
report) and the code version, so changing an input re-runs exactly what is downstream of it.
The runner, `validate` and `plan` all take their keys from `study_keys` (torch-free).

Two units carry more than one key: a sweep is keyed without `num_samples` (raising it extends the
finished sweep with new trials), and each ablation/sensitivity row is its own trial key under its
stage (a new variant or seed runs only the new rows; a removed seed is left out of the results)."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leader.study.expand import grid_rows
from leader.study.spec import StudySpec, expand_env


def digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the checkout when there is one."""
    import importlib.metadata as md

    from leader.paths import repo_root

    try:
        version = md.version("leader-studies")
    except md.PackageNotFoundError:
        version = "0"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+{commit}" if commit else version


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: the field paths a plan names when it says what changed."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or ({prefix: {}} if prefix else {})
    return {prefix: obj}


@dataclass
class UnitKey:
    name: str  # state.json key, e.g. teacher/syn/minilm
    stage: str
    config: dict  # flat field path -> value
    inputs: dict  # upstream unit name -> its key
    code: str
    trials: int = 0
    trial_keys: dict = field(default_factory=dict)  # grid stages: trial key -> row

    @property
    def key(self) -> str:
        return digest({"config": self.config, "inputs": self.inputs, "code": self.code})


def data_cache_key(d) -> str | None:
    """leader.data.cache's key for a dataset (options, code version, size+mtime of every input
    file): cheap, and changes whenever the prepared data would. None when the files are absent."""
    from leader.data.cache import PrepareOptions, _resolve_root, cache_key
    from leader.errors import DataError

    try:
        root = _resolve_root(d.source, expand_env(d.root) if d.root else None)
    except DataError:
        return None
    return cache_key(d.source, root, PrepareOptions(**d.prepare.model_dump()))


def _unit(units: dict, name: str, config: dict, inputs: dict, code: str, **kw) -> UnitKey:
    ins = {k: v for k, v in inputs.items() if v is not None}
    u = UnitKey(name, name.split("/")[0], flatten(config), ins, code, **kw)
    units[name] = u
    return u


def _student(spec: StudySpec) -> dict:
    return spec.student.model_dump(mode="json")


def grid_trial_keys(spec: StudySpec, grid_key: str) -> dict[str, dict]:
    """Ablation/sensitivity rows keyed by (their stage's key, the row, the variant's switches)."""
    out = {}
    for row in grid_rows(spec):
        out[digest({"grid": grid_key, "row": row, "overrides": spec.ablations.overrides(row["variant"])})] = row
    return out


def _dataset_units(spec: StudySpec, d, ck: str | None, code: str, units: dict) -> UnitKey:
    ev, thr = spec.evaluation.model_dump(mode="json"), spec.student.threshold
    data = _unit(
        units, f"data/{d.name}", {f"datasets[{d.name}]": d.model_dump(mode="json")}, {"cache": ck or "absent"}, code
    )
    for b in spec.baselines.trivial:
        _unit(
            units,
            f"baseline/{d.name}/{b}",
            {"baselines.trivial": b, "evaluation": ev, "student.threshold": thr},
            {data.name: data.key},
            code,
        )
    for b, bs in spec.baselines.tuned.items():
        _unit(
            units,
            f"baseline/{d.name}/{b}",
            {
                f"baselines.tuned.{b}": bs.model_dump(mode="json"),
                "student.threshold": thr,
                "search": spec.search.model_dump(mode="json"),
                "evaluation": ev,
                "resources": spec.resources.model_dump(mode="json"),
            },
            {data.name: data.key},
            code,
            trials=spec.search.num_samples,
        )
    return data


def _teacher_units(spec: StudySpec, d, bb: str, data: UnitKey, code: str, units: dict) -> UnitKey:
    t, ev, thr = spec.teacher, spec.evaluation.model_dump(mode="json"), spec.student.threshold
    ck = t.checkpoints.get(f"{d.name}/{bb}", t.checkpoints.get(bb))
    cfg = (
        {"teacher.checkpoints": ck}
        if ck
        else {
            "teacher.backbones": bb,
            "teacher.options": t.options.model_dump(mode="json"),
            "teacher_resources": spec.teacher_resources.model_dump(mode="json"),
        }
    )
    teacher = _unit(units, f"teacher/{d.name}/{bb}", cfg, {data.name: data.key}, code)
    scoring = {"evaluation": ev, "student.threshold": thr}
    _unit(units, f"baseline/{d.name}/probe-{bb}", scoring, {teacher.name: teacher.key}, code)
    feats = _unit(units, f"features/{d.name}/{bb}", {"teacher.backbones": bb}, {teacher.name: teacher.key}, code)
    _unit(units, f"teacher_eval/{d.name}/{bb}", scoring, {feats.name: feats.key}, code)
    return feats


def study_keys(spec: StudySpec, cache_keys: dict[str, str | None] | None = None) -> dict[str, UnitKey]:
    """Every unit of the study in run order, with its key. `cache_keys` (dataset -> data cache
    key) defaults to computing them, which only stats the input files."""
    code, units = code_version(), {}
    cache_keys = cache_keys if cache_keys is not None else {d.name: data_cache_key(d) for d in spec.datasets}
    search = spec.search.model_dump(mode="json")
    search.pop("num_samples")
    for d in spec.datasets:
        data = _dataset_units(spec, d, cache_keys.get(d.name), code, units)
        for bb in spec.backbones():
            feats = _teacher_units(spec, d, bb, data, code, units) if spec.teacher else None
            up = {data.name: data.key, **({feats.name: feats.key} if feats else {})}
            sweep = _unit(
                units,
                f"sweep/{d.name}/{bb}",
                {"search": search, "student": _student(spec), "resources": spec.resources.model_dump(mode="json")},
                up,
                code,
                trials=spec.search.num_samples,
            )
            grid = _unit(
                units,
                f"grid/{d.name}/{bb}",
                {
                    "student": _student(spec),
                    "evaluation": spec.evaluation.model_dump(mode="json"),
                    "resources": spec.resources.model_dump(mode="json"),
                },
                {**up, sweep.name: f"{sweep.key}:{spec.search.num_samples}"},
                code,
            )
            grid.trial_keys = grid_trial_keys(spec, grid.key)
            grid.trials = len(grid.trial_keys)
            teacher = units.get(f"teacher/{d.name}/{bb}")
            _unit(
                units,
                f"efficiency/{d.name}/{bb}",
                {
                    "evaluation.latency_batch_sizes": spec.evaluation.latency_batch_sizes,
                    "resources.cpu": spec.resources.cpu,
                    # timed on a GPU when the study declares teacher GPUs (runner._measure_options);
                    # only then in the key, so CPU studies keep their keys
                    **({"efficiency.device": "cuda"} if spec.teacher_resources.gpu_per_worker > 0 else {}),
                },
                {grid.name: grid.key, **({teacher.name: teacher.key} if teacher else {})},
                code,
            )
    if spec.report.enabled:
        ins = {u.name: u.key for u in units.values()}
        ins.update({f"{u.name}#trials": digest(sorted(u.trial_keys)) for u in units.values() if u.trial_keys})
        _unit(
            units,
            "report",
            {"report": spec.report.model_dump(mode="json"), "search.num_samples": spec.search.num_samples},
            ins,
            code,
        )
    return units


def why(old: dict, unit: UnitKey) -> str | None:
    """None when a recorded unit matches; otherwise the first reason it must run again, in the
    words `plan` prints: `re-run because teacher.options.lr changed (0.001 -> 0.002)`."""
    if not old:
        return "run"
    if old.get("key") == unit.key and old.get("status") in ("done", "skipped"):
        return None
    if old.get("key") == unit.key:
        return f"re-run because it was left {old.get('status', 'unfinished')}"
    before, now = old.get("config") or {}, unit.config
    for k in sorted(set(before) | set(now)):
        if before.get(k, "<unset>") != now.get(k, "<unset>"):
            return f"re-run because {k} changed ({_short(before.get(k, '<unset>'))} -> {_short(now.get(k, '<unset>'))})"
    ins = old.get("inputs") or {}
    for k in sorted(set(ins) | set(unit.inputs)):
        if ins.get(k) != unit.inputs.get(k):
            return f"re-run because upstream {k} changed"
    if old.get("code") != unit.code:
        return f"re-run because code changed ({old.get('code')} -> {unit.code})"
    return "re-run because its key changed"


def _short(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_outputs(study_dir: Path, paths) -> dict[str, str]:
    """sha256 of every file under `paths` (files or folders), relative to the study folder."""
    out = {}
    for p in paths:
        p = Path(p)
        p = p if p.is_absolute() else study_dir / p
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        for f in files:
            try:
                rel = str(f.resolve().relative_to(study_dir.resolve()))
            except ValueError:
                rel = str(f.resolve())
            out[rel] = sha256_file(f)
    return out


def verify_outputs(study_dir: Path, files: dict[str, str]) -> str | None:
    """None when every recorded output still has its sha256; else the first file that does not."""
    for rel, sha in (files or {}).items():
        p = Path(rel) if Path(rel).is_absolute() else study_dir / rel
        if not p.is_file():
            return f"{rel} is missing"
        if sha256_file(p) != sha:
            return f"{rel} changed since it was written"
    return None
