"""The abstract affine forward process ``x_t = alpha(t) x_0 + sigma(t) eps``."""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np

from diffcore._array import broadcast_time, flatten_batch, is_scalar_time, namespace, normal, resolve_rng
from diffcore._schedule import evaluate
from diffcore._validation import check_array, check_batch, check_time
from diffcore.processes._linear import AbstractLinearSDE, Transition

__all__ = ["AbstractProcess", "Transition"]

Array = Any

#: ``g^2`` in ``[-G2_ROUNDING, 0)`` is taken as rounding of a zero ``g^2``: the finite-difference
#: derivatives of :class:`~diffcore.AffineProcess` are accurate to ~1e-10, closed forms to ~1e-15,
#: while a schedule that is not a diffusion has ``g^2`` of order one where it goes wrong
G2_ROUNDING = 1e-9


class AbstractProcess(AbstractLinearSDE):
    r"""A forward diffusion whose marginal given ``x_0`` is ``N(alpha(t) x_0, sigma(t)^2 I)``.

    The process is the linear SDE ``dx = f(t) x dt + g(t) dW`` with

    .. math::  f(t) = \frac{d \log \alpha}{dt}, \qquad
               g(t)^2 = \frac{d \sigma^2}{dt} - 2 f(t) \sigma(t)^2,

    so that ``alpha`` and ``sigma`` are exactly the marginal coefficients of the process's
    own drift and diffusion (Song et al. 2021, eqs. 5 and 29; Kingma et al. 2021, app. A).
    Subclasses give ``_alpha``, ``_sigma``, ``_d_alpha`` and ``_d_sigma`` as formulas
    ``(t, xp) -> array`` and may override the derived quantities with closed forms that
    are more accurate (the generic ones are always valid).

    Every public method takes ``t`` as a float in ``[0, 1]`` (returns a float) or an array
    of shape ``(n,)`` (returns an array of the same type, dtype and device).  It is the
    :class:`~diffcore.processes.AbstractLinearSDE` with scalar coefficients; solvers that step
    with ``alpha``, ``sigma`` or the log-SNR declare ``process=AbstractProcess``.
    """

    #: standard deviation of the isotropic Gaussian prior at ``t = 1``
    prior_std: float = 1.0

    # -- schedule formulas supplied by subclasses ------------------------------------------
    @abc.abstractmethod
    def _alpha(self, t: Array, xp: Any) -> Array: ...

    @abc.abstractmethod
    def _sigma(self, t: Array, xp: Any) -> Array: ...

    @abc.abstractmethod
    def _d_alpha(self, t: Array, xp: Any) -> Array: ...

    @abc.abstractmethod
    def _d_sigma(self, t: Array, xp: Any) -> Array: ...

    def _f(self, t: Array, xp: Any) -> Array:
        alpha = self._alpha(t, xp)
        if is_scalar_time(t) and alpha == 0:
            raise ValueError(
                f"{type(self).__name__}: f(t) = alpha'(t) / alpha(t) is infinite at t = {float(t)}, where alpha(t) = 0 "
                f"(the schedule reaches pure noise), so the drift f(t) x and g(t)^2 are not defined there: stop "
                f"short of t = {float(t)}, or give the model as a velocity (reparametrize(velocity, process, "
                f"source='velocity')), whose probability-flow drift needs neither"
            )
        return self._d_alpha(t, xp) / alpha

    def _g2(self, t: Array, xp: Any) -> Array:
        sigma = self._sigma(t, xp)
        return 2 * sigma * self._d_sigma(t, xp) - 2 * self._f(t, xp) * sigma**2

    def _log_snr(self, t: Array, xp: Any) -> Array:
        return 2 * (xp.log(self._alpha(t, xp)) - xp.log(self._sigma(t, xp)))

    def _log_snr_inverse(self, lam: Array, xp: Any) -> Array:
        """Bisection on the (decreasing) log-SNR; subclasses override with closed forms."""
        return bisect_decreasing(lambda t: self._log_snr(t, xp), lam, xp)

    def _transition_var(self, s: Array, t: Array, xp: Any) -> Array:
        scale = self._alpha(t, xp) / self._alpha(s, xp)
        return self._sigma(t, xp) ** 2 - scale**2 * self._sigma(s, xp) ** 2

    # -- public schedule -------------------------------------------------------------------
    def alpha(self, t: Any) -> Any:
        """Signal coefficient ``alpha(t)`` of ``x_t = alpha(t) x_0 + sigma(t) eps``."""
        return evaluate(self._alpha, t)

    def sigma(self, t: Any) -> Any:
        """Noise coefficient ``sigma(t)``: the std of ``x_t`` given ``x_0``."""
        return evaluate(self._sigma, t)

    def d_alpha(self, t: Any) -> Any:
        """Time derivative ``d alpha / dt``."""
        return evaluate(self._d_alpha, t)

    def d_sigma(self, t: Any) -> Any:
        """Time derivative ``d sigma / dt`` (infinite where ``sigma ~ sqrt(t)`` at ``t = 0``)."""
        return evaluate(self._d_sigma, t)

    def drift_coef(self, t: Any) -> Any:
        """``f(t) = d log alpha / dt``, so that ``drift(x, t) = f(t) x``.

        Where ``alpha(t) = 0`` (the end of a schedule that reaches pure noise, e.g. ``alpha = 1 - t``
        at ``t = 1``) ``f`` is infinite: ``ValueError`` naming ``t`` for a float ``t``; for an array
        ``t`` those entries hold the IEEE limit (``-inf``), as :meth:`diffusion_squared` holds ``+inf``.
        """
        return evaluate(self._f, t)

    def diffusion_squared(self, t: Any) -> Any:
        """``g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2``."""
        return evaluate(self._g2, t)

    def diffusion(self, t: Any) -> Any:
        """``g(t)``, the diffusion coefficient of ``dx = f(t) x dt + g(t) dW``.

        ``g^2`` within :data:`G2_ROUNDING` below zero is rounding (e.g. of the finite-difference
        derivatives of :class:`~diffcore.AffineProcess` where ``g(0) = 0``) and gives ``g = 0``.
        A truly negative ``g^2`` means the schedule is not a diffusion (``sigma / alpha``
        decreases): ``ValueError`` for a float ``t``, NaN in those entries of an array ``t``.
        """
        g2 = self.diffusion_squared(t)
        if is_scalar_time(t):
            if g2 < -G2_ROUNDING:
                raise ValueError(
                    f"{type(self).__name__} has g(t)^2 = {g2} < 0 at t = {t}: the schedule is not a diffusion "
                    f"there (sigma / alpha must not decrease)"
                )
            return math.sqrt(max(g2, 0.0))
        xp = namespace(g2)
        g = xp.sqrt(xp.where(g2 > 0, g2, xp.zeros_like(g2)))
        return xp.where(g2 < -G2_ROUNDING, xp.full_like(g2, math.nan), g)

    def drift(self, x: Array, t: Any) -> Array:
        """``f(t) x`` for a batch ``x`` of shape ``(n, ...)`` and ``t`` float or ``(n,)``."""
        x = check_batch("x", x)
        return broadcast_time(self.drift_coef(t), x) * x

    def log_snr(self, t: Any) -> Any:
        """``lambda(t) = log(alpha(t)^2 / sigma(t)^2)``, strictly decreasing in ``t``."""
        return evaluate(self._log_snr, t)

    def log_snr_inverse(self, lam: Any) -> Any:
        """The time ``t`` with ``log_snr(t) = lam``; ``lam`` must lie in the schedule's range."""
        lo, hi = self.log_snr(1.0), self.log_snr(0.0)
        if is_scalar_time(lam):
            lam_f = float(lam)
            if not lo <= lam_f <= hi:
                raise ValueError(f"lam must lie in [log_snr(1), log_snr(0)] = [{lo}, {hi}]; got {lam_f}")
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                t = float(self._log_snr_inverse(np.float64(lam_f), np))
            return min(max(t, 0.0), 1.0)
        xp = namespace(lam)
        bad = xp.logical_not((lam >= lo) & (lam <= hi))
        if bool(xp.any(bad)):
            raise ValueError(
                f"lam must lie in [log_snr(1), log_snr(0)] = [{lo}, {hi}]; got {float(lam[bad][0])}"
            )
        return xp.clip(self._log_snr_inverse(lam, xp), 0.0, 1.0)

    # -- laws ------------------------------------------------------------------------------
    def transition(self, s: Any, t: Any) -> Transition:
        """The exact law of ``x_t`` given ``x_s`` for ``s <= t``.

        ``x_t = (alpha_t / alpha_s) x_s + sqrt(sigma_t^2 - (alpha_t/alpha_s)^2 sigma_s^2) z``
        (Song et al. 2021, app. B; Kingma et al. 2021, eq. 4).  Transitions compose:
        ``s -> u -> t`` equals ``s -> t``.
        """
        s, t = check_time(s, "s"), check_time(t, "t")
        if is_scalar_time(s) and is_scalar_time(t):
            if s > t:
                raise ValueError(f"transition needs s <= t; got s={s}, t={t}")
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = float(self._alpha(np.float64(t), np) / self._alpha(np.float64(s), np))
                var = float(self._transition_var(np.float64(s), np.float64(t), np))
            return Transition(s, t, scale, math.sqrt(max(var, 0.0)))
        xp = namespace(s, t)
        s = xp.full_like(t, s) if is_scalar_time(s) else s
        t = xp.full_like(s, t) if is_scalar_time(t) else t
        bad = s > t
        if bool(xp.any(bad)):
            first_s = s[bad][0] if getattr(s, "ndim", 0) else s
            first_t = t[bad][0] if getattr(t, "ndim", 0) else t
            raise ValueError(f"transition needs s <= t for every pair; got s={float(first_s)}, t={float(first_t)}")
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = self._alpha(t, xp) / self._alpha(s, xp)
            var = self._transition_var(s, t, xp)
        return Transition(s, t, scale, xp.sqrt(xp.clip(var, 0.0, None)))

    def sample_transition(self, x_s: Array, s: Any, t: Any, rng: Any = None) -> Array:
        """Draw ``x_t`` given ``x_s`` (shape ``(n, ...)``) from :meth:`transition`."""
        x_s = check_array("x_s", x_s)
        tr = self.transition(s, t)
        z = normal(resolve_rng(rng), tuple(x_s.shape), x_s)
        return broadcast_time(tr.scale, x_s) * x_s + broadcast_time(tr.std, x_s) * z

    def prior_sample(self, shape: tuple[int, ...], rng: Any = None, *, like: Array = None) -> Array:
        """Draw from the prior ``N(0, prior_std^2 I)``.

        Returns a NumPy float64 array unless ``like`` (an array whose type, dtype and device
        are used) is given or ``rng`` is a ``torch.Generator`` (then a torch tensor in the
        default dtype on the generator's device).
        """
        rng = resolve_rng(rng)
        if like is None:
            if isinstance(rng, np.random.Generator):
                like = np.empty(0)
            else:
                import torch

                like = torch.empty(0, device=rng.device)
        return self.prior_std * normal(rng, tuple(shape), like)

    def prior_log_prob(self, x: Array) -> Array:
        """``log N(x; 0, prior_std^2 I)`` summed over all but the batch axis; shape ``(n,)``."""
        x = check_array("x", x, finite=False)  # called along sampler paths: values are not read
        xp, flat = namespace(x), flatten_batch(x)
        dim = flat.shape[1]
        return -0.5 * xp.sum(flat**2, axis=1) / self.prior_std**2 - 0.5 * dim * math.log(
            2 * math.pi * self.prior_std**2
        )


def bisect_decreasing(fn: Any, target: Array, xp: Any, steps: int = 64) -> Array:
    """The ``t`` in ``[0, 1]`` with ``fn(t) = target`` for a decreasing ``fn``, elementwise, by ``steps`` bisections."""
    lo, hi = xp.zeros_like(target), xp.ones_like(target)
    for _ in range(steps):
        mid = (lo + hi) / 2
        above = fn(mid) > target
        lo = xp.where(above, mid, lo)
        hi = xp.where(above, hi, mid)
    return (lo + hi) / 2
