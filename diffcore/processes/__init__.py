"""Forward processes ``x_t = alpha(t) x_0 + sigma(t) eps`` (plus ``(1 - alpha(t)) mu`` when shifted) and their SDEs."""

from diffcore.processes._affine import AffineProcess
from diffcore.processes._base import AbstractProcess
from diffcore.processes._linear import AbstractLinearSDE, Transition
from diffcore.processes._mean_reverting import MeanRevertingSDE
from diffcore.processes._residual import ResidualDiffusion, ResShift
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
    "ResShift",
    "ResidualDiffusion",
    "SubVPSDE",
    "Transition",
]
