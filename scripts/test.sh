#!/usr/bin/env bash
# Test job: set up, then run the whole suite (fast unit tests and slow integration tests).
# Pass pytest arguments through, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec .venv/bin/python -m pytest "$@"
