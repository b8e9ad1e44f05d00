"""The exact score of the smoothed empirical measure (the memorising optimum) and exact 1-D W2."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import logsumexp, ndtr

from diffcore._validation import check_array, check_same_namespace, check_scalar_time, check_size, check_unshifted
from diffcore.distributions import Gaussian, GaussianMixture  # noqa: F401  (Gaussian: doctest)
from diffcore.distributions._mixture import AbstractMixtureLaw
from diffcore.processes import AbstractProcess

__all__ = ["EmpiricalScore", "empirical_marginal", "nearest_distance", "w2_1d"]


def _points(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(check_array(name, x, ndim=2), dtype=np.float64)
    if arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, d) with n >= 1; got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class EmpiricalScore:
    r"""The exact score of the empirical measure of ``points`` pushed through ``process``.

    The empirical measure ``(1/n) sum_i delta_{x_i}`` has at time ``t > 0`` the marginal
    ``(1/n) sum_i N(alpha x_i, sigma^2 I)``, whose score is

    .. math:: s_n(x, t) = \frac{\alpha_t \sum_i w_i(x)\, x_i - x}{\sigma_t^2}, \qquad
              w_i(x) = \operatorname{softmax}_i\Big(-\frac{\|x - \alpha_t x_i\|^2}{2\sigma_t^2}\Big)

    (book chapter "Theory you can measure", eq. ``theory-empirical-score``).  It minimises the
    denoising score-matching loss over the training set exactly, so it is what a network with enough
    capacity converges to; a sampler driven by it down to ``t -> 0`` reproduces training points
    (Pidstrigach 2022; Gu et al. 2023, "On memorization in diffusion models").  ``points`` ``(n, d)``;
    called as ``score(x, t)`` with ``x`` ``(m, d)`` and ``t`` a float or ``(m,)`` array in ``(0, 1]``.
    """

    process: AbstractProcess
    points: Any
    _x: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.process, AbstractProcess):
            raise TypeError(f"process must be an AbstractProcess; got {type(self.process).__name__}")
        check_unshifted(self.process, "EmpiricalScore")
        object.__setattr__(self, "_x", _points("points", self.points))

    def __call__(self, x: Any, t: Any) -> np.ndarray:
        check_same_namespace(x=check_array("x", x, ndim=2), points=self.points)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self._x.shape[1]:
            raise ValueError(f"x must have shape (m, {self._x.shape[1]}); got {x.shape}")
        a, s = np.asarray(self.process.alpha(t)), np.asarray(self.process.sigma(t))
        if np.any(s <= 0):
            raise ValueError("EmpiricalScore needs t > 0 (sigma(t) > 0): at t = 0 the empirical measure has no score")
        a, s2 = np.reshape(a, (-1, 1)), np.reshape(s**2, (-1, 1))
        d2 = np.sum(x**2, 1)[:, None] - 2 * a * (x @ self._x.T) + a**2 * np.sum(self._x**2, 1)[None, :]
        logits = -0.5 * d2 / s2
        w = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
        return (a * (w @ self._x) - x) / s2


def empirical_marginal(process: AbstractProcess, points: Any, t: float) -> GaussianMixture:
    """``(1/n) sum_i N(alpha(t) x_i, sigma(t)^2 I)``: the law of ``x_t`` when ``x_0`` is a training point.

    This is the exact output law at ``t`` of any exact sampler driven by :class:`EmpiricalScore` and
    started from this law at ``t = 1`` (for the VP SDE within ``alpha(1)^2 |x|^2 / 2`` in KL of the
    prior ``N(0, I)``).  ``t`` must be in ``(0, 1]``.
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "empirical_marginal")
    x = _points("points", points)
    t = check_scalar_time(t)
    if not t > 0:
        raise ValueError(f"empirical_marginal needs t > 0, where sigma(t) > 0; got t = {t}")
    n, d = x.shape
    cov = np.broadcast_to(process.sigma(t) ** 2 * np.eye(d), (n, d, d))
    return GaussianMixture(np.full(n, 1.0 / n), process.alpha(t) * x, np.array(cov))


def nearest_distance(x: Any, points: Any) -> np.ndarray:
    """Distance of every row of ``x`` ``(m, d)`` to its nearest row of ``points`` ``(n, d)``; shape ``(m,)``."""
    check_same_namespace(x=check_array("x", x, ndim=2), points=check_array("points", points, ndim=2))
    x, p = _points("x", x), _points("points", points)
    if x.shape[1] != p.shape[1]:
        raise ValueError(f"x and points must have the same dimension; got {x.shape[1]} and {p.shape[1]}")
    d2 = np.sum(x**2, 1)[:, None] - 2 * x @ p.T + np.sum(p**2, 1)[None, :]
    return np.sqrt(np.clip(np.min(d2, axis=1), 0.0, None))


def _one_d(name: str, law: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(law, AbstractMixtureLaw):
        raise TypeError(f"{name} must be a Gaussian or a GaussianMixture; got {type(law).__name__}")
    mix = law.as_mixture()
    if mix.dim != 1:
        raise ValueError(f"{name} must be one-dimensional; got dim = {mix.dim}")
    w = np.asarray(mix.weights, dtype=np.float64)
    return w, np.asarray(mix.means, dtype=np.float64)[:, 0], np.sqrt(np.asarray(mix.covs, dtype=np.float64)[:, 0, 0])


def _cdf(x: np.ndarray, w: np.ndarray, m: np.ndarray, sd: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for start in range(0, m.size, 256):  # chunks keep the (points, components) block small
        sl = slice(start, start + 256)
        out += ndtr((x[:, None] - m[None, sl]) / sd[None, sl]) @ w[sl]
    return out


def _quantiles(w: np.ndarray, m: np.ndarray, sd: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``F^{-1}(u)`` by inverse interpolation of the CDF on 8001 points spanning every component +- 12 sd."""
    grid = np.linspace(np.min(m - 12 * sd), np.max(m + 12 * sd), 8001)
    return np.interp(u, _cdf(grid, w, m, sd), grid)


def w2_1d(law_a: Any, law_b: Any, *, nodes: int = 4001) -> float:
    r"""Exact ``W_2`` between two one-dimensional Gaussian mixtures (or Gaussians).

    In one dimension the optimal coupling is monotone, ``W_2^2 = int_0^1 (F_a^{-1}(u) - F_b^{-1}(u))^2 du``
    (Villani 2003, thm. 2.18).  The substitution ``u = Phi(z)`` makes the integrand smooth,
    ``W_2^2 = int (F_a^{-1}(Phi(z)) - F_b^{-1}(Phi(z)))^2 phi(z) dz``, integrated by the trapezoidal rule
    on ``nodes`` points of ``[-8, 8]``; quantiles by inverse interpolation of the CDF tabulated on
    8001 points (each component +- 12 sd).  Between smooth laws it is exact to ``~1e-6`` (Gaussians:
    measured against the closed form).  For an almost discrete law (the empirical measure smoothed by a
    small ``sigma``) the quantile function is a staircase and the rule errs by a few per cent
    (measured 2 % for 64 atoms at ``sigma = 3e-3``).  Cost ``O(8001 K)``.  Returns a float.

    Example
    -------
    >>> round(w2_1d(Gaussian([0.0], [[1.0]]), Gaussian([3.0], [[1.0]])), 6)
    3.0
    """
    nodes = check_size(nodes, "nodes")
    if nodes < 3:
        raise ValueError(f"nodes must be >= 3; got {nodes}")
    a, b = _one_d("law_a", law_a), _one_d("law_b", law_b)
    z = np.linspace(-8.0, 8.0, nodes)
    u = ndtr(z)
    keep = (u > 0) & (u < 1)
    z, u = z[keep], u[keep]
    qa, qb = _quantiles(*a, u), _quantiles(*b, u)
    phi = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    return float(np.sqrt(np.trapezoid((qa - qb) ** 2 * phi, z)))
