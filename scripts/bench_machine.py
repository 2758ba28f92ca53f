"""The machine's own limit -> reports/bench/machine.json: which bf16 instructions the CPU has (what
`precision: auto` decides on, leader.precision) and the matmul peak per thread in fp32 and bf16
at 1024^3 and at MiniLM's FFN shape, measured in one run.

Why a file of its own: the speed benches are judged against the peak of the machine they ran on,
and machines of this project's kind differ: an AVX512-BF16/AMX Xeon in one session
(`machine_xeon.json`: 158-164 GFLOP/s fp32 and 1,104-1,477 bf16 on one thread, 7-9x), an AVX2-only
EPYC in another, AVX512-BF16 EPYCs of two generations in others (Zen 4: bf16 2.2-2.8x fp32 on one
thread, `machine.json`; Zen 5: 4.4-4.7x, `machine_zen5.json`). On a CPU without bf16 instructions
torch has no fast bf16 matmul at all (Zen 3, `machine_zen3.json`: 0.9-1.3 GFLOP/s bf16 vs 68-77
fp32, 60-75x slower): `precision: auto` then picks fp32, a bf16 speed goal cannot be met or
measured there, and a pinned bf16 is warned about (leader.precision).

Usage: python scripts/bench_machine.py [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_teacher import matmul_gflops  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default="reports/bench/machine.json")
    a = ap.parse_args()
    import torch

    from leader.precision import cpu_bf16_flags, cpu_identity, resolve

    out = {
        "command": "python " + " ".join(sys.argv),
        **cpu_identity(),
        "bf16_cpu_flags": " ".join(cpu_bf16_flags()) or "none",
        "precision_auto_resolves_to": resolve("auto", "cpu"),
        "torch": torch.__version__,
    }
    for t in a.threads:
        for dt in ("fp32", "bf16"):
            out[f"{dt}_gflops_square_1024_threads{t}"] = round(matmul_gflops(t, 1024, 1024, 1024, dt), 1)
            out[f"{dt}_gflops_minilm_ffn_threads{t}"] = round(matmul_gflops(t, 1160, 384, 1536, dt), 1)
        out[f"bf16_over_fp32_square_threads{t}"] = round(
            out[f"bf16_gflops_square_1024_threads{t}"] / out[f"fp32_gflops_square_1024_threads{t}"], 2
        )
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
