r"""Exact heat kernels on the circle, the sphere ``S^2`` and a weighted graph.

Convention (everywhere in :mod:`diffcore.geometry`): the heat equation is

.. math:: \partial_t u = \Delta u \qquad (\text{not } \tfrac12 \Delta),

so that on ``R^n`` the kernel is ``(4 pi t)^{-n/2} exp(-|x - y|^2 / (4 t))`` and Varadhan's formula
reads ``-4 t log h_t(x, y) -> d(x, y)^2`` (with ``du/dt = Delta u / 2``, the Brownian-motion
convention, the constant is 2 instead of 4).  Kernels are densities with respect to the Riemannian
measure (arc length on the circle, area on the sphere); graph kernels are the matrices
``exp(-t L)``.  The diffusion time ``t`` here is geometric, ``t > 0`` without an upper bound; it is
not the ``[0, 1]`` time of the diffusion processes.

References: Huguet et al. 2023, "A Heat Diffusion Perspective on Geodesic Preserving
Dimensionality Reduction" (HeatGeo), sec. 3 and app. B (Chebyshev approximation of the graph heat
kernel); Grigor'yan, *Heat Kernel and Analysis on Manifolds* (2009), for the series.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from diffcore._validation import check_array, check_choice, check_positive, check_same_namespace, check_steps

__all__ = [
    "chebyshev_error_bound",
    "graph_laplacian",
    "heat_kernel_circle",
    "heat_kernel_graph",
    "heat_kernel_sphere",
]

Array = Any
#: terms are kept until the Gaussian factor is below exp(-_TAIL) ~ 4e-18 of the leading term
_TAIL = 40.0


def _numpy(name: str, x: Any, **kw: Any) -> np.ndarray:
    """``check_array`` and a NumPy array (this subpackage is NumPy-only)."""
    x = check_array(name, x, **kw)
    if type(x) is not np.ndarray:
        raise TypeError(f"{name} must be a NumPy array (diffcore.geometry is NumPy-only); got {type(x).__name__}")
    return x


def _angles(theta: Any, phi: Any) -> tuple[np.ndarray, np.ndarray]:
    check_same_namespace(theta=theta, phi=phi)
    return _numpy("theta", theta, ndim=1), _numpy("phi", phi, ndim=1)


def heat_kernel_circle(theta: Array, phi: Array, t: float, *, radius: float = 1.0, method: str = "auto") -> Array:
    r"""The heat kernel of the circle of radius ``r``, between two sets of angles.

    With ``delta = theta_i - phi_j`` (radians; the arc length is ``r delta``), two exact series:

    .. math:: h_t = \frac{1}{\sqrt{4 \pi t}} \sum_{k \in \mathbb Z}
              \exp\Big(-\frac{r^2 (\delta + 2 \pi k)^2}{4 t}\Big)
              \quad \text{(images)}, \qquad
              h_t = \frac{1}{2 \pi r} \Big(1 + 2 \sum_{m \ge 1} e^{-m^2 t / r^2} \cos m \delta\Big)
              \quad \text{(Fourier)},

    equal by Poisson summation; the image series converges fast for small ``t / r^2``, the Fourier
    series for large.  ``h_t`` is a density in arc length (``int h_t r dphi = 1``) and solves
    ``dh/dt = d^2 h / ds^2`` with ``s = r theta``.

    Parameters
    ----------
    theta : (n,) angles; phi : (m,) angles (any real values; taken mod ``2 pi``).
    t : diffusion time, > 0.
    radius : the circle's radius ``r`` > 0 (circumference ``2 pi r``).
    method : ``"images"``, ``"fourier"`` or ``"auto"`` (images for ``t < r^2``, else Fourier).

    Returns
    -------
    (n, m) array ``h_t(theta_i, phi_j)``.

    Both series are truncated where the next term is below ``exp(-40)`` of the first, so each is
    exact to rounding (checked against each other to 1e-12 in ``tests/test_geometry.py``).
    """
    theta, phi = _angles(theta, phi)
    t = check_positive("t", t)
    r = check_positive("radius", radius)
    method = check_choice("method", method, ("auto", "images", "fourier"))
    if method == "auto":
        method = "images" if t < r * r else "fourier"
    delta = np.remainder(theta[:, None] - phi[None, :] + math.pi, 2 * math.pi) - math.pi  # in [-pi, pi)
    if method == "images":
        k_max = math.ceil(math.sqrt(4 * t * _TAIL) / (2 * math.pi * r) + 0.5) + 1
        k = np.arange(-k_max, k_max + 1)
        s = r * (delta[..., None] + 2 * math.pi * k)
        return np.exp(-(s**2) / (4 * t)).sum(-1) / math.sqrt(4 * math.pi * t)
    m_max = math.ceil(r * math.sqrt(_TAIL / t)) + 1
    m = np.arange(1, m_max + 1)
    series = (np.exp(-(m**2) * t / r**2) * np.cos(delta[..., None] * m)).sum(-1)
    return (1.0 + 2.0 * series) / (2 * math.pi * r)


def _unit_vectors(name: str, x: Any) -> np.ndarray:
    x = _numpy(name, x, ndim=2, dim=3)
    norms = np.linalg.norm(x, axis=1)
    bad = np.abs(norms - 1.0) > 1e-6
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must lie on the unit sphere (|x| = 1 within 1e-6); row {i} has norm {norms[i]:.6g}")
    return x / norms[:, None]


def _sphere_pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    check_same_namespace(x=x, y=y)
    return _unit_vectors("x", x), _unit_vectors("y", y)


def heat_kernel_sphere(x: Array, y: Array, t: float) -> Array:
    r"""The heat kernel of the unit sphere ``S^2`` by its Legendre (spherical-harmonic) series.

    .. math:: h_t(x, y) = \sum_{l \ge 0} \frac{2 l + 1}{4 \pi} e^{-l (l + 1) t} P_l(\langle x, y \rangle),

    the eigen-expansion of ``exp(t Delta)`` (eigenvalues ``-l(l+1)``, addition theorem for the
    spherical harmonics).  A density in area: ``int h_t(x, y) dA(y) = 1``.

    Parameters
    ----------
    x : (n, 3) points on the unit sphere (norm 1 within 1e-6; renormalised).
    y : (m, 3) points on the unit sphere.
    t : diffusion time, > 0.

    Returns
    -------
    (n, m) array ``h_t(x_i, y_j)``.

    Notes
    -----
    Truncated at ``l(l+1) t > 40`` (``L ~ sqrt(40 / t)`` terms).  The series sums terms of size
    up to ``~ 1 / (4 pi t)`` to a value ``~ e^{-d^2/4t} / (4 pi t)``, so it loses relative accuracy
    ``~ 1e-16 e^{d^2/4t}`` when ``d^2 / t`` is large: fine for ``d^2 / (4t) < 25``.
    """
    x, y = _sphere_pairs(x, y)
    t = check_positive("t", t)
    c = np.clip(x @ y.T, -1.0, 1.0)
    n_terms = math.ceil(math.sqrt(_TAIL / t)) + 2
    p_prev, p = np.ones_like(c), c.copy()  # P_0, P_1
    total = 1.0 + 3.0 * math.exp(-2 * t) * p
    for deg in range(1, n_terms):  # Bonnet: (l+1) P_{l+1} = (2l+1) c P_l - l P_{l-1}, l = deg
        p_prev, p = p, ((2 * deg + 1) * c * p - deg * p_prev) / (deg + 1)
        total = total + (2 * deg + 3) * math.exp(-(deg + 1) * (deg + 2) * t) * p
    return total / (4 * math.pi)


def _weights(weights: Any) -> np.ndarray:
    w = _numpy("weights", weights, ndim=2, shape="(n, n)")
    if w.shape[0] != w.shape[1]:
        raise ValueError(f"weights must be a square (n, n) matrix; got shape {w.shape}")
    if w.shape[0] == 0:
        raise ValueError("weights must describe at least one node; got shape (0, 0)")
    if (w < 0).any():
        raise ValueError(f"weights must be non-negative; smallest entry {w.min():.6g}")
    if not np.allclose(w, w.T, rtol=1e-12, atol=1e-12 * max(np.abs(w).max(), 1e-300)):
        raise ValueError(f"weights must be symmetric; max |W - W^T| = {np.abs(w - w.T).max():.3g}")
    return 0.5 * (w + w.T)


def graph_laplacian(weights: Array, kind: str = "combinatorial") -> Array:
    r"""The Laplacian of a weighted undirected graph.

    ``kind="combinatorial"``: ``L = D - W``; ``kind="normalized"``: ``L = I - D^{-1/2} W D^{-1/2}``
    (spectrum in ``[0, 2]``; the default of HeatGeo, Huguet et al. 2023, sec. 4), with
    ``D = diag(sum_j W_ij)``.  Both are symmetric positive semi-definite; ``exp(-t L)`` is the graph
    heat kernel (:func:`heat_kernel_graph`).

    Parameters
    ----------
    weights : (n, n) symmetric, non-negative edge weights (the diagonal, self-loops, cancels in
        ``D - W``).
    kind : ``"combinatorial"`` or ``"normalized"`` (every node needs a positive degree).

    Returns
    -------
    (n, n) array ``L``.
    """
    w = _weights(weights)
    kind = check_choice("kind", kind, ("combinatorial", "normalized"))
    deg = w.sum(1)
    if kind == "combinatorial":
        return np.diag(deg) - w
    if (deg <= 0).any():
        node = int(np.argmin(deg))
        raise ValueError(f"weights: the normalized Laplacian needs every degree > 0; node {node} is isolated")
    s = 1.0 / np.sqrt(deg)
    return np.eye(len(w)) - s[:, None] * w * s[None, :]


def _chebyshev_coefficients(t: float, lambda_max: float, order: int) -> np.ndarray:
    r"""``c_k`` with ``exp(-t lambda) = sum_k c_k T_k(lambda / a - 1)``, ``a = lambda_max / 2``.

    From ``e^{z x} = I_0(z) + 2 sum_k I_k(z) T_k(x)`` at ``z = -t a``:
    ``c_0 = e^{-ta} I_0(ta)``, ``c_k = 2 (-1)^k e^{-ta} I_k(ta)`` (``ive`` is ``e^{-z} I_k(z)``).
    """
    z = t * lambda_max / 2
    k = np.arange(order + 1)
    c = 2.0 * (-1.0) ** k * special.ive(k, z)
    c[0] /= 2.0
    return c


def chebyshev_error_bound(t: float, order: int, lambda_max: float = 2.0) -> float:
    r"""A bound on ``|| exp(-t L) - p_K(L) ||_2`` for the degree-``K`` Chebyshev approximation.

    For ``L`` symmetric with spectrum in ``[0, lambda_max]`` the truncated series
    ``p_K(lambda) = sum_{k <= K} c_k T_k(2 lambda / lambda_max - 1)`` (see
    :func:`heat_kernel_graph`) has ``|T_k| <= 1`` there, so

    .. math:: \| e^{-tL} - p_K(L) \|_2 \le \sum_{k > K} |c_k|
              = 2 e^{-z} \sum_{k > K} I_k(z), \qquad z = t \lambda_{\max} / 2,

    which falls faster than geometrically once ``K > z`` (``I_k(z) ~ (z/2)^k / k!``).  The tail is
    summed to ``K + 200`` terms (the rest is below rounding).  This bounds every entry too.

    Parameters
    ----------
    t : diffusion time, > 0.  order : the degree ``K`` >= 1.
    lambda_max : an upper bound on the spectrum (2 for the normalized Laplacian).

    Returns
    -------
    float, the bound.
    """
    t = check_positive("t", t)
    order = check_steps(order, "order")
    lambda_max = check_positive("lambda_max", lambda_max)
    z = t * lambda_max / 2
    k = np.arange(order + 1, order + 201)
    return float(2.0 * special.ive(k, z).sum())


def heat_kernel_graph(
    weights: Array, t: float, *, laplacian: str = "combinatorial", method: str = "exact", order: int = 32
) -> Array:
    r"""The graph heat kernel ``H_t = exp(-t L)`` of a weighted graph.

    ``method="exact"``: ``H_t = V diag(e^{-t lambda}) V^T`` from the eigendecomposition of the
    symmetric ``L`` (equal to ``scipy.linalg.expm(-t L)`` to rounding).
    ``method="chebyshev"``: the degree-``order`` Chebyshev approximation of HeatGeo (Huguet et al.
    2023, sec. 4 and app. B; Hammond et al. 2011),

    .. math:: H_t \approx \sum_{k=0}^{K} c_k T_k\big(2L / \lambda_{\max} - I\big), \qquad
              c_k = 2 (-1)^k e^{-z} I_k(z) \ (c_0 \text{ halved}), \quad z = t \lambda_{\max} / 2,

    by the three-term recurrence, with ``lambda_max = 2`` (normalized) or the Gershgorin bound
    ``2 max_i D_ii`` (combinatorial); its error is at most :func:`chebyshev_error_bound`.

    Parameters
    ----------
    weights : (n, n) symmetric non-negative weights.
    t : diffusion time on the graph, > 0 (a cycle of spacing ``h`` with unit weights and the
        combinatorial Laplacian approximates the circle at time ``t h^2``).
    laplacian : ``"combinatorial"`` (``D - W``) or ``"normalized"``; see :func:`graph_laplacian`.
    method : ``"exact"`` or ``"chebyshev"``.
    order : the Chebyshev degree (>= 1), used by ``"chebyshev"``.

    Returns
    -------
    (n, n) symmetric array ``H_t``; exact: positive-semidefinite, rows sum to 1 for the
    combinatorial Laplacian.
    """
    laplacian = check_choice("laplacian", laplacian, ("combinatorial", "normalized"))
    lap = graph_laplacian(weights, laplacian)
    t = check_positive("t", t)
    method = check_choice("method", method, ("exact", "chebyshev"))
    order = check_steps(order, "order")
    if method == "exact":
        lam, vec = np.linalg.eigh(lap)
        return (vec * np.exp(-t * np.clip(lam, 0.0, None))) @ vec.T
    lambda_max = 2.0 if laplacian == "normalized" else max(2.0 * float(np.diag(lap).max()), 1e-300)
    c = _chebyshev_coefficients(t, lambda_max, order)
    shifted = lap * (2.0 / lambda_max) - np.eye(len(lap))
    t_prev, t_k = np.eye(len(lap)), shifted
    h = c[0] * t_prev + c[1] * t_k
    for ck in c[2:]:
        t_prev, t_k = t_k, 2.0 * shifted @ t_k - t_prev
        h = h + ck * t_k
    return 0.5 * (h + h.T)
