r"""Losses of discrete diffusion (torch): the D3PM bound, the masked-diffusion ELBO and score entropy.

Every loss takes ``model(x_t, t)``, a torch callable of integer tokens ``x_t (n, L)`` and float64
times ``t (n,)`` (e.g. :class:`~diffcore.training.DiscreteDenoiser`), clean data ``x0 (n, L)``
(integer codes ``< V``), a forward process of :mod:`diffcore.discrete` and ``rng``; it draws ``t``
and ``x_t ~ q(x_t | x_0)`` from one ``torch.Generator`` seeded by ``rng`` (so the same seed gives
the same noise for every model compared) and returns a 0-d tensor, differentiable in the model's
parameters, whose minimiser is an exact quantity of :mod:`diffcore.discrete`:

=========================  ==========================  =====================================================
loss                       model output                minimiser
=========================  ==========================  =====================================================
:func:`d3pm_loss`          logits ``(n, L, V)``        ``exact_denoiser``: ``p(x_{0,l} | x_t)``
:func:`masked_diffusion_   logits ``(n, L, V)``        ``exact_denoiser`` at masked positions
loss`
:func:`score_entropy_loss` log ratios ``(n, L, S)``    ``log concrete_score``: ``log p_t(y)/p_t(x_t)``
=========================  ==========================  =====================================================

:func:`masked_diffusion_nelbo` evaluates the masked-diffusion bound of a NumPy denoiser *exactly*
(every mask pattern, Gauss-Legendre quadrature in ``t``), sequence by sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from diffcore._validation import check_steps
from diffcore.discrete._laws import check_tokens
from diffcore.discrete._processes import AbsorbingDiffusion, AbstractCTMCDiffusion
from diffcore.training._torch import check_time_range, generator, uniform_times

__all__ = ["d3pm_loss", "masked_diffusion_loss", "masked_diffusion_nelbo", "score_entropy_loss"]

_TINY = 1e-300  # floor under a probability before its log (float64)


# -- shared plumbing ---------------------------------------------------------------------------------
def _check_process(process: Any, absorbing: bool = False) -> AbstractCTMCDiffusion:
    kind = AbsorbingDiffusion if absorbing else AbstractCTMCDiffusion
    if not isinstance(process, kind):
        what = "an AbsorbingDiffusion" if absorbing else "a UniformDiffusion, AbsorbingDiffusion or MarkovDiffusion"
        raise TypeError(f"process must be {what}; got {type(process).__name__}")
    return process


def _clean_tokens(x0: Any, process: AbstractCTMCDiffusion) -> torch.Tensor:
    x = check_tokens("x0", x0, process.vocab_size)
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x0 must have shape (n, L) with n >= 1 and L >= 1; got {x.shape}")
    return torch.from_numpy(x)


def _model_output(model: Callable, x_t: torch.Tensor, t: torch.Tensor, classes: int, what: str) -> torch.Tensor:
    out = model(x_t, t)
    n, L = x_t.shape
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, L, classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return {what} of shape (n, L, {classes}) = ({n}, {L}, {classes}); got {got}")
    if not out.dtype.is_floating_point:
        raise TypeError(f"model must return a floating tensor of {what}; got dtype {out.dtype}")
    return out


def _draw_tokens(probs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One categorical draw per row of ``probs (..., S)`` by inverse CDF."""
    u = torch.rand((*probs.shape[:-1], 1), generator=gen, dtype=torch.float64, device=gen.device)
    cdf = torch.cumsum(probs, dim=-1)
    return torch.clamp((cdf <= u * cdf[..., -1:]).sum(dim=-1), max=probs.shape[-1] - 1)


def _transitions(process: AbstractCTMCDiffusion, t: np.ndarray, s: np.ndarray | None = None) -> torch.Tensor:
    """``P_{t|s}`` for every time of the batch: float64 ``(n, S, S)``."""
    s = np.zeros_like(t) if s is None else s
    return torch.from_numpy(np.stack([process.transition(float(a), float(b)) for a, b in zip(t, s)]))


def _xlogy_ratio(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``sum_j q_j log(q_j / p_j)`` over the last axis, with ``0 log 0 = 0``."""
    ratio = torch.where(q > 0, q / p.clamp_min(_TINY), torch.ones((), dtype=q.dtype))
    return (q * torch.log(ratio)).sum(dim=-1)


# -- D3PM --------------------------------------------------------------------------------------------
def d3pm_loss(
    model: Callable,
    x0: Any,
    process: AbstractCTMCDiffusion,
    rng: Any = None,
    *,
    steps: int = 100,
    t_max: float = 1.0,
    hybrid: float = 0.0,
    prior_term: bool = True,
) -> torch.Tensor:
    r"""The D3PM variational bound on the grid ``t_k = k t_max / T``, with an optional hybrid cross-entropy.

    .. math:: L_{vb} = \mathrm{KL}\big(q(x_{t_T} \mid x_0) \,\|\, p(x_{t_T})\big)
              + \sum_{k=2}^{T} E_q\, \mathrm{KL}\big(q(x_{t_{k-1}} \mid x_{t_k}, x_0) \,\|\,
              p_\theta(x_{t_{k-1}} \mid x_{t_k})\big) - E_q \log p_\theta(x_0 \mid x_{t_1}),

    (Austin et al. 2021, eq. 1 and eq. 5; ``L_lambda = L_vb + lambda E[-log p~(x_0 | x_t)]`` with
    ``hybrid = lambda``), estimated by one uniform ``k in {1..T}`` per sequence (the sum is ``T``
    times the mean).  The reverse step is the posterior mixture, token by token,

    .. math:: p_\theta(x_{s,l} = j \mid x_t) = \frac{\sum_{a} \tilde p_\theta(a)\,
              q(x_{s,l} = j \mid x_{t,l}, x_{0,l} = a)}{\sum_a \tilde p_\theta(a)},
              \quad a \text{ over the clean tokens with } P_{t|0}[a, x_{t,l}] > 0,

    with ``p~ = softmax(model(x_t, t))``; at ``s = 0`` it is ``p~`` itself, so the ``k = 1`` term
    is the same formula.  Its minimiser is the exact per-token denoiser (the mixture is then
    :math:`q(x_{s,l} \mid x_t)`, the per-token reverse marginal).  Unlike Austin et al.'s eq. 4, the
    mixture does not re-weight ``p~`` by :math:`q(x_t \mid a)`: the exact denoiser already holds it.

    Parameters
    ----------
    model : ``(x_t (n, L) int64, t (n,) float64) -> logits (n, L, V)``.
    x0 : clean tokens ``(n, L)``; process : a :mod:`diffcore.discrete` process.
    steps : ``T >= 1``; t_max : the last grid time in ``(0, 1]``.
    hybrid : ``lambda >= 0``, the weight of the auxiliary cross-entropy (Austin et al. use 0.01).
    prior_term : add the parameter-free ``KL(q(x_{t_T} | x_0) || prior_probs())`` per token, so that
        the estimate is the whole bound; ``ValueError`` when it is infinite (absorbing noise that
        leaves tokens unmasked at ``t_max``: use ``prior_term=False`` or a schedule reaching the mask).

    Returns the batch mean, a 0-d float64 tensor.
    """
    process = _check_process(process)
    T = check_steps(steps, "steps")
    _, t_max = check_time_range(0.0, t_max, open_ends=False)
    if not t_max > 0:
        raise ValueError(f"t_max must be > 0; got {t_max}")
    if isinstance(hybrid, bool) or not isinstance(hybrid, (int, float)) or not (math.isfinite(hybrid) and hybrid >= 0):
        raise ValueError(f"hybrid must be a finite number >= 0; got {hybrid!r}")
    if not isinstance(prior_term, bool):
        raise TypeError(f"prior_term must be a bool; got {type(prior_term).__name__}")
    x0 = _clean_tokens(x0, process)
    n, L = x0.shape
    V, S = process.vocab_size, process.num_states
    gen = generator(rng)
    grid = t_max * np.arange(T + 1) / T
    P0 = torch.from_numpy(np.stack([process.transition(float(t)) for t in grid]))  # (T+1, S, S)
    Pstep = torch.from_numpy(
        np.stack([process.transition(float(grid[k]), float(grid[k - 1])) for k in range(1, T + 1)])
    )
    k = torch.randint(1, T + 1, (n,), generator=gen, device=gen.device)
    Pt0, Ps0, Pts = P0[k], P0[k - 1], Pstep[k - 1]  # (n, S, S)
    rows = torch.arange(n)[:, None]
    x_t = _draw_tokens(Pt0[rows, x0], gen)  # (n, L)
    t = torch.from_numpy(grid)[k]
    logits = _model_output(model, x_t, t, V, "logits").to(torch.float64)
    p_hat = torch.softmax(logits, dim=2)
    # G[i, l, a, j] = q(x_s = j | x_t, x_0 = a) = P_s0[a, j] P_ts[j, x_t] / P_t0[a, x_t]
    lik = Pt0[:, :V, :].gather(2, x_t[:, None, :].expand(n, V, L)).transpose(1, 2)  # (n, L, V): P_t0[a, x_t]
    back = Pts.gather(2, x_t[:, None, :].expand(n, S, L)).transpose(1, 2)  # (n, L, S): P_ts[j, x_t]
    feasible = lik > 0
    G = Ps0[:, None, :V, :] * back[:, :, None, :] / torch.where(feasible, lik, torch.ones(()))[..., None]
    G = torch.where(feasible[..., None], G, torch.zeros(()))
    w = p_hat * feasible
    p_model = (w[..., None] * G).sum(dim=2) / w.sum(dim=2, keepdim=True).clamp_min(_TINY)  # (n, L, S)
    q_true = G.gather(2, x0[:, :, None, None].expand(n, L, 1, S))[:, :, 0, :]
    per_seq = T * _xlogy_ratio(q_true, p_model).sum(dim=1)
    if hybrid > 0:
        per_seq = per_seq - hybrid * torch.log_softmax(logits, dim=2).gather(2, x0[..., None])[..., 0].sum(dim=1)
    if prior_term:
        prior = torch.from_numpy(process.prior_probs())
        q_T = P0[T][x0]  # (n, L, S)
        kl = torch.where(q_T > 0, q_T * (torch.log(q_T.clamp_min(_TINY)) - torch.log(prior)), torch.zeros(()))
        kl_seq = kl.sum(dim=(1, 2))
        if not bool(torch.isfinite(kl_seq).all()):
            raise ValueError(
                f"the prior term KL(q(x_T | x_0) || prior) is infinite at t_max = {t_max}: q(x_T | x_0) puts mass "
                "where the prior has none (absorbing noise leaves tokens unmasked); use prior_term=False or a "
                "schedule that reaches the prior"
            )
        per_seq = per_seq + kl_seq
    return per_seq.mean()


# -- masked diffusion ----------------------------------------------------------------------------------
def _masking(process: AbsorbingDiffusion, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``1 - alpha_t = 1 - e^{-B(t)}`` and the ELBO weight ``-alpha'_t / (1 - alpha_t) = beta(t) / (e^{B(t)} - 1)``."""
    B = np.array([process.integrated_rate(float(s)) for s in t])
    beta = np.array([process.rate(float(s)) for s in t])
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = beta / np.expm1(B)
    return -np.expm1(-B), weight


def masked_diffusion_loss(
    model: Callable,
    x0: Any,
    process: AbsorbingDiffusion,
    rng: Any = None,
    *,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""The continuous-time masked-diffusion bound (MDLM, MD4): a weighted cross-entropy on masked tokens.

    With :math:`\alpha_t = e^{-B(t)}` the probability that a token is still unmasked at ``t``,

    .. math:: L(\theta) = E_{t \sim U[t_{min}, t_{max}]}\, E_{x_t \sim q(\cdot \mid x_0)}\,
              \frac{-\alpha'_t}{1 - \alpha_t} \sum_{l:\, x_{t,l} = \mathrm{mask}}
              -\log p_\theta(x_{0,l} \mid x_t),

    Sahoo et al. 2024, eq. 10-11; Shi et al. 2024, eq. 5 (``-alpha'/(1 - alpha) = beta(t) /
    (e^{B(t)} - 1)``; ``1 / t`` for the log-linear schedule with ``eps = 0``).  With
    ``[t_min, t_max] = [0, 1]`` and :math:`\alpha_1 = 0` it is the negative ELBO of the reverse
    process started from all-mask, :math:`\ge -\log p_\theta(x_0)`, with equality for the exact
    denoiser (:func:`masked_diffusion_nelbo` evaluates it exactly).  Its minimiser at the masked
    positions is the exact denoiser :math:`p(x_{0,l} \mid x_t)`; unmasked positions do not enter.

    Parameters
    ----------
    model : ``(x_t (n, L) int64 with mask V, t (n,) float64) -> logits (n, L, V)``.
    x0 : clean tokens ``(n, L)``; process : an :class:`~diffcore.discrete.AbsorbingDiffusion`.
    t_min, t_max : the range of ``t`` (the estimate is the *mean* over it; multiply by
        ``t_max - t_min`` for the integral).

    Returns the batch mean, a 0-d float64 tensor.
    """
    process = _check_process(process, absorbing=True)
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    x0 = _clean_tokens(x0, process)
    n, L = x0.shape
    gen = generator(rng)
    t = uniform_times(n, t_min, t_max, gen, x0.to(torch.float64))
    p_mask, weight = _masking(process, t.numpy())
    u = torch.rand((n, L), generator=gen, dtype=torch.float64, device=gen.device)
    masked = u < torch.from_numpy(p_mask)[:, None]
    x_t = torch.where(masked, torch.full((), process.mask_token), x0)
    logits = _model_output(model, x_t, t, process.vocab_size, "logits").to(torch.float64)
    nll = -torch.log_softmax(logits, dim=2).gather(2, x0[..., None])[..., 0]
    ce = torch.where(masked, nll, torch.zeros(())).sum(dim=1)
    any_masked = masked.any(dim=1)
    w = torch.where(any_masked, torch.from_numpy(np.where(np.isfinite(weight), weight, 0.0)), torch.zeros(()))
    return (w * ce).mean()


def masked_diffusion_nelbo(
    denoiser: Callable,
    process: AbsorbingDiffusion,
    x0: Any,
    *,
    t_min: float = 0.0,
    t_max: float = 1.0,
    points: int = 32,
) -> np.ndarray:
    r"""The masked-diffusion bound of :func:`masked_diffusion_loss`, per sequence and exactly in ``x_t``.

    .. math:: \mathrm{NELBO}(x_0) = \int_{t_{min}}^{t_{max}} \frac{-\alpha'_t}{1 - \alpha_t}
              \sum_{m \in \{0, 1\}^L} (1 - \alpha_t)^{|m|} \alpha_t^{L - |m|}
              \sum_{l:\, m_l = 1} -\log p_\theta(x_{0,l} \mid x_0 \text{ masked at } m, t)\, dt,

    the expectation over the ``2^L`` mask patterns taken exactly and the time integral by
    ``points``-node Gauss-Legendre quadrature (exact for a time-independent denoiser under the
    log-linear schedule, where the integrand is a polynomial of degree ``L - 1`` in ``t``).  With
    ``[0, 1]`` and :math:`\alpha_1 = 0` it bounds :math:`-\log p_\theta(x_0)` of the continuous-time
    reverse process; for the exact denoiser it *equals* :math:`-\log p_0(x_0)` (the reverse process
    is then the time reversal, whose path law given ``x_0`` is the forward one: the gap
    :math:`\mathrm{KL}(q(\text{path} \mid x_0) \,\|\, p_\theta(\text{path} \mid x_0))` vanishes).

    Parameters
    ----------
    denoiser : NumPy ``(x (m, L) int, t float) -> (m, L, V)`` probabilities (e.g.
        :func:`~diffcore.discrete.exact_denoiser`, :meth:`DiscreteDenoiser.numpy_denoiser`).
    process : :class:`~diffcore.discrete.AbsorbingDiffusion`; x0 : ``(n, L)`` clean tokens.
    t_min, t_max, points : the integral's range and quadrature nodes.  ``L <= 16``.

    Returns ``(n,)`` float64 (nats).
    """
    process = _check_process(process, absorbing=True)
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    points = check_steps(points, "points")
    x0 = check_tokens("x0", x0, process.vocab_size)
    n, L = x0.shape
    if L > 16:
        raise ValueError(f"masked_diffusion_nelbo enumerates 2^L mask patterns; L must be <= 16, got {L}")
    nodes, weights = np.polynomial.legendre.leggauss(points)
    ts = t_min + (t_max - t_min) * (nodes + 1) / 2
    weights = weights * (t_max - t_min) / 2
    patterns = ((np.arange(2**L)[:, None] >> np.arange(L - 1, -1, -1)) & 1).astype(bool)  # (2^L, L)
    counts = patterns.sum(axis=1)
    x_t = np.where(patterns[None], process.mask_token, x0[:, None, :]).reshape(-1, L)  # (n 2^L, L)
    p_mask, w_t = _masking(process, ts)
    out = np.zeros(n)
    for t, pm, wt, c in zip(ts, p_mask, w_t, weights):
        probs = np.asarray(denoiser(x_t, float(t)), dtype=np.float64).reshape(n, 2**L, L, -1)
        p_true = np.take_along_axis(probs, np.broadcast_to(x0[:, None, :, None], (n, 2**L, L, 1)), axis=3)[..., 0]
        with np.errstate(divide="ignore"):
            nll = np.where(patterns[None], -np.log(p_true), 0.0).sum(axis=2)  # (n, 2^L)
        pattern_prob = pm**counts * (1.0 - pm) ** (L - counts)
        integrand = np.where(counts > 0, pattern_prob * nll, 0.0).sum(axis=1)
        out += c * wt * integrand
    return out


# -- score entropy ---------------------------------------------------------------------------------------
def score_entropy_loss(
    model: Callable,
    x0: Any,
    process: AbstractCTMCDiffusion,
    rng: Any = None,
    *,
    t_min: float = 1e-3,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""Denoising score entropy for a model of log concrete scores (SEDD, Lou et al. 2024).

    .. math:: L(\theta) = E_{t \sim U[t_{min}, t_{max}]}\, E_{x_t \sim q(\cdot \mid x_0)}
              \sum_{l} \sum_{y_l \ne x_{t,l}} \beta(t) Q[y_l, x_{t,l}]
              \Big( s_\theta - \frac{q_t(y \mid x_0)}{q_t(x_t \mid x_0)} \log s_\theta
              + K\Big(\frac{q_t(y \mid x_0)}{q_t(x_t \mid x_0)}\Big) \Big),

    ``K(a) = a (log a - 1)``, ``s_theta = exp(model(x_t, t))[l, y_l]``, and
    ``q_t(y | x_0) / q_t(x_t | x_0) = P_{t|0}[x_{0,l}, y_l] / P_{t|0}[x_{0,l}, x_{t,l}]`` (only token ``l``
    differs): Lou et al. 2024, eq. 8 (denoising score entropy) with the diffusion-weighted weights
    ``Q_t(y, x_t)`` of their eq. 11 (Thm. 3.6, the ELBO form).  The bracket is a Bregman
    divergence of :math:`s \mapsto s - a \log s`, so the loss is ``>= 0`` and, averaged over ``x_0``
    given ``x_t``, minimised by the exact concrete score :math:`p_t(y) / p_t(x_t)`
    (:func:`~diffcore.discrete.concrete_score`) at every entry with ``Q[y_l, x_{t,l}] > 0``.

    Parameters
    ----------
    model : ``(x_t (n, L) int64, t (n,) float64) -> log scores (n, L, S)``; entries at the current
        token and where ``Q[y_l, x_{t,l}] = 0`` are ignored.
    x0 : clean tokens ``(n, L)``; process : a :mod:`diffcore.discrete` process.
    t_min, t_max : the range of ``t`` (``t_min > 0`` keeps the ratios finite).

    Returns the batch mean, a 0-d float64 tensor.
    """
    process = _check_process(process)
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    x0 = _clean_tokens(x0, process)
    n, S = x0.shape[0], process.num_states
    gen = generator(rng)
    t = uniform_times(n, t_min, t_max, gen, x0.to(torch.float64))
    Pt0 = _transitions(process, t.numpy())  # (n, S, S)
    rows = torch.arange(n)[:, None]
    x_t = _draw_tokens(Pt0[rows, x0], gen)
    log_s = _model_output(model, x_t, t, S, "log scores").to(torch.float64)
    q_y = Pt0[rows, x0]  # (n, L, S): P_t0[x0_l, y]
    q_x = q_y.gather(2, x_t[..., None])  # (n, L, 1)
    a = q_y / q_x
    beta = torch.from_numpy(np.array([process.rate(float(s)) for s in t.numpy()]))
    Q = torch.from_numpy(np.array(process.generator))
    weight = beta[:, None, None] * Q.T[x_t]  # (n, L, S): beta Q[y, x_t]
    weight = weight.scatter(2, x_t[..., None], 0.0)
    active = weight > 0
    K = torch.where(a > 0, a * (torch.log(torch.where(a > 0, a, torch.ones(()))) - 1.0), torch.zeros(()))
    safe_log_s = torch.where(active, log_s, torch.zeros(()))
    term = torch.exp(safe_log_s) - a * safe_log_s + K
    return torch.where(active, weight * term, torch.zeros(())).sum(dim=(1, 2)).mean()
