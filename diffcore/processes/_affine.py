"""A general affine process from any ``alpha(t)``, ``sigma(t)`` pair."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffcore._schedule import fd_derivative
from diffcore._validation import check_positive
from diffcore.processes._base import AbstractProcess

__all__ = ["AffineProcess"]

@dataclass(frozen=True)
class AffineProcess(AbstractProcess):
    r"""The affine process with user-given marginal coefficients ``alpha(t)``, ``sigma(t)``.

    Its SDE is derived, not chosen: ``f = d log alpha / dt`` and
    ``g^2 = d sigma^2/dt - 2 f sigma^2`` (Kingma et al. 2021, app. A; Song et al. 2021,
    eq. 29), so ``x_t = alpha(t) x_0 + sigma(t) eps`` is exactly the law of the process
    started at ``x_0``.  The callables take a time array (NumPy, or torch if you use torch
    tensors) and return an array of the same shape.  Derivatives may be given; otherwise
    they are fourth-order finite differences with step ``fd_step`` (accurate to about
    ``1e-10`` for smooth schedules).  Without ``d_sigma_fn``, ``g^2`` differentiates
    ``sigma^2``, which stays smooth where ``sigma ~ sqrt(t)`` (VP-like schedules), so
    ``g(0)`` is right; with ``d_sigma_fn`` the generic ``2 sigma sigma' - 2 f sigma^2`` is
    used, which is ``0 * inf = NaN`` at a point where ``sigma = 0`` and ``sigma' = inf``.
    The log-SNR inverse is a 64-step bisection, valid when the log-SNR is decreasing.
    ``g^2`` must be non-negative: a schedule with ``d(sigma/alpha)/dt < 0`` somewhere is
    not a diffusion, and :meth:`diffusion` returns NaN there.

    Example
    -------
    >>> import numpy as np
    >>> p = AffineProcess(lambda t: 1 - t, lambda t: t)  # the rectified-flow path
    >>> round(p.diffusion_squared(0.5), 9)  # 2 t / (1 - t)
    2.0
    """

    alpha_fn: Callable[[Any], Any]
    sigma_fn: Callable[[Any], Any]
    d_alpha_fn: Callable[[Any], Any] | None = None
    d_sigma_fn: Callable[[Any], Any] | None = None
    prior_std: float = 1.0
    fd_step: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("alpha_fn", "sigma_fn"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable; got {type(getattr(self, name)).__name__}")
        for name in ("d_alpha_fn", "d_sigma_fn"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable or None; got {type(value).__name__}")
        check_positive("prior_std", self.prior_std)
        check_positive("fd_step", self.fd_step)
        if self.fd_step > 0.05:
            raise ValueError(f"fd_step must be <= 0.05; got {self.fd_step}")

    def _alpha(self, t, xp):
        return self.alpha_fn(t)

    def _sigma(self, t, xp):
        return self.sigma_fn(t)

    def _d_alpha(self, t, xp):
        if self.d_alpha_fn is not None:
            return self.d_alpha_fn(t)
        return fd_derivative(self.alpha_fn, t, xp, self.fd_step)

    def _d_sigma2(self, t, xp):
        return fd_derivative(lambda u: self.sigma_fn(u) ** 2, t, xp, self.fd_step)

    def _d_sigma(self, t, xp):
        if self.d_sigma_fn is not None:
            return self.d_sigma_fn(t)
        # (sigma^2)' / (2 sigma) keeps d_sigma consistent with g^2 below; FD of sigma where sigma = 0
        sigma = self.sigma_fn(t)
        safe = xp.where(sigma > 0, sigma, xp.ones_like(sigma))
        direct = fd_derivative(self.sigma_fn, t, xp, self.fd_step)
        return xp.where(sigma > 0, self._d_sigma2(t, xp) / (2 * safe), direct)

    def _g2(self, t, xp):
        if self.d_sigma_fn is not None:
            return AbstractProcess._g2(self, t, xp)
        # differentiate sigma^2, which stays smooth where sigma ~ sqrt(t) (so g^2(0) is right)
        return self._d_sigma2(t, xp) - 2 * self._f(t, xp) * self.sigma_fn(t) ** 2
