"""state.json: unit -> status, key, config, inputs, outputs (with the sha256 of every output file).
Written atomically after every change, so a killed driver resumes at the first unfinished unit
and never repeats finished work; `atomic_write` is how every study file is written."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

FAULT_ENV = "LEADER_FAULT_WRITE"  # fault injection (scripts/chaos_study.py): writes to matching paths fail


def atomic_write(path: Path, write) -> None:
    """`write(tmp_path)` then rename over `path`: a reader (or a resumed run) sees the old file
    or the new one, never half of one. A full disk surfaces as the OSError naming the file."""
    path = Path(path)
    pattern = os.environ.get(FAULT_ENV)
    if pattern and pattern in str(path):
        raise OSError(errno.ENOSPC, f"No space left on device (injected by {FAULT_ENV})", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda t: Path(t).write_text(text))


def write_frame(df, path: Path) -> None:
    atomic_write(path, lambda t: df.to_parquet(t, index=False))


class StudyState:
    def __init__(self, study_dir: Path):
        self.path = Path(study_dir) / "state.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.is_file() else {"stages": {}}

    def get(self, key: str) -> dict:
        return self.data["stages"].get(key, {})

    def mark(self, unit: str, status: str, **fields) -> None:
        """Set `status` and the given fields; outputs merge with the recorded ones."""
        prev = self.get(unit)
        outputs = {**prev.get("outputs", {}), **fields.pop("outputs", {})}
        self.data["stages"][unit] = {**prev, **fields, "status": status, "time": time.time(), "outputs": outputs}
        self.save()

    def save(self) -> None:
        write_text(self.path, json.dumps(self.data, indent=1, default=str))
