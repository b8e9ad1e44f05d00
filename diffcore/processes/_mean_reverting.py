"""The mean-reverting SDE of IR-SDE: an Ornstein–Uhlenbeck process that forgets ``x_0`` towards ``mu``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import is_torch_array

from diffcore._array import as_array, broadcast_time, device_of
from diffcore._validation import check_array, check_batch, check_choice, check_positive
from diffcore.processes._base import AbstractProcess

__all__ = ["MeanRevertingSDE"]

Array = Any

_SCHEDULES = ("constant", "cosine")


def _x_minus_sin_x(w: Any, xp: Any) -> Any:
    """``w - sin(w)`` without cancellation: its Taylor series below ``w = 0.1`` (error < 1e-18 relative)."""
    series = w**3 / 6 * (1 - w**2 / 20 * (1 - w**2 / 42 * (1 - w**2 / 72)))
    return xp.where(w < 0.1, series, w - xp.sin(w))


@dataclass(frozen=True, eq=False)
class MeanRevertingSDE(AbstractProcess):
    r"""The mean-reverting SDE ``dx = theta_t (mu - x) dt + sigma_t dW`` of IR-SDE.

    With ``sigma_t^2 / theta_t = 2 lambda^2`` fixed and ``bar theta_t = int_0^t theta_u du``,
    the law of ``x_t`` given ``x_0`` is exact (Luo et al. 2023, eqs. 2–5):

    .. math:: x_t = \mu + e^{-\bar\theta_t}(x_0 - \mu)
              + \lambda \sqrt{1 - e^{-2\bar\theta_t}}\; \varepsilon .

    So ``y = x - mu`` is the affine process ``y_t = alpha(t) y_0 + sigma(t) eps`` with

    .. math:: \alpha(t) = e^{-\bar\theta_t}, \quad \sigma(t) = \lambda\sqrt{1 - e^{-2\bar\theta_t}},
              \quad f(t) = -\theta_t, \quad g(t)^2 = 2\lambda^2\theta_t,

    and these are what ``alpha``, ``sigma``, ``drift_coef``, ``diffusion_squared``, ``log_snr``
    and :meth:`transition` return (``f = d log alpha/dt`` and ``g^2 = d sigma^2/dt - 2 f sigma^2``
    hold exactly).  The mean enters through :attr:`shift`: ``drift(x, t) = f(t) (x - mu)``,
    the prior is ``N(mu, lambda^2 I)``, :meth:`sample_transition` draws
    ``mu + scale (x_s - mu) + std z``, and :func:`~diffcore.marginal`,
    :func:`~diffcore.exact_score` and friends shift the data law by ``(1 - alpha(t)) mu``.
    The prior is the ``t -> infinity`` law; at ``t = 1`` the exact marginal is
    ``N(mu + alpha(1)(m_0 - mu), alpha(1)^2 C_0 + sigma(1)^2 I)`` with ``alpha(1) = e^{-theta}``
    (``0.01`` for the default ``theta = log 100`` of IR-SDE), which the prior matches only up to
    that ``alpha(1)`` term.

    Parameters
    ----------
    mu : the mean state (the degraded image in IR-SDE): a float, or an array of the shape of
        one sample, ``(d,)`` for points ``(n, d)``.  NumPy or torch; converted to each input's
        array type, dtype and device when used.
    lambda_ : the stationary standard deviation ``lambda > 0`` (IR-SDE's ``max_sigma``).
    theta : ``bar theta_1 = int_0^1 theta_t dt > 0``, the mean of ``theta_t`` over ``[0, 1]``;
        ``alpha(1) = e^{-theta}``.
    schedule : ``"constant"`` (``theta_t = theta``) or ``"cosine"``, the continuous form of
        IR-SDE's cosine schedule (Luo et al. 2023, sec. 4 and code; Nichol and Dhariwal 2021,
        eq. 17): ``theta_t = c (1 - cos^2(phi_t) / cos^2(phi_0))``,
        ``phi_t = (pi/2)(t + s)/(1 + s)``, with ``c`` set so that ``bar theta_1 = theta``.  Its
        ``bar theta_t`` is closed form (below), so the marginals stay exact.
    s : the offset of the cosine schedule (ignored by ``"constant"``).

    Notes
    -----
    Cosine schedule, with ``v = phi_t - phi_0 = phi' t`` and ``phi' = pi / (2 (1 + s))``:
    ``int_0^t (1 - cos^2 phi_u / cos^2 phi_0) du
    = [cos(2 phi_0)(v - sin v cos v) + sin(2 phi_0) sin^2 v] / (2 phi' cos^2 phi_0)``,
    evaluated without cancellation near ``t = 0``.  There ``theta_0 = 0``, so ``g(0) = 0`` and
    ``sigma(t) ~ t``.  The MRS samplers (:class:`~diffcore.samplers.MRSODE`, Li et al. 2025)
    integrate the reverse dynamics of this process semi-analytically.

    Example
    -------
    >>> import math
    >>> import numpy as np
    >>> p = MeanRevertingSDE(mu=np.array([1.0, -1.0]), lambda_=0.5, theta=2.0, schedule="constant")
    >>> round(p.alpha(1.0) * math.exp(2.0), 12), round(p.diffusion_squared(0.3), 12)  # e^{-theta}, 2 lambda^2 theta
    (1.0, 1.0)
    >>> p.drift(np.array([[1.0, 1.0]]), 0.3)  # theta (mu - x)
    array([[-0., -4.]])
    """

    mu: Any = 0.0
    lambda_: float = 1.0
    theta: float = math.log(100.0)
    schedule: str = "cosine"
    s: float = 0.008
    #: ``mu`` per (array type, device, dtype): converted once, so sampling on a GPU copies no
    #: host data per step
    _mu_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_positive("lambda_", self.lambda_)
        check_positive("theta", self.theta)
        check_positive("s", self.s)
        check_choice("schedule", self.schedule, _SCHEDULES)
        mu = self.mu
        if not is_torch_array(mu):
            try:
                mu = np.asarray(mu, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"mu must be a real number or array; got {type(self.mu).__name__}") from None
        host = np.asarray(mu.detach().cpu()) if is_torch_array(mu) else mu
        if not bool(np.all(np.isfinite(host))):
            raise ValueError(f"mu must be finite; got {host}")
        object.__setattr__(self, "mu", mu)

    # -- the mean shift --------------------------------------------------------------------
    @property
    def shift(self) -> Any:
        """``mu``: ``x_t = mu + alpha(t)(x_0 - mu) + sigma(t) eps``."""
        return self.mu

    @property
    def prior_std(self) -> float:  # type: ignore[override]
        """``lambda``: the prior is ``N(mu, lambda^2 I)``."""
        return float(self.lambda_)

    def mu_like(self, x: Array) -> Array:
        """``mu`` as an array of ``x``'s type, dtype and device: :meth:`shift_like`."""
        return self.shift_like(x)

    def shift_like(self, x: Array) -> Array:
        """``mu`` as an array of ``x``'s type, dtype and device (converted once per kind and cached),
        checked to fit one sample ``x[i]`` (so that it never broadcasts into a wrong shape)."""
        if self.mu.ndim and tuple(self.mu.shape) != tuple(x.shape[1:]):
            raise ValueError(
                f"mu must be a scalar or have the shape of one sample, x.shape[1:] = {tuple(x.shape[1:])}; "
                f"got mu of shape {tuple(self.mu.shape)}"
            )
        key = (type(x).__module__, str(device_of(x)), str(x.dtype))
        if key not in self._mu_cache:
            self._mu_cache[key] = as_array(self.mu, x)
        return self._mu_cache[key]

    # -- schedule --------------------------------------------------------------------------
    @property
    def _dphi(self) -> float:
        return 0.5 * math.pi / (1 + self.s)

    @property
    def _phi0(self) -> float:
        return self._dphi * self.s

    def _R(self, t, xp):
        """Unnormalised ``int_0^t (1 - cos^2 phi_u / cos^2 phi_0) du`` of the cosine schedule."""
        v = self._dphi * t
        p0 = self._phi0
        main = math.cos(2 * p0) * _x_minus_sin_x(2 * v, xp) / 2 + math.sin(2 * p0) * xp.sin(v) ** 2
        return main / (2 * self._dphi * math.cos(p0) ** 2)

    @property
    def _cosine_scale(self) -> float:
        return self.theta / float(self._R(np.float64(1.0), np))

    def _theta_t(self, t, xp):
        if self.schedule == "constant":
            return self.theta + 0 * t
        v = self._dphi * t
        r = xp.sin(v) * xp.sin(2 * self._phi0 + v) / math.cos(self._phi0) ** 2
        return self._cosine_scale * r

    def _theta_bar(self, t, xp):
        if self.schedule == "constant":
            return self.theta * t
        return self._cosine_scale * self._R(t, xp)

    def _alpha(self, t, xp):
        return xp.exp(-self._theta_bar(t, xp))

    def _sigma2(self, t, xp):
        return self.lambda_**2 * -xp.expm1(-2 * self._theta_bar(t, xp))

    def _sigma(self, t, xp):
        return xp.sqrt(self._sigma2(t, xp))

    def _d_alpha(self, t, xp):
        return -self._theta_t(t, xp) * self._alpha(t, xp)

    def _d_sigma(self, t, xp):
        return self.lambda_**2 * self._theta_t(t, xp) * xp.exp(-2 * self._theta_bar(t, xp)) / self._sigma(t, xp)

    def _f(self, t, xp):
        return -self._theta_t(t, xp)

    def _g2(self, t, xp):
        return 2 * self.lambda_**2 * self._theta_t(t, xp)

    def _log_snr(self, t, xp):
        return -2 * self._theta_bar(t, xp) - xp.log(self._sigma2(t, xp))

    def _log_snr_inverse(self, lam, xp):
        if self.schedule == "cosine":
            return AbstractProcess._log_snr_inverse(self, lam, xp)
        # e^{2 bar theta} - 1 = e^{-lam} / lambda^2
        bar = 0.5 * xp.logaddexp(xp.zeros_like(lam), -lam - 2 * math.log(self.lambda_))
        return bar / self.theta

    def _transition_var(self, s, t, xp):
        return self.lambda_**2 * -xp.expm1(-2 * (self._theta_bar(t, xp) - self._theta_bar(s, xp)))

    # -- the laws with their mean ----------------------------------------------------------
    def drift(self, x: Array, t: Any) -> Array:
        """``f(t)(x - mu) = theta_t (mu - x)`` for ``x`` of shape ``(n, ...)``."""
        x = check_batch("x", x)
        return broadcast_time(self.drift_coef(t), x) * (x - self.mu_like(x))

    def sample_transition(self, x_s: Array, s: Any, t: Any, rng: Any = None) -> Array:
        """Draw ``x_t = mu + scale (x_s - mu) + std z`` given ``x_s`` (shape ``(n, ...)``)."""
        x_s = check_array("x_s", x_s)
        mu = self.mu_like(x_s)
        return mu + AbstractProcess.sample_transition(self, x_s - mu, s, t, rng)

    def prior_sample(self, shape: tuple[int, ...], rng: Any = None, *, like: Array = None) -> Array:
        """Draw from the prior ``N(mu, lambda^2 I)``; array type as in the base class."""
        z = AbstractProcess.prior_sample(self, shape, rng, like=like)
        return z + self.mu_like(z)

    def prior_log_prob(self, x: Array) -> Array:
        """``log N(x; mu, lambda^2 I)`` summed over all but the batch axis; shape ``(n,)``."""
        x = check_batch("x", x)
        return AbstractProcess.prior_log_prob(self, x - self.mu_like(x))
