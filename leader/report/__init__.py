"""Reports generated from study results: tables, seaborn figures, md/html. Only aggregates."""

from __future__ import annotations


def build_report(study_dir, out_dir=None):
    """See leader.report.build.build_report (imported lazily: matplotlib is slow to load)."""
    from leader.report.build import build_report as _b

    return _b(study_dir, out_dir)


__all__ = ["build_report"]
