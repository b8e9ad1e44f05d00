"""The solver contract: advance one step, declare an order."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from diffcore.dynamics import AbstractDynamics, AbstractReverseDynamics

__all__ = ["AbstractSolver", "require_reverse_dynamics"]

Array = Any


class AbstractSolver(abc.ABC):
    """One step of a time discretisation of :class:`~diffcore.dynamics.AbstractDynamics`.

    To add a solver, subclass this, set the class data below and write :meth:`step`; the
    driver :func:`~diffcore.integrate` owns the loop, the noise, the NFE count and the
    checks, and the test-suite reads ``order`` as the oracle for a measured convergence
    slope.

    Class data
    ----------
    name : the string accepted by :func:`~diffcore.sample`.
    order : the global order: of the error of ``x`` at the end (pathwise) for ODE solvers,
        of the error in law (weak order) for stochastic ones.
    stochastic : whether the solver integrates the reverse SDE (``eta = 1``) and needs noise.
    processes : the processes the solver applies to: ``"affine"`` (every process; the generic
        test-suite runs these) or ``"mean_reverting"`` (only
        :class:`~diffcore.processes.MeanRevertingSDE`; tested in ``tests/test_mean_reverting.py``).
    """

    name: ClassVar[str]
    order: ClassVar[int]
    stochastic: ClassVar[bool] = False
    processes: ClassVar[str] = "affine"

    @property
    def noise_draws(self) -> int:
        """Number of standard-normal arrays shaped like ``x`` consumed by one step."""
        return 1 if self.stochastic else 0

    @property
    def nfe_per_step(self) -> int:
        """Score evaluations in one step."""
        return 1

    def check_dynamics(self, dynamics: AbstractDynamics) -> None:
        """Raise unless this solver can integrate ``dynamics`` (ODE solvers need zero diffusion)."""
        if not self.stochastic and dynamics.stochastic:
            raise ValueError(
                f"{self.name} integrates ODEs (zero diffusion); got {type(dynamics).__name__}, whose diffusion "
                f"is non-zero ({_noise_of(dynamics)}): use a stochastic solver"
            )

    @abc.abstractmethod
    def step(
        self, dynamics: AbstractDynamics, x: Array, t0: float, t1: float, noise: Array | None, state: Any
    ) -> tuple[Array, Any]:
        """Advance ``x`` from ``t0`` to ``t1`` (``t1 < t0``); return the new state and solver state.

        ``noise`` has shape ``(noise_draws, *x.shape)`` (or is ``None`` when no draws are
        needed); the step is a deterministic function of its arguments.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def require_reverse_dynamics(
    solver: AbstractSolver, dynamics: AbstractDynamics, noise_scale: float | None, *, allow_shift: bool = False
) -> None:
    """Raise unless ``dynamics`` is reverse-time dynamics of a process (with ``noise_scale``, if given).

    Such solvers step with ``alpha``/``sigma`` ratios of ``x_t = alpha x_0 + sigma eps``, which is
    wrong for a process with a mean shift (``x_t = mu + alpha (x_0 - mu) + sigma eps``) unless the
    solver handles ``mu`` itself and says so with ``allow_shift=True``.
    """
    if not isinstance(dynamics, AbstractReverseDynamics):
        raise TypeError(
            f"{solver.name} steps with the forward process, so it needs ReverseSDE or ProbabilityFlowODE "
            f"dynamics; got {type(dynamics).__name__}"
        )
    if not allow_shift and dynamics.process.shift is not None:
        raise ValueError(
            f"{solver.name} assumes x_t = alpha x_0 + sigma eps without a mean shift; "
            f"{type(dynamics.process).__name__} has mean mu: use mrs_ode or mrs_sde (or a Runge-Kutta "
            f"solver such as euler, heun, rk4, or euler_maruyama)"
        )
    if noise_scale is not None and dynamics.noise_scale != noise_scale:
        raise ValueError(
            f"{solver.name} samples the reverse SDE with noise_scale {noise_scale}; "
            f"got noise_scale {dynamics.noise_scale}"
        )


def _noise_of(dynamics: AbstractDynamics) -> str:
    if isinstance(dynamics, AbstractReverseDynamics):
        return f"noise_scale {dynamics.noise_scale}"
    return f"diffusion(t) = {dynamics.diffusion(0.5)} at t = 0.5"
