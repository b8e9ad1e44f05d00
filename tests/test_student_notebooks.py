"""The student notebooks (book/_scripts/student_notebooks.py): every solution gone, everything else kept.

The oracles are independent of the script's Markdown parser: solutions are found here by scanning the
source line by line for an opening fence and its closing fence, and a student notebook passes only if
no line of any solution's body survives, the exercises and code cells are those of the source, and
the count the script prints is the count found here.  A few small chapters are executed (``slow``)
up to their first exercise, as a student would run them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
URL = "https://github.com/example/diffcore"

_spec = importlib.util.spec_from_file_location("student_notebooks", BOOK / "_scripts" / "student_notebooks.py")
student_notebooks = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(student_notebooks)  # registered first: its dataclass looks its module up

PAGES = student_notebooks.notebook_pages(ROOT / "_toc.yml")
CHAPTERS = [page.stem for page in PAGES]
# small chapters (jupyter-cache execution time of the whole chapter 3-5 s), executed by the slow test
EXECUTED = ["toolkit", "variational", "backbone"]

OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}")


def source_blocks(text: str, name: str) -> list[list[str]]:
    """The lines (fences included) of each top-level ``{name}`` directive of a MyST source, by line scanning."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opened = OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        # the directive ends at the next line that is its fence, or a longer fence of the same character
        fence = opened["fence"]
        j = next(
            k for k in range(i + 1, len(lines)) if re.fullmatch(re.escape(fence) + fence[0] + "*", lines[k].strip())
        )
        if opened["name"] == name:
            blocks.append(lines[i : j + 1])
        i = j + 1
    return blocks


def notebook_lines(nb: nbformat.NotebookNode, cell_type: str | None = None) -> list[str]:
    return [line for cell in nb.cells if cell_type in (None, cell.cell_type) for line in cell.source.splitlines()]


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> tuple[Path, str]:
    """Run the script's command line once for the whole book; return its output folder and what it printed."""
    out = tmp_path_factory.mktemp("student")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert student_notebooks.main(["--out", str(out)]) == 0
    return out, buffer.getvalue()


def test_the_book_has_exercises_to_hand_out():
    assert {"intro", "toolkit", "laboratory", "checking"} <= set(CHAPTERS)
    assert not {"notation", "bibliography", "status"} & set(CHAPTERS)  # plain pages are not notebooks
    assert set(EXECUTED) <= set(CHAPTERS)
    assert sum(len(source_blocks(page.read_text(), "solution")) for page in PAGES) >= 80


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_student_notebook_has_no_solution(chapter, printed):
    out, table = printed
    text = (BOOK / f"{chapter}.md").read_text()
    solutions, exercises = source_blocks(text, "solution"), source_blocks(text, "exercise")
    assert len(solutions) == len(exercises), chapter  # every exercise of the book has one solution
    nb = nbformat.read(out / f"{chapter}.ipynb", as_version=4)
    nbformat.validate(nb)
    student = notebook_lines(nb)

    assert not [line for line in student if re.match(r"\s*(`{3,}|:{3,})\{solution", line)]
    # every line of a solution's body that the chapter does not also say elsewhere
    elsewhere = text
    for block in solutions:
        elsewhere = elsewhere.replace("\n".join(block), "")
    body = {line.strip() for block in solutions for line in block[1:-1] if len(line.strip()) > 25}
    body -= {line.strip() for line in elsewhere.splitlines()}
    assert bool(body) == bool(solutions), chapter
    survivors = body & {line.strip() for line in student}
    assert not survivors, f"{chapter}: solution text left in the student notebook: {sorted(survivors)[:3]}"
    # the exercises stay, word for word, and so does every code cell
    for block in exercises:
        assert "\n".join(block) in "\n".join(notebook_lines(nb, "markdown")), block[:2]
    source = jupytext.reads(text, fmt="myst")
    assert [c.source for c in nb.cells if c.cell_type == "code"][1:] == [
        c.source for c in source.cells if c.cell_type == "code"
    ]
    assert nb.cells[0].source.startswith("# diffcore-install") and nb.cells[0].metadata["tags"] == ["remove-cell"]
    # the count the script printed is the count found here
    row = re.search(rf"^{chapter}\s+(\d+)\s+(\d+)\s+(\d+)$", table, flags=re.MULTILINE)
    assert row and tuple(map(int, row.groups())) == (len(exercises), len(solutions), 0), table


def test_printed_table_covers_every_chapter(printed):
    out, table = printed
    assert sorted(p.stem for p in out.glob("*.ipynb")) == sorted(CHAPTERS)
    assert f"{len(CHAPTERS)} student notebooks in {out}" in table


MYST = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

```{{code-cell}} ipython3
x = 1
```

```{{exercise}}
:label: ex-a

Compute $x$.
```

:::{{solution}} ex-a
:class: dropdown

It is one.
:::

Text between.

````{{solution}} ex-a
An inner fence must not end the solution:
```python
x = 2
```
still the solution.
````

```{{exercise}}
:label: ex-b

Plot $x$.
```

```{{solution-start}} ex-b
```

Start of a gated solution.

```{{code-cell}} ipython3
plot(x)
```

```{{solution-end}}
```

After the gate.

```{{code-cell}} ipython3
:tags: [solution]

answer = 42
```
{tail}"""


def _student(text: str, tmp_path: Path) -> tuple[nbformat.NotebookNode, object]:
    path = tmp_path / "chapter.md"
    path.write_text(text)
    return student_notebooks.student_notebook(path, URL)


def test_every_form_of_solution_is_removed(tmp_path):
    nb, removed = _student(MYST.format(tail=""), tmp_path)
    text = "\n".join(notebook_lines(nb))
    assert (removed.exercises, removed.solutions, removed.code_cells) == (2, 3, 1)
    for gone in ("It is one", "inner fence", "x = 2", "still the solution", "gated", "plot(x)", "answer = 42"):
        assert gone not in text, gone
    for kept in ("x = 1", "Compute $x$.", "Text between.", "Plot $x$.", "After the gate."):
        assert kept in text, kept
    assert [c.source for c in nb.cells if c.cell_type == "code"][1:] == ["x = 1"]
    assert '%pip install --quiet "diffcore @ git+https://github.com/example/diffcore"' in nb.cells[0].source


def test_a_solution_it_cannot_remove_stops_the_script(tmp_path):
    nested = "\n:::::{admonition} Bonus\n::::{solution} ex-a\nhidden in an admonition\n::::\n:::::\n"
    with pytest.raises(ValueError, match="not removed"):
        _student(MYST.format(tail=nested), tmp_path)
    with pytest.raises(ValueError, match="never closed"):
        _student(MYST.format(tail="\n```{solution-start} ex-a\n```\n\nno end\n"), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", EXECUTED)
def test_student_notebook_runs_up_to_the_first_exercise(chapter, printed):
    out, _ = printed
    nb = nbformat.read(out / f"{chapter}.ipynb", as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "```{exercise}" in c.source)
    code = [c for c in nb.cells[:first] if c.cell_type == "code"]
    assert len(code) >= 3, f"{chapter}: only {len(code)} code cells before the first exercise"
    nb.cells = nb.cells[:first]
    start = time.perf_counter()
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}}).execute()
    seconds = time.perf_counter() - start
    assert all(c.get("execution_count") for c in code), chapter  # every cell ran (errors would have raised)
    assert seconds < 60, f"{chapter}: {seconds:.0f} s up to the first exercise"
