"""The solver contract: advance one step, declare an order and what the dynamics must offer."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

from diffcore._validation import check_choice
from diffcore.dynamics import AbstractDynamics, AbstractReverseDynamics
from diffcore.processes import AbstractLinearSDE, AbstractProcess

__all__ = ["AbstractSolver", "Requirements"]

Array = Any

_SHIFTS = ("forbidden", "allowed", "required")
_NOISES = ("none", "reverse", "any")


@dataclass(frozen=True)
class Requirements:
    """What a solver needs of the dynamics it integrates, declared as class data and checked once by the driver.

    Attributes
    ----------
    dynamics : the class the dynamics must be an instance of: :class:`~diffcore.AbstractDynamics`
        (only ``drift`` and ``diffusion`` are used: Runge–Kutta methods, Euler–Maruyama),
        :class:`~diffcore.AbstractReverseDynamics` (the step uses ``dynamics.process`` and
        ``dynamics.score``) or a narrower one (``GraphReverseSDE`` for S4).
    process : for reverse dynamics, the class ``dynamics.process`` must be:
        :class:`~diffcore.processes.AbstractLinearSDE` (coefficients ``f``, ``g^2`` and exact
        transitions, possibly coordinate-wise: ``pc``, S4) or
        :class:`~diffcore.processes.AbstractProcess` (the scalar schedule ``alpha``, ``sigma``,
        log-SNR: DDIM, ancestral, the exponential integrators); ``None`` when not used.
    shift : ``"forbidden"`` (the step writes ``x_t = alpha x_0 + sigma eps`` without the mean
        ``mu`` of a mean-reverting process), ``"allowed"`` (it uses only the drift, which
        carries ``mu``) or ``"required"`` (it handles ``mu`` itself: MRS).
    noise : ``"none"`` (an ODE solver: the dynamics must have zero diffusion), ``"reverse"``
        (the reverse SDE with ``noise_scale = 1``, the one member of the family the step is
        derived for) or ``"any"`` (any diffusion, zero included).  Solvers with noise draw it
        from the driver's ``rng`` and are ``stochastic``.

    :meth:`unmet` says why dynamics do not qualify (``None`` when they do); the tests use it
    to derive which solver runs on which problem.
    """

    dynamics: type = AbstractDynamics
    process: type | None = None
    shift: str = "allowed"
    noise: str = "none"

    def __post_init__(self) -> None:
        check_choice("shift", self.shift, _SHIFTS)
        check_choice("noise", self.noise, _NOISES)
        if self.process is not None and not issubclass(self.dynamics, AbstractReverseDynamics):
            raise ValueError("a process requirement needs reverse dynamics (dynamics=AbstractReverseDynamics)")

    def unmet(self, dynamics: AbstractDynamics, who: str = "the solver") -> tuple[type[Exception], str] | None:
        """``(exception type, message)`` for the first requirement ``dynamics`` fails; ``None`` if it meets them all."""
        if not isinstance(dynamics, self.dynamics):
            need = (
                "ReverseSDE or ProbabilityFlowODE dynamics"
                if self.dynamics is AbstractReverseDynamics
                else f"{self.dynamics.__name__} dynamics"
            )
            return TypeError, f"{who} steps with the forward process, so it needs {need}; got {type(dynamics).__name__}"
        process = getattr(dynamics, "process", None)
        if self.process is not None and not isinstance(process, self.process):
            kind = (
                "the scalar schedule alpha(t), sigma(t) of an AbstractProcess"
                if self.process is AbstractProcess
                else f"a {self.process.__name__}"
            )
            return TypeError, (
                f"{who} needs {kind}; the process of {type(dynamics).__name__} is {type(process).__name__}"
                + (" (coordinate-wise coefficients)" if isinstance(process, AbstractLinearSDE) else "")
            )
        has_shift = process is not None and getattr(process, "shift", None) is not None
        if self.shift == "forbidden" and has_shift:
            return ValueError, (
                f"{who} assumes x_t = alpha x_0 + sigma eps without a mean shift; {type(process).__name__} has "
                f"mean mu"
            )
        if self.shift == "required" and not has_shift:
            return ValueError, (
                f"{who} integrates the reverse dynamics of a process with a mean shift (a MeanRevertingSDE); "
                f"got {type(process).__name__}, which has none"
            )
        if self.noise == "none" and dynamics.stochastic:
            return ValueError, (
                f"{who} integrates ODEs (zero diffusion); got {type(dynamics).__name__}, whose diffusion is "
                f"non-zero ({_noise_of(dynamics)})"
            )
        if self.noise == "reverse":
            scale = getattr(dynamics, "noise_scale", None)
            if scale != 1:
                return ValueError, f"{who} samples the reverse SDE with noise_scale 1; got noise_scale {scale}"
        return None

    def check(self, dynamics: AbstractDynamics, who: str = "the solver") -> None:
        """Raise (``TypeError`` or ``ValueError``) unless ``dynamics`` meets these requirements.

        The message is :meth:`unmet`'s, followed by the solvers of :data:`~diffcore.SOLVERS` that
        do apply to ``dynamics``, read from their declarations.
        """
        problem = self.unmet(dynamics, who)
        if problem is not None:
            from diffcore.samplers._registry import SOLVERS  # the registry imports every solver module

            exc, message = problem
            fits = [name for name, cls in SOLVERS.items() if cls.requires.unmet(dynamics) is None]
            raise exc(f"{message}; the solvers that apply here: {', '.join(fits) or 'none of diffcore.SOLVERS'}")

    def __and__(self, other: Requirements) -> Requirements:
        """The requirements of a solver that takes steps of both (a per-step schedule of methods)."""

        def narrower(a: type | None, b: type | None) -> type | None:
            if a is None or b is None:
                return a or b
            if issubclass(a, b):
                return a
            if issubclass(b, a):
                return b
            raise ValueError(f"no dynamics can be both {a.__name__} and {b.__name__}")

        shifts = {self.shift, other.shift} - {"allowed"}
        if len(shifts) > 1:
            raise ValueError("one solver forbids a mean shift and the other requires one")
        noises = {self.noise, other.noise} - {"any"}
        if len(noises) > 1:
            raise ValueError(f"noise requirements {self.noise!r} and {other.noise!r} exclude each other")
        return Requirements(
            dynamics=narrower(self.dynamics, other.dynamics),
            process=narrower(self.process, other.process),
            shift=shifts.pop() if shifts else "allowed",
            noise=noises.pop() if noises else "any",
        )


#: the requirements of solvers that step with the scalar schedule of the probability-flow ODE
#: (DDIM, the exponential integrators, EDM Heun, BDIA, momentum)
SCALAR_ODE = Requirements(dynamics=AbstractReverseDynamics, process=AbstractProcess, shift="forbidden", noise="none")


class AbstractSolver(abc.ABC):
    """One step of a time discretisation of :class:`~diffcore.dynamics.AbstractDynamics`.

    To add a solver, subclass this, set the class data below and write :meth:`step`; the
    driver :func:`~diffcore.integrate` owns the loop, the noise, the NFE count, the check of
    the declared :attr:`requires` and the check of the model's outputs, and the test-suite
    reads ``order`` as the oracle for a measured convergence slope and ``requires`` to decide
    on which problems the solver runs.

    Class data
    ----------
    name : the string accepted by :func:`~diffcore.sample`.
    order : the global order: of the error of ``x`` at the end (pathwise) for ODE solvers,
        of the error in law (weak order) for stochastic ones.
    requires : :class:`Requirements`, what the step needs of the dynamics.
    grid : the time grid the method is designed for and measured on (``"uniform"``,
        ``"log_snr"`` for the exponential integrators, ``"edm"``); see :func:`~diffcore.time_grid`.
    stochastic : derived from ``requires.noise``: whether the solver draws noise (and
        :func:`~diffcore.sample` gives it the reverse SDE rather than the probability-flow ODE).
    affine_step : whether a step is affine in ``(state, noise)`` when the model is affine in the
        state (Gaussian data), so that :func:`~diffcore.testing.propagate_gaussian_law` gives
        its output law exactly; a property of the instance where it depends on the options
        (``pc`` and S4 are affine only without their Langevin corrector).  Read it from an
        instance (``get_solver(name).affine_step``).
    """

    name: ClassVar[str]
    order: ClassVar[int]
    requires: ClassVar[Requirements] = Requirements()
    grid: ClassVar[str] = "uniform"
    stochastic: ClassVar[bool] = False
    affine_step: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("requires"), Requirements):
            cls.stochastic = cls.requires.noise != "none"

    @property
    def noise_draws(self) -> int:
        """Number of standard-normal arrays shaped like ``x`` consumed by one step."""
        return 1 if self.stochastic else 0

    @property
    def nfe_per_step(self) -> int:
        """Score evaluations in one step, as declared (the driver counts the true number)."""
        return 1

    def check_dynamics(self, dynamics: AbstractDynamics) -> None:
        """Raise unless ``dynamics`` meets :attr:`requires` (what the driver checks once)."""
        self.requires.check(dynamics, self.name)

    @abc.abstractmethod
    def step(
        self, dynamics: AbstractDynamics, x: Array, t0: float, t1: float, noise: Array | None, state: Any
    ) -> tuple[Array, Any]:
        """Advance ``x`` from ``t0`` to ``t1``; return the new state and solver state.

        ``noise`` has shape ``(noise_draws, *x.shape)`` (or is ``None`` when no draws are
        needed); the step is a deterministic function of its arguments.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _noise_of(dynamics: AbstractDynamics) -> str:
    if isinstance(dynamics, AbstractReverseDynamics):
        return f"noise_scale {dynamics.noise_scale}"
    return f"diffusion(t) = {dynamics.diffusion(0.5)} at t = 0.5"
