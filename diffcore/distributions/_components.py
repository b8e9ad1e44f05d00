"""Eigen-factored mixture components: the one kernel behind densities, scores and denoisers.

A component ``N(m_k, C_k)`` with ``C_k = U_k diag(lam_k) U_k^T`` pushed through
``x = a x_0 + sqrt(s2) z`` has law ``N(a m_k, U_k diag(a^2 lam_k + s2) U_k^T)``.  With the
projected residual ``p_k = U_k^T (x - a m_k)`` and ``v_k = a^2 lam_k + s2``:

* ``log N_k(x) = -1/2 sum(p_k^2 / v_k) - 1/2 sum log v_k - d/2 log 2 pi``,
* ``grad log N_k(x) = -U_k (p_k / v_k)``,
* ``E[x_0 | x, k] = m_k + a U_k (lam_k p_k / v_k)`` (Gaussian conditioning).

``a`` and ``s2`` may be floats or per-sample arrays of shape ``(n,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from diffcore._array import as_array, device_of, is_scalar_time, namespace

__all__ = ["Components", "component_terms", "logsumexp", "softmax"]

Array = Any


def logsumexp(a: Array, axis: int) -> Array:
    """``log sum exp`` along ``axis``, shifted by the maximum."""
    xp = namespace(a)
    m = xp.max(a, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    return xp.squeeze(m, axis=axis) + xp.log(xp.sum(xp.exp(a - m), axis=axis))


def softmax(a: Array, axis: int) -> Array:
    """Normalised ``exp(a)`` along ``axis``."""
    xp = namespace(a)
    e = xp.exp(a - xp.max(a, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


@dataclass(frozen=True, eq=False)
class Components:
    """Weights, means and eigen-factors of ``K`` Gaussian components in ``d`` dimensions."""

    log_weights: Any  # (K,)
    means: Any  # (K, d)
    eigvecs: Any  # (K, d, d), columns are eigenvectors
    eigvals: Any  # (K, d), all > 0
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, weights: Array, means: Array, covs: Array) -> Components:
        """Validate ``weights (K,)``, ``means (K, d)``, ``covs (K, d, d)`` and factor the covariances."""
        xp = namespace(weights, means, covs)
        if weights.ndim != 1 or weights.shape[0] < 1:
            raise ValueError(f"weights must have shape (K,) with K >= 1; got {tuple(weights.shape)}")
        k = weights.shape[0]
        if means.ndim != 2 or means.shape[0] != k:
            raise ValueError(f"means must have shape (K, d) = ({k}, d); got {tuple(means.shape)}")
        d = means.shape[1]
        if covs.ndim != 3 or tuple(covs.shape) != (k, d, d):
            raise ValueError(f"covs must have shape (K, d, d) = ({k}, {d}, {d}); got {tuple(covs.shape)}")
        for name, arr in (("weights", weights), ("means", means), ("covs", covs)):
            if not bool(xp.all(xp.isfinite(arr))):
                raise ValueError(f"{name} must be finite; got NaN or infinity")
        if not bool(xp.all(weights > 0)):
            raise ValueError(f"weights must all be > 0; got {_show(weights)}")
        total = float(xp.sum(weights))
        tol = math.sqrt(xp.finfo(weights.dtype).eps)
        if abs(total - 1.0) > tol:
            raise ValueError(f"weights must sum to 1 (within {tol:.1e}); got sum {total!r}")
        scale = float(xp.max(xp.abs(covs)))
        asym = float(xp.max(xp.abs(covs - xp.permute_dims(covs, (0, 2, 1)))))
        ctol = math.sqrt(xp.finfo(covs.dtype).eps)
        if asym > ctol * max(scale, 1e-300):
            raise ValueError(f"covs must be symmetric; max |C - C^T| = {asym:.3e} (relative tolerance {ctol:.1e})")
        sym = 0.5 * (covs + xp.permute_dims(covs, (0, 2, 1)))
        eigvals, eigvecs = xp.linalg.eigh(sym)
        floor = d * xp.finfo(covs.dtype).eps * xp.max(xp.abs(eigvals), axis=1, keepdims=True)
        if not bool(xp.all(eigvals > floor)):
            raise ValueError(
                "covs must be positive definite; smallest eigenvalue per component "
                f"{_show(xp.min(eigvals, axis=1))}"
            )
        return cls(xp.log(weights), means, eigvecs, eigvals)

    def like(self, x: Array) -> Components:
        """These components as arrays of ``x``'s type, dtype and device (cached)."""
        key = (type(x).__module__, str(device_of(x)), str(x.dtype))
        here = (type(self.means).__module__, str(device_of(self.means)), str(self.means.dtype))
        if key == here:
            return self
        if key not in self._cache:
            self._cache[key] = Components(
                *(as_array(a, x) for a in (self.log_weights, self.means, self.eigvecs, self.eigvals))
            )
        return self._cache[key]

    def score_from_terms(self, resp: Array, proj: Array, var: Array) -> Array:
        """``-sum_k r_k U_k (p_k / v_k)``, shape ``(n, d)``."""
        return -self._back(resp[:, :, None] * proj / var)

    def mean_from_terms(self, resp: Array, proj: Array, var: Array, a: Any) -> Array:
        """``E[x_0 | x] = sum_k r_k (m_k + a U_k (lam_k p_k / v_k))``, shape ``(n, d)``."""
        xp = namespace(resp)
        a_col = a if is_scalar_time(a) else xp.reshape(a, (-1, 1))
        return resp @ self.means + a_col * self._back(resp[:, :, None] * self.eigvals[None] * proj / var)

    def _back(self, w: Array) -> Array:
        """``sum_k U_k w_k`` for ``w`` of shape ``(n, K, d)``."""
        xp = namespace(w)
        per_k = xp.permute_dims(w, (1, 0, 2)) @ xp.permute_dims(self.eigvecs, (0, 2, 1))  # (K, n, d)
        return xp.sum(per_k, axis=0)


def component_terms(x: Array, comps: Components, a: Any, s2: Any) -> tuple[Array, Array, Array]:
    """Joint log terms ``log w_k + log N_k(x)`` ``(n, K)``, projections ``p`` and variances ``v``."""
    xp = namespace(x)
    if not is_scalar_time(a):
        a = xp.reshape(a, (-1, 1, 1))
    if not is_scalar_time(s2):
        s2 = xp.reshape(s2, (-1, 1, 1))
    resid = x[:, None, :] - a * comps.means[None, :, :]
    proj = xp.permute_dims(xp.permute_dims(resid, (1, 0, 2)) @ comps.eigvecs, (1, 0, 2))
    var = a**2 * comps.eigvals[None, :, :] + s2
    d = x.shape[1]
    log_norm = -0.5 * xp.sum(proj**2 / var, axis=2) - 0.5 * xp.sum(xp.log(var), axis=2)
    return comps.log_weights[None, :] + log_norm - 0.5 * d * math.log(2 * math.pi), proj, var


def _show(a: Array) -> str:
    xp = namespace(a)
    return "[" + ", ".join(f"{float(v):.4g}" for v in xp.reshape(a, (-1,))[:8]) + "]"
