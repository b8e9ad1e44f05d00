r"""GITS-style time schedules: dynamic programming over a fine candidate grid against a teacher trajectory.

Chen, Zhou et al., "On the Trajectory Regularity of ODE-based Diffusion Sampling" (ICML 2024,
arXiv:2405.11326, sec. 4): the sampling trajectories of the probability-flow ODE are regular
enough that one schedule found on a few calibration samples serves all.  With candidate times
``tau_0 = t_max > tau_1 > ... > tau_M = t_min`` (here uniform in log-SNR) and the teacher
trajectory ``x*(tau_m)`` of every calibration point (here DOP853 at rtol = atol = 1e-12, chained
from candidate to candidate; the paper uses a many-step solver), the cost of one coarse step
``tau_i -> tau_j`` is the RMS over calibration points of its local error

.. math::
    C_{ij} = \Big(\frac{1}{n}\sum_k \big|\Phi_{\tau_i \to \tau_j}(x^*_k(\tau_i)) - x^*_k(\tau_j)\big|^2\Big)^{1/2},

``Phi`` one step of the method, and the ``K``-step schedule is the path ``0 = m_0 < m_1 < ...
< m_K = M`` of least total cost ``sum_k C_{m_{k-1} m_k}``, found exactly by dynamic programming
(``D_k(j) = min_{i < j} D_{k-1}(i) + C_{ij}``; ``O(K M^2)`` after the ``M (M + 1) / 2`` one-step
runs of the cost matrix).  On a family the cost matrices of the problems, each divided by its
median entry (scale-free, as the log in :func:`~diffcore.search.optimize_schedule`), are averaged.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import resolve_rng
from diffcore._validation import check_array, check_choice, check_scalar_time, check_size, check_steps
from diffcore.dynamics import ProbabilityFlowODE
from diffcore.samplers import SCHEDULABLE_METHODS, get_solver, integrate
from diffcore.search._grid import _check_interval, _Counted, _grid_of_cumulative, _log_snr_range, grid_from_fractions
from diffcore.testing import Problem, reference_ode_solution

__all__ = ["GITSResult", "gits_grid", "gits_grid_family"]


@dataclass(frozen=True, eq=False)
class GITSResult:
    """The result of :func:`gits_grid` / :func:`gits_grid_family`.

    Attributes
    ----------
    ts : the schedule on the (first) problem's process, NumPy ``(steps + 1,)``, ``t_max`` to ``t_min``.
    log_snr_fractions : ``(steps,)`` log-SNR increments as fractions of the range (transferable).
    path : the indices ``0 = m_0 < ... < m_K = M`` of the chosen candidates.
    cost : the least total cost ``sum_k C_{m_{k-1} m_k}`` (normalised costs on a family).
    cost_matrix : ``C``, ``(M + 1, M + 1)``, ``inf`` on and below the diagonal.
    candidates : the candidates' cumulative log-SNR fractions, ``(M + 1,)`` from 0 to 1.
    method : the one-step method of the cost; ``nfe``: ``steps x`` its cost per step.
    seconds : wall time of the whole construction (teacher, cost matrix, DP).
    model_evaluations : batched model calls of the one-step runs; ``teacher_evaluations``: of the teacher.
    """

    ts: np.ndarray
    log_snr_fractions: np.ndarray
    path: tuple[int, ...]
    cost: float
    cost_matrix: np.ndarray
    candidates: np.ndarray
    method: str
    nfe: int
    seconds: float
    model_evaluations: int
    teacher_evaluations: int

    def grid(
        self, process: Any, *, t_min: float | None = None, t_max: float | None = None, steps: int | None = None
    ) -> np.ndarray:
        """The schedule carried to ``process``, ``[t_min, t_max]`` and ``steps`` (:func:`grid_from_fractions`)."""
        t_min = float(self.ts[-1]) if t_min is None else check_scalar_time(t_min, "t_min")
        t_max = float(self.ts[0]) if t_max is None else check_scalar_time(t_max, "t_max")
        return grid_from_fractions(process, self.log_snr_fractions, t_min=t_min, t_max=t_max, steps=steps)



def _cost_matrix(
    process: Any, score: Any, x: np.ndarray, cum: np.ndarray, solver: Any, t_min: float, t_max: float
) -> tuple[np.ndarray, int, int]:
    model = _Counted(score)
    ode = ProbabilityFlowODE(process, model)
    taus = _grid_of_cumulative(process, cum, t_min, t_max)
    teacher = [x]
    for a, b in itertools.pairwise(taus):
        teacher.append(reference_ode_solution(ode, teacher[-1], float(a), float(b)))
    teacher_calls, model.calls = model.calls, 0
    m = len(taus)
    cost = np.full((m, m), math.inf)
    for i in range(m - 1):
        for j in range(i + 1, m):
            try:
                y = np.asarray(integrate(ode, teacher[i], taus[[i, j]], solver).x)
                c = float(np.sqrt(np.mean(np.sum((y - teacher[j]) ** 2, axis=1))))
            except (FloatingPointError, ValueError):
                c = math.inf
            cost[i, j] = c if math.isfinite(c) else math.inf
    return cost, model.calls, teacher_calls


def _shortest_path(cost: np.ndarray, steps: int) -> tuple[float, tuple[int, ...]]:
    """The ``steps``-edge path ``0 -> M`` of least total cost over the upper triangle of ``cost``."""
    m = cost.shape[0]
    d = np.full((steps + 1, m), math.inf)
    arg = np.zeros((steps + 1, m), dtype=int)
    d[0, 0] = 0.0
    for k in range(1, steps + 1):
        for j in range(1, m):
            tot = d[k - 1, :j] + cost[:j, j]
            arg[k, j] = int(np.argmin(tot))
            d[k, j] = tot[arg[k, j]]
    path = [m - 1]
    for k in range(steps, 0, -1):
        path.append(int(arg[k, path[-1]]))
    return float(d[steps, m - 1]), tuple(reversed(path))


def _gits(
    cases: list[tuple[Any, Any, np.ndarray]], steps: Any, method: str, candidates: Any, t_min: Any, t_max: Any
) -> GITSResult:
    steps = check_steps(steps)
    check_choice("method", method, SCHEDULABLE_METHODS)
    candidates = check_steps(candidates, "candidates")
    if candidates < steps:
        raise ValueError(f"candidates must be >= steps = {steps} (one candidate per step at least); got {candidates}")
    t_min, t_max = _check_interval(t_min, t_max)
    for process, _, _ in cases:
        _log_snr_range(process, t_min, t_max)
    clock = time.perf_counter()
    solver = get_solver(method)
    cum = np.linspace(0.0, 1.0, candidates + 1)
    total, calls, teacher_calls = np.zeros((candidates + 1, candidates + 1)), 0, 0
    for process, score, x in cases:
        c, n_calls, n_teacher = _cost_matrix(process, score, x, cum, solver, t_min, t_max)
        scale = float(np.median(c[np.isfinite(c)])) if len(cases) > 1 else 1.0
        total, calls, teacher_calls = total + c / scale, calls + n_calls, teacher_calls + n_teacher
    total /= len(cases)
    cost, path = _shortest_path(total, steps)
    frac = np.diff(cum[list(path)])
    return GITSResult(
        ts=_grid_of_cumulative(cases[0][0], cum[list(path)], t_min, t_max),
        log_snr_fractions=frac,
        path=path,
        cost=cost,
        cost_matrix=total,
        candidates=cum,
        method=method,
        nfe=steps * solver.nfe_per_step,
        seconds=time.perf_counter() - clock,
        model_evaluations=calls,
        teacher_evaluations=teacher_calls,
    )


def gits_grid(
    process: Any,
    score: Callable[[Any, Any], Any],
    x_calib: Any,
    steps: int,
    *,
    method: str = "ddim",
    candidates: int = 40,
    t_min: float = 1e-3,
    t_max: float = 1.0,
) -> GITSResult:
    r"""The ``steps``-step schedule of least summed local error of ``method`` on a teacher trajectory (GITS).

    The cost matrix and the dynamic programme of the module docstring (Chen, Zhou et al. 2024,
    sec. 4.2, eq. 9), on ``candidates + 1`` times uniform in log-SNR from ``t_max`` to ``t_min``,
    with the teacher the DOP853 solution from ``x_calib`` (``(n, d)`` NumPy points at ``t_max``,
    e.g. draws of the marginal or the prior).  The cost is that of *one* step of ``method`` from the
    teacher point; for a multistep method that is its first (warm-up) step, as GITS takes DDIM's cost
    for every solver.  Cost of the construction: ``(M + 1) M / 2`` one-step runs and ``M`` DOP853
    segments (:attr:`GITSResult.model_evaluations`, :attr:`GITSResult.teacher_evaluations`).

    Raises ``ValueError`` for an unknown method, ``candidates < steps``, ``t_min`` outside
    ``(0, t_max)`` or a process without a finite log-SNR there; ``TypeError`` for ``x_calib`` not
    a NumPy array ``(n, d)``.

    Example
    -------
    >>> from diffcore import VPSDE, Gaussian, exact_score
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), 0.1 * np.eye(2))
    >>> res = gits_grid(p, exact_score(p, data), p.prior_sample((8, 2), rng=0), 3, candidates=6)
    >>> len(res.ts), res.path[0], res.path[-1], res.nfe
    (4, 0, 6, 3)
    """
    if not isinstance(x_calib, np.ndarray):
        raise TypeError(f"x_calib must be a NumPy array (n, d); got {type(x_calib).__name__}")
    x_calib = np.asarray(check_array("x_calib", x_calib, ndim=2), dtype=np.float64)
    return _gits([(process, score, x_calib)], steps, method, candidates, t_min, t_max)


def gits_grid_family(
    problems: Sequence[Problem],
    steps: int,
    *,
    method: str = "ddim",
    candidates: int = 40,
    n_calib: int = 32,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    rng: Any = None,
) -> GITSResult:
    r""":func:`gits_grid` on a family: the mean of the problems' cost matrices (each over its median) is optimised.

    ``n_calib`` exact draws of ``x_{t_max}`` per problem are the calibration points.  Raises
    ``ValueError`` for an empty family (naming ``problems``), and as :func:`gits_grid`.

    Example
    -------
    >>> from diffcore.search import training_family
    >>> res = gits_grid_family(training_family(2, dims=(2, 3), rng=0), 3, candidates=6, n_calib=4, rng=0)
    >>> len(res.log_snr_fractions), bool(abs(res.log_snr_fractions.sum() - 1) < 1e-12)
    (3, True)
    """
    problems = list(problems) if not isinstance(problems, Problem) else [problems]
    if not problems:
        raise ValueError("problems (the training family) is empty; give at least one Problem")
    for p in problems:
        if not isinstance(p, Problem):
            raise TypeError(f"problems must be diffcore.testing.Problem objects; got {type(p).__name__}")
    n_calib = check_size(n_calib, "n_calib")
    if n_calib < 1:
        raise ValueError(f"n_calib must be >= 1; got {n_calib}")
    gen = resolve_rng(rng)
    t_max_f = check_scalar_time(t_max, "t_max")
    cases = [
        (p.process, p.flow_model(), np.asarray(p.sample_marginal(n_calib, t_max_f, rng=gen), dtype=np.float64))
        for p in problems
    ]
    return _gits(cases, steps, method, candidates, t_min, t_max)
