"""Between the diffusion convention (data at t = 0) and the flow-matching one (data at t = 1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._validation import Model, check_choice, check_model_output, check_nonnegative, check_time
from diffcore.interpolants._base import AbstractInterpolant, Interpolant
from diffcore.processes import AbstractProcess, AffineProcess

__all__ = ["TimeReversed", "interpolant_from_process", "process_from_interpolant", "reverse_time"]

Array = Any


def interpolant_from_process(process: AbstractProcess, *, atol: float = 1e-12) -> Interpolant:
    r"""The flow-matching path of a diffusion: ``x_t = sigma(1 - t) x_0 + alpha(1 - t) x_1``.

    ``x_0 ~ N(0, I)`` sits at ``t = 0`` and the data ``x_1`` at ``t = 1`` (Lipman et al. 2023,
    sec. 4.1: the "VP path" is this map applied to the VP process).  The boundary conditions
    need ``alpha(1) = 0`` and ``sigma(1) = 1`` to ``atol``: ``CosineVPSDE(end=1.0)`` meets them
    exactly; the linear-beta ``VPSDE`` has ``alpha(1) ~ 6.6e-3`` and needs ``atol >= 7e-3``, in
    which case ``rho_0`` is the law of ``sigma(1) z + alpha(1) x_1`` rather than ``N(0, I)``.
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_nonnegative("atol", atol)
    return Interpolant(
        coef0_fn=lambda t: process.sigma(1 - t),
        coef1_fn=lambda t: process.alpha(1 - t),
        gamma_fn=lambda t: 0 * t,
        d_coef0_fn=lambda t: -process.d_sigma(1 - t),
        d_coef1_fn=lambda t: -process.d_alpha(1 - t),
        d_gamma_fn=lambda t: 0 * t,
        atol=atol,
    )


def process_from_interpolant(interpolant: AbstractInterpolant) -> AffineProcess:
    r"""The diffusion of a one-sided interpolant: ``alpha(t) = coef1(1 - t)``, ``sigma(t) = coef0(1 - t)``.

    Needs ``gamma = 0`` (the Gaussian end ``x_0`` plays the role of the noise): the linear
    one-sided interpolant gives the rectified-flow process ``alpha = 1 - t``, ``sigma = t``.
    """
    if not isinstance(interpolant, AbstractInterpolant):
        raise TypeError(f"interpolant must be an AbstractInterpolant; got {type(interpolant).__name__}")
    grid = np.linspace(0.0, 1.0, 101)
    if np.any(np.asarray(interpolant.gamma(grid)) != 0):
        raise ValueError("process_from_interpolant needs a one-sided interpolant (gamma = 0 everywhere)")
    return AffineProcess(
        alpha_fn=lambda t: interpolant.coef1(1 - t),
        sigma_fn=lambda t: interpolant.coef0(1 - t),
        d_alpha_fn=lambda t: -interpolant.d_coef1(1 - t),
        d_sigma_fn=lambda t: -interpolant.d_coef0(1 - t),
    )


_KINDS = ("velocity", "score", "denoiser", "density")


def _check_density(name: str, out: Any, x: Array, t: Any) -> Array:
    return check_model_output(name, out, x, shape=(x.shape[0],))


@dataclass(frozen=True, eq=False)
class TimeReversed:
    """``field`` seen in reversed time ``t -> 1 - t``; velocities also change sign."""

    field: Callable[[Array, Any], Array]
    kind: str = "velocity"

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, _KINDS)
        check = _check_density if self.kind == "density" else None
        object.__setattr__(self, "field", Model.of(self.field, "field", check=check))

    def __call__(self, x: Array, t: Any) -> Array:
        out = self.field(x, 1 - check_time(t))
        return -out if self.kind == "velocity" else out


def reverse_time(field: Callable[[Array, Any], Array], kind: str = "velocity") -> TimeReversed:
    r"""Convert a field between the flow-matching and the diffusion clocks, ``t' = 1 - t``.

    A velocity becomes ``-v(x, 1 - t)`` (``dx/dt' = -dx/dt``); a score, denoiser or density is
    simply evaluated at ``1 - t``.  Applying it twice gives back the field.
    """
    return TimeReversed(field, kind)
