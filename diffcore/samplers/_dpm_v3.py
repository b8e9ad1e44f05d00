r"""DPM-Solver-v3: the multistep predictor-corrector on the EMS-reparametrised ODE.

Zheng, Lu, Chen and Zhu (2023), "DPM-Solver-v3: Improved Diffusion ODE Solver with Empirical
Model Statistics" (NeurIPS 2023, arXiv:2310.13268), sec. 3.1 (eqs. 6–7), sec. 3.3 (the local
approximation of order ``n + 1``, eq. 8) and sec. 3.4 (multistep predictor-corrector).  With the
statistics ``l``, ``s``, ``b`` of :mod:`diffcore.samplers._ems` (conventions there: zeros are the
data prediction), ``L = int l``, ``S = int s``, ``B = int e^{-S} b`` and a step ``s -> t`` in
``lambda = log(alpha / sigma)``, the probability-flow ODE integrates exactly to

.. math::
    x_t = \frac{\sigma_t}{\sigma_s} e^{-(L_t - L_s)} x_s
        + \alpha_t \int_{\lambda_s}^{\lambda_t} e^{(\lambda - \lambda_t) + (L_\lambda - L_t) + (S_\lambda - S_s)}
          \Big( g(\lambda) + e^{S_s}\,(B_\lambda - B_{\lambda_s}) \Big)\, d\lambda,

with ``g(lambda) = e^{-(S_lambda - S_s)} F(x_lambda, lambda) - e^{S_s} (B_lambda - B_s)`` and
``F = D + (l / alpha) x`` (``D`` the data prediction).  The EMS make ``g`` nearly constant; the
solver replaces it by its Lagrange interpolant through the ``p`` latest grid values (the
predictor, order ``p``) and integrates that exactly (Gauss–Legendre on the smooth pieces of the
cubic-spline statistics, to rounding).  This is the paper's eq. 8 written in the Lagrange basis
(the paper's Taylor form with the derivatives from the same interpolant is the same polynomial).

The corrector (``corrector=True``, the paper's default) re-integrates the step just taken once the
model has been evaluated at its end, with the interpolant through the new value and the ``p - 1``
before it (same order, smaller error constant; the paper's non-pseudo corrector), at no extra
evaluation: as in UniPC, step ``i`` evaluates the model at the predicted ``x~_{t_i}``, corrects
``x~_{t_i}`` into ``x^c_{t_i}`` (keeping ``F`` at the evaluated point, as the paper's code keeps the
non-linear part), and predicts ``t_{i+1}`` from ``x^c``.  The returned path is the predictions;
the last is not corrected.  Warm-up: the first steps use the values available.

With ``statistics=None`` (the default, what ``get_solver("dpm_solver_v3")`` gives) the statistics
are ``l = s = b = 0``: the solver is then DPM-Solver++ multistep of order ``p`` in its exact-integral
form (Lu et al. 2022b, app. B; the integral of :class:`~diffcore.samplers.DPMSolverPP3M`) with the
paper's corrector.  The EMS are model- and data-specific: compute them with
:func:`~diffcore.samplers._ems.model_statistics` (a trained model and data samples) or
:func:`~diffcore.samplers._ems.exact_model_statistics` (laboratory data) and pass
``get_solver("dpm_solver_v3", statistics=ems)`` or ``sample(..., method="dpm_solver_v3",
statistics=ems)``.

Not implemented: the paper's "pseudo-order" predictor (divided differences in place of the
interpolant) and pseudo-order corrector (one more node), and its half-corrector option.
"""

from __future__ import annotations

from typing import Any, ClassVar

from diffcore._array import as_array
from diffcore.samplers._ems import ZERO, EmpiricalModelStatistics, step_coefficients
from diffcore.samplers._exponential import ExponentialSolver, _LowerOrderFinal

__all__ = ["DPMSolverV3"]


class DPMSolverV3(_LowerOrderFinal, ExponentialSolver):
    r"""DPM-Solver-v3 (Zheng et al. 2023): multistep predictor(-corrector) with empirical model statistics.

    Parameters
    ----------
    statistics : :class:`~diffcore.EmpiricalModelStatistics` or ``None`` (``l = s = b = 0``, i.e.
        DPM-Solver++ multistep with the v3 corrector).  Their ``shape`` must be the shape of one point
        and their ``lambda`` range must cover every step (else ``ValueError``).
    order : 1, 2 or 3 (default 3, the paper's choice at few steps): the predictor's order ``p``, the
        number of grid values its interpolant uses; the declared global order.
    corrector : bool, default ``True``: the paper's multistep corrector (module docstring).
    first_order_below : see :class:`~diffcore.samplers._exponential._LowerOrderFinal`.

    One evaluation per step; grid ``log_snr``; shapes: ``x`` is ``(n, *shape)``.  Formulas: module
    docstring of :mod:`diffcore.samplers._dpm_v3`.
    """

    name: ClassVar[str] = "dpm_solver_v3"
    order: ClassVar[int] = 3

    def __init__(
        self,
        *,
        statistics: EmpiricalModelStatistics | None = None,
        order: int = 3,
        corrector: bool = True,
        first_order_below: float = 0.0,
    ) -> None:
        super().__init__(first_order_below=first_order_below)
        if statistics is not None and not isinstance(statistics, EmpiricalModelStatistics):
            raise TypeError(f"statistics must be an EmpiricalModelStatistics or None; got {type(statistics).__name__}")
        if isinstance(order, bool) or order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3; got {order!r}")
        if not isinstance(corrector, bool):
            raise TypeError(f"corrector must be a bool; got {type(corrector).__name__}")
        self.statistics = statistics
        self.order = int(order)  # type: ignore[misc]  # an instance may narrow the class's declared order
        self.corrector = corrector

    def _stats(self, x: Any) -> Any:
        if self.statistics is None:
            return ZERO
        shape = tuple(x.shape[1:])
        if self.statistics.shape != shape:
            raise ValueError(
                f"{self.name}: the statistics are for points of shape {self.statistics.shape}; got {shape}"
            )
        return self.statistics

    def _coef(self, value: Any, x: Any) -> Any:
        """A per-coordinate coefficient as an array broadcasting against ``x`` (a float for zero statistics)."""
        if self.statistics is None:
            return float(value.reshape(-1)[0])
        return as_array(value.reshape(tuple(x.shape[1:])), x)

    def _update(self, stats, x_s, lam_s, sig_s, lam_t, a_t, sig_t, nodes) -> Any:
        """``x_t`` from ``x_s`` with the interpolant of ``g`` through ``nodes = [(lambda_j, F_j)]``."""
        stats.check_covers(lam_s, lam_t, self.name)
        c = step_coefficients(stats, lam_s, lam_t, [lam for lam, _ in nodes])
        out = (sig_t / sig_s) * self._coef(c["cx"], x_s) * x_s + a_t * self._coef(c["bterm"], x_s)
        for j, (_, f_j) in enumerate(nodes):
            g_j = self._coef(c["gscale"][j], x_s) * f_j - self._coef(c["gshift"][j], x_s)
            out = out + (a_t * self._coef(c["w"][j], x_s)) * g_j
        return out

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        stats = self._stats(x)
        a0, s0, l0 = self._coefficients(p, t0)
        a1, s1, l1 = self._coefficients(p, t1)
        stats.check_covers(l0, l0, self.name)
        l_vec = self._coef(stats.functions(_array1(l0))[0][0], x)
        f_new = self._x0(dynamics, x, t0, a0, s0) + (l_vec / a0) * x
        keep = self.order
        if state is None:
            x_c, history = x, [(l0, f_new)]
        else:
            x_s, s_s, history = state
            if self.corrector:
                nodes = [(l0, f_new), *history[: keep - 1]]
                x_c = self._update(stats, x_s, history[0][0], s_s, l0, a0, s0, nodes)
            else:
                x_c = x
            history = [(l0, f_new), *history][:keep]
        use = history[:1] if self._first_order_here(t0, t1) else history
        return self._update(stats, x_c, l0, s0, l1, a1, s1, use), (x_c, s0, tuple(history))

    def __repr__(self) -> str:
        parts = [f"order={self.order}", f"corrector={self.corrector}"]
        parts.append("statistics=None" if self.statistics is None else f"statistics=<{self.statistics.source}>")
        if self.first_order_below:
            parts.append(f"first_order_below={self.first_order_below}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _array1(value: float) -> Any:
    import numpy as np

    return np.array([value], dtype=np.float64)
