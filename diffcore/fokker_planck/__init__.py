"""Fokker–Planck residuals of scores and log densities, and the ODE–SDE gap they control.

``fp_residual`` is the per-point residual of the score Fokker–Planck equation (Deveney et al.
2023; Lai et al. 2023), ``fp_residual_log_density`` that of the density equation written for
``log p``; both use exact torch autograd for torch tensors and fourth-order finite differences
otherwise.  ``fp_residual_norm`` averages the squared residual over points and times, and
``ode_sde_gap`` measures ``W_2`` between probability-flow ODE and reverse-SDE samples drawn
from the same prior points, which a small residual keeps small.
"""

from diffcore.fokker_planck._fd import FD_ORDER
from diffcore.fokker_planck._gap import ODESDEGap, ode_sde_gap
from diffcore.fokker_planck._norm import FPResidualNorm, fp_residual_norm
from diffcore.fokker_planck._residual import METHODS, FPTerms, fp_residual, fp_residual_log_density, fp_terms

__all__ = [
    "FD_ORDER",
    "METHODS",
    "FPResidualNorm",
    "FPTerms",
    "ODESDEGap",
    "fp_residual",
    "fp_residual_log_density",
    "fp_residual_norm",
    "fp_terms",
    "ode_sde_gap",
]
