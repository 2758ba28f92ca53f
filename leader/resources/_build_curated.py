"""Rebuild `curated.json` (the small shipped code table) from the full MIMIC-III ICD-9
dictionaries in ../shared. Run once by a developer; the result ships so that a fresh clone
generates synthetic cohorts without ../shared.

    python -m leader.resources._build_curated /work/shared/data/mimic3demo

Selection is by rule, not by hand: per clinical theme, COMMON codes are those under the theme's
ICD-9 prefixes and RARE codes are other codes whose title mentions the theme's keyword (their only
link to the right drugs is their name).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from leader.data.codes import ATC3_NAMES
from leader.data.themes import RARE_EXCLUDE, THEMES

N_COMMON, N_RARE, N_BG_DIAG, N_BG_PROC = 6, 30, 160, 60


def _dict(root: Path, name: str) -> pd.DataFrame:
    df = pd.read_csv(root / f"{name}.csv.gz", dtype=str)
    df.columns = [c.lower() for c in df.columns]
    return df[["icd9_code", "long_title"]].dropna().drop_duplicates("icd9_code").sort_values("icd9_code")


def build(root: Path) -> dict:
    dx, px = _dict(root, "D_ICD_DIAGNOSES"), _dict(root, "D_ICD_PROCEDURES")
    used_dx: set[str] = set()
    used_px: set[str] = set()
    themes = []
    for t in THEMES:
        pref = tuple(t["diag_prefixes"])
        common = dx[dx.icd9_code.str.startswith(pref)].head(N_COMMON)
        kw = re.compile(t["keyword"], re.I)
        rare = dx[
            ~dx.icd9_code.str.startswith(pref)
            & dx.long_title.str.contains(kw)
            & ~dx.icd9_code.isin(used_dx)
            & ~dx.long_title.str.contains(RARE_EXCLUDE, case=False, regex=True)
        ]
        rare = (
            rare[~rare.icd9_code.isin(common.icd9_code)].sample(min(N_RARE, len(rare)), random_state=0)
            if len(rare)
            else rare
        )
        procs = (
            px[px.icd9_code.str.startswith(tuple(t.get("proc_prefixes", ())))].head(4)
            if t.get("proc_prefixes")
            else px.head(0)
        )
        used_dx |= set(common.icd9_code) | set(rare.icd9_code)
        used_px |= set(procs.icd9_code)
        themes.append(
            {
                "name": t["name"],
                "prevalence": t["prevalence"],
                "chronic": t["chronic"],
                "atc": t["atc"],
                "common_diag": common.values.tolist(),
                "rare_diag": rare.values.tolist(),
                "proc": procs.values.tolist(),
            }
        )
    bg_dx = dx[~dx.icd9_code.isin(used_dx) & dx.icd9_code.str.match(r"^(V|7[89]|[0-9])")].sample(
        N_BG_DIAG, random_state=1
    )
    bg_px = px[~px.icd9_code.isin(used_px)].sample(N_BG_PROC, random_state=2)
    return {
        "source": "MIMIC-III D_ICD_DIAGNOSES / D_ICD_PROCEDURES (ODbL), rows selected by leader/resources/_build_curated.py",  # noqa: E501
        "atc3": ATC3_NAMES,
        "themes": themes,
        "background_diag": bg_dx.values.tolist(),
        "background_proc": bg_px.values.tolist(),
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("curated.json")
    out.write_text(json.dumps(build(Path(sys.argv[1])), indent=0))
    print(out, out.stat().st_size, "bytes")
