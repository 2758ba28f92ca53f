"""Teacher inference over every sample of every split, as a Ray job.

Why actors: loading an LLM teacher costs far more than one batch, so each worker (one per GPU,
or per CPU slot) loads it once and then takes whole shards from a queue (ray.util.ActorPool).
Workers write their shards straight to the output directory (shared storage on a cluster);
the driver only writes the manifest, last. Shards already finished with good checksums are
skipped, so an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import partial
from pathlib import Path

import numpy as np

from leader import atomic
from leader.errors import CheckpointError, read_json
from leader.features.store import MANIFEST, FeatureManifest, ShardRecord, check_shard, write_manifest, write_shard

log = logging.getLogger("leader.features.extract")


def teacher_hash(teacher_dir: str | Path, edge: int = 1 << 20) -> str:
    """Content hash of a checkpoint directory: relative names, sizes, and the first and last
    MiB of every file (hashing all of a 14 GB checkpoint would cost minutes; weights that
    change always change these)."""
    d = Path(teacher_dir)
    if not d.is_dir():
        raise CheckpointError(f"teacher checkpoint {d} is not a directory")
    h = hashlib.sha256()
    for p in sorted(x for x in d.rglob("*") if x.is_file()):
        size = p.stat().st_size
        h.update(f"{p.relative_to(d)}\x1f{size}\x1f".encode())
        with open(p, "rb") as f:
            h.update(f.read(edge))
            if size > 2 * edge:
                f.seek(size - edge)
                h.update(f.read(edge))
            elif size > edge:
                h.update(f.read())
    return h.hexdigest()[:16]


def read_teacher_meta(teacher_dir: str | Path) -> dict:
    return read_json(
        Path(teacher_dir) / "meta.json",
        CheckpointError,
        what="not a teacher checkpoint",
        required=("n_meds", "d_hidden"),
    )


def _load(teacher_dir: str):
    import ray
    import torch

    from leader.teacher.model import load_teacher

    # A worker given a GPU by Ray sees exactly that GPU (CUDA_VISIBLE_DEVICES), as cuda:0.
    given = ray.is_initialized() and bool(ray.get_gpu_ids())
    gpu = given and torch.cuda.is_available()
    if given and not gpu:  # forwarded to the driver's console: a 7B teacher on CPU takes days
        log.warning("extract: Ray gave this worker GPU %s but torch sees no CUDA; running on CPU", ray.get_gpu_ids())
    return load_teacher(teacher_dir, device="cuda" if gpu else "cpu")


class _Worker:
    """One per worker process: loads the teacher once, then turns shards into files."""

    def __init__(self, teacher_dir: str, out_dir: str, batch_size: int):
        self.teacher = _load(teacher_dir)
        self.out_dir, self.batch_size = out_dir, batch_size

    def run_shard(self, index: int, sample_ids: np.ndarray, prompts: list[str]) -> dict:
        t0 = time.perf_counter()
        probs, hidden = self.teacher.infer(prompts, self.batch_size)  # (N, M) f32, (N, d_h) f16
        used = self.teacher.model.precision
        rec = write_shard(self.out_dir, index, sample_ids, np.asarray(hidden), np.asarray(probs), precision=used)
        return {"record": rec.model_dump(), "seconds": time.perf_counter() - t0}


def plan_shards(sample_ids: np.ndarray, shard_size: int) -> list[np.ndarray]:
    """Deterministic split of the (sorted) sample ids, so a re-run maps ids to the same shards."""
    ids = np.sort(np.asarray(sample_ids, dtype=np.int64))
    return [ids[i : i + shard_size] for i in range(0, len(ids), shard_size)]


def _checked_teacher_meta(teacher_dir: str, ds) -> dict:
    """The teacher's meta.json; a teacher of another drug vocabulary is an error, of another
    dataset version only a warning (the same codes, other visits)."""
    meta = read_teacher_meta(teacher_dir)
    if int(meta["n_meds"]) != ds.n_meds:
        raise CheckpointError(
            f"teacher {teacher_dir}/meta.json field 'n_meds' is {meta['n_meds']} but dataset "
            f"{ds.name} has {ds.n_meds} medications: the teacher was trained on another dataset"
        )
    fp = meta.get("dataset_fingerprint")
    if fp and fp != ds.fingerprint:
        log.warning("extract: teacher %s was trained on dataset %s, extracting for %s", teacher_dir, fp, ds.fingerprint)
    return meta


def _resume_plan(out: Path, plan: dict, shards: list[np.ndarray]) -> tuple[dict[int, ShardRecord], list[int]]:
    """(finished shards, shard indices to compute). Finished shards count only if they were made by
    this teacher for this dataset and plan; the plan is (re)written and the old manifest removed."""
    plan_path = out / "plan.json"
    same_plan = plan_path.exists() and json.loads(plan_path.read_text()) == json.loads(json.dumps(plan, default=str))
    if plan_path.exists() and not same_plan:
        log.warning("extract: %s was made with another teacher/dataset/plan; recomputing every shard", out)
    (out / MANIFEST).unlink(missing_ok=True)
    atomic.write_text(plan_path, json.dumps(plan, sort_keys=True, default=str))
    done: dict[int, ShardRecord] = {}
    todo: list[int] = []
    for i, ids in enumerate(shards):
        rec = check_shard(out, i, ids) if same_plan else None
        if rec is not None:
            done[i] = rec
        else:
            todo.append(i)
    return done, todo


def _compute_shards(
    ray,
    ds,
    teacher_dir: str,
    out: Path,
    shards: list[np.ndarray],
    todo: list[int],
    n_workers: int,
    batch_size: int,
    resources_per_worker: dict | None,
    prompt_kwargs: dict,
) -> dict[int, ShardRecord]:
    """Run the `todo` shards on `n_workers` teacher actors (each loads the teacher once)."""
    from ray.util import ActorPool

    from leader.data.prompts import teacher_prompts
    from leader.teacher.backbones import load_tokenizer

    res = dict(resources_per_worker or {"CPU": 1})
    opts = {"num_cpus": res.pop("CPU", 1), "num_gpus": res.pop("GPU", 0)}
    if res:
        opts["resources"] = res
    Worker = ray.remote(_Worker).options(**opts)
    actors = [Worker.remote(teacher_dir, str(out), batch_size) for _ in range(n_workers)]
    done: dict[int, ShardRecord] = {}
    try:
        pool = ActorPool(actors)
        # the prompts the teacher was trained on: fitted to its own tokenizer when it was
        tok = load_tokenizer(Path(teacher_dir) / "tokenizer") if prompt_kwargs.get("fit_max_length") else None
        jobs = [(i, shards[i], teacher_prompts(ds, shards[i], tok, **prompt_kwargs)[0]) for i in todo]
        for r in pool.map_unordered(lambda a, j: a.run_shard.remote(*j), jobs):
            rec = ShardRecord.model_validate(r["record"])
            done[rec.index] = rec
            log.info("extract: shard %d done (%d rows, %.2fs)", rec.index, rec.rows, r["seconds"])
    finally:
        for a in actors:
            ray.kill(a)
    return done


def _other_format_shards(done: dict[int, ShardRecord], computed: list[int]) -> list[int]:
    """Finished shards from an earlier run whose teacher computed in another format than this run's
    (a study moved from a bf16 CPU to one without bf16, or to a GPU): redone, so that one feature
    set never mixes formats. Shards that predate the record ('') are kept."""
    computed_here = set(computed)
    now = {done[i].precision for i in computed_here}
    if not now:  # nothing computed in this run: nothing to compare with
        return []
    return sorted(i for i, r in done.items() if i not in computed_here and r.precision and r.precision not in now)


def _compute_in_one_format(compute, done: dict[int, ShardRecord], todo: list[int], out: Path, *args) -> list[int]:
    """`compute(todo, *args)` into `done`, then redo the finished shards of another format in the
    feature folder `out`; returns every shard computed."""
    if todo:
        done.update(compute(todo, *args))
    redo = _other_format_shards(done, todo)
    if redo:
        log.warning(
            "extract: %d finished shard(s) of %s were computed in %s, this run's teacher computes in %s: redoing them",
            len(redo),
            out,
            "+".join(sorted({done[i].precision for i in redo})),
            "+".join(sorted({done[i].precision for i in todo})),
        )
        done.update(compute(redo, *args))
    return sorted(todo + redo)


def extract_features(
    ds,
    teacher_dir: str | Path,
    out_dir: str | Path,
    *,
    workers: int = 1,
    batch_size: int = 16,
    shard_size: int = 512,
    resources_per_worker: dict | None = None,
    prompt_kwargs: dict | None = None,
    backbone: str | None = None,
) -> Path:
    """Run the teacher over all samples of `ds` (every split) and write a durable feature set.

    `resources_per_worker` is a Ray resource dict per worker actor, e.g. {"CPU": 1, "GPU": 1};
    default one CPU. Returns `out_dir`; re-running it skips finished shards."""
    # long: one straight pipeline (plan, resume, compute, manifest); the manifest literal is most of it
    from leader.ray_utils import ensure_ray

    ray = ensure_ray()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    teacher_dir = str(Path(teacher_dir).resolve())
    meta = _checked_teacher_meta(teacher_dir, ds)
    if prompt_kwargs is None:
        prompt_kwargs = dict(meta.get("prompt_options") or {})
    t_hash = teacher_hash(teacher_dir)
    all_ids = ds.samples()["sample_id"].to_numpy(dtype=np.int64)  # every split
    shards = plan_shards(all_ids, shard_size)
    plan = {
        "teacher_hash": t_hash,
        "dataset_fingerprint": ds.fingerprint,
        "shard_size": shard_size,
        "prompt_kwargs": prompt_kwargs,
    }
    done, todo = _resume_plan(out, plan, shards)
    log.info(
        "extract: %d samples in %d shards, %d already done, %d to compute with %d worker(s)",
        len(all_ids),
        len(shards),
        len(done),
        len(todo),
        workers,
    )

    t0 = time.perf_counter()
    n_workers = max(1, min(workers, len(todo)))
    compute = partial(_compute_shards, ray, ds, teacher_dir, out, shards)
    todo = _compute_in_one_format(compute, done, todo, out, n_workers, batch_size, resources_per_worker, prompt_kwargs)
    seconds = time.perf_counter() - t0
    formats = sorted({r.precision for r in done.values()} - {""})
    if len(formats) > 1:  # actors on CPUs of two kinds in one run (bf16 on one, fp32 on another)
        log.warning("extract: %s was computed in %s by different workers", out, " and ".join(formats))
    m = FeatureManifest(
        dataset=ds.name,
        dataset_fingerprint=ds.fingerprint,
        teacher_hash=t_hash,
        teacher_dir=teacher_dir,
        backbone=str(backbone or meta.get("backbone") or Path(teacher_dir).name),
        d_hidden=int(meta["d_hidden"]),
        n_meds=ds.n_meds,
        n_rows=int(sum(r.rows for r in done.values())),
        precision="+".join(formats),
        shards=[done[i] for i in range(len(shards))],
        extra={
            "workers": n_workers,
            "batch_size": batch_size,
            "shard_size": shard_size,
            "computed_shards": len(todo),
            "computed_rows": int(sum(len(shards[i]) for i in todo)),
            "compute_seconds": round(seconds, 3),
            "prompt_kwargs": prompt_kwargs,
        },
    )
    write_manifest(out, m)
    return out
