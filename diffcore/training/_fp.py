r"""The Fokker–Planck regulariser of Deveney et al. (2023): a differentiable score-FP residual penalty.

A learned score ``s_theta`` that does not solve the score Fokker–Planck equation drives the
probability-flow ODE and the reverse SDE to different laws; the ``W_2`` distance between them
is bounded by the residual (Deveney et al. 2023, arXiv:2311.15996, sec. 4).  Adding the mean
squared residual to denoising score matching (their sec. 5; Lai et al. 2023, eq. 9, for the
same idea) trades a little score accuracy for a smaller ODE–SDE gap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffcore._validation import check_nonnegative
from diffcore.fokker_planck import fp_residual
from diffcore.processes import AbstractProcess
from diffcore.training._losses import dsm_loss
from diffcore.training._torch import as_tensor, check_time_range, generator, uniform_times

__all__ = ["dsm_fp_loss", "fp_penalty"]


def fp_penalty(
    process: AbstractProcess,
    model: Callable,
    x: Any,
    t: Any,
    *,
    weighting: Callable[[torch.Tensor], Any] | None = None,
) -> torch.Tensor:
    r"""Mean squared score Fokker–Planck residual of a torch score model, differentiable in its parameters.

    .. math:: P(\theta) = \frac1n \sum_{i=1}^n w(t_i)\, \big|R_\theta(x_i, t_i)\big|^2, \qquad
              R_\theta = \partial_t s_\theta - \nabla\big(\tfrac12 g^2 \nabla\cdot s_\theta
              + \tfrac12 g^2 |s_\theta|^2 - f\, x\cdot s_\theta\big),

    the residual of :func:`diffcore.fokker_planck.fp_residual` by exact autograd (``d + 1``
    backward passes with the graph kept; the penalty costs about ``2 (d + 1)`` times a score
    evaluation's backward).  This is the regulariser of Deveney et al. 2023 (arXiv:2311.15996,
    sec. 5) for the affine SDE ``dx = f(t) x dt + g(t) dW``.

    Parameters
    ----------
    model : a torch score model ``(x, t) -> (n, d)`` (e.g. :class:`MLPField`), differentiable in
        ``x`` and ``t``.
    x : points ``(n, d)`` (a tensor or NumPy array), e.g. noised data ``alpha x_0 + sigma eps``.
    t : a float in ``(0, 1]`` or an ``(n,)`` array of times.
    weighting : ``None`` (``w = 1``) or a callable ``w(t)`` of an ``(n,)`` tensor returning a scalar
        or ``(n,)``.

    Returns a 0-d tensor of ``x``'s dtype.

    Example
    -------
    >>> import numpy as np, torch
    >>> from diffcore import VPSDE
    >>> from diffcore.training import MLPField
    >>> model = MLPField(2, width=8, depth=1, rng=0, dtype=torch.float64)
    >>> penalty = fp_penalty(VPSDE(), model, np.zeros((4, 2)), 0.5)
    >>> penalty.shape, bool(penalty > 0), penalty.requires_grad
    (torch.Size([]), True, True)
    """
    x = as_tensor("x", x)  # a batch of at least one point: the mean of no residuals is not a penalty
    r = fp_residual(process, model, x, t, method="autograd")
    sq = torch.sum(r * r, dim=1)
    if weighting is None:
        return torch.mean(sq)
    tt = torch.full((x.shape[0],), float(t), dtype=x.dtype) if isinstance(t, (int, float)) else as_tensor("t", t)
    w = torch.as_tensor(weighting(tt), dtype=sq.dtype, device=sq.device)
    if w.shape not in ((), sq.shape):
        raise ValueError(f"weighting(t) must return a scalar or shape {tuple(sq.shape)}; got {tuple(w.shape)}")
    return torch.mean(w * sq)


def dsm_fp_loss(
    model: Callable,
    x0: Any,
    process: AbstractProcess,
    rng: Any = None,
    *,
    fp_weight: float = 1.0,
    fp_t_min: float = 0.05,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    weighting: Callable[[torch.Tensor], Any] | None = None,
) -> torch.Tensor:
    r"""Denoising score matching plus the Fokker–Planck penalty: ``L_DSM + fp_weight * P``.

    .. math:: L(\theta) = L_{DSM}(\theta) + \lambda\, E_{t \sim U[t_{fp}, t_{max}]}\,
              E_{x_0, \varepsilon}\, w(t)\, |R_\theta(\alpha_t x_0 + \sigma_t \varepsilon, t)|^2,

    with :func:`dsm_loss` (Song et al. 2021, eq. 7) and :func:`fp_penalty` (Deveney et al.
    2023, sec. 5).  The penalty draws its own times and noise from the same generator, after
    the DSM draws, and it draws them for every ``fp_weight``, ``0`` included (they cost one
    batch of uniforms and normals; the residual itself is skipped at ``fp_weight = 0``).  So
    ``fp_weight = 0`` gives the DSM value of the same seed *and* leaves the generator in the
    same state as a positive weight: two :func:`fit` runs that differ only in ``fp_weight``
    see the same batches and the same DSM noise at every step.  ``fp_t_min`` keeps the penalty
    away from ``t = 0``, where the residual of a score ``~ 1/sigma`` grows like
    ``1/(sigma t)`` and would dominate the sum.  Use it with :func:`fit` through
    ``functools.partial(dsm_fp_loss, process=..., fp_weight=...)``.  Chapter "Fokker–Planck and
    the ODE–SDE gap" of the book derives the penalty (its equation ``fp-loss``).
    """
    fp_weight = check_nonnegative("fp_weight", fp_weight)
    fp_t_min, t_max_fp = check_time_range(fp_t_min, t_max, open_ends=True)
    if fp_t_min <= 0:
        raise ValueError(f"fp_t_min must be > 0 (the residual is singular at t = 0); got {fp_t_min}")
    x0 = as_tensor("x0", x0)
    gen = generator(rng, x0.device)
    loss = dsm_loss(model, x0, process, gen, t_min=t_min, t_max=t_max)
    # draw the penalty's randoms even when it is switched off, so that the generator's state (and
    # with it every later batch of fit) does not depend on fp_weight
    t = uniform_times(x0.shape[0], fp_t_min, t_max_fp, gen, x0)
    eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype, device=gen.device).to(x0.device)
    if fp_weight == 0:
        return loss
    a, s = process.alpha(t).to(x0.dtype)[:, None], process.sigma(t).to(x0.dtype)[:, None]
    return loss + fp_weight * fp_penalty(process, model, a * x0 + s * eps, t.to(x0.dtype), weighting=weighting)
