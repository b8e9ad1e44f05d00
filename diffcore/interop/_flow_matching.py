r"""Flow matching's clock (noise at ``s = 0``, data at ``s = 1``) both ways, its ODE solver, and its likelihood.

Meta's ``flow_matching`` package (Lipman et al. 2024, "Flow Matching Guide and Code") and most
flow-matching code put the Gaussian at ``s = 0`` and the data at ``s = 1`` with a velocity
``u(x, s)``; diffcore puts the data at ``t = 0``.  With ``t = 1 - s`` the same flow reads

.. math:: \frac{dx}{dt} = v(x, t) = -u(x, 1 - t),

the map of :func:`diffcore.reverse_time` for velocities.  The probability-flow velocity of a
diffcore process is such a ``v`` (``reparametrize(score, process, source="score", target="velocity")``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import is_torch_array

from diffcore._array import is_scalar_time
from diffcore._parametrization import reparametrize
from diffcore._validation import Model, check_array, check_choice, check_time_for
from diffcore.dynamics._reverse import velocity_of
from diffcore.interop._common import check_sampler_call, is_empty, like_input, to_torch, torch_module
from diffcore.interpolants import OneSidedInterpolant, process_from_interpolant
from diffcore.likelihood import LogLikelihood, log_likelihood
from diffcore.processes import AbstractProcess

__all__ = [
    "FlowMatchingSampler",
    "FlowMatchingVelocity",
    "FromFlowMatching",
    "flow_log_likelihood",
    "sampler_from_flow_matching",
    "velocity_for_flow_matching",
    "velocity_from_flow_matching",
]

Array = Any


def _flip_time(x: Array, t: Any) -> Any:
    """``1 - t`` as a flow-matching model takes it: an ``(n,)`` tensor for torch ``x``, else as given."""
    if is_torch_array(x):
        torch = torch_module("the flow-matching adapters")
        if is_scalar_time(t):
            return torch.full((x.shape[0],), 1.0 - t, dtype=x.dtype, device=x.device)
        return 1.0 - torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return 1.0 - t


@dataclass(frozen=True, eq=False)
class FromFlowMatching:
    """A flow-matching velocity seen in diffcore's clock: :func:`velocity_from_flow_matching`."""

    velocity: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "velocity", Model.of(self.velocity, "velocity"))

    def __call__(self, x: Array, t: Any) -> Array:
        x = check_array("x", x, min_ndim=2, finite=False)
        return -self.velocity(x, _flip_time(x, check_time_for(t, x)))


def velocity_from_flow_matching(velocity: Any) -> FromFlowMatching:
    r"""A flow-matching velocity ``u(x, s)`` (noise at ``s = 0``, data at ``s = 1``) in diffcore's clock.

    ``v(x, t) = -u(x, 1 - t)``: data at ``t = 0``, noise at ``t = 1``, ``dx/dt = v`` (the map of
    :func:`diffcore.reverse_time`, ``kind="velocity"``).  For torch ``x`` the time reaches ``u`` as an
    ``(n,)`` tensor of ``x``'s dtype and device (one time per point: what flow-matching networks
    reshape to ``(n, 1)``, and what diffcore's own fields accept); for NumPy ``x`` as the float or
    ``(n,)`` array given.  Use the
    result as a diffcore velocity, e.g. ``reparametrize(v, process, source="velocity")`` for
    :func:`diffcore.sample` (whose probability-flow drift is then ``v`` itself), or
    :func:`flow_log_likelihood` with ``data_time=0.0``.
    """
    return FromFlowMatching(velocity)


@dataclass(frozen=True, eq=False)
class FlowMatchingVelocity:
    """A diffcore velocity seen in flow matching's clock: :func:`velocity_for_flow_matching`."""

    velocity: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "velocity", Model.of(self.velocity, "velocity"))

    def __call__(self, x: Array, t: Any, **extras: Any) -> Array:
        x = check_array("x", x, min_ndim=2, finite=False)
        if hasattr(t, "detach") and t.ndim == 0:  # torchdiffeq's 0-d time tensor
            t = float(t.detach().cpu())
        t = check_time_for(t, x)
        return -self.velocity(x, 1.0 - t)


def velocity_for_flow_matching(velocity: Any) -> FlowMatchingVelocity:
    r"""A diffcore velocity ``v(x, t)`` (data at ``t = 0``) as a flow-matching velocity ``u(x=..., t=...)``.

    ``u(x, s) = -v(x, 1 - s)``, callable with keywords as ``flow_matching.solver.ODESolver`` calls its
    ``velocity_model(x=x, t=t, **extras)`` (extras are ignored; a 0-d time tensor becomes a float).
    The inverse of :func:`velocity_from_flow_matching`.  A diffcore score becomes a velocity through
    ``reparametrize(score, process, source="score", target="velocity")``.
    """
    return FlowMatchingVelocity(velocity)


def _process_velocity(score: Any, process: AbstractProcess) -> Any:
    """The probability-flow velocity of ``score``: the velocity itself when ``score`` is one in disguise."""
    velocity = velocity_of(score, process)
    if velocity is not None:
        return velocity
    return reparametrize(Model.of(score, "score"), process, source="score", target="velocity")


@dataclass(frozen=True, eq=False)
class FlowMatchingSampler:
    """flow_matching's ``ODESolver`` in the correctness kit's sampler protocol: :func:`sampler_from_flow_matching`."""

    process: AbstractProcess
    method: str = "euler"
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.process, AbstractProcess):
            raise TypeError(f"process must be an AbstractProcess; got {type(self.process).__name__}")
        if not isinstance(self.method, str):
            raise TypeError(f"method must be the name of a torchdiffeq method; got {type(self.method).__name__}")

    @property
    def name(self) -> str:
        return f"flow_matching ODESolver({self.method})"

    def __call__(self, score: Any, x_init: Array, ts: Any, rng: Any = None) -> Array:
        """Integrate from ``ts[0]`` to ``ts[-1]`` with ``ODESolver.sample`` on ``time_grid = 1 - ts``."""
        from flow_matching.solver import ODESolver

        x_init, ts = check_sampler_call(score, x_init, ts)
        if is_empty(x_init):
            return x_init
        torch = torch_module("sampler_from_flow_matching")
        x = to_torch(x_init, "sampler_from_flow_matching")
        u = velocity_for_flow_matching(_process_velocity(score, self.process))
        grid = torch.as_tensor(1.0 - ts, dtype=x.dtype, device=x.device)
        options = {"step_size": None, **self.options}
        out = ODESolver(velocity_model=u).sample(x, method=self.method, time_grid=grid, **options)
        return like_input(out, x_init)


def sampler_from_flow_matching(process: AbstractProcess, *, method: str = "euler", **options: Any):
    r"""``flow_matching.solver.ODESolver`` as a sampler of the correctness kit: ``sampler(score, x_init, ts) -> x``.

    The probability-flow velocity of the diffcore ``score`` of ``process`` (its velocity itself when
    ``score`` is ``reparametrize(velocity, process, source="velocity")``) is given to ``ODESolver`` in
    flow matching's clock (:func:`velocity_for_flow_matching`), which integrates on
    ``time_grid = 1 - ts`` with torchdiffeq's ``method``: with the default ``step_size=None`` a
    fixed-grid method steps exactly on that grid, so ``"euler"`` is diffcore's ``euler`` and
    ``"heun2"`` (explicit trapezoid) diffcore's ``heun`` on ``ts`` (torchdiffeq's ``"rk4"`` is the
    3/8 rule, not diffcore's classical ``rk4``; ``"midpoint"`` has no diffcore twin); adaptive
    methods (``"dopri5"``, with ``atol``, ``rtol`` in ``options``) step as they choose.  ``options``
    go to ``ODESolver.sample``.  Deterministic: ``rng`` is accepted and unused.
    """
    return FlowMatchingSampler(process, method, dict(options))


def flow_log_likelihood(
    velocity: Any, x: Array, *, data_time: float = 1.0, t_min: float = 0.0, grid: str = "uniform", **options: Any
) -> LogLikelihood:
    r"""``log p(x)`` of the flow of a velocity field, with the prior ``N(0, I)`` at the noise end.

    For ``data_time = 1.0`` the velocity is in flow matching's convention, ``u(x, s)`` with the noise
    at ``s = 0`` and the data at ``s = 1`` (Lipman et al. 2023; ``flow_matching``); for
    ``data_time = 0.0`` in diffcore's, ``v(x, t)`` with the data at ``t = 0``.  In diffcore's time
    (``v(x, t) = -u(x, 1 - t)``) the instantaneous change of variables (Chen et al. 2018, thm. 1)
    along ``dx/dt = v`` from the data end gives

    .. math:: \log p(x) = \log N(x_1; 0, I) + \int_{t_{min}}^{1} \nabla\cdot v(x_t, t)\, dt .

    No schedule is involved: only ``v`` is evaluated, so paths whose signal coefficient reaches
    0 at the noise end (``alpha = 1 - t`` of rectified flow / conditional OT) need no division by it.
    ``t_min`` (default 0: the data end itself) is the distance from the data end at which
    ``log p`` is taken; use ``t_min > 0`` for a velocity that is singular at the data (data
    without a density).

    How: the velocity is read as the model of the rectified-flow process ``alpha = 1 - t``,
    ``sigma = t`` (``reparametrize(v, process, source="velocity")``), whose prior at ``t = 1`` is
    ``N(0, I)``; :func:`diffcore.log_likelihood` then takes the drift and its divergence from ``v``
    itself (:class:`~diffcore.likelihood.AugmentedFlow`), so the schedule only names the prior and
    the grid.  Every keyword of :func:`diffcore.log_likelihood` (``divergence``, ``probes``,
    ``method``, ``steps``, ``rtol``, ``atol``, ``rng``, ``prior_log_prob``, ...) is passed through
    and means what it means there; ``grid`` must be ``"uniform"`` (steps uniform in ``t``; the
    log-SNR of that process is infinite at both ends).  ``x`` is ``(n, ...)``; a diffcore-clock
    velocity is called with a float time, a flow-matching one as in
    :func:`velocity_from_flow_matching` (an ``(n,)`` tensor for torch ``x``).

    Returns
    -------
    LogLikelihood of :func:`diffcore.log_likelihood`, with ``t_min`` the distance from the data end.
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable (x, t) -> array; got {type(velocity).__name__}")
    if isinstance(data_time, bool) or data_time not in (0.0, 1.0):
        raise ValueError(f"data_time must be 1.0 (flow matching: data at t = 1) or 0.0 (diffcore); got {data_time!r}")
    check_choice("grid", grid, ("uniform",))
    t_min = float(t_min) if not isinstance(t_min, bool) and isinstance(t_min, (int, float, np.floating)) else t_min
    if not isinstance(t_min, float) or not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must lie in [0, 1); got {t_min!r}")
    v = velocity if data_time == 0.0 else velocity_from_flow_matching(velocity)
    process = process_from_interpolant(OneSidedInterpolant("linear"))
    return log_likelihood(process, reparametrize(v, process, source="velocity"), x, t_min=t_min, **options)
