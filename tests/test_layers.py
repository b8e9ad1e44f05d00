"""The layers of ``diffcore`` (DESIGN.md §3), read from the source: no module imports a layer above it.

Every module's ``diffcore`` imports (``import diffcore.x``, ``from diffcore.x import ...``,
``from diffcore import x``, at any depth of the file, lazy imports inside functions included) are
parsed with :mod:`ast`, mapped to the top-level unit they belong to (a subpackage such as
``samplers``, or a private module such as ``_validation``), and checked against the rank of that
unit in :data:`LAYERS`.  Units of one layer may import each other, but the graph between units
must have no cycle.  A new subpackage must be given a layer here before it can land.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import diffcore

ROOT = pathlib.Path(diffcore.__file__).parent

#: rank of every unit: a unit may import units of its own rank or below, never above
LAYERS: dict[str, int] = {
    # the array layer
    "_array": 0,
    "_validation": 0,
    "_schedule": 0,
    # problems: processes, interpolants, analytic laws and their exact marginals, converters, metrics
    "processes": 1,
    "interpolants": 1,
    "distributions": 1,
    "_parametrization": 1,
    "metrics": 1,
    # dynamics: reverse SDE, probability-flow ODE, interpolant ODE/SDE
    "dynamics": 2,
    # samplers: one driver, grids, one module per method
    "samplers": 3,
    # applications of the samplers
    "likelihood": 4,
    "fokker_planck": 4,
    "graphs": 4,
    "training": 4,
    "conditional": 4,
    "flowmaps": 4,
    "bridges": 4,
    "theory": 4,
    "geometry": 4,
    "discrete": 4,
    # above everything: the correctness kit and the search over grids and schedules
    "testing": 5,
    "search": 5,
    "interop": 5,
    # the package itself re-exports
    "__init__": 6,
}


def _unit(module: str) -> str:
    """``diffcore.samplers._driver`` -> ``samplers``; ``diffcore`` -> ``__init__``."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """The ``diffcore`` modules a file imports (``from diffcore import x`` counts as ``diffcore.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "diffcore"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "diffcore":
                found |= {f"diffcore.{a.name}" for a in node.names}
            elif node.module.split(".")[0] == "diffcore":
                found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import; diffcore uses absolute imports only")
    return found


def _edges() -> dict[tuple[str, str], list[str]]:
    """``(importing unit, imported unit) -> [the files that make that edge]``."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        src = _unit(_module_name(path))
        for target in _imports(path):
            dst = _unit(target)
            if dst != src:
                edges.setdefault((src, dst), []).append(str(path.relative_to(ROOT.parent)))
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)) for p in ROOT.rglob("*.py")}
    assert units <= set(LAYERS), f"give these units a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_no_module_imports_a_layer_above_it():
    upward = {
        f"{src} (layer {LAYERS[src]}) -> {dst} (layer {LAYERS[dst]})": files
        for (src, dst), files in _edges().items()
        if LAYERS[dst] > LAYERS[src]
    }
    assert not upward, upward


def _cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*trail, node, nxt]
            if nxt not in state and (found := visit(nxt, [*trail, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_the_units_import_each_other_without_cycles():
    cycle = _cycle(set(_edges()))
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize(
    ("edges", "has_cycle"),
    [({("a", "b"), ("b", "c")}, False), ({("a", "b"), ("b", "c"), ("c", "a")}, True), ({("a", "a")}, True)],
)
def test_the_cycle_finder_finds_cycles(edges, has_cycle):
    """The check has power: a planted cycle is found, an acyclic chain passes."""
    assert (_cycle(edges) is not None) == has_cycle


def test_the_import_reader_sees_lazy_and_package_imports(tmp_path):
    """Imports inside functions and ``from diffcore import x`` count: a planted upward import is seen."""
    f = tmp_path / "mod.py"
    f.write_text("def g():\n    from diffcore.testing import fit_order\n\nfrom diffcore import samplers\nimport math\n")
    assert _imports(f) == {"diffcore.testing", "diffcore.samplers"}
