"""The samplers of the residual processes: RDDM's deterministic step and ResShift's ancestral step."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from diffcore.dynamics import AbstractReverseDynamics
from diffcore.processes import AbstractProcess
from diffcore.samplers._base import AbstractSolver, Requirements

__all__ = ["RDDMSampler", "ResShiftSampler"]

Array = Any


def _requires(noise: str) -> Requirements:
    """Reverse dynamics of a process with a mean shift ``mu`` (ResidualDiffusion, ResShift, MeanRevertingSDE)."""
    return Requirements(dynamics=AbstractReverseDynamics, process=AbstractProcess, shift="required", noise=noise)


def _coefficients(solver: AbstractSolver, dynamics: Any, t0: float, t1: float) -> tuple[float, float, float, float]:
    """``alpha`` and ``sigma`` at both ends of the step; ``ValueError`` where ``alpha(t0) = 0``."""
    p = dynamics.process
    a0, s0, a1, s1 = p.alpha(t0), p.sigma(t0), p.alpha(t1), p.sigma(t1)
    if a0 == 0:
        raise ValueError(
            f"{solver.name} needs E[x_0 | x_t] = mu + (x - mu + sigma^2 score) / alpha, undefined at t0 = {t0} where "
            f"alpha(t0) = 0 (the score there carries no information about x_0): start at t_max < {t0}"
        )
    return a0, s0, a1, s1


class RDDMSampler(AbstractSolver):
    r"""RDDM's deterministic sampler (Liu et al. 2024, eq. 13 with ``sigma_t = 0``).

    With the residual and noise predicted from the score at ``t`` (Tweedie, ``u = x - y``),

    .. math:: \hat\varepsilon = -\sigma_t\, s(x, t), \qquad
              \hat r = y - \hat x_0 = -\frac{u - \sigma_t \hat\varepsilon}{\alpha_t},

    the step from ``t`` to ``s < t`` keeps both predictions and moves the coefficients:

    .. math:: x_s = x_t - (\bar\alpha_t - \bar\alpha_s)\,\hat r - (\bar\beta_t - \bar\beta_s)\,\hat\varepsilon
              = y + \frac{\alpha_s}{\alpha_t}(x_t - y)
              + \Big(\sigma_s - \frac{\alpha_s}{\alpha_t}\sigma_t\Big)\hat\varepsilon ,

    with ``abar = 1 - alpha``, ``bbar = sigma``: DDIM in ``x - y``.  On any shifted process
    (:class:`~diffcore.processes.ResidualDiffusion`, :class:`~diffcore.processes.ResShift`,
    :class:`~diffcore.processes.MeanRevertingSDE`) it is the first-order exponential integrator
    of the probability-flow ODE, the same step as ``MRSODE("noise", order=1)``.  Global
    (pathwise) order 1; one score evaluation per step.  Where ``alpha(t) = 0`` (RDDM at
    ``t = 1``) ``x_0`` cannot be predicted from a score: ``ValueError``; start at ``t_max < 1``.
    """

    name: ClassVar[str] = "rddm"
    order: ClassVar[int] = 1
    requires: ClassVar[Requirements] = _requires("none")
    grid: ClassVar[str] = "uniform"

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        a0, s0, a1, s1 = _coefficients(self, dynamics, t0, t1)
        mu = dynamics.process.shift_like(x)
        ratio = a1 / a0
        return mu + ratio * (x - mu) + (-(s1 - ratio * s0) * s0) * dynamics.score(x, t0), state


class ResShiftSampler(AbstractSolver):
    r"""ResShift's ancestral sampler: the posterior ``q(x_s | x_t, x_0)`` with ``x_0`` predicted.

    ResShift's chain adds independent noise of variance ``kappa^2 (eta_k - eta_{k-1})`` at each
    step, so ``Z_t = x_t - y - alpha_t (x_0 - y)`` is a Gaussian random walk of variance
    ``sigma_t^2`` and, for ``s < t`` (Yue et al. 2023, eqs. 6–7; the reference code's
    ``q_posterior_mean_variance``),

    .. math:: q(x_s | x_t, x_0) = \mathcal N\Big(\frac{\eta_s}{\eta_t} x_t + \frac{\eta_t - \eta_s}{\eta_t} x_0,\;
              \kappa^2 \frac{\eta_s}{\eta_t}(\eta_t - \eta_s) I\Big).

    Written for any process with mean shift ``mu`` and non-decreasing ``sigma``, with
    ``k = sigma_s^2 / sigma_t^2`` (``= eta_s/eta_t`` for ResShift), ``u = x - mu`` and
    ``x_0`` predicted by Tweedie, ``hat u_0 = (u + sigma_t^2 s)/alpha_t``:

    .. math:: u_s = \alpha_s \hat u_0 + k\,(u_t - \alpha_t \hat u_0) + \sigma_s\sqrt{1 - k}\; z
              = \alpha_s \hat u_0 - \sigma_s^2\, s(x_t, t) + \sigma_s \sqrt{1 - k}\; z .

    A last step to ``t = 0`` returns ``mu + hat u_0``, the predicted ``x_0``, as the reference
    code does.  On :class:`~diffcore.processes.ResShift` with ``steps = T`` on the uniform grid
    from 1 to 0 this is the paper's sampler at its ``T`` steps.  As the steps shrink it samples
    a reverse SDE of the family of :class:`~diffcore.ReverseSDE` with the time-dependent noise
    scale ``sqrt((d sigma^2/dt) / g^2)`` (``sqrt((1 - eta)/(1 + eta))`` for ResShift): the right
    marginals, weak order 1.
    For Gaussian data (affine score) the step is affine in ``(x, z)``.  One score evaluation
    and one normal draw per step.
    """

    name: ClassVar[str] = "resshift"
    order: ClassVar[int] = 1
    requires: ClassVar[Requirements] = _requires("reverse")
    grid: ClassVar[str] = "uniform"

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        a0, s0, a1, s1 = _coefficients(self, dynamics, t0, t1)
        k = (s1 / s0) ** 2
        if k > 1 + 1e-12:
            raise ValueError(
                f"resshift needs sigma non-decreasing in t; sigma({t1}) = {s1} > sigma({t0}) = {s0} on a step backwards"
            )
        mu = dynamics.process.shift_like(x)
        score = dynamics.score(x, t0)
        u0_hat = (1 / a0) * (x - mu) + (s0**2 / a0) * score
        return mu + a1 * u0_hat - s1**2 * score + (s1 * math.sqrt(max(1 - k, 0.0))) * noise[0], state
