"""The report's figures never place text over text or a legend over data: checked on the
rendered figure with matplotlib's own renderer (the window extents of every drawn text, legend,
bar and marker), for the headline (groups), efficiency, ablation and sensitivity figures.

Inputs: the shared synthetic study (tests/report_study.py, two backbones, a multi-visit-only
baseline) and the efficiency numbers of the issue that found the overlaps (a 2-dataset, 2-batch
quickstart: '33 ms' was printed over '32.8x faster')."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from report_study import make_study_dir

from leader.report import figures as F


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    d = make_study_dir(tmp_path_factory.mktemp("figs"), n_samples=80, extra_baselines=("LogReg", "MICRON"), probe=True)
    return pd.read_parquet(d / "results" / "metrics.parquet")


def _quickstart_efficiency() -> pd.DataFrame:
    rows = []
    for ds, (ts, ss) in {"demo": ((20.9, 33.6), (0.79, 1.02)), "synthetic": ((22.1, 52.1), (0.82, 0.0738))}.items():
        for bs, t, s in zip((1, 64), ts, ss, strict=True):
            rows += [
                dict(dataset=ds, backbone="minilm", model="LEADER(T)", latency_ms_per_patient=t, peak_mem_mb=279.5,
                     batch_size=bs, device="cpu"),
                dict(dataset=ds, backbone="minilm", model="LEADER(S)", latency_ms_per_patient=s, peak_mem_mb=4.6,
                     batch_size=bs, device="cpu"),
            ]  # fmt: skip
    return pd.DataFrame(rows)


def _in_view(axis, lim) -> list:
    lo, hi = sorted(lim)
    ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    return [t for t in ticks if lo - 1e-9 <= t.get_loc() <= hi + 1e-9 and t.label1.get_visible()]


def _texts(fig) -> list:
    """Every text the renderer drew: tick labels in view, titles, axis labels, annotations, legends."""
    out = [fig._suptitle] if fig._suptitle is not None else []
    out += list(fig.texts)
    for ax in fig.axes:
        out += [t.label1 for t in _in_view(ax.xaxis, ax.get_xlim()) + _in_view(ax.yaxis, ax.get_ylim())]
        out += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
    for lg in _legends(fig):
        out += [*lg.get_texts(), lg.get_title()]
    return [t for t in out if t.get_visible() and t.get_text().strip()]


def _legends(fig) -> list:
    return [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)


def _data_boxes(fig, renderer) -> list:
    """Bars (non-empty rectangles) and markers (as small boxes) in display coordinates."""
    boxes = []
    for ax in fig.axes:
        boxes += [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, Rectangle) and p.get_width()]
        for line in ax.lines:
            if isinstance(line, Line2D) and line.get_marker() not in (None, "", "None"):
                for x, y in ax.transData.transform(np.column_stack(line.get_data())):
                    boxes.append(matplotlib_bbox(x - 2, y - 2, x + 2, y + 2))
    return boxes


def matplotlib_bbox(x0, y0, x1, y1):
    from matplotlib.transforms import Bbox

    return Bbox([[x0, y0], [x1, y1]])


def _overlap(a, b, tol: float = 0.5) -> bool:
    return a.x0 + tol < b.x1 and b.x0 + tol < a.x1 and a.y0 + tol < b.y1 and b.y0 + tol < a.y1


def _check(fig, what: str) -> None:
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = [(t.get_text(), t.get_window_extent(r)) for t in _texts(fig)]
    assert len(texts) > 5, f"{what}: too few texts found ({texts})"
    clash = [(a, b) for (a, ba), (b, bb) in itertools.combinations(texts, 2) if _overlap(ba, bb)]
    assert clash == [], f"{what}: overlapping text boxes {clash[:5]}"
    data = _data_boxes(fig, r)
    for lg in _legends(fig):
        box = lg.get_window_extent(r)
        hits = [d for d in data if _overlap(box, d)]
        assert hits == [], f"{what}: the legend covers {len(hits)} bar(s)/marker(s)"
    plt.close(fig)


def test_groups_headline_figure_has_no_overlaps(metrics):
    fig = F.groups_figure(metrics)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "MICRON" in labels and "LEADER(S) [tiny-llama]" in labels and "LEADER(S) [tiny-qwen2]" in labels
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["demo: Overall", "demo: Multi-visit (has history)", "demo: Single-visit (no history)"]
    # sorted by overall PRAUC, best on top (barh draws bottom-up)
    overall = metrics[
        (metrics["group"] == "overall") & (metrics["metric"] == "prauc") & (metrics["stage"] != "ablation")
    ]
    assert labels[-1].split(" [")[0] in set(overall.loc[overall["mean"] == overall["mean"].max(), "model"])
    _check(fig, "groups")


@pytest.mark.parametrize("which", ["quickstart", "study"])
def test_efficiency_figure_has_no_overlaps(which, tmp_path):
    if which == "quickstart":
        eff = _quickstart_efficiency()
    else:
        eff = pd.read_parquet(make_study_dir(tmp_path, n_samples=40) / "results" / "efficiency.parquet")
    fig = F.efficiency_figure(eff)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("× faster" in t for t in ticks)  # the speed-up lives in the labels, not over the bars
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["LEADER(T)", "LEADER(S)"]
    _check(fig, f"efficiency ({which})")


def test_ablation_and_sensitivity_figures_have_no_overlaps(metrics):
    _check(F.ablation_figure(metrics), "ablation")
    _check(F.sensitivity_figure(metrics, ("alpha", "beta")), "sensitivity")


def test_two_points_are_not_drawn_as_a_curve(metrics):
    two = metrics[~((metrics["stage"] == "sensitivity") & ~metrics["param_value"].isin([0.0, 0.5]))]
    fig = F.sensitivity_figure(two, ("alpha",))
    ax = fig.axes[0]
    assert "not a curve" in ax.get_title()
    assert all(line.get_linestyle() in ("None", "") for line in ax.lines if len(line.get_xdata()) == 2)
    plt.close(fig)
