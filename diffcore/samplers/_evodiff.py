r"""EVODiff: a multistep data-prediction solver whose free coefficient minimises a conditional variance.

Li, Chen and Zeng (2025), "EVODiff: Entropy-aware Variance Optimized Diffusion Inference"
(NeurIPS 2025), sec. 4 and the released ``EVODiff`` sampler.  With ``rho = alpha / sigma``
(``= e^lambda``, ``lambda`` the half log-SNR of :mod:`diffcore.samplers._exponential`) and
``y = x / sigma``, the probability-flow ODE is ``dy / drho = m(rho)``, the data prediction
(Tweedie) ``m = (x + sigma^2 score) / alpha``, so over ``s -> t``, ``H = rho_t - rho_s``,

.. math::
    x_t = \frac{\sigma_t}{\sigma_s} x_s + \sigma_t \int_{\rho_s}^{\rho_t} m(\rho)\, d\rho
        = \underbrace{\frac{\sigma_t}{\sigma_s} x_s + \sigma_t H m_s}_{\text{DDIM}}
          + \sigma_t \frac{H^2}{2} B + O(H^3),

where ``B`` is any first-order estimate of ``dm / drho`` at ``s``.  Two are available at no
extra evaluation: the backward difference ``B_- = (m_s - m_{s'}) / (rho_s - rho_{s'})`` from the
previous node ``s'`` (Adams–Bashforth 2 in ``rho``) and, once ``m_t`` has been evaluated at the
predicted point, the forward difference ``B_+ = (m_t - m_s) / H`` (the trapezoidal rule).  EVODiff
combines them, ``B_eta = (1 - eta) B_+ + eta B_-``, and chooses ``eta`` to minimise the
conditional variance of the new state given the old, which depends on ``eta`` only through the
gradient term ``sigma_t H^2 B_eta / 2``: per sample, with inner products over its coordinates,

.. math::
    \eta^\star = \operatorname*{arg\,min}_{\eta \in [0, 1]} \|B_+ + \eta (B_- - B_+)\|^2
               = \operatorname{clip}\Big(\frac{\langle B_+,\, B_+ - B_-\rangle}{\|B_+ - B_-\|^2},\ 0,\ 1\Big)
               = \operatorname{clip}\Big(\tfrac12 + \tfrac12\frac{\langle B_+ + B_-,\, B_+ - B_-\rangle}
                 {\|B_+ - B_-\|^2},\ 0,\ 1\Big).

The ratio ``<B_+ + B_-, B_+ - B_->/(2 |B_+ - B_-|^2)`` is the ``eta_star`` of the released code
(the projection of the sum on the difference of the two gradient estimates); ``eta = 1/2`` is the
average of the two.  Any ``eta`` in ``[0, 1]`` keeps the step of order 2 (both estimates are, so
is their convex combination), which is why ``order = 2`` is declared whatever ``eta`` does.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from diffcore._array import namespace
from diffcore.samplers._exponential import ExponentialSolver

__all__ = ["EVODiff", "variance_optimal_eta"]

Array = Any


def variance_optimal_eta(b_next: Array, b_prev: Array) -> Array:
    r"""The per-sample ``eta`` in ``[0, 1]`` that minimises ``|(1 - eta) b_next + eta b_prev|^2``.

    .. math:: \eta^\star = \operatorname{clip}\big(\langle b_+, b_+ - b_-\rangle / \|b_+ - b_-\|^2,\ 0,\ 1\big)

    (Li, Chen and Zeng 2025, sec. 4: the conditional variance of ``x_t`` given ``x_s`` depends on
    ``eta`` through this quadratic).  ``b_next``, ``b_prev``: arrays ``(n, ...)`` of the same shape;
    inner products run over all axes but the first.  Returns ``(n, 1, ..., 1)`` (broadcasts
    against ``b_next``); where the two estimates coincide (``b_+ = b_-``) every ``eta`` is
    optimal and ``0`` is returned.

    Example
    -------
    >>> import numpy as np
    >>> variance_optimal_eta(np.array([[1.0, 0.0]]), np.array([[-1.0, 0.0]])).ravel()
    array([0.5])
    """
    xp = namespace(b_next, b_prev)
    axes = tuple(range(1, b_next.ndim))
    diff = b_next - b_prev
    num = xp.sum(b_next * diff, axis=axes, keepdims=True)
    den = xp.sum(diff * diff, axis=axes, keepdims=True)
    safe = xp.where(den > 0, den, xp.ones_like(den))
    return xp.clip(xp.where(den > 0, num / safe, xp.zeros_like(den)), 0.0, 1.0)


class EVODiff(ExponentialSolver):
    r"""EVODiff: 2nd-order multistep data-prediction solver with the variance-optimal ``eta``; global order 2.

    See the module docstring for the update.  Step ``i`` (``t_{i-1} -> t_i``) makes **one**
    evaluation, ``m_{i-1} = x0(x~_{t_{i-1}}, t_{i-1})`` at its starting point, the prediction of
    the previous step; with it the previous step is *corrected* (``B_+`` becomes available),
    ``x^c_{t_{i-1}} = DDIM + sigma H^2 B_eta / 2`` with ``eta = eta*`` per sample, and the new
    point is *predicted* from ``x^c`` with ``B_-`` (Adams–Bashforth 2 in ``rho = alpha/sigma``):
    ``x~_{t_i} = sigma_i/sigma_{i-1} x^c + sigma_i H m_{i-1} + sigma_i H^2 B_- / 2``.  The same
    predict–evaluate–correct structure as UniPC (:mod:`diffcore.samplers._unipc`); the returned
    state is the prediction, and the final output is the last prediction (correcting it would
    cost one more evaluation).  Warm-up: the first prediction is DDIM, the first correction
    has no ``B_-`` and is the trapezoidal rule (``eta = 0``).

    Parameters
    ----------
    eta : ``None`` (default) for the variance-optimal :func:`variance_optimal_eta`, or a
        fixed float in ``[0, 1]``: ``eta = 1`` is the plain Adams–Bashforth-2 rule in
        ``rho`` (the corrector changes nothing), ``eta = 0`` the trapezoidal corrector.

    Differences from the released code (``EVODiff_edm`` in ShiguiLi/EVODiff): there the
    difference ``m_s - r m_{s'}`` uses a "balance" weight ``r`` (a time-dependent mix of
    ``sqrt(sigma_t sigma_{s'} / sigma_s^2)`` and a clamped projection ``<m_s, m_{s'}>/|m_{s'}|^2``),
    the gradient term is scaled by step-ratio heuristics, and ``eta_star`` (clamped to
    ``[-2, 2]``) enters through ``eta = sigmoid(|eta_star|) / 2``; those tuning devices are not
    reproduced.  Here both estimates are exact difference quotients and ``eta*`` is the exact
    minimiser, clipped to ``[0, 1]`` so the step stays a convex combination of two second-order
    rules (order 2 is declared and measured).  The step depends on ``x`` through ``eta*``
    (a ratio of inner products), so it is not affine in ``x`` even for Gaussian data.
    """

    name: ClassVar[str] = "evodiff"
    order: ClassVar[int] = 2
    affine_step: ClassVar[bool] = False

    def __init__(self, *, eta: float | None = None) -> None:
        if eta is not None:
            if isinstance(eta, bool) or not isinstance(eta, (int, float)):
                raise TypeError(f"eta must be None or a float in [0, 1]; got {type(eta).__name__}")
            if not 0.0 <= float(eta) <= 1.0:
                raise ValueError(f"eta must lie in [0, 1] (a convex combination of two slopes); got {eta}")
            eta = float(eta)
        self.eta = eta

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, l0 = self._coefficients(p, t0)
        a1, s1, l1 = self._coefficients(p, t1)
        m0 = self._x0(dynamics, x, t0, a0, s0)
        slope_back = None
        if state is None:
            x_c = x
        else:  # correct the previous step s -> t0 with the forward difference of the new value
            x_s, s_s, l_s, m_s, slope_before = state
            h = l0 - l_s
            slope_back = (m0 - m_s) / h  # B_+ of the previous step, B_- of this one
            if slope_before is None:
                slope = slope_back
            else:
                eta = variance_optimal_eta(slope_back, slope_before) if self.eta is None else self.eta
                slope = (1 - eta) * slope_back + eta * slope_before
            x_c = _update(x_s, m_s, slope, s_s, a0, s0, h)
        x_pred = _update(x_c, m0, slope_back, s0, a1, s1, l1 - l0)
        return x_pred, (x_c, s0, l0, m0, slope_back)

    def __repr__(self) -> str:
        return f"EVODiff(eta={self.eta})" if self.eta is not None else "EVODiff()"


def _update(x: Array, m: Array, slope: Array | None, s0: float, a1: float, s1: float, h: float) -> Array:
    """``sigma_1/sigma_0 x + alpha_1 (1 - e^{-h}) (m + h slope / 2)`` (DDIM when ``slope`` is None)."""
    weight = -a1 * math.expm1(-h)
    out = (s1 / s0) * x + weight * m
    return out if slope is None else out + (weight * h / 2) * slope
