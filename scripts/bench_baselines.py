"""Table III through the platform: the paper's baselines and LEADER(S) in ONE real study
(`leader study run`), every learned model swept with the same Tune + Optuna budget, on a synthetic
cohort; the numbers are read back from the study's own results. Writes reports/bench/baselines.json.

Usage: python scripts/bench_baselines.py [--patients 1000] [--num-samples 4] [--epochs 20] [--storage DIR]

What the study is: no teacher (the student runs with kd: none, the paper's "w/o KD" student, so the
bench measures the baselines' machinery, not a teacher); trivial baselines prior / cooccurrence /
logreg fitted once; retain / gamenet / micron / cognet and the student each get `--num-samples`
Optuna TPE trials under the same ASHA scheduler and the same epochs / patience, selected on
validation PRAUC and scored once on test with the same bootstrap. SafeDrug is not available
(leader.baselines.safedrug says why).

Keys (per model m): m_prauc = group 'overall'; m_single_prauc = group 'no_history' (test samples
without an earlier visit: the paper's single-visit definition); m_multi_prauc = group 'history'.
A multi-visit-only model (micron, cognet) scores only the 'history' group, so its overall and
single keys are null, never a number from a subset. m_params: trainable parameters of the
selected model (trivial: the fitted table / coefficients); m_train_s: seconds the selected trial
(or the trivial fit) took; m_search_s: seconds summed over all of the model's trials; m_beats_prior:
PRAUC above the prior's on every group the model reports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from leader.baselines import BASELINE_LABELS  # the names the study writes

TRIVIAL = ["prior", "cooccurrence", "logreg"]
TUNED = ["retain", "gamenet", "micron", "cognet"]
GROUPS = {"": "overall", "single_": "no_history", "multi_": "history"}


def study(
    patients: int, num_samples: int, epochs: int, patience: int, storage: str, student_epochs: int | None = None
) -> dict:
    fixed = {"epochs": epochs, "patience": patience}
    student_fixed = {"epochs": student_epochs or epochs, "patience": patience}
    return {
        "name": "baselines",
        "storage_path": storage,
        "datasets": [
            {"name": "synthetic", "source": "synthetic", "prepare": {"n_patients": patients, "synthetic_seed": 0}}
        ],
        # the quickstart's CPU-sized student (d 32): at d 64 one epoch on 1,000 patients took 60-100 s on the
        # shared 2-core machine, 10x a baseline's, and 4 trials + the final run did not fit the session
        "student": {
            **student_fixed,
            "d_model": 32,
            "d_embed": 32,
            "n_heads": 2,
            "batch_size": 64,
            "lr": 1e-3,
            "threshold": 0.3,
            "kd": "none",
        },
        "search": {
            "space": {
                "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
                "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
            },
            "sampler": "tpe",
            "num_samples": num_samples,
            "max_concurrent": 2,
            "scheduler": {"type": "asha", "grace_period": max(1, epochs // 4), "reduction_factor": 2},
        },
        "ablations": {"variants": ["full"]},
        "baselines": {"trivial": TRIVIAL, "tuned": {n: {"params": dict(fixed)} for n in TUNED}},
        "seeds": [0],
        "resources": {"cpu": 1},
        "evaluation": {"bootstrap_rounds": 10, "latency_batch_sizes": [1]},
        "report": {"enabled": True, "tables": ["main"], "figures": [], "formats": ["md"]},
    }


def _prauc(m: pd.DataFrame, group: str, **sel) -> float | None:
    d = m[(m["group"] == group) & (m["metric"] == "prauc")]
    for k, v in sel.items():
        d = d[d[k] == v]
    return round(float(d["mean"].mean()), 4) if not d.empty else None


def _tune_seconds(exp: Path) -> dict[str, float]:
    """trial folder -> time_total_s of its last result (Tune's own clock)."""
    out = {}
    for f in exp.glob("*/result.json"):
        lines = [ln for ln in f.read_text().splitlines() if ln.strip()]
        if lines:
            out[f.parent.name] = float(json.loads(lines[-1]).get("time_total_s", 0.0))
    return out


def summarize(sdir: Path) -> dict:
    m = pd.read_parquet(sdir / "results" / "metrics.parquet")
    stages = json.loads((sdir / "state.json").read_text())["stages"]
    eff_file = sdir / "results" / "efficiency.parquet"
    eff = pd.read_parquet(eff_file) if eff_file.is_file() else pd.DataFrame()  # absent if the student never finished
    rows = {n: dict(stage="baseline", model=BASELINE_LABELS[n]) for n in TRIVIAL + TUNED}
    rows["leader_student"] = dict(stage="best", model="LEADER(S)")
    from leader.baselines.safedrug import REASON

    out: dict = {"safedrug": None, "safedrug_unavailable": REASON}
    for name, sel in rows.items():
        for prefix, group in GROUPS.items():
            out[f"{name}_{prefix}prauc"] = _prauc(m, group, **sel)
    for name in TRIVIAL:
        o = stages[f"baseline/synthetic/{name}"].get("outputs", {})
        out[f"{name}_params"], out[f"{name}_train_s"] = o.get("n_params"), o.get("train_s")
    for name in TUNED:
        o = stages[f"baseline/synthetic/{name}"].get("outputs", {})
        secs = _tune_seconds(sdir / "tune" / f"baseline-synthetic-{name}")
        out.update(
            {
                f"{name}_params": o.get("n_params"),
                f"{name}_train_s": round(float(o.get("train_s", 0)), 2),
                f"{name}_search_s": round(sum(secs.values()), 1),
                f"{name}_trials": o.get("trials"),
                f"{name}_best_val_prauc": round(float(o.get("best_val_prauc", float("nan"))), 4),
                f"{name}_best_config": o.get("best_config"),
            }
        )
    sweep = stages.get("sweep/synthetic/none", {}).get("outputs", {})
    grid = _tune_seconds(sdir / "tune" / "grid-synthetic-none")
    out.update(
        {
            "leader_student_params": int(eff["n_params"].iloc[0]) if len(eff) else None,
            "leader_student_train_s": round(max(grid.values()), 2) if grid else None,
            "leader_student_search_s": round(sum(_tune_seconds(sdir / "tune" / "sweep-synthetic-none").values()), 1),
            "leader_student_trials": sweep.get("trials"),
            "leader_student_best_config": sweep.get("best_config"),
        }
    )
    out.update(
        {
            f"stage_s_{k.replace('/', '_')}": v.get("outputs", {}).get("seconds")
            for k, v in stages.items()
            if v.get("outputs", {}).get("seconds") is not None
        }
    )
    prior = {g: out[f"prior_{p}prauc"] for p, g in GROUPS.items()}
    for name in ["cooccurrence", "logreg", *TUNED, "leader_student"]:
        vals = {g: out[f"{name}_{p}prauc"] for p, g in GROUPS.items()}
        got = {g: v for g, v in vals.items() if v is not None}
        out[f"{name}_beats_prior"] = all(v > prior[g] for g, v in got.items()) if got else None
    table = sdir.parent / "reports" / sdir.name / "tables" / "overall.csv"
    out["report_multi_visit_only_dash"] = _dash_check(table) if table.is_file() else None
    return out


def _dash_check(table: Path) -> bool:
    """The report's overall table shows '-' (neither a number nor 'missing') in the Overall and
    Single-visit columns of MICRON and COGNet, and numbers in their Multi-visit columns."""
    t = pd.read_csv(table, dtype=str)
    rows = t[t["Model"].isin(["MICRON", "COGNet"])]
    multi = [c for c in t.columns if c.startswith("Multi-visit")]
    other = [c for c in t.columns[2:] if c not in multi]
    return bool(
        len(rows) == 2 and (rows[other] == "-").all().all() and rows[multi].map(lambda x: x[:1].isdigit()).all().all()
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--num-samples", type=int, default=4, help="trials per learned model (student and each baseline)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument(
        "--student-epochs",
        type=int,
        default=None,
        help="student epochs (default: --epochs); the "
        "baselines' stages keep their results when only this changes (the study resumes them)",
    )
    ap.add_argument("--storage", default="/tmp/leader_bench_baselines")
    ap.add_argument("--out", default="reports/bench/baselines.json")
    ap.add_argument("--summarize-only", action="store_true", help="read an existing study folder")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. how the run was resumed)")
    a = ap.parse_args()
    spec = study(a.patients, a.num_samples, a.epochs, a.patience, a.storage, a.student_epochs)
    path = Path(a.storage) / "baselines.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    cmd = [sys.executable, "-m", "leader.cli.main", "study", "run", str(path), "--no-dashboard"]
    t0 = time.perf_counter()
    if not a.summarize_only:  # the report goes beside the study, not into the repository
        subprocess.run(cmd, check=True, env={**os.environ, "LEADER_REPORTS_DIR": str(Path(a.storage) / "reports")})
    out = {
        "command": f"python scripts/bench_baselines.py --patients {a.patients} --num-samples {a.num_samples} "
        f"--epochs {a.epochs} --patience {a.patience}"
        + (f" --student-epochs {a.student_epochs}" if a.student_epochs else ""),
        "study_command": " ".join(["leader", *cmd[3:]]),
        "patients": a.patients,
        "num_samples": a.num_samples,
        "epochs": a.epochs,
        "student_epochs": a.student_epochs or a.epochs,
        "patience": a.patience,
        "wall_s": round(time.perf_counter() - t0, 1),
        "note": a.note,
        "group_overall": "overall",
        "group_single": "no_history (test samples without an earlier visit)",
        "group_multi": "history (test samples with an earlier visit)",
        **summarize(Path(a.storage) / "baselines"),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
