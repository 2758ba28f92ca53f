"""What every `leader` command shares, so each speaks the same vocabulary: `--dataset NAME|FOLDER`,
`--set key=value` overrides checked against the command's pydantic config, and one place that turns a
bad value into a one-line error naming the option (leader.cli.main prints it)."""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

DATASETS = ("demo", "synthetic", "mimic3", "mimic4")

# The `--set` declaration every command shares.
SET_OPTION = typer.Option(
    None,
    "--set",
    metavar="KEY=VALUE",
    help="Override any config field: key=value (repeatable; nested fields as a.b=value).",
)


def deprecated(old: str, new: str) -> None:
    """One warning line for an old option spelling that still works."""
    typer.secho(f"warning: {old} is deprecated; use {new}", fg="yellow", err=True)


_VERBOSITY = 0


def verbosity() -> int:
    """-1 with --quiet, 1 with --verbose, else 0: commands drop progress displays when quiet."""
    return _VERBOSITY


def configure_logging(level_: int) -> None:
    """-1 quiet (warnings only), 0 normal, 1 verbose (debug)."""
    global _VERBOSITY
    _VERBOSITY = max(-1, min(1, level_))
    from leader.console import set_verbose

    set_verbose(_VERBOSITY > 0)  # libraries keep their own logging only with --verbose
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[_VERBOSITY]
    root = logging.getLogger()
    if not root.handlers:  # keep handlers someone else installed (pytest's, an embedding program's)
        logging.basicConfig(format="%(message)s", stream=sys.stderr)
    root.setLevel(level)


def load_dataset(dataset: str, root: str | Path | None = None):
    """A source name (demo, synthetic, mimic3, mimic4) through the dataset cache, or a prepared
    EHRDataset folder."""
    from leader.errors import ConfigError

    if dataset in DATASETS:
        from leader.data.cache import prepare

        return prepare(dataset, root)
    if (Path(dataset) / "meta.json").exists():
        from leader.data.dataset import EHRDataset

        return EHRDataset.load(Path(dataset))
    raise ConfigError(f"--dataset {dataset!r}: expected {', '.join(DATASETS)} or a prepared dataset folder")


def _parse_value(raw: str, annotation: Any) -> Any:
    """YAML scalars (4, 0.5, true, null, [0.8, 0.1, 0.1]); a str field keeps the text as typed."""
    import yaml

    if annotation in (str, str | None):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _model_of(annotation: Any):
    from pydantic import BaseModel

    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unknown(key: str, known) -> Exception:
    from leader.errors import ConfigError

    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(known), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
    return ConfigError(f"--set {key}: unknown config key{hint}")


def parse_sets(cls, items: list[str] | None, aliases: Mapping[str, str] | None = None) -> dict:
    """`["a=1", "student.dropout=0.2"]` -> {"a": 1, "student": {"dropout": 0.2}}, every key checked
    against the fields of the pydantic model `cls`. `aliases` maps the flat names a config also
    accepts to their dotted paths (the student's: leader.config.flat.STUDENT_PATHS, alpha -> loss.alpha)."""
    from leader.errors import ConfigError

    aliases = aliases or {}
    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        head, dot, rest = key.partition(".")
        if head not in cls.model_fields and head in aliases:
            key = aliases[head] + dot + rest
        model, node, parts = cls, out, key.split(".")
        for i, part in enumerate(parts):
            fields = model.model_fields if model is not None else {}
            known = set(fields) | (set(aliases) if model is cls else set())
            if part not in known:
                raise _unknown(".".join(parts[: i + 1]), known)
            annotation = fields[part].annotation if part in fields else None
            if i == len(parts) - 1:
                node[part] = _parse_value(raw, annotation)
            else:
                model = _model_of(annotation)
                if model is None:
                    raise ConfigError(f"--set {key}: {part!r} has no sub-fields")
                node = node.setdefault(part, {})
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _keys(d: dict) -> set[str]:
    return set(d) | {k for v in d.values() if isinstance(v, dict) for k in _keys(v)}


def build_config(
    cls,
    options: dict,
    sets: list[str] | None = None,
    *,
    flags: dict[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
):
    """The command's config from its options, then its `--set` overrides. A value the config rejects
    becomes a ConfigError naming the option as the user typed it (`option --zero: ...` or
    `--set zero_stage=4: ...`), not a pydantic traceback."""
    from pydantic import ValidationError

    from leader.errors import ConfigError

    overrides = parse_sets(cls, sets, aliases)
    try:
        return cls(**_merge(options, overrides))
    except ValidationError as e:
        err = e.errors()[0]
        locs = [str(p) for p in err["loc"]]
        by_key = {s.split("=", 1)[0].strip(): s for s in sets or []}
        hit = next((by_key[k] for k in (".".join(locs), *locs) if k in by_key), None)
        name = next((p for p in reversed(locs) if p in _keys(options)), locs[0] if locs else "")
        where = f"--set {hit}" if hit else f"option --{(flags or {}).get(name, name).replace('_', '-')}"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{where}: {err['msg']}{more}") from None
