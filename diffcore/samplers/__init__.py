"""Samplers: one driver, time grids, and one small module per method with a declared order."""

from diffcore.samplers._adaptive import Adaptive
from diffcore.samplers._base import AbstractSolver
from diffcore.samplers._bdia import BDIA
from diffcore.samplers._ddim import DDIM
from diffcore.samplers._deis import DEIS1, DEIS2, DEIS3
from diffcore.samplers._dpm import DPMSolver2, DPMSolver3, DPMSolverPP2M, DPMSolverPP3M
from diffcore.samplers._driver import Solution, integrate, sample
from diffcore.samplers._edm import EDMHeun, EDMStochastic
from diffcore.samplers._exponential import denoise
from diffcore.samplers._grids import GRIDS, time_grid
from diffcore.samplers._inversion import Inversion, invert
from diffcore.samplers._momentum import GHVB, HeavyBall
from diffcore.samplers._mrs import MRSODE, MRSSDE
from diffcore.samplers._ode import RK4, Euler, Heun
from diffcore.samplers._pc import PredictorCorrector
from diffcore.samplers._per_step import SCHEDULABLE_METHODS, PerStepSolver
from diffcore.samplers._registry import ADAPTIVE_SOLVERS, SOLVERS, get_solver
from diffcore.samplers._sde import Ancestral, EulerMaruyama
from diffcore.samplers._search import (
    GRID_FAMILIES,
    GRID_INITS,
    SEARCH_OBJECTIVES,
    GridSearchResult,
    grid_from_parameters,
    optimize_grid,
)
from diffcore.samplers._stability import STABILITY_METHODS, amplification_factor, stability_region
from diffcore.samplers._statistics import StepStatistics
from diffcore.samplers._unipc import UniPC2, UniPC3

__all__ = [
    "ADAPTIVE_SOLVERS",
    "BDIA",
    "DDIM",
    "DEIS1",
    "DEIS2",
    "DEIS3",
    "GHVB",
    "GRIDS",
    "GRID_FAMILIES",
    "GRID_INITS",
    "MRSODE",
    "MRSSDE",
    "RK4",
    "SCHEDULABLE_METHODS",
    "SEARCH_OBJECTIVES",
    "SOLVERS",
    "STABILITY_METHODS",
    "AbstractSolver",
    "Adaptive",
    "Ancestral",
    "DPMSolver2",
    "DPMSolver3",
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "EDMHeun",
    "EDMStochastic",
    "Euler",
    "EulerMaruyama",
    "GridSearchResult",
    "HeavyBall",
    "Heun",
    "Inversion",
    "PerStepSolver",
    "PredictorCorrector",
    "Solution",
    "StepStatistics",
    "UniPC2",
    "UniPC3",
    "amplification_factor",
    "denoise",
    "get_solver",
    "grid_from_parameters",
    "integrate",
    "invert",
    "optimize_grid",
    "sample",
    "stability_region",
    "time_grid",
]
