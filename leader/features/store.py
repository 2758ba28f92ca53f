"""Durable copy of a teacher feature set: sharded .npy files plus a manifest.

Why shards + a per-shard record: extraction of a 7B teacher over MIMIC takes hours, so a
crash must cost one shard, not the run. Each shard is three .npy files written to a temp name
and renamed, then a small `shard-XXXXX.json` record (row count + sha256 per file) is written
last; a shard counts as finished only if its record exists and every checksum matches. The
feature-set `manifest.json` is written atomically after all shards, so a reader never sees a
half-written feature set. Everything is plain files, so the directory can live on shared
storage (NFS, a mounted bucket) and be read by every node.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from leader import atomic
from leader.errors import CheckpointError
from leader.features.types import TeacherFeatures

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = ("sample_ids", "hidden", "probs")
DTYPES = {"sample_ids": np.int64, "hidden": np.float16, "probs": np.float32}


class ShardRecord(BaseModel):
    """What one finished shard holds; written last for the shard."""

    index: int = Field(description="Shard number (0-based); files are shard-<index:05d>.<array>.npy.")
    rows: int = Field(description="Number of samples (rows) in the shard.")
    files: dict[str, str] = Field(description="Array name -> file name, relative to the feature directory.")
    sha256: dict[str, str] = Field(description="File name -> sha256 hex digest of its bytes.")
    ids_sha256: str = Field(description="sha256 of the shard's sample ids, to detect a changed shard plan.")
    precision: str = Field(
        "", description="The format the teacher computed the shard in (leader.precision); '' before it was kept."
    )


class FeatureManifest(BaseModel):
    """Identity and integrity of a feature set; what `leader features info` prints."""

    format_version: int = Field(FORMAT_VERSION, description="On-disk layout version of this feature store.")
    dataset: str = Field(description="Dataset name.")
    dataset_fingerprint: str = Field(description="EHRDataset.fingerprint the features were computed for.")
    teacher_hash: str = Field(description="Content hash of the teacher checkpoint directory.")
    teacher_dir: str = Field("", description="Where the teacher checkpoint was read from (informational).")
    backbone: str = Field(description="Teacher backbone name, e.g. llama-7b, qwen-1.8b, minilm.")
    d_hidden: int = Field(description="Width of the last-layer hidden state.")
    n_meds: int = Field(description="Number of medications (width of probs).")
    dtypes: dict[str, str] = Field(
        default_factory=lambda: {k: np.dtype(v).name for k, v in DTYPES.items()}, description="numpy dtype per array."
    )
    n_rows: int = Field(description="Total number of samples over all shards.")
    precision: str = Field(
        "", description="The format(s) the shards were computed in, '+'-joined: two only if workers differed."
    )
    shards: list[ShardRecord] = Field(description="Per-shard row counts and file checksums.")
    extra: dict = Field(default_factory=dict, description="Free-form provenance (prompt options, timings).")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def ids_digest(sample_ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(sample_ids, dtype=np.int64).tobytes()).hexdigest()


def shard_stem(index: int) -> str:
    return f"shard-{index:05d}"


FINITE = ("hidden", "probs")  # teacher outputs: an fp16 overflow turns them into inf / NaN


def check_finite(path: Path, field: str, arr: np.ndarray) -> None:
    """Refuse teacher outputs with NaN / inf: an fp16 teacher (Qwen on a V100) can overflow, and a
    non-finite KD target silently turns every student loss that reads it into NaN. The error names
    the shard file and the field so the bad shard is found without a debugger."""
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise CheckpointError(
            f"feature shard file {path}: field {field!r} has {bad} non-finite value(s) (NaN/inf) of {arr.size}; "
            "the teacher overflowed (fp16?): run it in fp32/bf16, delete the shard and extract again"
        )


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    atomic.write_with(path, lambda f: np.save(f, arr, allow_pickle=False))


def write_shard(
    out_dir: str | Path,
    index: int,
    sample_ids: np.ndarray,
    hidden: np.ndarray,
    probs: np.ndarray,
    precision: str = "",
) -> ShardRecord:
    """Write one shard (three .npy files, then its record). Safe to call again for a shard
    that was half-written: every file is replaced atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "sample_ids": np.ascontiguousarray(sample_ids, dtype=np.int64),  # (N,)
        "hidden": np.ascontiguousarray(hidden, dtype=np.float16),  # (N, d_h)
        "probs": np.ascontiguousarray(probs, dtype=np.float32),  # (N, M)
    }
    n = len(arrays["sample_ids"])
    if arrays["hidden"].shape[0] != n or arrays["probs"].shape[0] != n:
        raise ValueError(
            f"shard {index}: rows disagree: ids {n}, hidden {arrays['hidden'].shape}, probs {arrays['probs'].shape}"
        )
    stem = shard_stem(index)
    for name in FINITE:  # checked after the cast: a float32 above 65504 becomes inf in fp16
        check_finite(out / f"{stem}.{name}.npy", name, arrays[name])
    files, sums = {}, {}
    for name, arr in arrays.items():
        fname = f"{stem}.{name}.npy"
        _atomic_save_npy(out / fname, arr)
        files[name] = fname
        sums[fname] = sha256_file(out / fname)
    ids = ids_digest(arrays["sample_ids"])
    rec = ShardRecord(index=index, rows=n, files=files, sha256=sums, ids_sha256=ids, precision=precision)
    atomic.write_bytes(out / f"{stem}.json", rec.model_dump_json(indent=1).encode())
    return rec


def check_shard(out_dir: str | Path, index: int, expected_ids: np.ndarray | None = None) -> ShardRecord | None:
    """The shard's record if the shard is complete and intact (and holds `expected_ids`),
    else None: missing, partial, corrupt and re-planned shards all mean "redo it". An intact shard
    holding NaN/inf raises CheckpointError: redoing it with the same teacher would overflow again."""
    out = Path(out_dir)
    rec_path = out / f"{shard_stem(index)}.json"
    if not rec_path.exists():
        return None
    try:
        rec = ShardRecord.model_validate_json(rec_path.read_text())
    except Exception:
        return None
    if expected_ids is not None and rec.ids_sha256 != ids_digest(np.asarray(expected_ids)):
        return None
    for fname, digest in rec.sha256.items():
        p = out / fname
        if not p.exists() or sha256_file(p) != digest:
            return None
    for name in FINITE:
        if name in rec.files:
            p = out / rec.files[name]
            try:
                arr = np.load(p, allow_pickle=False)
            except Exception:
                return None
            check_finite(p, name, arr)
    return rec


def write_manifest(out_dir: str | Path, manifest: FeatureManifest) -> Path:
    path = Path(out_dir) / MANIFEST
    atomic.write_bytes(path, manifest.model_dump_json(indent=1).encode())
    return path


def read_manifest(feature_dir: str | Path) -> FeatureManifest:
    path = Path(feature_dir) / MANIFEST
    if not path.exists():
        raise CheckpointError(f"{path}: no feature manifest (extraction unfinished, or not a feature directory)")
    try:
        m = FeatureManifest.model_validate_json(path.read_text())
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable feature manifest: {str(e).splitlines()[0]}") from e
    if m.format_version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: field 'format_version' is {m.format_version}, this code reads {FORMAT_VERSION}")
    return m


def manifest_digest(feature_dir: str | Path) -> str:
    """Identity of a feature set's content (changes when it is re-extracted)."""
    path = Path(feature_dir) / MANIFEST
    if not path.exists():
        raise CheckpointError(f"{path}: no feature manifest")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _load_array(path: Path, digest: str | None, field: str) -> np.ndarray:
    if not path.exists():
        raise CheckpointError(f"feature shard file {path} is missing (field {field!r})")
    if digest is not None and sha256_file(path) != digest:
        raise CheckpointError(
            f"feature shard file {path} is corrupt or truncated: sha256 does not match "
            f"the manifest (field {field!r}); re-run `leader features extract` to redo it"
        )
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise CheckpointError(f"feature shard file {path} cannot be read (field {field!r}): {e}") from e


def load_features(feature_dir: str | Path, *, verify: bool = True) -> TeacherFeatures:
    """Read a whole feature set, checking every file against the manifest's checksums.

    Raises CheckpointError naming the shard file for a missing, truncated or corrupt shard, or
    one whose hidden / probs hold NaN or inf (a shard written before write_shard checked)."""
    d = Path(feature_dir)
    m = read_manifest(d)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ARRAYS}
    for rec in m.shards:
        for name in ARRAYS:
            fname = rec.files[name]
            arr = _load_array(d / fname, rec.sha256.get(fname) if verify else None, name)
            if arr.shape[0] != rec.rows or arr.dtype != DTYPES[name]:
                raise CheckpointError(
                    f"feature shard file {d / fname}: has {arr.shape[0]} rows of {arr.dtype}, "
                    f"manifest says {rec.rows} rows of {np.dtype(DTYPES[name]).name}"
                )
            if name in FINITE:
                check_finite(d / fname, name, arr)
            parts[name].append(arr)
    empty = {"sample_ids": (0,), "hidden": (0, m.d_hidden), "probs": (0, m.n_meds)}
    cat = {k: (np.concatenate(v) if v else np.zeros(empty[k], DTYPES[k])) for k, v in parts.items()}
    if len(cat["sample_ids"]) != m.n_rows:
        raise CheckpointError(f"{d / MANIFEST}: field 'n_rows' is {m.n_rows} but shards hold {len(cat['sample_ids'])}")
    if len(np.unique(cat["sample_ids"])) != m.n_rows:
        raise CheckpointError(f"{d / MANIFEST}: duplicate sample ids across shards")
    meta = m.model_dump(exclude={"shards"})
    meta["path"] = str(d.resolve())
    return TeacherFeatures(sample_ids=cat["sample_ids"], hidden=cat["hidden"], probs=cat["probs"], meta=meta)


def save_features(out_dir: str | Path, feats: TeacherFeatures, *, shard_size: int = 4096, **manifest_fields) -> Path:
    """Write an in-memory feature set (already computed) as a durable copy; manifest last."""
    out = Path(out_dir)
    n = len(feats.sample_ids)
    recs = []
    for i, start in enumerate(range(0, max(n, 1), shard_size)):
        sl = slice(start, start + shard_size)
        if n == 0:
            break
        recs.append(write_shard(out, i, feats.sample_ids[sl], feats.hidden[sl], feats.probs[sl]))
    manifest_fields.setdefault("d_hidden", feats.d_hidden)
    manifest_fields.setdefault("n_meds", int(feats.probs.shape[1]))
    m = FeatureManifest(n_rows=n, shards=recs, **manifest_fields)
    return write_manifest(out, m).parent


def features_digest(feats: TeacherFeatures) -> str:
    """Content hash of an in-memory feature set (ids, hidden, probs), to compare copies."""
    h = hashlib.sha256()
    for a in (feats.sample_ids, feats.hidden, feats.probs):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
