"""Samplers: one driver, time grids, and one small module per method with a declared order."""

from diffcore.samplers._base import AbstractSolver
from diffcore.samplers._ddim import DDIM
from diffcore.samplers._driver import Solution, integrate, sample
from diffcore.samplers._grids import GRIDS, time_grid
from diffcore.samplers._ode import RK4, Euler, Heun
from diffcore.samplers._pc import PredictorCorrector
from diffcore.samplers._registry import SOLVERS, get_solver
from diffcore.samplers._sde import Ancestral, EulerMaruyama

__all__ = [
    "DDIM",
    "GRIDS",
    "RK4",
    "SOLVERS",
    "AbstractSolver",
    "Ancestral",
    "Euler",
    "EulerMaruyama",
    "Heun",
    "PredictorCorrector",
    "Solution",
    "get_solver",
    "integrate",
    "sample",
    "time_grid",
]
