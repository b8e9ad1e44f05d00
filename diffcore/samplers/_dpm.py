r"""DPM-Solver (single-step, noise prediction) and DPM-Solver++ (multistep, data prediction).

All four integrate the probability-flow ODE exactly in its linear part and approximate only
the prediction inside the integral of :mod:`diffcore.samplers._exponential`, in
``lambda = log(alpha / sigma)``.  ``ddim`` is DPM-Solver-1 (Lu et al. 2022, eq. 3.7).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from diffcore.samplers._exponential import (
    ExponentialSolver,
    _LowerOrderFinal,
    phi,
    polynomial_weights,
    time_of,
)

__all__ = ["DPMSolver2", "DPMSolver3", "DPMSolverPP2M", "DPMSolverPP3M"]


class DPMSolver2(ExponentialSolver):
    r"""Single-step DPM-Solver-2 (Lu et al. 2022, alg. 1 with ``r_1 = 1/2``); global order 2.

    With ``h = lambda_t - lambda_s``, ``s_1 = t_lambda(lambda_s + r_1 h)`` and
    ``eps_0 = eps(x_s, s)``:

    .. math::
        u &= \frac{\alpha_{s_1}}{\alpha_s} x_s - \sigma_{s_1}(e^{r_1 h} - 1)\,\varepsilon_0, \\
        x_t &= \frac{\alpha_t}{\alpha_s} x_s - \sigma_t (e^h - 1)\,\varepsilon_0
              - \frac{\sigma_t}{2 r_1}(e^h - 1)\,\big(\varepsilon(u, s_1) - \varepsilon_0\big).

    ``s_1`` comes from the process's exact ``log_snr_inverse``; ``r_1`` is then recomputed
    from ``lambda(s_1)`` so the formula stays consistent to rounding.  Two evaluations per
    step; shapes: ``x`` is ``(n, ...)``.
    """

    name: ClassVar[str] = "dpm_solver_2"
    order: ClassVar[int] = 2
    r1: ClassVar[float] = 0.5

    @property
    def nfe_per_step(self) -> int:
        return 2

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, l0 = self._coefficients(p, t0)
        a1, s1, l1 = self._coefficients(p, t1)
        h = l1 - l0
        tm = time_of(p, l0 + self.r1 * h)
        am, sm, lm = self._coefficients(p, tm)
        r1 = (lm - l0) / h
        eps0 = self._eps(dynamics, x, t0, s0)
        u = (am / a0) * x - (sm * math.expm1(r1 * h)) * eps0
        d1 = self._eps(dynamics, u, tm, sm) - eps0
        e1 = math.expm1(h)
        return (a1 / a0) * x - (s1 * e1) * eps0 - (s1 * e1 / (2 * r1)) * d1, state


class DPMSolver3(ExponentialSolver):
    r"""Single-step DPM-Solver-3 (Lu et al. 2022, alg. 2, ``r_1 = 1/3``, ``r_2 = 2/3``); global order 3.

    .. math::
        u_1 &= \frac{\alpha_{s_1}}{\alpha_s} x_s - \sigma_{s_1}(e^{r_1 h} - 1)\varepsilon_0, \qquad
        D_1 = \varepsilon(u_1, s_1) - \varepsilon_0, \\
        u_2 &= \frac{\alpha_{s_2}}{\alpha_s} x_s - \sigma_{s_2}(e^{r_2 h} - 1)\varepsilon_0
              - \frac{\sigma_{s_2} r_2}{r_1}\Big(\frac{e^{r_2 h} - 1}{r_2 h} - 1\Big) D_1, \qquad
        D_2 = \varepsilon(u_2, s_2) - \varepsilon_0, \\
        x_t &= \frac{\alpha_t}{\alpha_s} x_s - \sigma_t (e^h - 1)\varepsilon_0
              - \frac{\sigma_t}{r_2}\Big(\frac{e^h - 1}{h} - 1\Big) D_2 .

    Three evaluations per step.  The last stage integrates ``eps`` linear in ``lambda``
    exactly (``(e^h - 1)/h - 1 = h phi_2(h)``), so it is exact when the noise prediction is
    affine in ``lambda`` and independent of ``x`` (tested).
    """

    name: ClassVar[str] = "dpm_solver_3"
    order: ClassVar[int] = 3
    r1: ClassVar[float] = 1.0 / 3.0
    r2: ClassVar[float] = 2.0 / 3.0

    @property
    def nfe_per_step(self) -> int:
        return 3

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, l0 = self._coefficients(p, t0)
        a1, s1, l1 = self._coefficients(p, t1)
        h = l1 - l0
        ta, tb = time_of(p, l0 + self.r1 * h), time_of(p, l0 + self.r2 * h)
        aa, sa, la = self._coefficients(p, ta)
        ab, sb, lb = self._coefficients(p, tb)
        r1, r2 = (la - l0) / h, (lb - l0) / h
        eps0 = self._eps(dynamics, x, t0, s0)
        u1 = (aa / a0) * x - (sa * math.expm1(r1 * h)) * eps0
        d1 = self._eps(dynamics, u1, ta, sa) - eps0
        u2 = (ab / a0) * x - (sb * math.expm1(r2 * h)) * eps0 - (sb * r2 * (r2 * h) * phi(2, r2 * h) / r1) * d1
        d2 = self._eps(dynamics, u2, tb, sb) - eps0
        return (a1 / a0) * x - (s1 * math.expm1(h)) * eps0 - (s1 * h * phi(2, h) / r2) * d2, state


class DPMSolverPP2M(_LowerOrderFinal, ExponentialSolver):
    r"""Multistep DPM-Solver++(2M) in data prediction (Lu et al. 2022b, alg. 2); global order 2.

    With ``h_i = lambda_{t_i} - lambda_{t_{i-1}}``, ``r_i = h_{i-1} / h_i`` and the data
    predictions ``m_{i-1}``, ``m_{i-2}`` at the two previous grid times:

    .. math::
        D_i = \Big(1 + \frac{1}{2 r_i}\Big) m_{i-1} - \frac{1}{2 r_i} m_{i-2}, \qquad
        x_{t_i} = \frac{\sigma_{t_i}}{\sigma_{t_{i-1}}} x_{t_{i-1}} - \alpha_{t_i}(e^{-h_i} - 1) D_i .

    One evaluation per step.  Warm-up: the first step has no ``m_{i-2}`` and is the
    first-order step ``D_1 = m_0`` (as in the paper); its local error ``O(h^2)`` is multiplied
    by ``alpha(t_1)``, tiny at the noisy end, and the global order 2 is measured.  The
    history is the solver state the driver threads between steps.  ``first_order_below``:
    see :class:`~diffcore.samplers._exponential._LowerOrderFinal`.
    """

    name: ClassVar[str] = "dpm_solver_pp_2m"
    order: ClassVar[int] = 2

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, l0 = self._coefficients(p, t0)
        a1, s1, l1 = self._coefficients(p, t1)
        h = l1 - l0
        m0 = self._x0(dynamics, x, t0, a0, s0)
        if state is None or self._first_order_here(t0, t1):
            d = m0
        else:
            l_prev, m_prev = state
            r = (l0 - l_prev) / h
            d = (1 + 0.5 / r) * m0 - (0.5 / r) * m_prev
        return (s1 / s0) * x - (a1 * math.expm1(-h)) * d, (l0, m0)


class DPMSolverPP3M(_LowerOrderFinal, ExponentialSolver):
    r"""Multistep DPM-Solver++(3M) in data prediction; global order 3.

    The third-order multistep member of Lu et al. (2022b, sec. 4 and app. B): the data
    prediction is replaced by its quadratic interpolant ``P`` in ``lambda`` through the
    three latest grid values ``m_{i-1}, m_{i-2}, m_{i-3}``, and the integral is taken
    exactly (the exponential Adams–Bashforth method, Hochbruck and Ostermann 2010, sec. 2.5):

    .. math::
        x_{t_i} = \frac{\sigma_{t_i}}{\sigma_{t_{i-1}}} x_{t_{i-1}}
                  + \alpha_{t_i} h \sum_{k=0}^{2} P^{(k)}(0)\, h^k \varphi_{k+1}(-h),

    computed as ``alpha_t h sum_j w_j m_j`` with the weights of
    :func:`~diffcore.samplers._exponential.polynomial_weights` at the nodes
    ``r_j = (lambda_j - lambda_{t_{i-1}}) / h``.  It is exact when the data prediction is a
    polynomial of degree <= 2 in ``lambda`` (tested).  (The update of the released
    implementations weights the second difference ``D_2`` by ``phi_3`` where this exact
    integral has ``2 phi_3``; the difference is an ``O(h^3)`` local term.)

    One evaluation per step.  Warm-up: step 1 is first order (local error ``O(h^2)``, which
    would cap the global order at 2); step 2 first *corrects* it — the value ``m_1`` it
    evaluates at the uncorrected ``x_{t_1}`` gives the linear interpolant of ``m_0, m_1``,
    integrated exactly over step 1 (the corrector of UniPC, Zhao et al. 2023, at no extra
    evaluation) — then integrates the linear interpolant over step 2.  From step 3 on the
    quadratic one.  The driver's path keeps the uncorrected ``x_{t_1}``.  ``first_order_below``: see
    :class:`~diffcore.samplers._exponential._LowerOrderFinal`.
    """

    name: ClassVar[str] = "dpm_solver_pp_3m"
    order: ClassVar[int] = 3

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, l0 = self._coefficients(p, t0)
        a1, s1, l1 = self._coefficients(p, t1)
        h = l1 - l0
        m0 = self._x0(dynamics, x, t0, a0, s0)
        past, start = state if state is not None else ((), None)
        if start is not None:  # warm-up: correct step 1 with the new value (no new evaluation)
            x_prev, s_prev = start
            l_prev = past[0][0]
            x = (s0 / s_prev) * x_prev + (a0 * (l0 - l_prev)) * data_integral([past[0], (l0, m0)], l_prev, l0 - l_prev)
        history = [(l0, m0), *past][: self.order]
        use = history[:1] if self._first_order_here(t0, t1) else history
        x_next = (s1 / s0) * x + (a1 * h) * data_integral(use, l0, h)
        return x_next, (tuple(history), (x, s0) if state is None else None)


def data_integral(history: list[tuple[float, Any]], l0: float, h: float) -> Any:
    """``(1/h) int_0^h e^{tau - h} P(tau) dtau`` for the interpolant ``P`` of ``(lambda_j, m_j)``."""
    nodes = [(lam - l0) / h for lam, _ in history]
    moments = [math.factorial(k) * phi(k + 1, -h) for k in range(len(nodes))]
    w = polynomial_weights(nodes, moments)
    out = float(w[0]) * history[0][1]
    for wj, (_, mj) in zip(w[1:], history[1:]):
        out = out + float(wj) * mj
    return out
