"""The codebase rules a newcomer relies on: no function in leader/ over 80 lines, none over 60
without a `# long:` comment saying why, and the study schema / validate / plan free of torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LEADER = Path(__file__).resolve().parents[2] / "leader"


def _long_functions() -> list[str]:
    bad = []
    for path in sorted(LEADER.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            n = node.end_lineno - node.lineno + 1
            head = "\n".join(lines[node.lineno - 1 : node.lineno + 25])
            if n > 80 or (n > 60 and "# long:" not in head):
                bad.append(f"{path.relative_to(LEADER.parent)}:{node.lineno} {node.name} ({n} lines)")
    return bad


def test_functions_are_short_or_say_why():
    assert not _long_functions()


def test_study_validate_imports_no_torch_or_ray(tmp_path):
    code = (
        "import sys; from leader.cli.main import app; "
        "sys.argv=['leader','study','validate','studies/quickstart.yaml']; "
        "import contextlib\n"
        "with contextlib.suppress(SystemExit): app()\n"
        "print('HEAVY', sorted(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=LEADER.parent, capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


# ----------------------------------------------------------------------------- size and layering
MAX_FILE, MAX_CLASS, MAX_RUNNER = 400, 250, 300

# Bottom to top: a module may import its own layer or a lower one, never a higher one, so each
# layer can be read (and tested) without the ones above it. Top-level modules not listed are shared.
SHARED = (
    "atomic",
    "config",
    "dropout",
    "console",
    "efficiency",
    "errors",
    "evaluation",
    "fit",
    "metrics",
    "paths",
    "precision",
    "ray_utils",
    "security",
    "significance",
    "storage",
)
LAYERS = [
    ("shared", ("leader",) + tuple(f"leader.{m}" for m in SHARED)),
    ("data", ("leader.data", "leader.resources")),
    ("models", ("leader.student", "leader.baselines", "leader.teacher")),
    ("features", ("leader.features",)),
    ("report", ("leader.report",)),
    ("study", ("leader.study",)),
    ("cli", ("leader.cli",)),
]


def layer_of(module: str) -> int:
    """The layer of a module: the longest matching prefix wins (`leader` alone is the package)."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            match = module == p or (p != "leader" and module.startswith(p + "."))
            if match and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")
    return best


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(LEADER.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> set[str]:
    """Every leader module imported anywhere in the file (function-level imports included)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("leader")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("leader") and node.level == 0:
            out.add(node.module)
    return out


def _sources():
    for path in sorted(LEADER.rglob("*.py")):
        yield path, path.read_text()


def test_files_and_classes_are_small():
    bad = []
    for path, text in _sources():
        rel = path.relative_to(LEADER.parent)
        n = len(text.splitlines())
        limit = MAX_RUNNER if rel.as_posix() == "leader/study/runner.py" else MAX_FILE
        if n > limit:
            bad.append(f"{rel}: {n} lines (max {limit})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS:
                bad.append(f"{rel}:{node.lineno} class {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not bad, "\n".join(bad)


def test_no_module_imports_a_layer_above_it():
    bad = []
    for path, text in _sources():
        mod = _module_name(path)
        try:
            layer_of(mod)
        except AssertionError as e:
            bad.append(str(e))
            continue
        for imp in sorted(_imports(ast.parse(text))):
            if layer_of(imp) > layer_of(mod):
                bad.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {imp} ({LAYERS[layer_of(imp)][0]})")
    assert not bad, "\n".join(bad)


def test_the_layer_rule_can_fail():
    """The checker itself: a report module importing the study layer is caught."""
    assert layer_of("leader.study.runner") > layer_of("leader.report.figures")
    assert layer_of("leader.config.student") == 0 and layer_of("leader.data.cache") == 1
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("leader.train.student")
    assert _imports(ast.parse("def f():\n    from leader.study import runner\n")) == {"leader.study"}
