"""The weighted mean squared Fokker–Planck residual over points and times."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import namespace, resolve_rng, to_float_list
from diffcore._validation import check_array, check_steps
from diffcore.distributions import Gaussian, GaussianMixture, marginal
from diffcore.fokker_planck._residual import fp_residual

__all__ = ["FPResidualNorm", "fp_residual_norm"]

Array = Any


@dataclass(frozen=True, eq=False)
class FPResidualNorm:
    """Result of :func:`fp_residual_norm`.

    Attributes
    ----------
    value : ``(1/m) sum_j w(t_j) M_j``, the weighted mean over the ``m`` times.
    stderr : its Monte Carlo standard error over the points, ``sqrt(sum_j w_j^2 Var_j / n_j) / m``.
    per_time : ``M_j = mean_i |R(x_ij, t_j)|^2`` at each time, NumPy ``(m,)`` (unweighted).
    ts, weights : the times and ``w(t_j)``, NumPy ``(m,)``.
    """

    value: float
    stderr: float
    per_time: np.ndarray
    ts: np.ndarray
    weights: np.ndarray


def fp_residual_norm(
    process: Any,
    score: Callable[[Array, Any], Array],
    ts: Any,
    points: Any,
    *,
    weight: Callable[[float], float] | None = None,
    n: int | None = None,
    rng: Any = None,
    method: str = "auto",
    h: Any = None,
    k: Any = None,
) -> FPResidualNorm:
    r"""Weighted mean squared score-FP residual over a grid of times.

    .. math:: \|R\|^2_w = \frac1m \sum_{j=1}^m w(t_j)\, \frac1{n_j} \sum_{i=1}^{n_j}
              \big|R(x_{ij}, t_j)\big|^2 \;\approx\; \frac{1}{b - a}\int_a^b w(t)\,
              E_{x \sim q_t} |R(x, t)|^2\, dt

    with ``R`` of :func:`fp_residual`; the right-hand side holds for a uniform grid on
    ``[a, b]`` and points ``x_{ij} ~ q_{t_j}``.  Deveney et al. 2023 (arXiv:2311.15996,
    sec. 4) bound ``W_2`` between the ODE and SDE laws by a time integral of this kind with the
    points from the marginals, which is what ``points = data`` gives.

    Parameters
    ----------
    ts : 1-D grid of ``m`` times in ``(0, 1]`` (a list or an array).
    points : where the residual is evaluated at each time, one of

        * a :class:`~diffcore.Gaussian` or :class:`~diffcore.GaussianMixture` ``data``: ``n``
          fresh draws from the exact marginal ``marginal(process, data, t_j)`` (needs ``n``; NumPy);
        * a callable ``points(t) -> (n_j, d)`` (a user sampler, e.g. SDE samples at ``t``);
        * an array ``(n, d)``: the same points at every time;
        * an array ``(m, n, d)``: the points of each time.
    weight : ``None`` (``w = 1``) or a callable ``w(t) -> float >= 0`` of a float time
        (e.g. ``process.diffusion_squared``).
    n, rng : sample size and randomness for ``points = data``.
    method, h, k : as :func:`fp_residual` (the time ``t_j`` is a float).

    Returns an :class:`FPResidualNorm`.  Raises ``ValueError`` for an empty or out-of-range
    grid, a negative or non-finite weight, or points of the wrong shape.
    """
    grid = to_float_list(check_array("ts", np.asarray(ts) if isinstance(ts, (list, tuple)) else ts, ndim=1))
    if not grid:
        raise ValueError("ts must hold at least one time; got none")
    if not all(0.0 < t <= 1.0 for t in grid):  # NaN fails this too
        raise ValueError(f"ts must lie in (0, 1] (the score is singular at t = 0); got {grid}")
    batches = _point_source(process, points, len(grid), n, rng)
    weights = np.asarray([_weight(weight, t) for t in grid])
    means, variances = np.empty(len(grid)), np.empty(len(grid))
    for j, t in enumerate(grid):
        x = batches(j, t)
        if x.shape[0] < 1:  # the mean square of no residuals is not a norm
            raise ValueError(f"points must hold at least one point at every time; got {tuple(x.shape)} at t = {t}")
        r = fp_residual(process, score, x, t, method=method, h=h, k=k)
        xp = namespace(r)
        sq = xp.sum(r * r, axis=1)
        sq = np.asarray(sq.detach().cpu().numpy() if hasattr(sq, "detach") else sq, dtype=np.float64)
        means[j] = sq.mean()
        variances[j] = sq.var(ddof=1) / sq.size if sq.size > 1 else math.nan
    m = len(grid)
    value = float(np.sum(weights * means) / m)
    stderr = float(math.sqrt(np.sum(weights**2 * variances)) / m)
    return FPResidualNorm(value, stderr, means, np.asarray(grid), weights)


def _weight(weight: Any, t: float) -> float:
    if weight is None:
        return 1.0
    if not callable(weight):
        raise TypeError(f"weight must be None or a callable w(t); got {type(weight).__name__}")
    w = float(weight(t))
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"weight(t) must be finite and >= 0; got {w} at t = {t}")
    return w


def _point_source(process: Any, points: Any, m: int, n: Any, rng: Any) -> Callable[[int, float], Array]:
    if isinstance(points, (Gaussian, GaussianMixture)):
        if n is None:
            raise ValueError("points drawn from data need the sample size n; got n=None")
        n = check_steps(n, "n")
        gen = resolve_rng(rng)
        return lambda j, t: marginal(process, points, t).sample(n, gen)
    if hasattr(points, "shape"):
        points = check_array("points", points)
        if points.ndim == 2:
            return lambda j, t: points
        if points.ndim == 3 and points.shape[0] == m:
            return lambda j, t: points[j]
        raise ValueError(
            f"points must have shape (n, d) or (m, n, d) with m = len(ts) = {m}; got {tuple(points.shape)}"
        )
    if callable(points):
        return lambda j, t: points(t)
    raise TypeError(
        "points must be data (Gaussian/GaussianMixture), a callable t -> (n, d) or an array; "
        f"got {type(points).__name__}"
    )
