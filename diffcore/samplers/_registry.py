"""The one list of solvers that ``sample`` (and the test-suite) knows by name."""

from __future__ import annotations

from typing import Any

from diffcore.samplers._base import AbstractSolver
from diffcore.samplers._ddim import DDIM
from diffcore.samplers._ode import RK4, Euler, Heun
from diffcore.samplers._pc import PredictorCorrector
from diffcore.samplers._sde import Ancestral, EulerMaruyama

__all__ = ["SOLVERS", "get_solver"]

#: name -> solver class; ODE solvers first, then the reverse-SDE samplers
SOLVERS: dict[str, type[AbstractSolver]] = {
    cls.name: cls for cls in (Euler, Heun, RK4, DDIM, EulerMaruyama, Ancestral, PredictorCorrector)
}


def get_solver(method: Any) -> AbstractSolver:
    """A solver object from a name in :data:`SOLVERS` (or the object itself)."""
    if isinstance(method, AbstractSolver):
        return method
    if isinstance(method, str):
        if method not in SOLVERS:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(SOLVERS)}")
        return SOLVERS[method]()
    raise TypeError(f"method must be a solver name or an AbstractSolver; got {type(method).__name__}")
