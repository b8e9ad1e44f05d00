r"""Converters between the prediction types of a diffusion model.

For ``x = alpha x_0 + sigma eps`` at time ``t`` (all five describe the same field):

===========  ===================================================================
``eps``      the noise ``eps`` (Ho et al. 2020)
``x0``       the clean data ``x_0`` (the denoiser ``E[x_0 | x_t]``)
``v``        ``v = alpha eps - sigma x_0`` (Salimans and Ho 2022, eq. 13)
``score``    ``grad log p_t(x) = -eps / sigma`` (Song et al. 2021; Vincent 2011)
``velocity`` the probability-flow velocity ``alpha' x_0 + sigma' eps
             = f x - g^2/2 score`` (Song et al. 2021, eq. 13; Lipman et al. 2023)
===========  ===================================================================

Every conversion goes through the pair ``(x_0, eps)`` and divides only where it must.
A division by a coefficient that is zero (``sigma(0) = 0``; ``alpha = 0`` at the end of a
schedule that reaches pure noise) or infinite (``sigma'(0)`` when ``sigma ~ sqrt(t)``)
raises a ``ValueError`` naming the conversion, the coefficient and ``t``: the information
is not there, and no epsilon is added to pretend otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffcore._array import broadcast_time, is_scalar_time, namespace
from diffcore._validation import (
    Model,
    check_array,
    check_choice,
    check_same_namespace,
    check_time_for,
)

__all__ = ["PREDICTIONS", "convert", "reparametrize"]

Array = Any
PREDICTIONS = ("eps", "x0", "v", "score", "velocity")


def convert(value: Array, x: Array, t: Any, process: Any, *, source: str, target: str) -> Array:
    """Convert a prediction ``value`` of type ``source`` at ``(x, t)`` into type ``target``.

    Parameters
    ----------
    value, x : arrays of shape ``(n, ...)``.
    t : float or ``(n,)`` array of times in ``[0, 1]``.
    process : the forward process that defines ``alpha``, ``sigma`` and their derivatives.
    source, target : names from ``PREDICTIONS``.

    Raises
    ------
    ValueError
        for an unknown name, ``value`` of another shape than ``x``, a bad time, or when the
        conversion needs to divide by a coefficient that vanishes (or is infinite) at ``t``.
    TypeError
        for non-arrays, complex arrays, or ``value`` and ``x`` of different array libraries.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE
    >>> x, eps = np.ones((1, 2)), np.full((1, 2), 0.5)
    >>> p = VPSDE()
    >>> v = convert(eps, x, 0.5, p, source="eps", target="v")
    >>> bool(np.allclose(convert(v, x, 0.5, p, source="v", target="eps"), eps))
    True
    """
    check_choice("source", source, PREDICTIONS)
    check_choice("target", target, PREDICTIONS)
    check_same_namespace(value=value, x=x)
    x = check_array("x", x, finite=False)
    value = check_array("value", value, finite=False)
    if tuple(value.shape) != tuple(x.shape):
        raise ValueError(f"value must have the shape of x {tuple(x.shape)}; got {tuple(value.shape)}")
    t = check_time_for(t, x)
    if source == target:
        return value
    c = _Coefficients(process, t, x, f"converting {source} -> {target}")
    if {source, target} == {"score", "velocity"}:  # u = f x - g^2/2 s: no division by alpha or sigma
        f, g2 = c.get("drift_coef"), c.get("diffusion_squared")
        if source == "score":
            return f * x - 0.5 * g2 * value
        return 2 * (f * x - value) / c.usable(g2, "g(t)^2")
    x0, eps = _to_pair(value, x, source, c)
    if target == "x0":
        return x0()
    if target == "eps":
        return eps()
    if target == "v":
        return c.get("alpha") * eps() - c.get("sigma") * x0()
    if target == "score":
        return -eps() / c.usable(c.get("sigma"), "sigma(t)")
    return c.get("d_alpha") * x0() + c.usable(c.get("d_sigma"), "sigma'(t)") * eps()


class _Coefficients:
    """Schedule coefficients at ``t``, broadcast against ``x``, with guarded division."""

    def __init__(self, process: Any, t: Any, x: Array, what: str) -> None:
        self.process, self.t, self.x, self.what = process, t, x, what

    def get(self, name: str) -> Any:
        return broadcast_time(getattr(self.process, name)(self.t), self.x)

    def usable(self, coef: Any, name: str) -> Any:
        """``coef`` itself, after checking it is finite and non-zero for every sample."""
        if is_scalar_time(coef):
            ok = coef != 0 and math.isfinite(coef)
        else:
            xp = namespace(coef)
            ok = bool(xp.all(xp.isfinite(coef) & (coef != 0)))
        if not ok:
            shown = self.t if is_scalar_time(self.t) else "one of the given times"
            raise ValueError(f"{self.what} divides by {name}, which is zero or not finite at t = {shown}")
        return coef


def _to_pair(value: Array, x: Array, source: str, c: _Coefficients) -> tuple[Callable, Callable]:
    """Thunks for ``(x_0, eps)`` from a ``source`` prediction; each divides only when called."""
    a, s = c.get("alpha"), c.get("sigma")
    if source == "eps":
        return (lambda: (x - s * value) / c.usable(a, "alpha(t)")), (lambda: value)
    if source == "x0":
        return (lambda: value), (lambda: (x - a * value) / c.usable(s, "sigma(t)"))
    if source == "score":
        return (lambda: (x + s**2 * value) / c.usable(a, "alpha(t)")), (lambda: -c.usable(s, "sigma(t)") * value)
    if source == "v":  # [a s; -s a] [x0; eps] = [x; v]
        norm = a**2 + s**2
        return (lambda: (a * x - s * value) / norm), (lambda: (s * x + a * value) / norm)
    # velocity: [a s; a' s'] [x0; eps] = [x; u], determinant a s' - s a' = a g^2 / (2 sigma)
    da, ds = c.get("d_alpha"), c.get("d_sigma")

    def det() -> Any:
        return c.usable(a * ds - s * da, "alpha sigma' - sigma alpha'")

    return (lambda: (ds * x - s * value) / det()), (lambda: (a * value - da * x) / det())


@dataclass(frozen=True, eq=False)
class Reparametrized:
    """A model callable ``(x, t) -> source prediction`` seen as a ``target`` prediction."""

    model: Callable[[Array, Any], Array]
    process: Any
    source: str
    target: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Model.of(self.model, "model"))
        check_choice("source", self.source, PREDICTIONS)
        check_choice("target", self.target, PREDICTIONS)

    def __call__(self, x: Array, t: Any) -> Array:
        return convert(self.model(x, t), x, t, self.process, source=self.source, target=self.target)


def reparametrize(model: Callable, process: Any, *, source: str, target: str = "score") -> Reparametrized:
    """Wrap ``model`` (predicting ``source``) as a callable predicting ``target``, e.g. eps -> score."""
    return Reparametrized(model, process, source, target)
