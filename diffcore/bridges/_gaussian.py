r"""The Schrödinger bridge between two Gaussians, in closed form.

The reference process is ``sigma W_t`` on ``[0, 1]``; the bridge is the law on paths closest in
relative entropy to it with marginals ``N(mu0, Sigma0)`` at ``t = 0`` and ``N(mu1, Sigma1)`` at
``t = 1``.  It is a mixture of Brownian bridges ``X_t = (1 - t) X_0 + t X_1 + sigma (t (1 - t))^{1/2}
Z`` over the static coupling of ``(X_0, X_1)`` that solves entropic optimal transport with cost
``|x - y|^2`` and penalty ``2 sigma^2 KL`` (Léonard 2014).  For Gaussians that coupling is Gaussian
with cross-covariance (Janati et al. 2020; Mallasto et al. 2022, thm. 1; Bunne et al. 2023, thm. 1)

.. math:: C_\sigma = \tfrac12 \big(\Sigma_0^{1/2} D_\sigma \Sigma_0^{-1/2} - \sigma^2 I\big), \qquad
          D_\sigma = \big(4 \Sigma_0^{1/2} \Sigma_1 \Sigma_0^{1/2} + \sigma^4 I\big)^{1/2},

characterised by the joint precision having the off-diagonal block ``-I / sigma^2`` (the density
ratio to the reference kernel ``exp(-|x - y|^2 / (2 sigma^2))`` is a product ``a(x) b(y)``).  As
``sigma -> 0`` it tends to the optimal-transport coupling, ``X_1 = T X_0`` with the Gaussian OT map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array
from diffcore._validation import check_array, check_positive, check_scalar_time
from diffcore.distributions import Gaussian

__all__ = ["GaussianSchrodingerBridge"]

Array = Any


def _sqrtm(a: np.ndarray, power: float = 0.5) -> np.ndarray:
    lam, vec = np.linalg.eigh(0.5 * (a + a.T))
    return (vec * np.clip(lam, 0.0, None) ** power) @ vec.T


def _spd(name: str, cov: Any, d: int) -> np.ndarray:
    c = np.asarray(check_array(name, np.asarray(cov, dtype=np.float64), ndim=2), dtype=np.float64)
    if c.shape != (d, d):
        raise ValueError(f"{name} must have shape ({d}, {d}); got {c.shape}")
    if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    if np.linalg.eigvalsh(c).min() <= 0:
        raise ValueError(f"{name} must be positive definite; smallest eigenvalue {np.linalg.eigvalsh(c).min():.3g}")
    return c


@dataclass(frozen=True, eq=False)
class GaussianSchrodingerBridge:
    r"""The Schrödinger bridge from ``N(mean0, cov0)`` to ``N(mean1, cov1)`` for the reference ``sigma W_t``.

    Parameters
    ----------
    mean0, cov0, mean1, cov1 : the end marginals (``(d,)`` and symmetric positive-definite ``(d, d)``).
    sigma : the reference noise level (> 0); the entropic-OT penalty is ``2 sigma^2 KL``.

    Attributes
    ----------
    cross_cov : ``C_sigma = Cov(X_0, X_1)`` of the optimal coupling (module docstring), ``(d, d)``.

    The bridge solves ``dX_t = v(X_t, t) dt + sigma dW_t`` with the affine drift
    ``v(x, t) = (E[X_1 | X_t = x] - x) / (1 - t)`` (the Brownian bridge's pull, averaged over the
    coupling; Bunne et al. 2023, thm. 3, in this form); its marginals are :meth:`marginal`.

    Example
    -------
    >>> import numpy as np
    >>> sb = GaussianSchrodingerBridge(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1), sigma=1.0)
    >>> float(sb.cross_cov[0, 0])  # (sqrt(4 * 1 * 4 + 1) - 1) / 2
    1.5615528128088303
    """

    mean0: Any
    cov0: Any
    mean1: Any
    cov1: Any
    sigma: float
    cross_cov: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        m0 = np.asarray(check_array("mean0", np.asarray(self.mean0, dtype=np.float64), ndim=1), dtype=np.float64)
        d = m0.shape[0]
        m1 = np.asarray(check_array("mean1", np.asarray(self.mean1, dtype=np.float64), ndim=1), dtype=np.float64)
        if m1.shape != (d,):
            raise ValueError(f"mean1 must have shape ({d},) like mean0; got {m1.shape}")
        c0, c1 = _spd("cov0", self.cov0, d), _spd("cov1", self.cov1, d)
        sigma = check_positive("sigma", self.sigma)
        root, inv_root = _sqrtm(c0), _sqrtm(c0, -0.5)
        dmat = _sqrtm(4 * root @ c1 @ root + sigma**4 * np.eye(d))
        cross = 0.5 * (root @ dmat @ inv_root - sigma**2 * np.eye(d))
        for name, value in (("mean0", m0), ("cov0", c0), ("mean1", m1), ("cov1", c1), ("sigma", sigma)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "cross_cov", cross)

    @property
    def dim(self) -> int:
        """Dimension ``d``."""
        return int(self.mean0.shape[0])

    def _moments(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean ``mu_t``, covariance ``Sigma_t`` and ``Cov(X_t, X_1)``."""
        c = self.cross_cov
        mean = (1 - t) * self.mean0 + t * self.mean1
        cov = (1 - t) ** 2 * self.cov0 + t**2 * self.cov1 + t * (1 - t) * (c + c.T + self.sigma**2 * np.eye(self.dim))
        return mean, 0.5 * (cov + cov.T), (1 - t) * c + t * self.cov1

    def marginal(self, t: Any) -> Gaussian:
        r"""The law of ``X_t``: ``N(mu_t, Sigma_t)``.

        ``mu_t = (1 - t) mu0 + t mu1``, ``Sigma_t = (1 - t)^2 Sigma0 + t^2 Sigma1 + t (1 - t) (C + C^T + sigma^2 I)``.
        """
        mean, cov, _ = self._moments(check_scalar_time(t))
        return Gaussian(mean, cov)

    def drift(self, x: Any, t: Any) -> Array:
        r"""``v(x, t) = (mu1 + K_t^T Sigma_t^{-1} (x - mu_t) - x) / (1 - t)``, ``K_t = Cov(X_t, X_1)``; ``t < 1``.

        ``x`` is ``(n, d)`` (NumPy or torch; the result follows it).
        """
        t = check_scalar_time(t)
        if t >= 1.0:
            raise ValueError(f"the bridge drift (E[X_1 | X_t] - x) / (1 - t) needs t < 1; got t = {t}")
        x = check_array("x", x, ndim=2, dim=self.dim)
        mean, cov, k = self._moments(t)
        gain = np.linalg.solve(cov, k).T  # K^T Sigma^{-1}
        shift = self.mean1 - gain @ mean
        return (x @ as_array(gain.T, x) + as_array(shift, x)[None, :] - x) / (1 - t)

    def velocity(self, x: Any, t: Any) -> Array:
        r"""The probability-flow velocity ``v + (sigma^2 / 2) Sigma_t^{-1} (x - mu_t)`` (same marginals, no noise)."""
        drift = self.drift(x, t)
        mean, cov, _ = self._moments(float(t))
        prec = np.linalg.inv(cov)
        return drift + 0.5 * self.sigma**2 * ((x - as_array(mean, x)[None, :]) @ as_array(prec, x))
