"""Runge–Kutta solvers for the probability-flow ODE: Euler, Heun and the classical RK4."""

from __future__ import annotations

from typing import Any, ClassVar

from diffcore.samplers._base import AbstractSolver

__all__ = ["RK4", "Euler", "Heun", "Midpoint", "RK4ThreeEighths"]


class Euler(AbstractSolver):
    """Explicit Euler: ``x_1 = x_0 + h b(x_0, t_0)``, ``h = t_1 - t_0``; global order 1."""

    name: ClassVar[str] = "euler"
    order: ClassVar[int] = 1

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        return x + (t1 - t0) * dynamics.drift(x, t0), state


class Heun(AbstractSolver):
    """Heun's method (explicit trapezoid), the ODE step of Karras et al. (2022, alg. 1); order 2.

    ``k_1 = b(x_0, t_0)``, ``k_2 = b(x_0 + h k_1, t_1)``, ``x_1 = x_0 + h (k_1 + k_2) / 2``.
    """

    name: ClassVar[str] = "heun"
    order: ClassVar[int] = 2

    @property
    def nfe_per_step(self) -> int:
        return 2

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        h = t1 - t0
        k1 = dynamics.drift(x, t0)
        k2 = dynamics.drift(x + h * k1, t1)
        return x + (0.5 * h) * (k1 + k2), state


class Midpoint(AbstractSolver):
    """The explicit midpoint rule (Runge 1895; Hairer et al. 1993, II.1); order 2, two evaluations per step.

    ``k_1 = b(x_0, t_0)``, ``x_1 = x_0 + h b(x_0 + (h/2) k_1, t_0 + h/2)``.  The default second-order
    method of flow-matching codes (flow_matching's and torchdiffeq's ``"midpoint"``, the same
    update); on the straight-ish paths of the linear interpolant it is as accurate as Heun per
    evaluation or more (``benchmarks/peers``).
    """

    name: ClassVar[str] = "midpoint"
    order: ClassVar[int] = 2

    @property
    def nfe_per_step(self) -> int:
        return 2

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        h = t1 - t0
        half = x + (0.5 * h) * dynamics.drift(x, t0)
        return x + h * dynamics.drift(half, t0 + 0.5 * h), state


class RK4(AbstractSolver):
    """The classical fourth-order Runge–Kutta method (Hairer et al. 1993, II.1); order 4."""

    name: ClassVar[str] = "rk4"
    order: ClassVar[int] = 4

    @property
    def nfe_per_step(self) -> int:
        return 4

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        h = t1 - t0
        tm = t0 + 0.5 * h
        k1 = dynamics.drift(x, t0)
        k2 = dynamics.drift(x + (0.5 * h) * k1, tm)
        k3 = dynamics.drift(x + (0.5 * h) * k2, tm)
        k4 = dynamics.drift(x + h * k3, t1)
        return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4), state


class RK4ThreeEighths(AbstractSolver):
    """Kutta's 3/8 rule (Kutta 1901; Hairer et al. 1993, II.1, table 1.2); order 4, four evaluations per step.

    ``k_1 = b(x_0, t_0)``, ``k_2 = b(x_0 + h k_1/3, t_0 + h/3)``,
    ``k_3 = b(x_0 + h(k_2 - k_1/3), t_0 + 2h/3)``, ``k_4 = b(x_0 + h(k_1 - k_2 + k_3), t_1)``,
    ``x_1 = x_0 + h (k_1 + 3 k_2 + 3 k_3 + k_4) / 8``.  The ``"rk4"`` of torchdiffeq and hence of
    flow_matching's ``ODESolver``; its error constant is smaller than the classical method's on
    most problems (e.g. the linear path of ``benchmarks/peers``).
    """

    name: ClassVar[str] = "rk4_38"
    order: ClassVar[int] = 4

    @property
    def nfe_per_step(self) -> int:
        return 4

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        h = t1 - t0
        k1 = dynamics.drift(x, t0)
        k2 = dynamics.drift(x + (h / 3.0) * k1, t0 + h / 3.0)
        k3 = dynamics.drift(x + h * (k2 - k1 / 3.0), t0 + 2.0 * h / 3.0)
        k4 = dynamics.drift(x + h * (k1 - k2 + k3), t1)
        return x + (h / 8.0) * (k1 + 3.0 * (k2 + k3) + k4), state

