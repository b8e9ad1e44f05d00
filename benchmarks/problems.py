"""The benchmark problems P1 and P2, and the setting every sampler benchmark shares.

* **P1** — 2-D mixture of 8 isotropic Gaussians (std 0.3) evenly spaced on a circle of
  radius 4: multimodal, with a score that turns sharply between the modes at small ``t``.
* **P2** — a 64-D Gaussian with a random rotation and eigenvalues log-uniform in
  ``[0.01, 4]`` (seed 0): the exact score is affine, so every affine sampler step maps a
  Gaussian law to a Gaussian law and its output law is known exactly
  (:func:`diffcore.testing.propagate_gaussian_law`); the condition number 400 makes the
  probability-flow ODE mildly stiff near ``t = 0``.

The test-suite keeps its own copy of these definitions in ``tests/conftest.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import diffcore as dc

__all__ = ["PROBLEMS", "PROCESS", "T_MAX", "T_MIN", "Problem", "circle_mixture", "random_gaussian"]

#: the forward process of every sampler benchmark, and the integration interval [T_MIN, T_MAX]
PROCESS = dc.VPSDE()
T_MIN = 1e-3
T_MAX = 1.0


def circle_mixture(k: int = 8, radius: float = 4.0, std: float = 0.3) -> dc.GaussianMixture:
    """P1: ``k`` equally weighted components ``N(m_j, std^2 I)`` with ``m_j`` evenly spaced on a circle."""
    ang = 2 * np.pi * np.arange(k) / k
    means = radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    return dc.GaussianMixture(np.full(k, 1.0 / k), means, np.tile(std**2 * np.eye(2), (k, 1, 1)))


def random_gaussian(d: int = 64, seed: int = 0, lo: float = 0.01, hi: float = 4.0) -> dc.Gaussian:
    """P2: ``N(m, Q diag(lam) Q^T)``, ``Q`` a random rotation, ``lam`` log-uniform in ``[lo, hi]``.

    The mean is ``m ~ N(0, I/4)``; everything is drawn from ``default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.exp(rng.uniform(np.log(lo), np.log(hi), size=d))
    return dc.Gaussian(rng.standard_normal(d) * 0.5, (q * lam) @ q.T)


@dataclass(frozen=True)
class Problem:
    """A named data law with its exact score under :data:`PROCESS`."""

    name: str
    description: str
    data: dc.Gaussian | dc.GaussianMixture

    @property
    def score(self) -> dc.ExactField:
        """The exact score ``grad log p_t`` of the data under :data:`PROCESS`."""
        return dc.exact_score(PROCESS, self.data)

    def law(self, t: float) -> dc.Gaussian | dc.GaussianMixture:
        """The exact marginal of ``x_t`` under :data:`PROCESS`."""
        return dc.marginal(PROCESS, self.data, t)


PROBLEMS = {
    "P1": Problem("P1", "2-D, 8-component mixture on a circle of radius 4, std 0.3", circle_mixture()),
    "P2": Problem(
        "P2", "64-D Gaussian, random covariance, eigenvalues log-uniform in [0.01, 4], seed 0", random_gaussian()
    ),
}
