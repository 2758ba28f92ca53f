"""The issue's two reports, replayed on copies of the MIMIC-III demo with the corruptions of
scripts/bench_bad_inputs.py (skips without the demo; the small-input versions of every class
live in test_data_validation.py and run everywhere)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from leader.data.assemble import assemble
from leader.data.mimic import read_mimic3, read_mimic4
from leader.data.stats import cohort_signature
from leader.errors import DataError
from leader.paths import repo_root


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_bad_inputs", repo_root() / "scripts" / "bench_bad_inputs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def clean_sig(demo_root):
    v, names, prof, w = read_mimic3(demo_root)
    return cohort_signature(assemble("d", v, names, prof, warnings=w))


def _sig(root: Path, reader=read_mimic3, code_key=None) -> str:
    v, names, prof, w = reader(root)
    return cohort_signature(assemble("d", v, names, prof, warnings=w), code_key=code_key)


def test_upper_case_crlf_copy_is_the_same_cohort(tmp_path, demo_root, bench, clean_sig):
    root = bench.clean_copy(demo_root, tmp_path / "u")
    bench._headers(root, str.upper)
    bench.each_table(root, lambda b: b.replace(b"\n", b"\r\n"))
    assert _sig(root) == clean_sig


def test_two_digit_years_fail_instead_of_unknown_ages(tmp_path, demo_root, bench):
    root = bench.clean_copy(demo_root, tmp_path / "y")
    bench._two_digit(root)
    bench._headers(root, str.upper)
    with pytest.raises(DataError) as e:
        read_mimic3(root)
    msg = str(e.value)
    assert "ADMISSIONS.csv.gz" in msg and "'admittime'" in msg and "line 2" in msg and "two-digit year" in msg


def test_stray_quote_names_file_and_line(tmp_path, demo_root, bench):
    root = bench.clean_copy(demo_root, tmp_path / "q")
    bench._line_edit("PRESCRIPTIONS", 500, bench._stray_quote)(root)
    with pytest.raises(DataError) as e:
        read_mimic3(root)
    assert "PRESCRIPTIONS.csv.gz" in str(e.value) and "line 501" in str(e.value)


def test_mimic4_shaped_demo_reads_the_same_cohort(tmp_path, demo_root, bench, clean_sig):
    root = bench.clean_copy(demo_root, tmp_path / "m4")
    bench._mimic4(root)
    assert _sig(root, read_mimic4, code_key=lambda c: c.removeprefix("9_")) == clean_sig
