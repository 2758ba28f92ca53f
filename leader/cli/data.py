"""`leader data ...` commands: prepare a dataset into the cache, show Table-VI statistics."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from leader.cli.common import SET_OPTION

app = typer.Typer(no_args_is_help=True)


class SourceChoice(str, Enum):
    demo = "demo"
    synthetic = "synthetic"
    mimic3 = "mimic3"
    mimic4 = "mimic4"


class ProtocolChoice(str, Enum):
    authors = "authors"
    authors_bugs = "authors-bugs"


_FLAGS = {"mapping_dir": "mappings"}  # config field -> option name, where they differ


def _opts(
    sets,
    top_k_diag,
    top_k_proc,
    top_k_med,
    first_24h,
    mappings,
    split_seed,
    n_patients,
    structure_strength,
    rare_share,
    synthetic_seed,
    allow_drops: bool = False,
    max_drop_share: float = 0.01,
    preset: dict | None = None,
):
    """PrepareOptions from the flags, then `preset` (a protocol's fields), then `--set`."""
    from leader.cli.common import build_config
    from leader.data.cache import PrepareOptions

    options = dict(
        top_k_diag=top_k_diag,
        top_k_proc=top_k_proc,
        top_k_med=top_k_med,
        first_24h=first_24h,
        mapping_dir=str(mappings) if mappings else None,
        split_seed=split_seed,
        n_patients=n_patients,
        structure_strength=structure_strength,
        rare_share=rare_share,
        synthetic_seed=synthetic_seed,
        allow_drops=allow_drops,
        max_drop_share=max_drop_share,
    )
    return build_config(PrepareOptions, {**options, **(preset or {})}, sets, flags=_FLAGS)


def _source(dataset: SourceChoice | None, source: SourceChoice | None, required: bool) -> SourceChoice | None:
    """--dataset, or the deprecated --source spelling of it."""
    from leader.cli.common import deprecated
    from leader.errors import ConfigError

    if source is not None:
        deprecated("--source", "--dataset")
    dataset = dataset or source
    if dataset is None and required:
        raise ConfigError("missing option --dataset (demo | synthetic | mimic3 | mimic4)")
    return dataset


def _run(source: SourceChoice, root: Path | None, opts, force: bool):
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from leader.cli.common import verbosity
    from leader.data.cache import prepare

    if verbosity() < 0:
        return prepare(source.value, root, opts, force=force)
    console = Console(stderr=True)
    columns = SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()
    with Progress(*columns, console=console, transient=False) as prog:
        task = prog.add_task(f"prepare {source.value}", total=None)
        ds = prepare(
            source.value,
            root,
            opts,
            force=force,
            progress=lambda m: prog.update(task, description=f"{source.value}: {m}"),
        )
        prog.update(task, description=f"{source.value}: done ({len(ds.visits)} visits)")
    return ds


# Shared option declarations (typer needs them per command).
_ROOT = typer.Option(None, "--root", help="Folder with the MIMIC CSVs (demo: found automatically).")
_TKD = typer.Option(None, "--top-k-diag", help="Keep the k most frequent diagnoses.")
_TKP = typer.Option(None, "--top-k-proc", help="Keep the k most frequent procedures.")
_TKM = typer.Option(None, "--top-k-med", help="Keep the k most frequent ATC-3 drug classes.")
_F24 = typer.Option(False, "--first-24h", help="Only prescriptions started in the first 24 hours.")
_MAP = typer.Option(None, "--mappings", help="Folder with atc4_to_ndc.json.")
_SEED = typer.Option(0, "--split-seed", help="Patient-level split seed.")
_NP = typer.Option(6000, "--n-patients", help="Synthetic: number of patients.")
_SS = typer.Option(0.85, "--structure-strength", help="Synthetic: diagnosis->drug link strength.")
_RS = typer.Option(0.1, "--rare-share", help="Synthetic: share of rare, name-linked codes.")
_SYS = typer.Option(0, "--synthetic-seed", help="Synthetic: generator seed.")


_DATASET_HELP = "demo | synthetic | mimic3 | mimic4"
_SOURCE = typer.Option(None, "--source", hidden=True, help="Deprecated spelling of --dataset.")


@app.command("prepare")
def prepare_cmd(  # long: typer declares one option per line; the body is short
    dataset: SourceChoice | None = typer.Option(None, "--dataset", help=_DATASET_HELP + " (required)."),
    root: Path | None = _ROOT,
    top_k_diag: int | None = _TKD,
    top_k_proc: int | None = _TKP,
    top_k_med: int | None = _TKM,
    first_24h: bool = _F24,
    mappings: Path | None = _MAP,
    split_seed: int = _SEED,
    n_patients: int = _NP,
    structure_strength: float = _SS,
    rare_share: float = _RS,
    synthetic_seed: int = _SYS,
    sets: list[str] | None = SET_OPTION,
    force: bool = typer.Option(False, "--force", help="Rebuild even if cached."),
    json_out: bool = typer.Option(False, "--json", help="Print statistics as JSON instead of a table."),
    allow_drops: bool = typer.Option(
        False,
        "--allow-drops",
        help="Accept rows dropped to repair a bad extract even "
        "above --max-drop-share (they are still counted and reported).",
    ),
    max_drop_share: float = typer.Option(
        0.01,
        "--max-drop-share",
        min=0.0,
        max=1.0,
        help="Largest share of visits a repair (non-paper) drop reason may touch before prepare fails.",
    ),
    source: SourceChoice | None = _SOURCE,
):
    """Read, validate, filter and index a dataset into the versioned cache; print its statistics and drop table."""
    from rich.console import Console

    from leader.data.cache import dataset_dir
    from leader.data.stats import dataset_stats, drop_table, stats_table

    dataset = _source(dataset, source, required=True)
    opts = _opts(
        sets,
        top_k_diag,
        top_k_proc,
        top_k_med,
        first_24h,
        mappings,
        split_seed,
        n_patients,
        structure_strength,
        rare_share,
        synthetic_seed,
        allow_drops,
        max_drop_share,
    )
    ds = _run(dataset, root, opts, force)
    st = dataset_stats(ds)
    if json_out:
        typer.echo(json.dumps(st, indent=1))
    else:
        Console().print(stats_table(st))
        Console().print(drop_table(ds.drops))
        typer.echo(f"cached at {dataset_dir(dataset.value, root, opts)}")


_PROTOCOL = typer.Option(
    None,
    "--protocol",
    help="Print the cohort counts under this protocol beside the options given (needs --dataset): authors = "
    "the LEADER release's notebooks (leader.config.protocol); authors-bugs = the same with their hadm_id visit order.",
)


@app.command("stats")
def stats_cmd(  # long: typer declares one option per line; the body is short
    dataset: SourceChoice | None = typer.Option(
        None, "--dataset", help="Show this dataset (prepared on demand); default: every cached dataset."
    ),
    root: Path | None = _ROOT,
    top_k_diag: int | None = _TKD,
    top_k_proc: int | None = _TKP,
    top_k_med: int | None = _TKM,
    first_24h: bool = _F24,
    mappings: Path | None = _MAP,
    split_seed: int = _SEED,
    n_patients: int = _NP,
    structure_strength: float = _SS,
    rare_share: float = _RS,
    synthetic_seed: int = _SYS,
    sets: list[str] | None = SET_OPTION,
    protocol: ProtocolChoice | None = _PROTOCOL,
    json_out: bool = typer.Option(False, "--json", help="Print statistics as JSON."),
    source: SourceChoice | None = _SOURCE,
):
    """Table-VI statistics (patients, visits, single-visit share, vocab sizes, codes per visit, warnings);
    with --protocol, the cohort counts of that protocol beside the options given."""
    from rich.console import Console

    from leader.data.cache import list_prepared
    from leader.data.dataset import EHRDataset
    from leader.data.stats import dataset_stats, stats_table

    dataset = _source(dataset, source, required=protocol is not None)
    flags = (top_k_diag, top_k_proc, top_k_med, first_24h, mappings, split_seed, n_patients, structure_strength)
    flags += (rare_share, synthetic_seed)
    if protocol is not None:
        return _protocol_counts(dataset, root, sets, flags, protocol, json_out)
    if dataset is not None:
        found = [(dataset.value, _run(dataset, root, _opts(sets, *flags), False))]
    else:
        found = [(p.name, EHRDataset.load(p)) for p in list_prepared()]
        if not found:
            typer.echo("no prepared datasets yet; run `leader data prepare --dataset synthetic`")
            raise typer.Exit(1)
    all_stats = {key: dataset_stats(ds) for key, ds in found}
    if json_out:
        typer.echo(json.dumps(all_stats, indent=1))
        return
    for key, st in all_stats.items():
        Console().print(stats_table(st, title=f"{key}"))


def _protocol_counts(dataset: SourceChoice, root, sets, flags, protocol: ProtocolChoice, json_out: bool) -> None:
    """Two preparations, the options given and the same with the protocol's fields (then --set), as columns."""
    from rich.console import Console

    from leader.config.protocol import authors_protocol
    from leader.data.stats import cohort_counts, counts_table

    preset = authors_protocol(dataset.value, bugs=protocol is ProtocolChoice.authors_bugs)
    default = _opts(sets, *flags)
    columns = {
        f"{default.samples} (options given)": cohort_counts(_run(dataset, root, default, False)),
        protocol.value: cohort_counts(_run(dataset, root, _opts(sets, *flags, preset=preset), False)),
    }
    if json_out:
        typer.echo(json.dumps(columns, indent=1))
        return
    Console().print(counts_table(columns, title=f"{dataset.value}: cohort counts by data protocol"))
