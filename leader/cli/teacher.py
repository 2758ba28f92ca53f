"""`leader teacher ...` commands: one LEADER(T) fine-tuning run on Ray Train + DeepSpeed."""

from __future__ import annotations

import json

import typer

from leader.cli.common import SET_OPTION

app = typer.Typer(no_args_is_help=True)


@app.command("train")
def train(
    backbone: str = typer.Option(
        "tiny-llama", help="llama-7b | qwen-7b | qwen-1.8b | tiny-llama | tiny-qwen2 | minilm, or a local folder."
    ),
    dataset: str = typer.Option("synthetic", help="synthetic | demo | mimic3 | mimic4 | a prepared dataset folder."),
    root: str | None = typer.Option(None, help="Raw data folder (default: the source's usual place)."),
    workers: int = typer.Option(2, help="Ray Train workers."),
    zero: int = typer.Option(2, help="DeepSpeed ZeRO stage (2 or 3)."),
    epochs: int = typer.Option(1, help="Passes over the training split."),
    max_steps: int | None = typer.Option(None, help="Stop after this many optimizer steps."),
    batch_size: int = typer.Option(4, help="Micro batch per worker."),
    max_length: int = typer.Option(256, help="Max prompt tokens (cut on the left)."),
    deepspeed_config: str | None = typer.Option(
        None, help="DeepSpeed JSON (default cluster/deepspeed/zero{2,3}_cpu.json)."
    ),
    sets: list[str] | None = SET_OPTION,
    out: str = typer.Option(
        "runs/teacher",
        "--out",
        help="Output folder: Ray Train checkpoints per step and the final teacher (<out>/<run>/teacher).",
    ),
    export: str | None = typer.Option(
        None, "--export", help="Put the final adapter + head here instead of <out>/<run>/teacher."
    ),
    address: str | None = typer.Option(None, help="Ray cluster address (default: start/attach a local one)."),
    storage_path: str | None = typer.Option(None, "--storage-path", hidden=True, help="Deprecated: --out."),
) -> None:
    """Fine-tune LEADER(T) once; print the checkpoint folder and the final metrics."""
    from leader.cli.common import build_config, deprecated, load_dataset
    from leader.config.teacher import TeacherTrainConfig
    from leader.ray_utils import ensure_ray
    from leader.teacher.train import train_teacher

    if storage_path is not None:
        deprecated("--storage-path", "--out")
        out = storage_path
    options = dict(
        backbone=backbone,
        workers=workers,
        zero_stage=zero,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        max_length=max_length,
        deepspeed_config=deepspeed_config,
    )
    cfg = build_config(TeacherTrainConfig, options, sets, flags={"zero_stage": "zero"})
    ds = load_dataset(dataset, root)
    ensure_ray(address=address)
    res = train_teacher(ds, cfg, out, out_dir=export)
    typer.echo(f"checkpoint {res.checkpoint_dir.resolve()}")
    shown = {k: v for k, v in res.metrics.items() if k != "losses"}
    typer.echo(json.dumps(shown, indent=1, default=str))
