r"""A solver schedule: one ODE method per grid step (the "solver schedule" of Liu et al. 2023).

:class:`PerStepSolver` is an :class:`AbstractSolver` that delegates step ``i`` of the grid to
its ``i``-th method, so a searched schedule runs through the one driver
:func:`~diffcore.integrate` like any other solver, with the evaluations of every step counted
honestly (a single-step DPM-Solver-3 step costs 3, a DDIM step 1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from diffcore.samplers._base import AbstractSolver, Requirements
from diffcore.samplers._registry import SOLVERS, get_solver

__all__ = ["SCHEDULABLE_METHODS", "PerStepSolver"]

#: the ODE solvers a schedule may use: deterministic, of fixed cost per step, for processes without
#: a mean shift (those whose declared requirements do not require one)
SCHEDULABLE_METHODS: tuple[str, ...] = tuple(
    name for name, cls in SOLVERS.items() if not cls.stochastic and cls.requires.shift != "required"
)


@dataclass(frozen=True)
class _ScheduleState:
    """The index of the next step and the state of the method now running."""

    i: int = 0
    inner: Any = None


class PerStepSolver(AbstractSolver):
    r"""Step ``i`` of the grid with ``methods[i]``: a per-step solver schedule.

    For a grid ``t_0 > t_1 > ... > t_N`` and methods ``(M_1, ..., M_N)``,
    ``x_{t_i} = M_i(x_{t_{i-1}}; t_{i-1} -> t_i)``.  A run of consecutive steps with the same
    method threads that method's state (the history of a multistep method); where the method
    changes, the new one starts from an empty state (its own warm-up), so mixing multistep
    methods costs them their history; single-step methods (``ddim``, ``dpm_solver_2``,
    ``dpm_solver_3``, ``heun``, ``rk4``, ``edm_heun``) lose nothing.

    Cost: ``sum_i nfe_per_step(M_i)`` evaluations (the driver counts the model's calls).
    ``order`` is the smallest declared order of the methods (the order of the global error as
    the grid is refined with the schedule's proportions kept); :attr:`requires` combines the
    methods' requirements (the narrowest dynamics and process, no shift).

    Parameters
    ----------
    methods : a sequence of names from :data:`SCHEDULABLE_METHODS` (or solver objects of
        those classes), one per grid step; the grid passed to :func:`~diffcore.integrate` must
        have ``len(methods) + 1`` times.

    References
    ----------
    E. Liu, X. Ning, H. Yang, Y. Wang, "A Unified Sampling Framework for Solver Searching of
    Diffusion Probabilistic Models", ICLR 2024 (arXiv:2312.07243), sec. 3–4: a solver
    strategy chosen per step.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian, ProbabilityFlowODE, exact_score, integrate, time_grid
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), np.eye(2))
    >>> solver = PerStepSolver(["dpm_solver_3", "dpm_solver_2", "ddim"])
    >>> ts = time_grid(p, 3, kind="log_snr")
    >>> integrate(ProbabilityFlowODE(p, exact_score(p, data)), np.ones((4, 2)), ts, solver).nfe
    6
    """

    name: ClassVar[str] = "per_step"
    stochastic: ClassVar[bool] = False

    def __init__(self, methods: Any) -> None:
        if isinstance(methods, str) or not hasattr(methods, "__iter__"):
            raise TypeError(f"methods must be a sequence of method names, one per step; got {methods!r}")
        solvers, by_name = [], {}
        for m in methods:
            name = m.name if isinstance(m, AbstractSolver) else m
            if name not in SCHEDULABLE_METHODS:
                raise ValueError(f"unknown per-step method {name!r}; allowed: {', '.join(SCHEDULABLE_METHODS)}")
            # one object per name, so that a run of equal names threads one state
            solvers.append(m if isinstance(m, AbstractSolver) else by_name.setdefault(name, get_solver(name)))
        if not solvers:
            raise ValueError("methods must name at least one method (one per grid step); got none")
        self.solvers: tuple[AbstractSolver, ...] = tuple(solvers)
        self.order = min(s.order for s in solvers)

    @property
    def methods(self) -> tuple[str, ...]:
        """The method name of every step."""
        return tuple(s.name for s in self.solvers)

    @property
    def steps(self) -> int:
        """The number of grid steps the schedule covers."""
        return len(self.solvers)

    @property
    def nfe(self) -> int:
        """Score evaluations of one pass over the schedule."""
        return sum(s.nfe_per_step for s in self.solvers)

    @property
    def nfe_per_step(self) -> int:
        """The largest cost of one step (:attr:`nfe` is the cost of the whole schedule)."""
        return max(s.nfe_per_step for s in self.solvers)

    @property
    def requires(self) -> Requirements:  # type: ignore[override]
        """The combined requirements of the methods (see :meth:`Requirements.__and__`)."""
        return functools.reduce(lambda a, b: a & b, (s.requires for s in self.solvers))

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        i = state.i if isinstance(state, _ScheduleState) else 0
        if i >= len(self.solvers):
            raise ValueError(f"the schedule has {len(self.solvers)} steps; the grid asks for step {i + 1}")
        solver = self.solvers[i]
        same = i > 0 and self.solvers[i - 1] is solver
        inner = state.inner if same else None
        x1, inner1 = solver.step(dynamics, x, t0, t1, None, inner)
        return x1, _ScheduleState(i + 1, inner1)

    def __repr__(self) -> str:
        return f"PerStepSolver({list(self.methods)!r})"
