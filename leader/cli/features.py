"""`leader features ...` commands: extract teacher features (a Ray job) and inspect a feature set."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("extract")
def extract_cmd(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher checkpoint folder (from `leader teacher train`)."),
    dataset: str = typer.Option(
        ..., "--dataset", help="demo | synthetic | mimic3 | mimic4 | a prepared dataset folder."
    ),
    root: Path | None = typer.Option(None, "--root", help="Folder with the MIMIC CSVs (demo: found automatically)."),
    out: Path = typer.Option(..., "--out", help="Output feature directory (may be shared storage)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Parallel teacher workers (each loads the teacher once)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", min=0, help="GPUs per worker (0 = CPU)."),
    cpus_per_worker: float = typer.Option(1.0, "--cpus-per-worker", min=0, help="CPUs per worker."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Prompts per teacher forward pass."),
    shard_size: int = typer.Option(512, "--shard-size", min=1, help="Samples per durable shard (unit of resume)."),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)."
    ),
):
    """Run the teacher over every sample of every split and write a durable feature set."""
    from leader.cli.common import load_dataset
    from leader.features.extract import extract_features
    from leader.features.store import read_manifest
    from leader.ray_utils import ensure_ray

    ds = load_dataset(dataset, root)
    ensure_ray(address=address)
    res = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    path = extract_features(
        ds, teacher, out, workers=workers, batch_size=batch_size, shard_size=shard_size, resources_per_worker=res
    )
    m = read_manifest(path)
    typer.echo(
        f"{path}: {m.n_rows} samples, {len(m.shards)} shards ({m.extra['computed_shards']} computed), "
        f"d_h={m.d_hidden}, |meds|={m.n_meds}, teacher computed in {m.precision}"
    )


@app.command("info")
def info_cmd(
    path: Path = typer.Argument(..., help="Feature directory."),
    verify: bool = typer.Option(False, "--verify", help="Also check every shard's checksum."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON."),
):
    """Summarise a feature set's manifest (and optionally verify its shards)."""
    import json

    from leader.features.store import load_features, read_manifest

    m = read_manifest(path)
    size = sum((Path(path) / f).stat().st_size for s in m.shards for f in s.files.values() if (Path(path) / f).exists())
    summary = {
        "path": str(Path(path).resolve()),
        "dataset": m.dataset,
        "dataset_fingerprint": m.dataset_fingerprint,
        "backbone": m.backbone,
        "teacher_hash": m.teacher_hash,
        "precision": m.precision or "not recorded",
        "d_hidden": m.d_hidden,
        "n_meds": m.n_meds,
        "rows": m.n_rows,
        "shards": len(m.shards),
        "bytes_on_disk": size,
        "dtypes": m.dtypes,
        "format_version": m.format_version,
    }
    if verify:
        load_features(path)  # raises CheckpointError naming a bad shard file
        summary["verified"] = True
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        for k, v in summary.items():
            typer.echo(f"{k:20s} {v}")
