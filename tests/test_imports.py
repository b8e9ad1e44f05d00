"""The import contract: optional dependencies stay optional, every public name is documented."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import diffcore as dc


def _run(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", ["diffcore", "diffcore.testing", "diffcore.graphs"])
def test_import_does_not_load_torch_or_pot(module):
    _run(
        f"import {module}, sys; "
        "heavy = sorted(m for m in ('torch', 'ot', 'networkx') if m in sys.modules); "
        "assert not heavy, f'importing {module} loaded {heavy}'"
    )


def test_subprocess_check_can_fail():
    """The subprocess check above does detect a module that was imported."""
    with pytest.raises(AssertionError):
        _run("import json, sys; assert 'json' not in sys.modules")


def test_all_names_exist_and_are_unique():
    assert len(set(dc.__all__)) == len(dc.__all__)
    missing = [name for name in dc.__all__ if not hasattr(dc, name)]
    assert not missing, missing


@pytest.mark.parametrize("name", dc.__all__)
def test_public_name_is_documented(name):
    obj = getattr(dc, name)
    if isinstance(obj, (tuple, dict)):  # registries: PREDICTIONS, GRIDS, SOLVERS
        assert len(obj) > 0
        if isinstance(obj, dict):
            for value in obj.values():
                assert (inspect.getdoc(value) or "").strip(), f"{name}[...] = {value!r} has no docstring"
        return
    doc = inspect.getdoc(obj) or ""
    assert len(doc.strip()) >= 20, f"diffcore.{name} has no real docstring: {doc!r}"


def test_public_functions_document_a_formula_or_a_source():
    """Functions and classes say what they compute: an equation, a reference or a pointer to one."""
    markers = ("=", "(", "et al", "see", "``")
    undocumented = []
    for name in dc.__all__:
        obj = getattr(dc, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        if not any(m in doc for m in markers):
            undocumented.append(name)
    assert not undocumented, undocumented
