"""Where things live. One place so that a cluster can point every cache at shared storage."""

from __future__ import annotations

import os
from pathlib import Path

# Candidates for the open MIMIC-III demo; present in CI and on developer machines, never in a
# user's fresh clone (the synthetic cohort is the default there).
_DEMO_CANDIDATES = ("../shared/data/mimic3demo", "../../shared/data/mimic3demo")


def cache_dir() -> Path:
    """Root of reusable derived artefacts (processed datasets, tokenizers, tiny models)."""
    p = Path(os.environ.get("LEADER_CACHE", Path.home() / ".cache" / "leader")).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def resources_dir() -> Path:
    return Path(__file__).resolve().parent / "resources"


def find_demo_root() -> Path | None:
    """The MIMIC-III demo folder if this machine has it ($LEADER_DEMO_ROOT wins)."""
    env = os.environ.get("LEADER_DEMO_ROOT")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for base in (Path.cwd(), repo_root()):
        for rel in _DEMO_CANDIDATES:
            p = (base / rel).resolve()
            if p.is_dir():
                return p
    return None


def find_mappings_root() -> Path | None:
    """The NDC->ATC mapping folder that sits beside the demo (../shared/data/mappings)."""
    demo = find_demo_root()
    if demo is not None and (demo.parent / "mappings").is_dir():
        return demo.parent / "mappings"
    return None
