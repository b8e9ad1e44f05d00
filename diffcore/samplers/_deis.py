r"""DEIS: the exponential integrator with a polynomial in ``t`` for the noise (tAB-DEIS).

Zhang and Chen (2023), "Fast Sampling of Diffusion Models with Exponential Integrator",
eqs. 13–15 (tAB-DEIS).  Over a step ``s -> t`` the probability-flow ODE integrates exactly to

.. math::
    x_t = \frac{\alpha_t}{\alpha_s} x_s + \alpha_t \int_s^t \hat\varepsilon(\tau)\, d\rho(\tau),
    \qquad \rho = \sigma / \alpha = e^{-\lambda}

(``g^2 / (2 sigma alpha) = d rho / dt``).  tAB-DEIS of order ``k`` replaces ``eps(tau)`` by
its Lagrange interpolant ``sum_j l_j(tau) eps_j`` *in time* through the ``k`` latest grid
times (Adams–Bashforth), and integrates the basis exactly against the exponential weight:

.. math::
    x_t = \frac{\alpha_t}{\alpha_s} x_s + \sum_j C_j \varepsilon_j, \qquad
    C_j = \alpha_t \int_s^t \ell_j(\tau)\, d\rho(\tau)
        = -\sigma_t \int_{\lambda_s}^{\lambda_t} e^{\lambda_t - \lambda}\, \ell_j(t(\lambda))\, d\lambda .

The paper evaluates these integrals numerically; here they are a Gauss–Legendre rule of
:data:`QUAD_NODES` points in ``lambda`` (where the weight is smooth; in ``t`` the factor
``d rho / dt ~ t^{-1/2}`` of the VP process near ``t = 0`` would spoil the rule), with
``t(lambda)`` from the process's exact ``log_snr_inverse``.  On a step of length ``h`` in
``lambda`` the rule's relative error is below ``1e-12`` for ``h <= 4`` on the VP, cosine
and VE processes (``t(lambda)`` is analytic in a strip ``|Im lambda| < pi/2``); checked
against adaptive quadrature in the tests.  ``deis_1`` is DDIM exactly.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from diffcore.samplers._exponential import ExponentialSolver, _LowerOrderFinal

__all__ = ["DEIS1", "DEIS2", "DEIS3", "deis_weights"]

#: Gauss–Legendre points per step for the DEIS coefficients
QUAD_NODES = 24
_XI, _OMEGA = np.polynomial.legendre.leggauss(QUAD_NODES)


def deis_weights(process: Any, t0: float, t1: float, times: list[float]) -> np.ndarray:
    r"""``C_j / sigma_t``: the tAB-DEIS coefficients of the noise values at ``times`` (``times[0] = t0``).

    ``C_j = -sigma_t int_{lambda_s}^{lambda_t} e^{lambda_t - lambda} l_j(t(lambda)) dlambda``,
    ``l_j`` the Lagrange basis on ``times``; returns ``C / sigma(t1)`` as float64 ``(len(times),)``.
    """
    l0, l1 = 0.5 * float(process.log_snr(t0)), 0.5 * float(process.log_snr(t1))
    h = l1 - l0
    lam = l0 + 0.5 * h * (_XI + 1.0)
    tq = np.asarray(process.log_snr_inverse(2.0 * lam), dtype=np.float64)
    nodes = np.asarray(times, dtype=np.float64)
    basis = np.ones((len(nodes), QUAD_NODES))
    for j in range(len(nodes)):
        for m in range(len(nodes)):
            if m != j:
                basis[j] *= (tq - nodes[m]) / (nodes[j] - nodes[m])
    weight = np.exp(l1 - lam) * _OMEGA * (0.5 * h)
    return -(basis @ weight)


class _DEIS(_LowerOrderFinal, ExponentialSolver):
    """tAB-DEIS of order ``order`` (see the module docstring); one evaluation per step.

    Warm-up: step ``i`` (1-based) uses the ``min(i, order)`` available values, so step 1 is
    DDIM.  For ``deis_3`` its ``O(h^2)`` local error would cap the global order at 2, so step 2
    first corrects step 1 with the linear interpolant of the two values (exactly integrated;
    no extra evaluation — the corrector idea of UniPC), then steps with that interpolant.
    ``first_order_below``: see :class:`~diffcore.samplers._exponential._LowerOrderFinal`.
    """

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, _ = self._coefficients(p, t0)
        a1, s1, _ = self._coefficients(p, t1)
        eps0 = self._eps(dynamics, x, t0, s0)
        past, start = state if state is not None else ((), None)
        if start is not None:  # warm-up of order 3: correct step 1 with the new value (no new evaluation)
            x_prev, a_prev = start
            t_prev, e_prev = past[0]
            w = deis_weights(p, t_prev, t0, [t_prev, t0]) * s0
            x = (a0 / a_prev) * x_prev + float(w[0]) * e_prev + float(w[1]) * eps0
        history = [(t0, eps0), *past][: self.order]
        use = history[:1] if self._first_order_here(t0, t1) else history
        w = deis_weights(p, t0, t1, [t for t, _ in use]) * s1
        out = (a1 / a0) * x
        for wj, (_, ej) in zip(w, use):
            out = out + float(wj) * ej
        return out, (tuple(history), (x, a0) if state is None and self.order >= 3 else None)


class DEIS1(_DEIS):
    """tAB-DEIS order 1 (Zhang and Chen 2023, eq. 13 with ``r = 0``): DDIM; global order 1.

    Declares DDIM's grid, uniform in ``t`` (see :class:`~diffcore.DDIM` for the measurement).
    """

    name: ClassVar[str] = "deis_1"
    order: ClassVar[int] = 1
    grid: ClassVar[str] = "uniform"


class DEIS2(_DEIS):
    """tAB-DEIS order 2: ``eps`` linear in ``t`` through the two latest grid values; global order 2."""

    name: ClassVar[str] = "deis_2"
    order: ClassVar[int] = 2


class DEIS3(_DEIS):
    """tAB-DEIS order 3: ``eps`` quadratic in ``t`` through the three latest grid values; global order 3."""

    name: ClassVar[str] = "deis_3"
    order: ClassVar[int] = 3
