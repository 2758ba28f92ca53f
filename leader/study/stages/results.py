"""results/: the parts of the units of the study as it is now, assembled into the tables the
report reads (bootstrap, metrics, efficiency, optuna_trials, paired, teacher, dataset_stats,
env), and the `report` unit that builds the report from them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from leader.metrics import mean_std
from leader.study.context import Study
from leader.study.environment import environment
from leader.study.state import write_frame, write_text
from leader.study.units import Unit

KEYS = ["run_id", "stage", "dataset", "backbone", "model", "variant", "param", "param_value", "seed"]


def current_parts(study: Study) -> list[Path]:
    """Result parts of the units (and grid trials) of the study as it is now: a part of a
    removed seed, an older config or an unfinished unit is never assembled."""
    out = []
    for name, u in study.units.items():
        st = study.state.get(name)
        if st.get("key") != u.key:
            continue
        if u.trial_keys:  # finished trials count even when their stage failed later
            trials = st.get("outputs", {}).get("trials", {})
            out += [p for tk in u.trial_keys for p in trials.get(tk, {}).get("parts", [])]
        elif st.get("status") == "done":
            out += st.get("outputs", {}).get("parts", [])
    return [study.dir / p for p in dict.fromkeys(out)]


def _write_or_remove(df: pd.DataFrame | None, path: Path) -> None:
    if df is None:
        path.unlink(missing_ok=True)
    else:
        write_frame(df, path)


def collect(study: Study) -> None:
    res = study.dir / "results"
    parts = current_parts(study)

    def frame(suffix: str):
        fs = [pd.read_parquet(p) for p in parts if p.name.endswith(suffix) and p.parent == study.parts]
        return pd.concat(fs, ignore_index=True) if fs else None

    boot, eff, opt = frame(".boot.parquet"), frame(".eff.parquet"), frame(".optuna.parquet")
    for f, df in (("bootstrap.parquet", boot), ("efficiency.parquet", eff), ("optuna_trials.parquet", opt)):
        if df is None:
            (res / f).unlink(missing_ok=True)
    if boot is not None:
        boot["param_value"] = boot["param_value"].astype(float)
        write_frame(boot, res / "bootstrap.parquet")
        m = mean_std(boot, KEYS + ["group", "metric"], study.spec.evaluation.bootstrap_ddof)
        write_frame(m, res / "metrics.parquet")
    else:
        (res / "metrics.parquet").unlink(missing_ok=True)
    if eff is not None:
        write_frame(eff, res / "efficiency.parquet")
    if opt is not None:
        write_frame(opt, res / "optuna_trials.parquet")
    paired(study, res, [p for p in parts if p.parent == study.dir / "persample"])
    _write_or_remove(teacher_frame(study), res / "teacher.parquet")
    if study.dataset_stats:
        write_text(res / "dataset_stats.json", json.dumps(study.dataset_stats, indent=1, default=str))
    write_text(res / "env.json", json.dumps(environment(), indent=1, default=str))


def teacher_frame(study: Study) -> pd.DataFrame | None:
    """How far each trained teacher got (results/teacher.parquet): best_step is the step of the
    state the teacher kept (`checkpoint: best`: its best validation, 0 = the probe; `last`: the
    final validated step); the report names a teacher whose LoRA never beat its linear probe on
    validation (best_step 0) as that probe."""
    rows = []
    for name, u in study.units.items():
        st = study.state.get(name)
        if u.kind != "teacher" or st.get("key") != u.key or st.get("status") != "done":
            continue
        meta = Path(st.get("outputs", {}).get("dir", "")) / "meta.json"
        if not meta.is_file():
            continue
        m = json.loads(meta.read_text()).get("metrics", {})
        keep = ("best_step", "best_val_prauc", "probe_val_prauc", "precision", "nonfinite_steps")
        rows.append(
            {"dataset": u.dataset, "backbone": u.backbone, "steps": m.get("step"), **{k: m.get(k) for k in keep}}
        )
    return pd.DataFrame(rows) if rows else None


def paired(study: Study, res: Path, files: list[Path]) -> None:
    """Paired patient-bootstrap tests behind the report's Findings (aggregates only)."""
    from leader.evaluation import index_frame, paired_comparisons, standard_pairs

    (res / "paired.parquet").unlink(missing_ok=True)
    datasets = study.datasets
    if not files or not datasets:
        return
    per = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    out = []
    for name, ds in datasets.items():
        for bb in study.spec.backbones():
            pr = paired_comparisons(per[per["dataset"] == name], index_frame(ds), standard_pairs(per, name, bb))
            if not pr.empty:
                out.append(pr.assign(dataset=name, backbone=bb))
    if out:
        write_frame(pd.concat(out, ignore_index=True), res / "paired.parquet")


def mark_incomplete(out: Path, why_: str) -> None:
    """First line of index.md / first element of index.html's body: the study is incomplete."""
    import html

    banner = f"INCOMPLETE STUDY: {why_}. Tables and figures show only the units that finished."
    md = out / "index.md"
    if md.is_file():
        write_text(md, f"> **{banner}**\n\n" + md.read_text())
    page = out / "index.html"
    if page.is_file():
        text = page.read_text()
        i = text.find(">", text.find("<body")) + 1 if "<body" in text else 0
        write_text(page, text[:i] + f'<p class="incomplete"><strong>{html.escape(banner)}</strong></p>' + text[i:])


def report(study: Study, u: Unit) -> Path:
    """The report, in the study's own folder. Written for what finished even when a unit
    failed; then its first line says the study is incomplete."""
    from leader.report import build_report

    out = study.dir / "report"
    if study.failed:
        study.echo("[run ] report (incomplete study)")
        build_report(study.dir, out)
        mark_incomplete(out, "; ".join(str(f) for f in study.failed))
        study.state.mark(u.name, "incomplete", key="", files={})
        return out
    study.state.stage(u, lambda: {"path": str(out), "_files": [build_report(study.dir, out)]})
    return out
