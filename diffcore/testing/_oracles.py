"""Oracles for checking samplers: a high-accuracy ODE reference, exact Gaussian-law propagation, order fits."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from diffcore._validation import check_array, check_grid, check_same_namespace, check_scalar_time
from diffcore.dynamics import AbstractDynamics, ProbabilityFlowODE
from diffcore.samplers import AbstractSolver, get_solver, integrate

__all__ = ["fit_order", "propagate_gaussian_law", "reference_ode_solution"]


def reference_ode_solution(
    dynamics: AbstractDynamics,
    x_init: np.ndarray,
    t_start: float,
    t_end: float,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-12,
) -> np.ndarray:
    """Integrate the probability-flow ODE with SciPy's DOP853 (Hairer et al. 1993) at tight tolerances.

    ``x_init`` is a NumPy array ``(n, d)`` at ``t_start``; all points are integrated as one
    system, so the step-size control sees the worst point.  The result is the pathwise
    reference that measured convergence orders are computed against.
    """
    from scipy.integrate import solve_ivp

    if not isinstance(dynamics, ProbabilityFlowODE):
        raise TypeError(f"dynamics must be a ProbabilityFlowODE; got {type(dynamics).__name__}")
    t_start, t_end = check_scalar_time(t_start, "t_start"), check_scalar_time(t_end, "t_end")
    x_init = np.asarray(check_array("x_init", x_init), dtype=np.float64)
    shape = x_init.shape

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        return dynamics.drift(y.reshape(shape), float(t)).reshape(-1)

    sol = solve_ivp(rhs, (t_start, t_end), x_init.reshape(-1), method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"DOP853 reference failed: {sol.message}")
    return sol.y[:, -1].reshape(shape)


def propagate_gaussian_law(
    dynamics: AbstractDynamics, solver: Any, mean: np.ndarray, cov: np.ndarray, ts: Any
) -> tuple[np.ndarray, np.ndarray]:
    r"""The exact law of a sampler's output when each step is affine in its state and noise.

    For Gaussian data the exact score is affine in ``x``, so a step of Euler–Maruyama,
    ancestral sampling, DDIM or any Runge–Kutta method is ``x' = A x + B xi + c`` with
    ``xi`` the step's standard-normal draws.  Probing the step with the basis vectors gives
    ``A``, ``B`` and ``c``; then ``N(m, C)`` goes to ``N(A m + c, A C A^T + B B^T)`` exactly,
    with no Monte Carlo noise.  This is how the weak order of a stochastic sampler is measured
    to machine precision.  Deterministic solvers are probed over the whole grid through
    :func:`~diffcore.integrate`, so multistep methods (which carry a state) are exact too;
    stochastic solvers are probed step by step and must keep no state (else ``ValueError``).
    Solvers declare whether this applies (:attr:`~diffcore.samplers.AbstractSolver.affine_step`):
    not for steps that are not affine, e.g. the Langevin corrector of ``pc`` whose step size
    depends on the batch, nor for an adaptive solver whose step control sees the whole batch.

    Your own step: wrap the function with :func:`~diffcore.testing.solver_from_step`, which
    declares what this needs (``affine_step``, and ``noise_draws`` through ``stochastic=True``)::

        mine = solver_from_step(my_em_step, order=1, uses="drift", stochastic=True)
        mean, cov = propagate_gaussian_law(ReverseSDE(process, score), mine, m0, c0, ts)

    Parameters: ``mean (d,)``, ``cov (d, d)`` (symmetric positive semi-definite) the law at
    ``ts[0]``; ``ts`` a strictly monotone grid in the direction of ``dynamics``; returns the law
    at ``ts[-1]``.

    Raises
    ------
    ValueError
        for a solver whose steps are not affine, a mean or covariance of the wrong shape, a
        covariance that is not symmetric positive semi-definite, or a bad grid; the checks of
        :func:`~diffcore.integrate` (dynamics that do not meet the solver's requirements).
    """
    if callable(solver) and not isinstance(solver, AbstractSolver):
        raise TypeError(
            f"solver must be a method name or an AbstractSolver; got the function "
            f"{getattr(solver, '__name__', solver)!r}: wrap a one-step function with "
            "diffcore.testing.solver_from_step(step, order=..., stochastic=...)"
        )
    solver = get_solver(solver)
    if not solver.affine_step:
        raise ValueError(
            f"propagate_gaussian_law needs a solver whose step is affine in (state, noise); {solver.name} "
            f"declares affine_step = False (its step depends on the whole batch)"
        )
    solver.check_dynamics(dynamics)
    check_same_namespace(mean=mean, cov=cov)
    m = np.asarray(check_array("mean", mean, ndim=1), dtype=np.float64)
    d = m.shape[0]
    c = np.asarray(check_array("cov", cov, ndim=2), dtype=np.float64)
    if c.shape != (d, d):
        raise ValueError(f"cov must have shape (d, d) = ({d}, {d}) to match mean; got {c.shape}")
    if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.max(np.abs(c))))):
        raise ValueError("cov must be symmetric")
    low = float(np.min(np.linalg.eigvalsh(c))) if d else 0.0
    if low < -1e-10 * max(1.0, float(np.max(np.abs(c)))):
        raise ValueError(f"cov must be positive semi-definite; its smallest eigenvalue is {low}")
    k = solver.noise_draws
    grid = check_grid(ts, dynamics.direction, type(dynamics).__name__)
    probes = np.vstack([np.zeros((1, d)), np.eye(d)])
    if not k:
        # deterministic: the whole integration is one affine map, probed through the driver, so
        # solvers that carry a state between steps (multistep methods) are handled exactly
        out = integrate(dynamics, probes, grid, solver).x
        a = (out[1:] - out[0]).T
        c = a @ c @ a.T
        return a @ m + out[0], 0.5 * (c + c.T)
    for t0, t1 in itertools.pairwise(grid):
        zero_noise = np.zeros((k, d + 1, d))
        out, state = solver.step(dynamics, probes, t0, t1, zero_noise, None)
        if state is not None:
            raise ValueError(
                f"propagate_gaussian_law probes stochastic steps one at a time, so it needs a solver "
                f"without state between steps; {solver.name} keeps one"
            )
        shift = out[0]
        a = (out[1:] - shift).T
        m = a @ m + shift
        c = a @ c @ a.T
        noise = np.zeros((k, k * d, d))
        for j in range(k):
            noise[j, j * d : (j + 1) * d, :] = np.eye(d)
        out_n, _ = solver.step(dynamics, np.zeros((k * d, d)), t0, t1, noise, None)
        b = (out_n - shift).T
        c = c + b @ b.T
    return m, 0.5 * (c + c.T)


def fit_order(steps: Any, errors: Any) -> float:
    """Least-squares slope of ``log error`` against ``log(1 / steps)``: the measured order.

    With a uniform step ``h = T / steps`` and error ``C h^p``, the slope is ``p``.
    """
    steps = np.asarray(check_array("steps", np.asarray(steps), ndim=1), dtype=np.float64)
    errors = np.asarray(check_array("errors", np.asarray(errors), ndim=1), dtype=np.float64)
    if steps.shape != errors.shape or steps.size < 2:
        raise ValueError(
            f"steps and errors must be matching 1-D arrays of length >= 2; got {steps.shape}, {errors.shape}"
        )
    if not np.all(errors > 0):
        raise ValueError("errors must be positive to fit a slope on a log scale")
    slope, _ = np.polyfit(np.log(1.0 / steps), np.log(errors), 1)
    return float(slope)
