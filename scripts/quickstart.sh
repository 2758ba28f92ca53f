#!/usr/bin/env bash
# Main job: set up, then run the quickstart study end to end on local Ray (CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
# the venv's console scripts (ray, leader) must be on PATH for subprocesses such as `ray job submit`
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/leader study run studies/quickstart.yaml "$@"
