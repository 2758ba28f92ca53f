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


# Injected into a COPY of the page (the shipped report carries no test code): the first script
# records console errors, uncaught exceptions and failed loads from the start; the last one, after
# load (images decoded), measures the layout at the window's width and writes it into the DOM as
# JSON, which --dump-dom then returns. Chromium's CLI cannot evaluate JS and print otherwise.
_PROBE_HEAD = (
    "<script>window.__leaderErrors=[];(function(){var oe=console.error;console.error=function(){"
    "window.__leaderErrors.push('console.error: '+Array.prototype.join.call(arguments,' '));"
    "return oe.apply(console,arguments);};window.addEventListener('error',function(ev){var t=ev.target;"
    "if(t&&t!==window&&(t.src||t.href)){window.__leaderErrors.push('failed to load: '+String(t.src||t.href)"
    ".slice(0,80));}else{window.__leaderErrors.push('uncaught: '+ev.message);}},true);"
    "window.addEventListener('unhandledrejection',function(ev){window.__leaderErrors.push("
    "'unhandled rejection: '+ev.reason);});})();</script>"
)
_PROBE_BODY = (
    "<script>window.addEventListener('load',function(){var W=window.innerWidth,r={inner_width:W,"
    "scroll_width:document.documentElement.scrollWidth,overflow:[],images:[],headings:[]};"
    "var hs=Array.prototype.slice.call(document.querySelectorAll('h1,h2'));"
    "hs.forEach(function(h){r.headings.push({tag:h.tagName,id:h.id,text:h.textContent.slice(0,80),"
    "top:h.getBoundingClientRect().top+window.scrollY});});"
    "function under(el){var t=el.getBoundingClientRect().top+window.scrollY,s='';hs.forEach(function(h){"
    "if(h.getBoundingClientRect().top+window.scrollY<=t)s=h.id||h.textContent.slice(0,40);});return s;}"
    "document.querySelectorAll('table,img,figure,pre,.scroll').forEach(function(el){var b=el.getBoundingClientRect();"
    "var p=el.parentElement,wide=b.right>W+0.5||b.left<-0.5||el.scrollWidth>el.clientWidth+1||"
    "(p&&el.tagName==='TABLE'&&b.width>p.clientWidth+1);if(wide)r.overflow.push({tag:el.tagName,section:under(el),"
    "right:b.right,width:b.width,scroll_width:el.scrollWidth,client_width:el.clientWidth});});"
    "document.querySelectorAll('img').forEach(function(i){r.images.push({alt:i.alt,complete:i.complete,"
    "natural_width:i.naturalWidth,width:i.getBoundingClientRect().width});});r.errors=window.__leaderErrors;"
    "var o=document.createElement('script');o.type='application/json';o.id='leader-layout';"
    "o.textContent=JSON.stringify(r);document.body.appendChild(o);});</script>"
)


@dataclass
class LayoutCheck:
    inner_width: int
    scroll_width: int  # of the whole document: > inner_width means a horizontal scrollbar
    overflow: list[dict]  # tables / figures / wrappers wider than the page or scrolling inside
    images: list[dict]  # alt, complete, natural_width (0 = not decoded), width
    headings: list[dict]  # h1/h2 in page order: tag, id, text, top (px from the page top)
    errors: list[str]  # console errors, uncaught exceptions, failed loads


def layout_check(html: str | Path, width: int = 1280, height: int = 800, timeout: int = 120) -> LayoutCheck:
    """Render a copy of a local HTML page at `width` px and measure it in the page itself."""
    import json

    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found (Debian package 'chromium')")
    text = Path(html).read_text()
    i = text.find(">", text.find("<head")) + 1 if "<head" in text else 0
    text = text[:i] + _PROBE_HEAD + text[i:]
    j = text.rfind("</body>")
    text = (text[:j] + _PROBE_BODY + text[j:]) if j >= 0 else text + _PROBE_BODY
    with tempfile.TemporaryDirectory(prefix="leader-layout-") as d:
        page = Path(d) / "page.html"
        page.write_text(text)
        r = _run(binary, [f"--window-size={width},{height}", "--dump-dom", page.as_uri()], timeout)
    m = re.search(r'<script type="application/json" id="leader-layout">(.*?)</script>', r.stdout, re.S)
    if m is None:
        raise RuntimeError(f"the layout probe did not run; chromium stderr: {r.stderr[-2000:]}")
    got = json.loads(m.group(1))
    uncaught = [ln for ln in r.stderr.splitlines() if re.search(r"CONSOLE.*Uncaught", ln)]
    return LayoutCheck(errors=got.pop("errors") + [u for u in uncaught if u not in got], **got)


def screenshot(html: str | Path, out: str | Path, width: int = 1280, height: int = 800, timeout: int = 120) -> Path:
    """PNG of the page's first screen as a reader at `width` x `height` sees it."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found (Debian package 'chromium')")
    out = Path(out).resolve()
    url = Path(html).resolve().as_uri()
    _run(binary, [f"--screenshot={out}", f"--window-size={width},{height}", "--hide-scrollbars", url], timeout)
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {out}")
    return out
