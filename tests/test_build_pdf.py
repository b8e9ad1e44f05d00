"""The PDF of the book (``book/_scripts/build_pdf.py``): the concatenation of the built pages and the checks.

The fast tests run on a small synthetic build in ``tmp_path`` and need no browser: the pages come out
in the order of ``_toc.yml``, with page-prefixed ids, links turned into links inside the document, images
pointing to the built files, navigation and scripts gone and the book's MathJax configuration copied
as it is; and the checks of the printed text fail on raw TeX, on MathJax errors, on the "not typeset"
status line and on a missing chapter.  The slow test prints a two-chapter synthetic book with the real
Chromium and MathJax, when both are there.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("build_pdf", ROOT / "book" / "_scripts" / "build_pdf.py")
build_pdf = importlib.util.module_from_spec(SPEC)
sys.modules.setdefault("build_pdf", build_pdf)  # its dataclass looks its module up there
SPEC.loader.exec_module(build_pdf)

MATHJAX_CONFIG = 'window.MathJax = {"tex": {"macros": {"R": "\\\\mathbb{R}"}}, "options": {"processHtmlClass": "math"}}'
FIG = "0123456789abcdef.png"
PAGE = """<!DOCTYPE html>
<html><head><title>{title}</title>
<link rel="stylesheet" href="../_static/site.css" />
<script>{config}</script>
<script defer="defer" src="../_static/mathjax/tex-chtml.js?v=1"></script>
</head>
<body>
<nav class="bd-sidebar-primary"><a href="chapter.html">sidebar link</a></nav>
<div class="header-article"><img alt="Colab logo" src="../_static/images/logo_colab.png"></div>
<main id="main-content"><article class="bd-article">
<section class="tex2jax_ignore mathjax_ignore" id="{title}-intro">
<h1>{heading}<a class="headerlink" href="#{title}-intro">#</a></h1>
{body}
</section>
<script>kernelName = 'python3'</script>
</article></main>
<footer>footer text</footer>
</body></html>
"""
INTRO = """
<p>This synthetic book has one short chapter and one figure.</p>
<p>The density <span class="math notranslate nohighlight">\\(p(x) = \\frac{{1}}{{Z}} e^{{-x^2/2}}\\)</span> on
<span class="math notranslate nohighlight">\\(\\R\\)</span>; see <a class="reference internal" href="chapter.html">the
chapter</a>, its equation <a class="reference internal" href="chapter.html#equation-ch-ode">(1)</a>, this page's
<a href="#intro-intro">top</a> and the <a href="../_sources/book/intro.ipynb">notebook</a>.</p>
<figure><img alt="A curve rising from left to right over the whole unit interval." src="../_images/{fig}"></figure>
"""
CHAPTER = """
<p>The one chapter holds <em>an</em> equation and a solution.</p>
<div class="math notranslate nohighlight" id="equation-ch-ode">
<span class="eqno">(1)<a class="headerlink" href="#equation-ch-ode">#</a></span>\\[\\frac{dx}{dt} = -x\\]</div>
<p>Back to <a href="intro.html#intro-intro">the introduction</a>.</p>
<div class="highlight"><pre>ax.set_title(r"mean $\\mathbb{E}[x]$")</pre></div>
<div class="solution dropdown admonition" id="book/chapter-solution-1"><p class="admonition-title">Solution</p>
<p>The solution text.</p></div>
"""
HEADINGS = {"intro": "A synthetic book", "chapter": "The one chapter"}


def png(width: int = 4, height: int = 3) -> bytes:
    """A valid grey PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([128]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_book(root: Path, mathjax: Path | None = None, bodies: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A two-page built book under ``root``: return (toc, html dir).  ``mathjax``: a real MathJax folder."""
    bodies = bodies or {"intro": INTRO.format(fig=FIG), "chapter": CHAPTER}
    toc = root / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/chapter\n", encoding="utf8")
    (root / "_config.yml").write_text('title: "Synthetic book"\nauthor: Somebody\n', encoding="utf8")
    html = root / "_build" / "html"
    (html / "book").mkdir(parents=True)
    (html / "_images").mkdir()
    (html / "_images" / FIG).write_bytes(png())
    (html / "_static" / "images").mkdir(parents=True)
    (html / "_static" / "images" / "logo_colab.png").write_bytes(png())
    (html / "_static" / "site.css").write_text("body { color: black; }\n", encoding="utf8")
    if mathjax is not None:
        shutil.copytree(mathjax, html / "_static" / "mathjax")
    else:
        (html / "_static" / "mathjax").mkdir()
        (html / "_static" / "mathjax" / "tex-chtml.js").write_text("// stand-in\n", encoding="utf8")
    for name, body in bodies.items():
        (html / "book" / f"{name}.html").write_text(
            PAGE.format(title=name, heading=HEADINGS[name], body=body, config=MATHJAX_CONFIG), encoding="utf8"
        )
    return toc, html


def test_concatenation_keeps_order_ids_links_images_and_mathjax(tmp_path: Path) -> None:
    toc, html = write_book(tmp_path)
    book = build_pdf.concatenate(toc, html, tmp_path / "_build" / "pdf")
    text = book.html.read_text(encoding="utf8")
    assert book.chapters == ["A synthetic book", "The one chapter"]
    assert book.probes == {"A synthetic book": "This synthetic book has one short", "The one chapter": PROBE}
    assert text.index('id="book-intro"') < text.index('id="book-chapter"')
    # ids carry their page; links between pages and inside a page point into the one document
    assert 'id="book-chapter--equation-ch-ode"' in text and 'id="equation-ch-ode"' not in text
    assert 'href="#book-chapter--equation-ch-ode"' in text
    assert 'href="#book-chapter"' in text
    assert 'href="#book-intro--intro-intro"' in text
    assert book.broken_links == []
    # a link to a file outside the book (the notebook download) is plain text; its words stay
    assert "_sources" not in text and "notebook</a>" not in text and "notebook" in text
    # images point to the built files, relative to the document
    assert book.images == {f"../html/_images/{FIG}"}
    assert (book.html.parent / f"../html/_images/{FIG}").resolve().is_file()
    # no navigation, header buttons, Colab badge, heading permalinks, page scripts or footers
    for gone in ("sidebar link", "logo_colab", 'class="headerlink"', "kernelName", "footer text"):
        assert gone not in text, gone
    # the solution of the dropdown is in the document
    assert "The solution text." in text
    # the book's own MathJax, with the configuration of the built pages, verbatim, and the watcher after it
    assert MATHJAX_CONFIG in text
    assert 'src="../html/_static/mathjax/tex-chtml.js"' in text
    assert text.index(MATHJAX_CONFIG) < text.index("pageReady") < text.index("tex-chtml.js")
    assert build_pdf.STATUS_MARK in text  # until the watcher removes it
    assert 'href="../html/_static/site.css"' in text
    # raw TeX in code is meant to print: the check allows it
    assert book.code_tex["\\mathbb"] == 1 and book.code_tex["\\frac"] == 0


def test_a_link_to_a_missing_anchor_is_reported(tmp_path: Path) -> None:
    bodies = {"intro": INTRO.format(fig=FIG).replace("#equation-ch-ode", "#equation-gone"), "chapter": CHAPTER}
    toc, html = write_book(tmp_path, bodies=bodies)
    book = build_pdf.concatenate(toc, html, tmp_path / "_build" / "pdf")
    assert book.broken_links == ["#book-chapter--equation-gone"]
    problems = build_pdf.pdf_problems(GOOD_TEXT, 4, 1, book)
    assert problems == ["the link #book-chapter--equation-gone of the concatenated HTML points to no id"]


def test_pages_with_different_mathjax_configurations_are_refused(tmp_path: Path) -> None:
    toc, html = write_book(tmp_path)
    page = html / "book" / "chapter.html"
    page.write_text(page.read_text(encoding="utf8").replace('"R"', '"Q"'), encoding="utf8")
    with pytest.raises(ValueError, match="different MathJax configurations"):
        build_pdf.concatenate(toc, html, tmp_path / "_build" / "pdf")


def test_a_page_missing_from_the_build_is_refused(tmp_path: Path) -> None:
    toc, html = write_book(tmp_path)
    (html / "book" / "chapter.html").unlink()
    with pytest.raises(FileNotFoundError, match="book/chapter"):
        build_pdf.concatenate(toc, html, tmp_path / "_build" / "pdf")


PROBE = "The one chapter holds an equation"
PROBES = {"A synthetic book": "This synthetic book has one short", "The one chapter": PROBE}
GOOD_TEXT = (
    "Synthetic book\nContents\nA synthetic book\nThis synthetic book has\none short chapter\np(x) = 1/Z e\n"
    "The one\nchapter\nThe one chapter holds an\nequation and a solution.\ndx/dt = −x (1)\n"
)


def test_good_text_passes() -> None:
    assert build_pdf.text_problems(GOOD_TEXT, ["A synthetic book", "The one chapter"], probes=PROBES) == []


@pytest.mark.parametrize(
    ("planted", "message"),
    [
        ("$$ x^2 $$", "raw TeX '$$'"),
        ("p(x) = \\frac{1}{Z}", "raw TeX '\\\\frac'"),
        ("\\begin{aligned} x \\end{aligned}", "raw TeX '\\\\begin{'"),
        ("on \\mathbb{R}", "raw TeX '\\\\mathbb'"),
        ("Math input error", "the PDF says 'Math input error"),
        (f"{build_pdf.STATUS_MARK} MathJax did not finish", "MathJax did not finish"),
    ],
)
def test_raw_tex_errors_and_the_status_line_fail(planted: str, message: str) -> None:
    problems = build_pdf.text_problems(GOOD_TEXT + planted, ["A synthetic book", "The one chapter"])
    assert len(problems) == 1 and message in problems[0], problems


def test_raw_tex_is_allowed_as_often_as_the_code_blocks_print_it() -> None:
    text = GOOD_TEXT + 'ax.set_title(r"mean $\\mathbb{E}[x]$")\n'
    chapters = ["A synthetic book", "The one chapter"]
    assert build_pdf.text_problems(text, chapters, {"\\mathbb": 1}) == []
    problems = build_pdf.text_problems(text + "on \\mathbb{R}", chapters, {"\\mathbb": 1})
    assert len(problems) == 1 and "appears 2 time(s) in the PDF text, 1 of them in code blocks" in problems[0]


def test_chapter_titles_are_found_through_ligatures_and_line_breaks() -> None:
    text = "3\nThe \ufb02ow view\nand the di\ufb00usion\nof it\n"
    assert build_pdf.text_problems(text, ["The flow view", "and the diffusion of it"]) == []


def test_a_missing_chapter_fails() -> None:
    problems = build_pdf.text_problems(GOOD_TEXT, ["A synthetic book", "The one chapter", "Guidance"])
    assert problems == ["the chapter 'Guidance' is not in the PDF text"]


def test_a_chapter_whose_body_is_missing_fails() -> None:
    # the title is in the contents, but the chapter's own prose is not
    text = GOOD_TEXT.replace("The one chapter holds an\n", "")
    problems = build_pdf.text_problems(text, ["A synthetic book", "The one chapter"], probes=PROBES)
    assert problems == [f"the body of the chapter 'The one chapter' is not in the PDF text: no {PROBE!r}"]


def test_too_few_pages_or_images_fail(tmp_path: Path) -> None:
    toc, html = write_book(tmp_path)
    book = build_pdf.concatenate(toc, html, tmp_path / "_build" / "pdf")
    assert build_pdf.pdf_problems(GOOD_TEXT, 4, 1, book) == []
    assert "fewer than the 2 chapters + 2" in build_pdf.pdf_problems(GOOD_TEXT, 3, 1, book)[0]
    assert "embeds 0 distinct images, the HTML shows 1" in build_pdf.pdf_problems(GOOD_TEXT, 4, 0, book)[0]


MATHJAX_DIR = ROOT / "book" / "_static" / "mathjax"


@pytest.mark.slow
def test_print_a_synthetic_book(tmp_path: Path) -> None:
    if build_pdf.find_chromium() is None:
        pytest.skip("chromium is not installed (make screenshots / make pdf install it)")
    pytest.importorskip("pypdf", reason="pypdf is not installed: it reads the printed PDF")
    if not (MATHJAX_DIR / "tex-chtml.js").is_file():
        pytest.skip(f"MathJax is not in {MATHJAX_DIR} (make book installs it)")
    toc, html = write_book(tmp_path, mathjax=MATHJAX_DIR)
    out = tmp_path / "_build" / "pdf"
    book = build_pdf.concatenate(toc, html, out)
    build_pdf.print_pdf(book.html, out / "book.pdf", tmp_path / "_build", budget_ms=60_000, timeout_s=120)
    text, n_pages, n_images = build_pdf.pdf_contents(out / "book.pdf")
    assert build_pdf.pdf_problems(text, n_pages, n_images, book) == []
    assert n_pages >= 4 and n_images == 1
    assert "The solution text." in text

    # the same book with its MathJax script removed: the raw TeX and the status line reach the PDF
    book.html.write_text(book.html.read_text(encoding="utf8").replace("tex-chtml.js", "missing.js"), encoding="utf8")
    build_pdf.print_pdf(book.html, out / "book.pdf", tmp_path / "_build", budget_ms=20_000, timeout_s=120)
    text, n_pages, n_images = build_pdf.pdf_contents(out / "book.pdf")
    problems = build_pdf.pdf_problems(text, n_pages, n_images, book)
    assert any("raw TeX '\\\\frac'" in p for p in problems), problems
    assert any(build_pdf.STATUS_MARK in p for p in problems), problems
