r"""How a network represents a flow map: four parametrisations and one converter in each direction.

A network never outputs ``Phi(x, t, s)`` raw; each family builds the boundary condition
``Phi(x, t, t) = x`` into the parametrisation, so that only the rest is learned:

=================  ===================================  =======================================
``kind``           network                              flow map
=================  ===================================  =======================================
``mean_velocity``  ``u(x, t, s)``                       ``x + (s - t) u`` (MeanFlow: Geng et al.
                                                        2025, eq. 3; ``u -> v(x, t)`` as ``s -> t``)
``shortcut``       ``u(x, t, d)``, ``d = s - t``        ``x + d u`` (Frans et al. 2025, eq. 3;
                                                        the same map, conditioned on the step)
``ctm``            ``g(x, t, s)``, ``s <= t``           ``alpha_s [r x / alpha_t + (1 - r) g]``,
                                                        ``r = kappa_s / kappa_t`` (Kim et al.
                                                        2024, eq. 5; ``g -> E[x_0 | x_t]``)
``consistency``    ``F(x, t)``, ``s = t_min`` only      ``alpha_min [c_skip x / alpha_t + c_out F]``
                                                        (Song et al. 2023, eq. 7; Karras et al. 2022)
=================  ===================================  =======================================

Here ``kappa = sigma / alpha`` is the noise level of the scaled variable ``x / alpha = x_0 + kappa
eps`` (EDM's sigma; for VE ``alpha = 1``), ``c_skip = sigma_d^2 / ((kappa - kappa_min)^2 +
sigma_d^2)`` and ``c_out = sigma_d (kappa - kappa_min) / (sigma_d^2 + kappa^2)^{1/2}``, so that
``c_skip = 1``, ``c_out = 0`` at ``t_min``.  In the scaled variable CTM's map is EDM's
``(s/t) x + (1 - s/t) g``.  :func:`to_flow_map` turns a network into ``Phi``; :func:`from_flow_map`
gives what the network must output to represent a given ``Phi`` (the regression target of
distillation from an exact map).  Where the inverse divides by zero (``s = t``; ``t = t_min`` for
``consistency``) it returns the given ``limit`` field, or raises: no epsilon is added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffcore._array import broadcast_time, namespace
from diffcore._validation import (
    check_array,
    check_choice,
    check_model_output,
    check_positive,
    check_real,
    check_scalar_time,
    check_time_for,
)
from diffcore.processes import AbstractProcess

__all__ = ["MAP_PARAMETRIZATIONS", "from_flow_map", "to_flow_map"]

Array = Any
MAP_PARAMETRIZATIONS = ("mean_velocity", "shortcut", "ctm", "consistency")


@dataclass(frozen=True)
class _Coefs:
    """Per-point coefficients ``Phi = a x + b net`` of one parametrisation at ``(t, s)``, shaped for ``x``."""

    a: Any
    b: Any
    zero: Any  # where b = 0 (the inverse needs the limit), a boolean mask or a bool


def _check_kind(kind: Any, process: Any) -> str:
    kind = check_choice("kind", kind, MAP_PARAMETRIZATIONS)
    if kind in ("ctm", "consistency") and not isinstance(process, AbstractProcess):
        raise TypeError(
            f"the {kind} parametrisation is defined through a process's alpha and sigma; "
            f"got process={type(process).__name__}"
        )
    return kind


def _kappa(process: AbstractProcess, t: Any, name: str) -> Any:
    alpha = process.alpha(t)
    if _any(alpha == 0):
        raise ValueError(f"kappa = sigma / alpha is infinite where alpha({name}) = 0 (pure noise); choose {name} < 1")
    return process.sigma(t) / alpha


class _Map:
    """``(x, t, s) -> Phi`` of one parametrisation; its coefficients are shared with the inverse."""

    def __init__(self, kind: str, process: Any, sigma_data: float, t_min: float | None) -> None:
        self.kind, self.process, self.sigma_data, self.t_min = kind, process, sigma_data, t_min

    def times(self, x: Array, t: Any, s: Any) -> tuple[Any, Any]:
        t, s = check_time_for(t, x, "t"), check_time_for(s, x, "s")
        if self.kind == "ctm" and _any(s > t):
            raise ValueError(f"the ctm parametrisation maps backwards in time (s <= t); got t = {t}, s = {s}")
        if self.kind == "consistency" and _any(s != self.t_min):
            raise ValueError(f"a consistency model maps to t_min = {self.t_min} only; got s = {s}")
        if self.kind == "consistency" and _any(t < self.t_min):
            raise ValueError(f"a consistency model starts at times t >= t_min = {self.t_min}; got t = {t}")
        return t, s

    def coefs(self, x: Array, t: Any, s: Any) -> _Coefs:
        if self.kind in ("mean_velocity", "shortcut"):
            b = broadcast_time(s - t, x)
            return _Coefs(1.0, b, _mask(b == 0))
        p = self.process
        kt = broadcast_time(_kappa(p, t, "t"), x)
        at = broadcast_time(p.alpha(t), x)
        if self.kind == "ctm":
            ks, a_s = broadcast_time(_kappa(p, s, "s"), x), broadcast_time(p.alpha(s), x)
            same = _mask(kt == ks)
            r = _where(same, 1.0, ks / _where(same, 1.0, kt))
            return _Coefs(a_s * r / at, a_s * (1 - r), same)
        k_min, a_min, sd = _kappa(p, self.t_min, "t_min"), p.alpha(self.t_min), self.sigma_data
        skip = sd**2 / ((kt - k_min) ** 2 + sd**2)
        out = sd * (kt - k_min) / (sd**2 + kt**2) ** 0.5
        return _Coefs(a_min * skip / at, a_min * out, _mask(out == 0))


def _mask(m: Any) -> Any:
    """A comparison of coefficients: a Python bool for scalar times, a boolean array otherwise."""
    return bool(m) if getattr(m, "ndim", 0) == 0 else m


def _any(mask: Any) -> bool:
    mask = _mask(mask)
    return mask if isinstance(mask, bool) else bool(namespace(mask).any(mask))


def _where(mask: Any, a: Any, b: Any) -> Any:
    """``a`` where ``mask`` else ``b``; ``a`` may be a float."""
    if isinstance(mask, bool):
        return a if mask else b
    xp = namespace(mask)
    return xp.where(mask, a if hasattr(a, "dtype") else xp.asarray(a, dtype=b.dtype), b)


def _network(name: str, net: Any) -> Callable:
    if not callable(net):
        raise TypeError(f"{name} must be a callable; got {type(net).__name__}")
    return net


def _setup(kind: Any, process: Any, sigma_data: Any, t_min: Any) -> _Map:
    kind = _check_kind(kind, process)
    sigma_data = check_positive("sigma_data", sigma_data)
    if kind == "consistency":
        t_min = check_scalar_time(t_min, "t_min")
    return _Map(kind, process, sigma_data, t_min)


def to_flow_map(
    kind: str, net: Callable, process: Any = None, *, sigma_data: float = 0.5, t_min: float = 1e-3
) -> Callable[[Array, Any, Any], Array]:
    r"""The flow map ``Phi(x, t, s)`` that a network of parametrisation ``kind`` represents (module table).

    ``net`` is called as ``net(x, t, s)`` (``mean_velocity``, ``ctm``), ``net(x, t, s - t)``
    (``shortcut``) or ``net(x, t)`` (``consistency``), with ``t``, ``s`` floats or ``(n,)`` arrays.
    ``process`` (for ``ctm`` and ``consistency``) gives ``alpha``, ``sigma``; ``sigma_data`` and
    ``t_min`` are the consistency model's ``c_skip``/``c_out`` constants.  Every parametrisation
    satisfies ``Phi(x, t, t) = x`` whatever the network outputs (for ``consistency``: at ``t_min``).
    """
    m = _setup(kind, process, sigma_data, t_min)
    net = _network("net", net)

    def flow_map(x: Array, t: Any, s: Any) -> Array:
        x = check_array("x", x)
        t, s = m.times(x, t, s)
        c = m.coefs(x, t, s)
        if m.kind == "consistency":
            out = net(x, t)
        elif m.kind == "shortcut":
            out = net(x, t, s - t)
        else:
            out = net(x, t, s)
        return c.a * x + c.b * check_model_output("net", out, x)

    return flow_map


def from_flow_map(
    kind: str,
    flow_map: Callable[[Array, Any, Any], Array],
    process: Any = None,
    *,
    limit: Callable | None = None,
    sigma_data: float = 0.5,
    t_min: float = 1e-3,
) -> Callable:
    r"""What a network of parametrisation ``kind`` outputs to represent ``flow_map`` (:func:`to_flow_map` inverted).

    ``(Phi(x, t, s) - a x) / b`` with the coefficients of the module table; where ``b = 0``
    (``s = t``, or ``t = t_min`` for ``consistency``) the quotient has no information and
    ``limit`` gives the value: the velocity ``v(x, t)`` for ``mean_velocity``/``shortcut``, the
    denoiser ``E[x_0 | x_t]`` for ``ctm`` (called ``limit(x, t)``); without ``limit`` those
    points raise a ``ValueError``.  Returns a callable with the network's signature.
    """
    m = _setup(kind, process, sigma_data, t_min)
    fm = _network("flow_map", flow_map)
    if limit is not None:
        limit = _network("limit", limit)

    def target(x: Array, t: Any, s: Any = None) -> Array:
        x = check_array("x", x)
        if m.kind == "consistency":
            s = m.t_min
        elif m.kind == "shortcut":  # the network's third argument is the step d = s - t
            t = check_time_for(t, x, "t")
            d = s if hasattr(s, "shape") else check_real("d", s)
            s = t + d
        t, s = m.times(x, t, s)
        c = m.coefs(x, t, s)
        phi = check_model_output("flow_map", fm(x, t, s), x)
        value = (phi - c.a * x) / _where(c.zero, 1.0, c.b)
        if not _any(c.zero):
            return value
        if limit is None:
            raise ValueError(
                f"the {m.kind} network's output is not determined by the map where its coefficient vanishes "
                "(s = t, or t = t_min for a consistency model); pass limit= (the velocity, or the denoiser for ctm)"
            )
        lim = check_model_output("limit", limit(x, t), x)
        return _where(c.zero, lim, value)

    return target
