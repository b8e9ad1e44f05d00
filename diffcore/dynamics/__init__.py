"""Reverse-time dynamics: the reverse SDE family and the probability-flow ODE."""

from diffcore.dynamics._reverse import AbstractDynamics, AbstractReverseDynamics, ProbabilityFlowODE, ReverseSDE

__all__ = ["AbstractDynamics", "AbstractReverseDynamics", "ProbabilityFlowODE", "ReverseSDE"]
