"""Render built book pages in headless Chromium: screenshots, and a check that the mathematics rendered.

Run after ``make book`` (needs Debian's ``chromium``)::

    python book/_scripts/screenshot.py [--html _build/html] [--out _build/screenshots] [PAGE ...]

PAGE is a document name such as ``book/notation`` (default: every page in ``_toc.yml``).  The
HTML folder is served on 127.0.0.1 and each page is loaded twice by Chromium: once to dump the
DOM after scripts ran, once for a PNG screenshot in ``--out``.  The script fails (exit 1) when a
page whose source contains ``$`` mathematics has no MathJax-rendered ``mjx-container`` in its DOM,
when MathJax reports an error (``merror``), or when a page contains no rendered ``<img>`` although
its source defines a figure.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_html import toc_pages

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
]


def _serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _chromium(args: list[str], profile: str) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return out.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*")
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument("--out", type=Path, default=Path("_build/screenshots"))
    parser.add_argument("--toc", type=Path, default=Path("_toc.yml"))
    args = parser.parse_args()
    pages = args.pages or toc_pages(args.toc)
    args.out.mkdir(parents=True, exist_ok=True)
    server, port = _serve(args.html)
    problems = []
    try:
        for page in pages:
            url = f"http://127.0.0.1:{port}/{page}.html"
            source = (args.toc.parent / f"{page}.md").read_text(encoding="utf8")
            with tempfile.TemporaryDirectory() as profile:
                dom = _chromium(["--dump-dom", url], profile)
            with tempfile.TemporaryDirectory() as profile:
                png = args.out / f"{page.replace('/', '_')}.png"
                _chromium([f"--screenshot={png.resolve()}", "--window-size=1280,2400", url], profile)
            n_math = dom.count("<mjx-container")
            n_img = len(re.findall(r"<img [^>]*src=", dom))
            has_math = "$" in source
            has_figure = "glue:figure" in source or "plt." in source
            print(f"{page}: {n_math} rendered formulas, {n_img} images, screenshot {png}")
            if has_math and n_math == 0:
                problems.append(f"{page}: the source has mathematics but no MathJax output rendered")
            if "<merror" in dom:
                problems.append(f"{page}: MathJax reported an error")
            if has_figure and n_img == 0:
                problems.append(f"{page}: the source makes figures but the page shows no image")
            if not png.exists():
                problems.append(f"{page}: no screenshot was written")
    finally:
        server.shutdown()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
