"""Residual processes shifted towards a degraded input ``y``: RDDM and ResShift.

Both are affine processes with a mean shift, ``x_t = y + alpha(t)(x_0 - y) + sigma(t) eps``,
the form of the mean-reverting SDE (:class:`~diffcore.processes.MeanRevertingSDE`) with ``mu = y``
but with ``sigma`` chosen freely instead of tied to ``alpha`` by ``sigma^2 = lambda^2 (1 - alpha^2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import is_torch_array

from diffcore._array import as_array, broadcast_time, device_of, is_scalar_time
from diffcore._validation import check_array, check_batch, check_positive
from diffcore.processes._base import AbstractProcess
from diffcore.processes._mean_reverting import MeanRevertingSDE

__all__ = ["ResShift", "ResidualDiffusion"]

Array = Any


def _clean_y(y: Any) -> Any:
    """``y`` as a finite float64 NumPy array (or the torch tensor as given); the rule in the message."""
    if not is_torch_array(y):
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"y must be a real number or array; got {type(y).__name__}") from None
    host = np.asarray(y.detach().cpu()) if is_torch_array(y) else y
    if host.ndim and host.size == 0:
        raise ValueError(f"y must have the shape of one sample (non-empty); got shape {tuple(host.shape)}")
    if not bool(np.all(np.isfinite(host))):
        raise ValueError(f"y must be finite; got {host}")
    return y


class _ShiftedByY(AbstractProcess):
    """What RDDM and ResShift share: the degraded input ``y`` as the mean shift ``mu``."""

    y: Any
    _y_cache: dict

    @property
    def shift(self) -> Any:
        """``y``: ``x_t = y + alpha(t)(x_0 - y) + sigma(t) eps``."""
        return self.y

    def shift_like(self, x: Array) -> Array:
        """``y`` as an array of ``x``'s type, dtype and device (converted once per kind and cached),
        checked to fit one sample ``x[i]``."""
        if self.y.ndim and tuple(self.y.shape) != tuple(x.shape[1:]):
            raise ValueError(
                f"y must be a scalar or have the shape of one sample, x.shape[1:] = {tuple(x.shape[1:])}; "
                f"got y of shape {tuple(self.y.shape)}"
            )
        key = (type(x).__module__, str(device_of(x)), str(x.dtype))
        if key not in self._y_cache:
            self._y_cache[key] = as_array(self.y, x)
        return self._y_cache[key]

    @property
    def prior_std(self) -> float:  # type: ignore[override]
        """``sigma(1)``: the prior is ``N(y, sigma(1)^2 I)``."""
        return float(self.sigma(1.0))

    def drift(self, x: Array, t: Any) -> Array:
        """``f(t)(x - y)`` for ``x`` of shape ``(n, ...)``."""
        x = check_batch("x", x)
        return broadcast_time(self.drift_coef(t), x) * (x - self.shift_like(x))

    def sample_transition(self, x_s: Array, s: Any, t: Any, rng: Any = None) -> Array:
        """Draw ``x_t = y + scale (x_s - y) + std z`` given ``x_s`` (shape ``(n, ...)``)."""
        x_s = check_array("x_s", x_s)
        y = self.shift_like(x_s)
        return y + AbstractProcess.sample_transition(self, x_s - y, s, t, rng)

    def prior_sample(self, shape: tuple[int, ...], rng: Any = None, *, like: Array = None) -> Array:
        """Draw from the prior ``N(y, sigma(1)^2 I)``; array type as in the base class."""
        z = AbstractProcess.prior_sample(self, shape, rng, like=like)
        return z + self.shift_like(z)

    def prior_log_prob(self, x: Array) -> Array:
        """``log N(x; y, sigma(1)^2 I)`` summed over all but the batch axis; shape ``(n,)``."""
        x = check_batch("x", x)
        return AbstractProcess.prior_log_prob(self, x - self.shift_like(x))


@dataclass(frozen=True, eq=False)
class ResidualDiffusion(_ShiftedByY):
    r"""The residual denoising diffusion of RDDM: ``x_t = x_0 + abar_t (y - x_0) + bbar_t eps``.

    The residual ``r = y - x_0`` (degraded input minus clean image) is added at the rate
    ``abar_t`` and the noise at ``bbar_t`` (Liu et al. 2024, eqs. 4–5).  Written as an affine
    process with mean shift ``y``,

    .. math:: x_t = y + \alpha(t)(x_0 - y) + \sigma(t)\,\varepsilon, \qquad
              \alpha(t) = 1 - \bar\alpha_t, \quad \sigma(t) = \bar\beta_t ,

    the linear SDE ``dx = f(t)(x - y) dt + g(t) dW`` with ``f = d log alpha/dt`` and
    ``g^2 = d sigma^2/dt - 2 f sigma^2`` (``alpha``, ``sigma``, ``drift_coef``,
    ``diffusion_squared`` return these), so :func:`~diffcore.marginal`,
    :func:`~diffcore.exact_score`, :class:`~diffcore.ReverseSDE`,
    :class:`~diffcore.ProbabilityFlowODE` and :func:`~diffcore.sample` apply unchanged.

    Schedule (continuous analogue of the paper's default for restoration):

    .. math:: \bar\alpha_t = 1 - (1 - t)^{p}, \qquad \bar\beta_t^2 = \bar\beta_1^2\, t^{q} .

    The paper's discrete increments ``alpha_i = abar_i - abar_{i-1}`` and
    ``beta_i^2 = bbar_i^2 - bbar_{i-1}^2`` (``i = 1..T``, ``sum alpha_i = 1``,
    ``sum beta_i^2 = bbar_T^2``) are these at ``t_i = i/T``; its ``gen_coefficients`` schedules
    map as: ``alpha_i`` "decreased" with ratio ``k`` (``alpha_i`` falling like ``(1 - u)^k``)
    to ``p = k + 1`` (default ``p = 2``, linear decrease), "average" to ``p = 1``; ``beta_i^2``
    "increased" with ratio ``k`` to ``q = k + 1`` (default ``q = 2``), "average" to ``q = 1``;
    its ``sum_scale`` (0.01 for restoration) is ``bbar_1^2`` (default ``bbar_1 = 0.1``).
    The discrete sums equal the continuous schedule at ``t_i`` up to ``O(1/T)``.

    The end ``t = 1``.  ``alpha(1) = 0``: the residual is fully added, ``x_1 = y + bbar_1 eps``
    for every ``x_0``, so the prior ``N(y, bbar_1^2 I)`` is the exact law of ``x_1`` (unlike
    IR-SDE, whose prior is only the ``t -> infinity`` law).  There ``f = -p/(1 - t)`` is
    infinite: ``drift_coef(1.0)`` raises a ``ValueError`` naming ``t`` (an array ``t`` holds
    ``-inf``, and ``diffusion_squared`` ``+inf``), and the exact score at ``t = 1``,
    ``-(x - y)/bbar_1^2``, carries no information about ``x_0``.  So no sampler driven by a
    score can leave ``t = 1``: sample from ``t_max < 1`` (e.g. ``1 - 1e-3``, where
    ``alpha = 1e-6`` for ``p = 2``), starting from the prior (error ``O(alpha(t_max))`` in the
    mean and ``O(1 - t_max)`` in ``sigma^2``) or from the exact marginal.  RDDM's network, which
    predicts the residual itself, does not meet this limit.

    Parameters
    ----------
    y : the degraded input: a float, or an array of the shape of one sample (``(d,)`` for points
        ``(n, d)``); NumPy or torch, finite.
    residual_power : ``p > 0`` in ``abar_t = 1 - (1 - t)^p``.
    noise_power : ``q > 0`` in ``bbar_t^2 = bbar_1^2 t^q`` (``q >= 1`` keeps ``g(0)`` finite).
    noise_end : ``bbar_1 > 0``, the prior standard deviation.
    mean_reverting : ``None``, or a :class:`~diffcore.processes.MeanRevertingSDE` whose schedule
        replaces the power schedule (``abar = 1 - e^{-bar theta_t}``,
        ``bbar = lambda sqrt(1 - e^{-2 bar theta_t})``); see :meth:`from_mean_reverting`.

    References: Liu, Wang, Fan, Wang, Tang and Qu, "Residual Denoising Diffusion Models",
    CVPR 2024, eqs. 4–8 (forward process) and 13 (the sampler, :class:`~diffcore.samplers.RDDMSampler`).

    Example
    -------
    >>> import numpy as np
    >>> p = ResidualDiffusion(y=np.array([1.0, -1.0]))
    >>> p.alpha(0.0), p.alpha(1.0), round(p.sigma(1.0), 12)  # data at 0, the residual fully added at 1
    (1.0, 0.0, 0.1)
    >>> round(p.abar(0.5), 12), round(p.bbar(0.5) ** 2, 12)  # 1 - (1 - t)^2 and 0.01 t^2
    (0.75, 0.0025)
    """

    y: Any = 0.0
    residual_power: float = 2.0
    noise_power: float = 2.0
    noise_end: float = 0.1
    mean_reverting: Any = None
    _y_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_positive("residual_power", self.residual_power)
        check_positive("noise_power", self.noise_power)
        check_positive("noise_end", self.noise_end)
        if self.mean_reverting is not None and not isinstance(self.mean_reverting, MeanRevertingSDE):
            raise TypeError(
                f"mean_reverting must be None or a MeanRevertingSDE; got {type(self.mean_reverting).__name__}"
            )
        object.__setattr__(self, "y", _clean_y(self.y))

    @classmethod
    def from_mean_reverting(cls, process: MeanRevertingSDE) -> ResidualDiffusion:
        r"""The RDDM form of an IR-SDE: ``abar = 1 - e^{-bar theta_t}``, ``bbar = lambda sqrt(1 - e^{-2 bar theta_t})``.

        The mean-reverting SDE ``x_t = mu + e^{-bar theta_t}(x_0 - mu) + lambda sqrt(1 - e^{-2 bar theta_t}) eps``
        (Luo et al. 2023, eq. 5) is RDDM with ``y = mu`` and that schedule: the same marginals,
        drift and diffusion.  The converse fails in general: an RDDM schedule is an IR-SDE only
        if ``bbar_t^2 = lambda^2 (1 - (1 - abar_t)^2)``, which the power schedule is not.
        """
        if not isinstance(process, MeanRevertingSDE):
            raise TypeError(f"process must be a MeanRevertingSDE; got {type(process).__name__}")
        return cls(y=process.mu, mean_reverting=process)

    def abar(self, t: Any) -> Any:
        """RDDM's residual coefficient ``abar_t = 1 - alpha(t)``."""
        return 1 - self.alpha(t)

    def bbar(self, t: Any) -> Any:
        """RDDM's noise coefficient ``bbar_t = sigma(t)``."""
        return self.sigma(t)

    # -- schedule --------------------------------------------------------------------------
    def _alpha(self, t, xp):
        if self.mean_reverting is not None:
            return self.mean_reverting._alpha(t, xp)
        return (1 - t) ** self.residual_power

    def _sigma(self, t, xp):
        if self.mean_reverting is not None:
            return self.mean_reverting._sigma(t, xp)
        return self.noise_end * t ** (0.5 * self.noise_power)

    def _d_alpha(self, t, xp):
        if self.mean_reverting is not None:
            return self.mean_reverting._d_alpha(t, xp)
        return -self.residual_power * (1 - t) ** (self.residual_power - 1)

    def _d_sigma(self, t, xp):
        if self.mean_reverting is not None:
            return self.mean_reverting._d_sigma(t, xp)
        return self.noise_end * 0.5 * self.noise_power * t ** (0.5 * self.noise_power - 1)

    def _f(self, t, xp):
        if self.mean_reverting is not None:
            return self.mean_reverting._f(t, xp)
        if is_scalar_time(t) and t == 1:
            return AbstractProcess._f(self, t, xp)  # raises: alpha(1) = 0
        return -self.residual_power / (1 - t)

    def _g2(self, t, xp):
        if self.mean_reverting is not None:
            return self.mean_reverting._g2(t, xp)
        b2 = self.noise_end**2
        return b2 * self.noise_power * t ** (self.noise_power - 1) - 2 * self._f(t, xp) * b2 * t**self.noise_power

    def _log_snr(self, t, xp):
        if self.mean_reverting is not None:
            return self.mean_reverting._log_snr(t, xp)
        return AbstractProcess._log_snr(self, t, xp)

    def _transition_var(self, s, t, xp):
        if self.mean_reverting is not None:
            return self.mean_reverting._transition_var(s, t, xp)
        return AbstractProcess._transition_var(self, s, t, xp)


@dataclass(frozen=True, eq=False)
class ResShift(_ShiftedByY):
    r"""ResShift: ``x_t = x_0 + eta_t (y - x_0) + kappa sqrt(eta_t) eps``, in continuous time.

    The residual ``y - x_0`` is shifted in at the rate ``eta_t`` with noise of variance
    ``kappa^2 eta_t`` (Yue et al. 2023, eqs. 1–3).  As an affine process with mean shift ``y``:

    .. math:: \alpha(t) = 1 - \eta(t), \quad \sigma(t) = \kappa\sqrt{\eta(t)}, \quad
              f(t) = -\frac{\eta'}{1 - \eta}, \quad g(t)^2 = \kappa^2 \eta' \frac{1 + \eta}{1 - \eta}.

    Schedule.  The paper's ``T``-step chain has ``sqrt(eta_k) = sqrt(eta_1) b_0^{beta_k}``,
    ``beta_k = ((k-1)/(T-1))^p (T-1)``, ``b_0 = (eta_T/eta_1)^{1/(2(T-1))}`` (Yue et al. 2023,
    eq. 9), i.e. ``eta_k = eta_1 (eta_T/eta_1)^{u_k^p}`` with ``u_k = (k-1)/(T-1)``; its first
    step already has ``eta_1 > 0``.  Here, with ``t_1 = 1/T``,

    .. math:: \eta(t) = \eta_1 \frac{t}{t_1} \;(t \le t_1), \qquad
              \eta(t) = \eta_1 \Big(\frac{\eta_T}{\eta_1}\Big)^{u^p}, \;
              u = \frac{t - t_1}{1 - t_1} \;(t \ge t_1),

    so ``eta(0) = 0`` (``t = 0`` is data: ``alpha(0) = 1``, ``sigma(0) = 0``) and
    ``eta(k/T) = eta_k`` exactly: the discrete chain is this process at ``t_k = k/T``, and
    :class:`~diffcore.samplers.ResShiftSampler` with ``steps = T`` on the uniform grid from 1
    to 0 is the paper's sampler.  On ``[0, t_1]`` ``eta`` is linear (``sigma ~ sqrt(t)``, as
    for VE near 0); ``eta`` is continuous but has a kink at ``t_1`` and, for ``p < 1``, an
    infinite slope just after it (``u^{p-1}``), so ODE solvers of the generic dynamics lose
    their order across ``t_1``; the ResShift sampler uses only ``eta`` and does not.

    Defaults are the reference code's (configs ``realsr_swinunet_realesrgan256``: ``kappa = 2``,
    ``p = 0.3``, ``T = 15``, ``min_noise_level = 0.04``, ``etas_end = 0.99``): its
    ``sqrt(eta_1) = min(0.04/kappa, 0.04) = 0.02``, so ``eta_1 = 4e-4``; its ``etas_end``
    is ``sqrt(eta_T)``, so ``eta_T = 0.99^2 = 0.9801`` (the paper's text gives ``eta_T = 0.99``).
    Since ``eta_T < 1``, ``alpha(1) = 1 - eta_T > 0`` and the prior ``N(y, kappa^2 eta_T I)``
    differs from the exact law of ``x_1`` by the mean ``alpha(1)(E x_0 - y)`` and covariance
    ``alpha(1)^2 Cov x_0`` (as for IR-SDE).

    Parameters
    ----------
    y : the degraded input (a float, or an array of the shape of one sample), finite.
    kappa : ``kappa > 0``, the noise scale.
    eta_min, eta_max : ``0 < eta_1 < eta_T <= 1``.
    p : ``p > 0``, the power of the geometric schedule.
    steps : ``T >= 2``, the number of steps of the discrete chain (sets ``t_1 = 1/T``).

    Example
    -------
    >>> import numpy as np
    >>> p = ResShift(y=np.zeros(2))
    >>> p.alpha(0.0), round(p.eta(1 / 15), 12), round(p.eta(1.0), 12)
    (1.0, 0.0004, 0.9801)
    """

    y: Any = 0.0
    kappa: float = 2.0
    eta_min: float = 4e-4
    eta_max: float = 0.9801
    p: float = 0.3
    steps: int = 15
    _y_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_positive("kappa", self.kappa)
        check_positive("eta_min", self.eta_min)
        check_positive("eta_max", self.eta_max)
        check_positive("p", self.p)
        if not self.eta_min < self.eta_max <= 1:
            raise ValueError(
                f"the schedule needs 0 < eta_min < eta_max <= 1; got eta_min={self.eta_min!r}, eta_max={self.eta_max!r}"
            )
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)):
            raise TypeError(f"steps must be an int; got {type(self.steps).__name__}")
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2; got {self.steps}")
        object.__setattr__(self, "y", _clean_y(self.y))

    @property
    def _t1(self) -> float:
        return 1.0 / self.steps

    def eta(self, t: Any) -> Any:
        """The shift schedule ``eta(t) = 1 - alpha(t)``; ``eta(k/T)`` is the paper's ``eta_k``."""
        return 1 - self.alpha(t)

    def _eta(self, t, xp):
        t1, log_ratio = self._t1, math.log(self.eta_max / self.eta_min)
        u = xp.clip((t - t1) / (1 - t1), 0.0, 1.0)
        return xp.where(t <= t1, self.eta_min * t / t1, self.eta_min * xp.exp(u**self.p * log_ratio))

    def _d_eta(self, t, xp):
        t1, log_ratio = self._t1, math.log(self.eta_max / self.eta_min)
        u = xp.clip((t - t1) / (1 - t1), 0.0, 1.0)
        geometric = self.eta_min * xp.exp(u**self.p * log_ratio) * log_ratio * self.p * u ** (self.p - 1) / (1 - t1)
        return xp.where(t <= t1, self.eta_min / t1 + 0 * t, geometric)

    def _alpha(self, t, xp):
        return 1 - self._eta(t, xp)

    def _sigma(self, t, xp):
        return self.kappa * xp.sqrt(self._eta(t, xp))

    def _d_alpha(self, t, xp):
        return -self._d_eta(t, xp)

    def _d_sigma(self, t, xp):
        return 0.5 * self.kappa * self._d_eta(t, xp) / xp.sqrt(self._eta(t, xp))

    def _f(self, t, xp):
        if is_scalar_time(t) and self._alpha(t, xp) == 0:
            return AbstractProcess._f(self, t, xp)  # raises: eta_max = 1 puts alpha(1) = 0
        return -self._d_eta(t, xp) / (1 - self._eta(t, xp))

    def _g2(self, t, xp):
        eta = self._eta(t, xp)
        if is_scalar_time(t) and eta == 1:
            AbstractProcess._f(self, t, xp)  # raises
        return self.kappa**2 * self._d_eta(t, xp) * (1 + eta) / (1 - eta)

    def _log_snr(self, t, xp):
        eta = self._eta(t, xp)
        return 2 * xp.log(1 - eta) - xp.log(eta) - 2 * math.log(self.kappa)
