"""Check a built Jupyter Book: pages, cell outputs, images and their alt text, internal links, notebooks.

Run after ``jupyter-book build`` (``make book`` does)::

    python book/_scripts/check_html.py [--toc _toc.yml] [--html _build/html]

It fails (exit status 1, one line per problem) when

* a page listed in ``_toc.yml`` has no ``<page>.html`` in the HTML folder, or its footer does not show
  the diffcore version (``book/_ext/version_footer.py``);
* a cell output of any page is a traceback, an error or text written to stderr
  (myst-nb's ``output traceback`` / ``output error`` / ``output stderr`` blocks, or
  ``Traceback (most recent call last)`` anywhere inside a ``cell_output``);
* an ``<img src=...>`` of any page points to a local file that does not exist, or a figure PNG has a
  transparent background (unreadable on the dark theme);
* an ``<img>`` has no meaningful ``alt`` text: missing, empty, the image's file name or path, a bare
  hash, a generic word ("image", "png", "figure", ...) or matplotlib's ``<Figure size ...>`` repr; a
  figure of the book (an image under ``_images/``) needs at least a short sentence
  (``MIN_FIGURE_ALT_WORDS`` words): give ``glue:figure`` an ``:alt:`` option and close the figure
  (``plt.close(fig)``) after gluing it, so that its code cell shows no unlabelled copy;
* an internal link (an ``<a href>`` that is not ``http:``, ``mailto:``, ...) of any page is broken:
  its target file does not exist, or its ``#anchor`` is not an ``id`` (or ``<a name>``) in the
  target page. Each is reported as ``page -> target``;
* a notebook page (a source with a ``kernelspec``) lacks its download ``_sources/<page>.ipynb``,
  that notebook is invalid or does not start with the hidden cell that installs diffcore
  (``book/_ext/notebooks.py``), the install cell shows in the HTML, or the page has no
  ".ipynb" download link or no Colab link to that notebook.
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import yaml

import diffcore

SOURCE_SUFFIXES = (".md", ".ipynb", ".rst")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".pdf")
GENERIC_ALTS = set(
    "image img png jpg jpeg svg figure fig picture graph plot chart output untitled alt none todo".split()
)
MIN_FIGURE_ALT_WORDS = 6  # a figure's alt text says what it shows: a sentence, not a title
BAD_OUTPUT_CLASSES = {"traceback", "error", "stderr"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def toc_pages(toc_path: Path) -> list[str]:
    """Return the document names (paths without suffix, relative to the book root) in a ``_toc.yml``."""
    root = toc_path.parent
    toc = yaml.safe_load(toc_path.read_text(encoding="utf8"))
    pages = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            if "glob" in entry:
                for match in sorted(glob.glob(str(root / entry["glob"]))):
                    if match.endswith(SOURCE_SUFFIXES):
                        pages.append(str(Path(match).relative_to(root)))
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    walk([toc])
    return [page.removesuffix(Path(page).suffix) if page.endswith(SOURCE_SUFFIXES) else page for page in pages]


class PageScanner(HTMLParser):
    """Collect images with their alt text, link targets, element ids and error outputs of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[tuple[str, str | None]] = []  # (src, alt or None when absent)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.bad_outputs: list[str] = []
        self._stack: list[bool] = []  # for each open element: is it inside a cell output?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img" and attributes.get("src"):
            self.images.append((attributes["src"], attributes.get("alt")))
        if tag in {"a", "area"} and attributes.get("href"):
            self.links.append(attributes["href"])
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        if tag == "a" and attributes.get("name"):
            self.ids.add(attributes["name"])
        classes = set((attributes.get("class") or "").split())
        if "output" in classes and classes & BAD_OUTPUT_CLASSES:
            self.bad_outputs.append(f'an output block of class "{" ".join(sorted(classes))}"')
        if tag not in VOID_TAGS:
            inside = bool(self._stack and self._stack[-1]) or "cell_output" in classes
            self._stack.append(inside)

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID_TAGS and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1] and "Traceback (most recent call last)" in data:
            self.bad_outputs.append("a cell output that contains a Python traceback")


def scan(html: Path) -> PageScanner:
    """Parse one built page."""
    scanner = PageScanner()
    scanner.feed(html.read_text(encoding="utf8"))
    scanner.close()
    return scanner


def transparency_problem(image: Path) -> str | None:
    """Say why a figure would be unreadable on the dark theme (a transparent background), or return None.

    The book's figures are drawn on white (``figure.facecolor``); a PNG with any pixel less than fully
    opaque shows the page's dark background through its axes and labels.  Only PNGs are read.
    """
    if image.suffix.lower() != ".png":
        return None
    from PIL import Image  # matplotlib's dependency, in the book's environment

    with Image.open(image) as im:
        if im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
            return None
        alpha = im.convert("RGBA").getchannel("A")
        low, _ = alpha.getextrema()
    if low < 255:
        return "has a transparent background: unreadable on the dark theme (draw it on white)"
    return None


def alt_problem(src: str, alt: str | None) -> str | None:
    """Say why ``alt`` is not a meaningful text alternative for the image at ``src``, or return None."""
    if alt is None:
        return "has no alt attribute"
    text = " ".join(alt.split())
    if not text:
        return "has an empty alt"
    path = unquote(urlsplit(src).path)
    lowered = text.lower()
    if lowered in {path.lower(), Path(path).name.lower(), Path(path).stem.lower()} or lowered.endswith(IMAGE_SUFFIXES):
        return f"has its file name as alt ({text!r})"
    if re.fullmatch(r"[0-9a-f]{16,}", lowered):
        return f"has a bare hash as alt ({text!r})"
    if lowered.strip(" .:") in GENERIC_ALTS or lowered.startswith("<figure size"):
        return f"has a generic alt ({text!r})"
    words = len(re.findall(r"[^\W_]+", text))
    if "_images/" in path and words < MIN_FIGURE_ALT_WORDS:
        return f"is a figure whose alt ({text!r}) has {words} word(s), fewer than {MIN_FIGURE_ALT_WORDS}"
    return None


def link_problems(html_dir: Path, scanners: dict[Path, PageScanner]) -> list[str]:
    """Return one ``page -> target`` message per internal link whose file or anchor does not exist.

    ``scanners`` holds the parsed pages, by resolved path; target pages outside it are parsed on demand.
    """
    problems = []
    for page, scanner in scanners.copy().items():
        for href in scanner.links:
            url = urlsplit(href)
            if url.scheme or url.netloc:  # http(s):, mailto:, javascript:, //host/ are external
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if url.path.endswith("/") or target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(html_dir)} -> {href}"
            if not target.is_relative_to(html_dir):
                problems.append(f"broken link {where}: {target} is outside the built book {html_dir}")
                continue
            if not target.is_file():
                problems.append(f"broken link {where}: {target.relative_to(html_dir)} does not exist")
                continue
            anchor = unquote(url.fragment)
            if not anchor or target.suffix != ".html":
                continue
            if target not in scanners:
                scanners[target] = scan(target)
            if anchor not in scanners[target].ids:
                problems.append(f"broken link {where}: no id {anchor!r} in {target.relative_to(html_dir)}")
    return problems


def check(toc_path: Path, html_dir: Path) -> list[str]:
    """Return one message per problem found in the build at ``html_dir``."""
    problems = []
    if not html_dir.is_dir():
        return [f"{html_dir} does not exist: build the book first"]
    version_line = f'<p class="diffcore-version">diffcore {diffcore.__version__}</p>'
    for page in toc_pages(toc_path):
        if not (html_dir / f"{page}.html").is_file():
            problems.append(f"{page}: listed in {toc_path.name} but {html_dir / page}.html was not built")
        elif version_line not in (html_dir / f"{page}.html").read_text(encoding="utf8"):
            problems.append(f"{page}: no 'diffcore {diffcore.__version__}' in its footer (book/_ext/version_footer.py)")
    scanners = {}
    for html in sorted(html_dir.rglob("*.html")):
        if html.relative_to(html_dir).parts[0] in {"_static", "_sources"}:
            continue
        scanner = scanners[html.resolve()] = scan(html)
        for what in scanner.bad_outputs:
            problems.append(f"{html}: {what}")
        for src, alt in scanner.images:
            why = alt_problem(src, alt)
            if why is not None:
                problems.append(f"{html}: <img src={src!r}> {why}")
            url = urlsplit(src)
            if url.scheme or url.netloc:  # data:, http(s): and //host/ images are not ours to check
                continue
            target = (html.parent / unquote(url.path)).resolve()
            if not target.is_file():
                problems.append(f"{html}: <img src={src!r}> points to {target}, which does not exist")
            elif "_images" in target.parts and (why := transparency_problem(target)) is not None:
                problems.append(f"{html}: <img src={src!r}> {why}")
    problems += link_problems(html_dir.resolve(), scanners)
    return problems


def check_notebooks(toc_path: Path, html_dir: Path) -> list[str]:
    """Return one message per problem with the downloadable notebooks and their Colab links."""
    problems = []
    for page in toc_pages(toc_path):
        source = toc_path.parent / f"{page}.md"
        if not source.is_file() or "\nkernelspec:" not in source.read_text(encoding="utf8").split("\n---", 1)[0]:
            continue
        notebook, html = html_dir / "_sources" / f"{page}.ipynb", html_dir / f"{page}.html"
        if not notebook.is_file() or not html.is_file():
            problems.append(f"{page}: no downloadable notebook {notebook}")
            continue
        nb = nbformat.read(notebook, as_version=4)
        try:
            nbformat.validate(nb)
        except nbformat.ValidationError as err:
            problems.append(f"{notebook}: invalid notebook: {err.message}")
        first = nb.cells[0] if nb.cells else None
        if not (
            first is not None
            and first.cell_type == "code"
            and "%pip install" in first.source
            and "diffcore @ git+" in first.source
            and "remove-cell" in first.metadata.get("tags", [])
        ):
            problems.append(f"{notebook}: the first cell is not the hidden diffcore install cell")
        text = html.read_text(encoding="utf8")
        if "diffcore-install" in text or "%pip install" in text:
            problems.append(f"{html}: the install cell shows in the HTML")
        if f'_sources/{page}.ipynb"' not in text:
            problems.append(f"{html}: no .ipynb download link to _sources/{page}.ipynb")
        if f'/_sources/{page}.ipynb"' not in text or "https://colab.research.google.com/github/" not in text:
            problems.append(f"{html}: no Colab link to _sources/{page}.ipynb")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toc", type=Path, default=Path("_toc.yml"), help="the book's _toc.yml")
    parser.add_argument("--html", type=Path, default=Path("_build/html"), help="the built HTML folder")
    args = parser.parse_args(argv)
    problems = check(args.toc, args.html) + check_notebooks(args.toc, args.html)
    for problem in problems:
        print(f"check_html: {problem}", file=sys.stderr)
    pages = len(toc_pages(args.toc))
    if problems:
        print(f"check_html: {len(problems)} problem(s) in the book build", file=sys.stderr)
        return 1
    print(
        f"check_html: {pages} page(s) built, no error outputs, every image on disk with alt text "
        "(figures opaque, readable on the dark theme), every internal link and anchor resolves, "
        "notebooks and Colab links"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
