"""Curated clinical dictionary: real ATC level-3 class names, and clinical THEMES that tie real
ICD-9 diagnoses/procedures to the drug classes that treat them.

The themes drive the synthetic generator's latent structure; the shipped `curated.json` holds the
ICD-9 rows selected for each theme (see leader/resources/_build_curated.py), so nothing here needs
../shared at run time.
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

# Clinical themes: ICD-9 prefixes of the COMMON codes, a keyword whose presence in a title marks
# RARE codes of the same meaning, linked procedure prefixes, and the drug classes that treat it.
THEMES: list[dict] = [
    dict(
        name="diabetes",
        diag_prefixes=["250"],
        keyword=r"diabet",
        proc_prefixes=[],
        atc=["A10A", "A10B"],
        prevalence=0.25,
        chronic=True,
    ),
    dict(
        name="hypertension",
        diag_prefixes=["401", "402", "403"],
        keyword=r"(?<!pulmonary )hypertens",
        proc_prefixes=[],
        atc=["C07A", "C09A", "C08C", "C03A"],
        prevalence=0.45,
        chronic=True,
    ),
    dict(
        name="heart failure",
        diag_prefixes=["428"],
        keyword=r"heart failure",
        proc_prefixes=["8872"],
        atc=["C03C", "C01A", "C03D"],
        prevalence=0.18,
        chronic=True,
    ),
    dict(
        name="atrial fibrillation",
        diag_prefixes=["4273"],
        keyword=r"fibrillation|flutter",
        proc_prefixes=["996"],
        atc=["B01A", "C01B", "C08D"],
        prevalence=0.15,
        chronic=True,
    ),
    dict(
        name="coronary disease",
        diag_prefixes=["410", "414"],
        keyword=r"coronary|myocardial infarction",
        proc_prefixes=["0066", "3615", "8856"],
        atc=["B01A", "C10A", "C01D", "C07A"],
        prevalence=0.2,
        chronic=True,
    ),
    dict(
        name="hyperlipidemia",
        diag_prefixes=["272"],
        keyword=r"hyperlipid|hypercholester|lipoprotein|glycerid",
        proc_prefixes=[],
        atc=["C10A"],
        prevalence=0.2,
        chronic=True,
    ),
    dict(
        name="pneumonia",
        diag_prefixes=["481", "482", "486"],
        keyword=r"pneumonia",
        proc_prefixes=["3324"],
        atc=["J01D", "J01M", "R05C"],
        prevalence=0.12,
        chronic=False,
    ),
    dict(
        name="sepsis",
        diag_prefixes=["038", "9959"],
        keyword=r"(?<!a)septic|sepsis|bacteremia",
        proc_prefixes=["3893"],
        atc=["J01X", "J01C", "C01C"],
        prevalence=0.1,
        chronic=False,
    ),
    dict(
        name="obstructive lung disease",
        diag_prefixes=["491", "493", "496"],
        keyword=r"asthma|bronchitis|emphysema",
        proc_prefixes=["9390"],
        atc=["R03A", "H02A", "R03D"],
        prevalence=0.1,
        chronic=True,
    ),
    dict(
        name="depression",
        diag_prefixes=["311", "2962"],
        keyword=r"depress",
        proc_prefixes=[],
        atc=["N06A"],
        prevalence=0.1,
        chronic=True,
    ),
    dict(
        name="epilepsy",
        diag_prefixes=["345", "7803"],
        keyword=r"epilep|convuls|seizure",
        proc_prefixes=["8914"],
        atc=["N03A"],
        prevalence=0.06,
        chronic=True,
    ),
    dict(
        name="hip fracture and pain",
        diag_prefixes=["820"],
        keyword=r"fracture of neck of femur|fracture of femur",
        proc_prefixes=["7915", "8151"],
        atc=["N02A", "M01A"],
        prevalence=0.05,
        chronic=False,
    ),
    dict(
        name="peptic ulcer and reflux",
        diag_prefixes=["5301", "531", "532"],
        keyword=r"ulcer of (?:stomach|duodenum)|esophagitis|gastritis|reflux",
        proc_prefixes=["4513"],
        atc=["A02B"],
        prevalence=0.1,
        chronic=False,
    ),
    dict(
        name="hypothyroidism",
        diag_prefixes=["244"],
        keyword=r"hypothyroid|myxedema|thyroiditis",
        proc_prefixes=[],
        atc=["H03A"],
        prevalence=0.07,
        chronic=True,
    ),
    dict(
        name="kidney failure",
        diag_prefixes=["584", "585"],
        keyword=r"renal failure|kidney disease",
        proc_prefixes=["3995"],
        atc=["B03X", "A12A", "B05X"],
        prevalence=0.12,
        chronic=True,
    ),
    dict(
        name="anemia",
        diag_prefixes=["280", "285"],
        keyword=r"iron deficiency|anemia",
        proc_prefixes=["9904"],
        atc=["B03A", "B03B"],
        prevalence=0.1,
        chronic=False,
    ),
    dict(
        name="anxiety",
        diag_prefixes=["3000"],
        keyword=r"anxiety",
        proc_prefixes=[],
        atc=["N05B"],
        prevalence=0.06,
        chronic=True,
    ),
    dict(
        name="venous thromboembolism",
        diag_prefixes=["4151", "4534"],
        keyword=r"venous (?:embolism|thrombosis)|pulmonary embol|phlebitis",
        proc_prefixes=["387"],
        atc=["B01A"],
        prevalence=0.05,
        chronic=False,
    ),
    dict(
        name="alcohol use",
        diag_prefixes=["303", "291"],
        keyword=r"alcohol",
        proc_prefixes=["9462"],
        atc=["A11D", "N05B", "B03B"],
        prevalence=0.06,
        chronic=True,
    ),
    dict(
        name="gout",
        diag_prefixes=["274"],
        keyword=r"gout",
        proc_prefixes=[],
        atc=["M04A"],
        prevalence=0.04,
        chronic=True,
    ),
    dict(
        name="parkinsonism",
        diag_prefixes=["332"],
        keyword=r"parkinson",
        proc_prefixes=[],
        atc=["N04B"],
        prevalence=0.03,
        chronic=True,
    ),
    dict(
        name="hiv",
        diag_prefixes=["042"],
        keyword=r"immunodeficiency virus|HIV",
        proc_prefixes=[],
        atc=["J05A"],
        prevalence=0.02,
        chronic=True,
    ),
    dict(
        name="fungal infection",
        diag_prefixes=["112"],
        keyword=r"candid|aspergill|cryptococc|fungal infection",
        proc_prefixes=[],
        atc=["J02A"],
        prevalence=0.04,
        chronic=False,
    ),
    dict(
        name="psychosis and delirium",
        diag_prefixes=["295", "2930"],
        keyword=r"schizo|psychosis|psychoses|delirium",
        proc_prefixes=[],
        atc=["N05A"],
        prevalence=0.05,
        chronic=True,
    ),
    dict(
        name="hypokalemia and electrolytes",
        diag_prefixes=["2768", "2762"],
        keyword=r"potassium|electrolyte",
        proc_prefixes=[],
        atc=["A12B", "A12C"],
        prevalence=0.12,
        chronic=False,
    ),
    dict(
        name="nausea and constipation",
        diag_prefixes=["5640", "7870"],
        keyword=r"constipation|vomiting",
        proc_prefixes=[],
        atc=["A06A", "A04A"],
        prevalence=0.08,
        chronic=False,
    ),
]

# Titles never used as rare theme codes: poisonings, screenings, obstetric/neonatal variants and
# histories mention a disease without meaning the patient is treated for it.
RARE_EXCLUDE = r"poison|screening|adverse|toxic|counsel|history|family|mother|newborn|fetus|fetal|complicating|pregnan|puerper|childbirth|postpartum|antepartum|delivered|neonat|abuse|late effect|personal|observation|abortion|neoplasm|tubercul|without mention of psychos"  # noqa: E501

# Drugs most inpatients get regardless of diagnosis (realistic background; no signal).
BACKGROUND_ATC = ["A06A", "N02B", "B05C", "A02B", "B01A", "A12B", "N02A"]


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
