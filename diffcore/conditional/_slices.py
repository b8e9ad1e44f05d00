r"""3-D volumes from a 2-D (per-slice) prior: the exact Gaussian toy of DiffusionMBIR (Chung, Ryu et al. 2023).

A volume is ``S`` slices of dimension ``d``, stored flat as ``x (n, S d)`` with slice ``k`` in columns
``k d .. (k + 1) d - 1``.  The prior is the product of identical slice priors ``N(m, C)`` times the
quadratic coupling along ``z``, ``exp(-(lambda/2) ||D_z x||^2)`` with ``(D_z x)_k = x_{k+1} - x_k``
(the Gaussian analogue of the paper's total variation along ``z``):

.. math:: p(x) \propto \prod_k N(x_k; m, C)\, e^{-\frac{\lambda}{2}\|D_z x\|^2}
          = N\big(x;\, 1_S \otimes m,\, P^{-1}\big),\qquad P = I_S \otimes C^{-1} + \lambda\, L_S \otimes I_d,

with ``L_S = D^T D`` the path Laplacian (the mean is unchanged because ``D 1 = 0``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from diffcore._array import as_array, is_scalar_time, namespace, resolve_rng
from diffcore._validation import check_array, check_finite, check_nonnegative, check_steps, check_time_for
from diffcore.conditional._measurements import AbstractMeasurement, check_observation
from diffcore.distributions import Gaussian
from diffcore.processes import AbstractProcess
from diffcore.samplers import Solution, get_solver, sample, time_grid

__all__ = ["slice_posterior", "slice_posterior_sampling", "slice_prior", "slice_score"]

Array = Any
Field = Callable[[Array, Any], Array]


def _slice_law(mean: Any, cov: Any, n_slices: int) -> tuple[np.ndarray, np.ndarray, int]:
    law = Gaussian(np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64))
    return np.asarray(law.mean), np.asarray(law.cov), check_steps(n_slices, "n_slices")


def _path_laplacian(n_slices: int) -> np.ndarray:
    D = np.diff(np.eye(n_slices), axis=0)  # (S - 1, S): rows e_{k+1} - e_k
    return D.T @ D


def slice_prior(mean: Any, cov: Any, n_slices: int, coupling: float) -> Gaussian:
    """The volume prior ``N(1_S ⊗ m, P^{-1})`` with ``P = I_S ⊗ C^{-1} + coupling L_S ⊗ I_d`` (module docstring)."""
    m, C, S = _slice_law(mean, cov, n_slices)
    lam = check_nonnegative("coupling", coupling)
    P = np.kron(np.eye(S), np.linalg.inv(C)) + lam * np.kron(_path_laplacian(S), np.eye(m.shape[0]))
    cov_vol = np.linalg.inv(P)
    return Gaussian(np.tile(m, S), 0.5 * (cov_vol + cov_vol.T))


def slice_posterior(
    mean: Any, cov: Any, n_slices: int, coupling: float, measurement: AbstractMeasurement, y: Any
) -> Gaussian:
    r"""The exact posterior of the coupled slice prior under ``y = H x + s n`` (precision form).

    .. math:: Q = P + H^\top H / s^2, \qquad \mu = Q^{-1}\big(P (1_S \otimes m) + H^\top y / s^2\big),
              \qquad x \mid y \sim N(\mu, Q^{-1}).

    ``measurement`` must be linear-Gaussian with ``H`` of shape ``(m, S d)``.  Agrees with
    :func:`posterior` applied to :func:`slice_prior` (the covariance / Kalman-gain form) to 1e-10.
    """
    m, C, S = _slice_law(mean, cov, n_slices)
    prior = slice_prior(m, C, S, coupling)
    if not isinstance(measurement, AbstractMeasurement) or not measurement.linear_gaussian:
        raise ValueError(f"slice_posterior needs a linear-Gaussian measurement; got {type(measurement).__name__}")
    if measurement.dim != S * m.shape[0]:
        raise ValueError(f"H must have S d = {S * m.shape[0]} columns; got shape {tuple(measurement.H.shape)}")
    y = np.asarray(as_array(check_observation(measurement, y), np.zeros(1)))
    H, s2 = np.asarray(as_array(measurement.H, np.zeros(1))), measurement.noise_std**2
    P = np.linalg.inv(np.asarray(prior.cov))
    Q = P + H.T @ H / s2
    cov_post = np.linalg.inv(Q)
    mu = np.linalg.solve(Q, P @ np.asarray(prior.mean) + H.T @ y / s2)
    return Gaussian(mu, 0.5 * (cov_post + cov_post.T))


def slice_score(score: Field, n_slices: int) -> Field:
    """The product-prior score of volumes ``(n, S d)`` from a slice score ``(x (n S, d), t) -> (n S, d)``."""
    S = check_steps(n_slices, "n_slices")

    def volume_score(x: Array, t: Any) -> Array:
        x = check_array("x", x, ndim=2, finite=False)
        if x.shape[1] % S:
            raise ValueError(f"x must have shape (n, S d) with S = {S} slices; got {tuple(x.shape)}")
        t = check_time_for(t, x)
        xp = namespace(x)
        n, dim = x.shape[0], x.shape[1] // S
        tt = t if is_scalar_time(t) else xp.reshape(xp.broadcast_to(xp.reshape(t, (-1, 1)), (n, S)), (-1,))
        return xp.reshape(score(xp.reshape(x, (n * S, dim)), tt), (n, S * dim))

    return volume_score


def _coupling_op(x: Array, S: int, lam: float) -> Array:
    """``lam (L_S ⊗ I_d) x`` for flat volumes ``(n, S d)``: ``lam D^T D x`` along the slice axis."""
    xp = namespace(x)
    v = xp.reshape(x, (x.shape[0], S, -1))
    dx = v[:, 1:] - v[:, :-1]
    zero = xp.zeros_like(v[:, :1])
    out = xp.concat([zero, dx], axis=1) - xp.concat([dx, zero], axis=1)
    return lam * xp.reshape(out, x.shape)


def _cg(x: Array, H: Array, y: Array, s2: float, S: int, lam: float, iters: int) -> Array:
    r"""``iters`` conjugate-gradient steps on ``(H^T H / s^2 + lam L) x = H^T y / s^2`` from ``x`` (per row)."""
    xp = namespace(x)

    def op(v: Array) -> Array:
        return (v @ H.T) @ H / s2 + _coupling_op(v, S, lam)

    r = (y[None, :] @ H) / s2 - op(x)
    p = r
    rr = xp.sum(r * r, axis=1, keepdims=True)
    for _ in range(iters):
        Ap = op(p)
        pAp = xp.sum(p * Ap, axis=1, keepdims=True)
        a = xp.where(pAp > 0, rr / xp.where(pAp > 0, pAp, 1.0), 0.0)
        x, r = x + a * p, r - a * Ap
        rr_new = xp.sum(r * r, axis=1, keepdims=True)
        p = r + xp.where(rr > 0, rr_new / xp.where(rr > 0, rr, 1.0), 0.0) * p
        rr = rr_new
    return x


def slice_posterior_sampling(
    process: AbstractProcess,
    score: Field,
    measurement: AbstractMeasurement,
    y: Array,
    x_init: Array,
    *,
    steps: int | None = None,
    nfe: int | None = None,
    rng: Any = None,
    n_slices: int,
    coupling: float,
    cg_steps: int = 1,
    method: str = "euler_maruyama",
    t_min: float = 1e-3,
) -> Solution:
    r"""DiffusionMBIR at toy scale: per-slice diffusion steps, then a data-and-coupling CG step on the volume.

    Per grid step ``t_k -> t_{k+1}`` (Chung, Ryu et al. 2023, sec. 3, with the quadratic coupling):

    1. every slice takes one step of ``method`` (a solver of :func:`~diffcore.sample`) with the
       slice score ``score`` (the "2-D model", applied to the ``n S`` slices as one batch);
    2. the volume takes ``cg_steps`` conjugate-gradient steps, warm-started at the result, on
       ``min_x ||y - H x||^2 / (2 s^2) + (coupling / 2) ||D_z x||^2``: with a quadratic coupling the
       paper's ADMM splitting (``d = D_z x``, shrinkage, dual update) is unnecessary, and its one CG
       step per diffusion step is this step.  The few CG steps are the only anchor to the prior draw.

    ``coupling = 0`` gives the uncoupled sampler (slices meet only through ``H``).  A heuristic:
    not a posterior sampler (measured against :func:`slice_posterior` in the tests).  Use a VE
    process (``alpha = 1``), as the paper does, so that ``x_t`` lives on the data scale the data
    step acts on.

    Parameters
    ----------
    score : slice score ``(x (n S, d), t) -> (n S, d)`` (e.g. ``exact_score(process, Gaussian(m, C))``).
    measurement, y : linear-Gaussian, ``H (m, S d)``, ``y (m,)``.
    x_init : ``(n, S d)`` prior draws at ``t = 1``.
    steps, nfe : exactly one; ``nfe = steps * nfe_per_step`` of ``method`` (slice-score calls on the batch).
    n_slices, coupling, cg_steps, method, t_min : see above.

    Returns
    -------
    :class:`~diffcore.Solution` (``x (n, S d)``, ``ts``, ``nfe``, ``solver`` the slice solver).
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    if not isinstance(measurement, AbstractMeasurement) or not measurement.linear_gaussian:
        raise ValueError(f"slice_posterior_sampling needs a linear-Gaussian measurement; got {measurement!r}")
    S, lam = check_steps(n_slices, "n_slices"), check_nonnegative("coupling", coupling)
    cg_steps = check_steps(cg_steps, "cg_steps")
    x = check_finite("x_init", check_array("x_init", x_init, ndim=2, dim=measurement.dim))
    if measurement.dim % S:
        raise ValueError(f"the volume dimension {measurement.dim} must be a multiple of n_slices = {S}")
    solver = get_solver(method)
    if (steps is None) == (nfe is None):
        raise ValueError(f"give exactly one of steps and nfe; got steps={steps!r}, nfe={nfe!r}")
    if nfe is not None and check_steps(nfe, "nfe") % solver.nfe_per_step:
        raise ValueError(f"nfe must be a multiple of {solver.nfe_per_step} for method {method!r}; got {nfe}")
    n_steps = check_steps(steps) if nfe is None else nfe // solver.nfe_per_step
    H, yy = as_array(measurement.H, x), as_array(check_observation(measurement, y), x)
    gen, vol_score = resolve_rng(rng), slice_score(score, S)
    ts = time_grid(process, n_steps, t_min=t_min, kind="uniform")
    if x.shape[0] == 0:  # nothing to sample, as for diffcore.integrate
        return Solution(x=x, ts=ts, nfe=0, solver=solver)
    count = 0
    for k in range(n_steps):
        sol = sample(process, vol_score, x, method=solver, steps=1, t_max=float(ts[k]), t_min=float(ts[k + 1]), rng=gen)
        x, count = _cg(sol.x, H, yy, measurement.noise_std**2, S, lam, cg_steps), count + sol.nfe
    return Solution(x=check_finite("the sampled volume", x), ts=ts, nfe=count, solver=solver)
