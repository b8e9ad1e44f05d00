r"""Learned Schrödinger bridges by bridge matching: the DSBM/IMF loop with a small torch drift.

Iterative Markovian fitting (Shi, De Bortoli, Campbell and Doucet 2023; Peluchetti 2023) alternates
two projections of a coupling of ``(X_0, X_1)``:

* the *Markovian* one fits a drift ``v_theta(x, t)`` to the mixture of Brownian bridges ``sigma W``
  over the coupling by the regression (DSBM, eq. 9)

  .. math:: L(\theta) = E\, \big| v_\theta(X_t, t) - \tfrac{X_1 - X_t}{1 - t} \big|^2, \qquad
            X_t = (1 - t) X_0 + t X_1 + \sigma \sqrt{t (1 - t)}\, Z,

  whose minimiser is ``E[(X_1 - X_t) / (1 - t) | X_t]`` (:func:`bridge_matching_loss`);
* the *reciprocal* one takes the coupling of the fitted SDE ``dX = v_theta dt + sigma dW``
  (:func:`simulate_bridge`) and forms the bridges over it again.

:func:`bridge_matching` runs the loop with DSBM's alternation: odd iterations fit a backward drift
on the reversed pairs (the Brownian bridge is symmetric in time, so the same loss serves) and
simulate from the ``x1`` sample, so each marginal is re-anchored to its data every other step.
For Gaussian ends the fixed point is :class:`~diffcore.bridges.GaussianSchrodingerBridge`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffcore._array import namespace, normal, resolve_rng
from diffcore._validation import Model, check_array, check_positive, check_steps
from diffcore.training._fit import fit
from diffcore.training._net import MLPField
from diffcore.training._torch import as_tensor, check_time_range, generator, uniform_times

__all__ = ["BridgeMatchingResult", "bridge_matching", "bridge_matching_loss", "simulate_bridge"]


def bridge_matching_loss(
    model: Callable, batch: Any, sigma: float, rng: Any = None, *, t_max: float = 0.99
) -> torch.Tensor:
    r"""The bridge-matching regression of the module docstring on coupled pairs ``batch = (x0, x1)``.

    ``t`` is uniform on ``[0, t_max]`` (the target's variance ``sigma^2 t / (1 - t)`` diverges at
    ``t = 1``), ``z`` standard normal; the loss is ``mean_i |v_theta(x_t, t) - (x1 - x_t) / (1 - t)|^2``.
    ``model`` is a callable ``(x_t, t) -> (n, d)``, differentiable (e.g. :class:`MLPField`); ``x0``,
    ``x1`` are ``(n, d)`` arrays; ``rng`` draws ``t`` then ``z``.  Returns a 0-d tensor.
    """
    model = Model.of(model, "model")
    if not isinstance(batch, tuple) or len(batch) != 2:
        raise TypeError(f"batch must be a pair (x0, x1) of coupled samples; got {type(batch).__name__}")
    sigma = check_positive("sigma", sigma)
    _, t_max = check_time_range(0.0, t_max, open_ends=True)
    if t_max >= 1.0:
        raise ValueError(f"t_max must be < 1 (the target divides by 1 - t); got {t_max}")
    x0 = as_tensor("x0", batch[0])
    x1 = as_tensor("x1", batch[1], dtype=x0.dtype, device=x0.device)
    if x0.shape != x1.shape or x0.ndim != 2:
        raise ValueError(f"x0 and x1 must have one shape (n, d); got {tuple(x0.shape)} and {tuple(x1.shape)}")
    gen = generator(rng, x0.device)
    t = uniform_times(x0.shape[0], 0.0, t_max, gen, x0).to(x0.dtype)
    z = torch.randn(x0.shape, generator=gen, dtype=torch.float64, device=gen.device).to(x0)
    tc = t[:, None]
    x_t = (1 - tc) * x0 + tc * x1 + sigma * torch.sqrt(tc * (1 - tc)) * z
    err = model(x_t, t) - (x1 - x_t) / (1 - tc)
    return torch.mean(torch.sum(err**2, dim=1))


def simulate_bridge(drift: Callable, x0: Any, sigma: float, *, steps: int = 100, rng: Any = None) -> Any:
    r"""Euler–Maruyama for ``dX = v(X, t) dt + sigma dW`` from ``t = 0`` to ``t = 1``: the end points ``X_1``.

    ``X_{k+1} = X_k + v(X_k, t_k) h + sigma sqrt(h) Z_k`` on the uniform grid ``t_k = k h``,
    ``h = 1 / steps``; the drift is evaluated at ``t < 1`` only (weak order 1).  ``x0`` is
    ``(n, d)`` (NumPy or torch; the result follows it); ``drift(x, t) -> (n, d)``.  Raises
    ``FloatingPointError`` with the step and time when the state stops being finite.
    """
    x = check_array("x0", x0, ndim=2)
    sigma, steps = check_positive("sigma", sigma), check_steps(steps)
    drift = Model.of(drift, "drift")
    gen, xp, h = resolve_rng(rng), namespace(x), 1.0 / steps
    for k in range(steps):
        with np.errstate(over="ignore", invalid="ignore"):  # reported just below, with the step
            x = x + drift(x, k * h) * h + sigma * h**0.5 * normal(gen, tuple(x.shape), x)
        if not bool(xp.all(xp.isfinite(x))):
            raise FloatingPointError(f"the bridge SDE state is not finite after step {k + 1} (t = {(k + 1) * h:.4g})")
    return x


@dataclass(frozen=True, eq=False)
class BridgeMatchingResult:
    """The result of :func:`bridge_matching`.

    Attributes
    ----------
    forward, backward : the last fitted drifts ``v(x, t)`` from ``t = 0`` to ``1`` and, in the reversed
        time ``s = 1 - t``, from ``x1`` to ``x0`` (``backward`` is ``None`` after one iteration).
    pairs : the last coupling ``(x0, x1)``, two ``(N, d)`` NumPy arrays.
    cross_covs : ``(iterations + 1, d, d)``, the sample ``Cov(X_0, X_1)`` of every coupling
        (index 0: the independent start).
    losses : the final training loss of every iteration (mean of its last 10% of steps).
    """

    forward: Any
    backward: Any
    pairs: tuple[np.ndarray, np.ndarray]
    cross_covs: np.ndarray
    losses: np.ndarray


def bridge_matching(
    x0: Any,
    x1: Any,
    sigma: float,
    *,
    iterations: int = 4,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 3e-3,
    width: int = 64,
    depth: int = 2,
    sde_steps: int = 100,
    rng: Any = None,
) -> BridgeMatchingResult:
    r"""Diffusion Schrödinger bridge matching (DSBM-IMF, Shi et al. 2023, alg. 1) between two samples.

    Iteration 0 pairs ``x0`` with a random permutation of ``x1`` (the independent coupling), fits
    a forward drift (:class:`MLPField`, ``width x depth``, float32) by :func:`bridge_matching_loss`
    with ``fit`` (Adam, ``steps`` steps, cosine schedule) and re-pairs every ``x0`` with the end of
    :func:`simulate_bridge`.  Odd iterations do the same backwards: a drift fitted on the pairs
    ``(x1, x0)``, simulated from ``x1``.  Each fit starts from the previous one in its direction
    (warm start, as in DSBM).

    Parameters
    ----------
    x0, x1 : the two samples, ``(N, d)`` each (NumPy).
    sigma : the reference noise level (> 0).
    iterations : Markovian projections (>= 1).
    steps, batch_size, lr : of each ``fit``.
    width, depth : of the drift networks.
    sde_steps : Euler–Maruyama steps of each simulation.
    rng : ``None``, an int seed or a ``numpy.random.Generator``: initial weights, batches, noise.

    Returns a :class:`BridgeMatchingResult`.
    """
    x0 = np.asarray(check_array("x0", x0, ndim=2), dtype=np.float64)
    x1 = np.asarray(check_array("x1", x1, ndim=2), dtype=np.float64)
    if x0.shape != x1.shape or x0.shape[0] < 2:
        raise ValueError(f"x0 and x1 must have one shape (N, d) with N >= 2; got {x0.shape} and {x1.shape}")
    sigma = check_positive("sigma", sigma)
    iterations = check_steps(iterations, "iterations")
    gen = resolve_rng(rng)
    if not isinstance(gen, np.random.Generator):
        raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator; got {type(rng).__name__}")
    a, b = x0, x1[gen.permutation(x1.shape[0])]
    covs, losses, nets = [_cross_cov(a, b)], [], [None, None]
    loss = functools.partial(bridge_matching_loss, sigma=sigma)
    for k in range(iterations):
        back = k % 2 == 1
        net = nets[back] or MLPField(x0.shape[1], width=width, depth=depth, rng=gen)
        src, dst = (b, a) if back else (a, b)
        result = fit(
            net, loss, (src, dst), steps=steps, batch_size=batch_size, lr=lr, schedule="cosine", rng=gen, progress=False
        )
        losses.append(float(result.losses[-max(1, steps // 10) :].mean()))
        nets[back] = net
        end = simulate_bridge(net, src, sigma, steps=sde_steps, rng=gen)
        a, b = (end, b) if back else (a, end)
        covs.append(_cross_cov(a, b))
    return BridgeMatchingResult(nets[0], nets[1], (a, b), np.stack(covs), np.asarray(losses))


def _cross_cov(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - a.mean(0)).T @ (b - b.mean(0)) / (a.shape[0] - 1)
