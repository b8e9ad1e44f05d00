r"""diffusers' discrete DDPM time as a continuous diffcore process, and the way back.

A diffusers scheduler describes its forward process by ``N`` levels ``alphas_cumprod[k]``,
``k = 0..N-1`` (``N = num_train_timesteps``): ``x_k = sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps``
(Ho et al. 2020, eq. 4).  diffcore puts timestep ``k`` at the time

.. math:: t_k = \frac{k + 1}{N}, \qquad k = N t - 1 ,

so that ``k = N - 1`` is ``t = 1`` (the prior end) and the data sit at ``t = 0`` (``k = -1``,
``alpha = 1``), one level below ``k = 0``.  :class:`DiscreteVP` is the variance-preserving process
(``sigma^2 = 1 - alpha^2``) through exactly those levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array, is_scalar_time, namespace
from diffcore._validation import check_array, check_steps, check_time
from diffcore.processes import AbstractProcess
from diffcore.processes._base import bisect_decreasing

__all__ = ["DiscreteVP", "diffusers_betas", "process_from_diffusers", "time_to_timestep", "timestep_to_time"]

Array = Any


def _alphas_cumprod(source: Any) -> np.ndarray:
    """``alphas_cumprod`` of a scheduler (or the array itself) as float64 NumPy, after checks."""
    if hasattr(source, "config") and getattr(source.config, "use_flow_sigmas", False):
        raise ValueError(
            "scheduler uses flow sigmas (use_flow_sigmas=True): its noise levels are not its alphas_cumprod; "
            "use the flow-matching adapters (velocity_from_flow_matching) instead"
        )
    values = getattr(source, "alphas_cumprod", source)
    if not hasattr(values, "shape") or isinstance(values, str):
        raise TypeError(
            "scheduler must be a diffusers scheduler with alphas_cumprod, or that array itself; "
            f"got {type(source).__name__}"
        )
    values = check_array("alphas_cumprod", values, min_ndim=0, finite=False)
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    ac = np.array(values, dtype=np.float64)
    if ac.ndim != 1 or ac.shape[0] < 2:
        raise ValueError(f"alphas_cumprod must be a 1-D array of at least 2 levels; got shape {ac.shape}")
    bad = np.flatnonzero(~(np.isfinite(ac) & (ac > 0) & (ac <= 1)))
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"alphas_cumprod must lie in (0, 1]; alphas_cumprod[{k}] = {ac[k]}")
    up = np.flatnonzero(np.diff(np.concatenate([[1.0], ac])) >= 0)
    if up.size:
        k = int(up[0])
        prev = "alpha(0)^2 = 1 (the data, t = 0)" if k == 0 else f"alphas_cumprod[{k - 1}] = {ac[k - 1]}"
        raise ValueError(
            f"alphas_cumprod must be strictly decreasing (the noise grows with the timestep); "
            f"alphas_cumprod[{k}] = {ac[k]} is not below {prev}"
        )
    return ac


@dataclass(frozen=True, eq=False)
class DiscreteVP(AbstractProcess):
    r"""The variance-preserving process through diffusers' levels ``alphas_cumprod``.

    With ``N`` levels and ``t_k = (k + 1)/N``:

    .. math:: \alpha(t_k)^2 = \bar\alpha_k \ (k = 0..N-1), \qquad \alpha(0) = 1, \qquad
              \sigma(t)^2 = 1 - \alpha(t)^2 .

    Between the levels ``h(t) = log alpha(t)^2`` is the monotone cubic (Fritsch–Carlson / PCHIP)
    interpolant of the knots ``(j/N, log abar_{j-1})``, ``j = 0..N`` (``h(0) = 0``); being monotone,
    it keeps ``alpha`` decreasing and the log-SNR ``lambda = h - log(1 - e^h)`` strictly decreasing.
    The SDE is derived as for every process: ``f = h'/2`` and ``g^2 = -h' >= 0``, which at the
    knots equal the continuous-time betas of the discrete chain to ``O(1/N^2)``.

    Smoothness.  ``h`` is ``C^1``: drift and diffusion are continuous in ``t``, but their
    time-derivatives jump at the knots (spacing ``1/N``).  A solver of order ``p`` needs ``p``
    smooth derivatives in ``t``; with steps much longer than ``1/N`` the jumps average out and
    the measured orders of diffcore's solvers are those of a smooth schedule, while steps of a
    few ``1/N`` (thousands of steps) see the ``C^1`` kinks (order at most 2 in ``t``).
    Exponential integrators in log-SNR time are unaffected in their linear part (``alpha``,
    ``sigma`` are exact at every ``t``).

    Build it with :func:`process_from_diffusers`.  ``timestep_to_time`` / ``time_to_timestep``
    are the maps above.  ``alphas_cumprod`` is kept as a float64 copy (do not modify it).
    """

    alphas_cumprod: np.ndarray
    _knots: np.ndarray = field(init=False, repr=False)
    _slopes: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from scipy.interpolate import PchipInterpolator

        ac = _alphas_cumprod(self.alphas_cumprod)
        n = ac.shape[0]
        knots = np.concatenate([[0.0], np.log(ac)])
        slopes = PchipInterpolator(np.arange(n + 1) / n, knots).derivative()(np.arange(n + 1) / n)
        for name, value in (("alphas_cumprod", ac), ("_knots", knots), ("_slopes", np.asarray(slopes))):
            object.__setattr__(self, name, value)

    @property
    def num_train_timesteps(self) -> int:
        """``N``, the number of discrete levels."""
        return int(self.alphas_cumprod.shape[0])

    def timestep_to_time(self, timestep: Any) -> Any:
        """``t = (k + 1) / N`` (see :func:`timestep_to_time`)."""
        return timestep_to_time(timestep, self.num_train_timesteps)

    def time_to_timestep(self, t: Any) -> Any:
        """``k = N t - 1`` (see :func:`time_to_timestep`)."""
        return time_to_timestep(t, self.num_train_timesteps)

    # -- h(t) = log alpha(t)^2 and h'(t): cubic Hermite on the uniform knots j / N ------------
    def _h(self, t: Array, xp: Any, derivative: bool = False) -> Array:
        n = self.num_train_timesteps
        if is_scalar_time(t):
            j = min(max(math.floor(float(t) * n), 0), n - 1)
            y0, y1, d0, d1 = self._knots[j], self._knots[j + 1], self._slopes[j], self._slopes[j + 1]
            u = t * n - j
        else:
            j = xp.astype(xp.clip(xp.floor(t * n), 0, n - 1), xp.int64)
            y0, y1 = (xp.take(as_array(self._knots[s], t), j) for s in (slice(0, n), slice(1, n + 1)))
            d0, d1 = (xp.take(as_array(self._slopes[s], t), j) for s in (slice(0, n), slice(1, n + 1)))
            u = t * n - xp.astype(j, t.dtype)
        d0, d1 = d0 / n, d1 / n  # slopes per unit u
        if derivative:
            value = (6 * u**2 - 6 * u) * (y0 - y1) + (3 * u**2 - 4 * u + 1) * d0 + (3 * u**2 - 2 * u) * d1
            return value * n
        return (
            (2 * u**3 - 3 * u**2 + 1) * y0
            + (u**3 - 2 * u**2 + u) * d0
            + (-2 * u**3 + 3 * u**2) * y1
            + (u**3 - u**2) * d1
        )

    def _alpha(self, t, xp):
        return xp.exp(0.5 * self._h(t, xp))

    def _sigma(self, t, xp):
        return xp.sqrt(-xp.expm1(self._h(t, xp)) + 0.0)  # + 0.0: sigma(0) = +0, not -0

    def _d_alpha(self, t, xp):
        return 0.5 * self._h(t, xp, derivative=True) * self._alpha(t, xp)

    def _d_sigma(self, t, xp):
        h = self._h(t, xp)
        return -0.5 * self._h(t, xp, derivative=True) * xp.exp(h) / xp.sqrt(-xp.expm1(h))

    def _f(self, t, xp):
        return 0.5 * self._h(t, xp, derivative=True)

    def _g2(self, t, xp):
        return -self._h(t, xp, derivative=True)

    def _log_snr(self, t, xp):
        h = self._h(t, xp)
        return h - xp.log(-xp.expm1(h))

    def _log_snr_inverse(self, lam, xp):
        """Bisection on the decreasing ``h`` for ``h* = log sigmoid(lambda)``, better conditioned than on ``lambda``."""
        target = -(xp.clip(-lam, 0.0, None) + xp.log1p(xp.exp(-xp.abs(lam))))  # log sigmoid, no overflow
        return bisect_decreasing(lambda t: self._h(t, xp), target, xp)


def process_from_diffusers(scheduler: Any) -> DiscreteVP:
    """The diffcore process of a diffusers scheduler: :class:`DiscreteVP` through its ``alphas_cumprod``.

    Parameters
    ----------
    scheduler : a diffusers scheduler (``DDIMScheduler``, ``DPMSolverMultistepScheduler``, ...),
        whose ``alphas_cumprod`` (torch, usually float32) is read as float64, or that array itself.

    Raises
    ------
    ValueError
        when ``alphas_cumprod`` is not 1-D, leaves ``(0, 1]``, or is not strictly decreasing (the
        message names the index and the values), or for a scheduler with flow sigmas.

    Example
    -------
    >>> import numpy as np
    >>> ac = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    >>> p = process_from_diffusers(ac)
    >>> bool(np.allclose(p.alpha(p.timestep_to_time(np.arange(1000.0))) ** 2, ac, rtol=1e-13))
    True
    """
    return DiscreteVP(_alphas_cumprod(scheduler))


def timestep_to_time(timestep: Any, num_train_timesteps: int = 1000) -> Any:
    """diffcore time of a diffusers timestep: ``t = (k + 1) / N``; ``k`` in ``[-1, N - 1]`` (``-1`` is the data).

    ``timestep`` is a number or an array (NumPy or torch; integer or fractional); the result is a
    float, or a floating array of the same library.
    """
    n = check_steps(num_train_timesteps, "num_train_timesteps")
    if is_scalar_time(timestep) and not isinstance(timestep, (bool, np.bool_)):
        k = float(timestep)
        if not -1.0 <= k <= n - 1:  # NaN fails this too
            raise ValueError(f"timestep must lie in [-1, {n - 1}] (num_train_timesteps = {n}); got {k}")
        return (k + 1.0) / n
    if not hasattr(timestep, "shape") or isinstance(timestep, (bool, np.bool_)):
        raise TypeError(f"timestep must be a number or an array; got {type(timestep).__name__}")
    k = check_array("timestep", timestep, min_ndim=0)
    xp = namespace(k)
    bad = xp.logical_not((k >= -1) & (k <= n - 1))
    if bool(xp.any(bad)):
        raise ValueError(f"timestep must lie in [-1, {n - 1}] (num_train_timesteps = {n}); got {float(k[bad][0])}")
    return (k + 1.0) / n


def time_to_timestep(t: Any, num_train_timesteps: int = 1000) -> Any:
    """The (fractional) diffusers timestep of a diffcore time: ``k = N t - 1``, inverse of :func:`timestep_to_time`."""
    n = check_steps(num_train_timesteps, "num_train_timesteps")
    return check_time(t) * n - 1.0


def diffusers_betas(process: AbstractProcess, num_train_timesteps: int = 1000) -> np.ndarray:
    r"""The ``trained_betas`` of a diffusers scheduler whose levels are those of ``process``.

    With ``t_k = (k + 1)/N`` and ``alpha(t_{-1}) = alpha(0) = 1``:

    .. math:: \beta_k = 1 - \frac{\alpha(t_k)^2}{\alpha(t_{k-1})^2}
              \quad\Longrightarrow\quad \prod_{j \le k} (1 - \beta_j) = \alpha(t_k)^2 ,

    so a scheduler built with ``trained_betas=diffusers_betas(process)`` has
    ``alphas_cumprod[k] = alpha(t_k)^2`` (up to diffusers' float32 cumulative product, a relative
    ``~ N * 6e-8`` at most): the exact discretisation of ``process``, on which the scheduler can be
    checked against diffcore's exact answers.  ``process`` must be variance preserving
    (``alpha^2 + sigma^2 = 1``, ``alpha(0) = 1``), as diffusers' DDPM schedulers assume.

    Returns a float64 NumPy array of shape ``(N,)``.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE
    >>> betas = diffusers_betas(VPSDE(), 1000)
    >>> t = np.arange(1, 1001) / 1000
    >>> bool(np.allclose(np.cumprod(1 - betas), VPSDE().alpha(t) ** 2, rtol=1e-12))
    True
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    n = check_steps(num_train_timesteps, "num_train_timesteps")
    if n < 2:
        raise ValueError(f"num_train_timesteps must be >= 2; got {n}")
    t = np.arange(0, n + 1) / n
    a2 = np.asarray(process.alpha(t), dtype=np.float64) ** 2
    s2 = np.asarray(process.sigma(t), dtype=np.float64) ** 2
    off = np.abs(a2 + s2 - 1.0)
    if not np.all(off <= 1e-9):
        k = int(np.argmax(off))
        raise ValueError(
            f"diffusers_betas needs a variance-preserving process (alpha^2 + sigma^2 = 1); "
            f"{type(process).__name__} has alpha^2 + sigma^2 = {a2[k] + s2[k]} at t = {t[k]}"
        )
    if not abs(a2[0] - 1.0) <= 1e-12:
        raise ValueError(f"diffusers_betas needs alpha(0) = 1; {type(process).__name__} has alpha(0)^2 = {a2[0]}")
    betas = 1.0 - a2[1:] / a2[:-1]
    bad = np.flatnonzero(~((betas > 0) & (betas < 1)))
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"diffusers_betas needs alpha(t)^2 strictly decreasing and positive on t_k = (k + 1)/N; "
            f"beta[{k}] = {betas[k]} (alpha(t)^2 = {a2[k]} -> {a2[k + 1]})"
        )
    return betas
