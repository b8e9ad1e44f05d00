"""Search over time grids and per-step solver schedules, measured against a high-accuracy reference.

This layer sits above the samplers and the correctness kit (:mod:`diffcore.testing`, whose DOP853
reference it optimises against), so neither of them imports it.
"""

from diffcore.search._gits import GITSResult, gits_grid, gits_grid_family
from diffcore.search._grid import (
    GRID_FAMILIES,
    GRID_INITS,
    SEARCH_OBJECTIVES,
    GridSearchResult,
    ScoreScale,
    fractions_of_grid,
    grid_from_fractions,
    grid_from_parameters,
    optimize_grid,
)
from diffcore.search._schedule import SCHEDULE_COEFFICIENTS, optimize_schedule, training_family

__all__ = [
    "GRID_FAMILIES",
    "GRID_INITS",
    "SCHEDULE_COEFFICIENTS",
    "SEARCH_OBJECTIVES",
    "GITSResult",
    "GridSearchResult",
    "ScoreScale",
    "fractions_of_grid",
    "gits_grid",
    "gits_grid_family",
    "grid_from_fractions",
    "grid_from_parameters",
    "optimize_grid",
    "optimize_schedule",
    "training_family",
]
