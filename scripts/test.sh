#!/usr/bin/env bash
# Test job: set up, then run the whole suite (fast unit tests and slow integration tests).
# Pass pytest arguments through, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The report tests render HTML in headless Chromium (Debian package `chromium`); install it when
# we can (root + apt). Elsewhere those checks skip with a reason.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 \
    || echo "warning: could not install chromium; HTML rendering checks will skip" >&2
fi
source scripts/env.sh
# the venv's console scripts (ray, leader) must be on PATH for subprocesses such as `ray job submit`
export PATH="$PWD/.venv/bin:$PATH"
# lint first (rules in pyproject.toml): a style or pyflakes error fails the run before any test
.venv/bin/ruff check leader tests scripts
exec .venv/bin/python -m pytest "$@"
