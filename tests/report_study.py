"""A small study result folder built from SYNTHETIC predictions (for tests and demos only).

No model is trained here: each (model, variant, alpha/beta) gets a synthetic prediction
matrix whose quality depends on it, and the metrics are then REALLY computed with
leader.metrics.bootstrap_metrics, exactly as the runner does on real predictions. The layout is
the one in docs/ARCHITECTURE.md; numbers are labelled synthetic in env.json.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from leader.metrics import bootstrap_metrics, group_index, sample_metrics, summarize

_VARIANT_QUALITY = {"full": 1.0, "no_kd": 0.78, "output_kd": 0.9, "no_align": 0.93, "split_visit_encoder": 0.88}
_BASELINE_QUALITY = {"LogReg": 1.0, "RETAIN": 0.9, "MICRON": 0.95, "COGNet": 0.97}
MULTI_VISIT_ONLY = ("MICRON", "COGNet")  # scored only on samples with history, as the runner does


def _predictions(rng, y_true: np.ndarray, quality: float) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, y_true.shape)
    logits = 1.1 * quality * (y_true - 0.5) * 2 + noise - 0.6
    return 1.0 / (1.0 + np.exp(-logits))  # (N, M)


def make_study_dir(  # noqa: C901 - one flat writer of every results table a report reads; splitting scatters it
    root: str | Path,
    name: str = "synthetic_study",
    datasets=("demo",),
    backbones=("tiny-llama", "tiny-qwen2"),
    variants=tuple(_VARIANT_QUALITY),
    alphas=(0.0, 0.1, 0.5, 1.0, 2.0),
    betas=(0.0, 0.05, 0.2, 0.5, 1.0),
    n_samples: int = 160,
    n_meds: int = 24,
    rounds: int = 10,
    n_trials: int = 12,
    report: dict | None = None,
    seed: int = 0,
    extra_baselines=(),
    probe: bool = False,
    teacher_is_probe: bool = False,
    paired: bool = False,
    teacher_steps: dict | None = None,
) -> Path:
    """Write <root>/<name>/{spec.yaml, results/*.parquet, results/env.json}; returns the study dir.

    Opt-in extras (the defaults keep the original layout): `extra_baselines` (e.g. LogReg, and
    MICRON scored only on samples with history), `probe` (a linear-probe baseline per backbone;
    `teacher_is_probe` gives the first backbone's teacher the probe's very predictions),
    `paired` (results/paired.parquet from leader.significance.paired_test on the per-sample
    scores, with the runner's comparison names) and `teacher_steps` ({backbone: (steps,
    best_step)} -> results/teacher.parquet)."""
    rng = np.random.default_rng(seed)
    d = Path(root) / name
    (d / "results").mkdir(parents=True, exist_ok=True)
    spec = {
        "name": name,
        "datasets": [{"name": ds, "source": "synthetic"} for ds in datasets],
        "teacher": {"backbones": list(backbones)},
        "ablations": {"variants": list(variants)},
        "sensitivity": {"alpha": list(alphas), "beta": list(betas)},
    }
    if report is not None:
        spec["report"] = report
    (d / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    metric_rows, boot_rows, per, paired_rows = [], [], {}, []
    run = 0

    def add(stage, ds, bb, model, variant, param, pval, quality, y_true, groups, probs=None):
        nonlocal run
        run += 1
        history = _history(groups)
        probs = _predictions(rng, y_true, quality) if probs is None else probs
        keep = history == "history" if model in MULTI_VISIT_ONLY else np.ones(len(groups), bool)
        boot = bootstrap_metrics(
            y_true[keep], probs[keep], groups[keep], rounds=rounds, seed=run, history=history[keep]
        )
        if not keep.all():
            boot = boot[boot["group"] == "history"]
        per[(stage, bb, model, variant, param, None if pval != pval else pval)] = np.where(
            keep, sample_metrics(y_true, probs)["prauc"], np.nan
        )
        keys = dict(
            run_id=f"r{run:03d}",
            stage=stage,
            dataset=ds,
            backbone=bb,
            model=model,
            variant=variant,
            param=param,
            param_value=pval,
            seed=0,
        )
        for _, r in summarize(boot).iterrows():
            metric_rows.append({**keys, "group": r["group"], "metric": r["metric"], "mean": r["mean"], "std": r["std"]})
        for _, r in boot.iterrows():
            boot_rows.append(
                {**keys, "group": r["group"], "metric": r["metric"], "round": int(r["round"]), "value": r["value"]}
            )

    nan = float("nan")
    for ds in datasets:
        y_true = (rng.random((n_samples, n_meds)) < 0.2).astype(np.int8)  # (N, M)
        groups = np.where(rng.random(n_samples) < 0.35, "single", "multi")
        add("baseline", ds, "", "Frequency", "full", "", nan, 0.35, y_true, groups)
        for b in extra_baselines:
            add("baseline", ds, "", b, "full", "", nan, _BASELINE_QUALITY.get(b, 0.9), y_true, groups)
        for i, bb in enumerate(backbones):
            probs = _predictions(rng, y_true, 1.2 - 0.05 * i)
            if probe:
                add("baseline", ds, bb, "Probe", "full", "", nan, 0.0, y_true, groups, probs=probs)
            same = probs if teacher_is_probe and i == 0 else None
            add("teacher", ds, bb, "LEADER(T)", "full", "", nan, 1.25 - 0.05 * i, y_true, groups, probs=same)
            add("best", ds, bb, "LEADER(S)", "full", "", nan, 1.1 - 0.05 * i, y_true, groups)
        bb0 = backbones[0]
        for v in variants:
            add("ablation", ds, bb0, "LEADER(S)", v, "", nan, 1.1 * _VARIANT_QUALITY.get(v, 0.9), y_true, groups)
        for a in alphas:
            add(
                "sensitivity",
                ds,
                bb0,
                "LEADER(S)",
                "full",
                "alpha",
                float(a),
                1.1 - 0.12 * abs(a - 0.5),
                y_true,
                groups,
            )
        for b in betas:
            add(
                "sensitivity", ds, bb0, "LEADER(S)", "full", "beta", float(b), 1.1 - 0.15 * abs(b - 0.2), y_true, groups
            )
        if paired:
            paired_rows += _paired_rows(per, ds, groups, backbones)
            per.clear()
    pd.DataFrame(metric_rows).to_parquet(d / "results" / "metrics.parquet", index=False)
    pd.DataFrame(boot_rows).to_parquet(d / "results" / "bootstrap.parquet", index=False)
    if paired:
        pd.DataFrame(paired_rows).to_parquet(d / "results" / "paired.parquet", index=False)
    if teacher_steps:
        rows = [
            dict(dataset=ds, backbone=bb, steps=st, best_step=bs)
            for ds in datasets
            for bb, (st, bs) in teacher_steps.items()
        ]
        pd.DataFrame(rows).to_parquet(d / "results" / "teacher.parquet", index=False)

    eff = []
    for ds in datasets:
        for i, bb in enumerate(backbones):
            eff.append(
                dict(
                    dataset=ds,
                    backbone=bb,
                    model="LEADER(T)",
                    latency_ms_per_patient=40.0 + 15 * i,
                    peak_mem_mb=900.0 + 200 * i,
                    batch_size=64,
                    device="cpu",
                )
            )
            eff.append(
                dict(
                    dataset=ds,
                    backbone=bb,
                    model="LEADER(S)",
                    latency_ms_per_patient=0.8 + 0.1 * i,
                    peak_mem_mb=35.0,
                    batch_size=64,
                    device="cpu",
                )
            )
    pd.DataFrame(eff).to_parquet(d / "results" / "efficiency.parquet", index=False)

    trials = []
    for ds in datasets:
        for t in range(n_trials):
            lr = float(10 ** rng.uniform(-4, -2))
            alpha = float(rng.uniform(0, 2))
            beta = float(rng.uniform(0, 1))
            dropout = float(rng.uniform(0, 0.5))
            value = 0.6 - 0.05 * abs(np.log10(lr) + 3) - 0.03 * abs(alpha - 0.5) + rng.normal(0, 0.005)
            trials.append(
                dict(
                    dataset=ds,
                    backbone=backbones[0],
                    trial_id=f"t{t:03d}",
                    state="PRUNED" if t % 5 == 4 else "COMPLETE",
                    value=float(value),
                    epochs=3,
                    param_lr=lr,
                    param_alpha=alpha,
                    param_beta=beta,
                    param_dropout=dropout,
                )
            )
    pd.DataFrame(trials).to_parquet(d / "results" / "optuna_trials.parquet", index=False)
    env = {
        "synthetic_predictions": True,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    (d / "results" / "env.json").write_text(json.dumps(env, indent=2))
    return d


def _history(groups: np.ndarray) -> np.ndarray:
    """Sample-level groups: a single-visit patient's sample, and every third sample, has no history."""
    return np.where((groups == "single") | (np.arange(len(groups)) % 3 == 0), "no_history", "history")


def _clusters(groups: np.ndarray) -> np.ndarray:
    """Anonymous patient codes: a single-visit sample is its own patient, multi-visit samples come in threes."""
    out, k, multi = np.zeros(len(groups), np.int64), 0, 0
    for i, g in enumerate(groups):
        if g == "multi" and multi % 3:
            out[i] = k - 1
        else:
            out[i], k = k, k + 1
        multi += g == "multi"
    return out


def _paired_rows(per: dict, ds: str, groups: np.ndarray, backbones) -> list[dict]:
    """The runner's paired comparisons (leader.evaluation.standard_pairs names) on the
    synthetic per-sample PRAUC: student variants vs full, student and teacher vs each baseline,
    student vs teacher; a side that did not score a whole group (multi-visit-only) is skipped."""
    from leader.significance import paired_test

    idx, clusters, rows = group_index(groups, _history(groups)), _clusters(groups), []

    def comp(name, bb, a, b):
        for g, ix in idx.items():
            if len(ix) >= 2 and not (np.isnan(a[ix]).any() or np.isnan(b[ix]).any()):
                r = paired_test(a[ix], b[ix], clusters[ix], rounds=500).to_dict()
                rows.append(dict(dataset=ds, backbone=bb, comparison=name, a="", b="", group=g, metric="prauc", **r))

    bases = {k[2]: v for k, v in per.items() if k[0] == "baseline" and k[1] == ""}
    for bb in backbones:
        full = per.get(("ablation", bb, "LEADER(S)", "full", "", None))
        student = per[("best", bb, "LEADER(S)", "full", "", None)] if full is None else full
        teacher = per[("teacher", bb, "LEADER(T)", "full", "", None)]
        for k, v in per.items():
            if k[0] == "ablation" and k[1] == bb and k[3] != "full":
                comp(f"full_vs_{k[3]}", bb, student, v)
        probe = per.get(("baseline", bb, "Probe", "full", "", None))
        for m, v in {**bases, **({"Probe": probe} if probe is not None else {})}.items():
            comp(f"student_vs_{m}", bb, student, v)
            comp(f"teacher_vs_{m}", bb, teacher, v)
        comp("student_vs_teacher", bb, student, teacher)
    return rows
