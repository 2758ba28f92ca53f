"""state.json: unit -> status, key, config, inputs, outputs (with the sha256 of every output file).
Written atomically after every change, so a killed driver resumes at the first unfinished unit
and never repeats finished work; every study file is written with leader.atomic.

The reuse / run / record bookkeeping of a unit lives here once: `reusable` (reuse only when the
key matches and every recorded output still has its sha256), `running` (mark it running; a
failure is recorded, then raised), `finish` (outputs, sha256 of its files, how often this exact
work completed), and `stage` which does all three for a unit that runs as one call."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from leader import atomic
from leader.atomic import FAULT_ENV, write_text  # noqa: F401  (the study's writers: one implementation)
from leader.study.keys import hash_outputs, verify_outputs, why

if TYPE_CHECKING:
    from leader.study.units import Unit


def write_frame(df, path: Path) -> None:
    atomic.write_parquet(path, df, index=False)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class StudyState:
    def __init__(self, study_dir: Path, echo: Callable[[str], object] = print):
        self.dir, self.echo = Path(study_dir), echo
        self.path = self.dir / "state.json"
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

    # ------------------------------------------------------------------ one unit's bookkeeping
    def reusable(self, u: Unit) -> tuple[dict | None, str]:
        """(recorded entry, '') when `u` can be reused; else (None, why it must run)."""
        st = self.get(u.name)
        reason = why(st, u)
        if reason is None:
            bad = verify_outputs(self.dir, st.get("files", {}))
            if bad is None:
                return st, ""
            reason = f"re-run because its output {bad}"
        return None, reason

    def kept(self, u: Unit) -> dict:
        """The recorded entry of `u` when it has `u`'s key and its outputs verify (what an
        extended sweep or a grown grid keeps), else {}."""
        st = self.get(u.name)
        return st if st.get("key") == u.key and not verify_outputs(self.dir, st.get("files", {})) else {}

    def begin(self, u: Unit, reason: str) -> None:
        self.echo(f"[run ] {u.name}: {reason}")
        self.mark(
            u.name,
            "running",
            key=u.key,
            config=u.config,
            inputs=u.inputs,
            code=u.code,
            files={},
            error=None,
            failures=[],
        )

    @contextlib.contextmanager
    def running(self, u: Unit, reason: str) -> Iterator[float]:
        """Mark `u` running and yield its start time; an exception is recorded, then raised."""
        self.begin(u, reason)
        try:
            yield time.time()
        except Exception as e:
            self.fail(u.name, e)
            raise

    def finish(self, u: Unit, out: dict, t0: float, ident: str | None = None) -> dict:
        """Record a finished unit: outputs, the sha256 of its files, and how often this exact
        work (`ident`, default its key; `completed` names it) completed (the chaos check reads
        it: once, always)."""
        paths = out.pop("_files", [])
        done = dict(self.get(u.name).get("completions", {}))
        ident = ident or u.key
        done[ident] = done.get(ident, 0) + 1
        self.mark(
            u.name,
            "done",
            files=hash_outputs(self.dir, paths),
            completions=done,
            completed=ident,
            outputs={**out, "seconds": round(time.time() - t0, 2)},
        )
        self.echo(f"[done] {u.name} in {duration(time.time() - t0)}")
        return self.get(u.name)["outputs"]

    def fail(self, name: str, e: Exception) -> None:
        failures = getattr(e, "failures", [])
        self.mark(name, "failed", error=f"{type(e).__name__}: {e}"[:1000], failures=failures)

    def stage(self, u: Unit, fn: Callable[[], dict | None]) -> dict:
        """Reuse `u` or run `fn` (which returns outputs, '_files' to hash)."""
        st, reason = self.reusable(u)
        if st is not None:
            self.echo(f"[reuse] {u.name}")
            return st.get("outputs", {})
        with self.running(u, reason) as t0:
            out = fn() or {}
        return self.finish(u, out, t0)

    def running_unit(self) -> str | None:
        """The unit a crash interrupted: the first one left running or failed."""
        return next((k for k, v in self.data["stages"].items() if v.get("status") in ("running", "failed")), None)
