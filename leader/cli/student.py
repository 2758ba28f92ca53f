"""`leader student ...` commands: one training run, and recommendations for one record."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from leader.cli.common import SET_OPTION

app = typer.Typer(no_args_is_help=True)


def _report_epoch(r: dict) -> None:
    from leader.cli.common import verbosity

    if verbosity() >= 0:
        typer.echo(
            f"epoch {r['epoch']:3d} loss {r['train_loss']:.4f} val PRAUC {r['val_prauc']:.4f} "
            f"Jaccard {r['val_jaccard']:.4f} F1 {r['val_f1']:.4f}"
        )


@app.command("train")
def train(
    dataset: str = typer.Option("synthetic", help="synthetic | demo | mimic3 | mimic4 | a prepared dataset folder."),
    root: str | None = typer.Option(None, help="Raw data folder (default: the source's usual place)."),
    features: str | None = typer.Option(None, help="Teacher features folder (from `leader features extract`)."),
    kd: str = typer.Option("", help="feature | output | none (default: feature with --features, else none)."),
    epochs: int = typer.Option(30, help="Maximum epochs."),
    batch_size: int = typer.Option(64, help="Batch size."),
    lr: float = typer.Option(1e-3, help="Learning rate."),
    alpha: float = typer.Option(0.5, help="KD weight."),
    beta: float = typer.Option(0.1, help="Profile alignment weight."),
    no_align: bool = typer.Option(False, "--no-align", help="Disable the profile alignment loss."),
    seed: int = typer.Option(0, help="Seed."),
    threads: int = typer.Option(1, help="torch intra-op threads."),
    sets: list[str] | None = SET_OPTION,
    out: str = typer.Option("runs/student", help="Checkpoint folder."),
) -> None:
    """Train LEADER(S) once and print test metrics (mean ± std over bootstrap rounds)."""
    from leader.cli.common import build_config, load_dataset
    from leader.config.flat import STUDENT_PATHS
    from leader.config.student import StudentTrainConfig
    from leader.metrics import summarize
    from leader.student.train import evaluate_student, train_student

    loss = dict(alpha=alpha, beta=beta, align=not no_align, kd=kd or ("feature" if features else "none"))
    options = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, num_threads=threads, loss=loss)
    cfg = build_config(StudentTrainConfig, options, sets, flags={"num_threads": "threads"}, aliases=STUDENT_PATHS)
    ds = load_dataset(dataset, root)
    feats = None
    if features:
        from leader.features.store import load_features  # lazy: another stage's module

        feats = load_features(features)
    res = train_student(ds, cfg, features=feats, checkpoint_dir=out, report=_report_epoch)
    s = summarize(evaluate_student(res.model, ds, "test", threshold=cfg.threshold, seed=cfg.seed))
    typer.echo(f"best epoch {res.best_epoch}; checkpoint {Path(out).resolve()}")
    typer.echo(s.to_string(index=False, float_format=lambda x: f"{x:.4f}"))


@app.command("recommend")
def recommend(
    checkpoint: str = typer.Option(..., help="Student checkpoint folder."),
    dataset: str = typer.Option("synthetic", help="Dataset the record comes from (name or prepared folder)."),
    root: str | None = typer.Option(None, help="Raw data folder."),
    sample_id: int = typer.Option(..., help="Sample (visit) id of the record."),
    threshold: float = typer.Option(0.5, help="Recommend drugs with probability >= threshold."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of lines."),
) -> None:
    """Print the recommended drug names for one patient record."""
    import numpy as np

    from leader.cli.common import load_dataset
    from leader.errors import CheckpointError
    from leader.student.train import load_student, predict_proba

    ck = load_student(checkpoint)
    ds = load_dataset(dataset, root)
    if ck.meta.get("dataset_fingerprint") != ds.fingerprint or ck.meta["n_med"] != ds.n_meds:
        raise CheckpointError(
            f"checkpoint {checkpoint} was trained on another dataset (meta.json field 'dataset_fingerprint')"
        )
    _, p = predict_proba(ck.model, ds, sample_ids=[sample_id])
    p = p[0]
    order = [int(i) for i in np.argsort(-p) if p[i] >= threshold]
    names = [ds.vocabs["med"].name(i) for i in order]
    if as_json:
        codes = ds.vocabs["med"].codes
        recs = [{"drug": n, "code": codes[i], "prob": round(float(p[i]), 4)} for n, i in zip(names, order, strict=True)]
        typer.echo(json.dumps(recs))
    else:
        for n, i in zip(names, order, strict=True):
            typer.echo(f"{p[i]:.3f}  {n}")
