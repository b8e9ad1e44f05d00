r"""Time-grid (and solver-schedule) search for a fixed NFE budget on an analytic problem.

The grid is parametrised in log-SNR time ``lambda = log_snr(t)``: with
``Lambda = lambda(t_min) - lambda(t_max) > 0`` and ``N`` steps, unconstrained parameters
``theta in R^{N-1}`` give the increments

.. math::
    \Delta_i = \Lambda \Big(\frac{\epsilon}{N} + (1 - \epsilon)\,
               \mathrm{softmax}(\theta, 0)_i\Big), \qquad
    \lambda_i = \lambda(t_{max}) + \sum_{j \le i} \Delta_j, \qquad t_i = \lambda^{-1}(\lambda_i),

(``softmax`` over ``(theta_1, ..., theta_{N-1}, 0)``; the last logit is pinned to make the
map one-to-one; ``epsilon = 10^{-3}`` keeps every increment at least ``epsilon Lambda / N``),
so every ``theta`` is a strictly decreasing grid with ``t_0 = t_max`` and ``t_N = t_min``
exactly, and ``theta = 0`` is the grid uniform in log-SNR.  The objective is the error of the
method's output at ``t_min`` against a DOP853 reference of the probability-flow ODE from the
same ``x_init``; its logarithm is minimised by Nelder–Mead from several starts (the log-SNR,
EDM and uniform grids, then random perturbations).  A per-step choice of method is a discrete
search first: every sequence of methods whose costs add up to the budget exactly is scored on
the log-SNR grid, and the grid of the best few is then tuned (the screen-then-refine search of
Liu et al. 2023; AutoDiffusion, Li et al. 2023, searches the same space of steps by evolution).

References
----------
E. Liu, X. Ning, H. Yang, Y. Wang, "A Unified Sampling Framework for Solver Searching of
Diffusion Probabilistic Models", ICLR 2024 (arXiv:2312.07243).
L. Li et al., "AutoDiffusion: Training-Free Optimization of Time Steps and Architectures for
Automated Diffusion Model Acceleration", ICCV 2023 (arXiv:2309.10438).
S. Xue et al., "Accelerating Diffusion Sampling with Optimized Time Steps", CVPR 2024.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import broadcast_time, namespace, resolve_rng
from diffcore._validation import check_choice, check_scalar_time, check_steps
from diffcore.dynamics import ProbabilityFlowODE
from diffcore.samplers import SCHEDULABLE_METHODS, PerStepSolver, Solution, get_solver, integrate, time_grid
from diffcore.testing import reference_ode_solution

__all__ = [
    "GRID_FAMILIES",
    "GRID_INITS",
    "SEARCH_OBJECTIVES",
    "GridSearchResult",
    "ScoreScale",
    "fractions_of_grid",
    "grid_from_fractions",
    "grid_from_parameters",
    "optimize_grid",
]

#: error measures of the search: RMS over points of ``|x - x_ref|`` or its maximum over points
SEARCH_OBJECTIVES = ("pathwise", "max")
#: the standard grids a search can start from
GRID_INITS = ("log_snr", "edm", "uniform")
#: parametrisations of the grid: ``N - 1`` free softmax logits, or a two-parameter Beta warp
GRID_FAMILIES = ("free", "beta")
_FLOOR = 1e-3  # the epsilon of the parametrisation
_FAILED = 1e300  # the error charged to a grid whose run fails (non-finite state)


class _Counted:
    """A model that counts its (batched) calls: the search's own cost in model evaluations."""

    def __init__(self, f: Callable[[Any, Any], Any]) -> None:
        self.f, self.calls = f, 0

    def __call__(self, x: Any, t: Any) -> Any:
        self.calls += 1
        return self.f(x, t)


def _check_interval(t_min: Any, t_max: Any) -> tuple[float, float]:
    """``(t_min, t_max)`` as floats with ``0 < t_min < t_max <= 1``; else ``ValueError``."""
    t_min, t_max = check_scalar_time(t_min, "t_min"), check_scalar_time(t_max, "t_max")
    if not 0.0 < t_min < t_max:
        raise ValueError(f"t_min must lie in (0, t_max) = (0, {t_max}); got {t_min}")
    return t_min, t_max


def _check_methods(methods: Any) -> tuple[str, ...]:
    """One name or a sequence of names of :data:`SCHEDULABLE_METHODS`, as a non-empty tuple."""
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods:
        raise ValueError(f"methods must name at least one method; allowed: {', '.join(SCHEDULABLE_METHODS)}")
    for m in methods:
        check_choice("method", m, SCHEDULABLE_METHODS)
    return methods


def _log_snr_range(process: Any, t_min: float, t_max: float) -> tuple[float, float]:
    lo, hi = float(process.log_snr(t_max)), float(process.log_snr(t_min))
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(
            f"grid search needs a finite log-SNR increasing from t_max to t_min; got {lo} at t_max = {t_max} "
            f"and {hi} at t_min = {t_min}"
        )
    return lo, hi


def grid_from_parameters(
    process: Any, theta: Any, *, t_min: float = 1e-3, t_max: float = 1.0, family: str = "free", steps: int | None = None
) -> np.ndarray:
    r"""The grid ``t_max = t_0 > ... > t_N = t_min`` of the unconstrained parameters ``theta``.

    ``Delta_i = Lambda (epsilon / N + (1 - epsilon) softmax(theta, 0)_i)`` in log-SNR
    (module docstring); ``theta`` has shape ``(N - 1,)`` and any finite value, and ``theta = 0``
    gives :func:`time_grid` ``(kind="log_snr")``.  Returns NumPy float64 of shape ``(N + 1,)``.

    Example
    -------
    >>> from diffcore import VPSDE
    >>> p = VPSDE()
    >>> bool(np.allclose(grid_from_parameters(p, np.zeros(4)), time_grid(p, 5, kind="log_snr")))
    True
    """
    check_choice("family", family, GRID_FAMILIES)
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"theta must be finite; got {theta}")
    lo, hi = _log_snr_range(process, t_min, t_max)
    lam = lo + (hi - lo) * _cumulative_fractions(theta, family, steps)
    ts = np.asarray(process.log_snr_inverse(lam), dtype=np.float64)
    ts[0], ts[-1] = t_max, t_min
    return ts


def _cumulative_fractions(theta: np.ndarray, family: str, steps: int | None) -> np.ndarray:
    """``(0, F_1, ..., F_N = 1)``: the cumulative log-SNR fractions of the grid of ``theta``."""
    if family == "free":
        logits = np.append(theta, 0.0)
        w = np.exp(logits - logits.max())
        frac = _FLOOR / len(logits) + (1 - _FLOOR) * w / w.sum()
        return np.concatenate([[0.0], np.cumsum(frac)])
    from scipy.special import betainc

    if steps is None or theta.shape != (2,):
        raise ValueError(f"the 'beta' family needs theta of shape (2,) and steps; got {theta.shape} and {steps}")
    u = np.linspace(0.0, 1.0, check_steps(steps) + 1)
    a, b = np.exp(np.clip(theta, -5.0, 5.0))
    out = _FLOOR * u + (1 - _FLOOR) * betainc(a, b, u)
    out[0], out[-1] = 0.0, 1.0
    return out


def _parameters_of(process: Any, ts: np.ndarray, t_min: float, t_max: float, family: str = "free") -> np.ndarray:
    """The ``theta`` of a given grid (inverse of :func:`grid_from_parameters`, up to the floor;
    for the Beta family the least-squares fit of the cumulative fractions)."""
    lo, hi = _log_snr_range(process, t_min, t_max)
    frac = np.diff(np.asarray(process.log_snr(ts), dtype=np.float64)) / (hi - lo)
    if family == "beta":
        from scipy.optimize import least_squares

        target = np.concatenate([[0.0], np.cumsum(frac)])
        fit = least_squares(lambda th: _cumulative_fractions(th, "beta", len(frac)) - target, np.zeros(2))
        return np.clip(fit.x, -5.0, 5.0)
    soft = np.clip((frac - _FLOOR / len(frac)) / (1 - _FLOOR), 1e-12, None)
    logits = np.log(soft)
    return logits[:-1] - logits[-1]


def fractions_of_grid(process: Any, ts: Any) -> np.ndarray:
    r"""The log-SNR increments of a grid as fractions of its range: ``(lambda_{i} - lambda_{i-1}) / Lambda``.

    ``ts`` must be strictly decreasing (``t_0 = t_max > ... > t_N = t_min``) with a log-SNR
    strictly increasing along it; the result ``(N,)`` is positive and sums to 1, the form of a
    schedule that transfers to another process or interval (:func:`grid_from_fractions`).

    Raises ``ValueError`` for a grid with fewer than 2 times, one that is not strictly
    decreasing, or one along which the log-SNR is not finite and strictly increasing.
    """
    ts = np.asarray(ts, dtype=np.float64).reshape(-1)
    if ts.size < 2 or not np.all(np.isfinite(ts)) or not np.all(np.diff(ts) < 0):
        raise ValueError(f"ts must be a finite, strictly decreasing grid of at least 2 times; got {ts}")
    lam = np.asarray(process.log_snr(ts), dtype=np.float64)
    if not (np.all(np.isfinite(lam)) and np.all(np.diff(lam) > 0)):
        raise ValueError(f"the log-SNR along ts must be finite and strictly increasing; got {lam}")
    return np.diff(lam) / (lam[-1] - lam[0])


def grid_from_fractions(
    process: Any, fractions: Any, *, t_min: float = 1e-3, t_max: float = 1.0, steps: int | None = None
) -> np.ndarray:
    r"""The grid of a schedule given by its log-SNR fractions, on ``process`` and ``[t_min, t_max]``.

    With cumulative fractions ``F_i = sum_{j <= i} fractions_j`` (``F_0 = 0``, ``F_N = 1``),
    ``lambda_i = lambda(t_max) + F_i (lambda(t_min) - lambda(t_max))`` and ``t_i = lambda^{-1}(lambda_i)``:
    the same relative spacing in log-SNR on any process with a finite log-SNR.  With ``steps = K``
    the schedule is first carried to ``K`` steps as Align Your Steps does (Sabour, Fidler & Kreis,
    ICML 2024, arXiv:2404.14507, sec. 3.3: log-linear interpolation of the noise levels):
    ``F`` is interpolated linearly at ``u = k / K`` from its values at ``u = i / N``; since
    ``lambda = -2 log(sigma / alpha)``, that is linear in ``log(sigma / alpha)``.

    Parameters
    ----------
    process : an affine process with a finite log-SNR on ``[t_min, t_max]``.
    fractions : ``(N,)`` positive log-SNR increments (normalised to sum 1).
    t_min, t_max : the ends (``0 < t_min < t_max <= 1``), hit exactly.
    steps : the number of steps ``K`` of the returned grid (default ``N``).

    Returns NumPy float64 ``(K + 1,)``, strictly decreasing from ``t_max`` to ``t_min``.
    Raises ``ValueError`` for fractions that are not finite and positive (a schedule that is not
    strictly monotone) and for ``t_min`` outside ``(0, t_max)``.

    Example
    -------
    >>> from diffcore import VPSDE
    >>> p = VPSDE()
    >>> bool(np.allclose(grid_from_fractions(p, np.full(4, 0.25), steps=6), time_grid(p, 6, kind="log_snr")))
    True
    """
    frac = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if frac.size < 1 or not np.all(np.isfinite(frac)) or not np.all(frac > 0):
        raise ValueError(f"fractions must be finite and positive (a strictly monotone schedule in log-SNR); got {frac}")
    t_min, t_max = _check_interval(t_min, t_max)
    cum = np.concatenate([[0.0], np.cumsum(frac / frac.sum())])
    cum[-1] = 1.0
    if steps is not None and check_steps(steps) != frac.size:
        cum = np.interp(np.linspace(0.0, 1.0, steps + 1), np.linspace(0.0, 1.0, frac.size + 1), cum)
    return _grid_of_cumulative(process, cum, t_min, t_max)


def _grid_of_cumulative(process: Any, cum: np.ndarray, t_min: float, t_max: float) -> np.ndarray:
    lo, hi = _log_snr_range(process, t_min, t_max)
    ts = np.asarray(process.log_snr_inverse(lo + (hi - lo) * cum), dtype=np.float64)
    ts[0], ts[-1] = t_max, t_min
    if not np.all(np.diff(ts) < 0):
        raise ValueError(f"the schedule's grid on {type(process).__name__} is not strictly decreasing: {ts}")
    return ts


@dataclass(frozen=True, eq=False)
class ScoreScale:
    r"""The model output scaled by a smooth factor of log-SNR time: ``s'(x, t) = exp(a + b u(t)) s(x, t)``.

    ``u(t) = (lambda(t) - lambda(t_max)) / (lambda(t_min) - lambda(t_max))`` runs from 0 at
    ``t_max`` to 1 at ``t_min``, so ``(a, b)`` mean the same on any process and interval.  Scaling
    the score is scaling the noise prediction ``eps = -sigma s``: the "epsilon scaling" of Ning
    et al. ("Elucidating the Exposure Bias in Diffusion Models", ICLR 2024, eq. 13, a linear
    schedule of the factor), and one of the continuous solver coefficients that a few-step
    search tunes with the grid (Liu et al. 2023, sec. 3; "Hyperparameters are all you need",
    2024, which tunes coefficients of a 5-step sampler).  With the exact score the scaled field
    is *not* the exact one: a tuned ``(a, b)`` trades a small change of the ODE for a smaller
    discretisation error at few steps.  ``score`` is any ``(x, t) -> array``; the result keeps
    its array type; ``t`` a float or ``(n,)``.
    """

    process: Any
    score: Callable[[Any, Any], Any]
    a: float
    b: float
    t_min: float = 1e-3
    t_max: float = 1.0

    def __call__(self, x: Any, t: Any) -> Any:
        lo, hi = _log_snr_range(self.process, self.t_min, self.t_max)
        lam = self.process.log_snr(t)
        if isinstance(lam, (float, int, np.floating)) or getattr(lam, "ndim", 1) == 0:
            factor: Any = math.exp(self.a + self.b * (float(lam) - lo) / (hi - lo))
        else:
            factor = namespace(lam).exp(self.a + self.b * (lam - lo) / (hi - lo))
        return broadcast_time(factor, x) * self.score(x, t)


@dataclass(frozen=True, eq=False)
class GridSearchResult:
    """The result of :func:`optimize_grid`.

    Attributes
    ----------
    ts : the tuned grid, NumPy float64 ``(steps + 1,)``, from ``t_max`` down to ``t_min``.
    methods : the method of every step, a tuple of ``steps`` names.
    error : the objective on the tuning problem with ``ts`` and ``methods``.
    init_error : the objective of the first start (``init`` grid, the best screened schedule).
    nfe : the score evaluations of one run (``sum`` of the methods' costs).
    log_snr_fractions : ``(steps,)`` increments of log-SNR over the grid, as fractions of the whole
        range (they sum to 1): the grid in a form that transfers to another process or ``t_min``.
    history : the best objective so far after each evaluation, ``(evaluations,)``.
    evaluations : runs of the sampler the search made (screening included).
    seconds : wall-clock time of the search.
    objective : the error measure (a name in :data:`SEARCH_OBJECTIVES`).
    coefficients : the tuned ``(a, b)`` of :class:`ScoreScale` (``()``: the model output unscaled).
    model_evaluations : batched model calls the search's runs made (``evaluations x nfe`` summed
        over the problems; the DOP853 references are counted in ``reference_evaluations``).
    reference_evaluations : batched model calls of the DOP853 references (0 when they were given).
    problems : how many problems the error is a mean over (:func:`optimize_schedule`: the
        geometric mean ``exp(mean_p log E_p)``; 1 for :func:`optimize_grid`).
    """

    ts: np.ndarray
    methods: tuple[str, ...]
    error: float
    init_error: float
    nfe: int
    log_snr_fractions: np.ndarray
    history: np.ndarray
    evaluations: int
    seconds: float
    objective: str
    coefficients: tuple[float, ...] = ()
    model_evaluations: int = 0
    reference_evaluations: int = 0
    problems: int = 1

    @property
    def solver(self) -> Any:
        """The solver to pass to :func:`~diffcore.integrate` with :attr:`ts`."""
        if len(set(self.methods)) == 1:
            return get_solver(self.methods[0])
        return PerStepSolver(self.methods)

    def grid(
        self, process: Any, *, t_min: float | None = None, t_max: float | None = None, steps: int | None = None
    ) -> np.ndarray:
        """The tuned grid carried to ``process`` (and ``[t_min, t_max]``) by its log-SNR fractions.

        ``steps``: another number of steps, by the log-linear interpolation of Align Your Steps
        (:func:`grid_from_fractions`); only for a schedule of one method (a per-step schedule has
        one method per tuned step).
        """
        t_min = float(self.ts[-1]) if t_min is None else check_scalar_time(t_min, "t_min")
        t_max = float(self.ts[0]) if t_max is None else check_scalar_time(t_max, "t_max")
        if steps is not None and check_steps(steps) != len(self.methods) and len(set(self.methods)) > 1:
            raise ValueError(
                f"steps={steps} differs from the {len(self.methods)} steps of the per-step schedule "
                f"{list(self.methods)}; only a schedule of one method carries to another number of steps"
            )
        return grid_from_fractions(process, self.log_snr_fractions, t_min=t_min, t_max=t_max, steps=steps)

    def model(
        self, process: Any, score: Callable[[Any, Any], Any], *, t_min: float | None = None, t_max: float | None = None
    ) -> Callable[[Any, Any], Any]:
        """``score`` with the tuned :attr:`coefficients` applied (:class:`ScoreScale`); ``score`` itself without."""
        if not self.coefficients:
            return score
        t_min = float(self.ts[-1]) if t_min is None else check_scalar_time(t_min, "t_min")
        t_max = float(self.ts[0]) if t_max is None else check_scalar_time(t_max, "t_max")
        a, b = self.coefficients
        return ScoreScale(process, score, a, b, t_min, t_max)

    def integrate(self, process: Any, score: Callable[[Any, Any], Any], x_init: Any, **grid: Any) -> Solution:
        """Run the tuned schedule on the probability-flow ODE of ``process`` with ``score``.

        ``grid`` (``t_min``, ``t_max``, ``steps``) goes to :meth:`grid`; without it the tuned ``ts``
        is used.  The tuned coefficients, if any, scale ``score`` (:meth:`model`).
        """
        ts = self.grid(process, **grid) if grid else self.ts
        steps = len(ts) - 1
        solver = self.solver if steps == len(self.methods) else get_solver(self.methods[0])
        model = self.model(process, score, t_min=float(ts[-1]), t_max=float(ts[0]))
        return integrate(ProbabilityFlowODE(process, model), x_init, ts, solver)


def _error(x: np.ndarray, ref: np.ndarray, objective: str) -> float:
    dist = np.sqrt(np.sum((np.asarray(x) - ref).reshape(len(ref), -1) ** 2, axis=1))
    return float(np.sqrt(np.mean(dist**2)) if objective == "pathwise" else np.max(dist))


def _schedules(methods: tuple[str, ...], nfe: int) -> list[tuple[str, ...]]:
    """Every sequence of ``methods`` whose costs add up to ``nfe`` exactly (>= 2 steps)."""
    cost = {m: get_solver(m).nfe_per_step for m in methods}
    if len(methods) == 1:
        (m,) = methods
        if nfe % cost[m]:
            raise ValueError(
                f"nfe={nfe} is not a multiple of the {cost[m]} evaluations per step of {m!r}; "
                f"use nfe in {{{nfe - nfe % cost[m]}, {nfe - nfe % cost[m] + cost[m]}}}"
            )
        return [(m,) * (nfe // cost[m])]
    out: list[tuple[str, ...]] = []

    def extend(prefix: tuple[str, ...], left: int) -> None:
        if left == 0:
            out.append(prefix)
        for m in methods:
            if cost[m] <= left:
                extend((*prefix, m), left - cost[m])

    extend((), nfe)
    return [s for s in out if len(s) >= 2]


def _check_budget(methods: tuple[str, ...], nfe: int) -> list[tuple[str, ...]]:
    schedules = _schedules(methods, nfe)
    if not schedules or any(len(s) < 2 for s in schedules):
        raise ValueError(
            f"nfe={nfe} leaves fewer than 2 steps for {', '.join(methods)} (evaluations per step: "
            f"{', '.join(str(get_solver(m).nfe_per_step) for m in methods)}); a one-step grid has nothing to tune"
        )
    single = [m for m in methods if get_solver(m).nfe_per_step == 1 and get_solver(m).order > 1]
    if len(methods) == 1 and single and nfe < get_solver(single[0]).order:
        m = single[0]
        raise ValueError(
            f"nfe={nfe} is below the order {get_solver(m).order} of the multistep method {m!r}, which warms up "
            f"for its first {get_solver(m).order - 1} steps; use nfe >= {get_solver(m).order}"
        )
    return schedules


def _tune(
    process: Any,
    schedule: tuple[str, ...],
    run: Callable[[np.ndarray, tuple[str, ...]], float],
    starts: int,
    maxiter: int | None,
    gen: Any,
    init: str,
    family: str,
    t_min: float,
    t_max: float,
) -> tuple[np.ndarray, float]:
    """Nelder–Mead on ``log E(grid_from_parameters(theta))`` from ``starts`` points; the best ``theta`` seen."""
    from scipy.optimize import minimize

    n = len(schedule)
    kinds = [init, *(k for k in GRID_INITS if k != init)]
    best: list[Any] = [math.inf, None]

    def f(theta: np.ndarray) -> float:
        theta = np.clip(theta, -30.0, 30.0)
        err = run(grid_from_parameters(process, theta, t_min=t_min, t_max=t_max, family=family, steps=n), schedule)
        if err < best[0]:
            best[:] = [err, theta.copy()]
        return math.log(err)

    for s in range(starts):
        if s < len(kinds):
            grid = time_grid(process, n, t_min=t_min, t_max=t_max, kind=kinds[s])
            theta0 = _parameters_of(process, grid, t_min, t_max, family)
        else:
            theta0 = best[1] + gen.normal(0.0, 0.5, len(best[1]))
        minimize(
            f,
            theta0,
            method="Nelder-Mead",
            options={"maxfev": maxiter or 100 * len(theta0), "xatol": 1e-4, "fatol": 1e-6},
        )
    return best[1], best[0]


def optimize_grid(
    process: Any,
    score: Callable[[Any, Any], Any],
    x_init: Any,
    *,
    nfe: int,
    methods: Any = ("dpm_solver_pp_2m",),
    t_min: float = 1e-3,
    t_max: float = 1.0,
    reference: Any = None,
    objective: str = "pathwise",
    init: str = "log_snr",
    family: str = "free",
    starts: int = 3,
    maxiter: int | None = None,
    top_k: int = 3,
    rng: Any = None,
) -> GridSearchResult:
    r"""Search the time grid (and the method of each step) that minimises the error at ``nfe`` evaluations.

    Minimises ``E(ts, M) = sqrt(mean_i |x_i(ts, M) - x_i^ref|^2)`` (``objective="pathwise"``;
    ``"max"`` takes the largest ``|.|``), where ``x_i(ts, M)`` is the probability-flow ODE
    solution from ``x_init[i]`` at ``t_max`` to ``t_min`` by the schedule ``M`` on the grid
    ``ts``, and ``x^ref`` the DOP853 solution (rtol = atol = 1e-12;
    :func:`~diffcore.testing.reference_ode_solution`).  The grid is
    :func:`grid_from_parameters` of ``theta in R^{N-1}``; ``log E`` is minimised over ``theta``
    by SciPy's Nelder–Mead from ``starts`` starting points: the ``init`` grid, the other
    standard grids of :data:`GRID_INITS`, then random perturbations of the best (``rng``).
    The returned error is the smallest seen, so it is never above ``init_error``.

    Parameters
    ----------
    process : an affine process with a finite log-SNR on ``[t_min, t_max]``.
    score : the exact score ``(x, t) -> array`` of the tuning problem.
    x_init : NumPy array ``(n, d)`` at ``t_max`` (e.g. samples of the prior).
    nfe : the budget: every schedule tried costs exactly ``nfe`` evaluations.
    methods : a name (or a one-name tuple) for one method at every step, ``steps = nfe / cost``;
        several names for a per-step choice among them (from :data:`SCHEDULABLE_METHODS`):
        every sequence with total cost ``nfe`` is screened on the log-SNR grid and the grids
        of the ``top_k`` best are tuned.
    t_min, t_max : the end times (``0 < t_min < t_max <= 1``).
    reference : the reference ``x^ref`` ``(n, d)`` at ``t_min``, if already computed.
    objective : ``"pathwise"`` or ``"max"``.
    init : the first starting grid: ``"log_snr"``, ``"edm"`` or ``"uniform"``.
    starts : starting points per schedule (>= 1).
    maxiter : Nelder–Mead evaluations per start; default ``100 * (steps - 1)``.
    top_k : schedules whose grids are tuned after the screen (per-step search only).
    rng : ``None``, a seed or a ``numpy.random.Generator`` for the random restarts.

    Returns
    -------
    GridSearchResult

    Raises
    ------
    ValueError
        for an unknown method, objective or init (the message lists the allowed values); a
        ``t_min`` outside ``(0, t_max)``; a budget below two steps, not a multiple of a single
        method's cost, or below the order of a multistep method.

    Notes
    -----
    Cost: ``sum over schedules of starts * maxiter`` runs of ``nfe`` evaluations each, plus one
    DOP853 reference.  A grid tuned on one problem is a heuristic for another; the benchmark
    ``benchmarks/bench_grid_search.py`` measures how far it carries.

    References
    ----------
    Liu et al. (2023), sec. 4 (searchable timesteps and orders, a multi-stage search);
    Li et al. (2023), sec. 3 (the time steps as a search space); Xue et al. (2024), eq. 9
    (the distance to the ODE solution as the objective).

    Example
    -------
    >>> from diffcore import VPSDE, Gaussian, exact_score
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), 0.1 * np.eye(2))
    >>> x1 = p.prior_sample((20, 2), rng=0)
    >>> res = optimize_grid(p, exact_score(p, data), x1, nfe=4, methods="ddim", starts=1, maxiter=40)
    >>> res.nfe, len(res.ts), bool(res.error <= res.init_error)
    (4, 5, True)
    """
    nfe = check_steps(nfe, "nfe")
    methods = _check_methods(methods)
    check_choice("objective", objective, SEARCH_OBJECTIVES)
    check_choice("init", init, GRID_INITS)
    check_choice("family", family, GRID_FAMILIES)
    t_min, t_max = _check_interval(t_min, t_max)
    starts, top_k = check_steps(starts, "starts"), check_steps(top_k, "top_k")
    schedules = _check_budget(methods, nfe)
    if not isinstance(x_init, np.ndarray) or x_init.ndim != 2:
        raise TypeError(f"x_init must be a NumPy array (n, d); got {type(x_init).__name__}")
    gen = resolve_rng(rng)
    ode = ProbabilityFlowODE(process, score)
    ref = reference_ode_solution(ode, x_init, t_max, t_min) if reference is None else np.asarray(reference)
    if ref.shape != x_init.shape:
        raise ValueError(f"reference must have x_init's shape {x_init.shape}; got {ref.shape}")
    clock = time.perf_counter()
    history: list[float] = []
    solvers = {m: get_solver(m) for m in methods}

    def run(ts: np.ndarray, schedule: tuple[str, ...]) -> float:
        solver = solvers[schedule[0]] if len(set(schedule)) == 1 else PerStepSolver(schedule)
        try:
            err = _error(integrate(ode, x_init, ts, solver).x, ref, objective)
        except (FloatingPointError, ValueError):
            err = _FAILED
        err = err if math.isfinite(err) else _FAILED
        history.append(min(err, history[-1]) if history else err)
        return err

    # stage 1: screen the schedules on the init grid (one run each)
    screened = sorted(
        ((run(time_grid(process, len(s), t_min=t_min, t_max=t_max, kind=init), s), s) for s in schedules),
        key=lambda pair: pair[0],
    )
    init_error, best = screened[0][0], (screened[0][0], None, screened[0][1])
    # stage 2: tune the grid of the best few; every evaluation is recorded, the best one kept
    for _, schedule in screened[:top_k]:
        theta, error = _tune(process, schedule, run, starts, maxiter, gen, init, family, t_min, t_max)
        if error < best[0]:
            best = (error, theta, schedule)
    error, theta, schedule = best
    n = len(schedule)
    ts = (
        time_grid(process, n, t_min=t_min, t_max=t_max, kind=init)
        if theta is None
        else grid_from_parameters(process, theta, t_min=t_min, t_max=t_max, family=family, steps=n)
    )
    lo, hi = _log_snr_range(process, t_min, t_max)
    return GridSearchResult(
        ts=ts,
        methods=schedule,
        error=error,
        init_error=init_error,
        nfe=sum(solvers[m].nfe_per_step for m in schedule),
        log_snr_fractions=np.diff(np.asarray(process.log_snr(ts), dtype=np.float64)) / (hi - lo),
        history=np.asarray(history),
        evaluations=len(history),
        seconds=time.perf_counter() - clock,
        objective=objective,
        model_evaluations=len(history) * nfe,
    )
