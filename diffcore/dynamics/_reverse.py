"""Reverse-time dynamics of a forward process: the reverse SDE family and the probability-flow ODE."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from diffcore._array import broadcast_time
from diffcore._parametrization import Reparametrized
from diffcore._validation import Counter, Model, check_nonnegative
from diffcore.processes import AbstractProcess

__all__ = ["AbstractDynamics", "AbstractReverseDynamics", "ForwardSDE", "ProbabilityFlowODE", "ReverseSDE"]

Array = Any


class AbstractDynamics:
    r"""``dx = drift(x, t) dt + diffusion(t) dW``: what a solver integrates.

    ``stochastic`` says whether the diffusion is non-zero; ``direction`` whether the equation
    may only be integrated backwards in ``t`` (``-1``, a reverse-time SDE), only forwards
    (``+1``) or either way (``0``, an ODE).

    Models.  ``models`` names the fields that hold the user's callables (score, velocity,
    ...); subclasses call :meth:`_wrap_models` at construction, which puts each one behind
    :class:`~diffcore._validation.Model`, so that every call is checked (an array of the
    input's type, device, real floating dtype and shape; metadata only).  The number of
    function evaluations (NFE) reported by :func:`~diffcore.integrate` is the number of calls of
    the first of them, counted through :meth:`counted`, the same way for every solver.
    """

    #: the fields holding the model callables; the calls of the first are the NFE
    models: ClassVar[tuple[str, ...]] = ()

    def _wrap_models(self) -> None:
        for name in self.models:
            object.__setattr__(self, name, Model.of(getattr(self, name), name))

    def counted(self, counter: Counter) -> AbstractDynamics:
        """A copy of these dynamics whose model evaluations are added to ``counter``.

        Dynamics without a model (``models = ()``, e.g. :class:`ForwardSDE`) are returned as
        they are: they make no model evaluations.
        """
        if not self.models:
            return self
        new = copy.copy(self)
        object.__setattr__(new, self.models[0], getattr(self, self.models[0]).counting(counter))
        return new

    def drift(self, x: Array, t: Any) -> Array:
        """The drift ``(n, ...) -> (n, ...)`` at time ``t``."""
        raise NotImplementedError

    def diffusion(self, t: Any) -> Any:
        """The scalar diffusion coefficient at time ``t``."""
        raise NotImplementedError

    def mask_noise(self, noise: Array) -> Array:
        """Zero ``noise`` (shaped like ``x``) on coordinates the dynamics holds fixed; by default none.

        Solvers that add noise of their own (Langevin correctors) pass it through here, so that
        coordinates with zero diffusion, such as the absent nodes of a graph, stay fixed.
        """
        return noise

    @property
    def stochastic(self) -> bool:
        """Whether the diffusion is non-zero."""
        raise NotImplementedError

    @property
    def direction(self) -> int:
        """``-1``: backwards in ``t`` only; ``+1``: forwards only; ``0``: either way."""
        raise NotImplementedError


class AbstractReverseDynamics(AbstractDynamics):
    r"""Reverse-time dynamics of a forward process, driven by its score.

    Solvers that use the process itself (exponential integrators, posterior steps) require
    this type; they see ``process`` and ``score``, whose every call is one NFE.
    """

    models: ClassVar[tuple[str, ...]] = ("score",)

    process: AbstractProcess
    score: Callable[[Array, Any], Array]
    #: ``eta`` in ``diffusion = eta g``: 0 for the ODE, 1 for Anderson's reverse SDE
    noise_scale: float

    def drift(self, x: Array, t: Any) -> Array:
        r"""``f(t) x - (1 + eta^2)/2 g(t)^2 s(x, t)`` (one score evaluation).

        The forward drift is ``process.drift(x, t)``: ``f(t) x``, or ``f(t)(x - mu)`` for a
        process with a mean :attr:`~diffcore.processes.AbstractProcess.shift`.

        A velocity model.  When the score is a velocity seen as a score of this process
        (``reparametrize(u, process, source="velocity")``, see :func:`velocity_of`), the
        probability-flow drift *is* that velocity, ``u = f x - g^2/2 s``, and the drift is
        computed from it without going through the score (which divides by ``g^2`` and needs
        ``f = alpha'/alpha``):

        .. math:: f x - \frac{1 + \eta^2}{2} g^2 s = (1 + \eta^2)\, u - \eta^2 f x .

        For the ODE (``eta = 0``) that is ``u`` itself, finite where ``alpha = 0`` (the noise end
        of a flow-matching path, ``alpha = 1 - t`` at ``t = 1``), where ``f`` and ``g^2`` are not;
        for ``eta > 0`` the forward drift ``f x`` is still needed (and raises a ``ValueError``
        naming ``t`` where ``alpha = 0``).
        """
        u = self._velocity(x, t)
        if u is not None:
            if self.noise_scale == 0:
                return u
            eta2 = self.noise_scale**2
            return (1.0 + eta2) * u - eta2 * self.process.drift(x, t)
        g2 = broadcast_time(self.process.diffusion_squared(t), x)
        return self.process.drift(x, t) - (0.5 * (1.0 + self.noise_scale**2)) * g2 * self.score(x, t)

    def _velocity(self, x: Array, t: Any) -> Array | None:
        """The velocity behind a velocity-as-score model, evaluated (and counted) once; else ``None``."""
        velocity = velocity_of(self.score, self.process)
        if velocity is None:
            return None
        score = self.score  # a Model: the call is counted as one evaluation of the score
        return Model(velocity, score.name, counter=score.counter)(x, t)

    def diffusion(self, t: Any) -> Any:
        """``eta g(t)``."""
        if self.noise_scale == 0:
            return 0.0
        return self.noise_scale * self.process.diffusion(t)

    @property
    def stochastic(self) -> bool:
        return self.noise_scale != 0

    @property
    def direction(self) -> int:
        return -1 if self.stochastic else 0


def velocity_of(score: Callable, process: AbstractProcess) -> Callable | None:
    """The velocity model behind ``score``, when ``score`` is that velocity reparametrized as a score of ``process``.

    ``score`` (or the :class:`~diffcore._validation.Model` around it) must be the
    :func:`~diffcore.reparametrize` of a ``"velocity"`` model into a ``"score"`` of the same
    process (``==``), without a mean shift.  Returns ``None`` otherwise.  The dynamics use it to
    take the probability-flow drift from the velocity directly (:meth:`AbstractReverseDynamics.drift`).
    """
    fn = score.fn if isinstance(score, Model) else score
    if not (isinstance(fn, Reparametrized) and fn.source == "velocity" and fn.target == "score"):
        return None
    if getattr(process, "shift", None) is not None or not _same_process(fn.process, process):
        return None
    return fn.model


def _same_process(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except (TypeError, ValueError):  # parameters that are arrays have no single truth value
        return False


def _check(dynamics: AbstractReverseDynamics) -> None:
    if not isinstance(dynamics.process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(dynamics.process).__name__}")
    dynamics._wrap_models()


@dataclass(frozen=True, eq=False)
class ReverseSDE(AbstractReverseDynamics):
    r"""The family of reverse-time SDEs with the marginals of ``process``.

    .. math:: dx = \Big[f(t) x - \frac{1 + \eta^2}{2} g(t)^2 \nabla\log p_t(x)\Big] dt
              + \eta\, g(t)\, d\bar W_t,

    integrated from ``t = 1`` down to ``t = 0``.  Every ``eta >= 0`` gives the same
    marginals ``p_t`` when started from ``p_1``: ``eta = 1`` is Anderson's reverse SDE
    (Anderson 1982; Song et al. 2021, eq. 6), ``eta = 0`` the probability-flow ODE
    (Song et al. 2021, eq. 13); the family is eq. 2 of Zhang and Chen (2023) and
    sec. 4.1 of Karras et al. (2022).
    """

    process: AbstractProcess
    score: Callable[[Array, Any], Array]
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        _check(self)
        check_nonnegative("noise_scale", self.noise_scale)


@dataclass(frozen=True, eq=False)
class ProbabilityFlowODE(AbstractReverseDynamics):
    r"""The probability-flow ODE ``dx/dt = f(t) x - g(t)^2/2 grad log p_t(x)``.

    Its flow carries ``p_1`` to ``p_t`` for every ``t`` (Song et al. 2021, eq. 13; Maoutsa
    et al. 2020): the ``eta = 0`` member of :class:`ReverseSDE`.
    """

    process: AbstractProcess
    score: Callable[[Array, Any], Array]

    noise_scale: ClassVar[float] = 0.0

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True, eq=False)
class ForwardSDE(AbstractDynamics):
    r"""The forward SDE ``dx = f(t) x dt + g(t) dW`` of ``process``, integrated forwards in time.

    Started from the data at ``t = 0`` its marginals are ``marginal(process, data, t)``
    (Song et al. 2021, eq. 5); with :func:`~diffcore.integrate` and ``euler_maruyama`` on an
    increasing grid it simulates the noising process, e.g. to check the exact transition laws.
    """

    process: AbstractProcess

    def __post_init__(self) -> None:
        if not isinstance(self.process, AbstractProcess):
            raise TypeError(f"process must be an AbstractProcess; got {type(self.process).__name__}")

    def drift(self, x: Array, t: Any) -> Array:
        """``f(t) x`` (no model evaluation)."""
        return self.process.drift(x, t)

    def diffusion(self, t: Any) -> Any:
        """``g(t)``."""
        return self.process.diffusion(t)

    @property
    def stochastic(self) -> bool:
        return True

    @property
    def direction(self) -> int:
        return 1
