"""Dynamics to integrate: the reverse SDE family and probability-flow ODE of a process, and the interpolant ODE/SDEs."""

from diffcore.dynamics._interpolant import InterpolantODE, InterpolantSDE
from diffcore.dynamics._reverse import (
    AbstractDynamics,
    AbstractReverseDynamics,
    ForwardSDE,
    ProbabilityFlowODE,
    ReverseSDE,
)

__all__ = [
    "AbstractDynamics",
    "AbstractReverseDynamics",
    "ForwardSDE",
    "InterpolantODE",
    "InterpolantSDE",
    "ProbabilityFlowODE",
    "ReverseSDE",
]
