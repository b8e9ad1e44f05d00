"""diffcore: a verified numerics core for diffusion, score and flow models.

Forward processes with exact marginals, reverse-time dynamics, samplers with declared and
measured orders, and Wasserstein comparisons; NumPy by default, torch tensors (CPU or GPU)
on the same code path.  ``import diffcore`` imports neither torch nor POT.
"""

from diffcore._parametrization import PREDICTIONS, convert, reparametrize
from diffcore.distributions import (
    ExactField,
    Gaussian,
    GaussianMixture,
    exact_denoiser,
    exact_log_prob,
    exact_score,
    marginal,
)
from diffcore.dynamics import AbstractDynamics, ProbabilityFlowODE, ReverseSDE
from diffcore.metrics import FloorEstimate, sliced_w2, w2, w2_floor, w2_gaussian
from diffcore.processes import (
    VESDE,
    VPSDE,
    AbstractProcess,
    AffineProcess,
    CosineVPSDE,
    SubVPSDE,
    Transition,
)
from diffcore.samplers import (
    DDIM,
    GRIDS,
    RK4,
    SOLVERS,
    AbstractSolver,
    Ancestral,
    Euler,
    EulerMaruyama,
    Heun,
    PredictorCorrector,
    Solution,
    get_solver,
    integrate,
    sample,
    time_grid,
)

__version__ = "0.1.0"

__all__ = [
    "DDIM",
    "GRIDS",
    "PREDICTIONS",
    "RK4",
    "SOLVERS",
    "VESDE",
    "VPSDE",
    "AbstractDynamics",
    "AbstractProcess",
    "AbstractSolver",
    "AffineProcess",
    "Ancestral",
    "CosineVPSDE",
    "Euler",
    "EulerMaruyama",
    "ExactField",
    "FloorEstimate",
    "Gaussian",
    "GaussianMixture",
    "Heun",
    "PredictorCorrector",
    "ProbabilityFlowODE",
    "ReverseSDE",
    "Solution",
    "SubVPSDE",
    "Transition",
    "convert",
    "exact_denoiser",
    "exact_log_prob",
    "exact_score",
    "get_solver",
    "integrate",
    "marginal",
    "reparametrize",
    "sample",
    "sliced_w2",
    "time_grid",
    "w2",
    "w2_floor",
    "w2_gaussian",
]
