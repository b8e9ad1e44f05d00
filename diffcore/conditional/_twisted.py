r"""The twisted diffusion sampler (Wu, Trippe, Naesseth, Blei and Cunningham 2023).

SMC over the prior's ancestral chain with twisting functions ``p~_t(y | x_t) ≈ p_t(y | x_t)`` built
from the Tweedie estimate ``x0_hat(x_t)``; asymptotically exact in the number of particles for any
twist (see :mod:`diffcore.conditional._particles` for the engine and the weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import is_torch_array

from diffcore._array import as_array, namespace
from diffcore._validation import Model, check_choice
from diffcore.conditional._measurements import AbstractMeasurement, SignMeasurement, _log_ndtr
from diffcore.conditional._particles import (
    Move,
    ParticleRun,
    check_inputs,
    gradient_proposal,
    prior_kernel,
    smc_run,
    tweedie,
)
from diffcore.processes import AbstractProcess
from diffcore.samplers import Solution

__all__ = ["TWISTS", "twisted_diffusion_run", "twisted_diffusion_sampler"]

Array = Any
TWISTS = ("likelihood", "gaussian", "moment")


def _twist(kind: str, measurement: AbstractMeasurement, y: Array, x0_hat: Array, r2: float, cov: Any) -> tuple:
    """``log p~_t(y | x_t)`` ``(n,)`` and its gradient in ``x0_hat`` ``(n, d)`` (``cov`` held fixed)."""
    xp = namespace(x0_hat)
    H = as_array(measurement.H, x0_hat)
    s2 = measurement.noise_std**2
    if isinstance(measurement, SignMeasurement):  # probit: Phi(y_i (H m)_i / sqrt(s^2 + H_i C H_i^T))
        var = {"likelihood": s2, "gaussian": s2 + r2 * xp.sum(H**2, axis=1)[None, :]}.get(kind)
        if kind == "moment":
            var = s2 + xp.sum((H[None] @ cov) * H[None], axis=2)
        tau = var**0.5
        z = y[None, :] * (x0_hat @ H.T) / tau
        log_phi = _log_ndtr(z)
        ratio = xp.exp(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - log_phi)
        return xp.sum(log_phi, axis=1), (ratio * y[None, :] / tau) @ H
    if not measurement.linear_gaussian:
        return measurement.log_likelihood(x0_hat, y), measurement.likelihood_score(x0_hat, y)
    m = H.shape[0]
    eye = xp.eye(m, dtype=x0_hat.dtype)
    T = {"likelihood": s2 * eye, "gaussian": s2 * eye + r2 * (H @ H.T)}.get(kind)
    T = s2 * eye + H[None] @ cov @ H.T[None] if kind == "moment" else T[None]
    resid = y[None, :] - x0_hat @ H.T
    sol = xp.linalg.solve(T, resid[:, :, None])[:, :, 0]
    _, logdet = xp.linalg.slogdet(T)
    phi = -0.5 * xp.sum(resid * sol, axis=1) - 0.5 * logdet - 0.5 * m * math.log(2 * math.pi)
    return phi, sol @ H


def twisted_diffusion_run(
    process: AbstractProcess,
    score: Callable[[Array, Any], Array],
    measurement: AbstractMeasurement,
    y: Array,
    x_init: Array,
    *,
    steps: int | None = None,
    nfe: int | None = None,
    rng: Any = None,
    twist: str | None = None,
    covariance: Callable[[Array, Any], Array] | None = None,
    resample_threshold: float = 0.5,
    resampling: str = "systematic",
    t_min: float = 1e-3,
    grid: str = "uniform",
) -> ParticleRun:
    """:func:`twisted_diffusion_sampler` with its diagnostics (ESS history, log-evidence, weighted particles)."""
    options = {"resample_threshold": resample_threshold, "resampling": resampling, "t_min": t_min, "grid": grid}
    y, x_init, _, ts, threshold, scheme = check_inputs(
        "twisted_diffusion_sampler", process, score, measurement, y, x_init, steps, nfe, options
    )
    score = Model.of(score, "score")  # every call's output checked, errors name the score
    closed = measurement.linear_gaussian or isinstance(measurement, SignMeasurement)
    if twist is None:
        twist = ("moment" if covariance is not None else "gaussian") if closed else "likelihood"
    check_choice("twist", twist, TWISTS)
    if twist != "likelihood" and not closed:
        raise ValueError(
            f"twist={twist!r} needs a linear-Gaussian or sign measurement; got {type(measurement).__name__} "
            "(use twist='likelihood')"
        )
    if twist == "moment" and covariance is None:
        raise ValueError("twist='moment' needs covariance=(x, t) -> Cov[x_0 | x_t] (exact_posterior_covariance)")
    if covariance is not None and not callable(covariance):
        raise TypeError(f"covariance must be a callable (x, t) -> (n, d, d) or None; got {type(covariance).__name__}")
    if covariance is None and not is_torch_array(x_init):
        raise TypeError(
            "twisted_diffusion_sampler needs the denoiser's vector-Jacobian product: pass "
            "covariance=(x, t) -> Cov[x_0 | x_t] (e.g. exact_posterior_covariance(process, prior)), or torch "
            f"tensors so that autograd can differentiate the score; got x_init {type(x_init).__name__}"
        )

    def move(x: Array, t0: float, t1: float) -> Move:
        a0, s0 = process.alpha(t0), process.sigma(t0)
        if covariance is not None:
            x0_hat = tweedie(process, score(x, t0), x, t0)
            cov = as_array(covariance(x, t0), x)
            phi, grad0 = _twist(twist, measurement, y, x0_hat, (s0 / a0) ** 2, cov)
            grad = (a0 / s0**2) * (cov @ grad0[:, :, None])[:, :, 0]  # J^T v = (alpha / sigma^2) Cov v
        else:
            import torch

            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                x0_hat = tweedie(process, score(xg, t0), xg, t0)
                phi, _ = _twist(twist, measurement, y, x0_hat, (s0 / a0) ** 2, None)
                (grad,) = torch.autograd.grad(phi.sum(), xg)
            phi, x0_hat = phi.detach(), x0_hat.detach()
        mean, var = prior_kernel(process, x, x0_hat, t0, t1)
        return Move(phi, grad, mean, var)

    return smc_run(measurement, y, x_init, ts, rng, threshold, scheme, move, gradient_proposal)


def twisted_diffusion_sampler(
    process: AbstractProcess,
    score: Callable[[Array, Any], Array],
    measurement: AbstractMeasurement,
    y: Array,
    x_init: Array,
    *,
    steps: int | None = None,
    nfe: int | None = None,
    rng: Any = None,
    twist: str | None = None,
    covariance: Callable[[Array, Any], Array] | None = None,
    resample_threshold: float = 0.5,
    resampling: str = "systematic",
    t_min: float = 1e-3,
    grid: str = "uniform",
) -> Solution:
    r"""The twisted diffusion sampler (TDS): SMC with twisted proposals, exact as particles grow.

    Wu, Trippe, Naesseth, Blei and Cunningham, "Practical and Asymptotically Exact Conditional
    Sampling in Diffusion Models", NeurIPS 2023, alg. 1.  With ``x0_hat`` the Tweedie estimate at
    ``(x_t, t)``, ``r_t^2 = sigma_t^2 / alpha_t^2`` and ``J = d x0_hat / d x_t``, the twist is

    * ``"likelihood"``: ``p~_t = p(y | x0_hat)`` (any measurement; the paper's classifier twist);
    * ``"gaussian"``: ``N(y; H x0_hat, s^2 I + r_t^2 H H^T)`` (the paper's inpainting twist, its
      ``s~_t^2``), for a sign measurement ``prod_i Phi(y_i (H x0_hat)_i / (s^2 + r_t^2 |H_i|^2)^{1/2})``;
    * ``"moment"``: ``C = Cov[x_0 | x_t]`` in place of ``r_t^2 I`` (exact for a Gaussian prior; needs
      ``covariance``).  Default: ``"moment"`` with ``covariance``, else ``"gaussian"`` (``"likelihood"``
      for other measurements).

    Proposal: ``N(m + v grad log p~_t, v I)`` around the ancestral kernel ``N(m, v I)``; incremental
    weight ``p(x'|x) p~_{t'}(y|x') / (p~_t(y|x) Q(x'|x))``; the last twist is ``p(y | x_{t_min})``
    (see :mod:`diffcore.conditional._particles`).  The gradient ``J^T v`` is ``(alpha / sigma^2) C v``
    with ``covariance`` (second-order Tweedie; ``exact_posterior_covariance(process, prior)`` in the
    laboratory; ``d C / d x`` is dropped from the ``"moment"`` gradient, which only moves the
    proposal), else torch autograd through ``score``: each evaluation also costs one
    vector-Jacobian product.  NumPy input needs ``covariance`` (``TypeError`` otherwise).

    Parameters
    ----------
    process, score : the prior's process and score ``(x, t) -> (n, d)``.
    measurement, y : any :class:`~diffcore.conditional.AbstractMeasurement`, ``y (m,)``.
    x_init : ``(n, d)`` particles at ``t = 1``.  steps or nfe : one score call per step.
    rng, resample_threshold, resampling, t_min, grid : as for
        :func:`~diffcore.conditional.ensemble_sampler`.

    Returns a :class:`~diffcore.Solution` (``solver=None``); :func:`twisted_diffusion_run` also gives
    the ESS history, the log-evidence estimate and the weighted particles.  Book chapter
    "Inverse problems" (book/inverse.md).
    """
    return twisted_diffusion_run(
        process,
        score,
        measurement,
        y,
        x_init,
        steps=steps,
        nfe=nfe,
        rng=rng,
        twist=twist,
        covariance=covariance,
        resample_threshold=resample_threshold,
        resampling=resampling,
        t_min=t_min,
        grid=grid,
    ).solution
