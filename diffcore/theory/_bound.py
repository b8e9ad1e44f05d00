"""The law of the reverse SDE under an affine score, and both sides of the score-error KL bound."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from diffcore._validation import check_positive, check_scalar_time, check_unshifted
from diffcore.distributions import Gaussian
from diffcore.processes import AbstractProcess
from diffcore.theory._gaussian import affine_coefficients, check_affine, gaussian_kl

__all__ = ["ScoreErrorBound", "grid_path_kl", "reverse_sde_law", "score_error_bound"]


def _check_process(process: Any, who: str) -> AbstractProcess:
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, who)
    return process


def _check_gaussian(name: str, law: Any, d: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(law, Gaussian):
        raise TypeError(f"{name} must be a Gaussian; got {type(law).__name__}")
    mean, cov = np.asarray(law.mean, dtype=np.float64), np.asarray(law.cov, dtype=np.float64)
    if d is not None and mean.shape != (d,):
        raise ValueError(f"{name} must have dimension {d}; got {mean.shape[0]}")
    return mean, cov


def _check_span(t_min: Any, t_max: Any) -> tuple[float, float]:
    t_min, t_max = check_scalar_time(t_min, "t_min"), check_scalar_time(t_max, "t_max")
    if not t_min < t_max:
        raise ValueError(f"t_min must be < t_max; got t_min={t_min}, t_max={t_max}")
    return t_min, t_max


def _true_moments(process: AbstractProcess, mean: np.ndarray, cov: np.ndarray, t: float) -> tuple:
    """Mean and covariance of ``x_t = alpha x_0 + sigma eps`` for ``x_0 ~ N(mean, cov)``."""
    a, s = process.alpha(t), process.sigma(t)
    return a * mean, a**2 * cov + s**2 * np.eye(mean.shape[0])


def _drift_matrix(process: AbstractProcess, score: Any, t: float, d: int) -> tuple:
    """``M = f I - g^2 A``, ``-g^2 b`` and ``g^2``: the reverse drift ``f x - g^2 (A x + b) = M x - g^2 b``."""
    a, b = affine_coefficients(score, t, d)
    f, g2 = process.drift_coef(t), process.diffusion_squared(t)
    return f * np.eye(d) - g2 * a, -g2 * b, g2, a, b


def _solve(rhs: Any, y0: np.ndarray, t_from: float, t_to: float, rtol: float) -> np.ndarray:
    sol = solve_ivp(rhs, (t_from, t_to), y0, method="DOP853", rtol=rtol, atol=rtol * 1e-2)
    if not sol.success:  # pragma: no cover - DOP853 on a smooth linear system does not fail
        raise RuntimeError(f"moment equations failed between t = {t_from} and {t_to}: {sol.message}")
    return sol.y[:, -1]


def reverse_sde_law(
    process: AbstractProcess,
    score: Any,
    start: Gaussian,
    *,
    t_min: float = 0.0,
    t_max: float = 1.0,
    rtol: float = 1e-12,
) -> Gaussian:
    r"""The exact law at ``t_min`` of the reverse SDE with an affine ``score``, started from ``start`` at ``t_max``.

    The reverse SDE ``dx = [f(t) x - g(t)^2 s(x, t)] dt + g(t) dW`` (time running from ``t_max`` down
    to ``t_min``; Anderson 1982, Song et al. 2021 eq. 6) with ``s(x, t) = A(t) x + b(t)`` is linear, so
    it keeps Gaussian laws; their mean and covariance solve, with ``M = f I - g^2 A``,

    .. math:: \dot m = M m - g^2 b, \qquad \dot C = M C + C M^\top - g^2 I

    (book chapter "Theory you can measure", eq. ``theory-moments``), integrated here by DOP853 at
    relative tolerance ``rtol`` (the law is exact to about ``1e-10``).  ``A(t)`` and ``b(t)`` are read
    from ``score`` by ``d + 1`` probes at every time the integrator needs; a score that is not affine
    raises ``ValueError``.  ``score(x, t)`` takes ``x`` of shape ``(n, d)`` and a float ``t``.

    Returns a :class:`~diffcore.Gaussian` (NumPy float64).  With the exact score of Gaussian data and
    ``start`` the exact marginal at ``t_max`` it returns the exact marginal at ``t_min``.
    """
    process = _check_process(process, "reverse_sde_law")
    mean, cov = _check_gaussian("start", start)
    t_min, t_max = _check_span(t_min, t_max)
    rtol = check_positive("rtol", rtol)
    d = mean.shape[0]
    check_affine(score, t_max, d, "reverse_sde_law")

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        m, c = y[:d], y[d:].reshape(d, d)
        big_m, shift, g2, _, _ = _drift_matrix(process, score, t, d)
        dc = big_m @ c + c @ big_m.T - g2 * np.eye(d)
        return np.concatenate([big_m @ m + shift, dc.ravel()])

    y = _solve(rhs, np.concatenate([mean, cov.ravel()]), t_max, t_min, rtol)
    c = y[d:].reshape(d, d)
    return Gaussian(y[:d], 0.5 * (c + c.T))


@dataclass(frozen=True)
class ScoreErrorBound:
    r"""Both sides of ``KL(p_{t_min} || phat) <= KL(p_1 || pi) + 1/2 int g^2 E_{p_t} |s_theta - s|^2 dt``.

    ``kl`` is the left side (exact), ``prior_kl`` and ``score_term`` the two terms of the right side,
    ``law`` the sampler's output law ``phat`` and ``target`` the exact marginal ``p_{t_min}``.
    """

    kl: float
    prior_kl: float
    score_term: float
    law: Gaussian
    target: Gaussian

    @property
    def bound(self) -> float:
        """The right side ``prior_kl + score_term``."""
        return self.prior_kl + self.score_term

    @property
    def ratio(self) -> float:
        """Tightness ``kl / bound`` in ``[0, 1]`` (``nan`` when both sides are zero)."""
        return self.kl / self.bound if self.bound > 0 else float("nan")


def score_error_bound(
    process: AbstractProcess,
    data: Gaussian,
    score: Any,
    *,
    prior: Gaussian | None = None,
    t_min: float = 0.0,
    rtol: float = 1e-12,
) -> ScoreErrorBound:
    r"""Evaluate the score-error bound of Song et al. (2021, thm. 1) and Chen et al. (2023, thm. 2) exactly.

    For Gaussian ``data`` and an affine ``score`` ``s_theta`` the reverse SDE started at ``prior``
    (default ``N(0, prior_std^2 I)``) at ``t = 1`` has a Gaussian output law ``phat``
    (:func:`reverse_sde_law`), and

    .. math:: \mathrm{KL}(p_{t_{\min}} \,\|\, \hat p) \le \mathrm{KL}(p_1 \,\|\, \pi)
              + \tfrac12 \int_{t_{\min}}^1 g(t)^2\, E_{p_t} \|s_\theta(x, t) - \nabla\log p_t(x)\|^2 \, dt

    (book chapter "Theory you can measure", eq. ``theory-bound``).  With ``s_theta - s = D x + e`` and
    ``x ~ N(mu_t, Sigma_t)`` the expectation is ``tr(D Sigma_t D^T) + |D mu_t + e|^2``; the integral is
    carried along the moment equations at tolerance ``rtol`` (exact to about ``1e-10``).
    The exact score ``s = -Sigma_t^{-1}(x - mu_t)`` is formed from ``data`` in closed form, never by
    calling a score field.  Returns a :class:`ScoreErrorBound`.
    """
    process = _check_process(process, "score_error_bound")
    mean0, cov0 = _check_gaussian("data", data)
    d = mean0.shape[0]
    t_min, _ = _check_span(t_min, 1.0)
    if prior is None:
        prior = Gaussian(np.zeros(d), process.prior_std**2 * np.eye(d))
    _check_gaussian("prior", prior, d)
    rtol = check_positive("rtol", rtol)
    check_affine(score, 1.0, d, "score_error_bound")

    def integrand(t: float) -> float:
        mu, sig = _true_moments(process, mean0, cov0, t)
        a, b = affine_coefficients(score, t, d)
        prec = np.linalg.inv(sig)
        dm, e = a + prec, b - prec @ mu  # s_theta - s = (A + Sigma^{-1}) x + (b - Sigma^{-1} mu)
        r = dm @ mu + e
        return 0.5 * process.diffusion_squared(t) * (np.trace(dm @ sig @ dm.T) + r @ r)

    term = _solve(lambda t, y: np.array([-integrand(t)]), np.zeros(1), 1.0, t_min, rtol)[0]
    law = reverse_sde_law(process, score, prior, t_min=t_min, t_max=1.0, rtol=rtol)
    mu1, sig1 = _true_moments(process, mean0, cov0, 1.0)
    mu_t, sig_t = _true_moments(process, mean0, cov0, t_min)
    prior_kl = gaussian_kl(mu1, sig1, np.asarray(prior.mean), np.asarray(prior.cov))
    kl = gaussian_kl(mu_t, sig_t, np.asarray(law.mean), np.asarray(law.cov))
    return ScoreErrorBound(kl, prior_kl, float(term), law, Gaussian(mu_t, sig_t))


def grid_path_kl(
    process: AbstractProcess,
    data: Gaussian,
    score: Any,
    ts: Any,
    *,
    prior: Gaussian | None = None,
    rtol: float = 1e-12,
) -> float:
    r"""KL between the joint laws of ``(x_{t_0}, ..., x_{t_N})`` of the true and the model's reverse process.

    ``ts`` is a decreasing grid from ``t_0 = 1`` to ``t_N = t_min``.  The true reverse process is the
    forward process run backwards from ``p_1``; the model's is the reverse SDE with ``score`` started at
    ``prior``.  Both are Gaussian Markov chains on the grid, so by the chain rule of KL

    .. math:: \mathrm{KL}_{\text{grid}} = \mathrm{KL}(p_1 \,\|\, \pi)
              + \sum_k E_{x \sim p_{t_k}} \mathrm{KL}\big(p(x_{t_{k+1}} \mid x_{t_k} = x) \,\big\|\,
              \hat p(x_{t_{k+1}} \mid x_{t_k} = x)\big),

    every term in closed form: the true backward conditional by Gaussian conditioning, the model's
    transition by the moment equations from a point mass (eq. ``theory-grid-kl`` of the book chapter).
    By the data-processing inequality it increases when the grid is refined, lies between the marginal
    KL at ``t_min`` and the path-space (Girsanov) KL, and tends to the latter, which equals the right
    side of :func:`score_error_bound` (Chen et al. 2023, sec. 5.2).
    """
    process = _check_process(process, "grid_path_kl")
    mean0, cov0 = _check_gaussian("data", data)
    d = mean0.shape[0]
    grid = np.asarray(ts, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2:
        raise ValueError(f"ts must be a 1-D grid of at least two times; got shape {grid.shape}")
    if not (np.all(np.diff(grid) < 0) and grid[0] == 1.0 and grid[-1] >= 0.0):
        raise ValueError(f"ts must decrease strictly from 1 to t_min >= 0; got {grid[:3]}...{grid[-2:]}")
    if prior is None:
        prior = Gaussian(np.zeros(d), process.prior_std**2 * np.eye(d))
    _check_gaussian("prior", prior, d)
    rtol = check_positive("rtol", rtol)
    check_affine(score, 1.0, d, "grid_path_kl")
    mu1, sig1 = _true_moments(process, mean0, cov0, 1.0)
    total = gaussian_kl(mu1, sig1, np.asarray(prior.mean), np.asarray(prior.cov))
    eye = np.eye(d)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        phi, c, q = y[: d * d].reshape(d, d), y[d * d : d * d + d], y[d * d + d :].reshape(d, d)
        big_m, shift, g2, _, _ = _drift_matrix(process, score, t, d)
        dq = big_m @ q + q @ big_m.T - g2 * eye
        return np.concatenate([(big_m @ phi).ravel(), big_m @ c + shift, dq.ravel()])

    for t, s in itertools.pairwise(grid):
        mu_t, sig_t = _true_moments(process, mean0, cov0, t)
        mu_s, sig_s = _true_moments(process, mean0, cov0, s)
        tr = process.transition(float(s), float(t))
        # true backward conditional x_s | x_t = y: N(P y + p, R), R = Sigma_s Sigma_t^{-1} std^2 (no cancellation)
        gain = np.linalg.solve(sig_t, sig_s).T  # Sigma_s Sigma_t^{-1}
        big_p, p, r = tr.scale * gain, mu_s - tr.scale * gain @ mu_t, tr.std**2 * gain
        y = _solve(rhs, np.concatenate([eye.ravel(), np.zeros(d), np.zeros(d * d)]), t, s, rtol)
        phi, c, q = y[: d * d].reshape(d, d), y[d * d : d * d + d], y[d * d + d :].reshape(d, d)
        dm, dv = big_p - phi, big_p @ mu_t + p - (phi @ mu_t + c)
        # E_y KL(N(P y + p, R) || N(Phi y + c, Q)) = KL(N(0, R) || N(0, Q)) + 1/2 E |D y + dv|^2_{Q^{-1}}
        qi = np.linalg.inv(0.5 * (q + q.T))
        total += gaussian_kl(np.zeros(d), 0.5 * (r + r.T), np.zeros(d), 0.5 * (q + q.T))
        total += 0.5 * (np.trace(qi @ dm @ sig_t @ dm.T) + dv @ qi @ dv)
    return float(total)
