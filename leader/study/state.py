"""state.json: unit -> status, key, config, inputs, outputs (with the sha256 of every output file).
Written atomically after every change, so a killed driver resumes at the first unfinished unit
and never repeats finished work; every study file is written with leader.atomic."""

from __future__ import annotations

import json
import time
from pathlib import Path

from leader import atomic
from leader.atomic import FAULT_ENV, write_text  # noqa: F401  (the study's writers: one implementation)


def write_frame(df, path: Path) -> None:
    atomic.write_parquet(path, df, index=False)


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
