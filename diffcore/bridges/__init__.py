"""Bridges between two laws: the Schrödinger bridge between Gaussians in closed form.

:class:`GaussianSchrodingerBridge` gives the optimal entropic coupling, the marginals, the SDE
drift and the probability-flow velocity of the Schrödinger bridge between two Gaussians for the
reference ``sigma W_t`` — the exact answer against which learned bridges are measured.
"""

from diffcore.bridges._gaussian import GaussianSchrodingerBridge

__all__ = ["GaussianSchrodingerBridge"]
