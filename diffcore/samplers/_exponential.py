r"""Shared pieces of the exponential integrators in log-SNR time (DPM-Solver, DEIS, UniPC).

With ``lambda = log(alpha / sigma)`` (half of ``process.log_snr``, the convention of Lu et al.
2022), the probability-flow ODE of an affine process integrates exactly over a step
``s -> t``, ``h = lambda_t - lambda_s`` (Lu et al. 2022, eq. 3.4; Lu et al. 2022b, eq. 9):

.. math::
    x_t = \frac{\alpha_t}{\alpha_s} x_s - \sigma_t \int_0^h e^{h - \tau}\, \hat\varepsilon(\lambda_s + \tau)\, d\tau
        = \frac{\sigma_t}{\sigma_s} x_s + \alpha_t \int_0^h e^{\tau - h}\, \hat x_0(\lambda_s + \tau)\, d\tau ,

with the noise prediction ``eps = -sigma * score`` and the data prediction (Tweedie's formula)
``x0 = (x + sigma^2 score) / alpha``.  A polynomial ``sum_k c_k tau^k`` in place of the
prediction integrates exactly through the phi-functions
``phi_{k+1}(z) = int_0^1 e^{(1 - u) z} u^k / k! du``:

.. math::
    \int_0^h e^{h-\tau} \tau^k d\tau = k!\, h^{k+1} \varphi_{k+1}(h), \qquad
    \int_0^h e^{\tau-h} \tau^k d\tau = k!\, h^{k+1} \varphi_{k+1}(-h).

Every coefficient here is a Python float computed once per step (the arrays only see
``a * x + b * y``), so the same code runs on NumPy and torch, any dtype and device.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from diffcore._array import namespace
from diffcore._validation import check_finite
from diffcore.samplers._base import SCALAR_ODE, AbstractSolver, Requirements

__all__ = ["ExponentialSolver", "denoise", "phi", "polynomial_weights"]

Array = Any


def phi(k: int, z: float) -> float:
    r"""``phi_k(z) = sum_j z^j / (j + k)!`` (``phi_0 = e^z``, ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z``).

    The recursion loses digits to cancellation for small ``|z|``; there the series is summed.
    """
    if abs(z) < 0.5:
        total, term = 0.0, 1.0 / math.factorial(k)
        for j in range(30):
            total += term
            term *= z / (j + k + 1)
        return total
    value = math.exp(z)
    for j in range(k):
        value = (value - 1.0 / math.factorial(j)) / z
    return value


def polynomial_weights(nodes: list[float], moments: list[float]) -> np.ndarray:
    r"""Weights ``w_j`` with ``sum_j w_j p(r_j) = sum_k p_k m_k`` for every polynomial ``p = sum_k p_k r^k``.

    ``nodes`` are the ``K`` distinct interpolation points ``r_j``, ``moments`` the ``K`` values
    ``m_k`` (the integral of ``r^k`` against the weight); the weights integrate the Lagrange
    interpolant of the values exactly: ``V^T w = m`` with ``V_jk = r_j^k``.
    """
    r = np.asarray(nodes, dtype=np.float64)
    vander = r[:, None] ** np.arange(len(r))[None, :]
    return np.linalg.solve(vander.T, np.asarray(moments, dtype=np.float64))


def half_lambda(process: Any, t: float) -> float:
    """``lambda(t) = log(alpha(t) / sigma(t))``, half the process's ``log_snr``."""
    return 0.5 * float(process.log_snr(t))


def time_of(process: Any, lam: float) -> float:
    """The time whose ``log(alpha / sigma)`` is ``lam`` (the process's exact inverse)."""
    return float(process.log_snr_inverse(2.0 * lam))


class ExponentialSolver(AbstractSolver):
    """Common checks and predictions of the exponential integrators of the probability-flow ODE.

    Subclasses integrate :class:`~diffcore.ProbabilityFlowODE` (or ``ReverseSDE`` with
    ``noise_scale = 0``) of any affine process; they need ``alpha > 0`` and ``sigma > 0`` at
    every time they evaluate the model (a finite log-SNR).
    """

    requires: ClassVar[Requirements] = SCALAR_ODE
    grid: ClassVar[str] = "log_snr"

    def _coefficients(self, process: Any, t: float) -> tuple[float, float, float]:
        """``(alpha, sigma, lambda)`` at ``t``; raise where the log-SNR is not finite."""
        a, s = float(process.alpha(t)), float(process.sigma(t))
        if not (a > 0 and s > 0 and math.isfinite(a) and math.isfinite(s)):
            raise ValueError(
                f"{self.name} works in log-SNR time and needs alpha(t) > 0 and sigma(t) > 0; got alpha = {a}, "
                f"sigma = {s} at t = {t}: start below the end of the schedule and stop above t = 0"
            )
        return a, s, math.log(a / s)

    @staticmethod
    def _eps(dynamics, x: Array, t: float, sigma: float) -> Array:
        """Noise prediction ``eps = -sigma * score`` (Lu et al. 2022, eq. 2.5)."""
        return -sigma * dynamics.score(x, t)

    @staticmethod
    def _x0(dynamics, x: Array, t: float, alpha: float, sigma: float) -> Array:
        """Data prediction ``x0 = (x + sigma^2 score) / alpha`` (Tweedie; Lu et al. 2022b, eq. 7)."""
        return (x + sigma**2 * dynamics.score(x, t)) / alpha

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _LowerOrderFinal:
    """Mixin: the keyword ``first_order_below`` of the multistep methods (a safe final step).

    Every step that ends at ``t1 < first_order_below`` uses the first-order update (DDIM,
    i.e. DPM-Solver-1) instead of the method's multistep formula; its model evaluation still
    enters the history.  With ``first_order_below`` between ``t_min`` and the grid's last
    but one time exactly the final step is first order (the ``lower_order_final`` /
    ``euler_at_final`` device of DPM-Solver++ and its implementations): its local error is
    ``O(h^2)``, so the global error becomes ``O(h^min(p, 2))`` — a second-order term that is
    traded for robustness where the score is stiffest (near ``t = 0``).  The default ``0``
    never triggers.
    """

    def __init__(self, *, first_order_below: float = 0.0) -> None:
        value = float(first_order_below)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"first_order_below must lie in [0, 1]; got {first_order_below}")
        self.first_order_below = value

    def _first_order_here(self, t0: float, t1: float) -> bool:
        return t1 < t0 and t1 < self.first_order_below

    def __repr__(self) -> str:
        extra = f"first_order_below={self.first_order_below}" if self.first_order_below else ""
        return f"{type(self).__name__}({extra})"


def denoise(process: Any, score: Any, x: Array, t: float) -> Array:
    r"""Tweedie's denoiser: the final step from ``x_t`` at ``t = t_min`` to ``t = 0``.

    .. math:: \hat x_0 = E[x_0 \mid x_t] = \frac{x_t + \sigma_t^2 \nabla \log p_t(x_t)}{\alpha_t}

    (Efron 2011; Song et al. 2021, app. G "denoising"; Karras et al. 2022 end their samplers
    at ``sigma = 0`` with the same Euler step).  It costs one score evaluation.  When
    ``sigma(0) = 0`` and ``alpha(0) = 1`` it equals one DDIM step from ``t`` to ``0``.

    What it does to the error: the output is the posterior *mean*, not a sample — for data
    with a density it removes the remaining noise ``sigma(t_min)`` (the law at ``t_min`` has
    covariance ``alpha^2 C + sigma^2 I``; the denoised points have ``C`` shrunk by
    ``alpha^2 C / (alpha^2 C + sigma^2)``), i.e. a bias ``O(sigma(t_min)^2)`` in the
    covariance in place of the ``O(sigma(t_min)^2)`` excess variance left by stopping at
    ``t_min``; a solver's discretisation error at ``t_min`` passes through multiplied by the
    denoiser's Jacobian ``(I + sigma^2 H) / alpha`` (``H`` the Hessian of ``log p_t``), which
    is bounded by ``1 / alpha`` but can be much smaller along stiff directions.  For a point
    mass it returns the point exactly.

    Parameters
    ----------
    process : the forward process (``alpha``, ``sigma``).
    score : callable ``(x, t) -> array`` shaped like ``x``.
    x : array ``(n, ...)`` at time ``t``.
    t : a float in ``(0, 1]`` with ``alpha(t) > 0``.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE
    >>> p, m = VPSDE(), np.array([[1.0, -2.0]])
    >>> point_mass_score = lambda x, t: -(x - p.alpha(t) * m) / p.sigma(t) ** 2
    >>> x_t = p.alpha(0.01) * m + p.sigma(0.01) * np.array([[0.3, 0.4]])
    >>> bool(np.allclose(denoise(p, point_mass_score, x_t, 0.01), m))
    True
    """
    t = float(t)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"t must lie in (0, 1]; got {t}")
    check_finite("x", x)
    a, s = float(process.alpha(t)), float(process.sigma(t))
    if not a > 0:
        raise ValueError(f"denoise divides by alpha(t), which is {a} at t = {t}")
    out = (x + s**2 * score(x, t)) / a
    xp = namespace(out)
    if not bool(xp.all(xp.isfinite(out))):
        raise FloatingPointError(f"denoise: the score at t = {t} gave a non-finite result")
    return out
