"""Exact marginals, scores, log densities and denoisers of Gaussian(-mixture) data under a process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from diffcore._array import broadcast_time, is_scalar_time
from diffcore._validation import check_choice, check_points, check_time, check_time_for
from diffcore.distributions._components import Components, component_terms, logsumexp, softmax
from diffcore.distributions._mixture import AbstractMixtureLaw, Gaussian, GaussianMixture
from diffcore.processes import AbstractProcess

__all__ = ["ComponentTerms", "ExactField", "exact_denoiser", "exact_log_prob", "exact_score", "marginal"]

Array = Any
Data = Gaussian | GaussianMixture


def _check(process: Any, data: Any) -> GaussianMixture:
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    if not isinstance(data, AbstractMixtureLaw):
        raise TypeError(f"data must be a Gaussian or a GaussianMixture; got {type(data).__name__}")
    mixture = data.as_mixture()
    shift = process.shift
    if shift is not None and shift.ndim and tuple(shift.shape) != (mixture.dim,):
        raise ValueError(
            f"the process's mean shift mu must be a scalar or have shape ({mixture.dim},) like the data; "
            f"got shape {tuple(shift.shape)}"
        )
    return mixture


def _offset(process: AbstractProcess, alpha: Any, like: Array) -> Array:
    """``(1 - alpha(t)) mu`` shaped like ``like`` (n, d): the mean the shift adds to ``alpha x_0 + sigma eps``."""
    return broadcast_time(1 - alpha, like) * process.shift_like(like)


def marginal(process: AbstractProcess, data: Data, t: float) -> Data:
    r"""The exact law of ``x_t = alpha(t) x_0 + sigma(t) eps`` for ``x_0 ~ data``.

    A Gaussian ``N(m, C)`` goes to ``N(alpha m, alpha^2 C + sigma^2 I)``; a mixture goes to the
    mixture of the pushed components with the same weights (Song et al. 2021, app. B).
    For a process with a mean :attr:`~diffcore.processes.AbstractProcess.shift` ``mu``
    (mean reverting), ``x_t = mu + alpha (x_0 - mu) + sigma eps``: every mean moves by
    ``(1 - alpha) mu`` (Luo et al. 2023, eq. 5).
    ``t`` is a float in ``[0, 1]``; for per-sample times use :func:`exact_score` and friends.
    """
    mixture = _check(process, data)
    if not isinstance(data, Gaussian):
        data = mixture  # a mixture with more structure (class labels): its law is the mixture's
    t = check_time(t)
    if not is_scalar_time(t):
        raise ValueError(f"marginal needs a scalar t; got an array of shape {tuple(t.shape)}")
    alpha = process.alpha(t)
    law = data.affine(alpha, process.sigma(t))
    if process.shift is None:
        return law
    if isinstance(law, Gaussian):
        return Gaussian(law.mean + (1 - alpha) * process.shift_like(law.mean[None, :]), law.cov)
    return GaussianMixture(law.weights, law.means + (1 - alpha) * process.shift_like(law.means), law.covs)


_KINDS = ("score", "denoiser", "log_prob")


class ComponentTerms(NamedTuple):
    """Per-component terms of the pushed mixture at ``(x, t)`` (see :mod:`._components`).

    ``log_joint`` ``(n, K)``: ``log w_k + log N(x; alpha m_k, V_k)``; ``proj`` ``(n, K, d)``:
    ``U_k^T (x - alpha m_k)``; ``var`` ``(n or 1, K, d)``: ``alpha^2 lam_k + sigma^2``;
    ``comps`` the eigen-factored components on ``x``'s backend; ``alpha`` and ``sigma2``
    floats or ``(n,)`` arrays.  For a shifted process ``x`` is taken minus ``(1 - alpha) mu``.
    """

    log_joint: Any
    proj: Any
    var: Any
    comps: Components
    alpha: Any
    sigma2: Any


@dataclass(frozen=True, eq=False)
class ExactField:
    r"""A closed-form field ``(x, t) -> array`` of the marginals of Gaussian-mixture data.

    ``kind`` is ``"score"`` (``grad log p_t(x)``, shape ``(n, d)``), ``"denoiser"``
    (``E[x_0 | x_t = x]``, shape ``(n, d)``) or ``"log_prob"`` (``log p_t(x)``, shape ``(n,)``).
    ``x`` is ``(n, d)``; ``t`` a float or an ``(n,)`` array.  With responsibilities
    ``r_k(x)`` of the pushed components and ``V_k = alpha^2 C_k + sigma^2 I``:

    .. math:: \nabla \log p_t(x) = -\sum_k r_k(x) V_k^{-1}(x - \alpha m_k), \qquad
              E[x_0 | x_t = x] = \sum_k r_k(x) \big(m_k + \alpha C_k V_k^{-1}(x - \alpha m_k)\big),

    which satisfy Tweedie's formula ``score = (alpha E[x_0|x] - x) / sigma^2``
    (Efron 2011; Kadkhodaie and Simoncelli 2021).  For a process with a mean shift ``mu``
    every formula is evaluated at ``x - (1 - alpha) mu`` (then the denoiser is still
    ``E[x_0 | x_t = x]`` and Tweedie reads ``score = (alpha E[x_0|x] + (1 - alpha) mu - x) / sigma^2``).
    Results follow ``x``'s array type, dtype and device.
    """

    process: AbstractProcess
    data: Data
    kind: str = "score"

    def __post_init__(self) -> None:
        _check(self.process, self.data)
        check_choice("kind", self.kind, _KINDS)

    def terms(self, x: Array, t: Any) -> ComponentTerms:
        """The per-component quantities at ``(x, t)`` from which every field is assembled.

        Shared by the score, denoiser and log density here and by the conditional fields of
        :mod:`diffcore.conditional` (class-restricted responsibilities, likelihoods of a
        measurement); see :class:`ComponentTerms`.
        """
        mixture = _check(self.process, self.data)
        x = check_points(x, mixture.dim)
        t = check_time_for(t, x)
        a, s = self.process.alpha(t), self.process.sigma(t)
        if self.process.shift is not None:
            x = x - _offset(self.process, a, x)
        comps = mixture._components.like(x)
        log_joint, proj, var = component_terms(x, comps, a, s**2)
        return ComponentTerms(log_joint, proj, var, comps, a, s**2)

    def __call__(self, x: Array, t: Any) -> Array:
        log_joint, proj, var, comps, a, _ = self.terms(x, t)
        if self.kind == "log_prob":
            return logsumexp(log_joint, axis=1)
        resp = softmax(log_joint, axis=1)
        if self.kind == "score":
            return comps.score_from_terms(resp, proj, var)
        return comps.mean_from_terms(resp, proj, var, a)


def exact_score(process: AbstractProcess, data: Data) -> ExactField:
    """The exact score ``grad_x log p_t(x)`` of ``data`` under ``process``; see :class:`ExactField`."""
    return ExactField(process, data, "score")


def exact_denoiser(process: AbstractProcess, data: Data) -> ExactField:
    """The exact posterior mean ``E[x_0 | x_t = x]`` (Tweedie denoiser); see :class:`ExactField`."""
    return ExactField(process, data, "denoiser")


def exact_log_prob(process: AbstractProcess, data: Data) -> ExactField:
    """The exact marginal log density ``log p_t(x)``; see :class:`ExactField`."""
    return ExactField(process, data, "log_prob")
