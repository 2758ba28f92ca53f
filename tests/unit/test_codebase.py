"""The codebase rules a newcomer relies on: no function in leader/ over 80 lines, none over 60
without a `# long:` comment saying why, and the study schema / validate / plan free of torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
