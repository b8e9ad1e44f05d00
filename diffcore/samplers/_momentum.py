r"""Heavy-ball momentum samplers (Wizadwongsa et al. 2023, "Diffusion Sampling with Momentum").

Both act on DDIM written as Euler's method for ``dy/dn = eps_hat`` with ``y = x / alpha`` and
``n = sigma / alpha`` (sec. 3 of the paper; see :mod:`diffcore.samplers._edm` for the change
of variables): DDIM is ``y_{k+1} = y_k + delta_k eps_k`` with ``delta_k = n_{k+1} - n_k`` and
``eps_k = -sigma_k s(x_k, t_k)``.  Momentum replaces ``eps_k`` by a velocity ``v``, an
exponential moving average of past ``eps``, which enlarges the region of absolute stability on
the linear test equation (:func:`diffcore.samplers.stability_region`) and removes the
divergence artifacts of high-order solvers at few steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from diffcore._validation import _real
from diffcore.samplers._base import SCALAR_ODE, AbstractSolver, Requirements

__all__ = ["GHVB", "HeavyBall", "check_beta"]


def check_beta(beta: Any) -> float:
    """The momentum parameter: a real number in ``(0, 1]`` (``1`` is no momentum)."""
    b = _real("beta", beta)
    if not 0.0 < b <= 1.0:
        raise ValueError(f"beta must lie in (0, 1] (1 = no momentum); got {beta!r}")
    return b


def _ddim_frame(dynamics: Any, x: Any, t0: float, t1: float, name: str) -> tuple[Any, Any, float, float]:
    """``(y_0 = x / alpha_0, eps_0, delta = n_1 - n_0, alpha_1)``: one score evaluation."""
    p = dynamics.process
    a0, s0, a1, s1 = p.alpha(t0), p.sigma(t0), p.alpha(t1), p.sigma(t1)
    if a0 == 0 or a1 == 0:
        raise ValueError(f"{name} divides by alpha, which is 0 at t = {t0 if a0 == 0 else t1}")
    return x / a0, -s0 * dynamics.score(x, t0), s1 / a1 - s0 / a0, a1


@dataclass(frozen=True)
class HeavyBall(AbstractSolver):
    r"""DDIM with Polyak's heavy-ball momentum (Wizadwongsa et al. 2023, sec. 4.1, eqs. 9–10).

    .. math:: v_{k+1} = (1 - \beta) v_k + \beta\, \hat\varepsilon_k, \qquad
              y_{k+1} = y_k + (n_{k+1} - n_k)\, v_{k+1}, \qquad x_{k+1} = \alpha_{k+1} y_{k+1},

    with ``v_1 = eps_0`` (the first step is DDIM).  ``beta = 1`` is DDIM; for ``beta < 1`` the
    velocity lags ``eps`` by ``(1 - beta) / beta`` steps, an ``O(h)`` error, so the method has
    global order 1 (measured in the tests).  On ``y' = lambda y`` with ``z = delta lambda`` the
    step is stable on the real interval ``[-2 (2 - beta) / beta, 0]``, which grows from
    Euler's ``[-2, 0]`` as ``beta`` decreases.

    Parameters
    ----------
    beta : momentum parameter in ``(0, 1]``.
    """

    beta: float = 0.8

    name: ClassVar[str] = "hb"
    order: ClassVar[int] = 1

    def __post_init__(self) -> None:
        check_beta(self.beta)

    requires: ClassVar[Requirements] = SCALAR_ODE

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        y0, eps, delta, a1 = _ddim_frame(dynamics, x, t0, t1, self.name)
        v = eps if state is None else (1.0 - self.beta) * state + self.beta * eps
        return a1 * (y0 + delta * v), v


@dataclass(frozen=True)
class GHVB(AbstractSolver):
    r"""Generalised heavy ball of order 2 (Wizadwongsa et al. 2023, sec. 4.2, "GHVB 1 + beta").

    The momentum is applied to ``eps`` *before* the Adams–Bashforth (PLMS) combination, so the
    result stays second order for every ``beta``.  On a uniform grid in ``n`` the paper's step is

    .. math:: v_{k+1} = (1 - \beta) v_k + \beta\, \hat\varepsilon_k, \qquad
              y_{k+1} = y_k + \delta_k\,\frac{(2 + \beta)\, v_{k+1} - (2 - \beta)\, v_k}{2\beta}
              = y_k + \delta_k\Big(\hat\varepsilon_k + \frac{\beta}{2}(\hat\varepsilon_k - v_k)\Big).

    ``v_k`` is a moving average of past ``eps``: for ``eps`` linear in ``n`` it is exactly
    ``eps(tau_k)`` with the lagged level ``tau_{k+1} = (1 - beta) tau_k + beta n_k``, so
    ``(eps_k - v_k) / (n_k - tau_k)`` is a first difference and the step here is

    .. math:: y_{k+1} = y_k + \delta_k\Big(\hat\varepsilon_k
              + \frac{\delta_k}{2}\,\frac{\hat\varepsilon_k - v_k}{n_k - \tau_k}\Big),

    the Adams–Bashforth-2 extrapolation with the slope taken from the momentum: second order on
    any smooth grid (global order 2, measured in the tests).  On a uniform grid the lag settles
    at ``n_k - tau_k = delta / beta`` (geometrically, within a few ``1/beta`` steps) and the step
    *is* the paper's; on the uniform-in-``t`` grids of VP and cosine processes, where ``delta_k``
    varies by orders of magnitude, the paper's constant coefficients converge at order 2 only
    after many steps (fitted slope 1.74 on P1-cosine from 100 to 800 steps), which is why the
    lag is tracked.  The first step is DDIM, the second variable-step AB2 (``v_1 = eps_0``,
    ``tau_1 = n_0``); ``beta = 1`` is variable-step PLMS-2 (Liu et al. 2022).  The paper's GHVB of
    order ``q`` in ``(1, 2]`` is ``beta = q - 1``; ``q <= 1`` is :class:`HeavyBall`; higher
    orders are not provided.  On ``y' = lambda y`` (uniform steps) the real stability interval is
    ``[-(2 - beta), 0]``: AB2's ``[-1, 0]`` at ``beta = 1``, growing towards Euler's ``[-2, 0]``
    as ``beta -> 0``.

    Parameters
    ----------
    beta : momentum parameter in ``(0, 1]``.
    """

    beta: float = 0.8

    name: ClassVar[str] = "ghvb"
    order: ClassVar[int] = 2

    def __post_init__(self) -> None:
        check_beta(self.beta)

    requires: ClassVar[Requirements] = SCALAR_ODE

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        y0, eps, delta, a1 = _ddim_frame(dynamics, x, t0, t1, self.name)
        n0 = dynamics.process.sigma(t0) / dynamics.process.alpha(t0)
        if state is None:  # v_1 = eps_0 at the level tau_1 = n_0
            return a1 * (y0 + delta * eps), (eps, n0)
        v, tau = state
        slope = eps + (0.5 * delta / (n0 - tau)) * (eps - v)
        b = self.beta
        return a1 * (y0 + delta * slope), ((1.0 - b) * v + b * eps, (1.0 - b) * tau + b * n0)
