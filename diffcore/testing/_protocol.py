r"""The sampler protocol of the kit, and the two bridges between it and diffcore's solvers.

A *sampler* is any callable

.. code-block:: text

    sampler(score, x_init, ts, rng=None) -> x

that integrates from ``ts[0]`` down to ``ts[-1]`` with ``score`` a diffcore-convention score
``(x, t) -> grad log p_t(x)`` (``t`` a float or an ``(n,)`` array), ``x_init`` an ``(n, d)``
array at ``ts[0]`` and ``ts`` a decreasing float64 grid (``ts[-1]`` may be 0).  It returns an
array of ``x_init``'s type and shape.  A sampler that chooses its own times (a diffusers scheduler)
also has ``sampler.time_grid(steps) -> ts``, and the kit then runs it on that grid.

:func:`solver_from_step` turns a one-step function into an :class:`~diffcore.AbstractSolver` (so it
runs through :func:`~diffcore.integrate`, :func:`~diffcore.sample` and
:func:`~diffcore.testing.propagate_gaussian_law`); :func:`sampler_from_solver` turns any diffcore
solver into a sampler of this protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from diffcore._validation import check_choice, check_steps
from diffcore.dynamics import AbstractReverseDynamics, ProbabilityFlowODE, ReverseSDE
from diffcore.processes import AbstractProcess
from diffcore.samplers import GRIDS, AbstractSolver, Requirements, get_solver, integrate

__all__ = ["SolverSampler", "sampler_from_solver", "solver_from_step"]

Array = Any

#: what the first argument of a user's step is
USES = ("score", "drift", "dynamics")


class _StepSolver(AbstractSolver):
    """A solver whose step is a user's function (see :func:`solver_from_step`)."""

    name: ClassVar[str] = "user_step"
    order: ClassVar[int] = 1

    def __init__(self, step: Callable, *, uses: str, multistep: bool, nfe: int, affine: bool) -> None:
        self._step, self._uses, self._multistep = step, uses, multistep
        self._nfe, self._affine = nfe, affine

    @property
    def affine_step(self) -> bool:  # type: ignore[override]
        return self._affine

    @property
    def nfe_per_step(self) -> int:
        return self._nfe

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        first = {"score": getattr(dynamics, "score", None), "drift": dynamics.drift, "dynamics": dynamics}[self._uses]
        extra: dict[str, Any] = {}
        if self.stochastic:
            extra["noise"] = noise[0]
            if self._uses == "drift":
                extra["diffusion"] = dynamics.diffusion
        if self._multistep:
            extra["state"] = state
            out = self._step(first, x, t0, t1, **extra)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(
                    f"the step of {self.name!r} is declared multistep=True, so it must return (x, state); "
                    f"got {type(out).__name__}"
                )
            return out
        return self._step(first, x, t0, t1, **extra), state

    def __repr__(self) -> str:
        return f"solver_from_step({getattr(self._step, '__name__', self._step)!r}, name={self.name!r})"


def solver_from_step(
    step: Callable[..., Any],
    *,
    order: int,
    name: str = "user_step",
    uses: str = "score",
    stochastic: bool = False,
    multistep: bool = False,
    nfe_per_step: int = 1,
    affine_step: bool = True,
    grid: str = "uniform",
) -> AbstractSolver:
    r"""A diffcore solver from a function that advances the state by one step.

    The step is called as

    .. code-block:: text

        step(first, x, t0, t1)                        -> x            (ODE step)
        step(first, x, t0, t1, noise=z)               -> x            (stochastic=True)
        step(first, x, t0, t1, state=s)               -> (x, s)       (multistep=True; s is None at first)

    with ``x`` the state ``(n, d)`` at ``t0``, ``t1`` the next grid time (``t1 < t0`` when
    sampling), ``z`` standard normal draws shaped like ``x`` (from the driver's ``rng``) and
    ``first`` chosen by ``uses``:

    * ``"score"`` (default): the score callable ``(x, t) -> grad log p_t(x)``; the step knows its
      schedule (a DDIM step closes over ``alpha`` and ``sigma``).  The solver needs
      reverse-time dynamics (:class:`~diffcore.ProbabilityFlowODE`, or with ``stochastic=True``
      the reverse SDE :class:`~diffcore.ReverseSDE` with ``noise_scale = 1``).
    * ``"drift"``: the drift ``b(x, t)`` of the dynamics (``f x - g^2/2 score`` for the
      probability-flow ODE); a stochastic step also gets ``diffusion=`` (the callable
      ``t -> g(t)``).  Generic integrators (Euler, Heun, Euler–Maruyama) take this form and run on
      any dynamics.
    * ``"dynamics"``: the :class:`~diffcore.AbstractDynamics` itself (``.process``, ``.score``,
      ``.drift``, ``.diffusion``), as diffcore's own solvers do.

    The result is an :class:`~diffcore.AbstractSolver` with the declarations the driver and the
    oracles read: ``order`` (global order; weak order for stochastic steps), ``stochastic`` (draws
    ``noise_draws = 1`` array per step), ``nfe_per_step``, ``affine_step`` (the step is affine in
    ``(x, noise)`` when the score is affine in ``x`` — true of every Runge–Kutta, DDIM,
    Euler–Maruyama or ancestral step; it is what
    :func:`~diffcore.testing.propagate_gaussian_law` needs to give the exact output law) and
    ``grid`` (the grid :func:`~diffcore.time_grid` makes for it).  Then
    ``integrate(dynamics, x, ts, solver)``, ``sample(process, score, x, method=solver, steps=...)``
    and ``propagate_gaussian_law(dynamics, solver, mean, cov, ts)`` run it like any built-in
    method, with the model's calls counted and checked.

    Raises ``TypeError``/``ValueError`` for a step that is not callable, ``order`` or
    ``nfe_per_step`` not a positive int, an unknown ``uses`` or ``grid``, or a name that is not a str.

    Example
    -------
    >>> import numpy as np
    >>> import diffcore as dc
    >>> p = dc.VPSDE()
    >>> def euler(drift, x, t0, t1):
    ...     return x + (t1 - t0) * drift(x, t0)
    >>> mine = solver_from_step(euler, order=1, uses="drift", name="my_euler")
    >>> score = dc.exact_score(p, dc.Gaussian(np.zeros(2), np.eye(2)))
    >>> x = p.prior_sample((4, 2), rng=0)
    >>> bool(np.array_equal(dc.sample(p, score, x, method=mine, steps=8).x,
    ...                     dc.sample(p, score, x, method="euler", steps=8).x))
    True
    """
    if not callable(step):
        raise TypeError(f"step must be callable (first, x, t0, t1, ...) -> x; got {type(step).__name__}")
    order = check_steps(order, "order")
    nfe_per_step = check_steps(nfe_per_step, "nfe_per_step")
    check_choice("uses", uses, USES)
    check_choice("grid", grid, GRIDS)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}")
    for flag, value in (("stochastic", stochastic), ("multistep", multistep), ("affine_step", affine_step)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool; got {type(value).__name__}")
    if uses == "score":
        requires = Requirements(
            dynamics=AbstractReverseDynamics, process=AbstractProcess, noise="reverse" if stochastic else "none"
        )
    else:
        requires = Requirements(noise="any" if stochastic else "none")
    cls = type(
        f"StepSolver_{name}",
        (_StepSolver,),
        {"name": name, "order": order, "requires": requires, "grid": grid, "__module__": __name__},
    )
    return cls(step, uses=uses, multistep=multistep, nfe=nfe_per_step, affine=affine_step)


@dataclass(frozen=True, eq=False)
class SolverSampler:
    """A diffcore solver seen through the sampler protocol (see :func:`sampler_from_solver`)."""

    solver: AbstractSolver
    process: AbstractProcess

    def __call__(self, score: Callable[[Array, Any], Array], x_init: Array, ts: Any, rng: Any = None) -> Array:
        """Integrate from ``ts[0]`` to ``ts[-1]``: the probability-flow ODE (reverse SDE for a stochastic solver)."""
        dyn = ReverseSDE(self.process, score) if self.solver.stochastic else ProbabilityFlowODE(self.process, score)
        return integrate(dyn, x_init, ts, self.solver, rng).x

    @property
    def name(self) -> str:
        """The solver's name."""
        return self.solver.name


def sampler_from_solver(solver: Any, process: AbstractProcess, **options: Any) -> SolverSampler:
    r"""Any diffcore method as a sampler ``sampler(score, x_init, ts, rng=None) -> x``.

    ``solver`` is a name of :data:`~diffcore.SOLVERS` (``options`` go to its constructor, as in
    :func:`~diffcore.get_solver`) or a solver object (one of :func:`solver_from_step` included).
    The sampler integrates the probability-flow ODE of ``process`` with the given score
    (Song et al. 2021, eq. 13) for deterministic solvers, the reverse SDE (eq. 6) for stochastic
    ones, over the grid it is given, through :func:`~diffcore.integrate`.

    Example
    -------
    >>> import numpy as np
    >>> import diffcore as dc
    >>> p = dc.VPSDE()
    >>> heun = sampler_from_solver("heun", p)
    >>> score = dc.exact_score(p, dc.Gaussian(np.zeros(2), np.eye(2)))
    >>> heun(score, np.ones((3, 2)), np.linspace(1.0, 0.5, 5)).shape
    (3, 2)
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    return SolverSampler(get_solver(solver, **options), process)
