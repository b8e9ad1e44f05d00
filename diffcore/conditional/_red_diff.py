r"""RED-diff: variational posterior mean by score distillation (Mardani et al. 2024).

Not a sampler: each of the ``n`` rows of ``x_init`` is one variational mean ``mu``, optimised by
Adam so that ``q = N(mu, 0)`` minimises the data misfit plus a score-matching regulariser.  The
reverse KL makes it mode seeking: the results collapse onto posterior modes (measured in the
book chapter "Inverse problems").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from diffcore._array import as_array, namespace, normal, resolve_rng
from diffcore._validation import (
    Model,
    check_array,
    check_choice,
    check_finite,
    check_positive,
    check_scalar_time,
    check_steps,
    check_unshifted,
)
from diffcore.conditional._measurements import AbstractMeasurement, check_observation
from diffcore.processes import AbstractProcess
from diffcore.samplers import Solution

__all__ = ["red_diff"]

Array = Any
WEIGHTINGS = ("sigma_over_alpha", "constant")


def _betas(betas: Any) -> tuple[float, float]:
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError) as err:
        raise TypeError(f"betas must be a pair of floats in [0, 1); got {betas!r}") from err
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must lie in [0, 1); got {betas!r}")
    return b1, b2


def red_diff(
    process: AbstractProcess,
    score: Callable[[Array, Any], Array],
    measurement: AbstractMeasurement,
    y: Array,
    x_init: Array,
    *,
    steps: int | None = None,
    nfe: int | None = None,
    rng: Any = None,
    lr: float = 0.1,
    weight: float = 0.25,
    weighting: str = "sigma_over_alpha",
    betas: tuple[float, float] = (0.9, 0.99),
    t_min: float = 1e-3,
    t_max: float = 1.0,
) -> Solution:
    r"""RED-diff (Mardani et al. 2024, eq. 12 and alg. 1): Adam on ``mu`` over descending ``t``.

    Iteration ``k`` (time ``t_k``, ``t_0 = t_max > ... > t_{K-1} = t_min``), with fresh
    ``eps ~ N(0, I)``, ``x_t = alpha mu + sigma eps`` and ``eps_hat = -sigma s(x_t, t)``:

    .. math:: \nabla_\mu = -\nabla_\mu \log p(y \mid \mu) + \lambda_t\,
              \mathrm{sg}\big(\hat\epsilon(x_t, t) - \epsilon\big),\qquad
              \lambda_t = \lambda\,\sigma_t / \alpha_t,

    (the score-distillation gradient of the regulariser, no Jacobian of the score), then one
    Adam step (Kingma and Ba 2015, alg. 1, bias-corrected) with learning rate ``lr``.  For a
    linear-Gaussian measurement the data term is ``||y - H mu||^2 / (2 s^2)``; any measurement
    with a ``likelihood_score`` works (nonlinear included).

    Parameters
    ----------
    x_init : ``(n, d)`` initial means (e.g. ``H^+ y`` repeated, or noise: each row is
        optimised separately).
    steps, nfe : the number of iterations (one score evaluation each, so they are equal); give one.
    lr, betas : Adam's step size and moment decays (the reference code's ``0.1``, ``(0.9, 0.99)``).
    weight, weighting : ``lambda`` and the time weighting, ``"sigma_over_alpha"`` (the paper's
        inverse square-root SNR, code default ``"linear"``) or ``"constant"``.
    t_min, t_max : ends of the uniform descending time grid.

    Returns
    -------
    :class:`~diffcore.Solution` with ``x`` the final ``mu`` ``(n, d)`` (``x_init``'s type),
    ``ts`` the ``K`` times used, ``nfe = K`` and ``solver = None``.  Book chapter "Inverse problems".
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "red_diff")
    y = check_observation(measurement, y)
    if (steps is None) == (nfe is None):
        raise TypeError(f"give exactly one of steps and nfe; got steps={steps!r}, nfe={nfe!r}")
    iters = check_steps(steps if steps is not None else nfe, "steps" if steps is not None else "nfe")
    lr, weight = check_positive("lr", lr), check_positive("weight", weight)
    check_choice("weighting", weighting, WEIGHTINGS)
    b1, b2 = _betas(betas)
    t_min, t_max = check_scalar_time(t_min, "t_min"), check_scalar_time(t_max, "t_max")
    if not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max; got t_min={t_min}, t_max={t_max}")
    x_init = check_finite("x_init", check_array("x_init", x_init, ndim=2, dim=measurement.dim))
    model = Model.of(score, "score")
    gen = resolve_rng(rng)
    xp = namespace(x_init)
    mu = x_init if not hasattr(x_init, "detach") else x_init.detach()
    y = as_array(y, mu)
    m1, m2 = xp.zeros_like(mu), xp.zeros_like(mu)
    ts = np.linspace(t_max, t_min, iters) if iters > 1 else np.array([t_max])
    for k, t in enumerate(float(v) for v in ts):
        a, s = process.alpha(t), process.sigma(t)
        eps = normal(gen, tuple(mu.shape), mu)
        eps_hat = -s * model(a * mu + s * eps, t)
        lam = weight * (s / a if weighting == "sigma_over_alpha" else 1.0)
        grad = -measurement.likelihood_score(mu, y) + lam * (eps_hat - eps)
        m1 = b1 * m1 + (1 - b1) * grad
        m2 = b2 * m2 + (1 - b2) * grad**2
        step = lr * math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1))
        mu = mu - step * m1 / (xp.sqrt(m2) + 1e-8)
    return Solution(x=mu, ts=np.asarray(ts, dtype=np.float64), nfe=iters, solver=None)
