r"""Exact fields of a stochastic interpolant between Gaussian mixtures.

For ``x_0 ~ sum_i w_i N(m_i, A_i)`` and ``x_1 ~ sum_j u_j N(n_j, B_j)`` independent, ``x_t`` is
the mixture over pairs ``(i, j)`` with weights ``w_i u_j``, means ``mu = c_0 m_i + c_1 n_j``
and covariances ``V = c_0^2 A_i + c_1^2 B_j + gamma^2 I``.  Within a pair, ``(x_0, x_1, z, x_t)``
is jointly Gaussian, so every conditional expectation is linear in ``x``:

* score ``s = -sum r_ij V^{-1} (x - mu)``,
* velocity ``b = E[dx_t/dt | x_t] = sum r_ij (c_0' m_i + c_1' n_j + W V^{-1} (x - mu))`` with
  ``W = c_0 c_0' A_i + c_1 c_1' B_j + gamma gamma' I``,
* denoiser ``eta = E[z | x_t] = sum r_ij gamma V^{-1} (x - mu)``, hence ``s = -eta / gamma``,

with responsibilities ``r_ij(x)`` (Albergo, Boffi and Vanden-Eijnden 2023, thm. 2.6 and
eqs. 2.10–2.13).  The mirror interpolant (``x_0 = x_1``) has one source instead of a pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array, device_of, is_scalar_time, namespace
from diffcore._validation import check_points, check_time, check_time_for
from diffcore.distributions import Gaussian, GaussianMixture
from diffcore.distributions._components import logsumexp, softmax
from diffcore.interpolants._base import AbstractInterpolant

__all__ = ["InterpolantFields", "interpolant_fields"]

Array = Any


def _as_mixture(name: str, law: Any) -> GaussianMixture:
    if isinstance(law, Gaussian):
        return law.as_mixture()
    if isinstance(law, GaussianMixture):
        return law
    raise TypeError(f"{name} must be a Gaussian or a GaussianMixture; got {type(law).__name__}")


def _host(a: Any) -> np.ndarray:
    return np.asarray(as_array(a, np.empty(0)), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class _Sources:
    """Per mixture component (or pair of components): log weight, the source means and covariances."""

    log_weights: Any  # (P,)
    means: tuple[Any, ...]  # one (P, d) array per source
    covs: tuple[Any, ...]  # one (P, d, d) array per source


@dataclass(frozen=True, eq=False)
class InterpolantFields:
    """The exact density, score, velocity and denoiser of ``x_t`` for Gaussian-mixture ends.

    Build it with :func:`interpolant_fields`.  ``velocity``, ``score``, ``denoiser`` and
    ``log_prob`` are callables ``(x, t)`` with ``x`` of shape ``(n, d)`` and ``t`` a float
    or an ``(n,)`` array; results follow ``x``'s array type, dtype and device.  They plug
    into :class:`~diffcore.InterpolantODE` / :class:`~diffcore.InterpolantSDE`.
    """

    interpolant: AbstractInterpolant
    rho0: Any
    rho1: Any
    _sources: _Sources = field(init=False, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.interpolant, AbstractInterpolant):
            raise TypeError(f"interpolant must be an AbstractInterpolant; got {type(self.interpolant).__name__}")
        m0, m1 = _as_mixture("rho0", self.rho0), _as_mixture("rho1", self.rho1)
        if m0.dim != m1.dim:
            raise ValueError(f"rho0 and rho1 must have the same dimension; got {m0.dim} and {m1.dim}")
        w0, mu0, c0 = (_host(a) for a in (m0.weights, m0.means, m0.covs))
        w1, mu1, c1 = (_host(a) for a in (m1.weights, m1.means, m1.covs))
        if self.interpolant.coupling == "identical":
            same = w0.shape == w1.shape and mu0.shape == mu1.shape
            tol = {"rtol": 1e-12, "atol": 1e-12}
            if not (same and all(np.allclose(a, b, **tol) for a, b in ((w0, w1), (mu0, mu1), (c0, c1)))):
                raise ValueError(f"{type(self.interpolant).__name__} needs rho0 and rho1 to be the same law")
            sources = _Sources(np.log(w0), (mu0,), (c0,))
        else:
            k0, k1 = len(w0), len(w1)
            i, j = np.repeat(np.arange(k0), k1), np.tile(np.arange(k1), k0)
            sources = _Sources(np.log(w0[i] * w1[j]), (mu0[i], mu1[j]), (c0[i], c1[j]))
        object.__setattr__(self, "_sources", sources)

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the points."""
        return int(self._sources.means[0].shape[1])

    def _like(self, x: Array) -> _Sources:
        key = (type(x).__module__, str(device_of(x)), str(x.dtype))
        if key not in self._cache:
            s = self._sources
            self._cache[key] = _Sources(
                as_array(s.log_weights, x),
                tuple(as_array(m, x) for m in s.means),
                tuple(as_array(c, x) for c in s.covs),
            )
        return self._cache[key]

    def _coefficients(self, t: Any) -> tuple[list, list, Any, Any]:
        """Source coefficients and their derivatives, ``gamma`` and ``gamma gamma'``, shaped for (n, P, ...)."""
        it = self.interpolant
        if it.coupling == "identical":  # x_0 = x_1: one source with weight c_0 + c_1
            coefs = [it.coef0(t) + it.coef1(t)]
            d_coefs = [it.d_coef0(t) + it.d_coef1(t)]
        else:
            coefs, d_coefs = [it.coef0(t), it.coef1(t)], [it.d_coef0(t), it.d_coef1(t)]
        gamma, gdg = it.gamma(t), it.gamma_d_gamma(t)
        return coefs, d_coefs, gamma, gdg

    def _terms(self, x: Array, t: Any) -> dict[str, Any]:
        x = check_points(x, self.dim)
        t = check_time_for(t, x)
        src = self._like(x)
        coefs, d_coefs, gamma, gdg = self._coefficients(t)
        vec, mat = _shaper(t)  # (n, 1, 1) for per-sample coefficients, floats otherwise
        eye = as_array(np.eye(self.dim), x)
        mean = sum(vec(c) * m for c, m in zip(coefs, src.means))  # (n|1, P, d)
        cov = sum(mat(c) ** 2 * a for c, a in zip(coefs, src.covs)) + mat(gamma) ** 2 * eye
        resid = x[:, None, :] - (mean if mean.ndim == 3 else mean[None])
        sol = _solve(cov, resid)  # V^{-1} (x - mu), (n, P, d)
        _, logdet = _slogdet(cov)
        log_norm = -0.5 * _sum_last(resid * sol) - 0.5 * logdet - 0.5 * self.dim * math.log(2 * math.pi)
        log_joint = src.log_weights[None, :] + log_norm
        return {
            "t": t, "src": src, "coefs": coefs, "d_coefs": d_coefs, "gamma": gamma, "gdg": gdg,
            "sol": sol, "log_joint": log_joint, "vec": vec, "mat": mat, "eye": eye,
        }  # fmt: skip

    def log_prob(self, x: Array, t: Any) -> Array:
        """``log rho_t(x)``, shape ``(n,)``."""
        return logsumexp(self._terms(x, t)["log_joint"], axis=1)

    def score(self, x: Array, t: Any) -> Array:
        """``s(t, x) = grad log rho_t(x)``, shape ``(n, d)``."""
        k = self._terms(x, t)
        return -_sum_pairs(softmax(k["log_joint"], axis=1), k["sol"])

    def denoiser(self, x: Array, t: Any) -> Array:
        """``eta(t, x) = E[z | x_t = x] = -gamma(t) s(t, x)``, shape ``(n, d)``."""
        k = self._terms(x, t)
        gamma = k["gamma"] if is_scalar_time(k["gamma"]) else k["gamma"][:, None]
        return gamma * _sum_pairs(softmax(k["log_joint"], axis=1), k["sol"])

    def velocity(self, x: Array, t: Any) -> Array:
        """``b(t, x) = E[c_0' x_0 + c_1' x_1 + gamma' z | x_t = x]``, shape ``(n, d)``."""
        k = self._terms(x, t)
        src, vec, mat = k["src"], k["vec"], k["mat"]
        drift_mean = sum(vec(d) * m for d, m in zip(k["d_coefs"], src.means))
        cross = sum(mat(c) * mat(d) * a for c, d, a in zip(k["coefs"], k["d_coefs"], src.covs))
        cross = cross + mat(k["gdg"]) * k["eye"]
        per_pair = (drift_mean if drift_mean.ndim == 3 else drift_mean[None]) + _matvec(cross, k["sol"])
        return _sum_pairs(softmax(k["log_joint"], axis=1), per_pair)

    def marginal(self, t: float) -> GaussianMixture:
        """The exact law of ``x_t`` (a mixture over source components), for a float ``t``."""
        t = check_time(t)
        if not is_scalar_time(t):
            raise ValueError(f"marginal needs a scalar t; got an array of shape {tuple(t.shape)}")
        src = self._sources
        coefs, _, gamma, _ = self._coefficients(t)
        means = sum(c * m for c, m in zip(coefs, src.means))
        covs = sum(c**2 * a for c, a in zip(coefs, src.covs)) + gamma**2 * np.eye(self.dim)
        return GaussianMixture(np.exp(src.log_weights), means, covs)


def _shaper(t: Any):
    """Functions shaping a coefficient for ``(n, P, d)`` vectors and ``(n, P, d, d)`` matrices."""
    if is_scalar_time(t):
        return (lambda c: c), (lambda c: c)
    return (lambda c: c[:, None, None]), (lambda c: c[:, None, None, None])


def _solve(cov: Array, resid: Array) -> Array:
    xp = namespace(resid)
    if cov.ndim == 3:  # one time for all points: factor each of the P matrices once, the n points as right-hand sides
        sol = xp.linalg.solve(cov, xp.permute_dims(resid, (1, 2, 0)))  # (P, d, d) \ (P, d, n)
        return xp.permute_dims(sol, (2, 0, 1))
    return xp.linalg.solve(cov, resid[..., None])[..., 0]


def _slogdet(cov: Array) -> tuple[Array, Array]:
    xp = namespace(cov)
    sign, logdet = xp.linalg.slogdet(cov)
    return sign, logdet if logdet.ndim == 2 else logdet[None]


def _matvec(mat: Array, vec: Array) -> Array:
    m = mat if mat.ndim == 4 else mat[None]
    return (m @ vec[..., None])[..., 0]


def _sum_last(a: Array) -> Array:
    return namespace(a).sum(a, axis=-1)


def _sum_pairs(resp: Array, per_pair: Array) -> Array:
    return namespace(per_pair).sum(resp[:, :, None] * per_pair, axis=1)


def interpolant_fields(interpolant: AbstractInterpolant, rho0: Any, rho1: Any) -> InterpolantFields:
    """The exact fields of ``interpolant`` between Gaussian(-mixture) laws ``rho0`` (t = 0) and ``rho1`` (t = 1).

    Returns an :class:`InterpolantFields` with ``.velocity``, ``.score``, ``.denoiser``,
    ``.log_prob`` and ``.marginal(t)``.  ``rho0`` and ``rho1`` must have the same dimension;
    for the mirror interpolant they must be the same law.
    """
    return InterpolantFields(interpolant, rho0, rho1)
