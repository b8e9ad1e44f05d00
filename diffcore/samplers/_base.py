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
    r"""One step of a time discretisation of :class:`~diffcore.dynamics.AbstractDynamics`: the contract for a solver.

    To add a solver, subclass this, set the class data below and write :meth:`step`.  The driver
    :func:`~diffcore.integrate` owns everything else: the loop over the grid, the noise (drawn
    from its ``rng``), the NFE count, the one check of :attr:`requires` before the first step,
    the check of every model output, and the check that each step's state is finite.  The
    test-suite reads ``order`` as the oracle for a measured convergence slope and ``requires``
    to decide on which problems the solver runs; :mod:`diffcore.testing` reads
    ``affine_step`` and ``noise_draws``.

    Class data
    ----------
    Set on the subclass; where a value depends on constructor options, override it with a
    property, as ``pc`` does for ``affine_step``, ``noise_draws`` and ``nfe_per_step``.

    name : ``str``, required.  The string accepted by :func:`~diffcore.sample` and
        :func:`~diffcore.get_solver` (a solver object works without registering the name).
    order : ``int``, required.  The declared global order ``p``: the error at the end of the
        grid falls as ``h^p``.  Pathwise (strong) error of ``x`` for ODE solvers, error in law
        (weak order) for stochastic ones.
    requires : :class:`Requirements`, default ``Requirements()`` (any dynamics, drift and
        diffusion only, no noise: a Runge–Kutta method).  What :meth:`step` may use of the
        dynamics: ``dynamics.drift(x, t)`` and ``dynamics.diffusion(t)`` always;
        ``dynamics.process`` (``alpha``, ``sigma``, ``log_snr``, ``transition``, ...) and
        ``dynamics.score(x, t)`` only with ``dynamics=AbstractReverseDynamics``.  Its ``noise``
        field decides ``stochastic``.
    grid : ``str``, default ``"uniform"``.  The time grid the method is designed for and
        measured on (``"uniform"``, ``"log_snr"`` for the exponential integrators, ``"edm"``);
        see :func:`~diffcore.time_grid`.  A declaration only: :func:`~diffcore.sample` uses the
        grid the caller asks for.
    stochastic : ``bool``, derived (do not set it): ``requires.noise != "none"``.  Whether the
        solver draws noise, and whether :func:`~diffcore.sample` gives it the reverse SDE
        (``True``) or the probability-flow ODE (``False``).
    affine_step : ``bool``, default ``True``.  Whether a step is affine in ``(x, noise)`` when
        the model is affine in ``x`` (Gaussian data), so that
        :func:`~diffcore.testing.propagate_gaussian_law` gives its output law exactly.  Set it
        to ``False`` when the step couples the points of the batch (a step size from a norm
        over the batch: ``adaptive``, the Langevin corrector of ``pc``).  Read it from an
        instance (``get_solver(name).affine_step``).
    noise_draws : ``int`` property, default ``1`` if ``stochastic`` else ``0``.  How many
        standard-normal arrays shaped like ``x`` one step consumes; the driver draws
        ``noise`` of shape ``(noise_draws, *x.shape)`` before every step (``None`` when 0), in
        step order from one ``rng``, so the same seed gives the same path.
    nfe_per_step : ``int`` property, default ``1``.  The model evaluations of one step, as
        declared (Heun 2, RK4 4); used to compare methods at equal cost.  The driver counts the
        true number in ``Solution.nfe`` independently.

    check_dynamics : inherited, not to be overridden: ``check_dynamics(dynamics)`` raises unless
        ``dynamics`` meets ``requires`` (what the driver does once before the first step).

    The step
    --------
    ``step(dynamics, x, t0, t1, noise, state) -> (x_next, state_next)``: advance ``x`` (shape
    ``(n, ...)``, any array type) from ``t0`` to ``t1`` (floats; ``t1 < t0`` when sampling,
    ``t1 > t0`` when an ODE runs forwards).  It must be a deterministic function of its
    arguments: no global random state (randomness only from ``noise``), no host
    synchronisation (no ``float(array)``, ``.item()`` or Python ``if`` on array values) if it is
    to run on a GPU without stalls, and points must not interact unless ``affine_step`` is
    ``False``.  ``state`` is the solver's own memory between steps: ``None`` before the first
    step, then whatever the previous step returned (a multistep method's history of model
    outputs, an adaptive method's accepted step size and counts as
    :class:`~diffcore.samplers._statistics.StepStatistics`); return it unchanged (``None``) if
    the method needs none.  Do not count NFE, check shapes or check finiteness: the driver
    does.  A stochastic step scales ``noise[k]`` itself (e.g. by ``g(t0) sqrt(|t1 - t0|)``).

    Example
    -------
    A complete solver, Ralston's second-order method (two evaluations per step, the second at
    two thirds of the step):

    >>> from typing import ClassVar
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian, exact_score, sample
    >>> class Ralston(AbstractSolver):
    ...     name: ClassVar[str] = "ralston"
    ...     order: ClassVar[int] = 2
    ...     @property
    ...     def nfe_per_step(self) -> int:
    ...         return 2
    ...     def step(self, dynamics, x, t0, t1, noise, state):
    ...         h = t1 - t0
    ...         k1 = dynamics.drift(x, t0)
    ...         k2 = dynamics.drift(x + (2 * h / 3) * k1, t0 + 2 * h / 3)
    ...         return x + (h / 4) * (k1 + 3 * k2), state
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), np.eye(2))
    >>> sol = sample(p, exact_score(p, data), p.prior_sample((4, 2), rng=0), method=Ralston(), steps=10)
    >>> sol.nfe
    20
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
