"""A pytest plugin: the kit's analytic problems as fixtures, for checking your own code in your own tests.

Installed with diffcore (entry point ``pytest11: diffcore``), so in any project that has diffcore:

.. code-block:: python

    from diffcore.testing import check_sampler

    def test_my_sampler(diffcore_problem):            # runs once per problem
        report = check_sampler(my_sampler, diffcore_problem, declared_order=1)
        assert report.passed, report

Fixtures
--------
``diffcore_problem``
    a :class:`~diffcore.testing.Problem`, the test parametrised over the problems (ids are the
    names); by default ``"P1"``, ``"P2"``, ``"skewed"`` and ``"mixture16"`` (the pathwise
    benchmarks; ``"graphs"`` only when asked for).
``diffcore_gaussian_problem``
    the same over the Gaussian problems among those selected (``"P2"`` when there are none): the
    ones :func:`~diffcore.testing.check_sampler` accepts with ``kind="sde"``.

Selecting problems: mark a test ``@pytest.mark.diffcore_problems("P1", "graphs")``, or run pytest
with ``--diffcore-problems=P1,P2`` (the option narrows every test; the marker wins where both are
given).  Problems are built once per session (they are immutable).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

#: the problems a test is parametrised over when nothing narrows it
DEFAULT_PROBLEMS = ("P1", "P2", "skewed", "mixture16")


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("diffcore")
    group.addoption(
        "--diffcore-problems",
        default=None,
        help="comma-separated diffcore.testing problem names for the diffcore_problem fixture (default: "
        + ",".join(DEFAULT_PROBLEMS)
        + ")",
    )


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", "diffcore_problems(*names): the diffcore.testing problems the diffcore_problem fixture runs over"
    )
    option = config.getoption("--diffcore-problems")
    if option is not None:
        _check_names([s.strip() for s in option.split(",") if s.strip()], "--diffcore-problems")


def _check_names(names: list[str], where: str) -> list[str]:
    from diffcore.testing import PROBLEMS

    unknown = [n for n in names if n not in PROBLEMS]
    if unknown or not names:
        raise pytest.UsageError(f"{where}: unknown diffcore problem(s) {unknown}; known: {', '.join(PROBLEMS)}")
    return names


@functools.cache
def _problem(name: str) -> Any:
    from diffcore.testing import Problem

    return Problem(name)


def _selected(metafunc: Any) -> list[str]:
    marker = metafunc.definition.get_closest_marker("diffcore_problems")
    if marker is not None:
        return _check_names(list(marker.args), f"@pytest.mark.diffcore_problems on {metafunc.definition.name}")
    option = metafunc.config.getoption("--diffcore-problems")
    if option:
        return [s.strip() for s in option.split(",") if s.strip()]
    return list(DEFAULT_PROBLEMS)


def pytest_generate_tests(metafunc: Any) -> None:
    for fixture in ("diffcore_problem", "diffcore_gaussian_problem"):
        if fixture in metafunc.fixturenames:
            names = _selected(metafunc)
            if fixture == "diffcore_gaussian_problem":
                names = [n for n in names if _problem(n).is_gaussian] or ["P2"]
            metafunc.parametrize(fixture, names, indirect=True, ids=names)


@pytest.fixture
def diffcore_problem(request: Any) -> Any:
    """A :class:`diffcore.testing.Problem`; the test runs once per selected problem."""
    return _problem(request.param)


@pytest.fixture
def diffcore_gaussian_problem(request: Any) -> Any:
    """A Gaussian :class:`diffcore.testing.Problem` (for ``check_sampler(..., kind="sde")``)."""
    return _problem(request.param)
