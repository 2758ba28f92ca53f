"""Test-set evaluation shared by every model of a study (baselines, teacher, student trials), and
the paired comparisons the report's Findings read.

Why one module: a paired test is only valid when both models were scored on the same samples
in the same order with the same metric code, so every model goes through `score_test` and the
per-sample scores are kept by POSITION in the test split (no patient or visit ids):
    <study>/persample/<run>.parquet   pos, prauc, jaccard, f1 (one row per test sample)
    <study>/persample/_index_<dataset>.parquet   pos, cluster (patient code 0..K-1), group, history
`results/paired.parquet` then holds only aggregates (differences, intervals, p-values).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leader.metrics import bootstrap_metrics, group_index, sample_metrics
from leader.significance import paired_test

PAIRED_METRIC = "prauc"
PAIRED_GROUPS = ("overall", "no_history", "history", "single", "multi")


def test_frame(ds) -> pd.DataFrame:
    """The test split in its canonical order, with the grouping columns."""
    return ds.samples("test")[["sample_id", "patient_id", "group", "history"]].reset_index(drop=True)


def align_to_test(ds, sample_ids: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Reorder a model's test probabilities into `test_frame` order (models may emit any order)."""
    pos = {int(s): i for i, s in enumerate(np.asarray(sample_ids))}
    order = [pos[int(s)] for s in test_frame(ds)["sample_id"]]
    return np.asarray(probs)[order]


def score_test(
    ds, probs: np.ndarray, *, threshold: float, rounds: int, frac: float, seed: int = 0, mask: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bootstrap rows by group, per-sample scores by position) of probabilities in test_frame
    order. `mask` limits a model to the samples it can score (multi-visit-only models); the
    others get NaN per-sample scores and no bootstrap rows outside their subset."""
    t = test_frame(ds)
    y = ds.labels(t["sample_id"].to_numpy())
    keep = np.ones(len(t), bool) if mask is None else np.asarray(mask, bool)
    boot = bootstrap_metrics(
        y[keep],
        np.asarray(probs)[keep],
        t["group"].to_numpy()[keep],
        threshold=threshold,
        rounds=rounds,
        frac=frac,
        seed=seed,
        history=t["history"].to_numpy()[keep],
    )
    if not keep.all():  # a group is reported only if the model scored ALL of it (never a subset
        full = group_index(t["group"].to_numpy(), t["history"].to_numpy())  # under the group's name)
        boot = boot[boot["group"].map(lambda g: bool(keep[full[g]].all()))].reset_index(drop=True)
    per = sample_metrics(y, probs, threshold)
    persample = pd.DataFrame({"pos": np.arange(len(t)), **{k: np.where(keep, v, np.nan) for k, v in per.items()}})
    return boot, persample


def full_probs(ds, sample_ids: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probs in test_frame order, mask of scored samples) for a model that may score only a
    subset of the test split (multi-visit-only models skip samples without history)."""
    t = test_frame(ds)
    pos = {int(s): i for i, s in enumerate(t["sample_id"])}
    out = np.zeros((len(t), np.asarray(probs).shape[1]), np.float32)
    mask = np.zeros(len(t), bool)
    rows = np.array([pos[int(s)] for s in np.asarray(sample_ids)], dtype=np.int64)
    out[rows], mask[rows] = probs, True
    return out, mask


def index_frame(ds) -> pd.DataFrame:
    """pos -> anonymous patient cluster and groups (what paired tests resample by)."""
    t = test_frame(ds)
    return pd.DataFrame(
        {
            "pos": np.arange(len(t)),
            "cluster": pd.factorize(t["patient_id"])[0],
            "group": t["group"].astype(str),
            "history": t["history"].astype(str),
        }
    )


def paired_comparisons(
    per: pd.DataFrame, index: pd.DataFrame, pairs: list[tuple[dict, dict, str]], rounds: int = 2000
) -> pd.DataFrame:
    """One row per (comparison, group): A - B on PAIRED_METRIC over the samples both scored.
    `per` has run keys (model, variant, seed, ...) + pos + metrics; each pair is
    (selector A, selector B, name) where a selector is {column: value}."""
    rows = []
    for sel_a, sel_b, name in pairs:
        a, b = _matrix(per, sel_a, len(index)), _matrix(per, sel_b, len(index))
        if a is None or b is None:
            continue
        for g, idx in group_index(index["group"].to_numpy(), index["history"].to_numpy()).items():
            if g not in PAIRED_GROUPS:
                continue
            if len(idx) < 2 or np.isnan(a[:, idx]).any() or np.isnan(b[:, idx]).any():
                continue  # one side did not score the whole group (multi-visit-only model)
            r = paired_test(a[:, idx], b[:, idx], index["cluster"].to_numpy()[idx], rounds=rounds)
            rows.append(
                {
                    "comparison": name,
                    "a": _label(sel_a),
                    "b": _label(sel_b),
                    "group": g,
                    "metric": PAIRED_METRIC,
                    **r.to_dict(),
                }
            )
    return pd.DataFrame(rows)


def _matrix(per: pd.DataFrame, sel: dict, n: int) -> np.ndarray | None:
    """(seeds, n) per-sample metric of the runs matching `sel`; None if there are none."""
    m = np.ones(len(per), bool)
    for k, v in sel.items():
        m &= (per[k] == v).to_numpy()
    sub = per[m]
    if sub.empty:
        return None
    seeds = sub.pivot_table(index="run_id", columns="pos", values=PAIRED_METRIC, dropna=False)
    return seeds.reindex(columns=range(n)).to_numpy(np.float64)


def _label(sel: dict) -> str:
    v = sel.get("variant")
    return f"{sel.get('model', '')}" + (f" ({v})" if v and v != "full" else "")


def standard_pairs(per: pd.DataFrame, dataset: str, backbone: str) -> list[tuple[dict, dict, str]]:
    """The comparisons behind the Findings: the student's ablations and controls against the
    full student, the student and the teacher against every baseline, the student against the
    teacher, and (a study with a preset) the tuned student against the released configuration."""
    d = per[per["dataset"] == dataset]
    s_full = {"dataset": dataset, "backbone": backbone, "model": "LEADER(S)", "variant": "full", "stage": "ablation"}
    teacher = {"dataset": dataset, "backbone": backbone, "model": "LEADER(T)"}
    pairs = []
    for v in sorted(set(d.loc[(d["model"] == "LEADER(S)") & (d["backbone"] == backbone), "variant"]) - {"full"}):
        pairs.append((s_full, {**s_full, "variant": v}, f"full_vs_{v}"))
    for m in sorted(set(d.loc[d["stage"] == "baseline", "model"])):
        base = {"dataset": dataset, "model": m, "stage": "baseline"}
        pairs.append((s_full, base, f"student_vs_{m}"))
        pairs.append((teacher, base, f"teacher_vs_{m}"))
    pairs.append((s_full, teacher, "student_vs_teacher"))
    released = {"dataset": dataset, "backbone": backbone, "model": "LEADER(S) released", "stage": "released"}
    if ((d["model"] == released["model"]) & (d["backbone"] == backbone)).any():
        pairs.append((s_full, released, "tuned_vs_released"))  # what tuning adds to the paper's configuration
    return pairs
