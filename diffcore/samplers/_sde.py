"""Solvers for the reverse SDE: Euler–Maruyama and ancestral (DDPM) sampling."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from diffcore.dynamics import AbstractReverseDynamics
from diffcore.processes import AbstractProcess
from diffcore.samplers._base import AbstractSolver, Requirements

__all__ = ["Ancestral", "EulerMaruyama"]


class EulerMaruyama(AbstractSolver):
    r"""Euler–Maruyama: ``x_1 = x_0 + h b(x_0, t_0) + G(t_0) sqrt(|h|) z``, ``z ~ N(0, I)``.

    Integrates any member of the reverse SDE family (and the ODE, where ``G = 0``).  Strong
    order 1/2 in general (1 for additive noise), weak order 1 (Kloeden and Platen 1992,
    thms. 10.2.2 and 14.5.2); ``order`` declares the weak order.
    """

    name: ClassVar[str] = "euler_maruyama"
    order: ClassVar[int] = 1
    requires: ClassVar[Requirements] = Requirements(noise="any")

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        h = t1 - t0
        return x + h * dynamics.drift(x, t0) + (dynamics.diffusion(t0) * math.sqrt(abs(h))) * noise[0], state


class Ancestral(AbstractSolver):
    r"""Ancestral sampling: draw ``x_1`` from the forward posterior ``q(x_1 | x_0, \hat x)``.

    With ``t_1 < t_0``, the transition ``x_{t_0} = a x_{t_1} + b z`` (``a, b`` from
    :meth:`~diffcore.processes.AbstractProcess.transition`) and the Tweedie estimate
    ``\hat x = (x_0 + \sigma_0^2 s(x_0, t_0)) / \alpha_0`` of the clean data,

    .. math:: x_1 \sim N\Big(\frac{\alpha_1 b^2}{\sigma_0^2}\hat x
              + \frac{a \sigma_1^2}{\sigma_0^2} x_0,\ \frac{b^2 \sigma_1^2}{\sigma_0^2} I\Big),

    the DDPM step (Ho et al. 2020, eqs. 6–7 and alg. 2; Kingma et al. 2021, eq. 33) on any
    time grid and any affine process.  It samples the ``eta = 1`` reverse SDE with weak
    order 1.
    """

    name: ClassVar[str] = "ancestral"
    order: ClassVar[int] = 1
    requires: ClassVar[Requirements] = Requirements(
        dynamics=AbstractReverseDynamics, process=AbstractProcess, shift="forbidden", noise="reverse"
    )

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, a1, s1 = p.alpha(t0), p.sigma(t0), p.alpha(t1), p.sigma(t1)
        if a0 == 0 or s0 == 0:
            raise ValueError(f"ancestral needs alpha(t0) > 0 and sigma(t0) > 0; got {a0}, {s0} at t0 = {t0}")
        tr = p.transition(t1, t0)
        x0_hat = (x + s0**2 * dynamics.score(x, t0)) / a0
        mean = (a1 * tr.std**2 / s0**2) * x0_hat + (tr.scale * s1**2 / s0**2) * x
        return mean + (tr.std * s1 / s0) * noise[0], state
