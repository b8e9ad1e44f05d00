"""Variance-preserving processes: linear-beta VP, sub-VP and the cosine schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffcore._validation import check_positive
from diffcore.processes._base import AbstractProcess

__all__ = ["VPSDE", "CosineVPSDE", "SubVPSDE"]


def _check_betas(beta_min: float, beta_max: float) -> None:
    check_positive("beta_min", beta_min)
    check_positive("beta_max", beta_max)
    if beta_max < beta_min:
        raise ValueError(f"beta_max must be >= beta_min; got beta_min={beta_min}, beta_max={beta_max}")


@dataclass(frozen=True)
class _LinearBeta(AbstractProcess):
    """Shared linear ``beta(t) = beta_min + (beta_max - beta_min) t`` and ``B(t) = int_0^t beta``."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self) -> None:
        _check_betas(self.beta_min, self.beta_max)

    def _beta(self, t, xp):
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def _B(self, t, xp):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def _B_inverse(self, b, xp):
        # root of (beta_max - beta_min)/2 t^2 + beta_min t - b = 0, in the cancellation-free form
        return 2 * b / (self.beta_min + xp.sqrt(self.beta_min**2 + 2 * (self.beta_max - self.beta_min) * b))

    def _alpha(self, t, xp):
        return xp.exp(-0.5 * self._B(t, xp))

    def _d_alpha(self, t, xp):
        return -0.5 * self._beta(t, xp) * self._alpha(t, xp)

    def _f(self, t, xp):
        return -0.5 * self._beta(t, xp)


@dataclass(frozen=True)
class VPSDE(_LinearBeta):
    r"""The variance-preserving SDE ``dx = -beta(t)/2 x dt + sqrt(beta(t)) dW``.

    ``beta(t) = beta_min + (beta_max - beta_min) t``; with ``B(t) = int_0^t beta``,

    .. math:: \alpha(t) = e^{-B(t)/2}, \quad \sigma(t) = \sqrt{1 - e^{-B(t)}},
              \quad \lambda(t) = -\log(e^{B(t)} - 1),

    so ``alpha^2 + sigma^2 = 1`` (Song et al. 2021, eqs. 11 and 29; the continuous limit of
    DDPM, Ho et al. 2020).  Prior ``N(0, I)``.

    Example
    -------
    >>> p = VPSDE()
    >>> round(p.alpha(0.5) ** 2 + p.sigma(0.5) ** 2, 12)
    1.0
    """

    def _sigma(self, t, xp):
        return xp.sqrt(-xp.expm1(-self._B(t, xp)))

    def _d_sigma(self, t, xp):
        return 0.5 * self._beta(t, xp) * xp.exp(-self._B(t, xp)) / self._sigma(t, xp)

    def _g2(self, t, xp):
        return self._beta(t, xp)

    def _log_snr(self, t, xp):
        return -xp.log(xp.expm1(self._B(t, xp)))

    def _log_snr_inverse(self, lam, xp):
        return self._B_inverse(xp.logaddexp(xp.zeros_like(lam), -lam), xp)  # B = softplus(-lam)

    def _transition_var(self, s, t, xp):
        return -xp.expm1(self._B(s, xp) - self._B(t, xp))


@dataclass(frozen=True)
class SubVPSDE(_LinearBeta):
    r"""The sub-VP SDE ``dx = -beta/2 x dt + sqrt(beta(t) (1 - e^{-2B(t)})) dW``.

    Same ``alpha(t) = e^{-B/2}`` as :class:`VPSDE` but ``sigma(t) = 1 - e^{-B(t)}``, which
    is below the VP sigma at every ``t`` (Song et al. 2021, eq. 12 and app. B).
    The log-SNR inverse is closed form: ``B = 2 asinh(e^{-lambda/2} / 2)``.  Prior ``N(0, I)``.
    """

    def _sigma(self, t, xp):
        return -xp.expm1(-self._B(t, xp))

    def _d_sigma(self, t, xp):
        return self._beta(t, xp) * xp.exp(-self._B(t, xp))

    def _g2(self, t, xp):
        return -self._beta(t, xp) * xp.expm1(-2 * self._B(t, xp))

    def _log_snr(self, t, xp):
        b = self._B(t, xp)
        return -b - 2 * xp.log(-xp.expm1(-b))

    def _log_snr_inverse(self, lam, xp):
        return self._B_inverse(2 * xp.asinh(0.5 * xp.exp(-0.5 * lam)), xp)


@dataclass(frozen=True)
class CosineVPSDE(AbstractProcess):
    r"""The cosine variance-preserving schedule of Nichol and Dhariwal (2021, eq. 17).

    With ``theta(t) = (pi/2) (end * t + s) / (1 + s)``,

    .. math:: \alpha(t) = \cos\theta(t) / \cos\theta(0), \qquad
              \sigma(t) = \sqrt{1 - \alpha(t)^2},

    a VP process (``g^2 = -2 f``, ``f = -theta' tan theta``).  ``end < 1`` stops short of
    ``alpha = 0``, where the drift is singular; the default 0.9946 is the truncation used by
    DPM-Solver (Lu et al. 2022, app. D) and gives ``alpha(1) ~ 8.4e-3``.  ``end = 1`` is
    allowed (then ``alpha(1) = 0`` and ``log_snr(1) = -inf``).  Prior ``N(0, I)``.
    """

    s: float = 0.008
    end: float = 0.9946

    def __post_init__(self) -> None:
        check_positive("s", self.s)
        check_positive("end", self.end)
        if self.end > 1:
            raise ValueError(f"end must lie in (0, 1]; got {self.end}")

    @property
    def _theta0(self) -> float:
        return 0.5 * math.pi * self.s / (1 + self.s)

    @property
    def _dtheta(self) -> float:
        return 0.5 * math.pi * self.end / (1 + self.s)

    def _theta(self, t, xp):
        return self._theta0 + self._dtheta * t

    def _phi(self, t, xp):
        # the complement pi/2 - theta = (pi/2) (1 - end t) / (1 + s), formed without cancellation
        return (0.5 * math.pi / (1 + self.s)) * (1 - self.end * t)

    def _alpha(self, t, xp):
        # cos(theta) = sin(phi): exactly 0 at t = end = 1 and accurate near it, where cos(theta)
        # would carry an absolute error ~6e-17
        return xp.sin(self._phi(t, xp)) / math.cos(self._theta0)

    def _d_alpha(self, t, xp):
        return -self._dtheta * xp.cos(self._phi(t, xp)) / math.cos(self._theta0)

    def _f(self, t, xp):
        # -theta' tan(theta) = -theta' cos(phi) / sin(phi): -inf exactly at t = end = 1
        phi = self._phi(t, xp)
        return -self._dtheta * xp.cos(phi) / xp.sin(phi)

    def _sigma2(self, t, xp):
        # 1 - alpha^2 = sin(theta - theta0) sin(theta + theta0) / cos^2 theta0, free of cancellation
        # (theta - theta0 = dtheta t is formed directly, not as a difference)
        delta = self._dtheta * t
        return xp.sin(delta) * xp.sin(2 * self._theta0 + delta) / math.cos(self._theta0) ** 2

    def _sigma(self, t, xp):
        return xp.sqrt(self._sigma2(t, xp))

    def _d_sigma(self, t, xp):
        return -self._alpha(t, xp) * self._d_alpha(t, xp) / self._sigma(t, xp)

    def _g2(self, t, xp):
        return -2 * self._f(t, xp)

    def _log_snr(self, t, xp):
        return 2 * xp.log(self._alpha(t, xp)) - xp.log(self._sigma2(t, xp))

    def _log_snr_inverse(self, lam, xp):
        # alpha^2 = sigmoid(lam), sigma^2 = sigmoid(-lam), cos(theta) = cos(theta0) alpha and
        # sin(theta) = r = sqrt(sin^2 theta0 + cos^2 theta0 sigma^2).  Solve for delta = theta - theta0
        # directly, so that t keeps full relative accuracy near 0:
        # sin(delta) ~ cos(theta0) (r - alpha sin(theta0)) = cos(theta0) sigma^2 / (r + alpha sin(theta0)),
        # cos(delta) ~ cos(theta0)^2 alpha + r sin(theta0)   (common positive factor dropped).
        zero = xp.zeros_like(lam)
        alpha = xp.exp(-0.5 * xp.logaddexp(zero, -lam))
        sigma2 = xp.exp(-xp.logaddexp(zero, lam))
        c0, s0 = math.cos(self._theta0), math.sin(self._theta0)
        r = xp.sqrt(s0**2 + c0**2 * sigma2)
        delta = xp.atan2(c0 * sigma2 / (r + alpha * s0), c0**2 * alpha + r * s0)
        return delta / self._dtheta
