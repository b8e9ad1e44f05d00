"""Exact posteriors of Gaussian-mixture priors under linear-Gaussian measurements, at time 0 and time t.

For a component ``N(m_k, C_k)`` and ``y = H x + s n``: with ``S_k = H C_k H^T + s^2 I`` and the
gain ``K_k = C_k H^T S_k^{-1}``, ``x | y, k ~ N(m_k + K_k (y - H m_k), C_k - K_k H C_k)`` and the
component's evidence is ``N(y; H m_k, S_k)``; the posterior weights are ``w_k N(y; H m_k, S_k)``
normalised (book chapter "Inverse problems", eq. ``inverse-posterior``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array, is_scalar_time, namespace
from diffcore.conditional._grid import GridLaw, default_box
from diffcore.conditional._labelled import LabelledMixture
from diffcore.conditional._measurements import AbstractMeasurement, check_observation
from diffcore.distributions import ExactField, Gaussian, GaussianMixture
from diffcore.distributions._components import logsumexp, softmax
from diffcore.processes import AbstractProcess

__all__ = [
    "Prior",
    "exact_likelihood_score",
    "exact_posterior_covariance",
    "posterior",
    "prior_mixture",
    "quadrature_posterior",
]

Array = Any
Prior = Gaussian | GaussianMixture | LabelledMixture


def prior_mixture(prior: Any) -> GaussianMixture:
    """The prior as a :class:`~diffcore.GaussianMixture` (``TypeError`` for anything else)."""
    if isinstance(prior, LabelledMixture):
        return prior.mixture
    if isinstance(prior, Gaussian):
        return prior.as_mixture()
    if isinstance(prior, GaussianMixture):
        return prior
    raise TypeError(f"prior must be a Gaussian, GaussianMixture or LabelledMixture; got {type(prior).__name__}")


def _linear(measurement: Any, prior: GaussianMixture, who: str) -> None:
    if not isinstance(measurement, AbstractMeasurement):
        raise TypeError(f"measurement must be an AbstractMeasurement; got {type(measurement).__name__}")
    if not measurement.linear_gaussian:
        raise ValueError(
            f"{who} is exact only for a linear-Gaussian measurement; got {type(measurement).__name__} "
            "(use quadrature_posterior in 1-D or 2-D)"
        )
    if measurement.dim != prior.dim:
        raise ValueError(
            f"H must have shape (m, d) with d = {prior.dim} (the prior's dimension); got {tuple(measurement.H.shape)}"
        )


def posterior(prior: Prior, measurement: AbstractMeasurement, y: Array) -> Prior:
    r"""The exact posterior ``p(x | y) ∝ p(x) N(y; H x, s^2 I)`` of a Gaussian(-mixture) prior.

    Per component (Bayes' rule for Gaussians; Bishop 2006, eq. 2.116):

    .. math:: S_k = H C_k H^\top + s^2 I,\quad K_k = C_k H^\top S_k^{-1},\quad
              m'_k = m_k + K_k (y - H m_k),\quad C'_k = C_k - K_k H C_k,\quad
              w'_k \propto w_k\, N(y; H m_k, S_k).

    Parameters
    ----------
    prior : :class:`~diffcore.Gaussian`, :class:`~diffcore.GaussianMixture` or
        :class:`LabelledMixture` (the result has the same kind; labels are kept, so its
        :attr:`~LabelledMixture.class_probs` are the posterior class probabilities).
    measurement : a :class:`LinearGaussianMeasurement` with ``H`` of shape ``(m, d)``.
    y : the observation, shape ``(m,)``, finite.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import Gaussian
    >>> from diffcore.conditional import LinearGaussianMeasurement
    >>> post = posterior(Gaussian(np.zeros(1), np.eye(1)), LinearGaussianMeasurement(np.eye(1), 1.0), np.ones(1))
    >>> float(post.mean[0]), float(post.cov[0, 0])  # precision-weighted: half-way, half the variance
    (0.5, 0.5)
    """
    mixture = prior_mixture(prior)
    _linear(measurement, mixture, "posterior")
    y = as_array(check_observation(measurement, y), mixture.means)
    xp = namespace(mixture.means)
    H = as_array(measurement.H, mixture.means)
    m = measurement.n_obs
    CHt = mixture.covs @ H.T  # (K, d, m)
    S = H @ CHt + measurement.noise_std**2 * xp.eye(m, dtype=H.dtype)  # (K, m, m)
    resid = y[None, :] - mixture.means @ H.T  # (K, m)
    sol = xp.linalg.solve(S, resid[:, :, None])[:, :, 0]  # S^{-1} r
    means = mixture.means + (CHt @ sol[:, :, None])[:, :, 0]
    gain_t = xp.linalg.solve(S, xp.permute_dims(CHt, (0, 2, 1)))  # K^T = S^{-1} H C, (K, m, d)
    covs = mixture.covs - CHt @ gain_t
    covs = 0.5 * (covs + xp.permute_dims(covs, (0, 2, 1)))
    _, logdet = xp.linalg.slogdet(S)
    log_ev = -0.5 * xp.sum(resid * sol, axis=1) - 0.5 * logdet - 0.5 * m * math.log(2 * math.pi)
    weights = softmax(xp.log(mixture.weights) + log_ev, axis=0)
    # a component the observation rules out can underflow to weight 0, which a mixture refuses:
    # keep it at the smallest normal number (its contribution to every density stays below that)
    tiny = xp.asarray(xp.finfo(weights.dtype).tiny, dtype=weights.dtype, device=getattr(weights, "device", None))
    weights = xp.where(weights > tiny, weights, tiny)
    if isinstance(prior, Gaussian):
        return Gaussian(means[0], covs[0])
    if isinstance(prior, LabelledMixture):
        return LabelledMixture(weights, means, covs, prior.labels)
    return GaussianMixture(weights, means, covs)


@dataclass(frozen=True, eq=False)
class _TimeTerms:
    """Per-component Gaussian posteriors ``x_0 | x_t, k ~ N(mu_k, Sigma_k)`` and the responsibilities."""

    resp: Array  # (n, K)
    log_resp: Array  # (n, K): log r_k, finite where r_k underflows to 0
    mu: Array  # (n, K, d)
    eigvecs: Array  # (K, d, d)
    post_var: Array  # (n or 1, K, d): eigenvalues of Sigma_k = U diag(lam s2 / v) U^T
    gain: Array  # (n or 1, K, d): lam / v  (alpha C V^{-1} = alpha U diag(lam / v) U^T)
    proj_over_var: Array  # (n, K, d): U^T V^{-1} (x - alpha m_k) in the eigenbasis
    alpha: Any


def _time_terms(field_: ExactField, x: Array, t: Any) -> _TimeTerms:
    log_joint, proj, var, comps, a, s2 = field_.terms(x, t)
    xp = namespace(log_joint)
    a_col = a if is_scalar_time(a) else xp.reshape(a, (-1, 1, 1))
    s2_col = s2 if is_scalar_time(s2) else xp.reshape(s2, (-1, 1, 1))
    lam = comps.eigvals[None]
    gain = lam / var
    local = a_col * gain * proj  # U^T (mu_k - m_k) in the eigenbasis
    mu = comps.means[None] + xp.permute_dims(
        xp.permute_dims(local, (1, 0, 2)) @ xp.permute_dims(comps.eigvecs, (0, 2, 1)), (1, 0, 2)
    )
    log_resp = log_joint - logsumexp(log_joint, axis=1)[:, None]
    return _TimeTerms(xp.exp(log_resp), log_resp, mu, comps.eigvecs, lam * s2_col / var, gain, proj / var, a_col)


@dataclass(frozen=True, eq=False)
class PosteriorCovariance:
    r"""The exact ``Cov[x_0 | x_t = x]`` of a Gaussian-mixture prior, ``(n, d, d)``.

    .. math:: \mathrm{Cov}[x_0 \mid x_t] = \sum_k r_k \big(\Sigma_k + (\mu_k - \bar\mu)(\mu_k - \bar\mu)^\top\big),
              \quad \Sigma_k = C_k - \alpha^2 C_k V_k^{-1} C_k,

    the second-order Tweedie identity ``Cov = (sigma^2 / alpha^2) (I + sigma^2 grad^2 log p_t)``
    in closed form (Meng et al. 2021; used by the second-order and moment-matching samplers).
    """

    process: AbstractProcess
    prior: Any
    _field: ExactField = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_field", ExactField(self.process, prior_mixture(self.prior)))

    def __call__(self, x: Array, t: Any) -> Array:
        tt = _time_terms(self._field, x, t)
        xp = namespace(tt.mu)
        U = tt.eigvecs[None]  # (1, K, d, d)
        sig = (U * tt.post_var[:, :, None, :]) @ xp.permute_dims(U, (0, 1, 3, 2))  # (n or 1, K, d, d)
        mean = xp.sum(tt.resp[:, :, None] * tt.mu, axis=1)
        dev = tt.mu - mean[:, None, :]  # centred: no cancellation of large second moments
        second = sig + dev[:, :, :, None] * dev[:, :, None, :]
        return xp.sum(tt.resp[:, :, None, None] * second, axis=1)


@dataclass(frozen=True, eq=False)
class LikelihoodScore:
    r"""The exact noisy-level likelihood ``log p_t(y | x_t)`` and its gradient (the call), ``(n, d)``.

    With the Gaussian pieces ``x_0 | x_t, k ~ N(mu_k(x_t), Sigma_k)`` of the prior,

    .. math:: p_t(y \mid x_t) = \sum_k r_k(x_t)\, N\big(y;\, H\mu_k(x_t),\, T_k\big),\qquad
              T_k = H\Sigma_k H^\top + s^2 I,

    (book chapter "Inverse problems", eq. ``inverse-noisy-likelihood``) — a mixture, not a
    Gaussian.  With ``rho_k ∝ r_k N(y; H mu_k, T_k)`` and ``g_k = -V_k^{-1}(x - alpha m_k)``,

    .. math:: \nabla \log p_t(y \mid x_t) = \sum_k (\rho_k - r_k)\, g_k
              + \sum_k \rho_k\, \alpha V_k^{-1} C_k H^\top T_k^{-1} (y - H\mu_k),

    computed in closed form (no autograd, no difference of two scores).  It equals
    ``grad log p_t(x | y) - grad log p_t(x)`` with ``p_t(. | y)`` the marginal of
    :func:`posterior` (tested), the quantity DPS, Pi-GDM and their successors approximate.
    """

    process: AbstractProcess
    prior: Any
    measurement: AbstractMeasurement
    y: Any
    _field: ExactField = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mixture = prior_mixture(self.prior)
        _linear(self.measurement, mixture, "exact_likelihood_score")
        object.__setattr__(self, "y", check_observation(self.measurement, self.y))
        object.__setattr__(self, "_field", ExactField(self.process, mixture))

    def _parts(self, x: Array, t: Any) -> tuple[_TimeTerms, Array, Array, Array]:
        tt = _time_terms(self._field, x, t)
        xp = namespace(tt.mu)
        H = as_array(self.measurement.H, tt.mu)
        HU = H[None] @ tt.eigvecs  # (K, m, d)
        T = (HU[None] * tt.post_var[:, :, None, :]) @ xp.permute_dims(HU, (0, 2, 1))[None]
        T = T + self.measurement.noise_std**2 * xp.eye(H.shape[0], dtype=H.dtype)  # (n or 1, K, m, m)
        resid = as_array(self.y, tt.mu)[None, None, :] - tt.mu @ H.T  # (n, K, m)
        sol = xp.linalg.solve(T, resid[..., None])[..., 0]
        _, logdet = xp.linalg.slogdet(T)
        log_lik = -0.5 * xp.sum(resid * sol, axis=2) - 0.5 * logdet - 0.5 * H.shape[0] * math.log(2 * math.pi)
        return tt, HU, sol, log_lik

    def log_likelihood(self, x: Array, t: Any) -> Array:
        """``log p_t(y | x_t = x)``, shape ``(n,)``."""
        tt, _, _, log_lik = self._parts(x, t)
        return logsumexp(tt.log_resp + log_lik, axis=1)

    def __call__(self, x: Array, t: Any) -> Array:
        tt, HU, sol, log_lik = self._parts(x, t)
        xp = namespace(sol)
        rho = softmax(tt.log_resp + log_lik, axis=1)
        back = xp.permute_dims(xp.permute_dims(sol, (1, 0, 2)) @ HU, (1, 0, 2))  # U^T H^T T^{-1} r, (n, K, d)
        w = (rho - tt.resp)[:, :, None] * (-tt.proj_over_var) + rho[:, :, None] * tt.alpha * tt.gain * back
        per_k = xp.permute_dims(w, (1, 0, 2)) @ xp.permute_dims(tt.eigvecs, (0, 2, 1))
        return xp.sum(per_k, axis=0)


def exact_likelihood_score(
    process: AbstractProcess, prior: Prior, measurement: AbstractMeasurement, y: Array
) -> LikelihoodScore:
    """``(x, t) -> grad log p_t(y | x_t = x)`` in closed form; see :class:`LikelihoodScore`."""
    return LikelihoodScore(process, prior, measurement, y)


def exact_posterior_covariance(process: AbstractProcess, prior: Prior) -> PosteriorCovariance:
    """``(x, t) -> Cov[x_0 | x_t = x]`` in closed form, ``(n, d, d)``; see :class:`PosteriorCovariance`."""
    return PosteriorCovariance(process, prior)


def quadrature_posterior(
    prior: Prior,
    measurement: AbstractMeasurement,
    y: Array,
    *,
    lower: Any = None,
    upper: Any = None,
    resolution: int = 601,
) -> GridLaw:
    r"""The posterior ``p(x | y) ∝ p(x) p(y | x)`` in 1-D or 2-D by quadrature, for any measurement.

    The reference for measurements without a closed-form posterior (:class:`SignMeasurement`)
    and an independent check of :func:`posterior`.  The box defaults to the prior's components
    to 8 standard deviations; see :class:`GridLaw` for the accuracy (spectral in the cell width).
    """
    mixture = prior_mixture(prior)
    if not isinstance(measurement, AbstractMeasurement):
        raise TypeError(f"measurement must be an AbstractMeasurement; got {type(measurement).__name__}")
    if mixture.dim not in (1, 2):
        raise ValueError(f"quadrature_posterior works in d = 1 or 2; the prior has d = {mixture.dim}")
    if measurement.dim != mixture.dim:
        raise ValueError(f"H must have shape (m, d) with d = {mixture.dim}; got {tuple(measurement.H.shape)}")
    means = np.asarray(as_array(mixture.means, np.zeros(1)))
    covs = np.asarray(as_array(mixture.covs, np.zeros(1)))
    y = np.asarray(as_array(check_observation(measurement, y), np.zeros(1)))
    lo, hi = default_box(means, covs)
    host = GaussianMixture(np.asarray(as_array(mixture.weights, np.zeros(1))), means, covs)

    def log_density(x: np.ndarray) -> np.ndarray:
        return host.log_prob(x) + measurement.log_likelihood(x, y)

    return GridLaw(log_density, lo if lower is None else lower, hi if upper is None else upper, resolution)
