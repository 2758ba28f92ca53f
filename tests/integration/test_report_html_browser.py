"""The report as a reader sees it, in a real browser (headless Chromium, Debian package
`chromium`, installed by scripts/test.sh when run as root): at 1280 px no table or figure is
wider than the page (no horizontal scrollbar, none inside a table's wrapper), no console error,
every figure decoded, and the page opens with the Findings, then the headline figure.

Not marked slow: one report build and two browser runs, ~15 s. With LEADER_UPDATE_SCREENSHOT=1
it also rewrites docs/report_first_screen.png (the README's picture of the first screen)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from report_study import _VARIANT_QUALITY, make_study_dir

from leader.report.build import ALL_FIGURES, build_report
from leader.report.chromium import find_chromium, layout_check, screenshot

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="headless Chromium not installed (Debian package 'chromium')"
)
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "report_first_screen.png"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """A quickstart-shaped study: one backbone, trivial + tuned + multi-visit-only baselines, the
    probe, every ablation (the shuffled-KD control too), paired tests, all tables and figures."""
    root = tmp_path_factory.mktemp("browser")
    study = make_study_dir(
        root,
        name="synthetic_quickstart",
        backbones=("tiny-llama",),
        variants=(*_VARIANT_QUALITY, "kd_shuffled"),
        extra_baselines=("LogReg", "MICRON"),
        probe=True,
        paired=True,
        n_samples=160,
        n_trials=8,
    )
    return build_report(study, root / "out") / "index.html"


def test_report_fits_1280px_loads_cleanly_and_reads_top_down(page):
    r = layout_check(page, width=1280, height=800)
    assert r.inner_width == 1280
    assert r.scroll_width <= r.inner_width, f"page is {r.scroll_width}px wide: {r.overflow}"
    assert r.overflow == [], r.overflow  # no table / figure / wrapper wider than the page
    assert r.errors == []
    assert len(r.images) == len(ALL_FIGURES)
    assert all(i["complete"] and i["natural_width"] > 0 for i in r.images), r.images
    assert all(0 < i["width"] <= r.inner_width for i in r.images)
    h2 = [h for h in r.headings if h["tag"] == "H2"]
    assert [h["id"] for h in h2[:3]] == ["findings", "fig-groups", "findings-detail"]
    assert h2[0]["text"] == "Findings" and h2[0]["top"] < 300  # on the first screen
    ids = [h["id"] for h in h2]
    assert ids.index("overall") < ids.index("fig-ablation") and ids[-1] == "env"


def test_first_screen_screenshot(page, tmp_path):
    target = SCREENSHOT if os.environ.get("LEADER_UPDATE_SCREENSHOT") == "1" else tmp_path / "first_screen.png"
    shot = screenshot(page, target, width=1280, height=800)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 800)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # a rendered page, not a blank one
