#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with the wheels scripts/gpu_check.py needs beyond torch + transformers
# (and what those two require), for the GPU machine: CPython 3.12, manylinux x86_64, no package
# registry. .whl/ then travels with the checkout (the device transfer limit is 64 MiB, repo
# included, so the total must stay under 50 MiB). On the device:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
#   PYTHONPATH=/tmp/site:. python3 scripts/gpu_check.py --device cuda
#
# What is here and why (checked by running gpu_check.py --device cpu under `python -S` with only
# torch, transformers, their requirements and these packages on the path):
# - deepspeed, peft, accelerate (peft imports it), pydantic (leader's configs, DeepSpeed's),
#   pandas (leader's dataset) and numpy (pandas 3 needs numpy >= 2.0.2; transformers only needs
#   1.17), at pyproject.toml's versions;
# - their requirements, at the versions the test-suite's venv resolved.
# Not here: ray (the check runs the worker in-process: leader.teacher.context.LocalContext),
# pyarrow (55 MiB; the check builds its cohort with pandas only), scipy / scikit-learn.
# DeepSpeed 0.19.8 is published as an sdist only: its wheel is built here with DS_BUILD_OPS=0
# (pure Python; ops are JIT-compiled if ever needed, and the check needs none: it passes a torch
# optimizer), against this venv's torch (--no-build-isolation).
#
# Usage: . .venv/bin/activate && bash scripts/gpu_wheelhouse.sh      (PYTHON=... to pick another)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=.whl
MAX_MIB=50
mkdir -p "$OUT"

# pyproject.toml's pin of each top-level package the check imports
FROM_PYPROJECT=(deepspeed peft accelerate pydantic numpy pandas)
mapfile -t PINS < <("$PY" - "${FROM_PYPROJECT[@]}" <<'EOF'
import re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
pins = {re.split(r"[\[=<>!~ ]", d, maxsplit=1)[0].lower(): d for d in deps}
for name in sys.argv[1:]:
    d = pins.get(name)
    if not d or "==" not in d:
        sys.exit(f"gpu_wheelhouse: pyproject.toml pins no exact version of {name}")
    print(re.sub(r"\[.*?\]", "", d))
EOF
)
# their requirements (not in pyproject.toml): the versions the test-suite's venv resolved
PINS+=(
  pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
  hjson==3.1.0 msgpack==1.2.4 ninja==1.13.2 py-cpuinfo==9.0.0 einops==0.8.2 psutil==7.2.2
  python-dateutil==4.0.0 tzdata==2026.6
)

PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for pin in "${PINS[@]}"; do
  if "$PY" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$OUT" "$pin" 2>/dev/null; then
    continue
  fi
  if [[ $pin == deepspeed==* ]]; then  # sdist only: build the (pure-Python) wheel here
    echo "gpu_wheelhouse: $pin has no wheel; building one (DS_BUILD_OPS=0)"
    DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" "$pin"
    continue
  fi
  echo "gpu_wheelhouse: no CPython 3.12 manylinux x86_64 wheel of $pin" >&2
  exit 1
done

# exactly one wheel per pin, none left over from other versions; the total under MAX_MIB
"$PY" - "$OUT" "$MAX_MIB" "${PINS[@]}" <<'EOF'
import re, sys
from pathlib import Path

out, max_mib, pins = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
want = {(norm(p.split("==")[0]), p.split("==")[1]) for p in pins}
total, missing = 0, set(want)
for w in sorted(out.glob("*.whl")):
    name, version = w.name.split("-")[:2]
    key = (norm(name), version)
    if key not in want:
        print(f"gpu_wheelhouse: removing {w.name} (not pinned)")
        w.unlink()
        continue
    missing.discard(key)
    total += w.stat().st_size
    print(f"  {w.stat().st_size / 2**20:6.2f} MiB  {w.name}")
for f in out.glob("*.tar.gz"):
    f.unlink()
if missing:
    sys.exit(f"gpu_wheelhouse: no wheel for {sorted(missing)}")
print(f"gpu_wheelhouse: {len(want)} wheels, {total / 2**20:.1f} MiB in {out}/ (limit {max_mib:g} MiB)")
if total > max_mib * 2**20:
    sys.exit(f"gpu_wheelhouse: {total / 2**20:.1f} MiB is over the {max_mib:g} MiB budget")
EOF
