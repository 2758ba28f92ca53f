"""What a unit's identity is made of and how a recorded unit is checked against it: the hash
(`digest`), the code version, the data cache key, why a recorded unit must run again (in the
words `plan` prints), and the sha256 of every output file. The units themselves, with their
keys, are leader.study.units."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leader.study.spec import expand_env

if TYPE_CHECKING:
    from leader.study.units import Unit


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


def why(old: dict, unit: Unit) -> str | None:
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
