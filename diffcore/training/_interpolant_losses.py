r"""Losses of a stochastic interpolant ``x_t = c_0 x_0 + c_1 x_1 + gamma z``: flow matching, ``b``, ``s``, ``eta``.

Albergo, Boffi and Vanden-Eijnden (2023): the quadratic objectives of sec. 2 (thm. 2.6 and what
follows) and the antithetic estimators of sec. 6; Lipman et al. (2023) and Liu et al. (2023) for
flow matching.
With ``dI = c_0' x_0 + c_1' x_1`` the time derivative of the interpolant without noise:

========================================  =============================================  ====================
loss                                      integrand                                       minimiser
========================================  =============================================  ====================
:func:`flow_matching_loss`                ``|b - (dI + gamma' z)|^2``                     ``b = E[dx_t/dt | x_t]``
:func:`interpolant_velocity_loss`         ``|b|^2 - 2 (dI + gamma' z) . b``               the same ``b``
:func:`interpolant_score_loss`            ``|s|^2 + 2 z . s / gamma``                     ``s = grad log rho_t``
:func:`interpolant_denoiser_loss`         ``|eta|^2 - 2 z . eta``                         ``eta = E[z | x_t]``
========================================  =============================================  ====================

The antithetic variants average the integrand at ``x_t^+ = I + gamma z`` and at
``x_t^- = I - gamma z`` (with ``z -> -z`` in the integrand); both points have the law of
``x_t``, so the expectation is unchanged, and the terms of size ``1 / gamma`` (or ``gamma'``)
cancel to first order, which removes the variance that blows up at the ends of ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffcore._validation import Model, check_choice
from diffcore.distributions import Gaussian, GaussianMixture
from diffcore.interpolants import AbstractInterpolant
from diffcore.training._torch import as_tensor, check_finite_tensor, check_time_range, generator, uniform_times

__all__ = ["flow_matching_loss", "interpolant_denoiser_loss", "interpolant_score_loss", "interpolant_velocity_loss"]

_COMMON = """
    Parameters
    ----------
    model : callable ``(x_t, t) -> (n, d)`` tensor, differentiable (e.g. :class:`MLPField`).
    batch : ``(x0, x1)``, two arrays ``(n, d)`` (a coupled sample of the two ends), or one array
        ``x1`` with ``x0`` drawn from ``rho0`` (the mirror interpolant takes one array ``x``, used
        as both ends).
    interpolant : an :class:`~diffcore.AbstractInterpolant`.
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``; draws ``t``,
        then ``x0`` (when drawn), then ``z``, independently of the model: the same seed gives
        the same noise for every model compared.
    rho0 : the law of ``x0`` when ``batch`` is one array: ``None`` (``N(0, I)``), a
        :class:`~diffcore.Gaussian` or a :class:`~diffcore.GaussianMixture`.
    coupling : optional ``coupling(x0, x1, rng) -> (x0, x1)`` applied to each batch, e.g.
        :func:`diffcore.minibatch_ot_coupling` for OT-conditional flow matching.
    t_min, t_max : ``t`` is uniform on ``[t_min, t_max]`` (drawn in float64, so never exactly at
        the ends of the default ``(0, 1)``); ``t_min = t_max`` is a fixed time inside ``(0, 1)``.

    Returns a 0-d tensor of the batch's dtype, differentiable in the model's parameters.
"""


def flow_matching_loss(
    model: Callable,
    batch: Any,
    interpolant: AbstractInterpolant,
    rng: Any = None,
    *,
    rho0: Any = None,
    coupling: Callable | None = None,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""Conditional flow matching: regress a velocity on the time derivative of the interpolant.

    .. math:: L(\theta) = E_{t, x_0, x_1, z}\, \| b_\theta(x_t, t) - (c_0'(t) x_0 + c_1'(t) x_1
              + \gamma'(t) z) \|^2,

    minimised by the velocity ``b(t, x) = E[dx_t/dt | x_t = x]`` that transports ``rho_0`` to
    ``rho_1`` (Lipman et al. 2023, eq. 9 and thm. 2; Liu et al. 2023, eq. 1 for rectified flow;
    Albergo et al. 2023, sec. 2, up to a constant).  For the :class:`~diffcore.OneSidedInterpolant`
    with ``kind="linear"`` the target is ``x_1 - x_0``.  The value at the minimiser is
    ``E tr Cov(dx_t/dt | x_t)``.
    """
    model = Model.of(model, "model")
    x0, x1, z, t = _draws(batch, interpolant, rng, rho0, coupling, t_min, t_max)
    x_t, d_i, d_gamma, _ = _path(interpolant, x0, x1, z, t)
    err = model(x_t, t.to(x_t.dtype)) - (d_i + d_gamma * z)
    return _mean_sq(err)


def interpolant_velocity_loss(
    model: Callable,
    batch: Any,
    interpolant: AbstractInterpolant,
    rng: Any = None,
    *,
    antithetic: bool = False,
    rho0: Any = None,
    coupling: Callable | None = None,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""The velocity objective of a stochastic interpolant (Albergo et al. 2023, sec. 2).

    .. math:: L_b(\theta) = E\big[\|b_\theta(x_t, t)\|^2 - 2\, (\dot I_t + \gamma'(t) z) \cdot b_\theta(x_t, t)\big],

    with ``dI = c_0' x_0 + c_1' x_1``; minimised by ``b = E[dx_t/dt | x_t]``, where its value is
    ``-E|b(x_t)|^2``.  With ``antithetic=True`` the integrand is averaged over ``x_t^+ = I + gamma z``
    and ``x_t^- = I - gamma z`` (with ``-z``), which cancels the ``gamma' z`` term's variance to
    first order (sec. 6).
    """
    model = Model.of(model, "model")
    x0, x1, z, t = _draws(batch, interpolant, rng, rho0, coupling, t_min, t_max)
    x_t, d_i, d_gamma, gamma = _path(interpolant, x0, x1, z, t)
    tm = t.to(x_t.dtype)

    def term(x: torch.Tensor, sign: float) -> torch.Tensor:
        b = model(x, tm)
        return _sq(b) - 2 * _dot(d_i + sign * d_gamma * z, b)

    if not antithetic:
        return torch.mean(term(x_t, 1.0))
    return torch.mean(0.5 * (term(x_t, 1.0) + term(x_t - 2 * gamma * z, -1.0)))


def interpolant_score_loss(
    model: Callable,
    batch: Any,
    interpolant: AbstractInterpolant,
    rng: Any = None,
    *,
    antithetic: bool = False,
    weighting: str = "none",
    rho0: Any = None,
    coupling: Callable | None = None,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""The score objective of a stochastic interpolant (Albergo et al. 2023, sec. 2).

    .. math:: L_s(\theta) = E\big[\|s_\theta(x_t, t)\|^2 + 2\, \gamma(t)^{-1} z \cdot s_\theta(x_t, t)\big],

    minimised by the score ``s = grad log rho_t = -E[z | x_t] / gamma``, where its value at
    time ``t`` is ``-E|s(x_t)|^2``.  ``weighting="gamma2"`` multiplies the integrand by
    ``gamma^2``: ``E[|gamma s_theta|^2 + 2 gamma z . s_theta] = E|gamma s_theta + z|^2 - d``,
    the same minimiser without the ``1 / gamma`` factor.  ``antithetic=True`` averages over
    ``x_t^{+-} = I +- gamma z`` (with ``+-z``), so the ``z / gamma`` terms cancel to first
    order and the variance stays bounded as ``gamma -> 0`` (sec. 6).  Needs ``gamma(t) > 0``.
    """
    check_choice("weighting", weighting, ("none", "gamma2"))
    model = Model.of(model, "model")
    x0, x1, z, t = _draws(batch, interpolant, rng, rho0, coupling, t_min, t_max)
    x_t, _, _, gamma = _path(interpolant, x0, x1, z, t)
    _need_noise(gamma, "interpolant_score_loss")
    tm = t.to(x_t.dtype)
    weight = gamma[:, 0] ** 2 if weighting == "gamma2" else torch.ones_like(gamma[:, 0])

    def term(x: torch.Tensor, sign: float) -> torch.Tensor:
        s = model(x, tm)
        return weight * (_sq(s) + 2 * sign * _dot(z / gamma, s))

    if not antithetic:
        return torch.mean(term(x_t, 1.0))
    return torch.mean(0.5 * (term(x_t, 1.0) + term(x_t - 2 * gamma * z, -1.0)))


def interpolant_denoiser_loss(
    model: Callable,
    batch: Any,
    interpolant: AbstractInterpolant,
    rng: Any = None,
    *,
    antithetic: bool = False,
    rho0: Any = None,
    coupling: Callable | None = None,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""The denoiser objective of a stochastic interpolant (Albergo et al. 2023, sec. 2).

    .. math:: L_\eta(\theta) = E\big[\|\eta_\theta(x_t, t)\|^2 - 2\, z \cdot \eta_\theta(x_t, t)\big],

    minimised by ``eta = E[z | x_t]`` (so ``s = -eta / gamma``), where its value is
    ``-E|eta(x_t)|^2``; ``antithetic=True`` averages over ``x_t^{+-} = I +- gamma z`` (with
    ``+-z``).  Needs ``gamma(t) > 0``.
    """
    model = Model.of(model, "model")
    x0, x1, z, t = _draws(batch, interpolant, rng, rho0, coupling, t_min, t_max)
    x_t, _, _, gamma = _path(interpolant, x0, x1, z, t)
    _need_noise(gamma, "interpolant_denoiser_loss")
    tm = t.to(x_t.dtype)

    def term(x: torch.Tensor, sign: float) -> torch.Tensor:
        eta = model(x, tm)
        return _sq(eta) - 2 * sign * _dot(z, eta)

    if not antithetic:
        return torch.mean(term(x_t, 1.0))
    return torch.mean(0.5 * (term(x_t, 1.0) + term(x_t - 2 * gamma * z, -1.0)))


for _fn in (flow_matching_loss, interpolant_velocity_loss, interpolant_score_loss, interpolant_denoiser_loss):
    _fn.__doc__ += _COMMON


# -- helpers -----------------------------------------------------------------------------------------
def _draws(batch: Any, interpolant: Any, rng: Any, rho0: Any, coupling: Any, t_min: Any, t_max: Any) -> tuple:
    """``(x0, x1, z, t)``: the two ends, the latent noise and float64 times (drawn in this order)."""
    if not isinstance(interpolant, AbstractInterpolant):
        raise TypeError(f"interpolant must be an AbstractInterpolant; got {type(interpolant).__name__}")
    t_min, t_max = check_time_range(t_min, t_max, open_ends=True)
    if coupling is not None and not callable(coupling):
        raise TypeError(f"coupling must be callable (x0, x1, rng) -> (x0, x1); got {type(coupling).__name__}")
    pair = isinstance(batch, (tuple, list))
    if interpolant.coupling == "identical" and pair:
        raise ValueError(f"{type(interpolant).__name__} has x0 = x1: give one array as the batch, not a pair")
    if pair:
        if len(batch) != 2:
            raise ValueError(f"batch must be one array x1 or a pair (x0, x1); got a sequence of {len(batch)}")
        x0, x1 = (check_finite_tensor(name, as_tensor(name, a)) for name, a in zip(("x0", "x1"), batch))
        if x0.shape != x1.shape:
            raise ValueError(f"x0 and x1 must have the same shape; got {tuple(x0.shape)} and {tuple(x1.shape)}")
        x0 = x0.to(dtype=x1.dtype, device=x1.device)
    else:
        x1 = check_finite_tensor("batch", as_tensor("batch", batch))
    gen = generator(rng, x1.device)
    t = uniform_times(x1.shape[0], t_min, t_max, gen, x1)
    if not pair:
        x0 = x1 if interpolant.coupling == "identical" else _draw_x0(rho0, x1, gen)
    if coupling is not None:
        x0, x1 = coupling(x0, x1, gen)
    z = torch.randn(x1.shape, generator=gen, dtype=x1.dtype, device=gen.device).to(x1.device)
    return x0, x1, z, t


def _draw_x0(rho0: Any, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if rho0 is None:
        return torch.randn(like.shape, generator=gen, dtype=like.dtype, device=gen.device).to(like.device)
    if not isinstance(rho0, (Gaussian, GaussianMixture)):
        raise TypeError(f"rho0 must be None (N(0, I)), a Gaussian or a GaussianMixture; got {type(rho0).__name__}")
    if like.ndim != 2 or like.shape[1] != rho0.dim:
        raise ValueError(f"x1 must have shape (n, {rho0.dim}) to match rho0; got {tuple(like.shape)}")
    return rho0.sample(like.shape[0], gen, like=like)


def _path(interpolant: Any, x0: torch.Tensor, x1: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> tuple:
    """``x_t``, ``dI = c_0' x_0 + c_1' x_1``, ``gamma'`` and ``gamma``, coefficients shaped ``(n, 1, ...)``."""

    def coef(name: str) -> torch.Tensor:
        return getattr(interpolant, name)(t).to(x1.dtype).reshape((x1.shape[0],) + (1,) * (x1.ndim - 1))

    c0, c1, gamma = coef("coef0"), coef("coef1"), coef("gamma")
    d0, d1, d_gamma = coef("d_coef0"), coef("d_coef1"), coef("d_gamma")
    return c0 * x0 + c1 * x1 + gamma * z, d0 * x0 + d1 * x1, d_gamma, gamma


def _need_noise(gamma: torch.Tensor, name: str) -> None:
    if not bool((gamma > 0).all()):
        raise ValueError(
            f"{name} needs gamma(t) > 0 at every drawn time; got gamma = 0 (an interpolant without latent "
            "noise, e.g. OneSidedInterpolant or gamma_scale=0: learn its velocity instead)"
        )


def _sq(a: torch.Tensor) -> torch.Tensor:
    return torch.sum(a.reshape(a.shape[0], -1) ** 2, dim=1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sum((a * b).reshape(a.shape[0], -1), dim=1)


def _mean_sq(err: torch.Tensor) -> torch.Tensor:
    return torch.mean(_sq(err))
