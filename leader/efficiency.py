"""Inference cost of a model, measured from the allocator rather than the process.

Process RSS (what a first version reported) counts the Python interpreter, torch's own
libraries and whatever else the worker imported, so a 1 MB student and a 90 MB teacher both
"used" ~500 MB. Here memory is the model's parameter + buffer bytes plus the PEAK activation
memory of one forward pass: `torch.cuda.max_memory_allocated` on a GPU, the running sum of
allocations and frees recorded by `torch.profiler` (profile_memory=True) on the CPU.

Contract:
    model_bytes(module) -> int
    peak_activation_bytes(fn, device) -> int          fn() runs one forward pass
    latency_ms(fn, batch, repeats, device) -> float   median warm ms per sample
    synchronize(device)                               wait for the device's queued kernels

CUDA kernels run asynchronously: a forward pass returns once its kernels are queued, so a clock
read without `synchronize` times the launch, not the work. Every clock read on a GPU waits first.
"""

from __future__ import annotations

import time

import numpy as np
import torch


def model_bytes(module: torch.nn.Module) -> int:
    return int(sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers())))


def synchronize(device: str | torch.device = "cpu") -> None:
    """Block until the work queued on `device` has finished (a no-op on the CPU, which is synchronous)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def peak_activation_bytes(fn, device: str = "cpu") -> int:
    """Peak bytes allocated (and not yet freed) while `fn` runs, beyond what was held before."""
    if str(device).startswith("cuda"):
        synchronize(device)
        dev = torch.device(device)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        with torch.no_grad():
            fn()
        synchronize(device)
        return int(torch.cuda.max_memory_allocated(dev) - base)
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # each op's SELF allocations (+), and "[memory]" events for frees outside an op (-), in time
    # order: their running sum is the memory held at each moment
    ev = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    running = np.cumsum([e.self_cpu_memory_usage for e in ev]) if ev else np.zeros(1)
    return int(max(0, running.max()))


def latency_ms(fn, batch: int, repeats: int = 5, device: str | torch.device = "cpu") -> float:
    """Median wall ms per sample of `fn` (one batch), after one warm-up call. On a GPU the clock is
    read only once the device is idle: before a call (the warm-up's kernels are not counted) and
    after it (its own kernels are)."""
    with torch.no_grad():
        fn()
        times = []
        for _ in range(repeats):
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)) / batch
