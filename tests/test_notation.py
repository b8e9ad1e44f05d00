"""One notation across the book, checked mechanically.

The review of 2026-12 found the probability-flow velocity written ``u`` in two chapters and ``v``
in three, while ``v`` is also Salimans' v-prediction; ``b`` with three argument orders and also as
a coefficient; ``λ`` with three meanings; the dimension as ``d`` and ``D``.  The notation page
(``book/notation.md``) now fixes one letter for each, and this file scans the prose and
mathematics of every chapter (code cells excluded) for the patterns that would bring a clash back:

- ``u`` is the probability-flow velocity of a diffusion (and a generic ODE field): any definition
  ``X_t(x) = f(t) x - ½ g² ∇ log p_t`` must use ``u``;
- ``v`` is only v-prediction: never a field of ``x`` (``v(x, t)``, ``v_t(x)``, ``div v_t``, ``p_t v_t``);
- ``b`` is the interpolant / flow-matching velocity, written ``b_t(x)``: never ``b(t, x)`` or ``b(x, s)``;
- ``λ`` is the log-SNR; a loss weight is ``w(t)``, never ``λ = σ²``, and the Fokker–Planck
  chapter (where ``λ`` is the penalty weight) never writes ``λ(t)``;
- the dimension is ``d``: never ``\\R^D``.

Each rule is tested on the text the review quoted, so that the scan cannot pass vacuously.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(p.stem for p in BOOK.glob("*.md") if p.stem not in {"bibliography", "status"})

_NOT_LETTER = r"(?<![\\A-Za-z_])"
RULES: dict[str, tuple[re.Pattern[str], frozenset[str]]] = {
    # name: (pattern of a violation, chapters where the pattern is allowed)
    "v is v-prediction, not a field of x": (
        re.compile(
            _NOT_LETTER + r"v(?:_\{?[a-z]\}?)?\s*\(\s*x"  # v(x, t), v_t(x), v_t(x_t)
            r"|\\divg\s*\(?\s*v(?:_\{?[a-z]\}?)?(?![A-Za-z])"  # div v, div v_t
            r"|p_t\s*v_t(?![A-Za-z])"  # p_t v_t
        ),
        frozenset(),
    ),
    "the probability-flow velocity is u": (
        re.compile(_NOT_LETTER + r"([A-Za-tv-z])(?:_t)?\s*\((?:x|x,\s*t)\)\s*=\s*f(?:\(t\))?\s*(?:\\[,;]\s*)?x\s*-"),
        frozenset(),
    ),
    "b is written b_t(x)": (re.compile(_NOT_LETTER + r"b\s*\(\s*(?:t|x|s)\s*,"), frozenset()),
    "a loss weight is w(t), not lambda": (re.compile(r"\\lambda\s*(?:\(t\)\s*)?=\s*\\sigma"), frozenset()),
    "lambda(t) is the log-SNR, which the Fokker-Planck chapter does not use": (
        re.compile(r"\\lambda\s*\(t\)"),
        frozenset(set(CHAPTERS) - {"fokker_planck"}),
    ),
    "the dimension is d": (re.compile(r"\\R\^\{?D(?![A-Za-z])"), frozenset()),
}

_CODE_CELL = re.compile(r"^```\{code-cell\}.*?^```", re.S | re.M)


def prose(text: str) -> str:
    """The chapter without its code cells (their variable names are not notation)."""
    return _CODE_CELL.sub("", text)


def violations(text: str, chapter: str) -> list[tuple[str, int, str]]:
    """(rule, line, match) for every notation violation in a chapter's MyST source."""
    out = []
    body = prose(text)
    for name, (pattern, allowed) in RULES.items():
        if chapter in allowed:
            continue
        for m in pattern.finditer(body):
            line = body.count("\n", 0, m.start()) + 1
            out.append((name, line, m.group(0)))
    return out


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_follows_the_notation(chapter):
    found = violations((BOOK / f"{chapter}.md").read_text(), chapter)
    assert not found, f"{chapter}.md (line numbers without code cells): {found}"


# What the review quoted, one per rule: each must be caught (a scan that finds nothing here
# would pass any book).
QUOTED = [
    ("v is v-prediction, not a field of x", r"\frac{\dd x_t}{\dd t} = v(x_t, t)."),
    ("v is v-prediction, not a field of x", r"$\partial_t p_t + \divg(p_t v_t) = 0$"),
    ("v is v-prediction, not a field of x", r"\log p_t(x_t) = -\divg v_t(x_t),"),
    ("the probability-flow velocity is u", r"v_t(x) = f(t)\, x - \tfrac12 g(t)^2\, s_t(x),"),
    ("b is written b_t(x)", r"| $b(t, x)$ | velocity |"),
    ("b is written b_t(x)", r"the flow-matching velocity $b(x, s)$"),
    ("a loss weight is w(t), not lambda", r"with $\lambda = \sigma^2$ is Ho's $L_\text{simple}$"),
    ("the dimension is d", r"$z \in \R^D$"),
]


@pytest.mark.parametrize(("rule", "text"), QUOTED)
def test_each_rule_catches_what_the_review_quoted(rule, text):
    assert rule in {name for name, _, _ in violations(text, "toolkit")}


@pytest.mark.parametrize(
    "text",
    [
        r"u_t(x) = f(t)\, x - \tfrac12 g(t)^2 \grad\log p_t(x)",
        r"\hat v = \alpha \hat\varepsilon - \sigma \hat x_0, \quad v_\theta(x_t, t)",
        r"the velocity $b_t(x) = \E[\dot x_t \mid x_t = x]$ and $\divg u_t$",
        r"$\lambda(t) = \log(\alpha^2/\sigma^2)$, $z \in \R^d$, weight $w(t) = \sigma^2$",
    ],
)
def test_the_chosen_notation_passes(text):
    assert violations(text, "toolkit") == []


def test_code_cells_are_not_notation():
    text = "Text $u_t(x)$.\n```{code-cell} ipython3\nv = velocity(x, t)\nb(t, x)\n```\nMore.\n"
    assert violations(text, "toolkit") == []


def test_notation_page_names_each_letter():
    """The notation page lists the velocity, v-prediction, the interpolant velocity and each λ."""
    page = (BOOK / "notation.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| $")]
    symbols = " ".join(row.split("|")[1] for row in rows)
    for needed in ("u_t(x)", "v = ", "b_t(x)", r"\lambda(t)", r"\lambda", "w(t)", r"\xi"):
        assert needed in symbols, f"notation page has no row for {needed!r}"
    assert not violations(page, "notation")
