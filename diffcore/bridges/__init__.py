"""Bridges between two laws: the Schrödinger bridge between Gaussians in closed form, and its fitting.

:class:`GaussianSchrodingerBridge` gives the optimal entropic coupling, the marginals, the SDE
drift and the probability-flow velocity of the Schrödinger bridge between two Gaussians for the
reference ``sigma W_t`` — the exact answer against which learned bridges are measured.
:func:`gaussian_ipf` and :func:`gaussian_imf` run iterative proportional fitting (Sinkhorn) and
iterative Markovian fitting (bridge matching) exactly on Gaussian parameters;
:func:`entropic_coupling` solves the static bridge between two samples with POT (``reg = 2 sigma^2``).
The learned bridge-matching loop is :func:`diffcore.training.bridge_matching` (torch).
"""

from diffcore.bridges._entropic import EntropicCoupling, entropic_coupling
from diffcore.bridges._fitting import BridgeIterations, gaussian_imf, gaussian_ipf
from diffcore.bridges._gaussian import GaussianSchrodingerBridge

__all__ = [
    "BridgeIterations",
    "EntropicCoupling",
    "GaussianSchrodingerBridge",
    "entropic_coupling",
    "gaussian_imf",
    "gaussian_ipf",
]
