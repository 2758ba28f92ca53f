"""Synthetic cohort generator writing MIMIC-III-format CSVs (read back by `read_mimic3`).

Latent structure: each patient carries chronic clinical themes (diabetes, hypertension, ...) and
each visit adds acute ones. A theme emits real ICD-9 codes and procedures and, with probability
`structure_strength`, the drug classes that treat it. With probability `rare_share` a theme is
expressed only through a RARE code (few occurrences each) whose only link to the right drugs is
its title - a student sees too few examples to learn it, a teacher reading names does not need
them. Everything is seeded; nothing here needs ../shared (codes come from the shipped table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from leader.data.codes import ATC3_DRUGS, ATC3_NAMES, load_curated
from leader.data.themes import BACKGROUND_ATC


class SyntheticConfig(BaseModel):
    n_patients: int = Field(6000, ge=10, description="Number of patients (~2.4 visits each by default).")
    single_visit_share: float = Field(0.55, ge=0.0, le=1.0, description="Share of patients with exactly one admission.")
    mean_extra_visits: float = Field(
        2.1, ge=0.0, description="Mean number of visits beyond 2 for multi-visit patients (geometric)."
    )
    structure_strength: float = Field(
        0.85,
        ge=0.0,
        le=1.0,
        description="P(a theme's drug class is prescribed when the theme is active); 0 = no signal.",
    )
    rare_share: float = Field(
        0.1, ge=0.0, le=1.0, description="P(an active theme shows only through a rare, name-linked code)."
    )
    noise_drugs: float = Field(1.0, ge=0.0, description="Mean number of random (unlinked) drug classes per visit.")
    background_diags: float = Field(3.0, ge=0.0, description="Mean number of unlinked background diagnoses per visit.")
    seed: int = Field(0, description="Generator seed.")


def _ndc(cls_idx: int, j: int) -> str:
    """Fake but well-formed 11-digit NDC, unique per (class, product)."""
    return f"9{cls_idx:04d}{j:04d}01"


@dataclass
class _World:
    """The curated clinical themes and code tables every patient is drawn from."""

    themes: list
    prev: np.ndarray  # (themes,) prevalence
    chronic: np.ndarray  # (themes,) bool
    bg_dx: list[str]
    bg_px: list[str]
    atc_all: list[str]
    atc_idx: dict[str, int]
    curated: dict

    @classmethod
    def load(cls) -> _World:
        cur = load_curated()
        themes = cur["themes"]
        atc_all = sorted(set(ATC3_NAMES))
        return cls(
            themes=themes,
            prev=np.array([t["prevalence"] for t in themes]),
            chronic=np.array([t["chronic"] for t in themes]),
            bg_dx=[c for c, _ in cur["background_diag"]],
            bg_px=[c for c, _ in cur["background_proc"]],
            atc_all=atc_all,
            atc_idx={a: i for i, a in enumerate(atc_all)},
            curated=cur,
        )


@dataclass
class _Rows:
    """The rows of the five event tables, in MIMIC-III column order."""

    adm: list = field(default_factory=list)
    pat: list = field(default_factory=list)
    dx: list = field(default_factory=list)
    px: list = field(default_factory=list)
    rx: list = field(default_factory=list)
    hadm: int = 100000


def _patients(rng: np.random.Generator, cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    """Per-patient draws: visit count, gender, age at the first visit, insurance, ethnicity."""
    n = cfg.n_patients
    single = rng.random(n) < cfg.single_visit_share
    p_geo = 1.0 / (1.0 + cfg.mean_extra_visits)
    n_vis = np.where(single, 1, 2 + rng.geometric(p_geo, n) - 1)
    gender = rng.choice(["F", "M"], n)
    age0 = np.clip(rng.normal(63, 16, n), 18, 95).astype(int)
    insurance = rng.choice(
        ["Medicare", "Private", "Medicaid", "Government", "Self Pay"], n, p=[0.5, 0.32, 0.1, 0.05, 0.03]
    )
    ethnicity = rng.choice(
        ["WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC OR LATINO", "ASIAN", "UNKNOWN/NOT SPECIFIED"],
        n,
        p=[0.7, 0.1, 0.05, 0.05, 0.1],
    )
    return {"n_vis": n_vis, "gender": gender, "age0": age0, "insurance": insurance, "ethnicity": ethnicity}


def _visit_codes(rng: np.random.Generator, cfg: SyntheticConfig, w: _World, my_chronic: np.ndarray):
    """(diagnoses, procedures, drug classes) of one visit: the patient's chronic themes plus acute
    ones, each theme's codes and (with probability structure_strength) drugs, then background noise."""
    n_th = len(w.themes)
    acute = np.flatnonzero(~w.chronic & (rng.random(n_th) < w.prev * 0.6))
    active = list(dict.fromkeys([*my_chronic.tolist(), *acute.tolist()]))
    if not active:
        active = [int(rng.choice(n_th, p=w.prev / w.prev.sum()))]
    dxs, pxs, meds = [], [], []
    for ti in active:
        th = w.themes[ti]
        rare = th["rare_diag"]
        if rare and rng.random() < cfg.rare_share:
            dxs.append(rare[int(rng.integers(len(rare)))][0])
        else:
            com = th["common_diag"]
            k = min(len(com), 1 + int(rng.random() < 0.3))
            dxs.extend(com[i][0] for i in rng.choice(len(com), k, replace=False))
        if th["proc"] and rng.random() < 0.5:
            pxs.append(th["proc"][int(rng.integers(len(th["proc"])))][0])
        for a in th["atc"]:
            if rng.random() < cfg.structure_strength:
                meds.append(a)
    dxs.extend(w.bg_dx[i] for i in rng.choice(len(w.bg_dx), rng.poisson(cfg.background_diags), replace=True))
    if not pxs or rng.random() < 0.5:
        pxs.extend(w.bg_px[i] for i in rng.choice(len(w.bg_px), 1 + rng.poisson(0.8), replace=True))
    meds.extend(a for a in BACKGROUND_ATC if rng.random() < 0.35)
    meds.extend(w.atc_all[i] for i in rng.choice(len(w.atc_all), rng.poisson(cfg.noise_drugs), replace=True))
    return dxs, pxs, meds


def _add_patient(rng: np.random.Generator, cfg: SyntheticConfig, w: _World, draws: dict, p: int, rows: _Rows) -> None:
    """All admissions of patient `p`, with their coded events, appended to `rows`."""
    sid = 10000 + p
    age0 = draws["age0"][p]
    dob = -int(age0 * 365.25 + rng.integers(0, 365)) * 1440  # minutes relative to the base date
    rows.pat.append((sid, draws["gender"][p], dob))
    age_factor = 0.5 + age0 / 80.0  # older patients carry more chronic disease
    pc = np.clip(w.prev * age_factor * 0.8, 0, 0.9)
    my_chronic = np.flatnonzero(w.chronic & (rng.random(len(w.themes)) < pc))
    t = int(rng.integers(0, 3650)) * 1440  # minutes after the base date (plain ints: Timestamps are slow)
    for _ in range(int(draws["n_vis"][p])):
        rows.hadm += 1
        hadm = rows.hadm
        t = t + int(rng.integers(20, 400)) * 1440 + int(rng.integers(0, 1440))
        atype = rng.choice(["EMERGENCY", "ELECTIVE", "URGENT"], p=[0.75, 0.18, 0.07])
        rows.adm.append((sid, hadm, t, atype, draws["insurance"][p], draws["ethnicity"][p]))
        dxs, pxs, meds = _visit_codes(rng, cfg, w, my_chronic)
        rows.dx.extend((sid, hadm, s, c) for s, c in enumerate(dict.fromkeys(dxs), 1))
        rows.px.extend((sid, hadm, s, c) for s, c in enumerate(dict.fromkeys(pxs), 1))
        for a in dict.fromkeys(meds):
            drugs = ATC3_DRUGS.get(a, [ATC3_NAMES[a]])
            j = int(rng.integers(len(drugs)))
            # most start on day 0; some later, so the first-24h filter has something to do
            day = 0 if rng.random() < 0.7 else int(rng.integers(1, 6))
            rows.rx.append((sid, hadm, (t // 1440 + day) * 1440, drugs[j], _ndc(w.atc_idx[a], j)))


def _write_tables(out: Path, rows: _Rows, w: _World) -> None:
    """The MIMIC-III CSVs (times as in MIMIC: "%Y-%m-%d %H:%M:%S") and the code dictionaries."""
    base = pd.Timestamp("2130-01-01")
    to_time = lambda m: base + pd.to_timedelta(np.asarray(m, dtype=np.int64), unit="min")  # noqa: E731
    times = {"date_format": "%Y-%m-%d %H:%M:%S"}
    adm_df = pd.DataFrame(
        rows.adm, columns=["SUBJECT_ID", "HADM_ID", "ADMITTIME", "ADMISSION_TYPE", "INSURANCE", "ETHNICITY"]
    )
    adm_df["ADMITTIME"] = to_time(adm_df["ADMITTIME"])
    pat_df = pd.DataFrame(rows.pat, columns=["SUBJECT_ID", "GENDER", "DOB"])
    pat_df["DOB"] = to_time(pat_df["DOB"]).normalize()
    rx_df = pd.DataFrame(rows.rx, columns=["SUBJECT_ID", "HADM_ID", "STARTDATE", "DRUG", "NDC"])
    rx_df["STARTDATE"] = to_time(rx_df["STARTDATE"])
    adm_df.to_csv(out / "ADMISSIONS.csv", index=False, **times)
    pat_df.to_csv(out / "PATIENTS.csv", index=False, **times)
    icd = ["SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"]
    pd.DataFrame(rows.dx, columns=icd).to_csv(out / "DIAGNOSES_ICD.csv", index=False)
    pd.DataFrame(rows.px, columns=icd).to_csv(out / "PROCEDURES_ICD.csv", index=False)
    rx_df.to_csv(out / "PRESCRIPTIONS.csv", index=False, **times)
    cur = w.curated
    dx_names = {c: t for th in w.themes for c, t in th["common_diag"] + th["rare_diag"]} | dict(cur["background_diag"])
    px_names = {c: t for th in w.themes for c, t in th["proc"]} | dict(cur["background_proc"])
    for fname, d in (("D_ICD_DIAGNOSES", dx_names), ("D_ICD_PROCEDURES", px_names)):
        titles = pd.DataFrame(
            {"ICD9_CODE": list(d), "SHORT_TITLE": [v[:24] for v in d.values()], "LONG_TITLE": list(d.values())}
        )
        titles.to_csv(out / f"{fname}.csv", index=False)


def generate(out_dir: str | Path, cfg: SyntheticConfig | None = None) -> Path:
    """Write ADMISSIONS/PATIENTS/DIAGNOSES_ICD/PROCEDURES_ICD/PRESCRIPTIONS/D_ICD_* .csv and
    atc4_to_ndc.json into out_dir; returns out_dir."""
    cfg = cfg or SyntheticConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    w = _World.load()
    draws = _patients(rng, cfg)
    rows = _Rows()
    for p in range(cfg.n_patients):
        _add_patient(rng, cfg, w, draws, p, rows)
    _write_tables(out, rows, w)
    mapping = {a: [_ndc(w.atc_idx[a], j) for j in range(len(ATC3_DRUGS.get(a, [a])))] for a in w.atc_all}
    (out / "atc4_to_ndc.json").write_text(json.dumps(mapping))
    (out / "synthetic_config.json").write_text(cfg.model_dump_json(indent=1))
    return out
