"""Which number format the teacher's backbone computes in, decided once per process.

Why: on CPU the teacher is matmul-bound, and CPUs with AVX512-BF16 or AMX run bf16 matmuls
several times faster than fp32 (one thread of a Zen 5 EPYC: ~105 GFLOP/s fp32 vs ~480 bf16,
`scripts/bench_machine.py`); without those instructions torch emulates bf16 at ~1 GFLOP/s (a Zen 3
EPYC: 68 fp32, `machine_zen3.json`), so 'auto' never picks it there. The backbone's forward then
runs under bf16 autocast; master weights, the head, the loss and the optimizer stay fp32. On V100s
the format is fp16 through DeepSpeed's loss-scaled engine (V100 has no bf16), not autocast.

`precision` values: 'auto' (bf16 on a CPU that has it, else fp32; on CUDA: what DeepSpeed's fp16
flag says), 'fp32', 'bf16', 'fp16' (CUDA + DeepSpeed only).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
log = logging.getLogger("leader.precision")


@functools.cache
def _cpuinfo_lines() -> tuple[str, ...]:
    """/proc/cpuinfo, read once (empty where there is none: not Linux)."""
    try:
        return tuple(Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:
        return ()


def _cpuinfo_field(field: str) -> str:
    """The first value of `field` in /proc/cpuinfo ('' where there is none)."""
    return next((ln.split(":", 1)[1].strip() for ln in _cpuinfo_lines() if ln.split(":", 1)[0].strip() == field), "")


def cpu_bf16_flags() -> tuple[str, ...]:
    """The bf16 matmul instructions this CPU reports (Linux /proc/cpuinfo; none elsewhere)."""
    flags = {f for ln in _cpuinfo_lines() if ln.startswith("flags") for f in ln.split(":", 1)[1].split()}
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def cpu_identity() -> dict[str, str]:
    """Which CPU a speed figure was measured on. The brand string can hide the generation ("AMD
    EPYC" for Zen 4 and Zen 5 alike), so family/model go with it (Zen 4: 25, Zen 5: 26)."""
    import platform

    return {
        "cpu": _cpuinfo_field("model name") or platform.processor(),
        "cpu_family_model": f"{_cpuinfo_field('cpu family')}/{_cpuinfo_field('model')}",
    }


def resolve(requested: str, device_type: str, fp16: bool = False) -> str:
    """The format actually used ('fp32' | 'bf16' | 'fp16') for `requested` on `device_type`."""
    from leader.errors import ConfigError

    if device_type == "cuda":
        if requested == "bf16":
            raise ConfigError("precision: bf16 on CUDA is not supported here (V100 has no bf16); use fp16 or fp32")
        return "fp16" if (requested == "fp16" or (requested == "auto" and fp16)) else "fp32"
    if requested == "fp16":
        raise ConfigError("precision: fp16 needs a CUDA GPU (DeepSpeed's loss-scaled engine); use bf16 or fp32 on CPU")
    if requested == "bf16" and not cpu_bf16_flags():
        _warn_emulated_bf16()
    if requested == "bf16" or (requested == "auto" and cpu_bf16_flags()):
        return "bf16"
    return "fp32"


@functools.cache
def _warn_emulated_bf16() -> None:
    """Once per process: a pinned bf16 is honoured (its numerics may be what the user compares),
    but without bf16 instructions torch falls back to a scalar kernel, which no one expects."""
    log.warning(
        "precision: bf16 was pinned but this CPU (%s, family/model %s) has none of %s: torch emulates "
        "bf16 (on a Zen 3 EPYC: matmuls 60-75x slower than fp32, machine_zen3.json; a MiniLM forward 6x); "
        "use precision: auto or fp32 here",
        *cpu_identity().values(),
        "/".join(BF16_CPU_FLAGS),
    )


def autocast_dtype(used: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype for a forward in format `used`: bf16 on CPU only (fp16 on CUDA is
    DeepSpeed's half() module, not autocast)."""
    return torch.bfloat16 if used == "bf16" and device_type == "cpu" else None


def for_inference(saved: str | None, device_type: str) -> str:
    """A saved teacher computes in the format it was trained in where `device_type` has it: a
    bf16-trained teacher stays bf16 on a CPU with bf16 instructions (its validation PRAUC is
    reproduced) and runs fp32 on a GPU or on a CPU without them (emulated bf16 made a MiniLM
    forward 6.3x slower on a Zen 3: 20.4 vs 3.2 s for 32 x 150 tokens on one thread); an fp16 one
    runs in the CPU's best format; one saved without a format, as 'auto' says."""
    if saved == "bf16":
        if device_type == "cpu" and cpu_bf16_flags():
            return "bf16"
        if device_type == "cpu":
            log.warning("teacher trained in bf16; this CPU has no bf16 instructions: computing in fp32")
        return "fp32"
    if saved == "fp16":
        return "fp16" if device_type == "cuda" else resolve("auto", device_type)
    return saved if saved == "fp32" else resolve("auto", device_type)
