"""The ODE and the forward/backward SDEs of a stochastic interpolant, all with the same marginals."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from diffcore._validation import check_choice, check_nonnegative
from diffcore.dynamics._reverse import AbstractDynamics

__all__ = ["InterpolantODE", "InterpolantSDE"]

Array = Any


@dataclass(frozen=True, eq=False)
class InterpolantODE(AbstractDynamics):
    r"""The transport ODE ``dx/dt = b(t, x)`` of an interpolant (Albergo et al. 2023, eq. 2.9).

    Its flow carries ``rho_s`` to ``rho_t`` in either direction: integrate on an increasing
    grid from ``rho_0`` to ``rho_1`` or on a decreasing one back.  ``velocity`` is any
    callable ``(x, t) -> array``: the exact ``InterpolantFields.velocity`` or a learned one.
    """

    velocity: Callable[[Array, Any], Array]

    models: ClassVar[tuple[str, ...]] = ("velocity",)

    def __post_init__(self) -> None:
        self._wrap_models()

    def drift(self, x: Array, t: Any) -> Array:
        return self.velocity(x, t)

    def diffusion(self, t: Any) -> Any:
        return 0.0

    @property
    def stochastic(self) -> bool:
        return False

    @property
    def direction(self) -> int:
        return 0


@dataclass(frozen=True, eq=False)
class InterpolantSDE(AbstractDynamics):
    r"""The forward or backward SDE of an interpolant with diffusion ``sqrt(2 eps)``.

    .. math:: \text{forward: } dX = [b + \epsilon s](t, X)\, dt + \sqrt{2\epsilon}\, dW_t, \qquad
              \text{backward: } dX = [b - \epsilon s](t, X)\, dt + \sqrt{2\epsilon}\, d\bar W_t,

    integrated on an increasing (forward, ``rho_0 -> rho_1``) or decreasing (backward,
    ``rho_1 -> rho_0``) grid; for every ``eps >= 0`` the marginals are ``rho_t`` (Albergo et al.
    2023, thm. 2.8 and eqs. 2.31–2.32).  One drift evaluation calls both ``velocity`` and
    ``score`` and counts as one NFE (the calls of ``velocity`` are counted).
    """

    velocity: Callable[[Array, Any], Array]
    score: Callable[[Array, Any], Array]
    eps: float = 1.0
    way: str = "forward"

    models: ClassVar[tuple[str, ...]] = ("velocity", "score")

    def __post_init__(self) -> None:
        self._wrap_models()
        check_nonnegative("eps", self.eps)
        check_choice("way", self.way, ("forward", "backward"))

    def drift(self, x: Array, t: Any) -> Array:
        b = self.velocity(x, t)
        if self.eps == 0:
            return b
        sign = 1.0 if self.way == "forward" else -1.0
        return b + (sign * self.eps) * self.score(x, t)

    def diffusion(self, t: Any) -> Any:
        return math.sqrt(2.0 * self.eps)

    @property
    def stochastic(self) -> bool:
        return self.eps > 0

    @property
    def direction(self) -> int:
        if not self.stochastic:
            return 0
        return 1 if self.way == "forward" else -1
