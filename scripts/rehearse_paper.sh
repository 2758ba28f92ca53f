#!/usr/bin/env bash
# Dress rehearsal of the paper study on CPU (issue #23): studies/mimic3_paper.yaml, unchanged, with
# --set overrides only for what this machine lacks: synthetic MIMIC-III-shaped data instead of MIMIC,
# two tiny CPU backbones instead of the 7B LLMs (mechanics only: they know nothing, so the
# learned-nothing guard is off), and small step/trial/seed counts. Its report's
# "Deviations from the paper" lists exactly these overrides plus the documented deviations.
#   bash scripts/rehearse_paper.sh [STORAGE_DIR]   (default /tmp/leader_rehearsal)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export PATH="$PWD/.venv/bin:$PATH" MIMIC3_ROOT="${MIMIC3_ROOT:-/nonexistent}"
out="${1:-/tmp/leader_rehearsal}"
sets=(
  datasets.0.source=synthetic datasets.0.root=null datasets.0.prepare.first_24h=false datasets.0.prepare.n_patients=600
  "teacher.backbones=[tiny-llama, tiny-qwen2]"
  teacher.options.max_steps=4 teacher.options.fp16=false teacher.options.gradient_checkpointing=false
  teacher.options.max_length=256 teacher.options.eval_every=0 teacher.options.checkpoint_every=0
  teacher.options.require_learning=false
  teacher_resources.num_workers=1 teacher_resources.gpu_per_worker=0 teacher_resources.cpu_per_worker=1
  resources.cpu=1 resources.gpu=0
  student.epochs=2 search.num_samples=2 search.max_concurrent=2 search.scheduler.grace_period=1
  "seeds=[0, 1]" "sensitivity.alpha=[0.0, 0.4]" "sensitivity.beta=[0.0, 0.005]"
  evaluation.bootstrap_rounds=3 "evaluation.latency_batch_sizes=[1, 64]"
)
args=()
for s in "${sets[@]}"; do args+=(--set "$s"); done
exec leader study run studies/mimic3_paper.yaml --storage-path "$out" "${args[@]}"
