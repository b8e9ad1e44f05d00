"""Forward processes ``x_t = alpha(t) x_0 + sigma(t) eps`` and their SDEs."""

from diffcore.processes._affine import AffineProcess
from diffcore.processes._base import AbstractProcess
from diffcore.processes._linear import AbstractLinearSDE, Transition
from diffcore.processes._mean_reverting import MeanRevertingSDE
from diffcore.processes._ve import VESDE
from diffcore.processes._vp import VPSDE, CosineVPSDE, SubVPSDE

__all__ = [
    "VESDE",
    "VPSDE",
    "AbstractLinearSDE",
    "AbstractProcess",
    "AffineProcess",
    "CosineVPSDE",
    "MeanRevertingSDE",
    "SubVPSDE",
    "Transition",
]
