"""Errors a user can act on. Each names the file and the field at fault, so a bad input is
fixed at its source instead of debugged from a stack trace."""

from __future__ import annotations


class LeaderError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class DataError(LeaderError):
    """Bad input data: a missing file, a missing/unparseable column, an empty result."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        where = ", ".join(p for p in (f"file {file}" if file else "", f"field {field!r}" if field else "") if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.field = file, field


class ConfigError(LeaderError):
    """An invalid study file, config or CLI option."""


class CheckpointError(LeaderError):
    """A missing or incompatible model checkpoint or feature set."""


def read_json(
    path, error: type[LeaderError] = CheckpointError, *, what: str = "file", required: tuple[str, ...] = ()
) -> dict:
    """A JSON file a user or an earlier stage wrote (checkpoint meta, DeepSpeed config...). A
    missing, truncated or incomplete one raises `error` naming the file (and the field), not a
    bare FileNotFoundError / JSONDecodeError / KeyError from deep inside a run."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise error(f"{what}: {p} missing")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what}: {p} is not valid JSON ({e})") from e
    if required:
        if not isinstance(data, dict):
            raise error(f"{what}: {p} must hold a JSON object")
        for k in required:
            if k not in data:
                raise error(f"{what}: {p}: field {k!r} missing")
    return data
