"""LEADER(S) at serving speed: the student's forward ahead-of-time compiled (torch.export +
AOTInductor) into one shared library.

Why: at batch 1 the eager student is dispatcher overhead, not arithmetic: ~700 small aten calls
per patient (three set encoders, the visit encoder, masks, gathers) for about 1 MFLOP.
A compiled package runs the same graph as generated C++ with the weights frozen in, so a patient
costs one call. What the compiler needs from the model: no data-dependent branch, so the export
uses `LeaderStudent.forward(branch_free=True)`: the non-empty sets are gathered by index (a
data-dependent size the exporter supports) instead of behind an `if`, so padding visits and empty
med slots still cost nothing, as in the eager path. Batch size, history length and the three
code-set widths stay symbolic: one package serves any batch. The export is strict (TorchDynamo):
the non-strict tracer of torch 2.13 adds a spurious `visits != 10` guard from a contiguity check
and refuses a symbolic visit axis.

Contract:
    SERVE_KEYS                                       the inputs the package takes, in order
    serving_inputs(batch, min_size=1) -> batch       the package's inputs from an EncodedDataset batch
    export_student(model, example) -> ExportedProgram
    compile_student(model, example, path) -> Path    a .pt2 package (minutes on 2 CPU cores)
    ServedStudent(path)(batch) -> logits (B, |meds|) equal to model(batch)["logits"] to ~1e-6
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from leader.student.model import LeaderStudent

SERVE_KEYS = ("diag", "proc", "med", "visit_mask", "profile")
_CODE_KEYS = ("diag", "proc", "med")


class _Logits(nn.Module):
    """The student's inference forward with positional inputs (what torch.export traces)."""

    def __init__(self, model: LeaderStudent):
        super().__init__()
        self.model = model

    def forward(self, diag, proc, med, visit_mask, profile):  # (B, V, C) x3, (B, V), (B, F)
        batch = {"diag": diag, "proc": proc, "med": med, "visit_mask": visit_mask, "profile": profile}
        return self.model(batch, branch_free=True)["logits"]  # (B, |meds|)


def serving_inputs(batch: dict[str, torch.Tensor], min_size: int = 1) -> dict[str, torch.Tensor]:
    """The package's inputs (SERVE_KEYS) of a batch, the visit axis and code sets padded to at
    least `min_size` (padding is masked everywhere, so it never changes the output)."""
    out = {k: batch[k] for k in SERVE_KEYS}
    v = max(0, min_size - out["visit_mask"].shape[1])
    for k in _CODE_KEYS:
        out[k] = F.pad(out[k], (0, max(0, min_size - out[k].shape[2]), 0, v))
    out["visit_mask"] = F.pad(out["visit_mask"], (0, v))
    return out


def export_student(model: LeaderStudent, example: dict[str, torch.Tensor]) -> torch.export.ExportedProgram:
    """Export the eval-mode student with symbolic batch size, history length and code-set widths.
    The example's symbolic sizes must be >= 2 (the exporter specialises 0 and 1): it is padded and,
    at batch 1, repeated here."""
    from torch.export import Dim

    model = model.eval()
    ex = serving_inputs(example, min_size=2)
    if ex["profile"].shape[0] < 2:
        ex = {k: torch.cat([v, v], 0) for k, v in ex.items()}
    batch, visits = Dim("batch", min=1), Dim("visits", min=1, max=model.cfg.max_visits)
    codes = {k: {0: batch, 1: visits, 2: Dim(f"{k}_codes", min=1)} for k in _CODE_KEYS}
    shapes = {**codes, "visit_mask": {0: batch, 1: visits}, "profile": {0: batch}}
    with torch.no_grad():
        return torch.export.export(_Logits(model).eval(), (), ex, dynamic_shapes=shapes, strict=True)


def compile_student(model: LeaderStudent, example: dict[str, torch.Tensor], path: str | Path) -> Path:
    """AOT-compile the exported student into a self-contained package at `path` (.pt2)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ep = export_student(model, example)
    return Path(torch._inductor.aoti_compile_and_package(ep, package_path=str(path)))


class ServedStudent:
    """A compiled package behind the eager model's batch interface (inputs on the CPU)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._run = torch._inductor.aoti_load_package(str(self.path))

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._run(**serving_inputs(batch))  # (B, |meds|) logits
