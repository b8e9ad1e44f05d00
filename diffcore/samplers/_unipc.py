r"""UniPC: the unified predictor (UniP) and corrector (UniC) in data prediction.

Zhao, Bai, Rao, Zhou and Lu (2023), "UniPC: A Unified Predictor-Corrector Framework for
Fast Sampling of Diffusion Models", eqs. 7–8 and algs. 1–3 (the data-prediction variant,
written for ``x0``), with both of the paper's choices of ``B(h)`` (the released
code's ``variant``): "bh2" ``B(h) = 1 - e^{-h}`` (``unipc_2``, ``unipc_3``) and "bh1"
``B(h) = h`` (``unipc_2_bh1``, ``unipc_3_bh1``).  Over ``s -> t`` with ``h = lambda_t - lambda_s``,
data predictions ``m_0`` at ``s`` and ``m_j`` at earlier (or, for the corrector, the new)
nodes ``r_j = (lambda_j - lambda_s) / h``, ``D_j = m_j - m_0``:

.. math::
    x_t = \frac{\sigma_t}{\sigma_s} x_s + \alpha_t (1 - e^{-h})\, m_0
          + \alpha_t B(h) \sum_{j=1}^{K} a_j \frac{D_j}{r_j},
    \qquad B(h) = 1 - e^{-h} \ \text{(bh2)} \quad \text{or} \quad B(h) = h \ \text{(bh1)},

with ``a`` solving the order conditions ``sum_j a_j r_j^{k-1} = k! h phi_{k+1}(-h) / B(h)``,
``k = 1..K``.  For ``K = 1`` the paper sets ``a_1 = 1/2`` (the ``h -> 0`` limit of the
condition; then the ``K = 1`` predictor is DPM-Solver++(2M) exactly); for ``K >= 2`` the
``K x K`` system is solved, and ``B(h)`` cancels.  So the two variants differ only where
``K = 1``: in every step of UniC-1 (``unipc_2*``) and UniP-2 (the predictor of ``unipc_3*``),
and in the first correction of ``unipc_3*``; there the difference ``alpha_t (B_1 - B_2) D_1 / 2``
is ``O(h^2) D_1 = O(h^3)``, a local term of the order of the method's own error, so both
variants have the same global order.  The paper recommends bh1 for unconditional sampling at
very few steps and bh2 with guidance.  Measured here (RMS pathwise error, VP, log-SNR grid, exact
score): bh1 helps ``unipc_2`` (P2 at 10 steps 0.52 against 0.82) and hurts ``unipc_3`` (P2 at 5
steps 5.0 against 0.11, P1 3.1 against 0.68): at ``h ~ 2`` its ``K = 1`` predictor weighs the
extrapolation ``h / (1 - e^{-h}) ~ 2.3`` times as much as bh2 does.  The predictor UniP-p uses ``K = p - 1``
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

from diffcore._validation import check_choice
from diffcore.samplers._exponential import ExponentialSolver, _LowerOrderFinal, phi

__all__ = ["VARIANTS", "UniPC2", "UniPC2BH1", "UniPC3", "UniPC3BH1", "b_of_h", "unipc_coefficients"]

#: the choices of ``B(h)`` (Zhao et al. 2023): "bh1" ``B(h) = h``, "bh2" ``B(h) = 1 - e^{-h}``
VARIANTS = ("bh1", "bh2")


def b_of_h(h: float, variant: str = "bh2") -> float:
    """``B(h)``: ``h`` for "bh1", ``1 - e^{-h}`` for "bh2"; both ``h + O(h^2)``."""
    check_choice("variant", variant, VARIANTS)
    return h if variant == "bh1" else -math.expm1(-h)


def unipc_coefficients(nodes: list[float], h: float, variant: str = "bh2") -> np.ndarray:
    """The ``a_j`` of the order conditions at ``nodes`` (``r_j != 0``) for ``B(h)`` of ``variant``."""
    b_h = b_of_h(h, variant)
    k = len(nodes)
    if k == 1:
        return np.array([0.5])
    rhs = [math.factorial(i) * h * phi(i + 1, -h) / b_h for i in range(1, k + 1)]
    r = np.asarray(nodes, dtype=np.float64)
    mat = r[None, :] ** np.arange(k)[:, None]
    return np.linalg.solve(mat, np.asarray(rhs))


class _UniPC(_LowerOrderFinal, ExponentialSolver):
    """UniP-(order-1) with UniC-(order-1); see the module docstring."""

    #: the choice of ``B(h)``, one of :data:`VARIANTS`
    variant: ClassVar[str] = "bh2"

    def _update(self, x, m0, others, l0, s0, a1, s1, l1) -> Any:
        """The UniP/UniC update from ``(x, m0)`` at ``lambda = l0`` with nodes ``others = [(lam, m)]``."""
        h = l1 - l0
        out = (s1 / s0) * x + (-a1 * math.expm1(-h)) * m0
        if others:
            b_h = b_of_h(h, self.variant)
            nodes = [(lam - l0) / h for lam, _ in others]
            for aj, rj, (_, mj) in zip(unipc_coefficients(nodes, h, self.variant), nodes, others):
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
    """UniPC of global order 2: the DDIM (data-prediction) predictor, the UniC-1 corrector, ``B(h) = 1 - e^{-h}``."""

    name: ClassVar[str] = "unipc_2"
    order: ClassVar[int] = 2


class UniPC3(_UniPC):
    """UniPC of global order 3: UniP-2 (= DPM-Solver++(2M)) with the UniC-2 corrector; ``B(h) = 1 - e^{-h}``."""

    name: ClassVar[str] = "unipc_3"
    order: ClassVar[int] = 3


class UniPC2BH1(UniPC2):
    """:class:`UniPC2` with ``B(h) = h`` (bh1): the UniC-1 correction weighs ``D_1`` by ``h / 2``; global order 2."""

    name: ClassVar[str] = "unipc_2_bh1"
    variant: ClassVar[str] = "bh1"


class UniPC3BH1(UniPC3):
    """:class:`UniPC3` with ``B(h) = h`` (bh1): the UniP-2 predictor is no longer DPM-Solver++(2M); global order 3."""

    name: ClassVar[str] = "unipc_3_bh1"
    variant: ClassVar[str] = "bh1"
