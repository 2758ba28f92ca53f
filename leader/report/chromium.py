"""Headless Chromium check of a report page: renders it, reports JS errors and broken images.

Used by tests and by anyone who wants to see the page as a reader would (screenshot)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


@dataclass
class RenderCheck:
    dom: str
    console_errors: list[str]
    broken_images: int | None
    rendered: bool
    screenshot: Path | None


def _run(binary: str, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="leader-chromium-") as prof:
        return subprocess.run(
            [binary, *_FLAGS, f"--user-data-dir={prof}", *args], capture_output=True, text=True, timeout=timeout
        )


def check_html(
    html: str | Path, screenshot: str | Path | None = None, width: int = 1280, height: int = 3000, timeout: int = 120
) -> RenderCheck:
    """Dump the DOM after load (and optionally a PNG screenshot) of a local HTML file."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found (Debian package 'chromium')")
    url = Path(html).resolve().as_uri()
    r = _run(binary, ["--dump-dom", url], timeout)
    errors = [
        ln
        for ln in r.stderr.splitlines()
        if re.search(r"CONSOLE.*(error|Uncaught)|Uncaught|net::ERR_(?!ABORTED)", ln, re.IGNORECASE)
    ]
    m = re.search(r'data-broken-images="(\d+)"', r.stdout)
    shot = None
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        _run(binary, [f"--screenshot={shot}", f"--window-size={width},{height}", "--hide-scrollbars", url], timeout)
    return RenderCheck(
        dom=r.stdout,
        console_errors=errors,
        broken_images=int(m.group(1)) if m else None,
        rendered='data-rendered="ok"' in r.stdout,
        screenshot=shot if shot and shot.is_file() else None,
    )
