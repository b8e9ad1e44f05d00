r"""Null-text inversion (Mokady et al. 2023) as a toy: per-step null offsets that make guided DDIM reconstruct."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import namespace
from diffcore._validation import Model, check_array, check_finite, check_nonnegative, check_real, check_steps
from diffcore.processes import AbstractProcess
from diffcore.samplers import time_grid
from diffcore.samplers._bdia import ddim_increment

__all__ = ["NullTextInversion", "ddim_pivot", "null_text_inversion", "null_text_sample"]

Array = Any
Field = Callable[[Array, Any], Array]


@dataclass(frozen=True, eq=False)
class NullTextInversion:
    """The result of :func:`null_text_inversion`.

    Attributes
    ----------
    latent : ``z*_T``, the end of the conditional (``w = 0``) DDIM inversion, ``(n, d)``.
    offsets : the optimised null offsets ``phi_k``, one per sampling step, ``(steps, n, d)``.
    reconstruction : guided DDIM sampling from ``latent`` with ``offsets``, ``(n, d)`` (equals
        :func:`null_text_sample` with the same arguments).
    pivot : the inversion trajectory ``z*_k`` at the grid times, ``(steps + 1, n, d)`` (``pivot[-1] = x0``).
    ts : the decreasing sampling grid, NumPy float64 ``(steps + 1,)``.
    losses : the final per-step loss ``max_i ||z*_{k+1} - z~_{k+1}||^2`` over the batch, ``(steps,)``.
    nfe : model calls spent: ``steps`` (inversion) + ``2 steps`` (tuning: one conditional and one
        unconditional call per step; the offset enters additively, so inner iterations are free).
    """

    latent: Any
    offsets: Any
    reconstruction: Any
    pivot: Any
    ts: np.ndarray
    losses: np.ndarray
    nfe: int


def _eps(process: AbstractProcess, score: Field, x: Array, t: float) -> Array:
    return -process.sigma(t) * score(x, t)


def ddim_pivot(process: AbstractProcess, conditional_score: Field, x0: Array, ts: Any) -> Array:
    r"""DDIM inversion with the conditional model only (``w = 0``): the pivot ``z*_k`` at every time of ``ts``.

    ``ts`` decreasing (sampling order); ``z*_N = x0`` and ``z*_{k-1} = z*_k + Delta(t_k -> t_{k-1} | z*_k)``
    with ``eps`` evaluated at ``(z*_k, t_k)`` (DDIM's increment, :func:`~diffcore.invert` with
    ``method="ddim"`` gives the same ``z*_0``).  Returns ``(len(ts), n, d)``.
    """
    x0 = check_finite("x0", check_array("x0", x0, ndim=2))
    conditional_score = Model.of(conditional_score, "conditional_score")
    grid = [float(t) for t in ts]
    path = [x0]
    for k in range(len(grid) - 1, 0, -1):
        z = path[-1]
        path.append(z + ddim_increment(process, z, _eps(process, conditional_score, z, grid[k]), grid[k], grid[k - 1]))
    return namespace(x0).stack(path[::-1])


def _guided_step(process, eps_c, eps_u, z, phi, w, t, t_next):
    """One DDIM step with ``eps~ = (1 + w) eps_c - w (eps_u + phi)``, and ``dz/dphi = -w c`` (a scalar)."""
    eps = (1.0 + w) * eps_c - w * (eps_u + phi)
    ratio = process.alpha(t_next) / process.alpha(t)
    return z + ddim_increment(process, z, eps, t, t_next), -w * (process.sigma(t_next) - ratio * process.sigma(t))


def null_text_sample(
    process: AbstractProcess, conditional_score: Field, unconditional_score: Field, x_init: Array, offsets: Array,
    ts: Any, *, w: float,
) -> Array:  # fmt: skip
    r"""Guided DDIM sampling with per-step null offsets: ``eps~_k = (1 + w) eps_c - w (eps_u + phi_k)``.

    ``x_init (n, d)`` at ``ts[0]``; ``offsets (steps, n, d)`` (zeros: plain classifier-free guidance,
    Ho and Salimans 2022); ``ts`` the decreasing grid of :class:`NullTextInversion`.  Returns ``(n, d)``.
    Two model calls per step.
    """
    x_init = check_finite("x_init", check_array("x_init", x_init, ndim=2))
    conditional_score = Model.of(conditional_score, "conditional_score")
    unconditional_score = Model.of(unconditional_score, "unconditional_score")
    grid = [float(t) for t in ts]
    if tuple(offsets.shape) != (len(grid) - 1, *tuple(x_init.shape)):
        raise ValueError(
            f"offsets must have shape (steps, n, d) = ({len(grid) - 1}, {', '.join(map(str, x_init.shape))}); "
            f"got {tuple(offsets.shape)}"
        )
    z = x_init
    for k in range(len(grid) - 1):
        eps_c = _eps(process, conditional_score, z, grid[k])
        eps_u = _eps(process, unconditional_score, z, grid[k])
        z, _ = _guided_step(process, eps_c, eps_u, z, offsets[k], w, grid[k], grid[k + 1])
    return z


def null_text_inversion(
    process: AbstractProcess,
    conditional_score: Field,
    unconditional_score: Field,
    x0: Array,
    *,
    w: float,
    steps: int,
    inner_steps: int = 10,
    lr: float = 0.5,
    tol: float = 0.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
) -> NullTextInversion:
    r"""Null-text inversion: tune one "null" offset per step so that guided DDIM retraces the ``w = 0`` inversion.

    The toy analogue of Mokady et al. (2023), sec. 3: the text condition is the class label (the
    conditional score ``s_c = grad log p_t(x | y)``), and the null-text embedding of the
    unconditional branch is replaced by an additive per-step offset ``phi_k`` of its noise
    prediction, ``eps_u(x, t) + phi_k`` with ``eps = -sigma_t s`` (``phi = 0`` is the plain
    unconditional model).  Steps:

    1. pivot: DDIM inversion with ``w = 0`` (conditional only), ``z*_N = x0 -> z*_0`` (:func:`ddim_pivot`);
    2. pivotal tuning (their alg. 1): ``z~_0 = z*_0``; for ``k = 0 .. N-1``, starting from
       ``phi_{k-1}`` (``phi_{-1} = 0``), ``inner_steps`` iterations on
       ``L(phi) = ||z*_{k+1} - z_{k+1}(z~_k, phi)||^2``, where ``z_{k+1}`` is the DDIM step with
       ``eps~ = (1 + w) eps_c - w (eps_u + phi)``; then ``z~_{k+1} = z_{k+1}(z~_k, phi_k)``.

    Here the offset enters the DDIM step linearly, ``dz_{k+1}/dphi = -w c_k I`` with
    ``c_k = sigma_{k+1} - sigma_k alpha_{k+1}/alpha_k``, so ``L`` is a quadratic with Hessian
    ``2 w^2 c_k^2 I``; the iterations are gradient steps preconditioned by it,
    ``phi <- phi - lr grad L / (2 w^2 c_k^2)``, which shrink the residual by ``(1 - lr)`` each (the
    paper's Adam with ``lr = 1e-2`` on a network plays this role); they stop early once every
    sample's loss is ``<= tol``.  The tuned offsets absorb both the guidance mismatch and DDIM's
    own ``O(h)`` inversion error, so the reconstruction is exact up to ``(1 - lr)^inner_steps``.

    Parameters
    ----------
    conditional_score, unconditional_score : score callables ``(x, t) -> (n, d)`` (e.g.
        :func:`exact_conditional_score` and :func:`~diffcore.exact_score` of a :class:`LabelledMixture`).
    x0 : ``(n, d)`` data to invert.
    w : guidance weight of the sampler to be inverted, ``!= 0`` (``w = 0`` needs no tuning).
    steps : DDIM steps on the uniform grid ``t_max -> t_min`` (DDIM's grid, as in :func:`~diffcore.invert`).
    inner_steps, lr, tol : the tuning iterations per step, ``lr`` in ``(0, 2)``, early-stopping loss.

    Returns
    -------
    :class:`NullTextInversion`.

    References
    ----------
    R. Mokady, A. Hertz, K. Aberman, Y. Pritch, D. Cohen-Or, "Null-text Inversion for Editing Real
    Images using Guided Diffusion Models", CVPR 2023 (alg. 1); book chapter "Inverse problems".
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    w = check_real("w", w)
    if w == 0:
        raise ValueError("w must be != 0: with w = 0 the guided sampler is the conditional one and needs no tuning")
    steps, inner_steps = check_steps(steps), check_steps(inner_steps, "inner_steps")
    lr, tol = check_real("lr", lr), check_nonnegative("tol", tol)
    if not 0 < lr < 2:
        raise ValueError(f"lr must lie in (0, 2) (the preconditioned iteration contracts by |1 - lr|); got {lr}")
    x0 = check_finite("x0", check_array("x0", x0, ndim=2))
    if x0.shape[0] == 0:
        raise ValueError("x0 must hold at least one point to invert; got an empty batch")
    conditional_score = Model.of(conditional_score, "conditional_score")
    unconditional_score = Model.of(unconditional_score, "unconditional_score")
    ts = time_grid(process, steps, t_min=t_min, t_max=t_max, kind="uniform")
    grid = [float(t) for t in ts]
    pivot = ddim_pivot(process, conditional_score, x0, grid)
    xp = namespace(x0)
    z, phi = pivot[0], xp.zeros_like(x0)
    offsets, losses = [], []
    for k in range(steps):
        eps_c = _eps(process, conditional_score, z, grid[k])
        eps_u = _eps(process, unconditional_score, z, grid[k])
        for _ in range(inner_steps):
            z_next, slope = _guided_step(process, eps_c, eps_u, z, phi, w, grid[k], grid[k + 1])
            resid = pivot[k + 1] - z_next
            if float(xp.max(xp.sum(resid**2, axis=1))) <= tol:
                break
            phi = phi + lr * resid / slope  # -lr * grad / Hessian, grad = -2 slope resid, Hessian = 2 slope^2
        z, _ = _guided_step(process, eps_c, eps_u, z, phi, w, grid[k], grid[k + 1])
        offsets.append(phi)
        losses.append(float(xp.max(xp.sum((pivot[k + 1] - z) ** 2, axis=1))))
    return NullTextInversion(
        latent=pivot[0], offsets=xp.stack(offsets), reconstruction=z, pivot=pivot, ts=ts,
        losses=np.asarray(losses), nfe=3 * steps,
    )  # fmt: skip
