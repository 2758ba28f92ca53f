"""Declared tables of MIMIC-III and MIMIC-IV (hosp/ module): the columns each reader needs, their
kinds, the unique keys and the dictionaries that may be Latin-1. One place, read by `schema.load`.
"""

from __future__ import annotations

from leader.data.schema import Col, Table

_SEQ = Col("seq_num", "int", required=False)

MIMIC3 = {
    "admissions": Table(
        "ADMISSIONS",
        (
            Col("subject_id", "int", nullable=False),
            Col("hadm_id", "int", nullable=False),
            Col("admittime", "date", nullable=False),
            Col("admission_type"),
            Col("insurance"),
            Col("ethnicity"),
        ),
        key=("hadm_id",),
    ),
    "patients": Table(
        "PATIENTS",
        (
            Col("subject_id", "int", nullable=False),
            Col("gender", "gender"),
            Col("dob", "date", nullable=False),
        ),
        key=("subject_id",),
    ),
    "diagnoses": Table("DIAGNOSES_ICD", (Col("hadm_id", "int", nullable=False), Col("icd9_code"), _SEQ)),
    "procedures": Table("PROCEDURES_ICD", (Col("hadm_id", "int", nullable=False), Col("icd9_code"), _SEQ)),
    "prescriptions": Table(
        "PRESCRIPTIONS",
        (
            Col("hadm_id", "int", nullable=False),
            Col("ndc"),
            Col("drug"),
            Col("startdate", "date", required=False, on_demand=True),
        ),
    ),
    "d_diagnoses": Table(
        "D_ICD_DIAGNOSES", (Col("icd9_code", nullable=False), Col("long_title")), key=("icd9_code",), latin1=True
    ),
    "d_procedures": Table(
        "D_ICD_PROCEDURES", (Col("icd9_code", nullable=False), Col("long_title")), key=("icd9_code",), latin1=True
    ),
}

MIMIC4 = {
    "admissions": Table(
        "admissions",
        (
            Col("subject_id", "int", nullable=False),
            Col("hadm_id", "int", nullable=False),
            Col("admittime", "date", nullable=False),
            Col("admission_type"),
            Col("insurance"),
            Col("race", required=False),
            Col("ethnicity", required=False),
        ),
        key=("hadm_id",),
    ),
    "patients": Table(
        "patients",
        (
            Col("subject_id", "int", nullable=False),
            Col("gender", "gender"),
            Col("anchor_age", "int", nullable=False),
            Col("anchor_year", "int", nullable=False),
        ),
        key=("subject_id",),
    ),
    "diagnoses": Table(
        "diagnoses_icd",
        (
            Col("hadm_id", "int", nullable=False),
            Col("icd_code"),
            Col("icd_version", "icd_version", nullable=False),
            _SEQ,
        ),
    ),
    "procedures": Table(
        "procedures_icd",
        (
            Col("hadm_id", "int", nullable=False),
            Col("icd_code"),
            Col("icd_version", "icd_version", nullable=False),
            _SEQ,
        ),
    ),
    "prescriptions": Table(
        "prescriptions",
        (
            Col("hadm_id", "int", nullable=False),
            Col("ndc"),
            Col("drug"),
            Col("starttime", "date", required=False, on_demand=True),
        ),
    ),
    "d_diagnoses": Table(
        "d_icd_diagnoses",
        (
            Col("icd_code", nullable=False),
            Col("icd_version", "icd_version", nullable=False),
            Col("long_title"),
        ),
        key=("icd_code", "icd_version"),
        latin1=True,
    ),
    "d_procedures": Table(
        "d_icd_procedures",
        (
            Col("icd_code", nullable=False),
            Col("icd_version", "icd_version", nullable=False),
            Col("long_title"),
        ),
        key=("icd_code", "icd_version"),
        latin1=True,
    ),
}
