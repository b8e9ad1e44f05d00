"""The linear SDE ``dx = f(t)(x - mu) dt + g(t) dW``: what solvers that use a process's coefficients need."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

__all__ = ["AbstractLinearSDE", "Transition"]

Array = Any


@dataclass(frozen=True)
class Transition:
    """The Gaussian transition ``x_t | x_s ~ N(scale * x_s, std^2 I)`` of a linear SDE (for ``x - mu`` with a shift)."""

    s: Any
    t: Any
    scale: Any
    std: Any


class AbstractLinearSDE(abc.ABC):
    r"""A linear SDE with a closed-form Gaussian transition:

    .. math:: dx = f(t)\,(x - \mu)\,dt + g(t)\,dW_t .

    This is what solvers that use the forward coefficients need of a process (the Langevin
    corrector and reverse-diffusion predictor of ``pc``, the exact half-steps of S4).  The
    coefficients are scalars for an :class:`~diffcore.processes.AbstractProcess`, whose every
    coordinate follows the same law ``x_t = alpha(t) x_0 + sigma(t) eps`` and which adds the
    scalar schedule (``alpha``, ``sigma``, log-SNR); they may be arrays that broadcast against a
    state when coordinates follow different laws (the packed graph system
    :class:`~diffcore.graphs.PackedProcess`).  Solvers declare which of the two they need
    (:class:`~diffcore.samplers.Requirements`).

    Subclasses give :meth:`drift_coef`, :meth:`diffusion_squared`, :meth:`diffusion`,
    :meth:`drift` and :meth:`transition`.
    """

    @property
    def shift(self) -> Any:
        """The mean ``mu`` of ``dx = f(t)(x - mu) dt + g dW``; ``None`` (no shift) unless overridden.

        Only mean-reverting processes (:class:`~diffcore.processes.MeanRevertingSDE`) have one;
        their coefficients and transitions describe ``x - mu``.  Solvers that write the drift as
        ``f(t) x`` or step with ``alpha`` ratios declare ``shift="forbidden"``.
        """
        return None

    def shift_like(self, x: Array) -> Any:
        """:attr:`shift` as an array of ``x``'s type, dtype and device; ``None`` without a shift."""
        return None

    @abc.abstractmethod
    def drift_coef(self, t: Any) -> Any:
        """``f(t)``: a float (or ``(n,)`` array for array ``t``), or coordinate-wise coefficients."""

    @abc.abstractmethod
    def diffusion_squared(self, t: Any) -> Any:
        """``g(t)^2``, shaped like :meth:`drift_coef`."""

    @abc.abstractmethod
    def transition(self, s: Any, t: Any) -> Transition:
        """The exact law of ``x_t - mu`` given ``x_s - mu`` for ``s <= t``."""

    @abc.abstractmethod
    def diffusion(self, t: Any) -> Any:
        """``g(t)``, shaped like :meth:`drift_coef`."""

    @abc.abstractmethod
    def drift(self, x: Array, t: Any) -> Array:
        """``f(t) (x - mu)`` for a batch ``x`` of shape ``(n, ...)`` (``f(t) x`` without a shift)."""
