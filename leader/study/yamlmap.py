"""Safe YAML loading that remembers where every value came from.

Study files are data, never code: only PyYAML's SafeLoader is used (python/* tags are refused),
and every mapping key path is mapped to (file, line) so a schema error can point the user at
the exact line to fix, even after `extends:` merged several files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from leader.errors import ConfigError

Loc = tuple  # a key path: ('search', 'space', 'lr', 'low') or with list indices
LineMap = dict[Loc, tuple[str, int]]  # key path -> (file, 1-based line)


def _walk(node: yaml.Node, path: Loc, file: str, out: LineMap) -> None:
    out[path] = (file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            if key in seen:
                raise ConfigError(
                    f"{file}:{k.start_mark.line + 1}: duplicate key {key!r} (first defined on line {seen[key]})"
                )
            seen[key] = k.start_mark.line + 1
            _walk(v, path + (key,), file, out)
            out[path + (key,)] = (file, k.start_mark.line + 1)  # point at the key, not its value
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, path + (i,), file, out)


def load_yaml(path: str | Path) -> tuple[dict, LineMap]:
    """(mapping, line map) for one file. Raises ConfigError for unreadable, non-mapping or
    unsafe YAML (any tag SafeLoader cannot construct, e.g. !!python/object)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read study file ({e.strerror})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{path}: study file is empty")
        lines: LineMap = {}
        _walk(node, (), str(path), lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}{line}: invalid YAML: {e.problem or e}"
            + (
                " (study files may not contain tags that construct objects)"
                if isinstance(e, yaml.constructor.ConstructorError)
                else ""
            )
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a study file must be a mapping of fields, got {type(data).__name__}")
    return data, lines


def deep_merge(base: dict, over: dict) -> dict:
    """`over` wins; nested mappings merge key by key; lists and scalars are replaced whole
    (merging lists element-wise would make grids impossible to shrink)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _drop_subtree(lines: LineMap, data: dict, prefix: Loc = ()) -> None:
    """A replaced list/scalar must not keep its parent's element lines."""
    for k, v in data.items():
        p = prefix + (k,)
        if isinstance(v, dict):
            _drop_subtree(lines, v, p)
        else:
            for key in [q for q in lines if len(q) > len(p) and q[: len(p)] == p]:
                del lines[key]


def load_with_extends(path: str | Path, _chain: tuple[Path, ...] = (), overlay=None) -> tuple[dict, LineMap]:
    """Resolve `extends:` (a path, or list of paths, relative to the extending file), deep-merge
    parents first, detect cycles. Returns the merged mapping without `extends`. `overlay(data)`
    gives a mapping merged between a file's parents and the file itself (a study's preset)."""
    path = Path(path).resolve()
    if path in _chain:
        cycle = " -> ".join(str(p.name) for p in _chain + (path,))
        raise ConfigError(f"{_chain[-1]}: `extends` cycle: {cycle}")
    data, lines = load_yaml(path)
    parents = data.pop("extends", None)
    if parents is None:
        return data, lines
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        f, ln = lines.get(("extends",), (str(path), 1))
        raise ConfigError(f"{f}:{ln}: field 'extends' must be a path or a list of paths")
    merged: dict = {}
    mlines: LineMap = {}
    for rel in parents:
        ppath = path.parent / rel
        if not ppath.is_file():
            f, ln = lines.get(("extends",), (str(path), 1))
            raise ConfigError(f"{f}:{ln}: field 'extends': no such file {rel!r} (relative to {path.parent})")
        pdata, plines = load_with_extends(ppath, _chain + (path,), overlay)
        _drop_subtree(mlines, pdata)
        merged = deep_merge(merged, pdata)
        mlines.update(plines)
    if overlay is not None:
        merged = deep_merge(merged, overlay({**merged, **data}))
    _drop_subtree(mlines, data)
    mlines.update({k: v for k, v in lines.items() if k != ("extends",) and k[:1] != ("extends",)})
    return deep_merge(merged, data), mlines


def where(lines: LineMap, loc: Loc, default_file: str) -> str:
    """'file:line' of the deepest known prefix of `loc`."""
    for n in range(len(loc), -1, -1):
        hit = lines.get(tuple(loc[:n]))
        if hit:
            return f"{hit[0]}:{hit[1]}"
    return default_file
