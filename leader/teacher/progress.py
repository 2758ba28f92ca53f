"""What a teacher run prints while it trains: one line from worker 0 at most every N seconds, so
a 7B run is never minutes of silence, and the resident memory it is measured by."""

from __future__ import annotations

import time


class Progress:
    """`progress(step, loss, samples_per_step, val)` prints when `every` seconds have passed (or
    `force`); the rate counts from the first step this process ran (a resumed run included)."""

    def __init__(self, total: int, every: float, rank: int):
        self.total, self.every, self.rank = total, every, rank
        self.t0 = self.last = time.perf_counter()
        self.start_step: int | None = None

    def __call__(self, step: int, loss: float, samples_per_step: int, val: float | None, force: bool = False) -> None:
        now = time.perf_counter()
        if self.start_step is None:
            self.start_step, self.t0 = step - 1, now
        if self.rank != 0 or not (force or now - self.last >= self.every):
            return
        self.last = now
        done = step - self.start_step
        rate = done * samples_per_step / max(now - self.t0, 1e-9)
        eta = (self.total - step) * samples_per_step / max(rate, 1e-9)
        vtxt = f" | val PRAUC {val:.3f}" if val is not None else ""
        print(
            f"[teacher] step {step}/{self.total} | loss {loss:.4f} | {rate:.2f} samples/s | "
            f"ETA {eta / 60:.1f} min{vtxt}",
            flush=True,
        )


def rss_mb() -> float:
    """Resident memory of this process, MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20
