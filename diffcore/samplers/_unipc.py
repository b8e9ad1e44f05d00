r"""UniPC: the unified predictor (UniP) and corrector (UniC) in data prediction.

Zhao, Bai, Rao, Zhou and Lu (2023), "UniPC: A Unified Predictor-Corrector Framework for
Fast Sampling of Diffusion Models", eqs. 7–8 and algs. 1–3 (the data-prediction variant,
their ``B(h)`` "bh2" written for ``x0``).  Over ``s -> t`` with ``h = lambda_t - lambda_s``,
data predictions ``m_0`` at ``s`` and ``m_j`` at earlier (or, for the corrector, the new)
nodes ``r_j = (lambda_j - lambda_s) / h``, ``D_j = m_j - m_0``:

.. math::
    x_t = \frac{\sigma_t}{\sigma_s} x_s + \alpha_t (1 - e^{-h})\, m_0
          + \alpha_t B(h) \sum_{j=1}^{K} a_j \frac{D_j}{r_j},
    \qquad B(h) = 1 - e^{-h},

with ``a`` solving the order conditions ``sum_j a_j r_j^{k-1} = k! h phi_{k+1}(-h) / B(h)``,
``k = 1..K``.  For ``K = 1`` the paper sets ``a_1 = 1/2`` (the ``h -> 0`` limit of the
condition; then the ``K = 1`` predictor is DPM-Solver++(2M) exactly); for ``K >= 2`` the
``K x K`` system is solved, and ``B(h)`` cancels.  The predictor UniP-p uses ``K = p - 1``
past nodes (order ``p``); the corrector UniC-p adds the node ``r = 1`` of the new value
``m_t = x0(x~_t, t)`` (order ``p + 1``).

``unipc_k`` is named by its global order ``k``: UniP-(k-1) with UniC-(k-1).  The paper's
"UniPC-p", the ``order`` of the released code and diffusers' ``solver_order`` count the
predictor's order ``p = k - 1`` instead: their UniPC of order 2 is ``unipc_3`` here (predictor
DPM-Solver++(2M)), and ``unipc_2`` is their order 1 (predictor DDIM, in data prediction).

Each step makes **one** evaluation, at the predicted point: step ``i`` evaluates
``m_{i} = x0(x~_{t_i}, t_i)``, uses it to correct ``x~_{t_i}`` into ``x^c_{t_i}``,
then predicts ``x~_{t_{i+1}}`` from ``x^c_{t_i}`` with the same ``m_i`` (so the corrector
costs no evaluation).  The state passed between steps carries ``x^c`` of the previous node
and the history; the returned ``x`` is the predicted point, and the final output is the last
prediction, uncorrected (as in the paper: correcting it would take one more evaluation).
That last step has the local error of UniP-(k-1), ``O(h^k)``; a single such step leaves the
global order ``k``.
Warm-up: the first steps use the nodes available.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from diffcore.samplers._exponential import ExponentialSolver, _LowerOrderFinal, phi

__all__ = ["UniPC2", "UniPC3", "unipc_coefficients"]


def unipc_coefficients(nodes: list[float], h: float) -> np.ndarray:
    """The ``a_j`` of the order conditions at ``nodes`` (``r_j != 0``), ``B(h) = 1 - e^{-h}``."""
    k = len(nodes)
    if k == 1:
        return np.array([0.5])
    b_h = -math.expm1(-h)
    rhs = [math.factorial(i) * h * phi(i + 1, -h) / b_h for i in range(1, k + 1)]
    r = np.asarray(nodes, dtype=np.float64)
    mat = r[None, :] ** np.arange(k)[:, None]
    return np.linalg.solve(mat, np.asarray(rhs))


class _UniPC(_LowerOrderFinal, ExponentialSolver):
    """UniP-(order-1) with UniC-(order-1); see the module docstring."""

    def _update(self, x, m0, others, l0, s0, a1, s1, l1) -> Any:
        """The UniP/UniC update from ``(x, m0)`` at ``lambda = l0`` with nodes ``others = [(lam, m)]``."""
        h = l1 - l0
        b_h = -math.expm1(-h)
        out = (s1 / s0) * x + (a1 * b_h) * m0
        if others:
            nodes = [(lam - l0) / h for lam, _ in others]
            for aj, rj, (_, mj) in zip(unipc_coefficients(nodes, h), nodes, others):
                out = out + (a1 * b_h * float(aj) / rj) * (mj - m0)
        return out

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, l0 = self._coefficients(p, t0)
        a1, s1, l1 = self._coefficients(p, t1)
        m_new = self._x0(dynamics, x, t0, a0, s0)
        keep = self.order - 1  # past values each formula uses besides m_0
        if state is None:
            x_c, history = x, [(l0, m_new)]
        else:  # UniC: correct the previous step s -> t0 with the new value at r = 1
            x_s, s_s, history = state
            (l_s, m_s), past = history[0], list(history[1:keep])
            x_c = self._update(x_s, m_s, [(l0, m_new), *past], l_s, s_s, a0, s0, l0)
            history = [(l0, m_new), *history][:keep]
        past = [] if self._first_order_here(t0, t1) else history[1:keep]
        x_pred = self._update(x_c, m_new, past, l0, s0, a1, s1, l1)
        return x_pred, (x_c, s0, tuple(history))


class UniPC2(_UniPC):
    """UniPC of global order 2: the DDIM (data-prediction) predictor with the UniC-1 corrector."""

    name: ClassVar[str] = "unipc_2"
    order: ClassVar[int] = 2


class UniPC3(_UniPC):
    """UniPC of global order 3: the UniP-2 predictor (= DPM-Solver++(2M)) with the UniC-2 corrector."""

    name: ClassVar[str] = "unipc_3"
    order: ClassVar[int] = 3
