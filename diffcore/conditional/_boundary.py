r"""Optimal boundary conditions for conditional diffusion ODEs: one shared starting point for every ``y``.

A conditional probability-flow ODE run from time ``t`` (noise) to time ``s`` (data) is a
deterministic map ``x_s = Phi(z; y)`` of its starting point ``z`` and the observation ``y``.
Ma et al. (2024, "Solving Diffusion ODEs with Optimal Boundary Conditions for Better Image
Super-Resolution", ICLR) choose *one* starting point for all observations, the minimiser of
the expected error over the joint law of data and observations,

.. math:: z^\star = \arg\min_z\; \mathbb{E}_{(x_0, y)} \|\Phi(z; y) - x_0\|^2,

argued to exist when ``Phi`` is close to affine in ``z``, and found by a search: draw ``K``
candidates ``z_k ~ N(0, I)``, score each on a reference set of pairs ``(x_0^i, y^i)``, keep the
best and reuse it for every new ``y``.

In the laboratory (Gaussian prior, linear-Gaussian measurement) the exact map *is* affine,
``Phi(z; y) = A z + B y + c``, and the minimiser is least squares (book section "Optimal
boundary conditions" of the chapter "Better steps, better starts, cheaper networks", eq. ``refinements-optimum``):

.. math:: z^\star = (A^\top A)^{+} A^\top\, \mathbb{E}[x_0 - B y - c],

which maps every ``y`` to the posterior mean ``E[x_0 | y]`` when the process reaches its prior
exactly (``alpha(t) = 0``).  :func:`conditional_flow_map` builds ``Phi`` (closed form or the
exact ODE reference for mixtures), :func:`optimal_boundary` the closed-form optimum, and
:func:`boundary_search` the paper's search for any map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array, normal, resolve_rng
from diffcore._validation import (
    Model,
    check_array,
    check_model_output,
    check_positive,
    check_same_namespace,
    check_scalar_time,
    check_steps,
)
from diffcore.conditional._measurements import AbstractMeasurement, check_observation
from diffcore.conditional._posterior import Prior, posterior, prior_mixture
from diffcore.distributions import Gaussian
from diffcore.flowmaps import exact_flow_map
from diffcore.processes import AbstractProcess

__all__ = [
    "BoundaryOptimum",
    "BoundarySearch",
    "ConditionalFlowMap",
    "boundary_search",
    "conditional_flow_map",
    "optimal_boundary",
]

Array = Any


def _host(x: Array) -> np.ndarray:
    """A float64 NumPy copy of an array (torch tensors come to the host)."""
    return np.asarray(as_array(x, np.zeros(1)), dtype=np.float64)


def _linear_measurement(measurement: Any, dim: int, who: str) -> AbstractMeasurement:
    if not isinstance(measurement, AbstractMeasurement):
        raise TypeError(f"measurement must be an AbstractMeasurement; got {type(measurement).__name__}")
    if not measurement.linear_gaussian:
        raise ValueError(
            f"{who} needs a linear-Gaussian measurement (the exact posterior); got {type(measurement).__name__}"
        )
    if measurement.dim != dim:
        raise ValueError(f"H must have shape (m, d) with d = {dim} (the prior's dimension); got {measurement.dim}")
    return measurement


@dataclass(frozen=True, eq=False)
class ConditionalFlowMap:
    r"""``Phi(z; y)``: the exact conditional probability-flow map from time ``t`` to time ``s``.

    The ODE is that of the exact posterior ``p(x_0 | y)`` (Bayes' rule,
    :func:`~diffcore.conditional.posterior`) under ``process``, i.e. the map of
    :func:`~diffcore.flowmaps.exact_flow_map` for the data law ``p(x_0 | y)``.  Build it with
    :func:`conditional_flow_map`; call it on starting points ``z (k, d)`` and one observation
    ``y (m,)``; it returns ``(k, d)``.

    For a Gaussian prior ``N(m, C)`` the posterior is ``N(m(y), C')`` with ``C'`` independent of
    ``y`` and ``m(y) = m + K (y - H m)`` affine in ``y``, so the map is affine in both arguments,

    .. math:: \Phi(z; y) = A z + B y + c,\qquad A = C_s^{1/2} C_t^{-1/2},

    with ``C_u = alpha_u^2 C' + sigma_u^2 I`` (``affine = True``; ``matrix`` ``A (d, d)``,
    ``gain`` ``B (d, m)``, ``shift`` ``c (d,)``).  Otherwise (mixtures, or ``reference=True``)
    each call integrates the exact ODE adaptively to ``rtol``/``atol``.
    """

    process: AbstractProcess
    prior: Any
    measurement: AbstractMeasurement
    t: float
    s: float
    rtol: float
    atol: float
    affine: bool
    matrix: np.ndarray | None
    gain: np.ndarray | None
    shift: np.ndarray | None

    @property
    def dim(self) -> int:
        """Dimension ``d`` of ``z`` and ``x_0``."""
        return int(self.measurement.dim)

    @property
    def n_obs(self) -> int:
        """Dimension ``m`` of ``y``."""
        return int(self.measurement.n_obs)

    def __call__(self, z: Any, y: Any) -> Array:
        """``Phi(z; y)`` for starting points ``z (k, d)`` and one observation ``y (m,)``; returns ``(k, d)``."""
        z = check_array("z", z, ndim=2, dim=self.dim)
        y = check_observation(self.measurement, y)
        check_same_namespace(z=z, y=y)
        if self.affine:
            return z @ as_array(self.matrix.T, z) + as_array(self.offset(y), z)[None, :]
        post = prior_mixture(posterior(self.prior, self.measurement, _host(y)))
        flow = exact_flow_map(self.process, post, self.t, self.s, rtol=self.rtol, atol=self.atol, reference=True)
        return flow(z)

    def offset(self, y: Any) -> np.ndarray:
        """``b(y) = B y + c`` (NumPy) for ``y (m,)`` or a batch ``(n, m)``; affine maps only."""
        if not self.affine:
            raise ValueError(
                "offset is the closed form of an affine map (Gaussian prior); this map is the ODE reference"
            )
        y = _host(check_array("y", y, min_ndim=1))
        if y.shape[-1:] != (self.n_obs,) or y.ndim > 2:
            raise ValueError(f"y must have shape (m,) or (n, m) with m = {self.n_obs}; got {y.shape}")
        return y @ self.gain.T + self.shift

    def expected_mse(self, z: Any, law: tuple[Prior, AbstractMeasurement] | None = None) -> float:
        r"""``E ||A z + B y + c - x_0||^2`` in closed form, for ``(x_0, y)`` from ``law`` (affine maps only).

        ``law = (prior, measurement)``: ``x_0 ~ prior`` (a Gaussian or a mixture: only its mean
        ``mu`` and covariance ``Sigma`` enter), ``y = H x_0 + s n``; default this map's own.
        With ``r = mu - B H mu - c``,

        .. math:: \mathbb{E}\|A z + B y + c - x_0\|^2 = \|A z - r\|^2
                  + \operatorname{tr}\big((I - BH)\Sigma(I - BH)^\top\big) + s^2 \operatorname{tr}(B B^\top).
        """
        r, spread = self._moments(law)
        z = _host(check_array("z", z, ndim=1))
        if z.shape != (self.dim,):
            raise ValueError(f"z must have shape (d,) = ({self.dim},); got {z.shape}")
        return float(np.sum((self.matrix @ z - r) ** 2) + spread)

    def _moments(self, law: Any) -> tuple[np.ndarray, float]:
        """``(r, T)``: the mean residual ``E[x_0 - B y - c]`` and the z-free part of the MSE."""
        if not self.affine:
            raise ValueError(
                "the closed-form optimum needs an affine map (a Gaussian prior, reference=False); "
                "use boundary_search for this map"
            )
        prior, measurement = (self.prior, self.measurement) if law is None else _law(law, self)
        mix = prior_mixture(prior)
        mu, cov = _host(mix.mean), _host(mix.cov)
        H, s2 = _host(measurement.H), measurement.noise_std**2
        resid = np.eye(self.dim) - self.gain @ H  # x_0 - B y - c = (I - B H) x_0 - B s n - c
        spread = float(np.trace(resid @ cov @ resid.T) + s2 * np.sum(self.gain**2))
        return resid @ mu - self.shift, spread


def _law(law: Any, phi: ConditionalFlowMap) -> tuple[Any, AbstractMeasurement]:
    if not (isinstance(law, tuple) and len(law) == 2):
        raise TypeError(f"law must be a pair (prior, measurement); got {type(law).__name__}")
    prior, measurement = law
    mix = prior_mixture(prior)
    if mix.dim != phi.dim:
        raise ValueError(f"the prior of law must have dimension d = {phi.dim}; got {mix.dim}")
    measurement = _linear_measurement(measurement, phi.dim, "law")
    if measurement.n_obs != phi.n_obs:
        raise ValueError(f"the measurement of law must give y of size m = {phi.n_obs}; got {measurement.n_obs}")
    return prior, measurement


def conditional_flow_map(
    process: AbstractProcess,
    prior: Prior,
    measurement: AbstractMeasurement,
    *,
    t: float = 1.0,
    s: float = 0.0,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    reference: bool = False,
) -> ConditionalFlowMap:
    r"""The exact conditional ODE map ``Phi(z; y)`` from time ``t`` to time ``s < t``.

    ``Phi(., y)`` is the flow map of the probability-flow ODE (Song et al. 2021, eq. 13) whose
    data law is the exact posterior ``p(x_0 | y)``: started from ``z ~ p_t(. | y)`` it samples
    the posterior; started from one fixed ``z`` it is a deterministic estimator of ``x_0``.
    Affine in closed form for a Gaussian prior (see :class:`ConditionalFlowMap`), the adaptive
    exact reference otherwise.

    Parameters
    ----------
    process : an :class:`~diffcore.processes.AbstractProcess`.
    prior : a :class:`~diffcore.Gaussian`, :class:`~diffcore.GaussianMixture` or
        :class:`LabelledMixture` (the law of ``x_0``).
    measurement : a linear-Gaussian measurement ``y = H x_0 + s n``, ``H (m, d)``.
    t, s : start (noise) and end (data) times in ``[0, 1]``, ``s < t``.
    rtol, atol : tolerances of the ODE reference (unused by the closed form).
    reference : integrate the ODE even for a Gaussian prior (to check the closed form).

    Example
    -------
    >>> import numpy as np, diffcore as dc
    >>> from diffcore.conditional import LinearGaussianMeasurement
    >>> meas = LinearGaussianMeasurement(np.eye(1), 1.0)
    >>> phi = conditional_flow_map(dc.CosineVPSDE(end=1.0), dc.Gaussian(np.zeros(1), np.eye(1)), meas)
    >>> round(float(phi(np.zeros((1, 1)), np.ones(1))[0, 0]), 12)  # z = 0 -> the posterior mean
    0.5
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    mix = prior_mixture(prior)
    measurement = _linear_measurement(measurement, mix.dim, "conditional_flow_map")
    t, s = check_scalar_time(t, "t"), check_scalar_time(s, "s")
    if not s < t:
        raise ValueError(f"s must be < t (the map runs from noise at t to data at s); got t = {t}, s = {s}")
    rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
    if not isinstance(reference, bool):
        raise TypeError(f"reference must be a bool; got {type(reference).__name__}")
    if mix.n_components > 1 or reference:
        return ConditionalFlowMap(process, prior, measurement, t, s, rtol, atol, False, None, None, None)
    # Gaussian prior: Phi(z; y) = A z + b(m(y)) with b affine in the posterior mean m(y) = m + K (y - H m)
    d = mix.dim
    mean, H = _host(mix.mean), _host(measurement.H)
    post = posterior(Gaussian(mean, _host(mix.cov)), measurement, H @ mean)  # y = H m: m(y) = m
    cov_post = _host(post.cov)
    flows = [exact_flow_map(process, Gaussian(mean + e, cov_post), t, s) for e in np.vstack([np.zeros(d), np.eye(d)])]
    A, b0 = flows[0].matrix, flows[0].offset
    D = np.stack([f.offset - b0 for f in flows[1:]], axis=1)  # d b / d m(y): exact, b is affine in m(y)
    C = _host(mix.cov)
    S = H @ C @ H.T + measurement.noise_std**2 * np.eye(measurement.n_obs)
    K = np.linalg.solve(S, H @ C).T  # C H^T S^{-1}
    B = D @ K
    return ConditionalFlowMap(process, prior, measurement, t, s, rtol, atol, True, A, B, b0 - B @ (H @ mean))


@dataclass(frozen=True, eq=False)
class BoundaryOptimum:
    r"""The closed-form optimal boundary condition of an affine conditional map.

    Attributes
    ----------
    z : ``(d,)`` the minimiser ``z* = A^+ E[x_0 - B y - c]`` (minimum norm when ``A`` is singular).
    mse : the expected squared error ``E ||Phi(z*; y) - x_0||^2`` (under the law, or the mean over the pairs).
    random_mse : ``E_z E ||Phi(z; y) - x_0||^2`` for ``z ~ N(0, I)``: ``mse + tr(A^T A) + ||A z*||^2`` exactly.
    mmse : ``E tr Cov[x_0 | y]``, the error of the posterior mean (the floor of every estimator), for
        a Gaussian law; ``None`` for a mixture law or reference pairs.
    n_pairs : the number of reference pairs, ``None`` under a law.
    """

    z: np.ndarray
    mse: float
    random_mse: float
    mmse: float | None
    n_pairs: int | None


def optimal_boundary(
    phi: ConditionalFlowMap, *, pairs: tuple[Array, Array] | None = None, law: tuple[Prior, Any] | None = None
) -> BoundaryOptimum:
    r"""The starting point ``z*`` minimising ``E ||Phi(z; y) - x_0||^2`` for an affine map, by least squares.

    With ``Phi(z; y) = A z + b(y)``, ``b(y) = B y + c``, the objective is the quadratic
    ``||A z - r||^2 + T`` with ``r = E[x_0 - b(y)]``, so (book chapter ``refinements``,
    eq. ``refinements-optimum``; the affine case of Ma et al. 2024)

    .. math:: z^\star = (A^\top A)^{+} A^\top\, \mathbb{E}[x_0 - b(y)],\qquad
              \mathbb{E}_{z \sim N(0, I)} \mathrm{MSE}(z) = \mathrm{MSE}(z^\star)
              + \operatorname{tr}(A^\top A) + \|A z^\star\|^2 .

    For the exact map of a Gaussian prior, ``Phi(z*; y) = m(y) + alpha_t A (E m(y) - m(y))``
    with ``m(y) = E[x_0 | y]``: the posterior mean itself when ``alpha(t) = 0``, and then
    ``mse`` is the MMSE.

    Parameters
    ----------
    phi : an affine :class:`ConditionalFlowMap` (``phi.affine``).
    pairs : optional reference pairs ``(x0 (N, d), y (N, m))``, ``N >= 1``: the empirical
        expectation (what the paper's search optimises), solved exactly.
    law : optional ``(prior, measurement)``: the joint law of ``(x_0, y)`` to average over when
        it is not the map's own (a misspecified model); default ``phi``'s own prior and measurement.

    Returns a :class:`BoundaryOptimum`.
    """
    if not isinstance(phi, ConditionalFlowMap):
        raise TypeError(f"phi must be a ConditionalFlowMap (see conditional_flow_map); got {type(phi).__name__}")
    if pairs is not None and law is not None:
        raise ValueError("give pairs or law, not both")
    if pairs is None:
        r, spread = phi._moments(law)
        z, *_ = np.linalg.lstsq(phi.matrix, r, rcond=None)
        fit = float(np.sum((phi.matrix @ z - r) ** 2))
        prior, measurement = (phi.prior, phi.measurement) if law is None else _law(law, phi)
        mix = prior_mixture(prior)
        mmse = None
        if mix.n_components == 1:
            post = posterior(
                Gaussian(_host(mix.mean), _host(mix.cov)), measurement, _host(measurement.H) @ _host(mix.mean)
            )
            mmse = float(np.trace(_host(post.cov)))
        extra = float(np.sum(phi.matrix**2) + np.sum(r**2)) - fit  # tr(A^T A) + ||A z*||^2
        return BoundaryOptimum(z, fit + spread, fit + spread + extra, mmse, None)
    x0, y = _pairs(pairs, phi.dim, phi.n_obs)
    if not phi.affine:
        phi._moments(None)  # raises with the rule
    resid = x0 - phi.offset(y)  # r_i = x0_i - b(y_i), (N, d)
    rbar = resid.mean(axis=0)
    z, *_ = np.linalg.lstsq(phi.matrix, rbar, rcond=None)
    mse = float(np.mean(np.sum((phi.matrix @ z - resid) ** 2, axis=1)))
    random_mse = float(np.sum(phi.matrix**2) + np.mean(np.sum(resid**2, axis=1)))
    return BoundaryOptimum(z, mse, random_mse, None, int(x0.shape[0]))


def _pairs(pairs: Any, dim: int | None, n_obs: int | None) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(pairs, tuple) and len(pairs) == 2):
        raise TypeError(f"pairs must be a tuple (x0, y) of arrays; got {type(pairs).__name__}")
    return _check_pairs(*pairs, dim=dim, n_obs=n_obs, host=True)


def _check_pairs(x0: Any, y: Any, *, dim: int | None, n_obs: int | None, host: bool) -> tuple[Any, Any]:
    x0 = check_array("x0", x0, ndim=2, dim=dim)
    y = check_array("y", y, ndim=2, dim=n_obs)
    check_same_namespace(x0=x0, y=y)
    if x0.shape[0] < 1:
        raise ValueError("x0 must hold at least one reference pair (n >= 1); got 0")
    if y.shape[0] != x0.shape[0]:
        raise ValueError(f"y must hold one observation per row of x0 ({x0.shape[0]}); got {y.shape[0]}")
    return (_host(x0), _host(y)) if host else (x0, y)


@dataclass(frozen=True, eq=False)
class BoundarySearch:
    """The result of :func:`boundary_search`.

    Attributes
    ----------
    z : ``(d,)`` the best candidate (the array type of the candidates).
    index : its row in ``candidates``.
    candidates : ``(K, d)`` the starting points tried.
    table : ``(K, N)`` NumPy, ``loss(Phi(z_k; y_i), x0_i)`` for candidate ``k`` and pair ``i``.
    losses : ``(K,)`` the mean loss of each candidate over the pairs.
    stderr : ``(K,)`` its standard error (``std / sqrt(N)``; NaN for one pair).
    """

    z: Array
    index: int
    candidates: Array
    table: np.ndarray
    losses: np.ndarray = field(init=False)
    stderr: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = self.table.shape[1]
        object.__setattr__(self, "losses", self.table.mean(axis=1))
        sd = self.table.std(axis=1, ddof=1) if n > 1 else np.full(self.table.shape[0], math.nan)
        object.__setattr__(self, "stderr", sd / math.sqrt(n))


def _squared_error(x_hat: Array, x0: Array) -> Array:
    return ((x_hat - x0) ** 2).sum(axis=1) if isinstance(x_hat, np.ndarray) else ((x_hat - x0) ** 2).sum(dim=1)


def boundary_search(
    phi: Callable[[Array, Array], Array],
    x0: Array,
    y: Array,
    candidates: int | Array = 64,
    *,
    loss: Callable[[Array, Array], Array] | None = None,
    rng: Any = None,
) -> BoundarySearch:
    r"""The search of Ma et al. (2024): the best of ``K`` random starting points on a reference set.

    For candidates ``z_1 .. z_K`` (drawn ``N(0, I_d)``, or given) and reference pairs
    ``(x0_i, y_i)``, ``i = 1 .. N``, it tabulates ``L[k, i] = loss(Phi(z_k; y_i), x0_i)`` and
    returns the candidate with the smallest mean ``(1/N) sum_i L[k, i]`` — the empirical version
    of ``min_z E ||Phi(z; y) - x_0||^2``.  Any map works: an ODE sampler run with
    :func:`diffcore.sample`, an exact :class:`ConditionalFlowMap`, a network.  For an affine map
    with the squared error the search's excess over :func:`optimal_boundary` on the same pairs
    is the minimum of a quadratic over ``K`` Gaussian draws, which falls like ``K^{-2/d}``.

    Parameters
    ----------
    phi : callable ``(z (K, d), y (m,)) -> (K, d)``: the sampler for one observation from many
        starting points (called once per pair).
    x0 : ``(N, d)`` reference data, ``N >= 1``.  y : ``(N, m)`` their observations.
    candidates : an int ``K >= 1`` (drawn ``N(0, I)`` with ``rng``), or an array ``(K, d)``
        (e.g. ``process.prior_sample((K, d))`` for a prior other than ``N(0, I)``).
    loss : callable ``(x_hat (K, d), x0 (K, d)) -> (K,)``; default the squared error
        ``||x_hat - x0||^2`` (the paper's MSE, summed over coordinates).
    rng : ``None``, an int seed or a generator (for drawn candidates).

    Returns a :class:`BoundarySearch` (best ``z``, the ``(K, N)`` table, mean losses and their
    standard errors).
    """
    model = Model.of(phi, "phi")
    x0, y = _check_pairs(x0, y, dim=None, n_obs=None, host=False)
    d = x0.shape[1]
    if isinstance(candidates, (int, np.integer)) and not isinstance(candidates, bool):
        z = normal(resolve_rng(rng), (check_steps(candidates, "candidates"), d), x0)
    elif hasattr(candidates, "shape"):
        z = check_array("candidates", candidates, ndim=2, dim=d)
        check_same_namespace(x0=x0, candidates=z)
        if z.shape[0] < 1:
            raise ValueError("candidates must hold at least one starting point (K >= 1); got 0")
    else:
        raise TypeError(f"candidates must be an int K or an array (K, d); got {type(candidates).__name__}")
    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be callable (x_hat, x0) -> (K,); got {type(loss).__name__}")
    fn = _squared_error if loss is None else loss
    k = z.shape[0]
    table = np.empty((k, x0.shape[0]))
    for i in range(x0.shape[0]):
        out = model(z, y[i])
        x_ref = x0[i][None, :] + 0 * out
        values = check_model_output("loss", fn(out, x_ref), out, shape=(k,))
        row = _host(values)
        if not np.all(np.isfinite(row)):
            raise ValueError(f"the loss must be finite; got NaN or infinity at reference pair {i} (phi or loss)")
        table[:, i] = row
    best = int(np.argmin(table.mean(axis=1)))
    return BoundarySearch(z[best], best, z, table)
