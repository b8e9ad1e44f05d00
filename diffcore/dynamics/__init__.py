"""Reverse-time dynamics: the reverse SDE family and the probability-flow ODE."""

from diffcore.dynamics._reverse import AbstractDynamics, ProbabilityFlowODE, ReverseSDE

__all__ = ["AbstractDynamics", "ProbabilityFlowODE", "ReverseSDE"]
