r"""An adaptive embedded Runge–Kutta solver (Dormand–Prince 5(4)) with error control."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from diffcore._array import namespace
from diffcore._validation import check_positive, check_steps
from diffcore.samplers._base import AbstractSolver
from diffcore.samplers._statistics import StepStatistics

__all__ = ["Adaptive"]


@dataclass(frozen=True)
class _State(StepStatistics):
    """Counts, the next step size (signed), and the FSAL derivative at ``(x, t)`` of the last step."""

    h: float | None = None
    t_last: float | None = None
    f_last: Any = None
    err_prev: float = 1e-4


@dataclass(frozen=True)
class Adaptive(AbstractSolver):
    r"""Dormand–Prince 5(4) with FSAL and a PI step-size controller, between the driver's grid times.

    The grid times are *output* times: each driver step from ``t_0`` to ``t_1`` takes as many
    internal steps as the tolerances demand, never stepping past ``t_1``.  One internal step of
    size ``h`` computes the stages ``k_i = b(x + h sum_j a_ij k_j, t + c_i h)`` of the tableau
    below (Dormand and Prince 1980; Hairer, Nørsett and Wanner 1993, sec. II.4–II.5, table 5.2),
    advances with the fifth-order weights ``b`` and estimates the local error with
    ``h sum_i e_i k_i``, ``e = b - b_hat`` (``b_hat`` the embedded fourth-order weights).  The
    last stage is evaluated at the new state (first same as last), so an accepted step costs six
    evaluations.  The error norm (Hairer et al. 1993, eq. II.4.11) is

    .. math:: \mathrm{err} = \max_{\text{points}} \Big(\frac{1}{d}\sum_{i=1}^{d}
              \Big(\frac{\hat e_i}{\mathrm{atol} + \mathrm{rtol}\max(|x_i|, |x'_i|)}\Big)^2\Big)^{1/2},

    the root mean square over each point's ``d`` coordinates and the worst point of the batch,
    so every point meets the tolerance.  A step is accepted when ``err <= 1``; the next step
    size is ``h * min(max_factor, max(min_factor, safety err^{-0.17} err_prev^{0.04}))`` (the PI
    controller of Hairer and Wanner's DOPRI5, II.4 "Stabilized step size control"), and after a
    rejection ``h * max(min_factor, safety err^{-1/5})``.  The first step size is Hairer's
    estimate ``0.01 ||x|| / ||b(x)||`` (II.4, without its second evaluation).

    The step-size choice reads the error norm on the host: one synchronisation per internal
    step, inherent to error control.

    ``Solution.nfe`` is the true number of evaluations, rejected trials included;
    ``Solution.accepted_steps`` and ``Solution.rejected_steps`` count the internal steps.
    There is no convergence order in the number of grid steps (``order`` = 5 is the order of
    the propagated solution); the error is controlled by ``rtol`` and ``atol``, so the solver
    is not in :data:`~diffcore.SOLVERS`, whose members are tested for a measured order.

    Raises
    ------
    FloatingPointError
        when the step size falls below the resolution of the time (an ODE too stiff or singular
        for an explicit method at these tolerances, or a state that blows up), when the drift is
        not finite at an accepted state, or after ``max_steps`` internal steps in one grid
        interval; the message gives the time, the step size and the last error norm.

    Parameters
    ----------
    rtol, atol : relative and absolute tolerances, ``> 0``.
    safety : safety factor in ``(0, 1)``.
    min_factor, max_factor : bounds on the step-size ratio, ``0 < min_factor < 1 < max_factor``.
    max_steps : internal steps allowed per grid interval.
    """

    rtol: float = 1e-6
    atol: float = 1e-6
    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 10.0
    max_steps: int = 100_000

    name: ClassVar[str] = "adaptive"
    order: ClassVar[int] = 5
    #: the step sizes follow an error norm over the whole batch: not an affine map of the state
    affine_step: ClassVar[bool] = False

    #: nodes, stage matrix, fifth-order weights and error weights ``b - b_hat`` (Hairer et al. table II.5.2)
    C: ClassVar[tuple[float, ...]] = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
    A: ClassVar[tuple[tuple[float, ...], ...]] = (
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    )
    B: ClassVar[tuple[float, ...]] = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
    E: ClassVar[tuple[float, ...]] = (
        71 / 57600,
        0.0,
        -71 / 16695,
        71 / 1920,
        -17253 / 339200,
        22 / 525,
        -1 / 40,
    )

    def __post_init__(self) -> None:
        check_positive("rtol", self.rtol)
        check_positive("atol", self.atol)
        check_positive("safety", self.safety)
        if not self.safety < 1:
            raise ValueError(f"safety must lie in (0, 1); got {self.safety!r}")
        check_positive("min_factor", self.min_factor)
        check_positive("max_factor", self.max_factor)
        if not self.min_factor < 1 < self.max_factor:
            raise ValueError(
                f"need 0 < min_factor < 1 < max_factor; got min_factor={self.min_factor}, max_factor={self.max_factor}"
            )
        check_steps(self.max_steps, "max_steps")

    @property
    def nfe_per_step(self) -> int:
        """Evaluations of one accepted internal step (FSAL); the driver reports the true total."""
        return 6

    def _norm(self, xp: Any, e: Any, x0: Any, x1: Any) -> float:
        scale = self.atol + self.rtol * xp.maximum(xp.abs(x0), xp.abs(x1))
        r = xp.reshape(e / scale, (e.shape[0], -1))
        with np.errstate(over="ignore", invalid="ignore"):
            return float(xp.max(xp.sqrt(xp.mean(r * r, axis=1))))

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        xp = namespace(x)
        st = state if isinstance(state, _State) else _State()
        accepted, rejected = st.accepted, st.rejected
        direction = 1.0 if t1 > t0 else -1.0
        span = abs(t1 - t0)
        if st.f_last is not None and st.t_last == t0:
            f0 = st.f_last
        else:
            f0 = dynamics.drift(x, t0)
        if st.h is None:
            zero = xp.zeros_like(x)
            d0, d1 = self._norm(xp, x, x, zero), self._norm(xp, f0, x, zero)
            h = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        else:
            h = abs(st.h)
        h = min(h, span)
        err_prev, t, taken, last_rejected = st.err_prev, t0, 0, False
        h_min = 10.0 * float(np.spacing(max(abs(t0), abs(t1), span)))
        while True:
            self._check_finite_drift(xp, f0, t, h, t0, t1)
            if h < h_min:
                raise FloatingPointError(
                    f"{self.name}: step size underflow at t = {t!r} (integrating {t0} -> {t1}): |h| = {h:.3g} is "
                    f"below the time resolution {h_min:.3g}; last error norm {err_prev:.3g} (accepted when <= 1) "
                    f"after {rejected - st.rejected} rejections in this interval. The ODE is too stiff or singular "
                    f"here for an explicit method at rtol={self.rtol}, atol={self.atol} (or its solution blows up): "
                    "stop at a larger t_min, relax the tolerances, or check the model"
                )
            if taken >= self.max_steps:
                raise FloatingPointError(
                    f"{self.name}: more than max_steps={self.max_steps} internal steps in the grid interval "
                    f"{t0} -> {t1}; reached t = {t!r} with |h| = {h:.3g}"
                )
            last = h >= abs(t1 - t)
            h_signed = (t1 - t) if last else direction * h
            x_new, f_new, e = self._trial(dynamics, x, f0, t, h_signed, t1 if last else t + h_signed)
            taken += 1
            err = self._norm(xp, e, x, x_new)
            if math.isfinite(err) and err <= 1.0:
                accepted += 1
                x, f0, t = x_new, f_new, (t1 if last else t + h_signed)
                factor = self.safety * max(err, 1e-10) ** -0.17 * err_prev**0.04
                factor = min(self.max_factor, max(self.min_factor, factor))
                if last_rejected:
                    factor = min(factor, 1.0)
                h_next = abs(h_signed) * factor if not last else max(h, abs(h_signed) * factor)
                err_prev, last_rejected = max(err, 1e-4), False
                if last:
                    self._check_finite_drift(xp, f0, t, h_next, t0, t1)
                    return x, _State(accepted, rejected, h_next, t, f0, err_prev)
                h = h_next
            else:
                rejected += 1
                last_rejected = True
                factor = self.min_factor if not math.isfinite(err) else max(self.min_factor, self.safety * err**-0.2)
                err_prev = err if math.isfinite(err) else math.inf
                h = abs(h_signed) * factor

    def _trial(self, dynamics, x, f0, t, h, t_end) -> tuple[Any, Any, Any]:
        """One Dormand–Prince step: the new state, the drift there (FSAL stage) and the error estimate."""
        ks = [f0]
        for i in range(1, 7):
            xi = x
            for a, k in zip(self.A[i], ks, strict=False):
                if a != 0.0:
                    xi = xi + (h * a) * k
            ti = t_end if self.C[i] == 1.0 else t + self.C[i] * h
            if i == 6:
                x_new = xi
            ks.append(dynamics.drift(xi, ti))
        err = ks[0] * (h * self.E[0])
        for e, k in zip(self.E[1:], ks[1:], strict=True):
            if e != 0.0:
                err = err + (h * e) * k
        return x_new, ks[6], err

    def _check_finite_drift(self, xp, f, t, h, t0, t1) -> None:
        if not bool(xp.all(xp.isfinite(f))):
            raise FloatingPointError(
                f"{self.name}: the drift is not finite at the accepted state at t = {t!r} (integrating {t0} -> {t1}, "
                f"next |h| = {h:.3g}): the score returned NaN or infinity, or the state has blown up"
            )
