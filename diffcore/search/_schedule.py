r"""Schedule search over a *family* of problems: grids, per-step methods and coefficients, tuned jointly.

Align Your Steps (Sabour, Fidler & Kreis, ICML 2024, arXiv:2404.14507) optimises the time
schedule of one solver on a family of data (not on one problem) and carries it to other step
counts by log-linear interpolation; the solver-search papers (S³: Liu et al., ICLR 2024,
arXiv:2312.07243; AutoDiffusion: Li et al., ICCV 2023, arXiv:2309.10438; "Hyperparameters are
all you need", 2024) search the steps, the method/order of every step and a few continuous
coefficients of the solver.  :func:`optimize_schedule` is both with one mechanism:

* a **discrete** part, the sequence of methods ``M = (M_1, ..., M_N)`` whose costs add up to the
  budget exactly (so the number of steps ``N`` and the order of every step are searched), and
* a **continuous** vector ``v = (theta, c)``: the ``N - 1`` softmax logits ``theta`` of the grid in
  log-SNR fractions (:func:`~diffcore.search.grid_from_parameters`) and, with
  ``coefficients="score_scale"``, the two coefficients ``c = (a, b)`` of a scaling
  ``exp(a + b u)`` of the model output along log-SNR time (:class:`~diffcore.search.ScoreScale`).

The objective is the mean over the training problems of ``log E_p(M, v)``, ``E_p`` the RMS
pathwise error at ``t_min`` against DOP853 from exact draws of ``x_{t_max}``; the log makes the
mean scale-free (a 16-D problem whose errors are ten times those of a 2-D one does not drown it,
and halving the error on any problem counts the same).  Every sequence is screened on the
log-SNR grid with ``c = 0``; the ``top_k`` best are tuned by Nelder–Mead over ``v``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from diffcore._array import resolve_rng
from diffcore._validation import check_choice, check_size, check_steps
from diffcore.distributions import GaussianMixture
from diffcore.dynamics import ProbabilityFlowODE
from diffcore.processes import VPSDE, AbstractProcess
from diffcore.samplers import PerStepSolver, get_solver, integrate, time_grid
from diffcore.search._grid import (
    _FAILED,
    GRID_INITS,
    SEARCH_OBJECTIVES,
    GridSearchResult,
    ScoreScale,
    _check_budget,
    _check_interval,
    _check_methods,
    _Counted,
    _cumulative_fractions,
    _error,
    _grid_of_cumulative,
    _log_snr_range,
    _parameters_of,
)
from diffcore.testing import Problem, reference_ode_solution

__all__ = ["SCHEDULE_COEFFICIENTS", "optimize_schedule", "training_family"]

#: the continuous coefficients a schedule search may tune with the grid
SCHEDULE_COEFFICIENTS = ("none", "score_scale")
_MAX_SCREEN = 256  # sequences screened at most; beyond, a random sample of them (AutoDiffusion's space)


def training_family(
    n: int,
    *,
    dims: tuple[int, int] = (2, 16),
    components: tuple[int, int] = (1, 4),
    process: AbstractProcess | None = None,
    rng: Any = None,
) -> list[Problem]:
    r"""``n`` random Gaussian-mixture problems to tune schedules on (never the problems reported on).

    Problem ``i``: dimension ``d ~ U{dims}``, ``k ~ U{components}`` components with weights
    ``w ~ Dirichlet(1, ..., 1)``, means ``1.5 z_j`` (``z_j ~ N(0, I_d)``) and covariances
    ``Q_j diag(lam_j) Q_j^T`` with a random rotation ``Q_j`` and eigenvalues log-uniform in
    ``[0.01, 1]`` (anisotropic, condition numbers up to 100), under ``process`` (default
    :class:`~diffcore.VPSDE`).  Every marginal, score and the DOP853 reference are exact
    (:class:`~diffcore.testing.Problem`).  The family of Align Your Steps (Sabour et al. 2024,
    sec. 3) is a data set; here it is a distribution over analytic laws.

    Parameters
    ----------
    n : the number of problems (>= 1).
    dims, components : inclusive ranges ``(lo, hi)`` of the dimension and of the number of components.
    process : the forward process of every problem.
    rng : ``None``, a seed or a ``numpy.random.Generator``.

    Returns a list of :class:`~diffcore.testing.Problem` named ``"train0"``, ``"train1"``, ...

    Example
    -------
    >>> fam = training_family(3, dims=(2, 4), rng=0)
    >>> [p.name for p in fam], all(2 <= p.dim <= 4 for p in fam)
    (['train0', 'train1', 'train2'], True)
    """
    n = check_steps(n, "n")
    lo_d, hi_d = _check_range("dims", dims)
    lo_k, hi_k = _check_range("components", components)
    process = VPSDE() if process is None else process
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    gen = resolve_rng(rng)
    if not isinstance(gen, np.random.Generator):
        raise TypeError(f"rng must be None, a seed or a numpy.random.Generator; got {type(rng).__name__}")
    out = []
    for i in range(n):
        d, k = int(gen.integers(lo_d, hi_d + 1)), int(gen.integers(lo_k, hi_k + 1))
        covs = []
        for _ in range(k):
            q, _ = np.linalg.qr(gen.standard_normal((d, d)))
            covs.append((q * np.exp(gen.uniform(math.log(0.01), 0.0, d))) @ q.T)
        data = GaussianMixture(gen.dirichlet(np.ones(k)), 1.5 * gen.standard_normal((k, d)), np.stack(covs))
        out.append(Problem(f"train{i}", process, data=data, description=f"training mixture: {k} components, {d}-D"))
    return out


def _check_range(name: str, value: Any) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi) of integers; got {value!r}") from None
    if not 1 <= lo <= hi:
        raise ValueError(f"{name} must satisfy 1 <= lo <= hi; got {value!r}")
    return lo, hi



class _Case:
    """One training problem: exact draws at ``t_max``, their DOP853 reference at ``t_min``."""

    def __init__(self, problem: Problem, n_points: int, t_min: float, t_max: float, gen: Any) -> None:
        self.process = problem.process
        _log_snr_range(self.process, t_min, t_max)  # a finite log-SNR, or a ValueError naming it
        self.model = _Counted(problem.flow_model())
        self.x = np.asarray(problem.sample_marginal(n_points, t_max, rng=gen), dtype=np.float64)
        self.ref = reference_ode_solution(ProbabilityFlowODE(self.process, self.model), self.x, t_max, t_min)
        self.reference_calls, self.model.calls = self.model.calls, 0


def _sequences(methods: tuple[str, ...], nfe: int, gen: Any) -> list[tuple[str, ...]]:
    """The method sequences of total cost ``nfe`` (>= 2 steps): all of them, or at most ``_MAX_SCREEN``
    drawn uniformly (by counting the completions of every prefix) plus the one-method sequences."""
    cost = {m: get_solver(m).nfe_per_step for m in methods}
    count = [0] * (nfe + 1)  # count[r]: sequences of cost exactly r
    count[0] = 1
    for r in range(1, nfe + 1):
        count[r] = sum(count[r - cost[m]] for m in methods if cost[m] <= r)
    if count[nfe] <= _MAX_SCREEN:
        return _check_budget(methods, nfe)
    found = {(m,) * (nfe // cost[m]) for m in methods if nfe % cost[m] == 0 and nfe // cost[m] >= 2}
    while len(found) < min(_MAX_SCREEN, count[nfe] - len(methods)):
        seq, left = [], nfe
        while left:
            options = [m for m in methods if cost[m] <= left]
            w = np.array([count[left - cost[m]] for m in options], dtype=float)
            seq.append(options[int(gen.choice(len(options), p=w / w.sum()))])
            left -= cost[seq[-1]]
        if len(seq) >= 2:
            found.add(tuple(seq))
    return sorted(found)


def _options(v0: np.ndarray, maxiter: int | None) -> dict[str, Any]:
    return {"maxfev": maxiter or 50 * len(v0), "xatol": 1e-4, "fatol": 1e-6}


def optimize_schedule(
    problems: Sequence[Problem],
    *,
    nfe: int,
    methods: Any = ("dpm_solver_pp_2m",),
    coefficients: str = "none",
    n_points: int = 64,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    objective: str = "pathwise",
    starts: int = 2,
    maxiter: int | None = None,
    top_k: int = 2,
    rng: Any = None,
) -> GridSearchResult:
    r"""Tune a reusable schedule (grid, per-step methods, coefficients) on a training family at ``nfe``.

    Minimises ``J(M, v) = (1/P) sum_p log E_p(M, v)`` (module docstring), where ``E_p`` is the
    RMS (``objective="pathwise"``) or largest (``"max"``) distance at ``t_min`` between the
    probability-flow ODE solved by the method sequence ``M`` on the grid of ``v`` and its DOP853
    reference (rtol = atol = 1e-12), from ``n_points`` exact draws of ``x_{t_max}`` of problem ``p``.
    The grid is shared in log-SNR *fractions*, so each problem gets it on its own process.

    Stage 1 screens every method sequence of total cost ``nfe`` (at most 256, drawn at random
    beyond that) on the log-SNR grid with unscaled output; stage 2 runs Nelder–Mead over ``v``
    for the ``top_k`` best sequences: first over the grid logits alone (``c = 0``) from ``starts``
    points (the log-SNR, EDM and uniform grids of the first problem's process, then random
    perturbations of the best), then, when ``coefficients="score_scale"``, over the grid and the
    coefficients ``(a, b)`` of :class:`~diffcore.search.ScoreScale` jointly from the best point,
    so the joint search is never worse than the grid search it extends.  The returned schedule is
    the best evaluated, so its ``error`` (``exp(J)``, the geometric mean of the ``E_p``) is never
    above ``init_error`` (the best screened).

    Parameters
    ----------
    problems : the training family (:func:`training_family`), problems with a finite log-SNR.
    nfe : the budget; every schedule costs exactly ``nfe`` evaluations.
    methods : one name (one method at every step; ``steps = nfe / cost``) or several names from
        :data:`~diffcore.samplers.SCHEDULABLE_METHODS` for a per-step choice.
    coefficients : ``"none"`` or ``"score_scale"`` (:data:`SCHEDULE_COEFFICIENTS`).
    n_points : draws per problem.
    t_min, t_max, objective, starts, maxiter, top_k, rng : as in :func:`~diffcore.search.optimize_grid`.

    Returns
    -------
    GridSearchResult
        ``ts`` on the first problem's process; ``log_snr_fractions`` (the transferable schedule:
        :meth:`~GridSearchResult.grid` for another process, ``t_min`` or number of steps);
        ``coefficients``; the search's cost in ``seconds``, ``evaluations`` (runs of the whole
        family), ``model_evaluations`` and ``reference_evaluations`` (batched model calls).

    Raises
    ------
    ValueError
        for an empty family (naming ``problems``), unknown methods, objective or coefficients, a
        budget below two steps or below a multistep method's order, ``t_min`` outside ``(0, t_max)``.

    Example
    -------
    >>> fam = training_family(2, dims=(2, 3), rng=0)
    >>> res = optimize_schedule(fam, nfe=4, methods="ddim", n_points=8, starts=1, maxiter=20, rng=0)
    >>> res.nfe, res.problems, bool(res.error <= res.init_error)
    (4, 2, True)
    """
    problems = list(problems) if not isinstance(problems, Problem) else [problems]
    if not problems:
        raise ValueError("problems (the training family) is empty; give at least one Problem to tune on")
    for p in problems:
        if not isinstance(p, Problem):
            raise TypeError(f"problems must be diffcore.testing.Problem objects; got {type(p).__name__}")
    nfe = check_steps(nfe, "nfe")
    methods = _check_methods(methods)
    check_choice("objective", objective, SEARCH_OBJECTIVES)
    check_choice("coefficients", coefficients, SCHEDULE_COEFFICIENTS)
    t_min, t_max = _check_interval(t_min, t_max)
    n_points = check_size(n_points, "n_points")
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1; got {n_points}")
    starts, top_k = check_steps(starts, "starts"), check_steps(top_k, "top_k")
    gen = resolve_rng(rng)
    if not isinstance(gen, np.random.Generator):
        raise TypeError(f"rng must be None, a seed or a numpy.random.Generator; got {type(rng).__name__}")
    schedules = _sequences(methods, nfe, gen)  # raises for a budget below two steps or a method's order
    clock = time.perf_counter()
    cases = [_Case(p, n_points, t_min, t_max, gen) for p in problems]
    solvers = {m: get_solver(m) for m in methods}
    n_coef = 2 if coefficients == "score_scale" else 0
    history: list[float] = []

    def run(cum: np.ndarray, schedule: tuple[str, ...], coef: np.ndarray) -> float:
        """``J``: the mean of ``log E_p`` over the family (``_FAILED`` where a run fails)."""
        solver = solvers[schedule[0]] if len(set(schedule)) == 1 else PerStepSolver(schedule)
        total = 0.0
        for c in cases:
            model: Any = c.model if not n_coef else ScoreScale(c.process, c.model, *coef, t_min, t_max)
            try:
                ts = _grid_of_cumulative(c.process, cum, t_min, t_max)
                err = _error(integrate(ProbabilityFlowODE(c.process, model), c.x, ts, solver).x, c.ref, objective)
            except (FloatingPointError, ValueError):
                err = _FAILED
            total += math.log(err if math.isfinite(err) and err > 0 else _FAILED)
        j = total / len(cases)
        history.append(min(j, history[-1]) if history else j)
        return j

    zero = np.zeros(n_coef)
    screened = sorted(
        ((run(np.linspace(0.0, 1.0, len(s) + 1), s, zero), s) for s in schedules), key=lambda pair: pair[0]
    )
    init_j = screened[0][0]
    best: list[Any] = [init_j, np.linspace(0.0, 1.0, len(screened[0][1]) + 1), screened[0][1], zero]
    first = cases[0].process
    for _, schedule in screened[:top_k]:
        n = len(schedule)
        seen: list[Any] = [math.inf, None]

        def f(v: np.ndarray, schedule: tuple[str, ...] = schedule, n: int = n, seen: list[Any] = seen) -> float:
            theta, coef = np.clip(v[: n - 1], -30.0, 30.0), np.clip(v[n - 1 :], -2.0, 2.0)
            cum = _cumulative_fractions(theta, "free", n)
            j = run(cum, schedule, coef)
            if j < seen[0]:
                seen[:] = [j, v.copy()]
            if j < best[0]:
                best[:] = [j, cum, schedule, coef.copy()]
            return j

        from scipy.optimize import minimize

        kinds = list(GRID_INITS)
        for s in range(starts):
            if s < len(kinds):
                grid = time_grid(first, n, t_min=t_min, t_max=t_max, kind=kinds[s])
                v0 = _parameters_of(first, grid, t_min, t_max)
            else:
                v0 = seen[1][: n - 1] + gen.normal(0.0, 0.5, n - 1)
            # the grid alone (coefficients at 0) from every start ...
            minimize(lambda th: f(np.concatenate([th, zero])), v0, method="Nelder-Mead", options=_options(v0, maxiter))
        if n_coef:
            # ... then grid and coefficients jointly from the best point: never worse than the grid alone
            minimize(f, seen[1], method="Nelder-Mead", options=_options(seen[1], maxiter))
    j, cum, schedule, coef = best
    ts = _grid_of_cumulative(first, cum, t_min, t_max)
    return GridSearchResult(
        ts=ts,
        methods=schedule,
        error=math.exp(j),
        init_error=math.exp(init_j),
        nfe=sum(solvers[m].nfe_per_step for m in schedule),
        log_snr_fractions=np.diff(cum),
        history=np.exp(np.asarray(history)),
        evaluations=len(history),
        seconds=time.perf_counter() - clock,
        objective=objective,
        coefficients=tuple(float(c) for c in coef) if n_coef else (),
        model_evaluations=sum(c.model.calls for c in cases),
        reference_evaluations=sum(c.reference_calls for c in cases),
        problems=len(cases),
    )
