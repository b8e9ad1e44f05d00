"""The student notebooks (book/_scripts/student_notebooks.py): every solution gone, everything else kept.

The oracles are independent of the script's Markdown parser: solutions are found here by scanning the
source line by line for an opening fence and its closing fence, and a student notebook passes only if
no line of any solution's body survives, the exercises and code cells are those of the source, and
the count the script prints is the count found here.  Two small chapters are executed (``slow``) by
the script's ``--execute`` up to their first exercise, as a student would run them, and the cells it
reports having run are counted here from the source; tiny chapters check that a cell that raises, or
a notebook that runs past its time, fails the run and is named.
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

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
URL = "https://github.com/example/diffcore"

_spec = importlib.util.spec_from_file_location("student_notebooks", BOOK / "_scripts" / "student_notebooks.py")
student_notebooks = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(student_notebooks)  # registered first: its dataclass looks its module up

PAGES = student_notebooks.notebook_pages(ROOT / "_toc.yml")
CHAPTERS = [page.stem for page in PAGES]
# small chapters (jupyter-cache execution time of the whole chapter 3-4 s), executed by the slow test
EXECUTED = ["variational", "backbone"]

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


def code_cells_before_first_exercise(text: str) -> int:
    """Code cells of a MyST source above its first ``{exercise}`` (all of them if it has none), by line scanning."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if re.match(r"(`{3,}|:{3,})\{exercise\}", line)), len(lines))
    return sum(1 for line in lines[:first] if re.match(r"`{3,}\{code-cell\}", line))


def run_main(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = student_notebooks.main(argv)
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.mark.slow
def test_student_notebooks_run_up_to_the_first_exercise(tmp_path):
    status, table, errors = run_main(["--out", str(tmp_path), "--execute", *EXECUTED])
    assert status == 0, errors
    assert f"{len(EXECUTED)} of {len(EXECUTED)} executed" in table
    for chapter in EXECUTED:
        expected = code_cells_before_first_exercise((BOOK / f"{chapter}.md").read_text())
        assert expected >= 3, f"{chapter}: only {expected} code cells before the first exercise"
        row = re.search(rf"^{chapter}\s+(\d+)\s+(\d+\.\d)$", table, flags=re.MULTILINE)
        assert row and int(row[1]) == expected, table  # every cell above the exercise, not the install cell
        assert float(row[2]) < 60, f"{chapter}: {row[2]} s up to the first exercise"
        written = nbformat.read(tmp_path / f"{chapter}.ipynb", as_version=4)  # handed out unexecuted
        assert not [c for c in written.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]


TINY = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# {name}

```{{code-cell}} ipython3
{before}
```

```{{exercise}}
:label: ex-{name}

Do it.
```

```{{code-cell}} ipython3
raise RuntimeError("a cell after the first exercise ran")
```
"""


@pytest.mark.slow
def test_a_failing_or_slow_student_notebook_fails_the_run(tmp_path):
    before = {  # the kernel starts in book/ with one OpenMP thread, as the book build runs it
        "passes": f"import os\nassert os.getcwd() == {str(BOOK)!r}\nassert os.environ['OMP_NUM_THREADS'] == '1'",
        "raises": "x = 1 / 0",
        # two cells of 4 s each: within 6 s apiece, not within 6 s for the notebook
        "sleeps": "import time\ntime.sleep(4)\n```\n\n```{code-cell} ipython3\ntime.sleep(4)",
    }
    for name, code in before.items():
        (tmp_path / f"{name}.md").write_text(TINY.format(name=name, before=code))
    (tmp_path / "_toc.yml").write_text("root: passes\nchapters:\n  - file: raises\n  - file: sleeps\n")
    (tmp_path / "_config.yml").write_text(f"repository:\n  url: {URL}\n")
    argv = ["--toc", str(tmp_path / "_toc.yml"), "--config", str(tmp_path / "_config.yml"), "--out", str(tmp_path)]
    start = time.perf_counter()
    status, table, errors = run_main([*argv, "--execute", "--timeout", "6"])
    assert time.perf_counter() - start < 40
    assert status == 1
    assert re.search(r"^passes\s+1\s+\d+\.\d$", table, flags=re.MULTILINE), table
    assert "1 of 3 executed" in table
    nb = nbformat.read(tmp_path / "raises.ipynb", as_version=4)
    cell = next(i for i, c in enumerate(nb.cells) if "1 / 0" in c.source)
    assert f"FAILED raises: cell {cell} raised ZeroDivisionError" in errors
    assert re.search(r"FAILED sleeps: cell [34] did not finish; 6 s per notebook", errors), errors
    assert "passes" not in errors
