"""Search over time grids and per-step solver schedules, measured against a high-accuracy reference.

This layer sits above the samplers and the correctness kit (:mod:`diffcore.testing`, whose DOP853
reference it optimises against), so neither of them imports it.
"""

from diffcore.search._grid import (
    GRID_FAMILIES,
    GRID_INITS,
    SEARCH_OBJECTIVES,
    GridSearchResult,
    grid_from_parameters,
    optimize_grid,
)

__all__ = [
    "GRID_FAMILIES",
    "GRID_INITS",
    "SEARCH_OBJECTIVES",
    "GridSearchResult",
    "grid_from_parameters",
    "optimize_grid",
]
