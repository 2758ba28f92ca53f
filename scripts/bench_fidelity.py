"""Does the method hold on this platform? One real study through `leader study run` (Ray Train +
DeepSpeed teacher, feature store, Tune + Optuna student sweep, ablation grid over seeds) on a
synthetic cohort, with the MiniLM teacher (LP-FT), the trivial baselines and the controls; then
the numbers the fidelity issue asks for, read from the study's own results. Writes
reports/bench/fidelity.json (flat dict).

Usage: python scripts/bench_fidelity.py [--patients 1000] [--seeds 3] [--storage DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

STUDY = {
    "name": "fidelity",
    "datasets": [{"name": "synthetic", "source": "synthetic", "prepare": {"synthetic_seed": 0}}],
    "teacher": {
        "backbones": ["minilm"],
        "train": True,
        "options": {
            "lp_epochs": 30,
            "lr": 1e-3,
            "head_lr_mult": 10,
            "batch_size": 8,
            "max_length": 256,
            "max_steps": 60,
            "eval_every": 20,
            "warmup": 0.1,
            "eval_batch_size": 32,
        },
    },
    "teacher_resources": {"num_workers": 2, "cpu_per_worker": 1},
    "student": {
        "epochs": 50,
        "patience": 8,
        "d_model": 64,
        "d_embed": 64,
        "n_heads": 4,
        "batch_size": 64,
        "lr": 1e-3,
        "threshold": 0.3,
        "kd": "feature",
        "alpha": 0.5,
        "beta": 0.05,
    },
    "search": {
        "space": {
            "lr": {"type": "loguniform", "low": 5e-4, "high": 5e-3},
            "alpha": {"type": "loguniform", "low": 0.05, "high": 2.0},
        },
        "sampler": "tpe",
        "num_samples": 4,
        "max_concurrent": 2,
        "scheduler": {"type": "asha", "grace_period": 8, "reduction_factor": 2},
    },
    "ablations": {"variants": ["full", "no_kd", "output_kd", "kd_shuffled", "no_align"]},
    "evaluation": {"bootstrap_rounds": 10, "latency_batch_sizes": [1, 64]},
    "resources": {"cpu": 1},
    "report": {"enabled": True},
}


def _score(m: pd.DataFrame, group: str, **sel) -> float | None:
    d = m[(m["group"] == group) & (m["metric"] == "prauc")]
    for k, v in sel.items():
        d = d[d[k] == v]
    return round(float(d["mean"].mean()), 4) if not d.empty else None


def _p(paired: pd.DataFrame, comparison: str, group: str) -> dict:
    d = paired[(paired["comparison"] == comparison) & (paired["group"] == group)]
    if d.empty:
        return {}
    r = d.iloc[0]
    return {"diff": round(float(r["diff"]), 4), "p": float(r["p_bootstrap"]), "p_wilcoxon": float(r["p_wilcoxon"])}


def _no_kd_vs_lr(study_dir: Path) -> pd.DataFrame:
    """S(no KD) vs logistic regression, paired over the same test samples (the study itself tests
    the full student against every baseline; the issue's goal is about S without KD)."""
    from leader.data.cache import PrepareOptions, prepare
    from leader.evaluation import index_frame, paired_comparisons

    spec = yaml.safe_load((study_dir / "spec.yaml").read_text())
    ds = prepare("synthetic", None, PrepareOptions(**spec["datasets"][0].get("prepare", {})))
    per = pd.concat([pd.read_parquet(f) for f in sorted((study_dir / "persample").glob("*.parquet"))])
    no_kd = {"model": "LEADER(S)", "variant": "no_kd", "stage": "ablation"}
    lr = {"model": "LogReg", "stage": "baseline"}
    return paired_comparisons(per, index_frame(ds), [(no_kd, lr, "no_kd_vs_LogReg")])


def summarize(study_dir: Path) -> dict:
    m = pd.read_parquet(study_dir / "results" / "metrics.parquet")
    paired = pd.concat([pd.read_parquet(study_dir / "results" / "paired.parquet"), _no_kd_vs_lr(study_dir)])
    out: dict = {}
    for prefix, group in (
        ("", "overall"),
        ("single_", "no_history"),
        ("multi_", "history"),
        ("patient_single_", "single"),
    ):
        rows = {
            "prior": dict(stage="baseline", model="Prior"),
            "cooccurrence": dict(stage="baseline", model="CoOccurrence"),
            "lr": dict(stage="baseline", model="LogReg"),
            "probe": dict(stage="baseline", model="Probe"),
            "teacher": dict(stage="teacher", model="LEADER(T)"),
        }
        for v in ("full", "no_kd", "output_kd", "kd_shuffled", "no_align"):
            rows[f"student_{v}"] = dict(stage="ablation", model="LEADER(S)", variant=v)
        for k, sel in rows.items():
            out[f"{prefix}{k}_prauc"] = _score(m, group, **sel)
        for cmp, key in (
            ("full_vs_no_kd", "full_vs_no_kd"),
            ("full_vs_kd_shuffled", "full_vs_kd_shuffled"),
            ("full_vs_output_kd", "full_vs_output_kd"),
            ("full_vs_no_align", "full_vs_no_align"),
            ("student_vs_teacher", "student_vs_teacher"),
            ("student_vs_LogReg", "student_vs_lr"),
            ("no_kd_vs_LogReg", "no_kd_vs_lr"),
        ):
            r = _p(paired, cmp, group)
            if r:
                out[f"{prefix}p_{key}"] = r["p"]
                out[f"{prefix}diff_{key}"] = r["diff"]
    seeds = m[
        (m["stage"] == "ablation") & (m["variant"] == "no_kd") & (m["group"] == "overall") & (m["metric"] == "prauc")
    ]
    out["student_no_kd_seed_spread"] = (
        round(float(seeds["mean"].max() - seeds["mean"].min()), 4) if len(seeds) else None
    )
    return out


def goals(o: dict) -> dict:
    g = lambda k: o.get(k) if o.get(k) is not None else float("nan")  # noqa: E731
    return {
        "goal_teacher_ge_probe_gt_prior": bool(g("teacher_prauc") >= g("probe_prauc") > g("prior_prauc")),
        "goal_student_no_kd_ge_lr": bool(g("student_no_kd_prauc") >= g("lr_prauc")),
        "goal_full_gt_no_kd_p05": bool(g("diff_full_vs_no_kd") > 0 and g("p_full_vs_no_kd") < 0.05),
        "goal_full_gt_kd_shuffled_p05": bool(g("diff_full_vs_kd_shuffled") > 0 and g("p_full_vs_kd_shuffled") < 0.05),
        "goal_seed_spread_lt_0.02": bool(g("student_no_kd_seed_spread") < 0.02),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--storage", default="/tmp/leader_bench_fidelity")
    ap.add_argument("--out", default="reports/bench/fidelity.json")
    ap.add_argument("--summarize-only", action="store_true", help="read an existing study folder")
    a = ap.parse_args()
    study = json.loads(json.dumps(STUDY))
    study["datasets"][0]["prepare"]["n_patients"] = a.patients
    study["seeds"] = list(range(a.seeds))
    study["storage_path"] = a.storage
    path = Path(a.storage) / "fidelity.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    cmd = [sys.executable, "-m", "leader.cli.main", "study", "run", str(path), "--no-dashboard"]
    t0 = time.perf_counter()
    if not a.summarize_only:
        subprocess.run(cmd, check=True)
    wall = round(time.perf_counter() - t0, 1)
    if a.summarize_only and Path(a.out).exists():  # the run's wall time, not this re-read's
        wall = json.loads(Path(a.out).read_text()).get("wall_s")
    out = {
        "command": f"python scripts/bench_fidelity.py --patients {a.patients} --seeds {a.seeds} --storage {a.storage}",
        "study_command": " ".join(["leader", *cmd[3:]]),
        "patients": a.patients,
        "seeds": a.seeds,
        "wall_s": wall,
        **summarize(Path(a.storage) / "fidelity"),
    }
    out.update(goals(out))
    state = json.loads((Path(a.storage) / "fidelity" / "state.json").read_text())["stages"]
    out.update(
        {
            f"stage_s_{k.replace('/', '_')}": v.get("outputs", {}).get("seconds")
            for k, v in state.items()
            if v.get("outputs", {}).get("seconds") is not None
        }
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
