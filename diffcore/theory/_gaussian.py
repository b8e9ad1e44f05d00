"""Gaussian laws: the KL divergence in closed form and the affine coefficients of a score."""

from __future__ import annotations

from typing import Any

import numpy as np

from diffcore._validation import check_array, check_same_namespace

__all__ = ["affine_coefficients", "gaussian_kl"]


def _spd(name: str, cov: Any, d: int) -> np.ndarray:
    c = np.asarray(cov, dtype=np.float64)
    if c.shape != (d, d):
        raise ValueError(f"{name} must have shape ({d}, {d}); got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    if np.max(np.abs(c - c.T)) > 1e-8 * max(np.max(np.abs(c)), 1e-300):
        raise ValueError(f"{name} must be symmetric; max |C - C^T| = {np.max(np.abs(c - c.T)):.3e}")
    c = 0.5 * (c + c.T)
    if np.min(np.linalg.eigvalsh(c)) <= 0:
        raise ValueError(f"{name} must be positive definite; smallest eigenvalue {np.min(np.linalg.eigvalsh(c)):.3e}")
    return c


def gaussian_kl(mean0: Any, cov0: Any, mean1: Any, cov1: Any) -> float:
    r"""``KL(N(m_0, C_0) || N(m_1, C_1))`` in closed form.

    .. math:: \mathrm{KL} = \tfrac12\Big[\operatorname{tr}(C_1^{-1} C_0) + (m_1 - m_0)^\top C_1^{-1} (m_1 - m_0)
              - d + \log\det C_1 - \log\det C_0\Big]

    (Kullback 1959; book chapter "Theory you can measure", eq. ``theory-kl-gauss``).  Means
    ``(d,)``, covariances ``(d, d)`` symmetric positive definite; NumPy float64 in, a float out.
    The log-determinants come from Cholesky factors, so a KL of ``1e-14`` is resolved.

    Example
    -------
    >>> import numpy as np
    >>> gaussian_kl(np.zeros(1), np.eye(1), np.ones(1), np.eye(1))
    0.5
    """
    check_same_namespace(
        mean0=check_array("mean0", mean0, ndim=1),
        cov0=check_array("cov0", cov0, ndim=2, finite=False),
        mean1=check_array("mean1", mean1, ndim=1),
        cov1=check_array("cov1", cov1, ndim=2, finite=False),
    )
    m0 = np.asarray(mean0, dtype=np.float64)
    if m0.ndim != 1:
        raise ValueError(f"mean0 must have shape (d,); got {m0.shape}")
    d = m0.shape[0]
    m1 = np.asarray(mean1, dtype=np.float64)
    if m1.shape != (d,):
        raise ValueError(f"mean1 must have shape ({d},); got {m1.shape}")
    if not (np.all(np.isfinite(m0)) and np.all(np.isfinite(m1))):
        raise ValueError("mean0 and mean1 must be finite; got NaN or infinity")
    c0, c1 = _spd("cov0", cov0, d), _spd("cov1", cov1, d)
    l0, l1 = np.linalg.cholesky(c0), np.linalg.cholesky(c1)
    # tr(C1^{-1} C0) = ||L1^{-1} L0||_F^2, the Mahalanobis term = ||L1^{-1}(m1 - m0)||^2
    a = np.linalg.solve(l1, l0)
    r = np.linalg.solve(l1, m1 - m0)
    # tr(A A^T) - d - log det(A A^T) = sum over the eigenvalues lam of A A^T of (lam - 1 - log lam) >= 0
    lam = np.linalg.svd(a, compute_uv=False) ** 2
    return float(0.5 * (np.sum(lam - 1 - np.log(lam)) + r @ r))


def affine_coefficients(score: Any, t: float, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``score(x, t) = A x + b`` for an affine score, from ``d + 1`` probes.

    ``b = score(0, t)`` and column ``j`` of ``A`` is ``score(e_j, t) - b``: one batched call of shape
    ``(d + 1, d)``.  Whether the score *is* affine is checked once by :func:`check_affine`.
    """
    probes = np.vstack([np.zeros((1, d)), np.eye(d)])
    out = np.asarray(score(probes, t), dtype=np.float64)
    if out.shape != (d + 1, d):
        raise ValueError(f"score must return an array shaped like x, ({d + 1}, {d}); got {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"score returned NaN or infinity at t = {t}")
    b = out[0]
    return (out[1:] - b).T, b


def check_affine(score: Any, t: float, d: int, who: str) -> None:
    """``ValueError`` unless ``score(., t)`` is affine: three random points against the probed ``(A, b)``."""
    a, b = affine_coefficients(score, t, d)
    x = np.random.default_rng(0).normal(size=(3, d)) * 2.0
    got = np.asarray(score(x, t), dtype=np.float64)
    want = x @ a.T + b
    scale = 1.0 + np.max(np.abs(want))
    gap = float(np.max(np.abs(got - want)))
    if gap > 1e-8 * scale:
        raise ValueError(
            f"{who} needs a score that is affine in x (s(x, t) = A(t) x + b(t)), so that the reverse SDE keeps "
            f"Gaussian laws; at t = {t} the score differs from its affine probe by {gap:.3e}"
        )
