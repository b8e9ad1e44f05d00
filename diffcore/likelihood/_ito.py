r"""The Itô density estimator: ``log p_t`` along reverse-SDE paths without a divergence.

Derivation.  Let ``p_t`` be the marginals of ``dx = f(t) x dt + g(t) dW`` in ``R^D`` and
``s = grad log p_t``.  The Fokker–Planck equation, divided by ``p_t``, reads

.. math:: \partial_t \log p_t = -D f - f \langle x, s\rangle + \tfrac12 g^2 (\nabla\cdot s + |s|^2).

Along any reverse-time path ``y_tau`` (``t = 1 - tau``) with ``dy = b dtau + g dW``, Itô's formula
for ``phi(tau, y) = log p_{1-tau}(y)`` adds ``<s, dy> + 1/2 g^2 (div s) dtau``; the divergences
cancel and

.. math:: d \log p_{1-\tau}(y_\tau) = \big[D f + f \langle y, s\rangle - \tfrac12 g^2 |s|^2\big] d\tau
          + \langle s, dy_\tau\rangle,                                                   \qquad (*)

for *any* drift ``b``: the score alone, no divergence (Skreta et al. 2025, the Itô density
estimator of sec. 3; with the reverse-SDE drift ``b = -f y + g^2 s`` it becomes
``(D f + 1/2 g^2 |s|^2) dtau + g <s, dW>``).

Discretisation.  The left-point (Itô) sum of ``(*)`` is taken in step with Euler–Maruyama, with
the increment ``Δy`` that the sampler actually made.  Its one-step error is
``1/2 g^2 h (z^T H z - tr H)`` plus higher order (``H`` the Hessian of ``log p_t``), a martingale
increment of variance ``1/2 g^4 h^2 tr H^2``: the global RMS error is

.. math:: \Big(\frac h2 \int_{t_{min}}^{1} g^4\, E\,\mathrm{tr}\,H^2 \, dt\Big)^{1/2} (1 + O(h^{1/2})),

strong order 1/2.  Near the prior end of a process with ``alpha(1) = 0`` (the cosine schedule
with ``end = 1``) ``g^2 ~ 2 / (1 - t)``, the integral diverges and the plain sum does not converge
on a uniform grid.  The *prior control variate* (default) removes this: it adds the exact change
of ``log pi`` (the prior ``N(0, prior_std^2 I)``) and subtracts its Itô sum, so that the error
involves ``H - H_pi``, which is ``O(alpha^2)`` at the prior end, and the constant stays finite.

The prior end.  Where ``f(1)`` or ``g(1)^2`` is infinite (``alpha(1) = 0``) the reverse SDE
relaxes to the prior at an infinite rate and forgets its start; ``p_1`` *is* the prior.  No
step can start at ``t = 1``, so the first grid interval is taken as the identity: the prior draw
``x_init`` and ``log pi(x_init)`` stand for the state and log density at the second grid time
``t_1``.  The error is ``log p_{t_1} - log pi = O(alpha(t_1)) = O(h)`` in the log density and in
law, below the ``O(h^{1/2})`` of the estimator itself; no coefficient is ever evaluated where it
is infinite, so no NaN can arise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import as_array, flatten_batch, namespace, normal, resolve_rng
from diffcore._parametrization import PREDICTIONS, reparametrize
from diffcore._validation import (
    Model,
    check_array,
    check_choice,
    check_finite,
    check_progress,
    check_unshifted,
    progress_bar,
)
from diffcore.likelihood._divergence import check_batch_size
from diffcore.processes import AbstractProcess
from diffcore.samplers import EulerMaruyama, Solution, time_grid

__all__ = ["ito_log_density"]

Array = Any
#: ``mix(log_densities (n, M), scores (n, M, D), y (n, D), dy0 (n, D), f, g2, h) -> kappa (n, M)``
Mixer = Callable[..., Array]


def as_score(process: AbstractProcess, model: Any, prediction: str, name: str) -> Callable[[Array, Any], Array]:
    """``model`` (predicting ``prediction``) as a score callable whose every output is checked (:class:`Model`)."""
    model = Model.of(model, name)
    check_choice("prediction", prediction, PREDICTIONS)
    if prediction == "score":
        return model
    return reparametrize(model, process, source=prediction, target="score")


def start_values(process: AbstractProcess, x: Array, given: Any, name: str) -> Array:
    """``log p`` at the start: ``prior_log_prob(x)``, or ``given`` (an ``(n,)`` array or a callable of ``x``)."""
    if given is None:
        return process.prior_log_prob(x)
    value = given(x) if callable(given) else given
    if not hasattr(value, "shape") or tuple(value.shape) != (x.shape[0],):
        raise ValueError(f"{name} must give shape (n,) = ({x.shape[0]},); got {getattr(value, 'shape', type(value))}")
    value = as_array(value, x)
    check_finite(name, value)
    return value


@dataclass(frozen=True)
class Path:
    """What :func:`run` returns: final state, per-model log densities ``(n, M)``, paths and NFE."""

    x: Any
    log_densities: Any
    path: Any
    log_path: Any
    nfe: int


def _coefficients(process: AbstractProcess, t: float) -> tuple[float, float]:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return float(process.drift_coef(t)), float(process.diffusion_squared(t))


def _flat(a: Array) -> Array:
    return flatten_batch(a)


def run(
    process: AbstractProcess,
    scores: Sequence[Callable],
    x_init: Array,
    ts: np.ndarray,
    rng: Any,
    log_init: Array,
    mix: Mixer,
    *,
    prior_control: bool,
    save_path: bool,
    batch_size: int | None = None,
    progress: bool | None = False,
    desc: str = "ito",
) -> Path:
    r"""Euler–Maruyama on ``dy = (-f y + g^2 sum_i kappa_i s_i) dtau + g dW`` with the Itô sums of every ``log p^i``.

    ``log_init`` is ``(n, M)``; ``mix`` gives the weights ``kappa`` at each step (``M = 1``:
    ``kappa = 1``, the reverse SDE itself).  The noise is drawn exactly as :func:`~diffcore.integrate`
    draws it for ``euler_maruyama``, so with one model the states equal that sampler's.
    ``batch_size`` splits only the score evaluations (:func:`chunked`): same noise, same numbers.
    """
    xp = namespace(x_init)
    rng = resolve_rng(rng)
    if x_init.shape[0] == 0:  # an empty batch: nothing to evaluate
        paths = (xp.stack([x_init] * len(ts)), xp.stack([log_init] * len(ts))) if save_path else (None, None)
        return Path(x_init, log_init, *paths, 0)
    shape, dim = tuple(x_init.shape), int(math.prod(x_init.shape[1:]))
    y, ell = x_init, log_init
    n_steps, start, nfe = len(ts) - 1, 0, 0
    f0, g0 = _coefficients(process, float(ts[0]))
    if not (math.isfinite(f0) and math.isfinite(g0)):
        if float(ts[0]) != 1.0 or n_steps < 2:
            raise ValueError(
                f"the drift or diffusion of {type(process).__name__} is not finite at t = {ts[0]} "
                f"(f = {f0}, g^2 = {g0}); start below it (t_max < {ts[0]}) or use at least 2 steps"
            )
        start = 1  # alpha(1) = 0: the prior is p_1 and stands for p_{t_1} (see the module notes)
    path = [y] * (start + 1) if save_path else None
    log_path = [ell] * (start + 1) if save_path else None
    inv_var = 1.0 / process.prior_std**2
    scores = [chunked(score, batch_size) for score in scores]
    with progress_bar(progress, n_steps - start, desc=desc) as bar:
        for i in range(start, n_steps):
            t0, t1 = float(ts[i]), float(ts[i + 1])
            h = t0 - t1
            f, g2 = _coefficients(process, t0)
            if not (math.isfinite(f) and math.isfinite(g2)):
                raise ValueError(f"the drift or diffusion is not finite at t = {t0} (f = {f}, g^2 = {g2})")
            s = [score(y, t0) for score in scores]  # Model: each output checked against y
            nfe += len(scores)
            s_flat = xp.stack([_flat(v) for v in s], axis=1)  # (n, M, D)
            y_flat = _flat(y)
            z = normal(rng, (1, *shape), y)[0]
            dy0 = -h * f * y_flat + math.sqrt(g2 * h) * _flat(z)
            kappa = mix(ell, s_flat, y_flat, dy0, f, g2, h)  # (n, M)
            dy = dy0 + (h * g2) * xp.sum(kappa[:, :, None] * s_flat, axis=1)
            proj_y = xp.sum(s_flat * y_flat[:, None, :], axis=2)  # (n, M)
            inc = h * (dim * f + f * proj_y - 0.5 * g2 * xp.sum(s_flat**2, axis=2))
            inc = inc + xp.sum(s_flat * dy[:, None, :], axis=2)
            y_new = xp.reshape(y_flat + dy, shape)
            if prior_control:  # + exact change of log pi - its Itô sum (a control variate, same for every model)
                exact = process.prior_log_prob(y_new) - process.prior_log_prob(y)
                ito = -inv_var * xp.sum(y_flat * dy, axis=1) - 0.5 * g2 * h * dim * inv_var
                inc = inc + (exact - ito)[:, None]
            y, ell = y_new, ell + inc
            _check_finite_state(y, ell, i, n_steps, t0, t1)
            if save_path:
                path.append(y)
                log_path.append(ell)
            bar.update(1)
    return Path(y, ell, xp.stack(path) if save_path else None, xp.stack(log_path) if save_path else None, nfe)


def chunked(model: Callable[[Array, float], Array], batch_size: int | None) -> Callable[[Array, float], Array]:
    """``model`` called on consecutive chunks of at most ``batch_size`` points (concatenated); itself for ``None``.

    Points must not interact (row ``i`` of the output depends on row ``i`` of the input only),
    so the result is that of one call, with the memory of one chunk.
    """
    if batch_size is None:
        return model

    def call(x: Array, t: float) -> Array:
        if x.shape[0] <= batch_size:
            return model(x, t)
        parts = [model(x[i : i + batch_size], t) for i in range(0, x.shape[0], batch_size)]
        return namespace(x).concat(parts, axis=0)

    return call


def _check_finite_state(y: Array, ell: Array, i: int, n_steps: int, t0: float, t1: float) -> None:
    xp = namespace(y)
    with np.errstate(invalid="ignore", over="ignore"):
        ok_y = bool(xp.isfinite(xp.sum(y))) or bool(xp.all(xp.isfinite(y)))
        ok_l = bool(xp.all(xp.isfinite(ell)))
    if not ok_y:
        raise FloatingPointError(f"non-finite state after step {i + 1} of {n_steps} (t = {t0} -> {t1})")
    if not ok_l:
        bad = ell[xp.logical_not(xp.isfinite(ell))][0]
        raise FloatingPointError(
            f"log densities must stay finite; got {float(bad)} after step {i + 1} of {n_steps} (t = {t0} -> {t1})"
        )


def grid_for(process: Any, steps: int, t_min: float, t_max: float, grid: str) -> np.ndarray:
    """The decreasing time grid, after checking ``process``."""
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "the Itô density estimator")
    return time_grid(process, steps, t_min=t_min, t_max=t_max, kind=grid)


def check_x_init(x_init: Any) -> Array:
    """A finite real array of shape ``(n, ...)`` (integers promoted to float)."""
    return check_array("x_init", x_init)


def _single(ell, s_flat, y_flat, dy0, f, g2, h):
    xp = namespace(ell)
    return xp.ones_like(ell)


def ito_log_density(
    process: AbstractProcess,
    score: Callable[[Array, Any], Array],
    x_init: Array,
    *,
    steps: int,
    t_min: float = 1e-3,
    rng: Any = None,
    prediction: str = "score",
    log_prob_init: Any = None,
    t_max: float = 1.0,
    grid: str = "uniform",
    prior_control: bool = True,
    save_path: bool = False,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> Solution:
    r"""Sample the reverse SDE by Euler–Maruyama and estimate ``log p_{t_min}`` at the samples (Itô).

    Along the Euler–Maruyama path ``y_{k+1} = y_k + Δy_k``,
    ``Δy_k = h(-f y_k + g^2 s_k) + g sqrt(h) z_k`` (``h = t_k - t_{k+1}``, coefficients and
    ``s_k = s(y_k, t_k)`` at the left point), the estimate is the left-point sum of the Itô
    formula for ``log p_t`` (Skreta et al. 2025, sec. 3; derivation in the module notes):

    .. math:: \ell_{k+1} = \ell_k + h\big(D f + f\langle y_k, s_k\rangle - \tfrac12 g^2 |s_k|^2\big)
              + \langle s_k, Δy_k\rangle \;[+\; \text{prior control variate}],

    with ``ell_0 = log pi(x_init)`` (the prior density) or ``log_prob_init``.  No divergence is
    needed; the cost is one score evaluation per step, as for sampling.  Strong order 1/2: the
    RMS error at the path points is ``(h/2 int g^4 E tr(H - H_pi)^2 dt)^{1/2}`` to leading order
    (``H`` the Hessian of ``log p_t``; ``H_pi = 0`` with ``prior_control=False``).

    Parameters
    ----------
    process : the forward process.
    score : callable ``(x, t) -> (n, ...)`` predicting ``prediction`` (``"score"``, ``"eps"``,
        ``"x0"``, ``"v"`` or ``"velocity"``; converted by :func:`diffcore.reparametrize`).
    x_init : ``(n, ...)`` draws of the prior at ``t_max``.
    steps, t_min, t_max, grid : the time grid (:func:`diffcore.time_grid`).
    rng : ``None``, an int seed, a NumPy or torch generator; the same seed gives the same path as
        ``sample(..., method="euler_maruyama")``.
    log_prob_init : ``None`` (the prior log density) or the exact ``log p_{t_max}(x_init)``, as an
        ``(n,)`` array or a callable of ``x_init``; a process whose ``p_1`` is not exactly the prior
        (VE, or VP with ``alpha(1) > 0``) otherwise carries that start error to the end.
    prior_control : add the exact change of ``log pi`` and subtract its Itô sum (no extra NFE;
        makes the estimator converge near a prior end with ``alpha(1) = 0``).
    save_path : keep states ``(steps + 1, n, ...)`` in ``path`` and estimates ``(steps + 1, n)``
        in ``log_density_path``.
    batch_size : ``None`` (all points in one call of the score) or the most points per call;
        only the evaluations are split (the noise is drawn for the whole batch), so the result
        equals the unbatched one to rounding.
    progress : a tqdm bar over the steps: ``None`` (default) only when stderr is a terminal,
        ``True`` always (needs tqdm), ``False`` never; see :func:`~diffcore.integrate`.

    Returns
    -------
    :class:`~diffcore.Solution` with ``x`` the samples, ``log_density`` the ``(n,)`` estimate of
    ``log p_{t_min}(x)``, ``nfe`` and ``ts``.

    Raises
    ------
    TypeError, ValueError
        for a bad process, score, prediction, grid, start value or a score output of the wrong shape.
    FloatingPointError
        when the state or a log density stops being finite (with the step and the times).

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian, exact_score, exact_log_prob
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), np.eye(2))  # then p_t = N(0, I) for every t
    >>> sol = ito_log_density(p, exact_score(p, data), p.prior_sample((3, 2), rng=0), steps=50, rng=1)
    >>> bool(np.allclose(sol.log_density, exact_log_prob(p, data)(sol.x, 1e-3)))
    True
    """
    x_init = check_x_init(x_init)
    ts = grid_for(process, steps, t_min, t_max, grid)
    model = as_score(process, score, prediction, "score")
    log_init = start_values(process, x_init, log_prob_init, "log_prob_init")
    batch_size = check_batch_size(batch_size)
    check_progress(progress)
    out = run(
        process, [model], x_init, ts, rng, log_init[:, None], _single,
        prior_control=prior_control, save_path=save_path, batch_size=batch_size, progress=progress,
    )  # fmt: skip
    return Solution(
        x=out.x,
        ts=ts,
        nfe=out.nfe,
        solver=EulerMaruyama(),
        path=out.path,
        log_density=out.log_densities[:, 0],
        log_density_path=None if out.log_path is None else out.log_path[:, :, 0],
    )
