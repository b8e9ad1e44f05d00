"""Measurements ``y = A(x) + noise``: linear-Gaussian ones (inpainting, projection, blur) and 1-bit signs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from diffcore._array import as_array, namespace, normal, resolve_rng
from diffcore._validation import check_array, check_points, check_positive, check_same_namespace

__all__ = ["AbstractMeasurement", "LinearGaussianMeasurement", "SignMeasurement", "check_observation"]

Array = Any


def _matrix(H: Any) -> Array:
    if not (hasattr(H, "shape") and hasattr(H, "dtype")):
        H = np.asarray(H, dtype=np.float64)
    H = check_array("H", H, ndim=2)
    if H.shape[0] < 1 or H.shape[1] < 1:
        raise ValueError(f"H must have shape (m, d) with m, d >= 1; got {tuple(H.shape)}")
    return H


class AbstractMeasurement:
    """A measurement model ``p(y | x)`` for points ``x (n, d)`` and one observation ``y (m,)``.

    Concrete measurements state ``H`` (``(m, d)``), ``noise_std`` and:
    :meth:`log_likelihood` ``log p(y | x)`` ``(n,)``, :meth:`likelihood_score`
    ``grad_x log p(y | x)`` ``(n, d)`` in closed form, :meth:`sample` (draw ``y`` given ``x``).
    ``linear_gaussian`` says whether ``p(y | x) = N(y; H x, noise_std^2 I)``, which the
    methods built on Gaussian conditioning (Pi-GDM, moment matching, the exact posterior) need.
    """

    H: Any
    noise_std: float
    linear_gaussian: ClassVar[bool]

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the unknown ``x``."""
        return int(self.H.shape[1])

    @property
    def n_obs(self) -> int:
        """Number ``m`` of measured values."""
        return int(self.H.shape[0])

    def forward(self, x: Array) -> Array:
        """``H x`` for ``x (n, d)``; returns ``(n, m)``."""
        x = check_points(x, self.dim)
        return x @ as_array(self.H, x).T

    def _obs(self, y: Array, like: Array) -> Array:
        """``y`` checked and on ``like``'s dtype; ``y`` and ``like`` must be arrays of one library and device."""
        like = check_points(like, self.dim)
        y = check_observation(self, y)
        check_same_namespace(x=like, y=y)
        return as_array(y, like)


@dataclass(frozen=True, eq=False)
class LinearGaussianMeasurement(AbstractMeasurement):
    r"""``y = H x + noise_std * n``, ``n ~ N(0, I_m)``: ``log p(y | x) = log N(y; H x, noise_std^2 I)``.

    Parameters
    ----------
    H : ``(m, d)`` real matrix.
    noise_std : ``> 0`` (a noiseless measurement has a singular posterior; take a small value).

    Constructors for the measurements of the book: :meth:`inpainting`, :meth:`random_projection`,
    :meth:`blur`.  With a Gaussian-mixture prior the posterior is again a mixture
    (:func:`~diffcore.conditional.posterior`).
    """

    H: Any
    noise_std: float
    linear_gaussian: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "H", _matrix(self.H))
        object.__setattr__(self, "noise_std", check_positive("noise_std", self.noise_std))

    @classmethod
    def inpainting(cls, dim: int, observed: Any, noise_std: float = 0.05) -> LinearGaussianMeasurement:
        """Observe the coordinates ``observed`` (indices into ``range(dim)``) of ``x``: ``H`` = rows of ``I_d``."""
        idx = np.asarray(observed)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"observed must be a non-empty 1-D list of coordinate indices; got {observed!r}")
        if np.any(idx < 0) or np.any(idx >= dim) or np.unique(idx).size != idx.size:
            raise ValueError(f"observed must hold distinct indices in [0, {dim}); got {idx.tolist()}")
        return cls(np.eye(dim)[idx], noise_std)

    @classmethod
    def random_projection(
        cls, n_obs: int, dim: int, noise_std: float = 0.05, rng: Any = None
    ) -> LinearGaussianMeasurement:
        """``H`` with i.i.d. ``N(0, 1/dim)`` entries (rows of unit length on average), ``(n_obs, dim)``."""
        gen = resolve_rng(rng)
        H = normal(gen, (n_obs, dim), np.zeros(1)) / math.sqrt(dim)
        return cls(H, noise_std)

    @classmethod
    def blur(
        cls, dim: int, width: float = 1.0, noise_std: float = 0.05, *, stride: int = 1
    ) -> LinearGaussianMeasurement:
        """A banded Gaussian blur: row ``i`` is ``exp(-(j - i)^2 / (2 width^2))`` normalised, every ``stride``-th ``i``.

        Truncated at ``|j - i| <= 3 width`` (zero padding at the ends); ``stride > 1`` also
        downsamples (super-resolution).
        """
        width = check_positive("width", width)
        j = np.arange(dim)
        rows = []
        for i in range(0, dim, stride):
            k = np.exp(-((j - i) ** 2) / (2 * width**2)) * (np.abs(j - i) <= 3 * width)
            rows.append(k / k.sum())
        return cls(np.stack(rows), noise_std)

    def log_likelihood(self, x: Array, y: Array) -> Array:
        """``log N(y; H x, noise_std^2 I)`` for ``x (n, d)``; returns ``(n,)``."""
        r = self._obs(y, x)[None, :] - self.forward(x)
        xp = namespace(r)
        m = self.n_obs
        return (
            -0.5 * xp.sum(r**2, axis=1) / self.noise_std**2
            - m * math.log(self.noise_std)
            - 0.5 * m * math.log(2 * math.pi)
        )

    def likelihood_score(self, x: Array, y: Array) -> Array:
        """``grad_x log p(y | x) = H^T (y - H x) / noise_std^2``, shape ``(n, d)``."""
        r = self._obs(y, x)[None, :] - self.forward(x)
        return r @ as_array(self.H, x) / self.noise_std**2

    def sample(self, x: Array, rng: Any = None) -> Array:
        """Draw ``y = H x + noise_std * n`` for ``x (n, d)``; returns ``(n, m)``."""
        hx = self.forward(x)
        return hx + self.noise_std * normal(resolve_rng(rng), tuple(hx.shape), hx)


@dataclass(frozen=True, eq=False)
class SignMeasurement(AbstractMeasurement):
    r"""One bit per measured value: ``y_i = sign((H x)_i + noise_std * n_i)`` in ``{-1, +1}``.

    ``p(y | x) = prod_i Phi(y_i (H x)_i / noise_std)`` (the probit model; ``Phi`` the standard
    normal CDF): a nonlinear, non-Gaussian likelihood.  Its posterior has no closed form; in
    2-D :func:`~diffcore.conditional.quadrature_posterior` computes it on a grid.  Only the
    methods that use ``log p(y | x)`` or its gradient at a point (DPS, RED-diff, the particle
    samplers, FlowChef) apply to it.
    """

    H: Any
    noise_std: float
    linear_gaussian: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "H", _matrix(self.H))
        object.__setattr__(self, "noise_std", check_positive("noise_std", self.noise_std))

    def _z(self, x: Array, y: Array) -> Array:
        return self._obs(y, x)[None, :] * self.forward(x) / self.noise_std

    def log_likelihood(self, x: Array, y: Array) -> Array:
        """``sum_i log Phi(y_i (H x)_i / noise_std)``, shape ``(n,)``."""
        z = self._z(x, y)
        return namespace(z).sum(_log_ndtr(z), axis=1)

    def likelihood_score(self, x: Array, y: Array) -> Array:
        """``sum_i y_i (phi / Phi)(z_i) H_i / noise_std`` with ``z_i = y_i (H x)_i / noise_std``; ``(n, d)``."""
        z = self._z(x, y)
        xp = namespace(z)
        ratio = xp.exp(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - _log_ndtr(z))  # phi(z) / Phi(z), stable
        return (ratio * self._obs(y, x)[None, :] / self.noise_std) @ as_array(self.H, x)

    def sample(self, x: Array, rng: Any = None) -> Array:
        """Draw the signs ``y (n, m)`` in ``{-1., +1.}`` for ``x (n, d)`` (NaN where ``x`` has NaN)."""
        hx = self.forward(x)
        xp = namespace(hx)
        v = hx + self.noise_std * normal(resolve_rng(rng), tuple(hx.shape), hx)
        return xp.where(v >= 0, xp.ones_like(v), xp.where(v < 0, -xp.ones_like(v), v))


def _log_ndtr(z: Array) -> Array:
    if isinstance(z, np.ndarray):
        from scipy.special import log_ndtr

        return log_ndtr(z)
    import torch

    return torch.special.log_ndtr(z)


def check_observation(measurement: AbstractMeasurement, y: Any) -> Array:
    """``y`` as a finite real ``(m,)`` array for ``measurement`` (``ValueError`` naming the rule otherwise)."""
    if not isinstance(measurement, AbstractMeasurement):
        raise TypeError(f"measurement must be an AbstractMeasurement; got {type(measurement).__name__}")
    if not (hasattr(y, "shape") and hasattr(y, "dtype")):
        y = np.asarray(y, dtype=np.float64)
    y = check_array("y", y, min_ndim=0)
    if tuple(y.shape) != (measurement.n_obs,):
        raise ValueError(f"y must have shape (m,) = ({measurement.n_obs},) for this measurement; got {tuple(y.shape)}")
    xp = namespace(y)
    if isinstance(measurement, SignMeasurement) and not bool(xp.all(xp.abs(y) == 1)):
        raise ValueError("y of a SignMeasurement must hold only -1 and +1")
    return y
