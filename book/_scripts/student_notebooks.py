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

With ``--execute`` it then runs each student notebook as a student would, up to its first exercise:
every code cell before the first ``{exercise}`` directive, in order, in one fresh ``python3`` kernel
started in ``book/`` (as the book build does) with ``OMP_NUM_THREADS=1``; the install cell is left
out, since the environment that runs this already has ``diffcore``. Up to ``--jobs`` notebooks run at
once (one kernel each), each within ``--timeout`` seconds in all. It prints the cells run and the
seconds of each chapter, and exits with status 1, naming the chapter and the cell, if a cell raises
or a notebook runs out of time. The notebooks written to ``--out`` stay unexecuted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import yaml
from markdown_it import MarkdownIt
from mdit_py_plugins.colon_fence import colon_fence_plugin
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"


def _book_extension(name: str):
    """Import ``book/_ext/<name>.py`` (the book's Sphinx extensions) without touching ``sys.path``."""
    spec = importlib.util.spec_from_file_location(f"_book_ext_{name}", ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_notebooks = _book_extension("notebooks")
install_source = _notebooks.install_source  # the install cell of the downloadable notebooks
INSTALL_MARKER = _notebooks.INSTALL_MARKER  # the first line of that cell

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


@dataclass(frozen=True)
class Executed:
    """One student notebook run up to its first exercise."""

    chapter: str
    cells: int  # code cells run
    seconds: float


class NotebookFailed(RuntimeError):
    """A cell of a student notebook raised, or the notebook ran out of time."""


def cells_before_first_exercise(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of the code cells that precede the first ``{exercise}`` of ``nb``, the install cell left out.

    A notebook without an exercise is run to its end.
    """
    exercises = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown" and directive_count(cell.source, "exercise")
    ]
    first = exercises[0] if exercises else len(nb.cells)
    return [
        i
        for i, cell in enumerate(nb.cells[:first])
        if cell.cell_type == "code" and not cell.source.startswith(INSTALL_MARKER)
    ]


async def execute_to_first_exercise(nb: nbformat.NotebookNode, chapter: str, timeout: float) -> Executed:
    """Run the code cells of ``nb`` before its first exercise in a fresh kernel (in place); raise ``NotebookFailed``.

    The kernel starts in ``book/`` with ``OMP_NUM_THREADS=1``; ``timeout`` (seconds) bounds the whole run,
    the kernel's start included.
    """
    indices = cells_before_first_exercise(nb)
    client = NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}})
    start = time.perf_counter()
    async with client.async_setup_kernel(env={**os.environ, "OMP_NUM_THREADS": "1"}):
        for index in indices:
            client.timeout = max(1, math.ceil(timeout - (time.perf_counter() - start)))  # what is left of it
            try:
                await client.async_execute_cell(nb.cells[index], index)
            except CellExecutionError as error:
                raise NotebookFailed(f"{chapter}: cell {index} raised {error.ename}: {error.evalue}") from error
            except (CellTimeoutError, DeadKernelError) as error:
                raise NotebookFailed(f"{chapter}: cell {index} did not finish; {timeout:g} s per notebook") from error
    return Executed(chapter, len(indices), time.perf_counter() - start)


async def execute_all(notebooks: dict[str, nbformat.NotebookNode], jobs: int, timeout: float) -> list[str]:
    """Run each notebook up to its first exercise, ``jobs`` at a time; print one line each; return the failures.

    Each notebook runs in its own kernel process; this process only sends the cells and waits for the replies.
    """
    print(f"\n{'chapter':<16}{'cells run':>10}{'s':>8}   (up to the first exercise, {jobs} at a time)")
    slots = asyncio.Semaphore(jobs)
    failures, total = [], 0.0

    async def one(chapter: str, nb: nbformat.NotebookNode) -> None:
        nonlocal total
        async with slots:
            try:
                run = await execute_to_first_exercise(nb, chapter, timeout)
            except NotebookFailed as error:
                failures.append(str(error))
                print(f"{chapter:<16}{'FAILED':>10}", flush=True)
                return
        total += run.seconds
        print(f"{chapter:<16}{run.cells:>10}{run.seconds:>8.1f}", flush=True)

    await asyncio.gather(*(one(chapter, nb) for chapter, nb in notebooks.items()))
    print(f"{len(notebooks) - len(failures)} of {len(notebooks)} executed, {total:.1f} s of kernel time in all")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    parser.add_argument("--config", type=Path, default=ROOT / "_config.yml", help="read repository.url from here")
    parser.add_argument("--execute", action="store_true", help="run each notebook up to its first exercise")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once (default: 2)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per notebook (default: 300)")
    parser.add_argument("chapters", nargs="*", help="chapter names (default: every notebook page of the toc)")
    args = parser.parse_args(argv)
    repository_url = yaml.safe_load(args.config.read_text())["repository"]["url"]
    pages = notebook_pages(args.toc)
    if args.chapters:
        unknown = set(args.chapters) - {page.stem for page in pages}
        if unknown:
            parser.error(f"not a notebook page of {args.toc}: {sorted(unknown)}")
        pages = [page for page in pages if page.stem in args.chapters]
    if args.jobs < 1 or args.timeout <= 0:
        parser.error(f"--jobs must be at least 1 and --timeout positive; got {args.jobs} and {args.timeout}")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{'chapter':<16}{'exercises':>10}{'solutions removed':>19}{'solution code cells':>21}")
    notebooks = {}
    for page in pages:
        nb, removed = student_notebook(page, repository_url)
        nbformat.write(nb, args.out / f"{page.stem}.ipynb")
        notebooks[page.stem] = nb
        print(f"{page.stem:<16}{removed.exercises:>10}{removed.solutions:>19}{removed.code_cells:>21}")
    print(f"{len(pages)} student notebooks in {args.out}")
    if not args.execute:
        return 0
    failures = asyncio.run(execute_all(notebooks, args.jobs, args.timeout))
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
