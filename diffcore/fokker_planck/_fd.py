r"""Fourth-order central finite differences in space and time, on any array backend.

Stencils (Fornberg 1988, table 1), with ``f_j = f(x + j h)``:

.. math:: f' \approx \frac{f_{-2} - 8 f_{-1} + 8 f_1 - f_2}{12 h}
          \quad (\text{error } \tfrac{h^4}{30} f^{(5)}), \qquad
          f'' \approx \frac{-f_{-2} + 16 f_{-1} - 30 f_0 + 16 f_1 - f_2}{12 h^2}
          \quad (\text{error } \tfrac{h^4}{90} f^{(6)}).

In time the five nodes ``c + j k`` are centred at ``c = clip(t, 2k, 1 - 2k)`` and the
derivative of their interpolating quartic is taken at ``t`` (diffcore's ``fd_derivative``
rule): central in the interior, one-sided within ``2k`` of ``t = 1``, fourth order throughout.

Default steps balance truncation against round-off.  A field varying on the length ``L``
has a truncation error ``~ (h/L)^4`` relative to the term, and round-off ``~ eps (L/h)^m``
for an ``m``-th derivative built by nesting first differences; the two meet at
``h/L ~ eps^{1/(4+m)}``.  The score residual nests two spatial differences (``m = 2``,
``grad div s``) and one in time (``m = 1``), so ``h = eps^{1/6} sigma(t)`` (``sigma(t)`` bounds
from below the length on which an exact marginal varies) and ``k = eps^{1/5} min(t, 0.1)``
(scores change on the time scale ``t`` near 0 and faster than ~0.1 nowhere in the built-in
schedules).  In float64 both errors are ~1e-10 of the terms; in float32 ~1e-4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffcore._array import is_scalar_time, namespace
from diffcore._schedule import _lagrange_derivative_weights

__all__ = ["FD_ORDER", "default_steps", "partial", "second_partial", "time_derivative"]

Array = Any

#: the order of every finite-difference derivative of this subpackage (error ``O(h^4 + k^4)``)
FD_ORDER = 4

_D1 = ((-2, 1.0 / 12), (-1, -8.0 / 12), (1, 8.0 / 12), (2, -1.0 / 12))
_D2 = ((-2, -1.0 / 12), (-1, 16.0 / 12), (1, 16.0 / 12), (2, -1.0 / 12))
_D2_CENTRE = -30.0 / 12


def _col(a: Any, out: Array) -> Any:
    """A per-point ``(n,)`` coefficient shaped to broadcast against ``out`` (scalars pass through)."""
    if is_scalar_time(a) or getattr(a, "ndim", 0) == 0:
        return a
    return namespace(a).reshape(a, (a.shape[0],) + (1,) * (out.ndim - 1))


def _unit(x: Array, i: int) -> Array:
    xp = namespace(x)
    return xp.astype(xp.arange(x.shape[1], device=x.device) == i, x.dtype)[None, :]


def partial(fn: Callable[[Array], Array], x: Array, i: int, h: Array) -> Array:
    """``d fn / d x_i`` at ``x (n, d)``; ``h`` is a float or ``(n,)``; ``fn`` returns ``(n,)`` or ``(n, d)``."""
    step = _col(h, x) * _unit(x, i)
    total = sum(c * fn(x + j * step) for j, c in _D1)
    return total / _col(h, total)


def second_partial(fn: Callable[[Array], Array], x: Array, i: int, h: Array, centre: Array) -> Array:
    """``d^2 fn / d x_i^2`` at ``x``, given ``centre = fn(x)``."""
    step = _col(h, x) * _unit(x, i)
    total = sum(c * fn(x + j * step) for j, c in _D2) + _D2_CENTRE * centre
    return total / _col(h, total) ** 2


def time_derivative(fn: Callable[[Any], Array], t: Any, k: Any) -> Array:
    """``d fn / dt`` at ``t`` (a float with float ``k``, or ``(n,)`` arrays) from five nodes in ``(0, 1]``."""
    if is_scalar_time(t):
        c = min(max(t, 2 * k), 1 - 2 * k)
        low = c - 2 * k
        bad = low <= 0
    else:
        xp = namespace(t)
        c = xp.minimum(xp.maximum(t, 2 * k), 1 - 2 * k)
        low = c - 2 * k
        bad = bool(xp.any(low <= 0))
    if bad:
        raise ValueError(
            f"k must satisfy k < t / 2 and k < 1 / 4 so that the time stencil stays in (0, 1]; got k={k} at t={t}"
        )
    weights = _lagrange_derivative_weights((t - c) / k)
    total = None
    for w, j in zip(weights, (-2, -1, 0, 1, 2)):
        value = fn(c + j * k)
        term = _col(w, value) * value
        total = term if total is None else total + term
    return total / _col(k, total)


def default_steps(process: Any, t: Any, x: Array) -> tuple[Any, Any]:
    """``h = eps^{1/6} sigma(t)`` and ``k = eps^{1/5} min(t, 0.1)`` (see the module docstring)."""
    xp = namespace(x)
    eps = float(xp.finfo(x.dtype).eps)
    sigma = process.sigma(t)
    if is_scalar_time(t):
        return eps ** (1 / 6) * sigma, eps ** (1 / 5) * min(t, 0.1)
    return eps ** (1 / 6) * sigma, eps ** (1 / 5) * xp.minimum(t, xp.full_like(t, 0.1))
