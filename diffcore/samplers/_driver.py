"""The one driver that owns the time loop: ``integrate``, and the convenience ``sample``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import is_numpy_array

from diffcore._array import namespace, normal, resolve_rng
from diffcore._validation import (
    Counter,
    check_array,
    check_choice,
    check_grid,
    check_progress,
    check_steps,
    progress_bar,
)
from diffcore.dynamics import AbstractDynamics, ProbabilityFlowODE, ReverseSDE
from diffcore.processes import AbstractProcess
from diffcore.samplers._base import AbstractSolver
from diffcore.samplers._grids import GRIDS, time_grid
from diffcore.samplers._registry import get_solver
from diffcore.samplers._statistics import StepStatistics

__all__ = ["Solution", "integrate", "sample", "steps_for_budget"]

Array = Any


@dataclass(frozen=True, eq=False)
class Solution:
    """The result of :func:`integrate`.

    Attributes
    ----------
    x : the final state, shape ``(n, ...)``, with ``x_init``'s array type, dtype and device.
    ts : the time grid, NumPy float64 of shape ``(steps + 1,)``.
    nfe : the number of model evaluations, counted by the driver as the calls of the dynamics'
        model (the same way for every solver; for adaptive solvers rejected trial steps included).
    solver : the solver object used; ``None`` for methods that do not run a solver of
        :data:`~diffcore.SOLVERS` (the optimisation and particle methods of :mod:`diffcore.conditional`).
    path : the states at every grid time, shape ``(steps + 1, n, ...)``, or ``None``.
    log_density : for density-tracking integrators (:func:`diffcore.ito_log_density`,
        :func:`diffcore.superpose`) the estimate of ``log p`` at ``x``, shape ``(n,)``; else ``None``.
    log_density_path : those estimates at every grid time, shape ``(steps + 1, n)``, when the
        path is saved; else ``None``.
    model_log_densities : for :func:`diffcore.superpose`, the estimate of each model's
        ``log p^i`` at ``x``, shape ``(n, M)``; else ``None``.
    accepted_steps : steps taken by :func:`integrate`: the grid steps, or for an adaptive solver
        its accepted internal steps; ``None`` for results not made by :func:`integrate`.
    rejected_steps : trial steps an adaptive solver rejected (0 for fixed-step solvers).
    """

    x: Any
    ts: np.ndarray
    nfe: int
    solver: AbstractSolver | None
    path: Any = None
    log_density: Any = None
    log_density_path: Any = None
    model_log_densities: Any = None
    accepted_steps: int | None = None
    rejected_steps: int | None = None


def _raise_non_finite(solver: AbstractSolver, i: int, grid: list[float]) -> None:
    raise FloatingPointError(
        f"{solver.name}: non-finite state after step {i + 1} of {len(grid) - 1} (t = {grid[i]} -> {grid[i + 1]})"
    )


def _check_step(xp: Any, x: Array, solver: AbstractSolver, i: int, grid: list[float]) -> None:
    """NumPy: raise at once if step ``i`` left a non-finite state (the host owns the data)."""
    # a sum carries NaN and infinity through (one cheap reduction); only if it is not finite,
    # which a huge but finite state can also cause, look at every entry
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in the sum is the point
        suspect = not bool(xp.isfinite(xp.sum(x)))
    if suspect and not bool(xp.all(xp.isfinite(x))):
        _raise_non_finite(solver, i, grid)


def _finite_probes(xp: Any, x: Array) -> tuple[Array, ...]:
    """0-d device values that are all finite exactly when every entry of ``x`` is: no copy of ``x``.

    float64 states: ``sum(x)``, which carries NaN and infinity (also ``inf - inf``) and overflows
    only for entries beyond ~1e300 / n (reported as non-finite too).  float32 and half states:
    ``max(x)`` and ``min(x)``: NaN propagates through both (array API), ``+inf`` is the max and
    ``-inf`` the min, and neither can overflow, so a huge but finite state is never reported as
    non-finite.  A float32 sum could overflow there, and a sum widened to float64 first converts
    every entry, five times the cost of the two reductions at 10^4 x 64 points.  ``isfinite``
    runs once, on all the steps' probes stacked, after the loop.  This costs a small fraction of
    ``all(isfinite(x))``, which writes a boolean array as large as ``x``.
    """
    if x.dtype == xp.float64:
        return (xp.sum(x),)
    return xp.max(x), xp.min(x)


def _check_steps(xp: Any, probes: list[Array], solver: AbstractSolver, grid: list[float]) -> None:
    """Device arrays: one host synchronisation after the loop; raise naming the first failing step.

    ``probes`` holds the same number of values for every step, in step order.
    """
    ok = xp.all(xp.reshape(xp.isfinite(xp.stack(probes)), (len(grid) - 1, -1)), axis=1)
    if not bool(xp.all(ok)):
        _raise_non_finite(solver, int(xp.argmax(xp.astype(~ok, xp.int32))), grid)


def integrate(
    dynamics: AbstractDynamics,
    x_init: Array,
    ts: Any,
    solver: Any,
    rng: Any = None,
    *,
    save_path: bool = False,
    progress: bool | None = None,
) -> Solution:
    """Integrate ``dynamics`` over the grid ``ts`` with ``solver``.

    Parameters
    ----------
    dynamics : a :class:`~diffcore.dynamics.AbstractDynamics` (reverse SDE or probability-flow ODE).
    x_init : array ``(n, ...)`` at ``ts[0]``; must be finite.
    ts : 1-D strictly monotone grid of times in ``[0, 1]`` (a list or any array); decreasing
        for a reverse-time SDE, increasing for a forward SDE, either way for an ODE (an
        increasing grid runs the probability-flow ODE forwards, from data to noise).
    solver : a name from ``diffcore.SOLVERS`` or an :class:`AbstractSolver`.
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``; the
        noise of stochastic solvers is drawn from it in step order.
    save_path : keep the state at every grid time in ``Solution.path``.
    progress : a tqdm bar over the grid steps: ``None`` (default) shows one only when stderr is a
        terminal, ``True`` always (needs tqdm; redrawn every 30 s at most when stderr is a log),
        ``False`` never (see :func:`~diffcore._validation.progress_bar`).  An adaptive solver
        advances it once per grid interval, not per internal step.

    Raises
    ------
    ValueError, TypeError
        for a bad grid (or one running against ``dynamics.direction``), a non-finite or complex
        ``x_init``, dynamics that do not meet the solver's declared
        :attr:`~diffcore.samplers.AbstractSolver.requires` (checked once, before the first step),
        or a model whose output is not an array of ``x``'s type, device, real floating dtype and
        shape (checked at every call, from metadata only).
    FloatingPointError
        when a step produces NaN or infinity; the message gives the step and the times.

    Notes
    -----
    Integer or boolean ``x_init`` is promoted to float64.  An empty batch (``n = 0``) returns
    at once, with ``nfe = 0``: there is nothing to evaluate.  ``nfe`` is the number of calls of
    the model, counted through :meth:`~diffcore.AbstractDynamics.counted` (a host-side integer:
    no synchronisation).

    Host synchronisation.  For NumPy arrays each step is checked at once (a sum, and only if
    that is not finite an entry-wise look).  For torch tensors (any non-NumPy array) the loop
    never copies a device value to the host: each step appends ``sum(x)`` (float64) or
    ``max(x), min(x)`` (float32, half) as device-side values, and one ``isfinite`` and
    synchronisation after the loop raises for the *first* failing step, with its times (the
    remaining steps run on NaNs first).  The solvers of :data:`~diffcore.SOLVERS` are free of
    host synchronisation too (guarded by ``tests/test_device_sync.py``); ``adaptive`` is not and
    cannot be: it chooses its step sizes from an error norm on the host.  Noise is drawn from ``rng`` on the generator's
    device: for a sync-free stochastic solver on a GPU pass a ``torch.Generator`` on ``x``'s
    device; a NumPy generator or int seed (or a CPU ``torch.Generator``) draws on the host
    and copies each step's noise to the device (the same numbers on every backend).
    """
    solver = get_solver(solver)
    if not isinstance(dynamics, AbstractDynamics):
        raise TypeError(f"dynamics must be an AbstractDynamics; got {type(dynamics).__name__}")
    x_init = check_array("x_init", x_init)
    solver.requires.check(dynamics, solver.name)
    grid = check_grid(ts, dynamics.direction, type(dynamics).__name__)
    xp = namespace(x_init)
    draws = solver.noise_draws
    rng = resolve_rng(rng)  # validated even when the solver draws no noise
    check_progress(progress)
    if x_init.shape[0] == 0:
        path = xp.stack([x_init] * len(grid)) if save_path else None
        return Solution(x_init, np.asarray(grid), 0, solver, path=path, accepted_steps=0, rejected_steps=0)
    counter = Counter()
    dynamics = dynamics.counted(counter)
    x, state = x_init, None
    path = [x] if save_path else None
    n_steps = len(grid) - 1
    on_host = is_numpy_array(x_init)
    probes = []  # per-step probes of the state, finite iff the state is, kept on the device (non-NumPy arrays only)
    with progress_bar(progress, n_steps, desc=solver.name) as bar:
        for i in range(n_steps):
            t0, t1 = grid[i], grid[i + 1]
            noise = normal(rng, (draws, *x.shape), x) if draws else None
            x, state = solver.step(dynamics, x, t0, t1, noise, state)
            if on_host:
                _check_step(xp, x, solver, i, grid)
            else:
                probes.extend(_finite_probes(xp, x))
            if save_path:
                path.append(x)
            bar.update(1)
    if probes:
        _check_steps(xp, probes, solver, grid)
    # solvers with internal steps (adaptive ones) count them in their state
    counted = state if isinstance(state, StepStatistics) else None
    return Solution(
        x=x,
        ts=np.asarray(grid),
        nfe=counter.n,
        solver=solver,
        path=xp.stack(path) if save_path else None,
        accepted_steps=counted.accepted if counted else n_steps,
        rejected_steps=counted.rejected if counted else 0,
    )


def steps_for_budget(solver: AbstractSolver, steps: int | None, nfe: int | None) -> int:
    """The number of grid steps from exactly one of ``steps`` and a budget of ``nfe`` evaluations.

    ``nfe`` must be a positive multiple of ``solver.nfe_per_step`` (``rk4`` cannot spend 10
    evaluations, and 3 would not buy it one step), and a method with one evaluation per step and
    declared order ``p > 1`` (a multistep method: its formula of order ``p`` uses ``p`` model
    values) needs ``nfe >= p``: with fewer it would run only its lower-order warm-up.  Pass
    ``steps`` to run such a method anyway.
    """
    if (steps is None) == (nfe is None):
        raise TypeError(f"give exactly one of steps and nfe; got steps={steps!r}, nfe={nfe!r}")
    if steps is not None:
        return check_steps(steps)
    nfe = check_steps(nfe, "nfe")
    per = solver.nfe_per_step
    if nfe % per:
        lower = nfe - nfe % per
        nearest = " or ".join(str(c) for c in (lower, lower + per) if c >= per)
        raise ValueError(
            f"nfe must be a multiple of {solver.name}'s {per} evaluations per step; got nfe={nfe} (nearest: {nearest})"
        )
    if per == 1 and nfe < solver.order:
        raise ValueError(
            f"{solver.name} needs nfe >= {solver.order} to reach its order {solver.order} (its multistep formula "
            f"uses {solver.order} model values); got nfe={nfe}; pass steps={nfe} to run its lower-order warm-up"
        )
    return nfe // per


def sample(
    process: AbstractProcess,
    score: Callable[[Array, Any], Array],
    x_init: Array,
    *,
    method: Any,
    steps: int | None = None,
    t_min: float = 1e-3,
    rng: Any = None,
    grid: str | None = None,
    t_max: float = 1.0,
    nfe: int | None = None,
    save_path: bool = False,
    progress: bool | None = None,
    **options: Any,
) -> Solution:
    """Sample by integrating from ``t_max = 1`` down to ``t_min`` with the exact or learned ``score``.

    ODE methods (``euler``, ``heun``, ``rk4``, ``ddim``, the exponential integrators, ``edm_heun``,
    ``hb``, ``ghvb``, ``bdia``, ``adaptive``; see ``SOLVERS``) integrate the probability-flow ODE;
    stochastic ones (``euler_maruyama``, ``ancestral``, ``pc``, ``edm_stochastic``) the reverse SDE
    (``noise_scale = 1``).

    The cost is ``steps`` grid steps, or a budget of ``nfe`` model evaluations (give one of the
    two): ``steps = nfe / nfe_per_step`` of the solver (``rk4`` takes 4 per step), and a budget
    that is not a multiple of it, or smaller, is an error rather than silently rounded.

    ``grid`` is ``"uniform"``, ``"log_snr"`` or ``"edm"`` (see :func:`time_grid`), or ``None``
    (the default): the grid the solver declares it is designed for and is measured on
    (:attr:`AbstractSolver.grid`; ``SOLVERS[name].grid``).  The exponential integrators
    (DDIM, DPM-Solver, DPM-Solver++, DEIS, UniPC) lose their order on the uniform grid in ``t``
    (on P1, ``dpm_solver_pp_3m`` with 10 steps errs 24 times more there than on the log-SNR grid),
    so the default matters: pass ``grid`` only to override it.  ``options`` go to the solver
    named by ``method``, e.g.
    ``method="adaptive", rtol=1e-6, atol=1e-6`` or ``method="bdia", gamma=0.5``.  For another
    member of the reverse-SDE family build ``ReverseSDE(process, score, noise_scale=...)`` and call
    :func:`integrate`.  ``progress``: a tqdm bar over the steps, shown by default only when
    stderr is a terminal (``True`` forces it, ``False`` never; see :func:`integrate`).

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian, exact_score
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), np.eye(2))
    >>> sol = sample(p, exact_score(p, data), p.prior_sample((4, 2), rng=0), method="heun", steps=10)
    >>> sol.x.shape, sol.nfe
    ((4, 2), 20)
    """
    solver = get_solver(method, **options)
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    kind = solver.grid if grid is None else check_choice("grid", grid, GRIDS)
    steps = steps_for_budget(solver, steps, nfe)
    dynamics = ReverseSDE(process, score) if solver.stochastic else ProbabilityFlowODE(process, score)
    ts = time_grid(process, steps, t_min=t_min, t_max=t_max, kind=kind)
    return integrate(dynamics, x_init, ts, solver, rng, save_path=save_path, progress=progress)
