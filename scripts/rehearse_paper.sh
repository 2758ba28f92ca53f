#!/usr/bin/env bash
# Dress rehearsal of the paper study on CPU (issue #23): studies/mimic3_paper.yaml, unchanged, with
# --set overrides only for what this machine lacks (scripts/rehearse_paper.sets, one per line: data,
# backbones, sizes). Its report's "Paper artifacts" section says whether every paper table and figure
# is there per backbone and group, and its "Deviations from the paper" lists exactly these overrides
# plus the documented deviations (tests/integration/test_paper_rehearsal.py runs this script).
#   bash scripts/rehearse_paper.sh [STORAGE_DIR]   (default /tmp/leader_rehearsal)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export PATH="$PWD/.venv/bin:$PATH" MIMIC3_ROOT="${MIMIC3_ROOT:-/nonexistent}"
out="${1:-/tmp/leader_rehearsal}"
args=()
while IFS= read -r s || [ -n "$s" ]; do
  case "$s" in "" | "#"*) continue ;; esac
  args+=(--set "$s")
done < scripts/rehearse_paper.sets
exec leader study run studies/mimic3_paper.yaml --storage-path "$out" "${args[@]}"
