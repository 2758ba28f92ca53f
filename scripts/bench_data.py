"""Data-layer benchmark -> reports/bench/data.json (flat dict of named figures, one run).

Prepare time of the default synthetic cohort (target < 60 s), its reload time from the cache
(target < 2 s), the demo's prepare/reload, and sizes. Uses a private temporary cache so the
numbers are cold-start numbers.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _dir_mb(p: Path) -> float:
    return round(sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20, 3)


def main(out: str = "reports/bench/data.json") -> dict:
    os.environ["LEADER_CACHE"] = tempfile.mkdtemp(prefix="leader_bench_data_")
    from leader.data.cache import PrepareOptions, dataset_dir, prepare
    from leader.data.stats import dataset_stats
    from leader.paths import find_demo_root

    res: dict = {}
    opts = PrepareOptions()
    t = time.perf_counter()
    ds = prepare("synthetic", opts=opts)
    res["synthetic_prepare_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    ds2 = prepare("synthetic", opts=opts)
    res["synthetic_reload_s"] = round(time.perf_counter() - t, 3)
    assert ds2.fingerprint == ds.fingerprint
    st = dataset_stats(ds)
    res.update(
        {
            "synthetic_patients": st["patients"],
            "synthetic_visits": st["visits"],
            "synthetic_single_visit_share": st["single_visit_share"],
            "synthetic_visits_per_patient": st["visits_per_patient"],
            "synthetic_n_diag": st["n_diag"],
            "synthetic_n_proc": st["n_proc"],
            "synthetic_n_med": st["n_med"],
            "synthetic_avg_med_per_visit": st["avg_med_per_visit"],
            "synthetic_cache_mb": _dir_mb(dataset_dir("synthetic", None, opts)),
            "synthetic_prepare_target_s": 60,
            "synthetic_reload_target_s": 2,
            "synthetic_prepare_within_target": res["synthetic_prepare_s"] < 60,
            "synthetic_reload_within_target": res["synthetic_reload_s"] < 2,
            "synthetic_prepare_over_reload": round(
                res["synthetic_prepare_s"] / max(res["synthetic_reload_s"], 1e-6), 1
            ),
        }
    )
    if find_demo_root() is not None:
        t = time.perf_counter()
        demo = prepare("demo")
        res["demo_prepare_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        prepare("demo")
        res["demo_reload_s"] = round(time.perf_counter() - t, 3)
        res["demo_visits"] = len(demo.visits)
        res["demo_patients"] = len(demo.patients)
    res["cpu_count"] = os.cpu_count()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main(*sys.argv[1:])
