"""DDIM: the first-order exponential integrator of the probability-flow ODE."""

from __future__ import annotations

from typing import Any, ClassVar

from diffcore.samplers._base import SCALAR_ODE, AbstractSolver, Requirements

__all__ = ["DDIM"]


class DDIM(AbstractSolver):
    r"""Deterministic DDIM (Song, Meng and Ermon 2021, eq. 12 with ``sigma_t = 0``).

    With ``eps_0 = -sigma(t_0) s(x_0, t_0)`` held fixed over the step, the ODE
    ``dx/dt = f x + g^2 / (2 sigma) eps`` integrates exactly (variation of constants and
    ``g^2 / (2 sigma alpha) = d(sigma/alpha)/dt``):

    .. math:: x_1 = \frac{\alpha_1}{\alpha_0} x_0
              + \Big(\sigma_1 - \frac{\alpha_1}{\alpha_0}\sigma_0\Big) \hat\varepsilon_0,

    for any affine process.  This is DPM-Solver-1 (Lu et al. 2022, eq. 3.7) and the
    first-order exponential integrator of Zhang and Chen (2023); global order 1 on every grid.
    Its declared grid is the one of the DDIM paper, uniform in ``t`` (their linear skip of the
    discrete timesteps): measured, it is the more accurate one at every budget tried, e.g. RMS
    pathwise error at 5 / 10 / 20 steps 0.35 / 0.13 / 0.070 there against 0.60 / 0.28 / 0.13 on
    the log-SNR grid (P1, VP), 1.99 / 1.11 / 0.59 against 2.35 / 1.30 / 0.69 (P2), and likewise
    under the cosine and VE processes.  The higher-order exponential integrators, whose
    multistep history needs steps of similar length in ``lambda``, declare the log-SNR grid.
    """

    name: ClassVar[str] = "ddim"
    order: ClassVar[int] = 1
    requires: ClassVar[Requirements] = SCALAR_ODE
    grid: ClassVar[str] = "uniform"

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, a1, s1 = p.alpha(t0), p.sigma(t0), p.alpha(t1), p.sigma(t1)
        if a0 == 0:
            raise ValueError(f"ddim divides by alpha(t0), which is 0 at t0 = {t0}; start below the end of the schedule")
        ratio = a1 / a0
        # eps = -s0 score, folded into one coefficient: three array operations per step
        return ratio * x + (-(s1 - ratio * s0) * s0) * dynamics.score(x, t0), state
