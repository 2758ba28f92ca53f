"""What are the project's own student design changes worth? The fidelity study (same cohort,
teacher, sweep, seeds as scripts/bench_fidelity.py) with two more grid variants: the student as the
paper writes it (`leader.config.paper.design_overrides('paper')`: average set pooling, the authors'
mean visit readout without positions, Eq. 9 on the pre-activation to the raw teacher state, Eq.
11-12 with tau = 1), with and without KD, on the sweep's best config. Paired patient-bootstrap tests
(leader.evaluation) compare each with the package's default (full, and no KD). Writes
reports/bench/paper_preset.json (flat dict).

Usage: python scripts/bench_paper_preset.py [--patients 1000] [--seeds 3] [--storage DIR]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fidelity import STUDY  # noqa: E402  (the same study: one source of its configuration)

from leader.config.paper import design_overrides  # noqa: E402

PAIRS = [("full", "paper_design"), ("no_kd", "paper_design_no_kd")]


def study(patients: int, seeds: int, storage: str) -> dict:
    s = json.loads(json.dumps(STUDY))
    s["name"] = "paper_preset"
    s["datasets"][0]["prepare"]["n_patients"] = patients
    s["seeds"], s["storage_path"] = list(range(seeds)), storage
    design = design_overrides("paper")
    s["ablations"] = {
        "variants": ["full", "no_kd", "paper_design", "paper_design_no_kd"],
        "custom": {"paper_design": design, "paper_design_no_kd": {**design, "kd": "none"}},
    }
    return s


def paired(study_dir: Path) -> pd.DataFrame:
    from leader.data.cache import PrepareOptions, prepare
    from leader.evaluation import index_frame, paired_comparisons

    spec = yaml.safe_load((study_dir / "spec.yaml").read_text())
    ds = prepare("synthetic", None, PrepareOptions(**spec["datasets"][0].get("prepare", {})))
    per = pd.concat([pd.read_parquet(f) for f in sorted((study_dir / "persample").glob("*.parquet"))])
    sel = lambda v: {"model": "LEADER(S)", "variant": v, "stage": "ablation"}  # noqa: E731
    return paired_comparisons(per, index_frame(ds), [(sel(a), sel(b), f"{a}_vs_{b}") for a, b in PAIRS])


def summarize(study_dir: Path) -> dict:
    m = pd.read_parquet(study_dir / "results" / "metrics.parquet")
    m = m[(m["stage"] == "ablation") & (m["metric"] == "prauc")]
    out = {}
    for (v, g), d in m.groupby(["variant", "group"]):
        out[f"test_prauc_{v}_{g}"] = round(float(d["mean"].mean()), 4)
    for r in paired(study_dir).itertuples():
        key = f"{r.comparison}_{r.group}"
        out[f"diff_{key}"] = round(float(r.diff), 4)
        out[f"p_{key}"] = float(r.p_bootstrap)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--storage", default="/tmp/leader_bench_paper_preset")
    ap.add_argument("--out", default="reports/bench/paper_preset.json")
    a = ap.parse_args()
    path = Path(a.storage) / "paper_preset.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(study(a.patients, a.seeds, a.storage), sort_keys=False))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "leader.cli.main", "study", "run", str(path), "--no-dashboard"], check=True)
    out = {
        "command": f"python scripts/bench_paper_preset.py --patients {a.patients} --seeds {a.seeds} "
        f"--storage {a.storage}",
        "patients": a.patients,
        "seeds": a.seeds,
        "wall_s": round(time.perf_counter() - t0, 1),
        **{f"design_{k}": str(v) for k, v in design_overrides("paper").items()},
        **summarize(Path(a.storage) / "paper_preset"),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
