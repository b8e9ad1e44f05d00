r"""Linear stability: amplification factors of the samplers on the test equation ``y' = lambda y``.

For ``y' = lambda y`` with a constant step ``h`` (in the method's own time variable: ``t`` for
the Runge–Kutta methods, the noise level ``n = sigma / alpha`` for DDIM-type methods, where
``eps_hat = lambda y`` plays the role of the drift) every method below is a linear recurrence
``Y_{k+1} = M(z) Y_k`` on a small state vector ``Y`` (``y`` and the stored velocities or past
states), ``z = h lambda``.  The method is absolutely stable at ``z`` when the spectral radius
of ``M(z)`` is at most 1 (Hairer and Wanner 1996, sec. IV.2 and V.1); for a one-step method
``M(z)`` is the stability function ``R(z)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from diffcore._validation import check_choice
from diffcore.samplers._bdia import check_gamma
from diffcore.samplers._momentum import check_beta

__all__ = ["STABILITY_METHODS", "amplification_factor", "stability_region"]


def _matrix(rows: list[list[Any]], z: np.ndarray) -> np.ndarray:
    """Stack entries (arrays shaped like ``z`` or scalars) into matrices of shape ``(*z.shape, k, k)``."""
    return np.stack(
        [np.stack([np.broadcast_to(np.asarray(e, dtype=np.complex128), z.shape) for e in r], -1) for r in rows], -2
    )


def _one_step(poly: tuple[float, ...]) -> Callable[[np.ndarray, dict], np.ndarray]:
    return lambda z, _: _matrix([[np.polyval(poly[::-1], z)]], z)


def _hb(z: np.ndarray, p: dict) -> np.ndarray:
    # state (y, w = h v): w' = (1 - b) w + b z y, y' = y + w'
    b = p["beta"]
    return _matrix([[1 + b * z, 1 - b], [b * z, 1 - b]], z)


def _ghvb(z: np.ndarray, p: dict) -> np.ndarray:
    # state (y, w = h v_k): w' = (1 - b) w + b z y, y' = y + ((2 + b) w' - (2 - b) w) / (2 b)
    b = p["beta"]
    return _matrix([[1 + (2 + b) * z / 2, -b / 2], [b * z, 1 - b]], z)


def _bdia(z: np.ndarray, p: dict) -> np.ndarray:
    # state (y_k, y_{k-1}) for the process with alpha = 1 (DDIM = Euler in n):
    # y_{k+1} = y_k + z y_k + (1 - g)(y_{k-1} - y_k + z y_k)
    g = p["gamma"]
    return _matrix([[1 + z + (1 - g) * (z - 1), 1 - g], [1, 0]], z)


_METHODS: dict[str, tuple[Callable[[np.ndarray, dict], np.ndarray], tuple[str, ...]]] = {
    "euler": (_one_step((1.0, 1.0)), ()),
    "ddim": (_one_step((1.0, 1.0)), ()),
    "heun": (_one_step((1.0, 1.0, 0.5)), ()),
    "edm_heun": (_one_step((1.0, 1.0, 0.5)), ()),
    "rk4": (_one_step((1.0, 1.0, 0.5, 1 / 6, 1 / 24)), ()),
    "hb": (_hb, ("beta",)),
    "ghvb": (_ghvb, ("beta",)),
    "bdia": (_bdia, ("gamma",)),
}
#: the methods :func:`amplification_factor` knows
STABILITY_METHODS = tuple(_METHODS)


def amplification_factor(method: str, z: Any, **params: float) -> np.ndarray:
    r"""The spectral radius of the step matrix ``M(z)`` on ``y' = lambda y``, ``z = h lambda``.

    Parameters
    ----------
    method : one of :data:`STABILITY_METHODS`.
    z : complex array of any shape.
    params : ``beta`` in ``(0, 1]`` for ``"hb"``/``"ghvb"`` (default 0.8), ``gamma`` in
        ``[0, 1]`` for ``"bdia"`` (default 0).

    Returns
    -------
    float64 array shaped like ``z``.  Matrices (with ``beta`` the momentum, ``w = h v``):
    HB ``[[1 + beta z, 1 - beta], [beta z, 1 - beta]]``, GHVB-2
    ``[[1 + (2 + beta) z / 2, -beta / 2], [beta z, 1 - beta]]`` on ``(y, w)`` (Wizadwongsa et al.
    2023, sec. 4 and app. C); BDIA on ``(y_k, y_{k-1})``:
    ``[[1 + z - (1 - gamma)(1 - z), 1 - gamma], [1, 0]]``.

    Example
    -------
    >>> float(amplification_factor("euler", -2.0))  # the edge of Euler's interval [-2, 0]
    1.0
    """
    check_choice("method", method, STABILITY_METHODS)
    matrix, names = _METHODS[method]
    unknown = set(params) - set(names)
    if unknown:
        raise ValueError(f"{method} takes parameters {names or '()'}; got {sorted(unknown)}")
    p = {"beta": check_beta(params.get("beta", 0.8)), "gamma": check_gamma(params.get("gamma", 0.0))}
    z = np.asarray(z, dtype=np.complex128)
    return np.max(np.abs(np.linalg.eigvals(matrix(z, p))), axis=-1)


def stability_region(
    method: str, re: Any = (-7.0, 1.0), im: Any = (-4.0, 4.0), *, points: int = 201, **params: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The region of absolute stability ``{z : amplification_factor(z) <= 1}`` on a grid.

    ``re`` and ``im`` are the ranges of ``Re z`` and ``Im z``; returns ``(re_axis (points,),
    im_axis (points,), stable (points, points))`` with ``stable[i, j]`` for
    ``z = re_axis[j] + 1j im_axis[i]`` (image orientation, for ``plt.contourf(re, im, stable)``).
    A tolerance of ``1e-12`` on the radius keeps the boundary itself (where it is 1).
    """
    re_axis = np.linspace(float(re[0]), float(re[1]), points)
    im_axis = np.linspace(float(im[0]), float(im[1]), points)
    z = re_axis[None, :] + 1j * im_axis[:, None]
    return re_axis, im_axis, amplification_factor(method, z, **params) <= 1 + 1e-12
