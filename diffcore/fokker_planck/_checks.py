"""Boundary validation shared by the Fokker–Planck residuals: process, field, points, times, outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from diffcore._array import as_array, is_scalar_time, namespace
from diffcore._validation import check_array, check_model_output, check_unshifted
from diffcore.processes import AbstractProcess

__all__ = ["check_field", "check_fp_time", "check_output", "check_process", "check_x"]

Array = Any


def check_process(process: Any) -> AbstractProcess:
    """An :class:`~diffcore.processes.AbstractProcess`."""
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "the Fokker–Planck residual")
    return process


def check_field(name: str, field: Any) -> Any:
    """A callable ``(x, t) -> array``."""
    if not callable(field):
        raise TypeError(f"{name} must be callable (x, t) -> array; got {type(field).__name__}")
    return field


def check_x(x: Any) -> Array:
    """Finite real points of shape ``(n, d)``, ``d >= 1`` (integers promoted; ``n = 0`` allowed)."""
    x = check_array("x", x, ndim=2)
    if x.shape[1] < 1:
        raise ValueError(f"x must have shape (n, d) with d >= 1; got {tuple(x.shape)}")
    return x


def check_fp_time(t: Any, x: Array) -> Any:
    """A time in ``(0, 1]`` (the score is singular at ``t = 0``): a float, or an ``(n,)`` array as ``x``'s type."""
    if isinstance(t, (bool, np.bool_)):
        raise TypeError(f"t must be a float or an array of shape (n,); got {type(t).__name__}")
    if is_scalar_time(t):
        v = float(t)
        if not 0.0 < v <= 1.0:
            raise ValueError(f"t must lie in (0, 1] (the score is singular at t = 0); got {v}")
        return v
    if not hasattr(t, "shape"):
        raise TypeError(f"t must be a float or an array of shape (n,); got {type(t).__name__}")
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"t must be a float or have shape (n,) = ({x.shape[0]},); got {tuple(t.shape)}")
    t = as_array(t, x)
    xp = namespace(t)
    bad = xp.logical_not((t > 0) & (t <= 1))
    if bool(xp.any(bad)):
        raise ValueError(f"t must lie in (0, 1] (the score is singular at t = 0); got {float(t[bad][0])}")
    return t


def check_output(name: str, out: Any, shape: tuple[int, ...], x: Array) -> Array:
    """The first output of a user field: as :func:`~diffcore._validation.check_model_output` demands, and finite."""
    check_model_output(name, out, x, shape=shape)
    xp = namespace(out)
    if not bool(xp.all(xp.isfinite(out))):
        raise ValueError(f"{name} must be finite at the points given; it returned NaN or infinity")
    return out
