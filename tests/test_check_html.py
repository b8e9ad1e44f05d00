"""The checks of the built book (``book/_scripts/check_html.py``) fail on what they are meant to catch.

Each check runs on a small synthetic build in ``tmp_path``: a good book passes, and one planted defect
(a broken anchor, a missing page, an image without meaningful alt text) makes it fail with a message
that names the page and the target.  A last test reads the chapter sources: every figure directive
carries an ``:alt:`` option, so the alt-text check of the build is not the first to notice.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from PIL import Image

import diffcore

ROOT = Path(__file__).resolve().parent.parent
FIG = "../_images/0123456789abcdef0123456789abcdef.png"
SPEC = importlib.util.spec_from_file_location("check_html", ROOT / "book" / "_scripts" / "check_html.py")
check_html = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check_html)

FIGURE_ALT = "Log-log plot of the error against the number of steps, falling along a line of slope two."
PAGE = """<!DOCTYPE html>
<html><head><title>{title}</title></head>
<body>
<a class="skip-link" href="#main-content">Skip to main content</a>
<main id="main-content">
<section id="{title}-intro"><h1>{title}</h1>
{body}
</section>
</main>
<footer><p class="diffcore-version">diffcore {version}</p></footer>
</body></html>
"""


def write_book(root: Path, pages: dict[str, str]) -> tuple[Path, Path]:
    """Write a one-chapter ``_toc.yml`` and the HTML ``pages`` (name -> body); return (toc, html dir)."""
    root.mkdir(parents=True, exist_ok=True)
    toc = root / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/chapter\n", encoding="utf8")
    html = root / "_build" / "html"
    (html / "book").mkdir(parents=True)
    (html / "_images").mkdir()
    Image.new("RGB", (4, 4), "white").save(html / "_images" / "0123456789abcdef0123456789abcdef.png")
    (html / "_static" / "images").mkdir(parents=True)
    (html / "_static" / "images" / "logo_colab.png").write_bytes(b"\x89PNG")
    for name, body in pages.items():
        (html / "book" / f"{name}.html").write_text(
            PAGE.format(title=name, body=body, version=diffcore.__version__), encoding="utf8"
        )
    return toc, html


def good_pages() -> dict[str, str]:
    return {
        "intro": f"""
<p>See <a href="chapter.html">the chapter</a>, <a href="chapter.html#chapter-fig">its figure</a>,
<a href="#intro-intro">this section</a>, <a href="../_images/0123456789abcdef0123456789abcdef.png">the image</a>,
<a href="https://example.org/missing.html#nowhere">an external page</a>, <a href="mailto:a@b.c">mail</a>
and <a href="#">the top</a>.</p>
<img alt="Colab logo" src="../_static/images/logo_colab.png">
<figure id="intro-fig"><img alt="{FIGURE_ALT}" src="../_images/0123456789abcdef0123456789abcdef.png" /></figure>
""",
        "chapter": f"""
<p><a href="intro.html#intro-fig">back</a> <a name="old-anchor"></a> <a href="#old-anchor">old</a>
<a href="chapter.html#chapter-intro">here</a></p>
<figure id="chapter-fig"><img alt="{FIGURE_ALT}" src="../_images/0123456789abcdef0123456789abcdef.png" /></figure>
""",
    }


def problems_with(tmp_path: Path, **changes: str) -> list[str]:
    """The problems of the good book with the bodies of some pages appended to."""
    pages = good_pages()
    for name, extra in changes.items():
        pages[name] += extra
    toc, html = write_book(tmp_path, pages)
    return check_html.check(toc, html)


def test_a_good_book_passes(tmp_path, capsys):
    toc, html = write_book(tmp_path, good_pages())
    assert check_html.check(toc, html) == []
    assert check_html.main(["--toc", str(toc), "--html", str(html)]) == 0
    assert "every internal link and anchor resolves" in capsys.readouterr().out


def test_a_defect_makes_main_fail(tmp_path, capsys):
    pages = good_pages()
    pages["chapter"] += '<a href="intro.html#gone">x</a>'
    toc, html = write_book(tmp_path, pages)
    assert check_html.main(["--toc", str(toc), "--html", str(html)]) == 1
    err = capsys.readouterr().err
    assert "broken link book/chapter.html -> intro.html#gone" in err and "1 problem(s)" in err


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('<a href="chapter.html#no-such-id">x</a>', "book/intro.html -> chapter.html#no-such-id: no id 'no-such-id'"),
        ('<a href="#no-such-id">x</a>', "book/intro.html -> #no-such-id: no id 'no-such-id' in book/intro.html"),
        ('<a href="missing.html">x</a>', "book/intro.html -> missing.html:"),
        ('<a href="missing.html#intro-fig">x</a>', "book/intro.html -> missing.html#intro-fig:"),
        ('<a href="../_sources/book/intro.ipynb">x</a>', "book/intro.html -> ../_sources/book/intro.ipynb:"),
        ('<a href="../../_toc.yml">x</a>', "book/intro.html -> ../../_toc.yml: "),  # exists, but is not published
    ],
)
def test_a_broken_internal_link_fails(tmp_path, extra, expected):
    problems = problems_with(tmp_path, intro=extra)
    assert len(problems) == 1
    assert "broken link" in problems[0] and expected in problems[0]


def test_an_anchor_is_looked_up_in_the_target_page_not_the_source(tmp_path):
    # "chapter-fig" exists in chapter.html only: linking it from intro.html as a same-page anchor is broken
    problems = problems_with(tmp_path, intro='<a href="#chapter-fig">x</a>')
    assert len(problems) == 1 and "no id 'chapter-fig' in book/intro.html" in problems[0]


@pytest.mark.parametrize(
    "img",
    [
        '<img src="../_images/0123456789abcdef0123456789abcdef.png" />',
        '<img alt="" src="../_images/0123456789abcdef0123456789abcdef.png" />',
        '<img alt="   " src="../_images/0123456789abcdef0123456789abcdef.png" />',
        # what myst-nb writes for a figure shown by a code cell, or glued without :alt:
        f'<img alt="{FIG}" src="{FIG}" />',
        '<img alt="0123456789abcdef0123456789abcdef.png" src="../_images/0123456789abcdef0123456789abcdef.png" />',
        '<img alt="0123456789abcdef0123456789abcdef" src="../_images/0123456789abcdef0123456789abcdef.png" />',
        '<img alt="png" src="../_images/0123456789abcdef0123456789abcdef.png" />',
        '<img alt="Image." src="../_images/0123456789abcdef0123456789abcdef.png" />',
        '<img alt="&lt;Figure size 640x480 with 1 Axes&gt;" src="../_images/0123456789abcdef0123456789abcdef.png" />',
        '<img alt="Error against steps" src="../_images/0123456789abcdef0123456789abcdef.png" />',  # a title
        '<img alt="logo_colab.png" src="../_static/images/logo_colab.png">',
        '<img alt="image" src="https://example.org/badge.svg">',
    ],
)
def test_an_image_without_meaningful_alt_text_fails(tmp_path, img):
    problems = problems_with(tmp_path, chapter=f'<div class="cell_output">{img}</div>')
    assert len(problems) == 1
    assert "book/chapter.html: <img src=" in problems[0] and "alt" in problems[0]


def test_the_alt_check_reads_the_built_figure_of_myst_nb(tmp_path):
    # a figure glued with :alt: passes even inside a cell output; the same figure glued without one fails
    glued = f'<figure><img alt="{FIGURE_ALT}" src="../_images/0123456789abcdef0123456789abcdef.png" /></figure>'
    assert problems_with(tmp_path / "with", chapter=glued) == []
    bare = glued.replace(FIGURE_ALT, "../_images/0123456789abcdef0123456789abcdef.png")
    assert len(problems_with(tmp_path / "without", chapter=bare)) == 1


def test_every_figure_directive_of_the_book_has_alt_text():
    directive = re.compile(r"^(`{3,}|:{3,})\{(glue:figure|figure|image)\}[^\n]*\n((?::[^\n]*\n)*)", re.MULTILINE)
    found, missing = 0, []
    for source in sorted((ROOT / "book").glob("*.md")):
        for match in directive.finditer(source.read_text(encoding="utf8")):
            found += 1
            alt = re.search(r"^:alt:(.*)$", match.group(3), re.MULTILINE)
            if alt is None or check_html.alt_problem("../_images/figure.png", alt.group(1).strip()):
                missing.append(f"{source.name}: {match.group(0).splitlines()[0]}")
    assert found >= 50, "the figure directives were not found: has their syntax changed?"
    assert missing == [], f"figures without meaningful :alt: text: {missing}"


def test_a_page_without_the_version_footer_fails(tmp_path):
    toc, html = write_book(tmp_path, good_pages())
    page = html / "book" / "chapter.html"
    page.write_text(page.read_text(encoding="utf8").replace("diffcore-version", "other"), encoding="utf8")
    assert any("footer" in p and p.startswith("book/chapter") for p in check_html.check(toc, html))


def test_a_figure_with_a_transparent_background_fails(tmp_path):
    """Readable on the dark theme: a figure PNG with see-through pixels is refused, an opaque one passes."""
    toc, html = write_book(tmp_path, good_pages())
    figure = html / "_images" / "0123456789abcdef0123456789abcdef.png"
    Image.new("RGBA", (4, 4), (255, 255, 255, 0)).save(figure)
    assert any("transparent background" in p for p in check_html.check(toc, html))
    Image.new("RGBA", (4, 4), (255, 255, 255, 255)).save(figure)
    assert not any("transparent background" in p for p in check_html.check(toc, html))
