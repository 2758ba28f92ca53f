"""Are two runs of the same study the same? Compares two study folders' `results/` (every number
except timings and memory, which are measured, not computed) and the cohort fingerprints recorded
for the data units, to a given number of decimals. Exit 0 when equal, 1 with the differences.

    python scripts/compare_studies.py BEFORE_DIR AFTER_DIR [--decimals 4]

Used for issue #22 (a refactor must leave the quickstart's results unchanged): run the quickstart
on the old and the new tree on the same machine, then compare the two `studies_out/quickstart`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# measured, not computed: differ run to run by nature
MEASURED = {
    "latency_ms_per_patient",
    "peak_mem_mb",
    "peak_activation_mb",
    "wall_s",
    "samples_per_s",
    "time",
    "duration_s",
}
# names a run gives its parts (Ray Tune trial ids are random per run), not results
IDENTIFIERS = {"trial_id"}
FRAMES = ["metrics", "bootstrap", "paired", "teacher", "optuna_trials", "efficiency"]


def fingerprints(study: Path) -> dict[str, str]:
    """Dataset fingerprint of every data unit, from the features manifests and teacher meta."""
    out = {}
    for path in sorted(study.glob("features/*/*/manifest.json")) + sorted(study.glob("teacher/*/*/meta.json")):
        fp = json.loads(path.read_text()).get("dataset_fingerprint")
        if fp:
            out[str(path.relative_to(study))] = fp
    return out


def _sorted(df: pd.DataFrame, decimals: int) -> pd.DataFrame:
    """Rows in an order that does not depend on the order a run wrote them: by every column, numbers
    rounded (so two equal runs sort alike)."""
    key = df.copy()
    for c in key.columns:
        key[c] = key[c].round(decimals) if pd.api.types.is_float_dtype(key[c]) else key[c].astype(str)
    order = key.sort_values(list(key.columns), kind="stable").index
    return df.loc[order].reset_index(drop=True)


def compare_frame(name: str, a: pd.DataFrame, b: pd.DataFrame, decimals: int) -> list[str]:
    skip = MEASURED | IDENTIFIERS
    cols = [c for c in a.columns if c not in skip]
    if sorted(cols) != sorted(c for c in b.columns if c not in skip):
        return [f"{name}: columns differ: {sorted(set(a.columns) ^ set(b.columns))}"]
    if len(a) != len(b):
        return [f"{name}: {len(a)} vs {len(b)} rows"]
    a, b = _sorted(a[cols], decimals), _sorted(b[cols], decimals)
    bad = []
    for c in cols:
        x, y = a[c], b[c]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xr, yr = np.round(x.to_numpy(float), decimals), np.round(y.to_numpy(float), decimals)
            diff = ~((xr == yr) | (np.isnan(xr) & np.isnan(yr)))
            if diff.any():
                i = int(np.flatnonzero(diff)[0])
                bad.append(
                    f"{name}.{c}: {int(diff.sum())} of {len(x)} differ, first row {i}: {x.iloc[i]} vs {y.iloc[i]}"
                )
        elif not (x.astype(str).to_numpy() == y.astype(str).to_numpy()).all():
            bad.append(f"{name}.{c}: values differ")
    return bad


def compare(before: Path, after: Path, decimals: int) -> tuple[list[str], dict]:
    bad, counts = [], {}
    fa, fb = fingerprints(before), fingerprints(after)
    if fa != fb:
        bad.append(f"fingerprints differ: {fa} vs {fb}")
    counts["fingerprints"] = len(fa)
    for name in FRAMES:
        pa, pb = before / "results" / f"{name}.parquet", after / "results" / f"{name}.parquet"
        if pa.is_file() != pb.is_file():
            bad.append(f"{name}.parquet exists in only one run")
            continue
        if pa.is_file():
            a, b = pd.read_parquet(pa), pd.read_parquet(pb)
            counts[name] = len(a)
            bad += compare_frame(name, a, b, decimals)
    return bad, counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--decimals", type=int, default=4)
    args = ap.parse_args()
    bad, counts = compare(args.before, args.after, args.decimals)
    print("compared rows:", json.dumps(counts))
    for line in bad:
        print("DIFF", line)
    print("equal" if not bad else f"{len(bad)} differences", f"(to {args.decimals} decimals)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
