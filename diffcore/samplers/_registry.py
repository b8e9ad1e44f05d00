"""The one list of solvers that ``sample`` (and the test-suite) knows by name."""

from __future__ import annotations

from typing import Any

from diffcore.samplers._adaptive import Adaptive
from diffcore.samplers._base import AbstractSolver
from diffcore.samplers._bdia import BDIA
from diffcore.samplers._ddim import DDIM
from diffcore.samplers._deis import DEIS1, DEIS2, DEIS3
from diffcore.samplers._dpm import DPMSolver2, DPMSolver3, DPMSolverPP2M, DPMSolverPP3M
from diffcore.samplers._dpm_v3 import DPMSolverV3
from diffcore.samplers._edm import EDMHeun, EDMStochastic
from diffcore.samplers._evodiff import EVODiff
from diffcore.samplers._ipndm import IPNDM
from diffcore.samplers._lml import LMLPredictorCorrector
from diffcore.samplers._momentum import GHVB, HeavyBall
from diffcore.samplers._mrs import MRSODE, MRSSDE
from diffcore.samplers._ode import RK4, Euler, Heun, Midpoint, RK4ThreeEighths
from diffcore.samplers._pc import PredictorCorrector
from diffcore.samplers._residual import RDDMSampler, ResShiftSampler
from diffcore.samplers._sde import Ancestral, EulerMaruyama
from diffcore.samplers._unipc import UniPC2, UniPC2BH1, UniPC3, UniPC3BH1

__all__ = ["ADAPTIVE_SOLVERS", "SOLVERS", "get_solver"]

#: name -> solver class; ODE solvers first, then the reverse-SDE samplers, then those for processes
#: with a mean shift (``requires.shift == "required"``)
SOLVERS: dict[str, type[AbstractSolver]] = {
    cls.name: cls
    for cls in (
        Euler,
        Heun,
        Midpoint,
        RK4,
        RK4ThreeEighths,
        DDIM,
        DPMSolver2,
        DPMSolver3,
        DPMSolverPP2M,
        DPMSolverPP3M,
        DPMSolverV3,
        DEIS1,
        DEIS2,
        DEIS3,
        UniPC2,
        UniPC3,
        UniPC2BH1,
        UniPC3BH1,
        EVODiff,
        IPNDM,
        EDMHeun,
        HeavyBall,
        GHVB,
        BDIA,
        EulerMaruyama,
        Ancestral,
        PredictorCorrector,
        LMLPredictorCorrector,
        EDMStochastic,
        MRSODE,
        MRSSDE,
        RDDMSampler,
        ResShiftSampler,
    )
}


#: name -> adaptive solver class: no convergence order in the number of grid steps (the error is
#: set by rtol/atol), so kept apart from :data:`SOLVERS`, whose members the tests hold to a
#: measured order and to ``nfe == steps * nfe_per_step``
ADAPTIVE_SOLVERS: dict[str, type[AbstractSolver]] = {Adaptive.name: Adaptive}


def get_solver(method: Any, **options: Any) -> AbstractSolver:
    """A solver object from a name in :data:`SOLVERS` or :data:`ADAPTIVE_SOLVERS` (or the object itself).

    ``options`` go to the solver's constructor, e.g. ``get_solver("adaptive", rtol=1e-6)`` or
    ``get_solver("bdia", gamma=0.5)``; they cannot be given with a solver object.
    """
    if isinstance(method, AbstractSolver):
        if options:
            raise TypeError(
                f"solver options {sorted(options)} apply to a method name, not to the solver object {method!r}"
            )
        return method
    if isinstance(method, str):
        classes = {**SOLVERS, **ADAPTIVE_SOLVERS}
        if method not in classes:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(classes)}")
        try:
            return classes[method](**options)
        except TypeError as err:
            raise TypeError(f"bad options {sorted(options)} for method {method!r}: {err}") from None
    raise TypeError(f"method must be a solver name or an AbstractSolver; got {type(method).__name__}")
