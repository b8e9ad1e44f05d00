r"""Heat-geodesic embedding (HeatGeo, Huguet et al. 2023, alg. 1) and a toy manifold with known geodesics.

The pipeline: a Gaussian-weighted k-nearest-neighbour graph on the points, its heat kernel
``H_tau = exp(-tau L)`` (exact or Chebyshev), the heat-geodesic distances of Varadhan's formula
with the volume term (:func:`~diffcore.geometry.varadhan_distance`), and metric MDS: classical MDS
(Torgerson) as the start, refined by SMACOF iterations (Guttman transform, which never increases the
stress).  How it relates to its neighbours (Huguet et al. 2023, sec. 3.2): diffusion maps embed the
rows of a power ``P^t`` of the random-walk matrix by its eigenvectors (distances between whole
rows, not ``log`` of single entries); PHATE takes ``log`` of the rows of ``P^t`` and then distances
between those rows — a potential distance, where HeatGeo reads ``-4 tau log H_ij`` off one entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import distance

from diffcore._validation import check_choice, check_positive, check_size, check_steps
from diffcore.geometry._distances import varadhan_distance
from diffcore.geometry._kernels import _numpy, chebyshev_error_bound, heat_kernel_graph

__all__ = ["HeatGeodesicEmbedding", "heat_geodesic_embedding", "swiss_roll"]

Array = Any


@dataclass(frozen=True, eq=False)
class HeatGeodesicEmbedding:
    """The result of :func:`heat_geodesic_embedding`.

    Attributes
    ----------
    embedding : (n, n_components) the MDS coordinates.
    distances : (n, n) the heat-geodesic distances that MDS was asked to preserve.
    weights : (n, n) the symmetric Gaussian kNN weights of the graph.
    stress : Kruskal's stress-1 of the embedding, ``sqrt(sum (|y_i - y_j| - D_ij)^2 / sum D_ij^2)``.
    """

    embedding: np.ndarray
    distances: np.ndarray
    weights: np.ndarray
    stress: float


def _knn_weights(x: np.ndarray, knn: int) -> np.ndarray:
    """``W_ij = exp(-|x_i - x_j|^2 / eps)`` on the symmetrised kNN graph; ``eps`` = mean squared kNN distance."""
    sq = distance.cdist(x, x, "sqeuclidean")
    order = np.argsort(sq, axis=1, kind="stable")[:, 1 : knn + 1]
    rows = np.repeat(np.arange(len(x)), knn)
    mask = np.zeros(sq.shape, dtype=bool)
    mask[rows, order.ravel()] = True
    mask |= mask.T
    eps = float(sq[rows, order.ravel()].mean())
    if eps == 0.0:
        raise ValueError(f"x: every point's {knn} nearest neighbours coincide with it; the graph has no scale")
    return np.where(mask, np.exp(-sq / eps), 0.0)


def _pairwise(y: np.ndarray) -> np.ndarray:
    return distance.cdist(y, y)


def _stress(y: np.ndarray, d: np.ndarray) -> float:
    return float(np.sqrt(((_pairwise(y) - d) ** 2).sum() / max((d**2).sum(), 1e-300)))


def _classical_mds(d: np.ndarray, k: int) -> np.ndarray:
    """Torgerson: the top-``k`` eigenpairs of ``B = -J D^2 J / 2``, ``Y = V sqrt(lambda_+)``."""
    n = len(d)
    j = np.eye(n) - 1.0 / n
    lam, vec = np.linalg.eigh(-0.5 * j @ (d**2) @ j)
    top = np.argsort(lam)[::-1][:k]
    vec = vec[:, top] * np.sign(vec[np.argmax(np.abs(vec[:, top]), axis=0), np.arange(len(top))])  # fix signs
    return vec * np.sqrt(np.clip(lam[top], 0.0, None))


def _smacof(y: np.ndarray, d: np.ndarray, iterations: int) -> np.ndarray:
    """Guttman transforms ``Y <- B(Y) Y / n`` (unit weights; de Leeuw 1977): the stress never increases."""
    n = len(d)
    for _ in range(iterations):
        dy = _pairwise(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(dy > 0, -d / dy, 0.0)
        np.fill_diagonal(b, 0.0)
        np.fill_diagonal(b, -b.sum(1))
        y = b @ y / n
    return y


def heat_geodesic_embedding(
    x: Array,
    t: float,
    n_components: int = 2,
    *,
    knn: int = 10,
    laplacian: str = "normalized",
    method: str = "exact",
    order: int = 32,
    sigma: float = 1.0,
    mds_iterations: int = 100,
) -> HeatGeodesicEmbedding:
    r"""The heat-geodesic embedding of HeatGeo (Huguet et al. 2023, alg. 1, def. 1).

    1. Graph: ``W_ij = exp(-|x_i - x_j|^2 / eps)`` where ``j`` is among the ``knn`` nearest
       neighbours of ``i`` or ``i`` among those of ``j`` (else 0); ``eps`` is the mean squared
       kNN distance.
    2. Heat kernel ``H_t = exp(-t L)`` (:func:`~diffcore.geometry.heat_kernel_graph`).  Entries
       below the kernel's accuracy (``n`` ulp of its largest entry for ``"exact"``, the
       :func:`~diffcore.geometry.chebyshev_error_bound` for ``"chebyshev"``) are raised to it, so
       far pairs saturate at a finite distance instead of reading the logarithm of rounding noise.
    3. Distances ``D_ij^2 = -4t log H_ij + sigma 4t log((H_ii + H_jj)/2)`` (clipped at 0;
       :func:`~diffcore.geometry.varadhan_distance`); the matrix is symmetrised.
    4. Metric MDS: classical MDS, then ``mds_iterations`` SMACOF steps.

    Parameters
    ----------
    x : (n, d) points, ``n > knn``.
    t : graph diffusion time, > 0 (units of the Laplacian; not the ``[0, 1]`` process time).
    n_components : embedding dimension, ``1 <= n_components <= n``.
    knn : neighbours per point (>= 1).
    laplacian : ``"normalized"`` (HeatGeo's default) or ``"combinatorial"``.
    method : ``"exact"`` (eigendecomposition) or ``"chebyshev"`` (degree ``order``).
    order : the Chebyshev degree (>= 1).
    sigma : the volume-term weight in ``[0, 1]`` (HeatGeo's Harnack regularisation).
    mds_iterations : SMACOF iterations after classical MDS (>= 0).

    Returns
    -------
    :class:`HeatGeodesicEmbedding` with ``embedding (n, n_components)``, ``distances (n, n)``,
    ``weights (n, n)`` and ``stress``.
    """
    x = _numpy("x", x, ndim=2)
    t = check_positive("t", t)
    knn = check_steps(knn, "knn")
    n_components = check_steps(n_components, "n_components")
    order = check_steps(order, "order")
    mds_iterations = check_size(mds_iterations, "mds_iterations")
    method = check_choice("method", method, ("exact", "chebyshev"))
    laplacian = check_choice("laplacian", laplacian, ("combinatorial", "normalized"))
    if len(x) < knn + 1:
        raise ValueError(f"x must hold at least {knn + 1} points (knn + 1); got {len(x)}")
    if n_components > len(x):
        raise ValueError(f"n_components must be <= the number of points {len(x)}; got {n_components}")
    w = _knn_weights(x, knn)
    h = heat_kernel_graph(w, t, laplacian=laplacian, method=method, order=order)
    if method == "exact":
        floor = len(h) * np.finfo(float).eps * float(np.abs(h).max())
    else:
        lambda_max = 2.0 if laplacian == "normalized" else 2.0 * float(w.sum(1).max())
        floor = max(chebyshev_error_bound(t, order, lambda_max), np.finfo(float).tiny)
    d = varadhan_distance(np.maximum(h, floor), t, sigma=sigma)
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    y = _smacof(_classical_mds(d, n_components), d, mds_iterations)
    return HeatGeodesicEmbedding(embedding=y, distances=d, weights=w, stress=_stress(y, d))


def swiss_roll(n_along: int, n_across: int, *, width: float = 21.0) -> tuple[np.ndarray, np.ndarray]:
    r"""A deterministic grid on the Swiss roll, with its exact unrolled (isometric) coordinates.

    The roll is the cylinder over the spiral ``(phi cos phi, phi sin phi)``,
    ``phi in [1.5 pi, 4.5 pi]``, of height ``width``: ``x = (phi cos phi, z, phi sin phi)``.  It is
    developable, isometric to the rectangle ``[0, S] x [0, width]`` through
    ``(s(phi), z)``, ``s(phi) = (phi sqrt(1 + phi^2) + asinh(phi))/2 - s(1.5 pi)`` (arc length), and
    the rectangle is convex, so geodesic distances on the roll are Euclidean distances of the
    unrolled coordinates.  The grid is uniform in ``(s, z)``.

    Parameters
    ----------
    n_along : points along the spiral (>= 2); n_across : points across it (>= 1).
    width : the height of the roll, > 0.

    Returns
    -------
    points : (n_along * n_across, 3) the embedded grid.
    unrolled : (n_along * n_across, 2) its coordinates ``(s, z)`` on the rectangle.
    """
    n_along = check_steps(n_along, "n_along")
    n_across = check_steps(n_across, "n_across")
    width = check_positive("width", width)
    if n_along < 2:
        raise ValueError(f"n_along must be >= 2; got {n_along}")

    def arc(phi: np.ndarray) -> np.ndarray:
        return 0.5 * (phi * np.sqrt(1 + phi**2) + np.arcsinh(phi))

    lo, hi = 1.5 * math.pi, 4.5 * math.pi
    fine = np.linspace(lo, hi, 20001)
    s = np.linspace(0.0, float(arc(np.array(hi)) - arc(np.array(lo))), n_along)
    phi = np.interp(s, arc(fine) - arc(np.array(lo)), fine)
    z = np.linspace(0.0, width, n_across) if n_across > 1 else np.zeros(1)
    pp, zz = np.meshgrid(phi, z, indexing="ij")
    ss, _ = np.meshgrid(s, z, indexing="ij")
    points = np.stack([pp * np.cos(pp), zz, pp * np.sin(pp)], axis=-1).reshape(-1, 3)
    return points, np.stack([ss, zz], axis=-1).reshape(-1, 2)
