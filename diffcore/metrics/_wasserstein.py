"""Wasserstein-2 distances: exact between samples (POT), closed form between Gaussians, sliced."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import as_array, device_of, namespace, normal, resolve_rng
from diffcore._validation import check_array, check_same_namespace, check_steps

__all__ = ["FloorEstimate", "sliced_w2", "w2", "w2_floor", "w2_gaussian"]

Array = Any


def _points(name: str, x: Any) -> Array:
    """Finite real points ``(n, d)``, ``n >= 1`` (a distance between empty measures is undefined);
    integer and boolean points are promoted to float64."""
    x = check_array(name, x, ndim=2)
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one point; got shape {tuple(x.shape)}")
    return x


def _finite_result(value: Array, what: str, x: Array, y: Array) -> Array:
    """``value`` unless it overflowed: squared distances beyond the float range are not a distance."""
    xp = namespace(value)
    if not bool(xp.all(xp.isfinite(value))):
        big = max(float(xp.max(xp.abs(x))), float(xp.max(xp.abs(y))))
        raise ValueError(
            f"{what} overflows: the squared distances between x and y exceed the range of {x.dtype} "
            f"(largest |coordinate| {big:.3g}); rescale the points"
        )
    return value


def _weights(name: str, w: Any, n: int, like: Array) -> Array:
    if w is None:
        xp = namespace(like)
        return xp.full((n,), 1.0 / n, dtype=like.dtype, device=device_of(like))
    w = as_array(w, like)
    xp = namespace(w)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the points; got {tuple(w.shape)}")
    if not bool(xp.all(w > 0)):
        raise ValueError(f"{name} must be positive; got minimum {float(xp.min(w))!r}")
    total = float(xp.sum(w))
    tol = math.sqrt(xp.finfo(w.dtype).eps)
    if abs(total - 1.0) > tol:
        raise ValueError(f"{name} must sum to 1 (within {tol:.1e}); got sum {total!r}")
    return w


def _pair(x: Any, y: Any) -> tuple[Array, Array]:
    check_same_namespace(x=x, y=y)
    x, y = _points("x", x), _points("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension; got {x.shape[1]} and {y.shape[1]}")
    if x.dtype != y.dtype:  # e.g. integer points promoted to float64 beside float32 ones
        x, y = as_array(x, x, dtype=namespace(x).float64), as_array(y, y, dtype=namespace(y).float64)
    return x, y


def w2(x: Array, y: Array, a: Array | None = None, b: Array | None = None, *, max_iter: int = 10_000_000) -> Array:
    r"""Exact Wasserstein-2 distance between the empirical measures ``sum a_i d_{x_i}`` and ``sum b_j d_{y_j}``.

    .. math:: W_2 = \Big(\min_{P \in U(a, b)} \sum_{ij} P_{ij} \|x_i - y_j\|^2\Big)^{1/2},

    solved as a linear program by POT's network simplex (``ot.emd2``; Bonneel et al. 2011,
    Flamary et al. 2021).  Cost ``O(n^3)`` in the worst case; about 3 s at n = m = 4000.

    Parameters
    ----------
    x : ``(n, d)``; y : ``(m, d)``; a, b : optional positive weights summing to 1 (uniform by default).
    max_iter : simplex iteration cap; reaching it raises instead of returning a sub-optimal value.

    Returns a 0-d array of the inputs' type, dtype and device (a NumPy scalar for NumPy input).
    A sample-based ``w2`` has a finite-sample floor (see :func:`w2_floor`): it detects
    gross errors of a sampler, not discretisation error.

    Integer or boolean points are promoted to float64; NumPy mixed with torch, NaN, empty point
    sets, and points whose squared distances overflow raise (``TypeError`` / ``ValueError``).
    """
    import ot

    x, y = _pair(x, y)
    max_iter = check_steps(max_iter, "max_iter")
    a = _weights("a", a, x.shape[0], x)
    b = _weights("b", b, y.shape[0], y)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported just below
        cost_matrix = _finite_result(ot.dist(x, y), "w2", x, y)
    cost, log = ot.emd2(a, b, cost_matrix, numItermax=max_iter, log=True)
    if log.get("warning"):
        raise RuntimeError(f"ot.emd2 did not reach optimality: {log['warning']} (raise max_iter)")
    xp = namespace(x)
    if not hasattr(cost, "shape"):  # POT returns a Python float for NumPy input: keep x's dtype
        cost = xp.asarray(cost, dtype=x.dtype)
    return xp.sqrt(xp.clip(cost, 0.0, None))


def _check_cov(name: str, c: Array) -> None:
    """A finite, symmetric, positive semi-definite ``(d, d)`` matrix (relative tolerance sqrt(eps))."""
    xp = namespace(c)
    if not bool(xp.all(xp.isfinite(c))):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    tol = math.sqrt(xp.finfo(c.dtype).eps) * max(float(xp.max(xp.abs(c))), 1e-300)
    asym = float(xp.max(xp.abs(c - c.T)))
    if asym > tol:
        raise ValueError(f"{name} must be symmetric; got max |C - C^T| = {asym:.3e} (tolerance {tol:.1e})")
    low = float(xp.min(xp.linalg.eigvalsh(0.5 * (c + c.T))))
    if low < -tol:
        raise ValueError(f"{name} must be positive semi-definite; got smallest eigenvalue {low:.4g}")


def _sqrtm_psd(c: Array) -> Array:
    xp = namespace(c)
    vals, vecs = xp.linalg.eigh(0.5 * (c + c.T))
    return (vecs * xp.sqrt(xp.clip(vals, 0.0, None))) @ vecs.T


def w2_gaussian(mean1: Array, cov1: Array, mean2: Array, cov2: Array) -> Array:
    r"""Closed-form ``W_2`` between ``N(m_1, C_1)`` and ``N(m_2, C_2)`` (the Bures–Wasserstein distance).

    .. math:: W_2^2 = \|m_1 - m_2\|^2 + \operatorname{tr}\big(C_1 + C_2
              - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}\big)

    (Dowson and Landau 1982; Givens and Shortt 1984), evaluated as the orthogonal Procrustes
    residual ``min_R ||C_1^{1/2} - C_2^{1/2} R||_F^2`` (Bhatia et al. 2019, thm. 1), which has
    no cancellation: the distance of a law to itself is ~1e-14, not ~1e-7.  Means ``(d,)``, covariances
    ``(d, d)`` symmetric positive semi-definite; returns a 0-d array of the inputs' type.
    Raises ``ValueError`` for mismatched shapes, non-finite entries, or a covariance that is
    not symmetric or has a negative eigenvalue (both up to a relative ``sqrt(eps)``).
    """
    xp = check_same_namespace(mean1=mean1, cov1=cov1, mean2=mean2, cov2=cov2)
    mean1 = check_array("mean1", mean1, ndim=1, finite=False, shape="(d,)")
    named = {"mean2": mean2, "cov1": cov1, "cov2": cov2}
    mean2, cov1, cov2 = (check_array(k, v, min_ndim=0, finite=False) for k, v in named.items())
    d = mean1.shape[0]
    for name, arr, shape in (("mean2", mean2, (d,)), ("cov1", cov1, (d, d)), ("cov2", cov2, (d, d))):
        if tuple(arr.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}; got {tuple(arr.shape)}")
    for name, mean in (("mean1", mean1), ("mean2", mean2)):
        if not bool(xp.all(xp.isfinite(mean))):
            raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    _check_cov("cov1", cov1)
    _check_cov("cov2", cov2)
    # Procrustes form: min over orthogonal R of ||C1^{1/2} - C2^{1/2} R||_F^2 equals the trace
    # formula, with R = U V^T from the SVD Y^T X = U S V^T.  Forming the residual directly avoids
    # the cancellation of tr C1 + tr C2 - 2 tr(...), which loses ~1e-7 of resolution in 64-D.
    x_root, y_root = _sqrtm_psd(cov1), _sqrtm_psd(cov2)
    u, _, vt = xp.linalg.svd(y_root.T @ x_root)
    resid = x_root - y_root @ (u @ vt)
    return xp.sqrt(xp.sum((mean1 - mean2) ** 2) + xp.sum(resid**2))


def sliced_w2(x: Array, y: Array, n_projections: int = 256, rng: Any = None) -> Array:
    r"""Sliced Wasserstein-2: ``(E_theta W_2^2(theta^T x, theta^T y))^{1/2}`` over uniform directions.

    Directions are ``n_projections`` normalised Gaussian draws from ``rng``, made on the
    inputs' device; each 1-D problem is solved by sorting in POT
    (``ot.sliced_wasserstein_distance``; Rabin et al. 2011, Bonneel et al. 2015).  The
    estimate has Monte Carlo error ``O(n_projections^{-1/2})`` and is at most ``w2``.
    Inputs follow the rules of :func:`w2` (integer points promoted, mixed libraries refused).
    """
    import ot

    x, y = _pair(x, y)
    n_projections = check_steps(n_projections, "n_projections")
    xp = namespace(x)
    theta = normal(resolve_rng(rng), (x.shape[1], n_projections), x)
    theta = theta / xp.sqrt(xp.sum(theta**2, axis=0, keepdims=True))
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported just below
        value = ot.sliced_wasserstein_distance(x, y, n_projections=n_projections, p=2, projections=theta)
    return _finite_result(value, "sliced_w2", x, y)


@dataclass(frozen=True)
class FloorEstimate:
    """Mean and standard error of ``w2`` between two independent ``n``-samples of one law."""

    mean: float
    stderr: float
    values: tuple[float, ...]


def w2_floor(law: Any, n: int, *, repeats: int = 5, rng: Any = None) -> FloorEstimate:
    """Estimate the finite-sample floor of :func:`w2` for samples of size ``n`` from ``law``.

    Draws ``repeats`` pairs of independent ``n``-samples (``law.sample(n, rng)``) and returns
    the mean of ``w2`` between them with its standard error.  A sampler is at the floor when
    ``w2(samples, fresh exact samples)`` is within the spread of this estimate.
    """
    n = check_steps(n, "n")
    repeats = check_steps(repeats, "repeats")
    rng = resolve_rng(rng)
    vals = tuple(float(w2(law.sample(n, rng), law.sample(n, rng))) for _ in range(repeats))
    sd = float(np.std(vals, ddof=1)) if repeats > 1 else float("nan")
    return FloorEstimate(float(np.mean(vals)), sd / math.sqrt(repeats), vals)
