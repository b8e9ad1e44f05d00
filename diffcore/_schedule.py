"""Time functions on [0, 1]: validated evaluation and finite-difference derivatives.

Shared by the processes (``alpha``, ``sigma``) and the interpolants (their coefficients):
a formula is written once as ``fn(t, xp)`` and evaluated on a Python float (returning a float)
or on a time array of any backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from diffcore._array import is_scalar_time, namespace
from diffcore._validation import check_time

__all__ = ["evaluate", "fd_derivative"]


def evaluate(fn, t: Any) -> Any:
    """Run a schedule formula ``fn(t, xp)`` on a validated time; floats stay floats.

    Scalar times are memoised per ``(fn, t)`` (:func:`_scalar`): a sampler evaluates the same few
    coefficients at every grid time of every run, and one evaluation costs more (validation,
    ``np.errstate``, NumPy scalar arithmetic) than the array work of a small step.  A formula of an
    unhashable owner (a process holding arrays) is evaluated every time.
    """
    if is_scalar_time(t) and not isinstance(t, (bool, np.bool_)):
        try:
            return _scalar(fn, float(t))
        except TypeError:  # unhashable owner of fn
            return _scalar.__wrapped__(fn, float(t))
    t = check_time(t)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return fn(t, namespace(t))


@functools.lru_cache(maxsize=4096)
def _scalar(fn, t: float) -> float:
    """``fn`` at the scalar time ``t`` (validated), as a float; see :func:`evaluate`."""
    t = check_time(t)
    # singular ends are part of the mathematics (log_snr(0) = inf, sigma'(0) = inf): no warnings
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return float(fn(np.float64(t), np))


_NODES = (-2.0, -1.0, 0.0, 1.0, 2.0)


def _lagrange_derivative_weights(u: Any) -> list[Any]:
    """Weights ``w_j(u)`` with ``p'(u) = sum_j w_j f(x_j)`` for the quartic through ``_NODES``."""
    weights = []
    for j, xj in enumerate(_NODES):
        denom = 1.0
        for k, xk in enumerate(_NODES):
            if k != j:
                denom *= xj - xk
        total = 0.0
        for m in range(len(_NODES)):
            if m == j:
                continue
            prod = 1.0
            for k, xk in enumerate(_NODES):
                if k not in (j, m):
                    prod = prod * (u - xk)
            total = total + prod
        weights.append(total / denom)
    return weights


def fd_derivative(fn: Callable, t: Any, xp: Any, h: float) -> Any:
    """Fourth-order finite-difference derivative on [0, 1] that never evaluates outside it.

    The five nodes ``c + k h`` (``k = -2..2``) are centred at ``c = clip(t, 2h, 1 - 2h)`` and
    the derivative of their interpolating quartic is taken at ``t``: a central stencil in
    the interior, a one-sided one within ``2h`` of the ends.  Error ``O(h^4 |fn^{(5)}|)``.
    """
    c = xp.clip(t, 2 * h, 1 - 2 * h)
    weights = _lagrange_derivative_weights((t - c) / h)
    return sum(w * fn(c + k * h) for w, k in zip(weights, _NODES)) / h
