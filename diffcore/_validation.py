"""Validators for the public boundary: each returns the cleaned value or raises with the rule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from diffcore._array import as_array, is_scalar_time, namespace

__all__ = [
    "check_choice",
    "check_finite",
    "check_nonnegative",
    "check_points",
    "check_positive",
    "check_steps",
    "check_time",
    "check_time_for",
]


def check_positive(name: str, value: Any) -> float:
    """A finite real number > 0."""
    v = _real(name, value)
    if not v > 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return v


def check_nonnegative(name: str, value: Any) -> float:
    """A finite real number >= 0."""
    v = _real(name, value)
    if not v >= 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")
    return v


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return v


def check_time(t: Any, name: str = "t") -> Any:
    """A time in [0, 1]: a real scalar (returned as float) or a 1-D array (returned as is)."""
    if isinstance(t, (bool, np.bool_)):
        raise TypeError(f"{name} must be a float or an array of times; got {type(t).__name__}")
    if is_scalar_time(t):
        v = float(t)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]; got {v}")
        return v
    if not hasattr(t, "shape"):
        raise TypeError(f"{name} must be a float or an array of times; got {type(t).__name__}")
    if t.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array of shape (n,); got shape {tuple(t.shape)}")
    xp = namespace(t)
    if not xp.isdtype(t.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype; got {t.dtype}")
    bad = xp.logical_not((t >= 0) & (t <= 1))
    if bool(xp.any(bad)):
        first = t[bad][0] if t.ndim else t
        raise ValueError(f"{name} must lie in [0, 1]; got {float(first)}")
    return t


def check_finite(name: str, x: Any) -> Any:
    """An array without NaN or infinity."""
    xp = namespace(x)
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    return x


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of a fixed set of names; the message lists them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; known: {', '.join(sorted(choices))}")
    return value


def check_steps(steps: Any, name: str = "steps") -> int:
    """A count (of steps, samples, projections, ...): an integer >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"{name} must be >= 1; got {steps}")
    return int(steps)


def check_points(x: Any, dim: int, name: str = "x") -> Any:
    """A batch of points of shape (n, dim) with a real floating dtype."""
    if not hasattr(x, "shape"):
        raise TypeError(f"{name} must be an array of shape (n, {dim}); got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}); got {tuple(x.shape)}")
    xp = namespace(x)
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype; got {x.dtype}")
    return x


def check_time_for(t: Any, x: Any) -> Any:
    """A time for the batch ``x (n, ...)``: a float in [0, 1], or an ``(n,)`` array converted to ``x``'s type."""
    t = check_time(t)
    if is_scalar_time(t):
        return t
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"t must be a float or have shape (n,) = ({x.shape[0]},); got {tuple(t.shape)}")
    return as_array(t, x)


def check_unshifted(process: Any, who: str) -> None:
    """Raise ``ValueError`` for a process with a mean shift ``mu`` (a mean-reverting SDE).

    Code that writes the forward drift as ``f(t) x``, or ``x_t`` as ``alpha x_0 + sigma eps``,
    is only right for processes without a shift; this check keeps it from silently computing
    the wrong thing on ``x_t = mu + alpha (x_0 - mu) + sigma eps``.
    """
    if getattr(process, "shift", None) is not None:
        raise ValueError(
            f"{who} assumes a process without a mean shift (drift f(t) x); {type(process).__name__} "
            f"has shift mu (drift f(t)(x - mu)): apply it to x - mu with a shift-free process of the same "
            f"alpha and sigma"
        )
