r"""Denoising losses of a diffusion process: score matching and eps / x0 / v prediction.

For ``x_t = alpha(t) x_0 + sigma(t) eps`` every prediction type is a linear target
``y = a(t) x_0 + b(t) eps``:

============  =====================  ====================================================
prediction    ``(a, b)``             source
============  =====================  ====================================================
``eps``       ``(0, 1)``             Ho et al. 2020, eq. 14
``x0``        ``(1, 0)``             Kingma et al. 2021 (``x_hat``)
``v``         ``(-sigma, alpha)``    Salimans and Ho 2022, eq. 13
``score``     ``(0, -1/sigma)``      Vincent 2011; Song et al. 2021, eq. 7
``velocity``  ``(alpha', sigma')``   Lipman et al. 2023; the probability-flow velocity
============  =====================  ====================================================

and the loss ``E_t E_{x_0, eps} w(t) |f_theta(x_t, t) - y|^2`` is minimised by
``f = E[y | x_t]``, the exact field of that type: the irreducible value at time ``t`` is
``w(t) (a - b alpha / sigma)^2 tr Cov(x_0 | x_t)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffcore._parametrization import PREDICTIONS
from diffcore._validation import Model, check_choice, check_unshifted
from diffcore.processes import AbstractProcess
from diffcore.training._torch import as_tensor, check_finite_tensor, check_time_range, generator, uniform_times

__all__ = ["WEIGHTINGS", "denoising_loss", "dsm_loss"]

#: names of the time weightings ``w(t)`` accepted by :func:`denoising_loss`
WEIGHTINGS = ("none", "sigma2", "snr", "snr+1", "elbo")


def denoising_loss(
    model: Callable,
    x0: Any,
    process: AbstractProcess,
    rng: Any = None,
    *,
    prediction: str = "eps",
    weighting: str | Callable = "none",
    t_min: float = 1e-3,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""Monte Carlo estimate of the weighted denoising loss of a ``prediction``-type model.

    .. math:: L(\theta) = E_{t \sim U[t_{min}, t_{max}]}\, E_{x_0, \varepsilon}\,
              w(t)\, \| f_\theta(\alpha_t x_0 + \sigma_t \varepsilon, t) - (a_t x_0 + b_t \varepsilon) \|^2,

    with the target coefficients ``(a, b)`` of the module table (``eps``: the noise, Ho et al.
    2020, eq. 14; ``x0``; ``v = alpha eps - sigma x_0``, Salimans and Ho 2022; ``score
    = -eps / sigma``; ``velocity``).  Its minimiser is ``f = E[a x_0 + b eps | x_t]``, the exact
    field of that type.  ``|.|^2`` sums over the features; the mean is over the batch, one
    ``t`` and one ``eps`` per point.

    Weightings ``w(t)``:

    * ``"none"``: 1 (Ho's ``L_simple`` for ``eps``);
    * ``"sigma2"``: ``sigma^2`` (Song et al. 2021, eq. 7, the denoising score matching weighting);
    * ``"snr"``: ``alpha^2 / sigma^2``; for ``x0`` it gives the ``eps`` loss (Kingma et al. 2021);
    * ``"snr+1"``: ``SNR + 1``; for ``x0`` in a VP process it gives the ``v`` loss (Salimans and Ho 2022);
    * ``"elbo"``: the continuous-time variational bound ``L_infinity`` of Kingma et al. 2021,
      ``-lambda'(t)/2`` on the ``eps`` error (``-SNR'(t)/2`` on the ``x0`` error), converted to each
      prediction type; for ``score`` it is the likelihood weighting ``g^2 / 2`` of Song et al. 2021b;
    * a callable ``w(t)`` of a float64 ``(n,)`` tensor, returning a scalar or ``(n,)``.

    Parameters
    ----------
    model : callable ``(x_t, t) -> (n, ...)`` tensor, differentiable (e.g. :class:`MLPField`).
    x0 : data batch ``(n, ...)``, a tensor or NumPy array.
    process : the forward process (``alpha``, ``sigma`` and their derivatives).
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``; draws
        ``t`` first and ``eps`` second, independently of the model, so that the same seed
        gives the same noise for every model compared.
    t_min, t_max : ``t`` is uniform on ``[t_min, t_max]`` (``t_min = t_max``: a fixed time);
        ``t_min > 0`` keeps ``sigma > 0``.

    Returns a 0-d tensor of ``x0``'s dtype, differentiable in the model's parameters.

    Raises ``ValueError`` for an unknown prediction or weighting, bad times, or a target
    that is not finite at the drawn times (``score`` at ``sigma = 0``).
    """
    model = Model.of(model, "model")
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "denoising_loss")
    check_choice("prediction", prediction, PREDICTIONS)
    weight_fn = _weighting(weighting)
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    x0 = check_finite_tensor("x0", as_tensor("x0", x0))
    gen = generator(rng, x0.device)
    t = uniform_times(x0.shape[0], t_min, t_max, gen, x0)
    eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype, device=gen.device).to(x0.device)
    c = _coefficients(process, t)
    a, b = _target_coefficients(prediction, c)
    weight = _call_weight(weight_fn, t) if callable(weight_fn) else _named_weight(weight_fn, c, a, b)
    x_t = _bc(c["alpha"], x0) * x0 + _bc(c["sigma"], x0) * eps
    target = _bc(a, x0) * x0 + _bc(b, x0) * eps
    if not bool(torch.isfinite(target).all()) or not bool(torch.isfinite(weight).all()):
        raise ValueError(
            f"the {prediction} target or its weight is not finite for t in [{t_min}, {t_max}] "
            "(sigma(0) = 0 or an infinite sigma'): choose t_min > 0"
        )
    err = (model(x_t, t.to(x0.dtype)) - target).reshape(x0.shape[0], -1)
    return torch.mean(weight.to(x0.dtype) * torch.sum(err**2, dim=1))


def dsm_loss(
    model: Callable, x0: Any, process: AbstractProcess, rng: Any = None, *, t_min: float = 1e-3, t_max: float = 1.0
) -> torch.Tensor:
    r"""Denoising score matching with ``lambda(t) = sigma(t)^2`` for a score model ``s_theta``.

    .. math:: L(\theta) = E_t\, E_{x_0, \varepsilon}\, \sigma_t^2\,
              \big\| s_\theta(\alpha_t x_0 + \sigma_t \varepsilon, t) + \varepsilon / \sigma_t \big\|^2,

    the conditional score ``grad log p(x_t | x_0) = -eps / sigma`` as target (Vincent 2011) with
    the weighting ``lambda(t) = sigma^2 ~ 1 / E|grad log p(x_t|x_0)|^2`` of Song et al. 2021,
    eq. 7.  Minimised by the exact score ``grad log p_t``.  Equal to
    ``denoising_loss(..., prediction="score", weighting="sigma2")``: see :func:`denoising_loss`.
    Scores grow like ``1 / sigma`` near ``t = 0``; an ``eps`` model (the same loss, since
    ``sigma^2 |s + eps/sigma|^2 = |sigma s + eps|^2``) converted with
    :func:`diffcore.reparametrize` is usually easier to fit.
    """
    return denoising_loss(model, x0, process, rng, prediction="score", weighting="sigma2", t_min=t_min, t_max=t_max)


def _weighting(weighting: Any) -> Any:
    if callable(weighting):
        return weighting
    if not isinstance(weighting, str):
        raise TypeError(f"weighting must be a name or a callable w(t); got {type(weighting).__name__}")
    return check_choice("weighting", weighting, WEIGHTINGS)


def _call_weight(weight_fn: Callable, t: torch.Tensor) -> torch.Tensor:
    weight = torch.as_tensor(weight_fn(t), dtype=torch.float64, device=t.device)
    if weight.shape not in ((), t.shape):
        raise ValueError(f"weighting(t) must return a scalar or shape {tuple(t.shape)}; got {tuple(weight.shape)}")
    return weight


def _coefficients(process: AbstractProcess, t: torch.Tensor) -> dict[str, torch.Tensor]:
    names = ("alpha", "sigma", "d_alpha", "d_sigma")
    return {name: getattr(process, name)(t) for name in names}


def _target_coefficients(prediction: str, c: dict[str, torch.Tensor]) -> tuple[Any, Any]:
    alpha, sigma = c["alpha"], c["sigma"]
    zero, one = torch.zeros_like(alpha), torch.ones_like(alpha)
    table = {
        "eps": lambda: (zero, one),
        "x0": lambda: (one, zero),
        "v": lambda: (-sigma, alpha),
        "score": lambda: (zero, -1.0 / sigma),
        "velocity": lambda: (c["d_alpha"], c["d_sigma"]),
    }
    return table[prediction]()


def _named_weight(name: str, c: dict[str, torch.Tensor], a: Any, b: Any) -> torch.Tensor:
    alpha, sigma = c["alpha"], c["sigma"]
    snr = alpha**2 / sigma**2
    if name == "none":
        return torch.ones_like(alpha)
    if name == "sigma2":
        return sigma**2
    if name == "snr":
        return snr
    if name == "snr+1":
        return snr + 1.0
    # elbo: -lambda'/2 on the eps error; |y error|^2 = k |eps error|^2 with k = (b - a sigma / alpha)^2
    d_log_snr = 2 * (c["d_alpha"] / alpha - c["d_sigma"] / sigma)
    return -0.5 * d_log_snr / (b - a * sigma / alpha) ** 2


def _bc(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample coefficient ``(n,)`` shaped ``(n, 1, ..., 1)`` in ``x``'s dtype."""
    return coef.to(x.dtype).reshape((x.shape[0],) + (1,) * (x.ndim - 1))
