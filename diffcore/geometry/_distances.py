r"""Geodesic distances on the circle and the sphere, and Varadhan's heat-geodesic distance.

Varadhan (1967): on a complete Riemannian manifold, with ``du/dt = Delta u``,

.. math:: \lim_{t \to 0} -4 t \log h_t(x, y) = d(x, y)^2 .

For small ``t`` the Minakshisundaram–Pleijel expansion of an ``n``-manifold,
``h_t(x, y) = (4 pi t)^{-n/2} e^{-d^2/4t} (u_0(x, y) + t u_1(x, y) + ...)``, gives the rate:

.. math:: -4 t \log h_t = d^2 + 2 n t \log(4 \pi t) - 4 t \log u_0 + O(t^2),

so the plain formula is off by ``O(t log t)``; removing the Euclidean prefactor leaves ``O(t)``
(the ``u_0`` term: ``u_0 = 1`` on the circle, ``u_0 = (d / sin d)^{1/2}`` on ``S^2``).
HeatGeo (Huguet et al. 2023, def. 1 and sec. 4) removes the prefactor from the data instead,
with the diagonal of the kernel: ``h_t(x, x) = (4 pi t)^{-n/2}(1 + O(t))`` estimates the inverse
volume of the ball of radius ``sqrt(t)`` (the Li–Yau/Harnack volume term), and weights it by
``sigma in [0, 1]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diffcore._validation import check_nonnegative, check_positive, check_steps
from diffcore.geometry._kernels import _angles, _numpy, _sphere_pairs

__all__ = ["geodesic_distance_circle", "geodesic_distance_sphere", "varadhan_distance"]

Array = Any


def geodesic_distance_circle(theta: Array, phi: Array, *, radius: float = 1.0) -> Array:
    r"""Arc-length distance on the circle of radius ``r``: ``r min(|delta|, 2 pi - |delta|)``,
    ``delta = (theta_i - phi_j) mod 2 pi``.

    Parameters
    ----------
    theta : (n,) angles; phi : (m,) angles.  radius : ``r`` > 0.

    Returns
    -------
    (n, m) array of distances in ``[0, pi r]``.

    Examples
    --------
    >>> import numpy as np
    >>> float(geodesic_distance_circle(np.array([0.0]), np.array([1.5 * np.pi]))[0, 0] / np.pi)
    0.5
    """
    theta, phi = _angles(theta, phi)
    r = check_positive("radius", radius)
    delta = np.remainder(theta[:, None] - phi[None, :], 2 * math.pi)
    return r * np.minimum(delta, 2 * math.pi - delta)


def geodesic_distance_sphere(x: Array, y: Array) -> Array:
    r"""Great-circle distance on the unit sphere, ``d = atan2(|x \times y|, \langle x, y \rangle)``
    (the angle; accurate for close and for antipodal points, unlike ``arccos``).

    Parameters
    ----------
    x : (n, 3), y : (m, 3) points on the unit sphere (norm 1 within 1e-6).

    Returns
    -------
    (n, m) array of distances in ``[0, pi]``.
    """
    x, y = _sphere_pairs(x, y)
    cross = np.linalg.norm(np.cross(x[:, None, :], y[None, :, :]), axis=-1)
    return np.arctan2(cross, x @ y.T)


def varadhan_distance(h: Array, t: float, *, dim: int | None = None, sigma: float = 0.0) -> Array:
    r"""The heat-geodesic distance of a heat kernel matrix (Varadhan's formula).

    .. math:: d_t^2 = -4 t \log h_t(x_i, y_j) \;-\; 2 n t \log(4 \pi t)\,[\text{dim}=n]
              \;+\; \sigma\, 4 t \log \tfrac12\big(h_t(x_i, x_i) + h_t(x_j, x_j)\big),

    clipped at 0, and ``d_t = sqrt(d_t^2)``.  Without corrections this is Varadhan's
    ``-4 t log h_t``, whose error is ``2 n t log(4 pi t) + O(t)``.  Two ways to remove the
    prefactor ``(4 pi t)^{-n/2}``, both leaving an ``O(t)`` error:

    * ``dim=n``: the Euclidean normalisation ``h -> (4 pi t)^{n/2} h``, for a kernel that is a
      density on an ``n``-manifold with the heat equation ``du/dt = Delta u``;
    * ``sigma`` in ``[0, 1]``: the volume (Harnack) term of HeatGeo (Huguet et al. 2023, def. 1;
      their ``harnack_regul``), for a square ``h`` whose diagonal is ``h_t(x_i, x_i)`` — needs no
      dimension and no knowledge of how the kernel is normalised, so it is the one for graphs.

    Parameters
    ----------
    h : (n, m) positive kernel values (square ``(n, n)`` with its diagonal when ``sigma > 0``).
        Zero entries give an infinite distance.
    t : the diffusion time the kernel was computed at, > 0 (same units: for a graph kernel
        ``exp(-tau L)`` of a mesh of spacing ``h``, pass ``t = tau h^2``).
    dim : the manifold dimension ``n`` (>= 1) for the Euclidean normalisation, or ``None``.
    sigma : weight of the volume term, in ``[0, 1]``; 0 (the default) switches it off.

    Returns
    -------
    (n, m) array of distances.

    Raises
    ------
    ValueError if ``h`` has a negative entry, if ``sigma > 0`` with a non-square ``h``, or if both
    corrections are asked for.

    Examples
    --------
    >>> import numpy as np
    >>> t, d = 0.01, 0.3
    >>> h = np.array([[np.exp(-d**2 / (4 * t)) / np.sqrt(4 * np.pi * t)]])  # the line's kernel
    >>> round(float(varadhan_distance(h, t, dim=1)[0, 0]), 12)
    0.3
    """
    h = _numpy("h", h, ndim=2, shape="(n, m)")
    t = check_positive("t", t)
    sigma = check_nonnegative("sigma", sigma)
    if sigma > 1:
        raise ValueError(f"sigma must lie in [0, 1]; got {sigma}")
    if dim is not None:
        dim = check_steps(dim, "dim")
        if sigma > 0:
            raise ValueError(f"dim and sigma correct the same prefactor; give one, got dim={dim}, sigma={sigma}")
    if h.size and (h < 0).any():
        raise ValueError(f"h must be non-negative (a heat kernel); smallest entry {h.min():.3g}")
    with np.errstate(divide="ignore"):
        d2 = -4 * t * np.log(h)
        if dim is not None:
            d2 = d2 - 2 * dim * t * math.log(4 * math.pi * t)
        if sigma > 0:
            if h.shape[0] != h.shape[1]:
                raise ValueError(f"h must be square (n, n) for the volume term sigma > 0; got {h.shape}")
            diag = np.diag(h)
            d2 = d2 + sigma * 4 * t * np.log(0.5 * (diag[:, None] + diag[None, :]))
    return np.sqrt(np.clip(d2, 0.0, None))
