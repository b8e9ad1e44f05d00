r"""Few-step generation with a flow map: chain its jumps, or denoise and re-noise (consistency sampling)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from diffcore._array import namespace, normal, resolve_rng
from diffcore._validation import (
    check_array,
    check_finite,
    check_grid,
    check_model_output,
    check_scalar_time,
    check_unshifted,
)
from diffcore.processes import AbstractProcess
from diffcore.samplers import Solution

__all__ = ["consistency_sample", "flow_map_sample"]

Array = Any


def _step_output(out: Any, x: Array, i: int, t0: float, t1: float) -> Array:
    """The map's output at step ``i``: checked like every model output, then for finiteness."""
    out = check_model_output(f"the flow map (step {i}, t = {t0} -> {t1})", out, x)
    xp = namespace(out)
    if not bool(xp.all(xp.isfinite(out))):
        raise FloatingPointError(f"the state became non-finite at step {i} (t = {t0} -> {t1})")
    return out


def flow_map_sample(flow_map: Callable[[Array, Any, Any], Array], x_init: Any, ts: Any) -> Solution:
    r"""Chain the jumps of a flow map over a grid: ``x_{i+1} = Phi(x_i, t_i, t_{i+1})``.

    With the exact map every grid gives the same answer (the semigroup law); a learned map's
    answer depends on the grid, and comparing 1, 2 and 4 jumps with the exact map measures how
    far it is from a semigroup (Boffi et al. 2025, sec. 3; Kim et al. 2024, sec. 4; Geng et al.
    2025, alg. 2 for one jump).

    Parameters
    ----------
    flow_map : ``(x (n, d), t, s) -> (n, d)``, e.g. ``to_flow_map("mean_velocity", net)``.
    x_init : ``(n, d)`` at ``ts[0]``, finite.  ts : a strictly monotone grid in ``[0, 1]``
        (either direction).

    Returns a :class:`~diffcore.Solution` with ``nfe = len(ts) - 1`` (one network call per jump)
    and ``solver=None``.  A non-finite state raises ``FloatingPointError`` naming the step.
    """
    if not callable(flow_map):
        raise TypeError(f"flow_map must be a callable (x, t, s) -> (n, d); got {type(flow_map).__name__}")
    x = check_finite("x_init", check_array("x_init", x_init, ndim=2))
    grid = check_grid(ts, 0, "a flow map")
    for i, (t0, t1) in enumerate(itertools.pairwise(grid)):
        x = _step_output(flow_map(x, t0, t1), x, i, t0, t1)
    return Solution(x=x, ts=np.asarray(grid), nfe=len(grid) - 1, solver=None)


def consistency_sample(
    flow_map: Callable[[Array, Any, Any], Array],
    process: AbstractProcess,
    x_init: Any,
    ts: Any,
    *,
    t_min: float = 2e-3,
    rng: Any = None,
) -> Solution:
    r"""Multistep consistency sampling (Song et al. 2023, alg. 1): denoise to ``t_min``, re-noise, repeat.

    ``x <- Phi(x_init, ts[0], t_min)``; then for each ``tau`` in ``ts[1:]``:
    ``x_tau = alpha_tau x + sigma_tau z`` with fresh ``z ~ N(0, I)`` and ``x <- Phi(x_tau, tau, t_min)``.
    With the exact map every extra step only re-draws the noise and changes nothing in law; a
    learned consistency model's errors are partly corrected.

    Parameters
    ----------
    flow_map : ``(x, t, s) -> (n, d)`` called with ``s = t_min`` (e.g. ``to_flow_map("consistency",
        net, process, t_min=t_min)``).  process : the forward process of the re-noising.
    x_init : ``(n, d)`` at ``ts[0]``.  ts : decreasing times ``> t_min``.  rng : the re-noising.

    Returns a :class:`~diffcore.Solution` (``x`` at ``t_min``, ``nfe = len(ts)``, ``solver=None``).
    """
    if not callable(flow_map):
        raise TypeError(f"flow_map must be a callable (x, t, s) -> (n, d); got {type(flow_map).__name__}")
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "consistency_sample")
    x = check_finite("x_init", check_array("x_init", x_init, ndim=2))
    t_min = check_scalar_time(t_min, "t_min")
    grid = [float(t) for t in np.atleast_1d(np.asarray(ts, dtype=np.float64))]
    if len(grid) == 1:
        check_scalar_time(grid[0], "ts[0]")
    else:
        grid = check_grid(grid, -1, "consistency sampling")
    if grid[-1] <= t_min:
        raise ValueError(f"consistency sampling needs every time in ts above t_min = {t_min}; got {grid[-1]}")
    gen = resolve_rng(rng)
    x = _step_output(flow_map(x, grid[0], t_min), x, 0, grid[0], t_min)
    for i, tau in enumerate(grid[1:], start=1):
        noisy = process.alpha(tau) * x + process.sigma(tau) * normal(gen, tuple(x.shape), x)
        x = _step_output(flow_map(noisy, tau, t_min), x, i, tau, t_min)
    return Solution(x=x, ts=np.asarray([*grid, t_min]), nfe=len(grid), solver=None)
