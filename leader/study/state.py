"""state.json: stage key -> status, fingerprint, outputs. Written atomically after every stage
so a killed driver resumes at the first unfinished stage and never repeats finished work."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class StudyState:
    def __init__(self, study_dir: Path):
        self.path = Path(study_dir) / "state.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.is_file() else {"stages": {}}

    def get(self, key: str) -> dict:
        return self.data["stages"].get(key, {})

    def done(self, key: str, fingerprint: str) -> bool:
        s = self.get(key)
        return s.get("status") in ("done", "skipped") and s.get("fingerprint") == fingerprint

    def mark(self, key: str, status: str, fingerprint: str = "", **outputs) -> None:
        prev = self.get(key)
        self.data["stages"][key] = {**({"outputs": prev.get("outputs", {})} if status == "running" else {}),
                                    "status": status, "fingerprint": fingerprint, "time": time.time(),
                                    "outputs": {**prev.get("outputs", {}), **outputs}}
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)
