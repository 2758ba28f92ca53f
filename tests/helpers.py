"""Helpers shared by tests (and the feature benchmark), kept out of the package: they build data
no real run would use."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leader.data.assemble import assemble
from leader.data.dataset import EHRDataset


def random_dataset(
    n_patients: int = 60, n_diag: int = 40, n_proc: int = 20, n_med: int = 30, seed: int = 0
) -> EHRDataset:
    """A small random (structure-free) dataset for unit tests that need shapes, not signal.
    Studies and integration tests use the synthetic cohort generator instead."""
    rng = np.random.default_rng(seed)
    rows = []
    vid = 100000
    for p in range(n_patients):
        for k in range(int(rng.choice([1, 1, 2, 3, 4]))):
            vid += 1
            rows.append(
                {
                    "patient_id": f"P{p:05d}",
                    "visit_id": vid,
                    "admittime": pd.Timestamp("2100-01-01") + pd.Timedelta(days=40 * k),
                    "diag": [f"D{x}" for x in rng.choice(n_diag, rng.integers(1, 6), replace=False)],
                    "proc": [f"R{x}" for x in rng.choice(n_proc, rng.integers(1, 4), replace=False)],
                    "med": [f"M{x}" for x in rng.choice(n_med, rng.integers(1, 8), replace=False)],
                    "age": str(rng.choice(["18-39", "40-64", "65-79", "80+"])),
                    "gender": str(rng.choice(["F", "M"])),
                    "insurance": str(rng.choice(["Medicare", "Private", "Medicaid"])),
                }
            )
    df = pd.DataFrame(rows)
    names = {
        "diag": {f"D{i}": f"diagnosis {i}" for i in range(n_diag)},
        "proc": {f"R{i}": f"procedure {i}" for i in range(n_proc)},
        "med": {f"M{i}": f"drug class {i}" for i in range(n_med)},
    }
    return assemble(
        "random", df, names, ["age", "gender", "insurance"], seed=seed, provenance={"source": "random", "seed": seed}
    )
