"""Every chapter's verification cell fails when the numbers are wrong.

The book checks its headline claims in a last "Verification" cell, and `make book` fails when
an assertion there fails.  This file makes sure those assertions are not vacuous: it executes
each chapter (the MyST source, through jupytext and nbclient, in ``book/`` like the book build)
after a first cell that makes ``diffcore`` wrong in one controlled way, and requires that the
chapter then stops with an ``AssertionError`` *in its verification cell*.  All cells before it
must still run: the perturbation is small enough not to break the computations, only their
agreement with the closed forms.

Perturbations (applied by monkeypatching the class, so every field the chapter builds sees it):

- ``score 0.9x``, ``score 1.1x``, ``score 1.2x``: every exact score is scaled by that factor
  (``ExactField`` of kind ``"score"`` and the interpolant fields' score and velocity).  Every
  chapter that samples, estimates or converts with an exact field must notice all three.
- ``graph_score 0.9x`` etc.: the graph laboratory's exact joint score is scaled
  (``GraphLaboratory.exact_score``), for the graphs chapter, whose laboratory is not an ``ExactField``.
- ``discrete_denoiser 0.9x`` etc.: the discrete laboratory's exact denoiser ``p(x_0 | x_t)`` is tempered
  to the power 0.9, 1.1, 1.2 and renormalised (``diffcore.discrete.ExactDenoiser``), for the discrete chapter.
- ``diffusion``: the process's ``g(t)^2`` is 2 % too large, i.e. the SDE no longer matches its
  own marginals (for the toolkit chapter, whose claims are about SDEs, not scores).

The chapter runs are marked ``book``: `make book-verify` runs them (CI does, after `make book`);
`make test` runs the rest of this file.
"""

from __future__ import annotations

import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"


def _score_prelude(factor: float) -> str:
    return f"""
import diffcore
from diffcore.distributions._marginal import ExactField
from diffcore.interpolants._fields import InterpolantFields

def _scaled(method, kinds=None):
    def wrapped(self, *args, **kwargs):
        out = method(self, *args, **kwargs)
        return out * {factor!r} if kinds is None or self.kind in kinds else out
    return wrapped

ExactField.__call__ = _scaled(ExactField.__call__, kinds=("score",))
InterpolantFields.score = _scaled(InterpolantFields.score)
InterpolantFields.velocity = _scaled(InterpolantFields.velocity)
"""


def _graph_score_prelude(factor: float) -> str:
    return f"""
from diffcore.graphs import GraphLaboratory

_exact_score = GraphLaboratory.exact_score

def _scaled_graph_score(self, system):
    score = _exact_score(self, system)

    def scaled(X, A, t, mask=None):
        s_x, s_a = score(X, A, t, mask)
        return {factor!r} * s_x, {factor!r} * s_a

    return scaled

GraphLaboratory.exact_score = _scaled_graph_score
"""


def _conditional_prelude(factor: float) -> str:
    """Every exact score of the laboratory wrong by ``factor``: unconditional, conditional, classifier, likelihood."""
    return (
        _score_prelude(factor)
        + """
from diffcore.conditional import _labelled, _posterior

for _cls in (_labelled.ConditionalScore, _labelled.ClassifierScore, _posterior.LikelihoodScore):
    _cls.__call__ = _scaled(_cls.__call__)
"""
    )


def _discrete_prelude(factor: float) -> str:
    """The discrete laboratory's exact denoiser tempered: ``p(x_0 | x_t)^factor``, renormalised per token.

    Everything the discrete chapter derives from the exact denoiser (reverse rates, concrete scores, the
    samplers' steps, guided denoisers) inherits the error; tempering keeps a valid law (rows sum to 1,
    zeros stay zero), so the computations run and only their agreement with the exact laws breaks.
    """
    return f"""
from diffcore.discrete import _exact

_denoise = _exact.ExactDenoiser.__call__

def _tempered(self, *args, **kwargs):
    p = _denoise(self, *args, **kwargs) ** {factor!r}
    return p / p.sum(axis=-1, keepdims=True)

_exact.ExactDenoiser.__call__ = _tempered
"""


# The score perturbations bracket the exact field from both sides: a score 10 % too short, 10 %
# and 20 % too long.  A verification cell that claims to notice a score error of 10 to 20 % must
# notice all three (the book review of 2026-12 found checks that passed 0.9x and 1.2x).
SCALES = {"0.9x": 0.9, "1.1x": 1.1, "1.2x": 1.2}
PERTURBATIONS = {f"score {name}": _score_prelude(f) for name, f in SCALES.items()}
PERTURBATIONS |= {f"graph_score {name}": _graph_score_prelude(f) for name, f in SCALES.items()}
PERTURBATIONS |= {f"conditional {name}": _conditional_prelude(f) for name, f in SCALES.items()}
PERTURBATIONS |= {f"discrete_denoiser {name}": _discrete_prelude(f) for name, f in SCALES.items()}
PERTURBATIONS["diffusion"] = """
from diffcore.processes import AbstractProcess

_g2 = AbstractProcess.diffusion_squared
AbstractProcess.diffusion_squared = lambda self, t: 1.02 * _g2(self, t)
AbstractProcess.diffusion = lambda self, t: (1.02 * _g2(self, t)) ** 0.5
"""

_SCORE = tuple(f"score {name}" for name in SCALES)
_CONDITIONAL = tuple(f"conditional {name}" for name in SCALES)
_DISCRETE = tuple(f"discrete_denoiser {name}" for name in SCALES)
CHAPTERS = {
    "intro": _SCORE,
    "toolkit": ("diffusion",),
    "laboratory": _SCORE,
    "variational": _SCORE,
    "score": _SCORE,
    "sde": _SCORE,
    "flow": _SCORE,
    "backbone": _SCORE,
    "fokker_planck": _SCORE,
    "likelihood": _SCORE,
    "solvers": _SCORE,
    "flowmaps": _SCORE,
    "refinements": _SCORE,
    "graphs": tuple(f"graph_score {name}" for name in SCALES),
    "discrete": _DISCRETE,
    "checking": _SCORE,
    "map": _SCORE,
    "guidance": _CONDITIONAL,
    "inverse": _CONDITIONAL,
    "bridges": _SCORE,
    "theory": _SCORE,
}
CASES = [(chapter, p) for chapter, perturbations in sorted(CHAPTERS.items()) for p in perturbations]


def _verification_index(nb: nbformat.NotebookNode) -> int:
    """Index of the first code cell after the markdown heading ``## Verification``."""
    seen = False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and any(line.strip() == "## Verification" for line in cell.source.splitlines()):
            seen = True
        elif seen and cell.cell_type == "code":
            return i
    raise AssertionError("chapter has no '## Verification' heading followed by a code cell")


def run_until_failure(chapter: str, prelude: str) -> tuple[int | None, str, int]:
    """Execute ``book/<chapter>.md`` after ``prelude``; return (failing cell, error name, verification cell).

    The failing cell index is ``None`` when every cell ran.  Indices refer to the chapter's
    own cells (the prelude is not counted).
    """
    nb = jupytext.read(BOOK / f"{chapter}.md")
    target = _verification_index(nb)
    nb.cells.insert(0, nbformat.v4.new_code_cell(prelude))
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}})
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, i)
            except CellExecutionError as err:
                return i - 1, err.ename, target
    return None, "", target


def test_every_chapter_is_covered():
    toc = (ROOT / "_toc.yml").read_text()
    chapters = {p.stem for p in BOOK.glob("*.md")} - {"notation", "bibliography", "status", "instructor", "changelog"}
    assert chapters == set(CHAPTERS), chapters ^ set(CHAPTERS)
    assert all(f"book/{c}" in toc for c in CHAPTERS)


@pytest.mark.book
@pytest.mark.parametrize(("chapter", "perturbation"), CASES, ids=[f"{c}-{p}" for c, p in CASES])
def test_verification_cell_fails_on_wrong_numbers(chapter, perturbation):
    start = time.perf_counter()
    failed, ename, target = run_until_failure(chapter, PERTURBATIONS[perturbation])
    elapsed = time.perf_counter() - start
    assert failed is not None, f"{chapter}: ran to the end with a wrong {perturbation} ({elapsed:.0f} s)"
    assert (failed, ename) == (target, "AssertionError"), (
        f"{chapter}: expected an AssertionError in the verification cell {target}, got {ename} in cell {failed}"
    )


@pytest.mark.book
def test_unperturbed_chapter_runs_to_the_end():
    """The control: with nothing perturbed the same harness runs a whole chapter."""
    failed, ename, _ = run_until_failure("variational", "")
    assert failed is None, (failed, ename)


def test_install_cell_is_first_hidden_and_idempotent(tmp_path):
    """book/_ext/notebooks.py puts one hidden install cell first; it is valid IPython and a no-op here."""
    import sys

    from IPython.core.inputtransformer2 import TransformerManager

    sys.path.insert(0, str(BOOK / "_ext"))
    try:
        import notebooks
    finally:
        sys.path.remove(str(BOOK / "_ext"))
    path = tmp_path / "chapter.ipynb"
    nbformat.write(jupytext.read(BOOK / "variational.md"), path)
    for _ in range(2):
        notebooks._add_install_cell(path, "https://github.com/example/diffcore")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first, second = nb.cells[0], nb.cells[1]
    assert first.metadata["tags"] == ["remove-cell"] and not second.source.startswith(notebooks.INSTALL_MARKER)
    assert '%pip install --quiet "diffcore @ git+https://github.com/example/diffcore"' in first.source
    python = TransformerManager().transform_cell(first.source)
    assert "get_ipython().run_line_magic('pip', 'install" in python
    namespace = {"get_ipython": lambda: pytest.fail("diffcore is installed: the cell must not call pip")}
    exec(compile(python, "install-cell", "exec"), namespace)
