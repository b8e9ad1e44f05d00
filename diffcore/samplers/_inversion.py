"""Inversion: map data to noise along the probability-flow ODE (DDIM inversion and BDIA's exact inverse)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._validation import check_array, check_finite
from diffcore.dynamics import ProbabilityFlowODE
from diffcore.processes import AbstractProcess
from diffcore.samplers._base import AbstractSolver
from diffcore.samplers._bdia import BDIA, ddim_increment
from diffcore.samplers._ddim import DDIM
from diffcore.samplers._driver import integrate
from diffcore.samplers._grids import time_grid
from diffcore.samplers._registry import get_solver

__all__ = ["Inversion", "invert"]

Array = Any


@dataclass(frozen=True, eq=False)
class Inversion:
    """The result of :func:`invert`.

    Attributes
    ----------
    x : the noise at ``t_max``, shape ``(n, ...)``, with ``x0``'s array type, dtype and device.
    ts : the sampling grid (decreasing, NumPy float64 of shape ``(steps + 1,)``); the inversion ran
        it backwards.
    nfe : score evaluations spent.
    solver : the sampler that undoes the inversion: ``sample(process, score, inv.x, method=inv.solver,
        steps=steps, t_min=t_min)`` (same steps, ``t_min``, ``t_max`` and grid) maps ``x`` back to ``x0``.
    """

    x: Any
    ts: np.ndarray
    nfe: int
    solver: AbstractSolver


def invert(
    process: AbstractProcess,
    score: Callable[[Array, Any], Array],
    x0: Array,
    *,
    method: Any,
    steps: int,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    grid: str | None = None,
) -> Inversion:
    r"""Map data ``x0`` (at ``t_min``) to noise (at ``t_max``) for editing or reconstruction.

    * ``method="ddim"``: DDIM inversion (Song et al. 2021, sec. 4.3; Dhariwal and Nichol 2021):
      DDIM run on the increasing grid.  Each step evaluates the score at the start of the step,
      the sampling step at its other end, so sampling back from the result recovers ``x0`` only
      up to the ODE's discretisation error, ``O(h)`` globally (measured in the tests).
    * ``method="bdia"`` (or a :class:`BDIA` with ``gamma < 1``): the exact inverse of BDIA
      sampling (Zhang et al. 2023, sec. 4).  With sampling states ``y_0 (t_max), ..., y_N = x0``:
      ``y_{N-1}`` is a DDIM inversion step from ``x0``, then :meth:`BDIA.unstep` solves each BDIA
      step for ``y_{k-1}`` given ``y_k, y_{k+1}``, down to ``y_0``.  A two-step method needs two
      starting states, so the returned solver carries ``y_1`` (``x_first``); sampling from ``y_0``
      with it reproduces ``y_1, ..., y_N = x0`` to rounding error (measured ~1e-14 for the
      default ``gamma = 0``; for ``gamma > 0`` rounding grows like ``(1 - gamma)^-N``, see
      :class:`BDIA`).

    Parameters
    ----------
    x0 : array ``(n, ...)``, finite.
    method : ``"ddim"``, ``"bdia"`` or a :class:`BDIA` object.
    steps, t_min, t_max, grid : the sampling grid, as in :func:`~diffcore.sample` (``grid=None``:
        the method's declared grid, ``"log_snr"`` for both).

    Returns
    -------
    :class:`Inversion`; ``nfe == steps`` for both methods.
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    solver = get_solver(method)
    if not isinstance(solver, (DDIM, BDIA)):
        raise ValueError(f"invert supports method 'ddim' or 'bdia' (or a BDIA object); got {solver.name!r}")
    x0 = check_array("x0", x0)
    ts = time_grid(process, steps, t_min=t_min, t_max=t_max, kind=solver.grid if grid is None else grid)
    ode = ProbabilityFlowODE(process, score)
    if isinstance(solver, DDIM):
        sol = integrate(ode, x0, ts[::-1].copy(), solver)
        return Inversion(x=sol.x, ts=ts, nfe=sol.nfe, solver=DDIM())
    if solver.gamma == 1.0:
        raise ValueError("bdia with gamma = 1 is DDIM, which cannot be inverted exactly; use gamma in [0, 1)")
    grid_ = [float(t) for t in ts]
    n = len(grid_) - 1
    # y[k] lives at grid_[k]; y_N = x0, y_{N-1} by one DDIM inversion step
    eps = -process.sigma(grid_[n]) * ode.score(x0, grid_[n])  # the checked model
    y_next, y = x0, x0 + ddim_increment(process, x0, eps, grid_[n], grid_[n - 1])
    for k in range(n - 1, 0, -1):
        y_next, y = y, solver.unstep(ode, y_next, y, grid_[k + 1], grid_[k], grid_[k - 1])
    check_finite("the inverted state", y)
    undo = BDIA(gamma=solver.gamma, x_first=y_next, t_first=grid_[1])
    return Inversion(x=y, ts=ts, nfe=n, solver=undo)
