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

import diffcore as dc
from diffcore import testing
from diffcore.testing import circle_mixture, random_gaussian

__all__ = ["PROBLEMS", "PROCESS", "T_MAX", "T_MIN", "Problem", "circle_mixture", "random_gaussian"]

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
