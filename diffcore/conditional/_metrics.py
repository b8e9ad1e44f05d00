"""How far a posterior sampler's output is from the exact posterior: errors with standard errors.

Given ``n`` samples from some method and the exact posterior of the laboratory (a Gaussian
mixture from :func:`~diffcore.conditional.posterior`, or a :class:`GridLaw` from
:func:`~diffcore.conditional.quadrature_posterior`), :func:`posterior_report` measures four
things, each beside the size it would have if the samples were exact (book chapter "Inverse
problems", section "Measuring a posterior sampler"):

- the posterior-mean error ``|mean_i x_i - E[x | y]|``;
- the component-weight error: the total variation between the exact posterior weights ``w'_k``
  and their unbiased estimate ``mean_i r_k(x_i)`` (``r_k`` the exact responsibilities);
- ``W2`` to as many fresh exact samples, beside the finite-sample floor;
- the coverage of the exact highest-density credible regions, whose exact value is the level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import as_array, resolve_rng
from diffcore._validation import check_array, check_steps
from diffcore.conditional._grid import GridLaw
from diffcore.conditional._labelled import LabelledMixture
from diffcore.distributions import Gaussian, GaussianMixture
from diffcore.metrics import FloorEstimate, w2, w2_floor

__all__ = ["PosteriorReference", "PosteriorReport", "posterior_reference", "posterior_report"]

Array = Any
_HOST = np.zeros(1)


def _host_mixture(law: Any, name: str) -> GaussianMixture:
    """A NumPy float64 copy of a Gaussian / mixture / labelled mixture."""
    if isinstance(law, LabelledMixture):
        law = law.mixture
    elif isinstance(law, Gaussian):
        law = law.as_mixture()
    if not isinstance(law, GaussianMixture):
        raise TypeError(
            f"{name} must be a Gaussian, GaussianMixture, LabelledMixture or GridLaw; got {type(law).__name__}"
        )
    return GaussianMixture(*(np.asarray(as_array(a, _HOST)) for a in (law.weights, law.means, law.covs)))


def _levels(levels: Any) -> tuple[float, ...]:
    values = tuple(float(q) for q in np.atleast_1d(np.asarray(levels, dtype=np.float64)))
    if not values or not all(0.0 < q < 1.0 for q in values):
        raise ValueError(f"levels must be a non-empty list of credible levels in (0, 1); got {levels!r}")
    return values


@dataclass(frozen=True, eq=False)
class PosteriorReference:
    r"""What :func:`posterior_report` needs of the exact posterior, computed once and reused.

    Attributes
    ----------
    law : the exact posterior on the host (a NumPy :class:`~diffcore.GaussianMixture` or a :class:`GridLaw`).
    mean : ``E[x | y]``, shape ``(d,)``.
    components : the mixture whose responsibilities ``r_k(x)`` define the components (the posterior
        itself, or the prior for a :class:`GridLaw`; ``p(k | x, y) = p(k | x)`` since ``y`` depends
        on ``k`` only through ``x``), or ``None`` (no component-weight error).
    weights : the exact posterior weights ``w'_k = E[r_k(x) | y]``, shape ``(K,)``, or ``None``.
    spread : ``sqrt(tr Cov[x | y])``, the root-mean-square distance of an exact draw from the mean.
    weight_sd : the exact standard deviations ``sd[r_k(x) | y]``, shape ``(K,)``, or ``None``.
    levels : the credible levels ``q``.
    log_thresholds : ``log c_q`` with ``P(p(x | y) >= c_q) = q`` (the HPD region of level ``q``).
    threshold_count : the size of the exact sample the thresholds are quantiles of (``0`` for a
        grid, whose thresholds are exact up to quadrature); it enters the coverage standard error.
    floor : the finite-sample floor of ``W2`` at ``n`` samples (:func:`~diffcore.w2_floor`), or ``None``.
    n : the sample size the floor is for, or ``None``.
    """

    law: GaussianMixture | GridLaw
    mean: np.ndarray
    components: GaussianMixture | None
    weights: np.ndarray | None
    spread: float
    weight_sd: np.ndarray | None
    levels: tuple[float, ...]
    log_thresholds: tuple[float, ...]
    threshold_count: int
    floor: FloorEstimate | None
    n: int | None

    @property
    def dim(self) -> int:
        """Dimension ``d``."""
        return int(self.mean.shape[0])

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """The exact ``log p(x | y)`` at NumPy points ``(n, d)``."""
        return np.asarray(self.law.log_prob(x))

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` exact posterior draws, NumPy ``(n, d)``."""
        return np.asarray(self.law.sample(n, rng))


def posterior_reference(
    exact: Any,
    *,
    prior: Any = None,
    n: int | None = None,
    levels: Any = (0.5, 0.9),
    n_threshold: int = 20_000,
    floor_repeats: int = 5,
    rng: Any = None,
) -> PosteriorReference:
    r"""Precompute the exact side of :func:`posterior_report`: mean, weights, HPD thresholds, W2 floor.

    Parameters
    ----------
    exact : the exact posterior: a :class:`~diffcore.Gaussian`, :class:`~diffcore.GaussianMixture`
        or :class:`LabelledMixture` (from :func:`posterior`), or a :class:`GridLaw` (from
        :func:`quadrature_posterior`).
    prior : for a :class:`GridLaw`, the prior mixture whose components the weights refer to
        (without it the component-weight error is not computed); ignored for a mixture.
    n : the sample size of the methods to be compared; with it the ``W2`` floor is estimated here
        (``floor_repeats`` pairs of exact ``n``-samples), else in every report.
    levels : credible levels ``q`` in (0, 1).
    n_threshold : for a mixture, the size of the exact sample whose ``1 - q`` quantiles of
        ``log p(x | y)`` give the HPD thresholds ``log c_q``; a grid law uses its cells instead
        (the smallest set of cells holding mass ``q``).
    """
    levels = _levels(levels)
    gen = resolve_rng(rng)
    if isinstance(exact, GridLaw):
        law: GaussianMixture | GridLaw = exact
        components = None if prior is None else _host_mixture(prior, "prior")
        if components is not None and components.dim != exact.dim:
            raise ValueError(f"prior must have dimension {exact.dim} like the grid law; got {components.dim}")
        mean, spread = np.asarray(exact.mean), math.sqrt(float(np.trace(exact.cov)))
        weights = weight_sd = None
        if components is not None:
            weights = np.asarray(exact.expectation(components.responsibilities))
            second = np.asarray(exact.expectation(lambda p: components.responsibilities(p) ** 2))
            weight_sd = np.sqrt(np.clip(second - weights**2, 0.0, None))
        order = np.argsort(exact.probs)[::-1]
        mass = np.cumsum(exact.probs[order])
        cells = [order[min(int(np.searchsorted(mass, q)), len(order) - 1)] for q in levels]
        log_thresholds = tuple(float(v) for v in exact.log_prob(exact.points[cells]))
        count = 0
    else:
        law = _host_mixture(exact, "exact")
        components = law if law.n_components > 1 else None
        mean, spread = np.asarray(law.mean), math.sqrt(float(np.trace(law.cov)))
        count = check_steps(n_threshold, "n_threshold")
        if count < 2:
            raise ValueError(f"n_threshold must be >= 2 (the weights' spread is a sample sd); got {count}")
        draws = np.asarray(law.sample(count, gen))
        weights = weight_sd = None
        if components is not None:  # the weights exactly; their spread from the draws
            weights = np.asarray(law.weights)
            weight_sd = np.asarray(components.responsibilities(draws)).std(axis=0, ddof=1)
        logp = np.asarray(law.log_prob(draws))
        log_thresholds = tuple(float(np.quantile(logp, 1.0 - q)) for q in levels)
    floor = None
    if n is not None:
        n = check_steps(n, "n")
        floor = w2_floor(law, n, repeats=check_steps(floor_repeats, "floor_repeats"), rng=gen)
    return PosteriorReference(
        law, mean, components, weights, spread, weight_sd, levels, log_thresholds, count, floor, n
    )


@dataclass(frozen=True, eq=False)
class PosteriorReport:
    r"""The distance of ``n`` samples from the exact posterior, each error with its standard error.

    Attributes
    ----------
    n : the number of samples.
    mean_error, mean_error_se : ``|x̄ - E[x | y]|`` and ``sqrt(tr Cov[x | y] / n)``, the RMS size of
        that error for ``n`` independent exact draws.  All standard errors are those of exact
        samples (the null hypothesis), so that a method whose samples collapse cannot hide behind
        its own small spread; for resampled particles, which repeat points, they are optimistic.
    weights, exact_weights : ``mean_i r_k(x_i)`` and ``w'_k``, shape ``(K,)`` (``None`` without components).
    weight_error, weight_error_se : ``TV = (1/2) sum_k |mean_i r_k(x_i) - w'_k|`` and
        ``(1/2) sum_k se_k`` with ``se_k = sd[r_k(x) | y] / sqrt(n)`` (for exact samples the TV is
        on average at most ``sqrt(2/pi) ≈ 0.8`` of it, and rarely above 3 times it).
    w2 : ``W2`` to ``n`` fresh exact draws (:func:`~diffcore.w2`); ``w2_floor``, ``w2_floor_sd``:
        the mean and the spread (one draw's standard deviation) of the same distance between two
        exact ``n``-samples.
    levels, coverage, coverage_se : for each level ``q`` the fraction of samples inside the exact
        HPD region ``{p(x | y) >= c_q}`` (exact value ``q``) and the binomial standard error of
        that fraction, ``sqrt(q (1 - q) (1/n + 1/n_threshold))``, at the exact ``q``.
    """

    n: int
    mean_error: float
    mean_error_se: float
    weights: np.ndarray | None
    exact_weights: np.ndarray | None
    weight_error: float | None
    weight_error_se: float | None
    w2: float | None
    w2_floor: float | None
    w2_floor_sd: float | None
    levels: tuple[float, ...]
    coverage: tuple[float, ...]
    coverage_se: tuple[float, ...]

    @property
    def mean_z(self) -> float:
        """``mean_error / mean_error_se``."""
        return self.mean_error / self.mean_error_se if self.mean_error_se > 0 else math.inf

    @property
    def weight_z(self) -> float | None:
        """``weight_error / weight_error_se`` (``None`` without components)."""
        if self.weight_error is None or self.weight_error_se is None:
            return None
        return self.weight_error / self.weight_error_se if self.weight_error_se > 0 else math.inf

    @property
    def coverage_z(self) -> tuple[float, ...]:
        """``(coverage - q) / coverage_se`` per level (signed: negative means over-confident)."""
        return tuple((c - q) / s for c, q, s in zip(self.coverage, self.levels, self.coverage_se, strict=True))

    def consistent(self, k: float = 3.0) -> bool:
        """Whether every statistic is within ``k`` of its standard error (W2: of the floor's spread)."""
        ok = self.mean_z <= k and all(abs(z) <= k for z in self.coverage_z)
        ok = ok and (self.weight_z is None or self.weight_z <= k)
        if self.w2 is not None and self.w2_floor is not None and self.w2_floor_sd is not None:
            ok = ok and self.w2 <= self.w2_floor + k * self.w2_floor_sd
        return bool(ok)


def posterior_report(
    samples: Array,
    exact: Any,
    *,
    prior: Any = None,
    levels: Any = None,
    compute_w2: bool = True,
    rng: Any = None,
) -> PosteriorReport:
    r"""Measure ``samples`` ``(n, d)`` of a posterior sampler against the exact posterior.

    Posterior-mean error, component-weight error (TV of ``mean_i r_k(x_i)`` against ``w'_k``, an
    estimate of the weights that is unbiased for exact samples and has a smaller variance than
    counting labels), ``W2`` with its finite-sample floor, and the coverage of the exact
    highest-density regions ``{x : p(x | y) >= c_q}`` of mass ``q`` — all as described in
    :class:`PosteriorReport` (book chapter "Inverse problems", eq. ``inverse-coverage``).

    Parameters
    ----------
    samples : ``(n, d)``, NumPy or torch (any device; the statistics are computed on the host), finite.
    exact : a :class:`PosteriorReference` (from :func:`posterior_reference`, to reuse the thresholds
        and the floor across methods), or an exact posterior accepted by :func:`posterior_reference`.
    prior : for a :class:`GridLaw` ``exact``, the prior whose components the weights refer to.
    levels : credible levels; default ``(0.5, 0.9)`` (with a reference: its levels, and only those).
    compute_w2 : whether to compute ``W2`` (an exact transport problem, ~0.1 s at n = 1000).
    rng : for the fresh exact draws of ``W2`` (and of the reference when one is built here).

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import Gaussian
    >>> law = Gaussian(np.zeros(1), np.eye(1))
    >>> report = posterior_report(law.sample(400, rng=0), law, rng=1)
    >>> report.consistent(), report.levels
    (True, (0.5, 0.9))
    """
    gen = resolve_rng(rng)
    if isinstance(exact, PosteriorReference):
        ref = exact
        if prior is not None:
            raise ValueError("prior belongs to posterior_reference; the reference already fixes the components")
        if levels is not None and _levels(levels) != ref.levels:
            raise ValueError(f"levels must be the reference's {ref.levels} (or None); got {levels!r}")
    else:
        ref = posterior_reference(exact, prior=prior, levels=(0.5, 0.9) if levels is None else levels, rng=gen)
    x = np.asarray(as_array(check_array("samples", samples, ndim=2, dim=ref.dim), _HOST))
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"samples must hold at least 2 points (for standard errors); got {n}")
    if compute_w2 and ref.floor is not None and ref.n != n:
        raise ValueError(f"the reference's W2 floor is for n = {ref.n} samples; got {n}")
    mean_error = float(np.linalg.norm(x.mean(axis=0) - ref.mean))
    mean_se = ref.spread / math.sqrt(n)
    weights = weight_error = weight_se = None
    if ref.components is not None and ref.weights is not None and ref.weight_sd is not None:
        weights = np.asarray(ref.components.responsibilities(x)).mean(axis=0)
        weight_error = 0.5 * float(np.abs(weights - ref.weights).sum())
        weight_se = 0.5 * float(ref.weight_sd.sum()) / math.sqrt(n)
    dist = floor = floor_sd = None
    if compute_w2:
        dist = float(w2(x, ref.sample(n, gen)))
        est = ref.floor if ref.floor is not None else w2_floor(ref.law, n, rng=gen)
        floor, floor_sd = est.mean, float(np.std(est.values, ddof=1)) if len(est.values) > 1 else math.nan
    logp = ref.log_prob(x)
    coverage = tuple(float(np.mean(logp >= c)) for c in ref.log_thresholds)
    extra = 1.0 / ref.threshold_count if ref.threshold_count else 0.0
    coverage_se = tuple(math.sqrt(q * (1.0 - q) * (1.0 / n + extra)) for q in ref.levels)
    return PosteriorReport(
        n, mean_error, mean_se, weights, ref.weights, weight_error, weight_se, dist, floor, floor_sd,
        ref.levels, coverage, coverage_se,
    )  # fmt: skip
