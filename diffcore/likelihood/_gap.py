r"""The error of stopping the flow at ``t_min``: ``log p_{t_min}(x)`` against ``log p_0(x)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffcore._array import namespace
from diffcore._validation import check_array, check_positive, check_unshifted
from diffcore.distributions import exact_log_prob, exact_score
from diffcore.likelihood._divergence import field_divergence
from diffcore.processes import AbstractProcess

__all__ = ["TMinGap", "t_min_gap"]

Array = Any


@dataclass(frozen=True, eq=False)
class TMinGap:
    r"""The result of :func:`t_min_gap`; arrays of shape ``(n,)``.

    Attributes
    ----------
    exact : ``log p_{t_min}(x) - log p_0(x)``, exactly.
    first_order : ``t_min * d/dt log p_t(x)`` at ``t = 0``, the leading term of ``exact``.
    rate : ``d/dt log p_t(x)`` at ``t = 0``.
    """

    exact: Any
    first_order: Any
    rate: Any


def t_min_gap(process: AbstractProcess, data: Any, x: Array, t_min: float) -> TMinGap:
    r"""How far ``log p_{t_min}`` (what :func:`log_likelihood` returns) is from ``log p_0`` at ``x``.

    For Gaussian(-mixture) ``data`` both are closed form, so ``exact`` is their difference.  Its
    leading term follows from the Fokker–Planck equation ``d_t p = -div(f x p) + g^2 Lap(p) / 2``
    divided by ``p``:

    .. math:: \partial_t \log p_t(x)\big|_{t=0} = -f(0)\,(d + x\cdot s_0(x))
              + \tfrac12 g(0)^2 \big(\nabla\cdot s_0(x) + |s_0(x)|^2\big),

    with ``s_0`` the score of the time-0 law, so ``log p_{t_min} - log p_0 = t_min rate + O(t_min^2)``
    (when ``sigma(t)^2`` is smooth at 0, as for the VP, sub-VP, cosine and VE processes).
    Averaged over ``x ~ p_0`` the exact gap is ``-KL(p_0 || p_{t_min}) <= 0``: stopping early
    blurs the data, which lowers the likelihood of typical points and raises it between modes.
    ``p_0`` is the process's own time-0 law (for ``VESDE(variant="song2021")`` the data
    convolved with ``N(0, sigma_min^2 I)``).  ``x`` is ``(n, d)``, ``t_min`` a float in ``(0, 1]``.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian
    >>> gap = t_min_gap(VPSDE(), Gaussian(np.zeros(2), 0.25 * np.eye(2)), np.zeros((1, 2)), 1e-5)
    >>> bool(abs(gap.exact[0] / gap.first_order[0] - 1) < 1e-2)
    True
    """
    check_unshifted(process, "t_min_gap")
    t_min = check_positive("t_min", t_min)
    if t_min > 1:
        raise ValueError(f"t_min must lie in (0, 1]; got {t_min}")
    x = check_array("x", x, ndim=2)
    log_prob = exact_log_prob(process, data)
    exact = log_prob(x, t_min) - log_prob(x, 0.0)
    xp = namespace(x)
    s0, div0 = field_divergence(exact_score(process, data), x, 0.0)
    f0, g0 = process.drift_coef(0.0), process.diffusion_squared(0.0)
    rate = -f0 * (x.shape[1] + xp.sum(x * s0, axis=1)) + 0.5 * g0 * (div0 + xp.sum(s0**2, axis=1))
    return TMinGap(exact=exact, first_order=t_min * rate, rate=rate)
