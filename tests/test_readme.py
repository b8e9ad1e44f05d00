"""The README's examples with a ``>>>`` prompt run as doctests (the "Check your own sampler" section)."""

from __future__ import annotations

import doctest
import pathlib

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_doctests_pass():
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 4, result  # the kit's example: import, process, sampler, check
    assert result.failed == 0, result
