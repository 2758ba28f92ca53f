"""Versioned processed-dataset cache: every source is prepared once per (inputs, options) and
reloaded from Parquet + JSON in well under two seconds afterwards.

Key = hash of (DATA_VERSION, source, options, and the size+mtime of every input file), so a
changed option, a changed CSV or a changed preprocessing version gives a new entry, never a stale
one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from leader import atomic
from leader.data.assemble import assemble
from leader.data.cohort import CohortProtocol
from leader.data.dataset import EHRDataset
from leader.data.drops import DropLog, check_drop_table
from leader.data.mimic import read_mimic3, read_mimic4
from leader.data.synthetic import SyntheticConfig, generate
from leader.errors import DataError
from leader.paths import cache_dir, find_demo_root

DATA_VERSION = 1  # bump when preprocessing changes meaning (part of the dataset fingerprint)
READER_VERSION = 2  # cache key only: 2 = validated tables + drop table (same content as 1 on clean input)
Source = Literal["demo", "synthetic", "mimic3", "mimic4"]
PROTOCOL_FIELDS = tuple(CohortProtocol.__dataclass_fields__)


class PrepareOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not a silent default

    # top-k: codes ranked by the number of admissions holding them (ties by code); a visit keeps
    # its in-vocabulary codes and is dropped (visit_empty_*) when none of a type is left.
    top_k_diag: int | None = Field(None, ge=1, description="Keep only the k most frequent diagnoses (None = all).")
    top_k_proc: int | None = Field(None, ge=1, description="Keep only the k most frequent procedures (None = all).")
    top_k_med: int | None = Field(
        None, ge=1, description="Keep only the k most frequent ATC-3 drug classes (None = all)."
    )
    first_24h: bool = Field(
        False, description="Keep only prescriptions started in the first 24 hours of the admission."
    )
    mapping_dir: str | None = Field(
        None, description="Folder with atc4_to_ndc.json (default: beside the CSVs or ../shared/data/mappings)."
    )
    split_seed: int = Field(0, description="Seed of the patient-level train/val/test split.")
    split_ratios: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train/val/test shares of patients.")
    # cohort protocol (leader.data.cohort; the authors' values: leader.config.protocol). At their
    # defaults they are left out of every hash, so the default cohort keeps its cache key.
    samples: Literal["per_visit", "last_visit"] = Field(
        "per_visit",
        description="per_visit: every visit is a sample (history = earlier visits); last_visit: one "
        "sample per patient, its last visit, the earlier visits its history (the authors' protocol).",
    )
    min_visits: int = Field(
        1, ge=1, le=1000, description="Drop patients with fewer visits than this (1 = keep all; authors: 2)."
    )
    min_visits_basis: Literal["prepared", "prescriptions"] = Field(
        "prepared",
        description="What min_visits counts: prepared visits (with diagnoses, procedures and drugs), or "
        "admissions with any prescription before the joins (the authors' process_visit_lg2).",
    )
    patient_fraction: float = Field(
        1.0, gt=0, le=1, description="Keep a seeded random share of the patients (authors' MIMIC-IV: 0.15)."
    )
    protocol_seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed of the patient_fraction draw (authors' MIMIC-IV: 42)."
    )
    split: Literal["random", "sequential"] = Field(
        "random",
        description="random: seeded shuffle of patients (split_seed); sequential: split_ratios in "
        "subject order, train first (the authors' 8:1:1).",
    )
    visit_order: Literal["admittime", "hadm_id"] = Field(
        "admittime",
        description="Order of a patient's visits: admittime, or hadm_id as the authors' notebooks do "
        "(a bug: MIMIC hadm_ids are not chronological, so their 'last visit' is often not the last).",
    )
    # synthetic cohort knobs (ignored for other sources)
    n_patients: int = Field(6000, ge=10, description="Synthetic: number of patients.")
    single_visit_share: float = Field(0.55, ge=0, le=1, description="Synthetic: share of single-visit patients.")
    structure_strength: float = Field(0.85, ge=0, le=1, description="Synthetic: diagnosis->drug link strength.")
    rare_share: float = Field(
        0.1, ge=0, le=1, description="Synthetic: share of themes expressed only by rare, name-linked codes."
    )
    synthetic_seed: int = Field(0, description="Synthetic: generator seed.")
    # drop policy: decides whether a prepare succeeds, never what it contains (not in the fingerprint)
    max_drop_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest share of visits a non-paper drop reason "
        "(orphan admissions, malformed codes...) may touch before prepare fails.",
    )
    allow_drops: bool = Field(False, description="Accept any share of non-paper drops (they are still counted).")

    def synthetic_config(self) -> SyntheticConfig:
        return SyntheticConfig(
            n_patients=self.n_patients,
            single_visit_share=self.single_visit_share,
            structure_strength=self.structure_strength,
            rare_share=self.rare_share,
            seed=self.synthetic_seed,
        )

    def cohort_protocol(self) -> CohortProtocol:
        return CohortProtocol(**{k: getattr(self, k) for k in PROTOCOL_FIELDS})

    def relevant(self, source: str) -> dict:
        """Options that affect the result for `source` (synthetic knobs only for synthetic;
        protocol options only where they differ from the default)."""
        d = self.model_dump(mode="json")
        d.pop("max_drop_share"), d.pop("allow_drops")
        for k in PROTOCOL_FIELDS:
            d.pop(k)
        d.update(self.cohort_protocol().changed())
        if source != "synthetic":
            for k in ("n_patients", "single_visit_share", "structure_strength", "rare_share", "synthetic_seed"):
                d.pop(k)
        return d


def _inputs_signature(root: Path) -> list:
    files = sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix in (".gz", ".csv", ".json")))
    return [(str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime)) for p in files]


def cache_key(source: str, root: Path | None, opts: PrepareOptions) -> str:
    from leader.data.codes import load_curated

    payload = {"v": DATA_VERSION, "reader": READER_VERSION, "source": source, "opts": opts.relevant(source)}
    if root is not None:
        payload["root"] = str(root.resolve())
        payload["files"] = _inputs_signature(root)
    if source == "synthetic":  # the generator reads the shipped table
        payload["curated"] = hashlib.sha256(json.dumps(load_curated(), sort_keys=True).encode()).hexdigest()[:16]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _resolve_root(source: str, root: str | Path | None) -> Path | None:
    if source == "synthetic":
        return None
    if source == "demo" and root is None:
        r = find_demo_root()
        if r is None:
            raise DataError(
                "MIMIC-III demo not found: set LEADER_DEMO_ROOT or pass --root (or use --dataset synthetic)",
                file="../shared/data/mimic3demo",
            )
        return r
    if root is None:
        raise DataError(f"source {source!r} needs --root (the folder with the MIMIC CSVs)")
    r = Path(root).expanduser()
    if not r.is_dir():
        raise DataError("data folder does not exist", file=str(r))
    return r


def dataset_dir(source: str, root: str | Path | None = None, opts: PrepareOptions | None = None) -> Path:
    opts = opts or PrepareOptions()
    r = _resolve_root(source, root)
    return cache_dir() / "datasets" / f"{source}-{cache_key(source, r, opts)}"


def prepare(
    source: Source,
    root: str | Path | None = None,
    opts: PrepareOptions | None = None,
    *,
    force: bool = False,
    progress=None,
) -> EHRDataset:
    """Processed dataset for `source`, from the cache when present.

    progress: optional callable(str) told about each long step (the CLI shows it)."""
    if source not in ("demo", "synthetic", "mimic3", "mimic4"):
        raise DataError(f"unknown source {source!r}; expected demo, synthetic, mimic3 or mimic4", field="source")
    opts = opts or PrepareOptions()
    say = progress or (lambda msg: None)
    r = _resolve_root(source, root)
    folder = cache_dir() / "datasets" / f"{source}-{cache_key(source, r, opts)}"
    if (folder / "meta.json").exists() and not force:
        say(f"loading cached {folder.name}")
        ds = EHRDataset.load(folder)
        check_drop_table(ds.drops, opts.max_drop_share, opts.allow_drops, where=str(r) if r else None)
        return ds
    ds = _build(source, r, folder, opts, say)
    _save_atomic(ds, folder)
    say(f"saved {folder}")
    return ds


def _build(source: str, r: Path | None, folder: Path, opts: PrepareOptions, say) -> EHRDataset:
    """Read + validate + assemble; raises before anything is written when the drops are too many."""
    top_k = {"diag": opts.top_k_diag, "proc": opts.top_k_proc, "med": opts.top_k_med}
    prov = {"source": source, "options": opts.relevant(source), "data_version": DATA_VERSION}
    drops = DropLog()
    if source == "synthetic":
        raw = folder.parent / f"{folder.name}.raw"
        say(f"generating synthetic cohort ({opts.n_patients} patients)")
        generate(raw, opts.synthetic_config())
        say("reading synthetic CSVs with the MIMIC-III reader")
        try:
            parts = read_mimic3(raw, mapping_dir=raw, first_24h=opts.first_24h, top_k=top_k, drops=drops)
        finally:
            shutil.rmtree(raw, ignore_errors=True)
    else:
        prov["root"] = str(r.resolve())
        say(f"reading {source} from {r}")
        reader = read_mimic4 if source == "mimic4" else read_mimic3
        parts = reader(r, mapping_dir=opts.mapping_dir, first_24h=opts.first_24h, top_k=top_k, drops=drops)
    visits, names, profile_cols, warnings = parts
    say("assembling vocabularies, profile and split")
    ds = assemble(
        source,
        visits,
        names,
        profile_cols,
        split_ratios=tuple(opts.split_ratios),
        seed=opts.split_seed,
        provenance=prov,
        warnings=warnings,
        drops=drops,
        protocol=opts.cohort_protocol(),
    )
    ds.drops = drops.table(max(drops.n_visits_read, len(visits)))
    check_drop_table(ds.drops, opts.max_drop_share, opts.allow_drops, where=str(r) if r else None)
    return ds


def _save_atomic(ds: EHRDataset, folder: Path) -> None:
    """Write beside, then swap: a crash or error never leaves a half-written or missing dataset."""
    atomic.replace_folder(folder, ds.save)


def list_prepared() -> list[Path]:
    base = cache_dir() / "datasets"
    return sorted(p for p in base.glob("*") if (p / "meta.json").exists()) if base.exists() else []
