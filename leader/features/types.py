"""In-memory teacher feature set: the distillation targets a student trial consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TeacherFeatures:
    """Teacher outputs keyed by sample id (= visit_id), so row order can never misalign.

    sample_ids: (N,) int64; hidden: (N, d_h) float16 last-layer hidden state;
    probs: (N, |meds|) float32 sigmoid outputs.
    """

    sample_ids: np.ndarray
    hidden: np.ndarray
    probs: np.ndarray
    meta: dict | None = None

    def __post_init__(self) -> None:
        n = len(self.sample_ids)
        if self.hidden.shape[0] != n or self.probs.shape[0] != n:
            raise ValueError(f"feature rows disagree: ids {n}, hidden {self.hidden.shape}, probs {self.probs.shape}")

    @property
    def d_hidden(self) -> int:
        return int(self.hidden.shape[1])

    def rows_for(self, sample_ids: np.ndarray) -> np.ndarray:
        """Row positions of `sample_ids`; raises KeyError naming the first missing id."""
        order = np.argsort(self.sample_ids, kind="stable")
        sorted_ids = self.sample_ids[order]
        pos = np.searchsorted(sorted_ids, sample_ids)
        pos = np.clip(pos, 0, len(sorted_ids) - 1)
        bad = sorted_ids[pos] != sample_ids
        if bad.any():
            raise KeyError(
                f"teacher features have no row for sample_id {int(np.asarray(sample_ids)[bad][0])} "
                f"({int(bad.sum())} missing): the feature set was made for another dataset"
            )
        return order[pos]

    def align(self, sample_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hidden, probs) rows in the order of `sample_ids`."""
        r = self.rows_for(np.asarray(sample_ids, dtype=np.int64))
        return self.hidden[r], self.probs[r]
