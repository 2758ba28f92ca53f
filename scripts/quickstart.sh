#!/usr/bin/env bash
# Main job: set up, then run the quickstart study end to end on local Ray (CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec .venv/bin/leader study run studies/quickstart.yaml "$@"
