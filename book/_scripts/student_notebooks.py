"""Student versions of the chapters: the same notebooks with the solutions removed.

    python book/_scripts/student_notebooks.py --toc _toc.yml --out _build/student [chapter ...]

Every page of ``_toc.yml`` that is a MyST notebook (``book/<chapter>.md`` with a jupytext header) is
read with jupytext, and written to ``<out>/<chapter>.ipynb`` with

* every ``{solution}`` directive of sphinx-exercise removed from the markdown cells, in either
  fence (```` ```{solution} ```` or ``:::{solution}``), found by parsing each cell with the same
  Markdown parser as MyST (markdown-it with the colon-fence plugin), so that a fence inside a
  solution cannot end it early;
* every gated solution removed, from its ``{solution-start}`` to its ``{solution-end}`` directive,
  together with the cells in between (the form sphinx-exercise uses for solutions with code);
* every code cell tagged ``solution`` removed;
* the exercises, the text and all other code kept as they are; a first cell that installs
  ``diffcore`` where it is missing (the one the book's downloadable notebooks start with,
  ``book/_ext/notebooks.py``), then a note that this is the student version.

If any line that opens a solution directive survives (a solution nested in another directive,
say), the script stops with an error instead of handing out a notebook with its answers in it.
It prints one line per chapter: the number of exercises, of solution blocks and of solution code
cells removed.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import yaml
from markdown_it import MarkdownIt
from mdit_py_plugins.colon_fence import colon_fence_plugin

ROOT = Path(__file__).resolve().parents[2]


def _book_extension(name: str):
    """Import ``book/_ext/<name>.py`` (the book's Sphinx extensions) without touching ``sys.path``."""
    spec = importlib.util.spec_from_file_location(f"_book_ext_{name}", ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


install_source = _book_extension("notebooks").install_source  # the install cell of the downloadable notebooks

SOLUTION_TAG = "solution"
# A line that opens a sphinx-exercise directive: a fence of 3+ backticks or colons, then {name}.
DIRECTIVE_LINE = re.compile(r"^\s*(?:`{3,}|:{3,})\s*\{(?P<name>exercise|solution)(?P<gate>-start|-end)?\}")

_PARSER = MarkdownIt("commonmark").use(colon_fence_plugin)


@dataclass(frozen=True)
class Removed:
    """What was taken out of one chapter."""

    exercises: int  # exercises in the source (all kept)
    solutions: int  # solution directives removed, a gated one counted once
    code_cells: int  # code cells tagged `solution` removed (outside gated solutions)


def directive_count(text: str, name: str) -> int:
    """Number of lines of ``text`` that open the directive ``{name}`` (``solution-start`` counts as ``solution``)."""
    matches = [DIRECTIVE_LINE.match(line) for line in text.splitlines()]
    return sum(1 for m in matches if m and m["name"] == name and m["gate"] != "-end")


def _directive_spans(source: str) -> list[tuple[str, int, int]]:
    """(directive, first line, line after the last) of each top-level fenced directive of a markdown cell."""
    spans = []
    for token in _PARSER.parse(source):
        if token.type in ("fence", "colon_fence") and token.map is not None:
            match = re.match(r"\{([\w-]+)\}", token.info.strip())
            if match:
                spans.append((match[1], token.map[0], token.map[1]))
    return spans


def strip_solutions(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int, int]:
    """Remove the solutions from ``nb`` (in place); return it, the solution blocks and tagged code cells removed."""
    blocks = code_cells = 0
    inside_gate = False
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            if inside_gate:
                continue  # part of a gated solution, counted with its {solution-start}
            if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
                code_cells += 1
            else:
                cells.append(cell)
            continue
        lines = cell.source.splitlines()
        keep = [not inside_gate] * len(lines)
        for name, start, stop in _directive_spans(cell.source):
            if name == "solution":
                blocks += 1
                keep[start:stop] = [False] * (stop - start)
            elif name == "solution-start":
                blocks += 1
                inside_gate = True
                keep[start:] = [False] * (len(lines) - start)
            elif name == "solution-end":
                if not inside_gate:
                    raise ValueError(f"{{solution-end}} without {{solution-start}} in cell:\n{cell.source}")
                inside_gate = False
                keep[stop:] = [True] * (len(lines) - stop)
                keep[start:stop] = [False] * (stop - start)
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(line for line, k in zip(lines, keep, strict=True) if k)).strip()
        if text:
            cell.source = text
            cells.append(cell)
    if inside_gate:
        raise ValueError("a {solution-start} directive is never closed by {solution-end}")
    nb.cells = cells
    return nb, blocks, code_cells


def notebook_pages(toc: Path) -> list[Path]:
    """The sources of the pages of ``toc`` that are MyST notebooks, in the order of the book."""
    spec = yaml.safe_load(toc.read_text())
    entries = [spec["root"]]
    for part in [spec, *spec.get("parts", [])]:
        entries += [chapter["file"] for chapter in part.get("chapters", [])]
    pages = [toc.parent / f"{entry}.md" for entry in entries]
    return [page for page in pages if is_myst_notebook(page.read_text())]


def is_myst_notebook(text: str) -> bool:
    """Whether a page starts with the jupytext header of a MyST notebook (plain pages have none)."""
    header = re.match(r"---\n(.*?)\n---\n", text, flags=re.DOTALL)
    meta = yaml.safe_load(header[1]) if header else None
    representation = meta.get("jupytext", {}).get("text_representation", {}) if isinstance(meta, dict) else {}
    return representation.get("format_name") == "myst"


def student_notebook(source: Path, repository_url: str) -> tuple[nbformat.NotebookNode, Removed]:
    """The student version of the MyST notebook ``source``, and what was removed from it."""
    text = source.read_text()
    nb, blocks, code_cells = strip_solutions(jupytext.reads(text, fmt="myst"))
    leftover = [line for cell in nb.cells for line in cell.source.splitlines() if DIRECTIVE_LINE.match(line)]
    leftover = [line for line in leftover if DIRECTIVE_LINE.match(line)["name"] == "solution"]
    if leftover:
        raise ValueError(f"{source.name}: solution directives not removed (nested?): {leftover}")
    note = (
        f"*Student version of the chapter `{source.stem}`: the exercises are here, their solutions are not.*\n"
        "Run the cells in order; the first one installs `diffcore` where it is missing."
    )
    install = nbformat.v4.new_code_cell(install_source(repository_url), metadata={"tags": ["remove-cell"]})
    nb.cells[:0] = [install, nbformat.v4.new_markdown_cell(note)]
    nb.metadata.pop("jupytext", None)
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i, cell in enumerate(nb.cells):  # stable, unique ids: the same source gives the same file
        cell["id"] = f"cell-{i}"
    nbformat.validate(nb)
    return nb, Removed(directive_count(text, "exercise"), blocks, code_cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    parser.add_argument("--config", type=Path, default=ROOT / "_config.yml", help="read repository.url from here")
    parser.add_argument("chapters", nargs="*", help="chapter names (default: every notebook page of the toc)")
    args = parser.parse_args(argv)
    repository_url = yaml.safe_load(args.config.read_text())["repository"]["url"]
    pages = notebook_pages(args.toc)
    if args.chapters:
        unknown = set(args.chapters) - {page.stem for page in pages}
        if unknown:
            parser.error(f"not a notebook page of {args.toc}: {sorted(unknown)}")
        pages = [page for page in pages if page.stem in args.chapters]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{'chapter':<16}{'exercises':>10}{'solutions removed':>19}{'solution code cells':>21}")
    for page in pages:
        nb, removed = student_notebook(page, repository_url)
        nbformat.write(nb, args.out / f"{page.stem}.ipynb")
        print(f"{page.stem:<16}{removed.exercises:>10}{removed.solutions:>19}{removed.code_cells:>21}")
    print(f"{len(pages)} student notebooks in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
