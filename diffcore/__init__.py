"""diffcore: a verified numerics core for diffusion, score and flow models.

Forward processes with exact marginals, reverse-time dynamics, samplers with declared and
measured orders (the solver zoo of the literature), stochastic interpolants with exact fields,
Fokker–Planck residuals, ODE likelihoods, the Itô density estimator and superposition, graph SDE
systems, and Wasserstein comparisons; NumPy by default, torch tensors (CPU or GPU) on the same
code path.  ``import diffcore`` imports neither torch, POT nor networkx.
"""

from diffcore import graphs
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
from diffcore.dynamics import (
    AbstractDynamics,
    AbstractReverseDynamics,
    ForwardSDE,
    InterpolantODE,
    InterpolantSDE,
    ProbabilityFlowODE,
    ReverseSDE,
)
from diffcore.fokker_planck import (
    FPResidualNorm,
    FPTerms,
    ODESDEGap,
    fp_residual,
    fp_residual_log_density,
    fp_residual_norm,
    fp_terms,
    ode_sde_gap,
)
from diffcore.graphs import GraphLaboratory, GraphSDE, sample_graphs
from diffcore.interpolants import (
    AbstractInterpolant,
    EncoderDecoderInterpolant,
    Interpolant,
    InterpolantFields,
    LinearInterpolant,
    MirrorInterpolant,
    OneSidedInterpolant,
    TimeReversed,
    TrigonometricInterpolant,
    independent_coupling,
    interpolant_fields,
    interpolant_from_process,
    minibatch_ot_coupling,
    process_from_interpolant,
    reverse_time,
)
from diffcore.likelihood import (
    AugmentedFlow,
    LogLikelihood,
    TMinGap,
    and_weights,
    bits_per_dim,
    dequantize,
    divergence,
    ito_log_density,
    log_likelihood,
    superpose,
    superposition_weights,
    t_min_gap,
)
from diffcore.metrics import FloorEstimate, PathStraightness, path_straightness, sliced_w2, w2, w2_floor, w2_gaussian
from diffcore.processes import (
    VESDE,
    VPSDE,
    AbstractProcess,
    AffineProcess,
    CosineVPSDE,
    MeanRevertingSDE,
    SubVPSDE,
    Transition,
)
from diffcore.samplers import (
    DDIM,
    GRIDS,
    RK4,
    SOLVERS,
    AbstractSolver,
    Adaptive,
    Ancestral,
    Euler,
    EulerMaruyama,
    Heun,
    PredictorCorrector,
    Solution,
    get_solver,
    integrate,
    invert,
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
    "AbstractInterpolant",
    "AbstractProcess",
    "AbstractReverseDynamics",
    "AbstractSolver",
    "Adaptive",
    "AffineProcess",
    "Ancestral",
    "AugmentedFlow",
    "CosineVPSDE",
    "EncoderDecoderInterpolant",
    "Euler",
    "EulerMaruyama",
    "ExactField",
    "FPResidualNorm",
    "FPTerms",
    "FloorEstimate",
    "ForwardSDE",
    "Gaussian",
    "GaussianMixture",
    "GraphLaboratory",
    "GraphSDE",
    "Heun",
    "Interpolant",
    "InterpolantFields",
    "InterpolantODE",
    "InterpolantSDE",
    "LinearInterpolant",
    "LogLikelihood",
    "MeanRevertingSDE",
    "MirrorInterpolant",
    "ODESDEGap",
    "OneSidedInterpolant",
    "PathStraightness",
    "PredictorCorrector",
    "ProbabilityFlowODE",
    "ReverseSDE",
    "Solution",
    "SubVPSDE",
    "TMinGap",
    "TimeReversed",
    "Transition",
    "TrigonometricInterpolant",
    "and_weights",
    "bits_per_dim",
    "convert",
    "dequantize",
    "divergence",
    "exact_denoiser",
    "exact_log_prob",
    "exact_score",
    "fp_residual",
    "fp_residual_log_density",
    "fp_residual_norm",
    "fp_terms",
    "get_solver",
    "graphs",
    "independent_coupling",
    "integrate",
    "interpolant_fields",
    "interpolant_from_process",
    "invert",
    "ito_log_density",
    "log_likelihood",
    "marginal",
    "minibatch_ot_coupling",
    "ode_sde_gap",
    "path_straightness",
    "process_from_interpolant",
    "reparametrize",
    "reverse_time",
    "sample",
    "sample_graphs",
    "sliced_w2",
    "superpose",
    "superposition_weights",
    "t_min_gap",
    "time_grid",
    "w2",
    "w2_floor",
    "w2_gaussian",
]


def __getattr__(name: str):
    """``diffcore.training`` (torch only) is imported on first access, never by ``import diffcore``."""
    if name == "training":
        import importlib

        return importlib.import_module("diffcore.training")
    raise AttributeError(f"module 'diffcore' has no attribute {name!r}")
