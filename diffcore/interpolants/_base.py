"""Stochastic interpolants ``x_t = coef0(t) x_0 + coef1(t) x_1 + gamma(t) z`` (Albergo et al. 2023)."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from diffcore._array import broadcast_time
from diffcore._schedule import evaluate, fd_derivative
from diffcore._validation import check_choice, check_nonnegative, check_positive

__all__ = [
    "AbstractInterpolant",
    "EncoderDecoderInterpolant",
    "Interpolant",
    "LinearInterpolant",
    "MirrorInterpolant",
    "OneSidedInterpolant",
    "TrigonometricInterpolant",
]

Array = Any
_BOUNDARY_GRID = np.linspace(0.0, 1.0, 201)


class AbstractInterpolant(abc.ABC):
    r"""A stochastic interpolant between ``rho_0`` (at ``t = 0``) and ``rho_1`` (at ``t = 1``).

    .. math:: x_t = c_0(t)\, x_0 + c_1(t)\, x_1 + \gamma(t)\, z, \qquad z \sim N(0, I),

    with the boundary conditions ``c_0(0) = c_1(1) = 1``, ``c_0(1) = c_1(0) = 0`` and
    ``gamma(0) = gamma(1) = 0``, ``gamma >= 0`` (Albergo, Boffi and Vanden-Eijnden 2023,
    def. 2.1 with the spatially linear ``I(t, x_0, x_1) = c_0 x_0 + c_1 x_1`` of their sec. 4).
    The coefficients are named ``coef0``, ``coef1``, ``gamma`` so that they do not clash with a
    diffusion's ``alpha``, ``sigma``: a one-sided interpolant with Gaussian ``x_0`` is the
    diffusion ``alpha(t) = coef1(1 - t)``, ``sigma(t) = coef0(1 - t)`` run in reversed time.
    ``coupling`` is ``"independent"`` (``x_0``, ``x_1``, ``z`` independent) or
    ``"identical"`` (the mirror interpolant: ``x_0 = x_1``).

    Every coefficient method takes a float in ``[0, 1]`` (returns a float) or an ``(n,)``
    array of any backend (returns one like it).  The boundary conditions are checked when
    the interpolant is built.
    """

    coupling: ClassVar[str] = "independent"

    @abc.abstractmethod
    def _coef0(self, t: Array, xp: Any) -> Array: ...

    @abc.abstractmethod
    def _coef1(self, t: Array, xp: Any) -> Array: ...

    @abc.abstractmethod
    def _gamma(self, t: Array, xp: Any) -> Array: ...

    @abc.abstractmethod
    def _d_coef0(self, t: Array, xp: Any) -> Array: ...

    @abc.abstractmethod
    def _d_coef1(self, t: Array, xp: Any) -> Array: ...

    @abc.abstractmethod
    def _d_gamma(self, t: Array, xp: Any) -> Array: ...

    def _gamma_d_gamma(self, t: Array, xp: Any) -> Array:
        return self._gamma(t, xp) * self._d_gamma(t, xp)

    # -- public coefficients -------------------------------------------------------------------
    def coef0(self, t: Any) -> Any:
        """``c_0(t)``, the weight of ``x_0``."""
        return evaluate(self._coef0, t)

    def coef1(self, t: Any) -> Any:
        """``c_1(t)``, the weight of ``x_1``."""
        return evaluate(self._coef1, t)

    def gamma(self, t: Any) -> Any:
        """``gamma(t) >= 0``, the scale of the latent noise ``z``."""
        return evaluate(self._gamma, t)

    def d_coef0(self, t: Any) -> Any:
        """``d c_0 / dt``."""
        return evaluate(self._d_coef0, t)

    def d_coef1(self, t: Any) -> Any:
        """``d c_1 / dt``."""
        return evaluate(self._d_coef1, t)

    def d_gamma(self, t: Any) -> Any:
        """``d gamma / dt`` (infinite at the ends when ``gamma ~ sqrt(t (1 - t))``)."""
        return evaluate(self._d_gamma, t)

    def gamma_d_gamma(self, t: Any) -> Any:
        """``gamma gamma' = (gamma^2)'/2``, finite at the ends even where ``gamma'`` is not."""
        return evaluate(self._gamma_d_gamma, t)

    # -- samples ---------------------------------------------------------------------------------
    def sample_xt(self, x0: Array, x1: Array, t: Any, z: Array) -> Array:
        """``x_t = c_0(t) x_0 + c_1(t) x_1 + gamma(t) z`` for batches ``(n, ...)`` and ``t`` float or ``(n,)``."""
        _check_same_shape(x0, x1, z)
        c0, c1, g = (broadcast_time(f(t), x0) for f in (self.coef0, self.coef1, self.gamma))
        return c0 * x0 + c1 * x1 + g * z

    def time_derivative(self, x0: Array, x1: Array, t: Any, z: Array) -> Array:
        """``d x_t / dt = c_0'(t) x_0 + c_1'(t) x_1 + gamma'(t) z``: the regression target of the velocity."""
        _check_same_shape(x0, x1, z)
        d0, d1, dg = (broadcast_time(f(t), x0) for f in (self.d_coef0, self.d_coef1, self.d_gamma))
        return d0 * x0 + d1 * x1 + dg * z

    def check_boundaries(self, atol: float = 1e-12) -> None:
        """Raise ``ValueError`` unless the boundary conditions hold (to ``atol``) and ``gamma >= 0``."""
        ends = {
            "coef0(0) = 1": self.coef0(0.0) - 1.0,
            "coef0(1) = 0": self.coef0(1.0),
            "coef1(0) = 0": self.coef1(0.0),
            "coef1(1) = 1": self.coef1(1.0) - 1.0,
            "gamma(0) = 0": self.gamma(0.0),
            "gamma(1) = 0": self.gamma(1.0),
        }
        for rule, gap in ends.items():
            if not abs(gap) <= atol:
                raise ValueError(f"{type(self).__name__} violates the boundary condition {rule}: off by {gap!r}")
        gam = np.asarray(self.gamma(_BOUNDARY_GRID), dtype=np.float64)
        if not np.all(gam >= -atol):
            i = int(np.argmin(gam))
            raise ValueError(f"gamma must be >= 0 on [0, 1]; got gamma({_BOUNDARY_GRID[i]:.3f}) = {gam[i]!r}")


def _check_same_shape(x0: Array, x1: Array, z: Array) -> None:
    for name, arr in (("x0", x0), ("x1", x1), ("z", z)):
        if not hasattr(arr, "shape") or arr.ndim < 1:
            raise TypeError(f"{name} must be an array of shape (n, ...); got {type(arr).__name__}")
    if not (tuple(x0.shape) == tuple(x1.shape) == tuple(z.shape)):
        shapes = f"{tuple(x0.shape)}, {tuple(x1.shape)}, {tuple(z.shape)}"
        raise ValueError(f"x0, x1 and z must have the same shape; got {shapes}")


# -- the noise profile gamma(t) = sqrt(a t (1 - t)) ------------------------------------------------
class _SqrtGamma:
    """``gamma(t) = sqrt(a t (1 - t))`` (Albergo et al. 2023, sec. 3.4), ``gamma gamma' = a (1 - 2t)/2``."""

    gamma_scale: float

    def _gamma(self, t, xp):
        return xp.sqrt(self.gamma_scale * t * (1 - t))

    def _d_gamma(self, t, xp):
        if self.gamma_scale == 0:  # gamma = 0: not 0 / 0
            return xp.zeros_like(t)
        # sqrt(a) (1 - 2t) / (2 sqrt(t (1 - t))), not a (1 - 2t) / (2 gamma): for a subnormal a the
        # product a t (1 - t) underflows to 0 and the quotient would be 0 / 0 = nan at t = 1/2
        return 0.5 * math.sqrt(self.gamma_scale) * (1 - 2 * t) / xp.sqrt(t * (1 - t))

    def _gamma_d_gamma(self, t, xp):
        return 0.5 * self.gamma_scale * (1 - 2 * t)


class _LinearCoefficients:
    """``c_0 = 1 - t``, ``c_1 = t``."""

    def _coef0(self, t, xp):
        return 1 - t

    def _coef1(self, t, xp):
        return t

    def _d_coef0(self, t, xp):
        return -xp.ones_like(t)

    def _d_coef1(self, t, xp):
        return xp.ones_like(t)


@dataclass(frozen=True)
class LinearInterpolant(_LinearCoefficients, _SqrtGamma, AbstractInterpolant):
    r"""``x_t = (1 - t) x_0 + t x_1 + sqrt(a t (1 - t)) z`` (Albergo et al. 2023, eq. 4.1).

    ``gamma_scale = a >= 0``; with ``a = 0`` it is the deterministic linear interpolant of
    rectified flow (Liu et al. 2023) between any two densities.
    """

    gamma_scale: float = 1.0

    def __post_init__(self) -> None:
        check_nonnegative("gamma_scale", self.gamma_scale)


#: the two trigonometric interpolants: ours, and that of the reference code of Albergo et al. (2023)
_TRIGONOMETRIC_VARIANTS = ("diffcore", "albergo2023")


@dataclass(frozen=True)
class TrigonometricInterpolant(_SqrtGamma, AbstractInterpolant):
    r"""The trigonometric interpolant with latent noise ``gamma(t) = sqrt(a t (1 - t))`` (Albergo et al. 2023, sec. 4).

    ``variant="diffcore"`` (default) keeps the trigonometric path and adds the noise on top:

    .. math:: x_t = \cos(\tfrac{\pi t}{2})\, x_0 + \sin(\tfrac{\pi t}{2})\, x_1 + \gamma(t)\, z,

    ``variant="albergo2023"`` shrinks the path by ``r(t) = sqrt(1 - gamma(t)^2)``, as the reference
    code of the paper does (``make_It(path='trig')`` in ``interflow/fabrics.py`` of
    malbergo/stochastic-interpolants, used by its ``Interpolant`` class):

    .. math:: x_t = r(t) \big(\cos(\tfrac{\pi t}{2})\, x_0 + \sin(\tfrac{\pi t}{2})\, x_1\big) + \gamma(t)\, z,
              \qquad c_0' = -\frac{\gamma \gamma'}{r} \cos(\tfrac{\pi t}{2}) - \frac{\pi}{2} r \sin(\tfrac{\pi t}{2}),
              \quad c_1' = -\frac{\gamma \gamma'}{r} \sin(\tfrac{\pi t}{2}) + \frac{\pi}{2} r \cos(\tfrac{\pi t}{2}),

    so that ``c_0^2 + c_1^2 + gamma^2 = 1``: with independent standard ``x_0``, ``x_1`` and ``z``
    every ``x_t`` is standard too (variance preserving), where ours has variance ``1 + a t (1 - t)``.
    ``gamma gamma' = a (1 - 2t)/2`` is finite, so both variants have finite ``c'`` at the ends;
    ``gamma`` itself is the same in both, but for ``a > 0`` the two are different interpolants
    (different laws ``rho_t`` and fields between the same ends), not two parametrisations of one.
    They coincide at ``a = 0``; the reference variant needs ``a < 4`` (``gamma(1/2)^2 = a / 4 < 1``).
    The reference's ``make_gamma(gamma_type='brownian')`` is ``a = 1``; its ``'a-brownian'``,
    meant for general ``a``, reads an undefined name ``a`` (the argument is called ``aval``).

    Parameters
    ----------
    gamma_scale : ``a >= 0`` (``< 4`` for ``"albergo2023"``).
    variant : ``"diffcore"`` or ``"albergo2023"``.

    Raises
    ------
    ValueError
        for a negative ``gamma_scale``, an unknown ``variant``, or ``gamma_scale >= 4`` with
        ``"albergo2023"``.

    Example
    -------
    >>> it = TrigonometricInterpolant(1.0, variant="albergo2023")
    >>> round(it.coef0(0.5) ** 2 + it.coef1(0.5) ** 2 + it.gamma(0.5) ** 2, 12)
    1.0
    """

    gamma_scale: float = 1.0
    variant: str = "diffcore"

    def __post_init__(self) -> None:
        check_nonnegative("gamma_scale", self.gamma_scale)
        check_choice("variant", self.variant, _TRIGONOMETRIC_VARIANTS)
        if self.variant == "albergo2023" and not self.gamma_scale < 4:
            raise ValueError(
                "variant 'albergo2023' needs gamma_scale < 4 (so that 1 - gamma(1/2)^2 = 1 - gamma_scale / 4 > 0); "
                f"got {self.gamma_scale!r}"
            )

    def _shrink(self, t, xp):
        """``r(t) = sqrt(1 - gamma(t)^2)``; exactly 1 at ``t = 0, 1`` and for ``a = 0``."""
        return xp.sqrt(1 - self.gamma_scale * t * (1 - t))

    def _cos(self, t, xp):
        # cos(pi t / 2) as sin(pi (1 - t) / 2): exactly 0 at t = 1, where cos(pi / 2) = 6e-17
        return xp.sin(0.5 * math.pi * (1 - t))

    def _coef0(self, t, xp):
        c = self._cos(t, xp)
        return c if self.variant == "diffcore" else self._shrink(t, xp) * c

    def _coef1(self, t, xp):
        c = xp.sin(0.5 * math.pi * t)
        return c if self.variant == "diffcore" else self._shrink(t, xp) * c

    def _d_coef0(self, t, xp):
        d = -0.5 * math.pi * xp.sin(0.5 * math.pi * t)
        if self.variant == "diffcore":
            return d
        r = self._shrink(t, xp)
        return r * d - (self._gamma_d_gamma(t, xp) / r) * self._cos(t, xp)

    def _d_coef1(self, t, xp):
        d = 0.5 * math.pi * xp.cos(0.5 * math.pi * t)
        if self.variant == "diffcore":
            return d
        r = self._shrink(t, xp)
        return r * d - (self._gamma_d_gamma(t, xp) / r) * xp.sin(0.5 * math.pi * t)


@dataclass(frozen=True)
class EncoderDecoderInterpolant(AbstractInterpolant):
    r"""Encode ``x_0`` to pure noise at ``t = 1/2``, then decode it into ``x_1``.

    ``c_0 = cos^2(pi t)`` on ``[0, 1/2)`` and 0 after, ``c_1 = cos^2(pi t)`` on ``(1/2, 1]`` and
    0 before, ``gamma = sin^2(pi t)`` (Albergo et al. 2023, eq. 4.6): ``x_{1/2} = z`` exactly,
    so the latent noise only acts in the middle.
    """

    def _coef0(self, t, xp):
        return xp.where(t < 0.5, xp.cos(math.pi * t) ** 2, xp.zeros_like(t))

    def _coef1(self, t, xp):
        return xp.where(t > 0.5, xp.cos(math.pi * t) ** 2, xp.zeros_like(t))

    def _gamma(self, t, xp):
        # sin^2(pi t) = sin^2(pi min(t, 1 - t)): exactly 0 at t = 1, where sin(pi)^2 = 1.5e-32
        return xp.sin(math.pi * xp.minimum(t, 1 - t)) ** 2

    def _d_coef0(self, t, xp):
        return xp.where(t < 0.5, -math.pi * xp.sin(2 * math.pi * t), xp.zeros_like(t))

    def _d_coef1(self, t, xp):
        return xp.where(t > 0.5, -math.pi * xp.sin(2 * math.pi * t), xp.zeros_like(t))

    def _d_gamma(self, t, xp):
        return math.pi * xp.sin(2 * math.pi * t)


_ONE_SIDED = ("linear", "trigonometric")


@dataclass(frozen=True)
class OneSidedInterpolant(AbstractInterpolant):
    r"""``x_t = c_0(t) x_0 + c_1(t) x_1`` with Gaussian ``x_0`` and no latent noise (``gamma = 0``).

    The Gaussian end plays the role of ``z`` (Albergo et al. 2023, sec. 3.3): ``kind="linear"``
    (``c_0 = 1 - t``, ``c_1 = t``) is conditional-OT flow matching with ``sigma_min = 0`` and
    rectified flow (Lipman et al. 2023, eq. 20; Liu et al. 2023); ``kind="trigonometric"``
    (``cos``, ``sin`` of ``pi t / 2``) is the VP-like trigonometric path.  For the path of any
    diffusion process see :func:`interpolant_from_process`.  Flow-matching convention: the
    Gaussian is at ``t = 0`` and the data at ``t = 1``.
    """

    kind: str = "linear"

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, _ONE_SIDED)

    def _coef0(self, t, xp):
        return 1 - t if self.kind == "linear" else xp.sin(0.5 * math.pi * (1 - t))  # exactly 0 at t = 1

    def _coef1(self, t, xp):
        return t if self.kind == "linear" else xp.sin(0.5 * math.pi * t)

    def _gamma(self, t, xp):
        return xp.zeros_like(t)

    def _d_coef0(self, t, xp):
        if self.kind == "linear":
            return -xp.ones_like(t)
        return -0.5 * math.pi * xp.sin(0.5 * math.pi * t)

    def _d_coef1(self, t, xp):
        if self.kind == "linear":
            return xp.ones_like(t)
        return 0.5 * math.pi * xp.cos(0.5 * math.pi * t)

    def _d_gamma(self, t, xp):
        return xp.zeros_like(t)


@dataclass(frozen=True)
class MirrorInterpolant(_LinearCoefficients, _SqrtGamma, AbstractInterpolant):
    r"""The mirror interpolant ``x_t = x + sqrt(a t (1 - t)) z``, ``x_0 = x_1 = x`` (Albergo et al. 2023, sec. 4.2).

    Both ends are the same law and the same sample (``coupling = "identical"``); the
    coefficients ``c_0 = 1 - t``, ``c_1 = t`` add up to one, so ``sample_xt(x, x, t, z) = x + gamma z``.
    Its fields are those of a variance-exploding diffusion of ``rho`` up to ``t = 1/2`` and back.
    """

    gamma_scale: float = 1.0
    coupling: ClassVar[str] = "identical"

    def __post_init__(self) -> None:
        check_positive("gamma_scale", self.gamma_scale)


@dataclass(frozen=True)
class Interpolant(AbstractInterpolant):
    r"""A user-defined interpolant from coefficient functions ``coef0``, ``coef1``, ``gamma``.

    The functions take a time array and return an array of its shape; derivatives may be
    given, otherwise fourth-order finite differences with step ``fd_step`` are used (as in
    :class:`~diffcore.AffineProcess`).  The boundary conditions are checked on construction
    (to ``atol``), and ``gamma >= 0`` on a grid of 201 times.

    Example
    -------
    >>> import numpy as np
    >>> it = Interpolant(lambda t: 1 - t**2, lambda t: t**2, lambda t: np.sin(np.pi * t))
    >>> round(it.d_coef1(0.5), 9)
    1.0
    """

    coef0_fn: Callable[[Any], Any]
    coef1_fn: Callable[[Any], Any]
    gamma_fn: Callable[[Any], Any]
    d_coef0_fn: Callable[[Any], Any] | None = None
    d_coef1_fn: Callable[[Any], Any] | None = None
    d_gamma_fn: Callable[[Any], Any] | None = None
    fd_step: float = 1e-3
    atol: float = 1e-12

    def __post_init__(self) -> None:
        for name in ("coef0_fn", "coef1_fn", "gamma_fn"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable; got {type(getattr(self, name)).__name__}")
        for name in ("d_coef0_fn", "d_coef1_fn", "d_gamma_fn"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable or None; got {type(value).__name__}")
        check_positive("fd_step", self.fd_step)
        check_nonnegative("atol", self.atol)
        self.check_boundaries(self.atol)

    def _coef0(self, t, xp):
        return self.coef0_fn(t)

    def _coef1(self, t, xp):
        return self.coef1_fn(t)

    def _gamma(self, t, xp):
        return self.gamma_fn(t)

    def _derivative(self, given, fn, t, xp):
        return given(t) if given is not None else fd_derivative(fn, t, xp, self.fd_step)

    def _d_coef0(self, t, xp):
        return self._derivative(self.d_coef0_fn, self.coef0_fn, t, xp)

    def _d_coef1(self, t, xp):
        return self._derivative(self.d_coef1_fn, self.coef1_fn, t, xp)

    def _d_gamma(self, t, xp):
        return self._derivative(self.d_gamma_fn, self.gamma_fn, t, xp)

    def _gamma_d_gamma(self, t, xp):
        if self.d_gamma_fn is not None:
            return self.gamma_fn(t) * self.d_gamma_fn(t)
        # (gamma^2)'/2 stays finite where gamma ~ sqrt(t (1 - t))
        return 0.5 * fd_derivative(lambda u: self.gamma_fn(u) ** 2, t, xp, self.fd_step)
