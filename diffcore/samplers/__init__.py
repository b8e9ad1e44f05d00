"""Samplers: one driver, time grids, and one small module per method with a declared order and requirements.

The search over grids and per-step methods (:mod:`diffcore.search`) sits above this layer.
"""

from diffcore.samplers._adaptive import Adaptive
from diffcore.samplers._base import AbstractSolver, Requirements
from diffcore.samplers._bdia import BDIA
from diffcore.samplers._ddim import DDIM
from diffcore.samplers._deis import DEIS1, DEIS2, DEIS3
from diffcore.samplers._dpm import DPMSolver2, DPMSolver3, DPMSolverPP2M, DPMSolverPP3M
from diffcore.samplers._dpm_v3 import DPMSolverV3
from diffcore.samplers._driver import Solution, integrate, sample
from diffcore.samplers._edm import EDMHeun, EDMStochastic
from diffcore.samplers._ems import EmpiricalModelStatistics, exact_model_statistics, model_statistics
from diffcore.samplers._evodiff import EVODiff, variance_optimal_eta
from diffcore.samplers._exponential import denoise
from diffcore.samplers._grids import GRIDS, time_grid
from diffcore.samplers._inversion import Inversion, invert
from diffcore.samplers._ipndm import IPNDM
from diffcore.samplers._lml import LMLPredictorCorrector, exact_log_density_hessian, lml_langevin_step
from diffcore.samplers._momentum import GHVB, HeavyBall
from diffcore.samplers._mrs import MRSODE, MRSSDE
from diffcore.samplers._ode import RK4, Euler, Heun, Midpoint, RK4ThreeEighths
from diffcore.samplers._pc import PredictorCorrector
from diffcore.samplers._per_step import SCHEDULABLE_METHODS, PerStepSolver
from diffcore.samplers._registry import ADAPTIVE_SOLVERS, SOLVERS, get_solver
from diffcore.samplers._residual import RDDMSampler, ResShiftSampler
from diffcore.samplers._sde import Ancestral, EulerMaruyama
from diffcore.samplers._stability import STABILITY_METHODS, amplification_factor, stability_region
from diffcore.samplers._statistics import StepStatistics
from diffcore.samplers._unipc import UniPC2, UniPC2BH1, UniPC3, UniPC3BH1

__all__ = [
    "ADAPTIVE_SOLVERS",
    "BDIA",
    "DDIM",
    "DEIS1",
    "DEIS2",
    "DEIS3",
    "GHVB",
    "GRIDS",
    "IPNDM",
    "MRSODE",
    "MRSSDE",
    "RK4",
    "SCHEDULABLE_METHODS",
    "SOLVERS",
    "STABILITY_METHODS",
    "AbstractSolver",
    "Adaptive",
    "Ancestral",
    "DPMSolver2",
    "DPMSolver3",
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "DPMSolverV3",
    "EDMHeun",
    "EDMStochastic",
    "EVODiff",
    "EmpiricalModelStatistics",
    "Euler",
    "EulerMaruyama",
    "HeavyBall",
    "Heun",
    "Inversion",
    "LMLPredictorCorrector",
    "Midpoint",
    "PerStepSolver",
    "PredictorCorrector",
    "RDDMSampler",
    "RK4ThreeEighths",
    "Requirements",
    "ResShiftSampler",
    "Solution",
    "StepStatistics",
    "UniPC2",
    "UniPC2BH1",
    "UniPC3",
    "UniPC3BH1",
    "amplification_factor",
    "denoise",
    "exact_log_density_hessian",
    "exact_model_statistics",
    "get_solver",
    "integrate",
    "invert",
    "lml_langevin_step",
    "model_statistics",
    "sample",
    "stability_region",
    "time_grid",
    "variance_optimal_eta",
]
