"""The evaluation harness of posterior samplers (posterior_report) against its own null hypothesis.

Oracles: exact posterior samples (the mixture posterior of :func:`posterior`, and the grid law of
:func:`quadrature_posterior` for the 1-bit measurement) must give z-scores that behave like
standard errors say — over 40 independent sets of 400 draws, the mean of each |z| is near its
half-normal / Rayleigh value and each signed coverage z has mean ~0 and standard deviation ~1
(the tolerances are 4 standard errors of those averages over 40 sets) —; the HPD thresholds of a
Gaussian equal the chi-square closed form; and samplers that are wrong on purpose (shifted
samples, prior samples, a collapsed point estimate) are flagged by many standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import diffcore as dc
from diffcore.conditional import (
    LinearGaussianMeasurement,
    PosteriorReference,
    SignMeasurement,
    posterior,
    posterior_reference,
    posterior_report,
    quadrature_posterior,
)

PRIOR = dc.GaussianMixture(
    [0.3, 0.25, 0.45],
    [[-1.5, 0.5], [1.0, -1.0], [1.2, 1.4]],
    [[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]], [[0.45, 0.0], [0.0, 0.25]]],
)
# Observing x_1 = 0.2 leaves two components with comparable weights: a bimodal posterior.
POST = posterior(PRIOR, LinearGaussianMeasurement.inpainting(2, [1], noise_std=0.3), np.array([0.2]))
# One bit of x_0 + x_1: all three components keep weight (0.10, 0.20, 0.71).
GRID = quadrature_posterior(PRIOR, SignMeasurement([[1.0, 1.0]], 0.4), np.array([1.0]), resolution=241)
N, SETS = 400, 40
REF = posterior_reference(POST, rng=0)
GRID_REF = posterior_reference(GRID, prior=PRIOR, rng=0)


@pytest.mark.parametrize("name", ["mixture", "grid"])
def test_exact_samples_are_consistent_with_their_standard_errors(name):
    law, ref = (POST, REF) if name == "mixture" else (GRID, GRID_REF)
    assert min(ref.weights) > 0.05  # a genuinely multimodal posterior, so the weights are tested
    rng = np.random.default_rng(1)
    reports = [posterior_report(law.sample(N, rng), ref, compute_w2=False) for _ in range(SETS)]
    mean_z = np.array([r.mean_z for r in reports])
    weight_z = np.array([r.weight_z for r in reports])
    cov_z = np.array([r.coverage_z for r in reports])  # (SETS, levels)
    # |error| / se of a d = 2 Gaussian error with E|e|^2 = se^2 is Rayleigh: mean sqrt(pi) / 2, sd 0.46.
    assert abs(mean_z.mean() - math.sqrt(math.pi) / 2) < 4 * 0.46 / math.sqrt(SETS)
    # TV / se = sum_k |e_k| / sum_k se_k with E|e_k| = sqrt(2 / pi) se_k: mean 0.80 (sd of a set's ~0.6).
    assert abs(weight_z.mean() - math.sqrt(2 / math.pi)) < 4 * 0.6 / math.sqrt(SETS)
    assert np.all(np.abs(cov_z.mean(axis=0)) < 4 / math.sqrt(SETS))  # unbiased coverage ...
    assert np.all(np.abs(cov_z.std(axis=0) - 1) < 0.35)  # ... with the stated standard error
    assert sum(r.consistent(4.0) for r in reports) >= SETS - 1


def test_w2_of_exact_samples_is_at_the_floor_and_of_biased_ones_above():
    ref = posterior_reference(POST, n=N, floor_repeats=4, rng=2)
    assert ref.floor is not None and ref.n == N
    exact = posterior_report(POST.sample(N, rng=3), ref, rng=4)
    assert exact.w2 < exact.w2_floor + 4 * exact.w2_floor_sd
    assert exact.consistent(4.0)
    shifted = posterior_report(POST.sample(N, rng=3) + np.array([0.6, 0.0]), ref, rng=4)
    assert shifted.w2 > shifted.w2_floor + 4 * shifted.w2_floor_sd


@pytest.mark.parametrize("name", ["mixture", "grid"])
def test_biased_samplers_are_flagged(name):
    law, ref = (POST, REF) if name == "mixture" else (GRID, GRID_REF)
    rng = np.random.default_rng(5)
    shifted = posterior_report(law.sample(N, rng) + np.array([0.6, 0.0]), ref, compute_w2=False)
    assert shifted.mean_z > 8 and not shifted.consistent()
    prior = posterior_report(PRIOR.sample(N, rng), ref, compute_w2=False)
    assert prior.weight_z > 8 and min(prior.coverage_z) < -8 and not prior.consistent()
    # A point estimate (one mode, no spread): over-covers every HPD region, a weight on one component.
    mode = np.argmax(ref.weights)
    collapsed = np.repeat(ref.law.means[mode][None] if name == "mixture" else ref.mean[None], N, axis=0)
    point = posterior_report(collapsed + 1e-3 * rng.standard_normal((N, 2)), ref, compute_w2=False)
    assert point.coverage == (1.0, 1.0) and min(point.coverage_z) > 5  # (1 - 0.9) / 0.015
    assert (name == "grid" or point.weight_z > 8) and not point.consistent()


def test_hpd_thresholds_of_a_gaussian_are_the_chi_square_closed_form():
    cov = np.array([[0.7, 0.3], [0.3, 0.4]])
    law = dc.Gaussian(np.array([0.5, -0.2]), cov)
    levels = (0.3, 0.5, 0.9)
    ref = posterior_reference(law, levels=levels, n_threshold=20_000, rng=6)
    peak = -math.log(2 * math.pi) - 0.5 * math.log(np.linalg.det(cov))
    exact = peak - 0.5 * stats.chi2.ppf(levels, df=2)
    # d log c / dq = -(1/2) d chi2.ppf / dq; the sample quantile errs by sqrt(q (1-q) / n) in q.
    slope = 0.5 / stats.chi2.pdf(stats.chi2.ppf(levels, 2), 2)
    tol = 4 * slope * np.sqrt(np.multiply(levels, np.subtract(1, levels)) / 20_000)
    assert np.all(np.abs(np.array(ref.log_thresholds) - exact) < tol)
    grid = quadrature_posterior(law, LinearGaussianMeasurement([[1.0, 0.0]], 1e3), np.array([0.0]), resolution=301)
    grid_ref = posterior_reference(grid, levels=levels)  # the likelihood is flat: the grid law is the Gaussian
    assert np.allclose(grid_ref.log_thresholds, exact, atol=0.02)  # cell-size resolution of the region
    assert grid_ref.threshold_count == 0 and grid_ref.weights is None


def test_torch_samples_give_the_numpy_report():
    torch = pytest.importorskip("torch")
    x = POST.sample(50, rng=7)
    a = posterior_report(x, REF, compute_w2=False)
    b = posterior_report(torch.as_tensor(x, dtype=torch.float32), REF, compute_w2=False)
    assert b.mean_error == pytest.approx(a.mean_error, abs=1e-6) and b.coverage == a.coverage


def test_bad_input_is_refused():
    x = POST.sample(10, rng=8)
    with pytest.raises(ValueError, match="shape"):
        posterior_report(x[:, :1], REF)
    with pytest.raises(ValueError, match="finite"):
        posterior_report(np.where(np.arange(20).reshape(10, 2) == 3, np.nan, x), REF)
    with pytest.raises(ValueError, match="at least 2"):
        posterior_report(x[:1], REF)
    with pytest.raises(ValueError, match=r"levels must .* \(0, 1\)"):
        posterior_reference(POST, levels=(0.5, 1.0))
    with pytest.raises(ValueError, match="levels must be the reference's"):
        posterior_report(x, REF, levels=(0.8,))
    with pytest.raises(ValueError, match="prior belongs"):
        posterior_report(x, GRID_REF, prior=PRIOR)
    with pytest.raises(TypeError, match="GridLaw"):
        posterior_reference("not a law")
    with pytest.raises(ValueError, match="dimension"):
        posterior_reference(GRID, prior=dc.GaussianMixture([1.0], [[0.0]], [[[1.0]]]))
    floor_ref = PosteriorReference(**{**REF.__dict__, "floor": dc.w2_floor(POST, 5, repeats=2, rng=0), "n": 5})
    with pytest.raises(ValueError, match="floor is for n = 5"):
        posterior_report(x, floor_ref)


def test_one_dimensional_quantiles_invert_the_cdf():
    """GaussianMixture.quantile against scipy's CDF (to 1e-12) and against a GridLaw of the same law
    (its piecewise-linear CDF on 4001 cells: within a cell width); bad input refused."""
    from scipy import stats

    from diffcore.conditional import GridLaw

    mix = dc.GaussianMixture([0.3, 0.7], [[-1.0], [2.0]], [[[0.25]], [[1.0]]])
    u = np.linspace(0.001, 0.999, 37)
    q = mix.quantile(u)
    cdf = 0.3 * stats.norm.cdf(q, -1.0, 0.5) + 0.7 * stats.norm.cdf(q, 2.0, 1.0)
    np.testing.assert_allclose(cdf, u, atol=1e-12)
    np.testing.assert_allclose(dc.Gaussian(np.zeros(1), np.eye(1)).quantile(u), stats.norm.ppf(u), atol=1e-12)
    grid = GridLaw(mix.log_prob, [-6.0], [8.0], 4001)
    np.testing.assert_allclose(grid.quantile(u), q, atol=float(grid.cell[0]))
    with pytest.raises(ValueError, match="one-dimensional laws; this one has dim = 2"):
        PRIOR.quantile(u)
    with pytest.raises(ValueError, match=r"u must hold levels in \(0, 1\)"):
        mix.quantile(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="one-dimensional grid laws"):
        GridLaw(lambda p: -np.sum(p**2, axis=1), [-3.0, -3.0], [3.0, 3.0], 21).quantile(u)
