"""Curated clinical dictionary: real ATC level-3 class names and representative drug names, and
the loaders of the shipped curated ICD-9 table (`curated.json`, built from the clinical themes in
leader.data.themes by leader/resources/_build_curated.py), so nothing here needs ../shared at run
time.
"""

from __future__ import annotations

import json
from functools import lru_cache

from leader.errors import DataError
from leader.paths import resources_dir

# WHO ATC level-3 names (subset covering the classes the themes use and common inpatient drugs).
ATC3_NAMES: dict[str, str] = {
    "A02B": "Drugs for peptic ulcer and gastro-oesophageal reflux disease",
    "A03F": "Propulsives",
    "A04A": "Antiemetics and antinauseants",
    "A06A": "Drugs for constipation",
    "A07D": "Antipropulsives",
    "A10A": "Insulins and analogues",
    "A10B": "Blood glucose lowering drugs, excluding insulins",
    "A11D": "Vitamin B1, plain and in combination with vitamin B6 and B12",
    "A12A": "Calcium",
    "A12B": "Potassium",
    "A12C": "Other mineral supplements",
    "B01A": "Antithrombotic agents",
    "B03A": "Iron preparations",
    "B03B": "Vitamin B12 and folic acid",
    "B03X": "Other antianemic preparations",
    "B05C": "Irrigating solutions",
    "B05X": "I.V. solution additives",
    "C01A": "Cardiac glycosides",
    "C01B": "Antiarrhythmics, class I and III",
    "C01C": "Cardiac stimulants excluding cardiac glycosides",
    "C01D": "Vasodilators used in cardiac diseases",
    "C02A": "Antiadrenergic agents, centrally acting",
    "C03A": "Low-ceiling diuretics, thiazides",
    "C03C": "High-ceiling diuretics",
    "C03D": "Potassium-sparing agents",
    "C07A": "Beta blocking agents",
    "C08C": "Selective calcium channel blockers with mainly vascular effects",
    "C08D": "Selective calcium channel blockers with direct cardiac effects",
    "C09A": "ACE inhibitors, plain",
    "C09C": "Angiotensin II receptor blockers (ARBs), plain",
    "C10A": "Lipid modifying agents, plain",
    "H02A": "Corticosteroids for systemic use, plain",
    "H03A": "Thyroid preparations",
    "J01C": "Beta-lactam antibacterials, penicillins",
    "J01D": "Other beta-lactam antibacterials",
    "J01M": "Quinolone antibacterials",
    "J01X": "Other antibacterials",
    "J02A": "Antimycotics for systemic use",
    "J05A": "Direct acting antivirals",
    "L01X": "Other antineoplastic agents",
    "L04A": "Immunosuppressants",
    "M01A": "Anti-inflammatory and antirheumatic products, non-steroids",
    "M04A": "Antigout preparations",
    "N02A": "Opioids",
    "N02B": "Other analgesics and antipyretics",
    "N03A": "Antiepileptics",
    "N04B": "Dopaminergic agents",
    "N05A": "Antipsychotics",
    "N05B": "Anxiolytics",
    "N05C": "Hypnotics and sedatives",
    "N06A": "Antidepressants",
    "N07B": "Drugs used in addictive disorders",
    "R03A": "Adrenergics, inhalants",
    "R03D": "Other systemic drugs for obstructive airway diseases",
    "R05C": "Expectorants, excl. combinations with cough suppressants",
    "R06A": "Antihistamines for systemic use",
    "S01E": "Antiglaucoma preparations and miotics",
}

# Representative generic names per class: the synthetic PRESCRIPTIONS.DRUG column.
ATC3_DRUGS: dict[str, list[str]] = {
    "A02B": ["Pantoprazole", "Famotidine", "Omeprazole"],
    "A03F": ["Metoclopramide"],
    "A04A": ["Ondansetron"],
    "A06A": ["Docusate Sodium", "Senna", "Bisacodyl"],
    "A07D": ["Loperamide"],
    "A10A": ["Insulin", "Insulin Glargine"],
    "A10B": ["Metformin", "Glipizide"],
    "A11D": ["Thiamine"],
    "A12A": ["Calcium Gluconate"],
    "A12B": ["Potassium Chloride"],
    "A12C": ["Magnesium Sulfate"],
    "B01A": ["Heparin", "Warfarin", "Aspirin", "Clopidogrel"],
    "B03A": ["Ferrous Sulfate"],
    "B03B": ["Folic Acid", "Cyanocobalamin"],
    "B03X": ["Epoetin Alfa"],
    "B05C": ["Sodium Chloride 0.9% Flush"],
    "B05X": ["Sodium Bicarbonate"],
    "C01A": ["Digoxin"],
    "C01B": ["Amiodarone"],
    "C01C": ["Norepinephrine", "Dopamine"],
    "C01D": ["Nitroglycerin", "Isosorbide Mononitrate"],
    "C02A": ["Clonidine"],
    "C03A": ["Hydrochlorothiazide"],
    "C03C": ["Furosemide"],
    "C03D": ["Spironolactone"],
    "C07A": ["Metoprolol", "Carvedilol"],
    "C08C": ["Amlodipine"],
    "C08D": ["Diltiazem"],
    "C09A": ["Lisinopril", "Captopril"],
    "C09C": ["Losartan"],
    "C10A": ["Atorvastatin", "Simvastatin"],
    "H02A": ["Prednisone", "Methylprednisolone"],
    "H03A": ["Levothyroxine Sodium"],
    "J01C": ["Piperacillin-Tazobactam", "Ampicillin"],
    "J01D": ["Ceftriaxone", "Cefazolin", "Cefepime"],
    "J01M": ["Ciprofloxacin", "Levofloxacin"],
    "J01X": ["Vancomycin", "Metronidazole"],
    "J02A": ["Fluconazole"],
    "J05A": ["Acyclovir", "Tenofovir"],
    "L01X": ["Rituximab"],
    "L04A": ["Tacrolimus"],
    "M01A": ["Ibuprofen", "Ketorolac"],
    "M04A": ["Allopurinol", "Colchicine"],
    "N02A": ["Morphine Sulfate", "Oxycodone", "Fentanyl Citrate"],
    "N02B": ["Acetaminophen"],
    "N03A": ["Levetiracetam", "Phenytoin"],
    "N04B": ["Carbidopa-Levodopa"],
    "N05A": ["Haloperidol", "Quetiapine"],
    "N05B": ["Lorazepam"],
    "N05C": ["Zolpidem Tartrate"],
    "N06A": ["Sertraline", "Citalopram"],
    "N07B": ["Nicotine Patch"],
    "R03A": ["Albuterol", "Ipratropium Bromide"],
    "R03D": ["Montelukast"],
    "R05C": ["Guaifenesin"],
    "R06A": ["Diphenhydramine"],
    "S01E": ["Timolol Maleate"],
}


@lru_cache(maxsize=1)
def load_curated() -> dict:
    """The shipped curated table (ICD-9 rows per theme, background codes, ATC-3 names)."""
    path = resources_dir() / "curated.json"
    if not path.exists():
        raise DataError("curated code table missing; rebuild with leader.resources._build_curated", file=str(path))
    return json.loads(path.read_text())


def atc3_name(code: str) -> str | None:
    return ATC3_NAMES.get(code)


def icd9_titles() -> dict[str, dict[str, str]]:
    """code -> title for every curated ICD-9 diagnosis/procedure (fallback names for readers)."""
    cur = load_curated()
    diag = {c: t for th in cur["themes"] for c, t in th["common_diag"] + th["rare_diag"]}
    diag.update(dict(cur["background_diag"]))
    proc = {c: t for th in cur["themes"] for c, t in th["proc"]}
    proc.update(dict(cur["background_proc"]))
    return {"diag": diag, "proc": proc}
