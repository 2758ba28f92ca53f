"""Train every baseline with its defaults on a synthetic cohort and print test PRAUC.

    source scripts/env.sh && PYTHONPATH=$PWD python scripts/bench_baseline_models.py [--patients 1000] [--only a,b]

Prints one row per model: test PRAUC overall / single / multi (mean over the test samples the
model serves; single = samples without an earlier visit, multi = samples with one, the paper's
sample-level groups; multi-visit-only models serve no single-visit sample, so their overall and
single columns are '-'; scripts/bench_baselines.py gives the study's numbers), the PRAUC of the
drug-frequency prior on the SAME samples (a learned model must beat it), parameters, train
seconds and epochs. Writes nothing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from leader.baselines import BASELINES
from leader.baselines.train import train_baseline
from leader.baselines.trivial import train_prior
from leader.data.cache import PrepareOptions, prepare
from leader.metrics import sample_metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--only", default="", help="comma-separated baseline names (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", default="", help="extra params for every torch model, e.g. epochs=10,lr=3e-3")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ds = prepare("synthetic", opts=PrepareOptions(n_patients=args.patients))
    s = ds.samples().set_index("sample_id")
    prior = train_prior(ds)
    print(
        f"dataset {ds.name}: {len(ds.visits)} visits, {ds.n_meds} drugs, {len(ds.vocabs['diag'])} diag, "
        f"{len(ds.vocabs['proc'])} proc (ready in {time.perf_counter() - t0:.1f}s)"
    )
    extra = dict(kv.split("=") for kv in args.set.split(",") if kv)
    names = [n for n in BASELINES if not args.only or n in args.only.split(",")]
    print(
        f"{'model':<13}{'overall':>8}{'single':>8}{'multi':>8}{'prior@same':>11}{'val':>7}{'params':>9}{'train_s':>9}{'epochs':>7}"
    )
    for name in names:
        info = BASELINES[name]
        params = {
            k: type(info.defaults[k])(float(v)) if isinstance(info.defaults[k], (int, float)) else v
            for k, v in extra.items()
            if k in info.defaults
        }
        r = train_baseline(ds, name, params, seed=args.seed)
        y = ds.labels(r.sample_ids)
        pr = sample_metrics(y, r.probs)["prauc"]
        base = sample_metrics(y, np.tile(prior, (len(y), 1)))["prauc"]
        grp = s.loc[r.sample_ids, "history"].astype(str).to_numpy()
        g = {
            k: (f"{pr[grp == h].mean():.4f}" if (grp == h).any() else "-")
            for k, h in (("single", "no_history"), ("multi", "history"))
        }
        overall = "-" if info.needs_history else f"{pr.mean():.4f}"  # never a subset under 'overall'
        print(
            f"{name:<13}{overall:>8}{g['single']:>8}{g['multi']:>8}{base.mean():>11.4f}{r.val_prauc:>7.3f}"
            f"{r.n_params:>9}{r.train_s:>9.1f}{len(r.history):>7}",
            flush=True,
        )


if __name__ == "__main__":
    main()
