"""Dataset statistics in the shape of the paper's Table VI, plus the counted warnings met while
preparing (so a lossy step is visible, never silent)."""

from __future__ import annotations

from leader.data.dataset import CODE_TYPES, EHRDataset
from leader.data.drops import drop_summary


def dataset_stats(ds: EHRDataset) -> dict:
    """Flat dict of named figures (JSON-serialisable)."""
    p = ds.patients
    v = ds.visits
    n_pat = int(len(p))
    out: dict = {
        "name": ds.name,
        "patients": n_pat,
        "visits": int(len(v)),
        "visits_per_patient": round(len(v) / max(n_pat, 1), 3),
        "single_visit_patients": int((p["group"] == "single").sum()),
        "single_visit_share": round(float((p["group"] == "single").mean()) if n_pat else 0.0, 4),
        "max_visits": int(p["n_visits"].max()) if n_pat else 0,
    }
    for kind in CODE_TYPES:
        lens = v[kind].map(len)
        out[f"n_{kind}"] = len(ds.vocabs[kind])
        out[f"avg_{kind}_per_visit"] = round(float(lens.mean()), 3)
        out[f"max_{kind}_per_visit"] = int(lens.max())
    for split in ("train", "val", "test"):
        out[f"{split}_patients"] = int((p["split"] == split).sum())
    out["profile_features"] = {k: len(c) for k, c in ds.profile_vocabs.items()}
    out["warnings"] = dict(ds.warnings)
    out.update(drop_summary(ds.drops))  # flat: the study report's dataset table shows them
    out["drops"] = list(ds.drops)
    out["fingerprint"] = ds.fingerprint
    return out


def cohort_counts(ds: EHRDataset) -> dict[str, int]:
    """The counts a data protocol changes: patients, samples, single-/multi-visit patients (single =
    exactly one visit in the dataset), vocabulary sizes and the split."""
    p = ds.patients
    out = {
        "patients": int(len(p)),
        "samples": int(len(ds.samples())),
        "visits": int(len(ds.visits)),
        "single_visit_patients": int((p["group"] == "single").sum()),
        "multi_visit_patients": int((p["group"] == "multi").sum()),
    }
    out.update({f"n_{kind}": len(ds.vocabs[kind]) for kind in CODE_TYPES})
    out.update({f"{split}_patients": int((p["split"] == split).sum()) for split in ("train", "val", "test")})
    return out


COUNT_LABELS = {
    "patients": "# patients",
    "samples": "# samples",
    "visits": "# visits (samples + history)",
    "single_visit_patients": "single-visit group (patients)",
    "multi_visit_patients": "multi-visit group (patients)",
    "n_diag": "|diag|",
    "n_proc": "|proc|",
    "n_med": "|med| (ATC-3)",
    "train_patients": "train patients",
    "val_patients": "val patients",
    "test_patients": "test patients",
}


def counts_table(columns: dict[str, dict[str, int]], title: str):
    """A rich Table of `cohort_counts`, one column per protocol (e.g. the default beside the authors')."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("count")
    for name in columns:
        t.add_column(name, justify="right")
    for key, label in COUNT_LABELS.items():
        t.add_row(label, *(str(c[key]) for c in columns.values()))
    return t


def stats_table(stats: dict, title: str | None = None):
    """A rich Table of `dataset_stats` output (imported lazily by the CLI)."""
    from rich.table import Table

    t = Table(title=title or f"Dataset statistics: {stats['name']}")
    t.add_column("statistic")
    t.add_column("value", justify="right")
    rows = [
        ("# patients", stats["patients"]),
        ("# visits", stats["visits"]),
        ("visits per patient", stats["visits_per_patient"]),
        ("single-visit patients", f"{stats['single_visit_patients']} ({100 * stats['single_visit_share']:.1f}%)"),
        ("max visits", stats["max_visits"]),
        ("# diagnoses", stats["n_diag"]),
        ("# procedures", stats["n_proc"]),
        ("# medications (ATC-3)", stats["n_med"]),
        ("avg / max diagnoses per visit", f"{stats['avg_diag_per_visit']} / {stats['max_diag_per_visit']}"),
        ("avg / max procedures per visit", f"{stats['avg_proc_per_visit']} / {stats['max_proc_per_visit']}"),
        ("avg / max medications per visit", f"{stats['avg_med_per_visit']} / {stats['max_med_per_visit']}"),
        (
            "train / val / test patients",
            f"{stats['train_patients']} / {stats['val_patients']} / {stats['test_patients']}",
        ),
        ("profile features", ", ".join(f"{k}({n})" for k, n in stats["profile_features"].items())),
    ]
    for k, n in sorted(stats["warnings"].items()):
        rows.append((f"warning: {k}", n))
    for k, val in rows:
        t.add_row(k, str(val))
    return t


def drop_table(drops: list[dict], title: str = "Rows dropped while preparing"):
    """A rich Table of the drop table: reason -> rows, visits, patients (and whose rule it is)."""
    from rich.table import Table

    t = Table(title=title)
    for c, j in (
        ("reason", "left"),
        ("rule", "left"),
        ("rows", "right"),
        ("visits", "right"),
        ("patients", "right"),
        ("% visits", "right"),
    ):
        t.add_column(c, justify=j)
    for r in drops:
        t.add_row(
            r["reason"],
            "paper" if r["paper_preprocessing"] else "repair",
            str(r["rows"]),
            str(r["visits"]),
            str(r["patients"]),
            f"{100 * r['visit_share']:.2f}",
        )
    if not drops:
        t.add_row("(none)", "", "0", "0", "0", "0.00")
    return t


def cohort_signature(ds: EHRDataset, code_key=None) -> str:
    """Hash of the cohort's meaning, not its encoding: per visit the patient, position, split,
    codes and labels as code STRINGS (in order) and profile values as strings. Two preparations
    of the same cohort from differently shaped files give the same signature; titles are left out
    (a re-encoded dictionary changes a title, not the cohort). `code_key` maps each code string
    first (e.g. drop MIMIC-IV's '9_' version prefix to compare with a MIMIC-III reading)."""
    import hashlib

    import pandas as pd

    v = ds.visits.merge(ds.patients[["patient_id", "split", "group"]], on="patient_id", how="left")
    cols: dict = {c: v[c].astype(str) for c in ("patient_id", "visit_id", "visit_index", "split", "group")}
    for kind in CODE_TYPES:
        codes = tuple(map(code_key, ds.vocabs[kind].codes)) if code_key else ds.vocabs[kind].codes
        cols[kind] = v[kind].map(lambda ix, cs=codes: "|".join(cs[i] for i in ix))
    for feat, cats in ds.profile_vocabs.items():
        cols[feat] = v[feat].map(lambda i, cs=cats: cs[i])
    frame = pd.DataFrame(cols).sort_values("visit_id", key=lambda s: s.astype("int64")).reset_index(drop=True)
    text = frame.to_csv(index=False)
    if ds.sampling != "per_visit":  # which visits are samples is part of the meaning (default: unchanged)
        text = f"sampling={ds.sampling}\n{text}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
