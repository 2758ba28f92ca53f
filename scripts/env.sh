# Sourced by the entry scripts: shared caches so expensive one-off builds are paid once.
export LEADER_CACHE=${LEADER_CACHE:-$HOME/.cache/leader}
# DeepSpeed compiles a CPU comm op on first use (~45 s); keep it across runs.
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$LEADER_CACHE/torch_extensions}
# DS_ACCELERATOR is left unset: each process that imports DeepSpeed picks cuda or cpu from what it
# sees (leader.ray_utils.select_ds_accelerator); set it only to force one.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false
export RAY_USAGE_STATS_ENABLED=0
export PYTHONUNBUFFERED=1
# Ray 2.60 clusters use token auth; clients (ray job submit, ray.init(address=...)) need this
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
