"""Print the built book as one PDF, from the HTML that ``make book`` made, without running any notebook.

Run after ``make book`` (needs Debian's ``chromium`` and ``pypdf``)::

    python book/_scripts/build_pdf.py [--toc _toc.yml] [--html _build/html] [--out _build/pdf]

It works in three steps:

1. **Concatenate.**  The main article (``<article class="bd-article">``, else ``<main>``) of every page
   in ``_toc.yml``, in its order, goes into one ``book.html`` in ``--out``, behind a title page and a list
   of the chapters.  Every ``id`` is prefixed with its page (``book-score--equation-sc-ism``) so that
   ids stay unique; links between pages of the book become links inside the document, links to files
   that are not in it (the notebook downloads, the index) become plain text, and images point to the
   built files.  Navigation, buttons and scripts are dropped; collapsed solutions are printed open.
   The page keeps the theme's style sheets, adds a print style sheet of its own (``PRINT_CSS``: page
   breaks before chapters, wrapped code, figures fitted to the page) and loads the book's own MathJax
   (``_static/mathjax``) with exactly the configuration the built pages carry (the macros of
   ``_config.yml``).
2. **Print.**  Headless Chromium loads ``book.html`` from a local HTTP server and prints it to
   ``book.pdf`` once its virtual-time budget has run out.  Until MathJax has typeset the page and every
   image has loaded, a line starting with ``STATUS_MARK`` stands at the top of the document; a small
   script replaces it with the list of problems (MathJax errors, images that did not load) or removes it.
3. **Check.**  The PDF's text (pypdf) must not contain raw TeX (``\\frac``, ``$$``, ``\\begin{``,
   ``\\mathbb``, ``\\(``, ``\\[``, ...) beyond what the book's code blocks print on purpose (a plot title
   ``r"$\\mathbb{E}$"``), ``STATUS_MARK`` nor MathJax's "Math input error"; each chapter's title
   must be in it; it must have at least one page per chapter and as many distinct embedded images as
   the concatenated HTML has distinct raster ``<img>`` files.

The script prints the time each step took, the page count and every problem, and exits 1 when there
is one.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml
from bs4 import BeautifulSoup, Tag

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_html import toc_pages

STATUS_MARK = "PDF-BUILD-CHECK:"
RAW_TEX = ("\\frac", "$$", "\\begin{", "\\mathbb", "\\(", "\\[", "\\mathrm{", "\\left", "\\sum_")
MATHJAX_ERRORS = ("Math input error", "Undefined control sequence", "Missing argument for")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
# elements of an article that have no place on paper
DROP_SELECTORS = (
    "script",
    "noscript",
    "a.headerlink",
    "button",
    ".copybtn",
    ".toggle-button",
    ".prev-next-area",
    ".prev-next-footer",
    ".header-article",
    ".bd-sidebar-secondary",
    ".dropdown-launch-buttons",
    ".dropdown-download-buttons",
    "img[src*='logo_colab']",
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",
    "--generate-pdf-document-outline",
]

PRINT_CSS = """
@page { size: A4; margin: 18mm 16mm 20mm 16mm;
        @bottom-center { content: counter(page); font-size: 9pt; color: #555; } }
@page :first { @bottom-center { content: none; } }
html, body { background: white !important; }
body { font-family: "DejaVu Serif", "Liberation Serif", Georgia, serif; font-size: 10.5pt; line-height: 1.45;
       color: #111; margin: 0; padding: 0; }
.bd-article, .pdf-book { max-width: none !important; padding: 0 !important; margin: 0 !important; }
h1, h2, h3, h4, .admonition-title, figcaption, table { font-family: "DejaVu Sans", "Liberation Sans", sans-serif; }
h1, h2, h3, h4 { break-after: avoid; page-break-after: avoid; }
.pdf-chapter { break-before: page; page-break-before: always; }
.pdf-title-page { break-after: page; page-break-after: always; text-align: center; padding-top: 35%; }
h1 { font-size: 22pt; } h2 { font-size: 16pt; } h3 { font-size: 13pt; } h4 { font-size: 11pt; }
h1, h2, h3, h4 { margin-top: 1.1em; margin-bottom: 0.5em; }
.pdf-title-page h1 { font-size: 28pt; margin-bottom: 1em; }
.pdf-title-page p { font-size: 13pt; }
.pdf-contents { break-after: page; page-break-after: always; }
.pdf-contents ol { line-height: 1.8; }
pre, code, kbd, samp { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 8.5pt; }
pre { white-space: pre-wrap !important; overflow-wrap: anywhere; word-break: break-word;
      overflow: visible !important; max-height: none !important; }
div.highlight, .cell_output, .output { overflow: visible !important; max-height: none !important; }
img { max-width: 100% !important; height: auto !important; break-inside: avoid; page-break-inside: avoid; }
figure, .figure, div.math, mjx-container[display="true"] { break-inside: avoid; page-break-inside: avoid; }
mjx-container[display="true"] { overflow: visible !important; }
table { font-size: 8.5pt; max-width: 100%; }
a { color: #1a4d8f; text-decoration: none; }
.admonition, div.admonition { break-inside: auto; overflow: visible !important; }
.dropdown .admonition-title::after, .toggle-details__summary, .headerlink { display: none !important; }
.toggle-hidden, .dropdown > *, details > * { visibility: visible !important; display: revert; }
.pdf-status { color: #b00; font: bold 14pt sans-serif; border: 2px solid #b00; padding: 1em; }
"""

# runs in the page: report when MathJax has typeset everything and every image has loaded
WATCH_JS = """
(function () {
  const config = window.MathJax = window.MathJax || {};
  config.startup = config.startup || {};
  const images = () => Promise.all(Array.from(document.images).map((img) =>
      img.complete ? Promise.resolve() : new Promise((done) => { img.onload = img.onerror = done; })));
  config.startup.pageReady = function () {
    return MathJax.startup.defaultPageReady().then(images).then(function () {
      const problems = [];
      const errors = document.querySelectorAll("mjx-merror");
      if (errors.length) {
        problems.push(errors.length + " MathJax errors, the first: " + (errors[0].getAttribute("data-mjx-error")
                      || errors[0].textContent));
      }
      const broken = Array.from(document.images).filter((img) => !img.naturalWidth).map((img) => img.src);
      if (broken.length) { problems.push(broken.length + " images did not load: " + broken.join(", ")); }
      const status = document.getElementById("pdf-status");
      if (problems.length) { status.textContent = "%(mark)s " + problems.join("; "); } else { status.remove(); }
      document.documentElement.dataset.typeset = "done";
    });
  };
})();
"""


@dataclass
class Book:
    """What the concatenation produced: the HTML file and what the PDF must show of it."""

    html: Path
    chapters: list[str] = field(default_factory=list)  # the title of each page, in order
    probes: dict[str, str] = field(default_factory=dict)  # chapter title -> words of its first paragraph
    images: set[str] = field(default_factory=set)  # distinct raster image files (paths relative to the HTML)
    broken_links: list[str] = field(default_factory=list)  # in-document links (#id) to no id
    code_tex: dict[str, int] = field(default_factory=dict)  # RAW_TEX strings that code blocks print on purpose


def page_slug(page: str) -> str:
    """The id prefix of a page: ``book/score`` -> ``book-score``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", page).strip("-")


def _page_main(soup: BeautifulSoup) -> Tag:
    main = soup.find("article", class_="bd-article") or soup.find("main")
    if main is None:
        raise ValueError("no <article class='bd-article'> and no <main> in the page")
    return main


def mathjax_setup(html_dir: Path, soups: dict[str, BeautifulSoup]) -> tuple[str | None, Path | None]:
    """The ``window.MathJax = ...`` configuration and the MathJax script file of the built pages (by name).

    Every page that loads MathJax must carry the same configuration; returns ``(None, None)`` when no page
    loads MathJax.
    """
    configs: dict[str, str] = {}
    script = None
    for page, soup in soups.items():
        for tag in soup.find_all("script"):
            text = (tag.string or "").strip()
            if text.startswith("window.MathJax"):
                configs.setdefault(text, page)
            src = tag.get("src") or ""
            if re.search(r"(^|/)mathjax/tex-[a-z-]+\.js($|\?)", src) and script is None:
                url = urlsplit(src)
                if url.scheme or url.netloc:
                    raise ValueError(f"{page}: MathJax is loaded from {src}, not from the book's _static")
                script = (html_dir / posixpath.dirname(page) / unquote(url.path)).resolve()
    if len(configs) > 1:
        raise ValueError("the pages carry different MathJax configurations: " + ", ".join(configs.values()))
    if script is not None and not script.is_file():
        raise ValueError(f"the pages load MathJax from {script}, which does not exist")
    return (next(iter(configs), None), script)


def rewrite_article(main: Tag, page: str, pages: list[str], html_dir: Path, out_dir: Path, book: Book) -> Tag:
    """Make one page's article fit in the single document (in place); return it."""
    slug = page_slug(page)
    page_dir = posixpath.dirname(page)
    for selector in DROP_SELECTORS:
        for tag in main.select(selector):
            tag.decompose()
    for tag in main.find_all(id=True):
        tag["id"] = f"{slug}--{tag['id']}"
    for tag in main.find_all("a", attrs={"name": True}):
        tag["name"] = f"{slug}--{tag['name']}"
    for tag in main.find_all("a", href=True):
        url = urlsplit(tag["href"])
        if url.scheme or url.netloc:
            continue  # http(s):, mailto: stay as they are
        if not url.path:
            tag["href"] = f"#{slug}--{unquote(url.fragment)}" if url.fragment else f"#{slug}"
            continue
        target = posixpath.normpath(posixpath.join(page_dir, unquote(url.path)))
        target_page = target.removesuffix(".html")
        if target.endswith(".html") and target_page in pages:
            fragment = unquote(url.fragment)
            tag["href"] = f"#{page_slug(target_page)}--{fragment}" if fragment else f"#{page_slug(target_page)}"
        else:
            tag.unwrap()  # a download, the index, a page left out of the book: plain text on paper
    for tag in main.find_all("img", src=True):
        url = urlsplit(tag["src"])
        if url.scheme or url.netloc:
            continue
        path = (html_dir / page_dir / unquote(url.path)).resolve()
        tag["src"] = Path(os.path.relpath(path, out_dir.resolve())).as_posix()
        tag.attrs.pop("loading", None)  # lazy images might never load in a print
        if path.suffix.lower() in RASTER_SUFFIXES:
            book.images.add(tag["src"])
    for tag in main.find_all("details"):
        tag["open"] = ""
    return main


def chapter_probe(main: Tag, words: int = 6) -> str | None:
    """The first ``words`` words of plain prose in the article (no maths, code or link between them)."""
    for para in main.find_all("p"):
        run = ""
        for string in para.find_all(string=True):
            if string.find_parent(["code", "a", "pre"]) or string.find_parent(class_="math"):
                run = ""  # the PDF text of maths is not the TeX: start a new run after it
                continue
            run += string
            if len(run.split()) > words:  # the last word may continue in the next element: drop it
                return " ".join(run.split()[:words])
    return None


def concatenate(toc: Path, html_dir: Path, out_dir: Path, pages: list[str] | None = None) -> Book:
    """Write ``out_dir/book.html``: the pages of ``toc`` (or ``pages``) in one document."""
    pages = pages or toc_pages(toc)
    out_dir.mkdir(parents=True, exist_ok=True)
    book = Book(out_dir / "book.html")
    config = (
        yaml.safe_load(toc.with_name("_config.yml").read_text(encoding="utf8"))
        if toc.with_name("_config.yml").is_file()
        else {}
    )
    title = config.get("title") or "Book"
    author = config.get("author") or ""
    missing = [page for page in pages if not (html_dir / f"{page}.html").is_file()]
    if missing:
        raise FileNotFoundError(f"not built in {html_dir}: {', '.join(missing)} (run make book first)")
    soups = {
        page: BeautifulSoup((html_dir / f"{page}.html").read_text(encoding="utf8"), "html.parser") for page in pages
    }
    mathjax_config, mathjax_script = mathjax_setup(html_dir, soups)

    first = soups[pages[0]]
    doc = BeautifulSoup("<!DOCTYPE html><html data-theme='light'><head></head><body></body></html>", "html.parser")
    doc.head.append(doc.new_tag("meta", charset="utf-8"))
    doc.head.append(doc.new_tag("title"))
    doc.title.string = title
    for link in first.find_all("link", rel="stylesheet"):
        path = (html_dir / posixpath.dirname(pages[0]) / unquote(urlsplit(link["href"]).path)).resolve()
        if path.is_file():
            href = Path(os.path.relpath(path, out_dir.resolve())).as_posix()
            doc.head.append(doc.new_tag("link", rel="stylesheet", href=href))
    style = doc.new_tag("style")
    style.string = PRINT_CSS
    doc.head.append(style)
    if mathjax_script is not None:
        for text in (mathjax_config or "window.MathJax = {};", WATCH_JS % {"mark": STATUS_MARK}):
            script = doc.new_tag("script")
            script.string = text
            doc.head.append(script)
        src = Path(os.path.relpath(mathjax_script, out_dir.resolve())).as_posix()
        doc.head.append(doc.new_tag("script", src=src, defer=""))

    body = doc.new_tag("div", attrs={"class": "pdf-book bd-article", "role": "main"})
    doc.body.append(body)
    status = doc.new_tag("p", id="pdf-status", attrs={"class": "pdf-status"})
    status.string = f"{STATUS_MARK} MathJax did not finish typesetting before the page was printed"
    if mathjax_script is not None:
        body.append(status)
    title_page = BeautifulSoup(
        "<section class='pdf-title-page'><h1></h1><p class='pdf-author'></p></section>", "html.parser"
    )
    title_page.h1.string = title
    title_page.p.string = author
    body.append(title_page)
    contents = BeautifulSoup("<nav class='pdf-contents'><h2>Contents</h2><ol></ol></nav>", "html.parser")
    body.append(contents)

    for page in pages:
        main = rewrite_article(_page_main(soups[page]), page, pages, html_dir, out_dir, book)
        heading = main.find("h1")
        chapter_title = " ".join(heading.get_text(" ").split()) if heading else page
        book.chapters.append(chapter_title)
        probe = chapter_probe(main)
        if probe:
            book.probes[chapter_title] = probe
        chapter = doc.new_tag("div", id=page_slug(page), attrs={"class": "pdf-chapter"})
        chapter.extend(list(main.contents))
        body.append(chapter)
        item = doc.new_tag("li")
        link = doc.new_tag("a", href=f"#{page_slug(page)}")
        link.string = chapter_title
        item.append(link)
        body.find("nav", class_="pdf-contents").ol.append(item)
    ids = {tag["id"] for tag in doc.find_all(id=True)} | {
        tag["name"] for tag in doc.find_all("a", attrs={"name": True})
    }
    for tag in doc.find_all("a", href=True):
        if tag["href"].startswith("#") and tag["href"][1:] not in ids:
            book.broken_links.append(tag["href"])
    book.code_tex = code_tex_counts(doc)
    book.html.write_text(str(doc), encoding="utf8")
    return book


def code_tex_counts(doc: BeautifulSoup) -> dict[str, int]:
    """How often each ``RAW_TEX`` string occurs in code (``<pre>``, ``<code>``): there it is meant to show.

    A plotting cell's ``set_title(r"$\\mathbb{E}$")`` is source code, and prints as such.
    """
    blocks = [tag.get_text() for tag in doc.find_all("pre")]
    blocks += [tag.get_text() for tag in doc.find_all("code") if tag.find_parent("pre") is None]
    return {needle: sum(block.count(needle) for block in blocks) for needle in RAW_TEX}


def _serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def print_pdf(html: Path, pdf: Path, root: Path, budget_ms: int = 600_000, timeout_s: int = 1200) -> None:
    """Print ``html`` (a file under ``root``, which is served over HTTP) to ``pdf`` with headless Chromium."""
    exe = find_chromium()
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium (make pdf installs it)")
    pdf.unlink(missing_ok=True)
    server, port = _serve(root)
    url = f"http://127.0.0.1:{port}/{html.resolve().relative_to(root.resolve()).as_posix()}"
    try:
        with tempfile.TemporaryDirectory() as profile:
            cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                   f"--print-to-pdf={pdf.resolve()}", url]  # fmt: skip
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    finally:
        server.shutdown()
        server.server_close()
    if not pdf.is_file():
        raise SystemExit(f"chromium wrote no PDF (exit {run.returncode}):\n{run.stderr[-2000:]}")


def pdf_contents(pdf: Path) -> tuple[str, int, int]:
    """The text, the number of pages and the number of distinct image XObjects of ``pdf``."""
    from pypdf import PdfReader

    reader = PdfReader(pdf)
    texts, images = [], set()
    for page in reader.pages:
        texts.append(page.extract_text() or "")
        resources = page.get("/Resources")
        stack = [resources.get_object()] if resources is not None else []
        while stack:  # images may sit in form XObjects too
            res = stack.pop()
            xobjects = res.get("/XObject")
            for ref in xobjects.get_object().values() if xobjects is not None else []:
                obj = ref.get_object()
                key = getattr(ref, "idnum", id(obj))
                if obj.get("/Subtype") == "/Image":
                    images.add(key)
                elif obj.get("/Subtype") == "/Form" and obj.get("/Resources") is not None and key not in images:
                    images.add(("form", key))
                    stack.append(obj["/Resources"].get_object())
    n_images = sum(1 for key in images if not isinstance(key, tuple))
    return "\n".join(texts), len(reader.pages), n_images


def text_problems(
    text: str, chapters: list[str], code_tex: dict[str, int] | None = None, probes: dict[str, str] | None = None
) -> list[str]:
    """What is wrong with the printed text: raw TeX, MathJax errors, the status line, a missing chapter.

    A chapter's title alone also stands in the contents and in links to it: ``probes`` (chapter title ->
    words of its first paragraph) must be in the text as well.

    ``code_tex``: how often each ``RAW_TEX`` string stands in the book's code blocks, where it belongs; only
    occurrences beyond those count (the first one in the text is quoted, which may be a code block's).
    """
    problems = []
    flat = " ".join(unicodedata.normalize("NFKC", text).split())  # NFKC: the font's ligature "ﬂ" is "fl"
    for needle in RAW_TEX:
        count, allowed = text.count(needle), (code_tex or {}).get(needle, 0)
        if count > allowed:
            where = text.index(needle)
            context = " ".join(text[max(0, where - 60) : where + 60].split())
            problems.append(
                f"raw TeX {needle!r} appears {count} time(s) in the PDF text, {allowed} of them in code blocks;"
                f" the first in: ...{context}..."
            )
    for needle in (*MATHJAX_ERRORS, STATUS_MARK):
        if needle in text:
            where = text.index(needle)
            problems.append(f"the PDF says {' '.join(text[where : where + 200].split())!r}")
    for title in chapters:
        words = unicodedata.normalize("NFKC", title).split()[:6]  # a long title may wrap: its first words
        if " ".join(words) not in flat:
            problems.append(f"the chapter {title!r} is not in the PDF text")
    for title, probe in (probes or {}).items():
        if " ".join(unicodedata.normalize("NFKC", probe).split()) not in flat:
            problems.append(f"the body of the chapter {title!r} is not in the PDF text: no {probe!r}")
    return problems


def pdf_problems(text: str, n_pages: int, n_images: int, book: Book) -> list[str]:
    """Every problem of the printed PDF, given its text and counts and what the HTML held."""
    problems = text_problems(text, book.chapters, book.code_tex, book.probes)
    problems += [f"the link {href} of the concatenated HTML points to no id" for href in book.broken_links]
    if n_pages < len(book.chapters) + 2:
        problems.append(f"the PDF has {n_pages} pages, fewer than the {len(book.chapters)} chapters + 2")
    if n_images < len(book.images):
        problems.append(f"the PDF embeds {n_images} distinct images, the HTML shows {len(book.images)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toc", type=Path, default=Path("_toc.yml"))
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument("--out", type=Path, default=Path("_build/pdf"))
    parser.add_argument("--budget-ms", type=int, default=600_000, help="Chromium's virtual-time budget")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds before Chromium is stopped")
    args = parser.parse_args()

    start = time.perf_counter()
    book = concatenate(args.toc, args.html, args.out)
    joined = time.perf_counter()
    print(f"{book.html}: {len(book.chapters)} chapters, {len(book.images)} images, in {joined - start:.1f} s")
    pdf = args.out / "book.pdf"
    root = Path(os.path.commonpath([args.html.resolve(), args.out.resolve()]))
    print_pdf(book.html, pdf, root, args.budget_ms, args.timeout)
    printed = time.perf_counter()
    print(f"{pdf}: printed by Chromium in {printed - joined:.1f} s, {pdf.stat().st_size / 2**20:.1f} MiB")
    text, n_pages, n_images = pdf_contents(pdf)
    problems = pdf_problems(text, n_pages, n_images, book)
    checked = time.perf_counter()
    print(f"{pdf}: {n_pages} pages, {n_images} distinct images (HTML: {len(book.images)}), "
          f"{len(text)} characters of text, checked in {checked - printed:.1f} s")  # fmt: skip
    summary = {"pages": n_pages, "images": n_images, "seconds": round(checked - start, 1), "problems": len(problems)}
    print(json.dumps(summary))
    for problem in problems:
        print(f"{pdf}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{pdf}: no raw TeX, no MathJax error, every chapter and image present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
