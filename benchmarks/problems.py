"""The benchmark problems P1 and P2, and the setting every sampler benchmark shares.

* **P1** — 2-D mixture of 8 isotropic Gaussians (std 0.3) evenly spaced on a circle of
  radius 4: multimodal, with a score that turns sharply between the modes at small ``t``.
* **P2** — a 64-D Gaussian with a random rotation and eigenvalues log-uniform in
  ``[0.01, 4]`` (seed 0): the exact score is affine, so every affine sampler step maps a
  Gaussian law to a Gaussian law and its output law is known exactly
  (:func:`diffcore.testing.propagate_gaussian_law`); the condition number 400 makes the
  probability-flow ODE mildly stiff near ``t = 0``.

Both are defined once, in :class:`diffcore.testing.Problem` (the test-suite uses the same
definitions); this module fixes the process and the interval the benchmarks share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import diffcore as dc
from diffcore import testing
from diffcore.testing import circle_mixture, random_gaussian

__all__ = [
    "LINEAR_PATH",
    "PROBLEMS",
    "PROCESS",
    "T_MAX",
    "T_MIN",
    "Problem",
    "circle_mixture",
    "held_out_problems",
    "linear_path_problem",
    "random_gaussian",
    "unequal_mixture",
]

#: the forward process of every sampler benchmark, and the integration interval [T_MIN, T_MAX]
PROCESS = dc.VPSDE()
T_MIN = 1e-3
T_MAX = 1.0


@dataclass(frozen=True, eq=False, repr=False)
class Problem(testing.Problem):
    """A problem of :class:`diffcore.testing.Problem` under :data:`PROCESS`; ``law(t)`` is its ``marginal(t)``."""

    def law(self, t: float) -> dc.Gaussian | dc.GaussianMixture:
        """The exact marginal of ``x_t`` under :data:`PROCESS`."""
        return self.marginal(t)


PROBLEMS = {name: Problem(name, PROCESS) for name in ("P1", "P2")}


#: the linear (rectified-flow / conditional-OT) path in diffcore's clock: data at t = 0, pure noise at
#: t = 1 (alpha(1) = 0: its log-SNR is infinite there).  flow_matching / torchcfm put noise at s = 0
#: and data at s = 1 with x_s = s x_1 + (1 - s) x_0: the same path under s = 1 - t
#: (``diffcore.interop.velocity_for_flow_matching`` maps the velocity).
LINEAR_PATH = dc.AffineProcess(
    lambda t: 1 - t, lambda t: t, d_alpha_fn=lambda t: 0 * t - 1.0, d_sigma_fn=lambda t: 0 * t + 1.0
)


def linear_path_problem() -> Problem:
    """P1's data (the 2-D circle mixture) under :data:`LINEAR_PATH` (``alpha = 1 - t``, ``sigma = t``).

    ``flow_model()`` of this problem is the exact velocity reparametrized as a score, so that
    ``t = 1`` (``alpha = 0``) needs no ``f = alpha'/alpha`` (:meth:`diffcore.testing.Problem.velocity`).
    """
    return Problem(
        "linear",
        process=LINEAR_PATH,
        data=circle_mixture(),
        description="P1's 2-D circle mixture under the linear path alpha = 1 - t, sigma = t (rectified flow)",
    )


def unequal_mixture(d: int = 32, weights=(0.9, 0.05, 0.03, 0.02), seed: int = 7) -> dc.GaussianMixture:
    """A ``d``-D mixture with very unequal weights and anisotropic components (held out: nobody tunes on it).

    Component ``j``: weight ``weights[j]``, mean ``2 z_j`` (``z_j ~ N(0, I)``), covariance
    ``Q_j diag(lam_j) Q_j^T`` with a random rotation ``Q_j`` and eigenvalues log-uniform in
    ``[0.01, 1]``; everything from ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    w = np.asarray(weights, dtype=np.float64)
    covs = []
    for _ in range(w.size):
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        covs.append((q * np.exp(rng.uniform(np.log(0.01), 0.0, d))) @ q.T)
    return dc.GaussianMixture(w / w.sum(), 2.0 * rng.standard_normal((w.size, d)), np.stack(covs))


def held_out_problems() -> dict[str, Problem]:
    """The held-out families of issue 14, which no grid, solver or schedule search may be tuned on.

    * ``"mix32"`` -- :func:`unequal_mixture`: 32-D, weights 0.9 / 0.05 / 0.03 / 0.02, anisotropic
      components (condition number up to 100), under :data:`PROCESS` (VP-SDE(0.1, 20));
    * ``"VE-P1"`` -- P1's circle mixture under the variance-exploding ``VESDE(0.01, 50)``
      (``alpha = 1``, ``sigma`` geometric in ``t``).

    Every marginal, score, velocity and the DOP853 reference are exact
    (:class:`diffcore.testing.Problem`).
    """
    return {
        "mix32": Problem(
            "mix32",
            process=PROCESS,
            data=unequal_mixture(),
            description="32-D mixture, weights 0.9/0.05/0.03/0.02, covariance eigenvalues log-uniform in "
            "[0.01, 1], means 2 N(0, I) (seed 7), VP-SDE(0.1, 20)",
        ),
        "VE-P1": Problem(
            "VE-P1",
            process=dc.VESDE(),
            data=circle_mixture(),
            description="P1's 2-D circle mixture under VESDE(0.01, 50)",
        ),
    }
