"""Gaussian and Gaussian-mixture laws with exact densities and scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import device_of, namespace, normal, resolve_rng, uniform
from diffcore._validation import check_array, check_points, check_real, check_same_namespace, check_size
from diffcore.distributions._components import Components, component_terms, logsumexp, softmax

__all__ = ["AbstractMixtureLaw", "Gaussian", "GaussianMixture"]

Array = Any


def _to_array(name: str, value: Any) -> Array:
    """An array (or a nested sequence of numbers) as a finite real array; integers become float64."""
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a real array; got {type(value).__name__}") from err
        if value.dtype == object:
            raise TypeError(f"{name} must be a real array; got a sequence of {type(value.flat[0]).__name__}")
    return check_array(name, value, min_ndim=0)


class AbstractMixtureLaw:
    """A law that *is* a Gaussian mixture, possibly with more structure (a single Gaussian, class labels).

    Everything exact in :mod:`diffcore.distributions` (:func:`~diffcore.marginal`,
    :func:`~diffcore.exact_score`, ...) accepts any such law through :meth:`as_mixture`.
    """

    def as_mixture(self) -> GaussianMixture:  # pragma: no cover - every concrete law overrides it
        """This law as a :class:`GaussianMixture`."""
        raise NotImplementedError

    def quantile(self, u: Any, *, iterations: int = 80) -> np.ndarray:
        r"""Quantiles ``F^{-1}(u)`` of a one-dimensional law, ``F(x) = sum_k w_k Phi((x - m_k) / s_k)``.

        ``u`` is an array of levels in ``(0, 1)``; the result is NumPy float64 of ``u``'s shape.
        Bisection of the monotone CDF on ``[min m_k - 12 s_k, max m_k + 12 s_k]`` (each of the
        ``iterations`` halves the bracket: 80 reach float64 resolution).  With the quantiles of two
        laws at the same levels, ``W2^2 = int_0^1 (F^{-1} - G^{-1})^2 du`` (the 1-D optimal coupling
        is monotone; Villani 2003, thm. 2.18).  Only for ``dim == 1``.
        """
        from scipy.special import ndtr

        mix = self.as_mixture()
        if mix.dim != 1:
            raise ValueError(f"quantile is defined for one-dimensional laws; this one has dim = {mix.dim}")
        levels = np.asarray(u, dtype=np.float64)
        if not np.all((levels > 0) & (levels < 1)):
            raise ValueError("u must hold levels in (0, 1)")
        iterations = check_size(iterations, "iterations")
        w = np.asarray(mix.weights, dtype=np.float64)
        m = np.asarray(mix.means, dtype=np.float64)[:, 0]
        sd = np.sqrt(np.asarray(mix.covs, dtype=np.float64)[:, 0, 0])
        flat = levels.reshape(-1)
        lo, hi = np.full_like(flat, np.min(m - 12 * sd)), np.full_like(flat, np.max(m + 12 * sd))
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            below = ndtr((mid[:, None] - m) / sd) @ w < flat
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return (0.5 * (lo + hi)).reshape(levels.shape)


@dataclass(frozen=True, eq=False)
class GaussianMixture(AbstractMixtureLaw):
    r"""The mixture ``p(x) = sum_k w_k N(x; m_k, C_k)`` with full covariances.

    Parameters
    ----------
    weights : array ``(K,)``, positive, summing to 1.
    means : array ``(K, d)``.
    covs : array ``(K, d, d)``, each symmetric positive definite.

    Each covariance is eigendecomposed once, ``C_k = U_k diag(lam_k) U_k^T``, so that the
    law of ``alpha x + sigma z`` (``covs alpha^2 C_k + sigma^2 I``) is evaluated from the
    same factors at every time: log densities, scores and posterior means cost one
    ``(n, d) x (d, d)`` product per component.  Results follow the array type, dtype and
    device of the points given.

    Example
    -------
    >>> import numpy as np
    >>> gm = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[1.0]], [[1.0]]])
    >>> abs(float(gm.score(np.zeros((1, 1)))[0, 0]))  # symmetric: zero score at the centre
    0.0
    """

    weights: Any
    means: Any
    covs: Any
    _components: Components = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_same_namespace(weights=self.weights, means=self.means, covs=self.covs)
        weights = _to_array("weights", self.weights)
        means = _to_array("means", self.means)
        covs = _to_array("covs", self.covs)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covs", covs)
        object.__setattr__(self, "_components", Components.build(weights, means, covs))

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the points."""
        return int(self.means.shape[1])

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return int(self.means.shape[0])

    @property
    def mean(self) -> Array:
        """Mixture mean ``sum_k w_k m_k``, shape ``(d,)`` (an attribute, as for :class:`Gaussian`)."""
        xp = namespace(self.means)
        return xp.sum(self.weights[:, None] * self.means, axis=0)

    @property
    def cov(self) -> Array:
        """Mixture covariance ``sum_k w_k (C_k + m_k m_k^T) - m m^T``, shape ``(d, d)``."""
        xp = namespace(self.means)
        m = self.mean
        outer = self.means[:, :, None] * self.means[:, None, :]
        second = xp.sum(self.weights[:, None, None] * (self.covs + outer), axis=0)
        return second - m[:, None] * m[None, :]

    def as_mixture(self) -> GaussianMixture:
        """This mixture itself."""
        return self

    def _terms(self, x: Array) -> tuple[Any, Any, Any, Components]:
        x = check_points(x, self.dim)
        comps = self._components.like(x)
        log_joint, proj, var = component_terms(x, comps, 1.0, 0.0)
        return log_joint, proj, var, comps

    def log_prob(self, x: Array) -> Array:
        """``log p(x)`` for points ``x`` of shape ``(n, d)``; returns ``(n,)``."""
        log_joint, _, _, _ = self._terms(x)
        return logsumexp(log_joint, axis=1)

    def score(self, x: Array) -> Array:
        r"""``grad log p(x) = -sum_k r_k(x) C_k^{-1} (x - m_k)`` with responsibilities ``r_k``; ``(n, d)``."""
        log_joint, proj, var, comps = self._terms(x)
        return comps.score_from_terms(softmax(log_joint, axis=1), proj, var)

    def responsibilities(self, x: Array) -> Array:
        """Posterior component probabilities ``r_k(x) = w_k N_k(x) / p(x)``, shape ``(n, K)``."""
        log_joint, _, _, _ = self._terms(x)
        return softmax(log_joint, axis=1)

    def sample(self, n: int, rng: Any = None, *, like: Array = None) -> Array:
        """Draw ``n`` points, shape ``(n, d)``, with ``like``'s (else the means') array type."""
        n = check_size(n, "n")
        rng = resolve_rng(rng)
        like = self.means if like is None else like
        comps = self._components.like(like)
        xp = namespace(like)
        probs = np.asarray([float(w) for w in self.weights], dtype=np.float64)
        idx = np.searchsorted(np.cumsum(probs), uniform(rng, (int(n),)) * probs.sum(), side="right")
        idx = np.minimum(idx, len(probs) - 1)
        idx_x = xp.asarray(idx, device=device_of(like))
        z = normal(rng, (int(n), self.dim), like)
        root = xp.sqrt(xp.take(comps.eigvals, idx_x, axis=0)) * z
        scaled = xp.take(comps.eigvecs, idx_x, axis=0) @ root[:, :, None]
        return xp.take(comps.means, idx_x, axis=0) + scaled[:, :, 0]

    def affine(self, alpha: float, sigma: float) -> GaussianMixture:
        """The law of ``alpha X + sigma Z`` with ``X`` from this mixture and ``Z ~ N(0, I)``.

        ``alpha`` and ``sigma`` are real numbers, the same for every component (``TypeError``
        for arrays: per-component scales would not describe ``alpha X + sigma Z``).
        """
        alpha, sigma = check_real("alpha", alpha), check_real("sigma", sigma)
        comps = self._components
        xp = namespace(comps.means)
        var = alpha**2 * comps.eigvals + sigma**2
        covs = (comps.eigvecs * var[:, None, :]) @ xp.permute_dims(comps.eigvecs, (0, 2, 1))
        return GaussianMixture(self.weights, alpha * self.means, covs)


@dataclass(frozen=True, eq=False)
class Gaussian(AbstractMixtureLaw):
    r"""The Gaussian ``N(mean, cov)``: a one-component :class:`GaussianMixture`.

    ``log p(x) = -1/2 (x-m)^T C^{-1} (x-m) - 1/2 log det(2 pi C)``, ``score = -C^{-1}(x-m)``.

    Parameters
    ----------
    mean : array ``(d,)``.
    cov : array ``(d, d)``, symmetric positive definite.
    """

    mean: Any
    cov: Any
    _mixture: GaussianMixture = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_same_namespace(mean=self.mean, cov=self.cov)
        mean = _to_array("mean", self.mean)
        cov = _to_array("cov", self.cov)
        if mean.ndim != 1:
            raise ValueError(f"mean must have shape (d,); got {tuple(mean.shape)}")
        xp = namespace(mean)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        weights = xp.ones((1,), dtype=mean.dtype, device=device_of(mean))
        if cov.ndim != 2:
            raise ValueError(f"cov must have shape (d, d) = ({mean.shape[0]}, {mean.shape[0]}); got {tuple(cov.shape)}")
        object.__setattr__(self, "_mixture", GaussianMixture(weights, mean[None, :], cov[None, :, :]))

    @property
    def dim(self) -> int:
        """Dimension ``d``."""
        return int(self.mean.shape[0])

    def log_prob(self, x: Array) -> Array:
        """``log N(x; mean, cov)`` for ``x`` of shape ``(n, d)``; returns ``(n,)``."""
        return self._mixture.log_prob(x)

    def score(self, x: Array) -> Array:
        """``-cov^{-1} (x - mean)``, shape ``(n, d)``."""
        return self._mixture.score(x)

    def sample(self, n: int, rng: Any = None, *, like: Array = None) -> Array:
        """Draw ``n`` points, shape ``(n, d)``."""
        return self._mixture.sample(n, rng, like=like)

    def as_mixture(self) -> GaussianMixture:
        """This law as a one-component mixture."""
        return self._mixture

    def affine(self, alpha: float, sigma: float) -> Gaussian:
        """The law of ``alpha X + sigma Z``: ``N(alpha m, alpha^2 C + sigma^2 I)``."""
        mix = self._mixture.affine(alpha, sigma)
        return Gaussian(mix.means[0], mix.covs[0])

