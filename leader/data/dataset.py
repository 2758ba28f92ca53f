"""The processed EHR dataset: the one contract every later stage (teacher, student, feature
store, studies) reads. Loaders, the synthetic generator and the cache all produce this.

Layout (all in memory as pandas; on disk as Parquet + JSON, see `save`/`load`):

visits   one row per admission, sorted by (patient_id, visit_index)
         patient_id: str, visit_id: int64 (hadm_id; also the SAMPLE ID), visit_index: int
         (0 = first admission), diag/proc/med: list[int] (indices into vocabs; never empty),
         one int column per profile feature (index into profile_vocabs[feature]).
patients one row per patient: patient_id, n_visits, split ('train'|'val'|'test'),
         group ('single' when the patient has exactly one visit, else 'multi').

A *sample* is one visit (label = its medications) plus all earlier visits of the same patient as
history. Which visits are samples is `sampling`: 'per_visit' (every visit, the default) or
'last_visit' (each patient's last visit only, as the LEADER authors sample; the earlier visits stay
in `visits` as its history). Groups are patient-level, as in the paper's single-/multi-visit
evaluation: the first visit of a multi-visit patient is a 'multi' sample with an empty history.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leader import atomic
from leader.errors import DataError, read_json

CODE_TYPES = ("diag", "proc", "med")
SPLITS = ("train", "val", "test")
GROUPS = ("single", "multi")
SAMPLINGS = ("per_visit", "last_visit")


@dataclass(frozen=True)
class Vocab:
    """Codes of one type with their human-readable names (the teacher reads the names)."""

    kind: str  # 'diag' | 'proc' | 'med'
    codes: tuple[str, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.codes) != len(self.names):
            raise ValueError(f"vocab {self.kind}: {len(self.codes)} codes but {len(self.names)} names")

    def __len__(self) -> int:
        return len(self.codes)

    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.codes)}

    def name(self, i: int) -> str:
        return self.names[i]


@dataclass
class EHRDataset:
    name: str
    visits: pd.DataFrame
    patients: pd.DataFrame
    vocabs: dict[str, Vocab]
    profile_vocabs: dict[str, list[str]]
    # Counted problems met while building (unknown NDCs, dropped visits...): shown by `data stats`.
    warnings: dict[str, int] = field(default_factory=dict)
    # Options and inputs that produced it; `fingerprint` hashes these for caches and manifests.
    provenance: dict = field(default_factory=dict)
    # The drop table (reason -> rows, visits, patients; see leader.data.drops). Not part of the
    # fingerprint: it describes how the content was reached, the content is hashed already.
    drops: list = field(default_factory=list)
    # Which visits are samples ('per_visit' | 'last_visit'); hashed through `provenance`.
    sampling: str = "per_visit"

    # ------------------------------------------------------------------ derived views
    @property
    def profile_features(self) -> list[str]:
        return list(self.profile_vocabs)

    @property
    def n_meds(self) -> int:
        return len(self.vocabs["med"])

    @property
    def fingerprint(self) -> str:
        """Stable content hash: a feature set or checkpoint made for one dataset cannot be
        silently reused for another."""
        h = hashlib.sha256()
        h.update(json.dumps(self.provenance, sort_keys=True, default=str).encode())
        for kind in CODE_TYPES:
            h.update("\x1f".join(self.vocabs[kind].codes).encode())
        h.update(
            pd.util.hash_pandas_object(
                self.visits[["patient_id", "visit_id", "visit_index"]], index=False
            ).values.tobytes()
        )
        h.update(pd.util.hash_pandas_object(self.patients[["patient_id", "split"]], index=False).values.tobytes())
        return h.hexdigest()[:16]

    def samples(self, split: str | None = None) -> pd.DataFrame:
        """One row per sample: sample_id (= visit_id), patient_id, visit_index, split, group
        (patient-level: 'single' = the patient has one visit), n_history, history ('no_history'
        = no earlier visit: the paper's per-sample "single-visit" definition, else 'history').
        Ordered by (patient_id, visit_index) - stable across runs. Under 'last_visit' sampling,
        one row per patient: its last visit."""
        s = self.visits[["visit_id", "patient_id", "visit_index"]].rename(columns={"visit_id": "sample_id"})
        if self.sampling == "last_visit":
            s = s[s["visit_index"] == s.groupby("patient_id")["visit_index"].transform("max")]
        s = s.merge(self.patients[["patient_id", "split", "group"]], on="patient_id", how="left")
        s["n_history"] = s["visit_index"]
        # The paper's grouping is per SAMPLE: "single-visit" = no earlier visit (seq_len == 1).
        s["history"] = np.where(s["n_history"] > 0, "history", "no_history")
        if split is not None:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            s = s[s["split"] == split]
        return s.reset_index(drop=True)

    def visit_rows(self) -> dict[int, int]:
        """visit_id -> row position in `visits` (for fast history lookups)."""
        return {int(v): i for i, v in enumerate(self.visits["visit_id"].to_numpy())}

    def history(self, sample_id: int) -> tuple[pd.DataFrame, pd.Series]:
        """(earlier visits of the patient, oldest first; the current visit) for one sample."""
        row = self.visits.index[self.visits["visit_id"] == sample_id]
        if len(row) == 0:
            raise KeyError(f"unknown sample_id {sample_id}")
        cur = self.visits.loc[row[0]]
        same = self.visits[
            (self.visits["patient_id"] == cur["patient_id"]) & (self.visits["visit_index"] < cur["visit_index"])
        ]
        return same.sort_values("visit_index"), cur

    def labels(self, sample_ids: np.ndarray | None = None) -> np.ndarray:
        """Multi-hot medication targets (N, |meds|) float32 in the order of `sample_ids`
        (default: `visits` order)."""
        if sample_ids is None:
            meds = self.visits["med"].to_list()
        else:
            pos = self.visit_rows()
            meds = [self.visits["med"].iat[pos[int(s)]] for s in sample_ids]
        y = np.zeros((len(meds), self.n_meds), dtype=np.float32)
        for i, m in enumerate(meds):
            y[i, np.asarray(m, dtype=np.int64)] = 1.0
        return y

    def validate(self) -> None:
        """Cheap invariants; raises DataError naming the offending field."""
        for kind in CODE_TYPES:
            n = len(self.vocabs[kind])
            lens = self.visits[kind].map(len)
            if (lens == 0).any():
                raise DataError(f"{int((lens == 0).sum())} visits have an empty {kind} set", field=kind)
            mx = self.visits[kind].map(lambda x: max(x) if len(x) else -1).max()
            if mx >= n:
                raise DataError(f"code index {mx} out of range for vocab of size {n}", field=kind)
        for feat, cats in self.profile_vocabs.items():
            if feat not in self.visits:
                raise DataError("profile feature missing from visits", field=feat)
            if self.visits[feat].max() >= len(cats) or self.visits[feat].min() < 0:
                raise DataError(f"profile index out of range [0, {len(cats)})", field=feat)
        if self.visits["visit_id"].duplicated().any():
            raise DataError("duplicate visit ids", field="visit_id")
        if self.sampling not in SAMPLINGS:
            raise DataError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}", field="sampling")
        if not set(self.patients["split"]).issubset(SPLITS):
            raise DataError(f"unknown split labels {set(self.patients['split']) - set(SPLITS)}", field="split")

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_parquet(folder / "visits.parquet", self.visits, index=False)
        atomic.write_parquet(folder / "patients.parquet", self.patients, index=False)
        meta = {
            "name": self.name,
            "vocabs": {k: {"codes": list(v.codes), "names": list(v.names)} for k, v in self.vocabs.items()},
            "profile_vocabs": self.profile_vocabs,
            "warnings": self.warnings,
            "provenance": self.provenance,
            "drops": self.drops,
            "fingerprint": self.fingerprint,
        }
        if self.sampling != "per_visit":  # absent by default: the default meta.json is unchanged
            meta["sampling"] = self.sampling
        # meta.json last: its presence marks a complete save
        atomic.write_text(folder / "meta.json", json.dumps(meta, indent=1, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> EHRDataset:
        folder = Path(folder)
        meta = read_json(
            folder / "meta.json", DataError, what="not a processed dataset (delete the folder to rebuild it)"
        )
        visits = pd.read_parquet(folder / "visits.parquet")
        for kind in CODE_TYPES:  # parquet gives numpy arrays; keep plain lists of int
            visits[kind] = visits[kind].map(lambda a: [int(x) for x in a])
        ds = cls(
            name=meta["name"],
            visits=visits,
            patients=pd.read_parquet(folder / "patients.parquet"),
            vocabs={k: Vocab(k, tuple(v["codes"]), tuple(v["names"])) for k, v in meta["vocabs"].items()},
            profile_vocabs={k: list(v) for k, v in meta["profile_vocabs"].items()},
            warnings=meta.get("warnings", {}),
            provenance=meta.get("provenance", {}),
            drops=list(meta.get("drops", [])),
            sampling=meta.get("sampling", "per_visit"),
        )
        return ds
