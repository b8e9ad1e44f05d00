"""Optimal boundary conditions for conditional diffusion ODEs (Ma et al. 2024): closed form vs search.

Oracles: for a Gaussian prior and a linear-Gaussian measurement the exact conditional ODE map is
affine, ``Phi(z; y) = A z + B y + c``, so the optimal shared starting point is least squares and
maps every ``y`` to the posterior mean when ``alpha(1) = 0``; the search's excess over it is the
minimum of a quadratic over ``K`` Gaussian draws, ``~ |det A| / (pi phi(z*) K)`` in 2-D.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

import diffcore as dc
from diffcore.conditional import LinearGaussianMeasurement, SignMeasurement, posterior
from diffcore.conditional._boundary import (
    BoundarySearch,
    boundary_search,
    conditional_flow_map,
    optimal_boundary,
)

PRIOR = dc.Gaussian(np.array([0.5, -0.3]), np.array([[0.6, 0.2], [0.2, 0.4]]))
MEAS = LinearGaussianMeasurement([[0.6, 0.8]], 0.3)
COSINE = dc.CosineVPSDE(end=1.0)  # alpha(1) = 0 exactly: the prior is reached
MIXTURE = dc.GaussianMixture(
    [0.3, 0.25, 0.45],
    [[-1.5, 0.5], [1.0, -1.0], [1.2, 1.4]],
    [[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]], [[0.45, 0.0], [0.0, 0.25]]],
)


def _pairs(prior, n, seed):
    x0 = prior.sample(n, rng=seed)
    return x0, MEAS.sample(x0, rng=seed + 1)


def test_closed_form_is_the_minimiser_of_the_empirical_loss():
    """optimal_boundary(pairs) against a brute-force minimisation that only calls the map."""
    phi = conditional_flow_map(dc.VPSDE(), PRIOR, MEAS)
    x0, y = _pairs(PRIOR, 40, 0)

    def loss(z):
        return np.mean([np.sum((phi(z[None], y[i])[0] - x0[i]) ** 2) for i in range(len(y))])

    brute = minimize(loss, np.ones(2), method="BFGS", options={"gtol": 1e-11})
    opt = optimal_boundary(phi, pairs=(x0, y))
    # BFGS on a quadratic with gradient tolerance 1e-11: z to ~1e-8 (A's eigenvalues are ~0.5)
    np.testing.assert_allclose(opt.z, brute.x, atol=1e-6)
    assert opt.mse == pytest.approx(brute.fun, rel=1e-10)
    assert opt.n_pairs == 40 and opt.mmse is None


def test_law_optimum_agrees_with_many_pairs_under_a_misspecified_law():
    """The joint-law closed form (here a law other than the map's own prior) against pairs from that law."""
    phi = conditional_flow_map(COSINE, PRIOR, MEAS)
    truth = dc.Gaussian(np.array([1.0, 0.4]), np.array([[0.8, -0.1], [-0.1, 0.5]]))
    opt = optimal_boundary(phi, law=(truth, MEAS))
    assert np.linalg.norm(opt.z) > 0.3  # the model's z* = 0 is no longer optimal
    x0, y = _pairs(truth, 20000, 3)
    emp = optimal_boundary(phi, pairs=(x0, y))
    resid = x0 - phi.offset(y)
    Ainv = np.linalg.inv(phi.matrix)
    se = np.sqrt(np.diag(Ainv @ np.cov(resid.T) @ Ainv.T) / len(y))
    assert np.all(np.abs(emp.z - opt.z) < 4 * se), (emp.z, opt.z, se)  # 4 standard errors
    # expected_mse at a random z vs the Monte Carlo mean of the squared error
    z = np.array([0.7, -1.1])
    err = np.sum((z @ phi.matrix.T + phi.offset(y) - x0) ** 2, axis=1)
    assert abs(phi.expected_mse(z, law=(truth, MEAS)) - err.mean()) < 4 * err.std() / math.sqrt(len(err))


def test_optimum_maps_every_observation_to_the_posterior_mean():
    """alpha(1) = 0: z* = 0 and Phi(z*; y) = E[x0 | y] for every y (1e-8); the MSE is the MMSE."""
    phi = conditional_flow_map(COSINE, PRIOR, MEAS)
    opt = optimal_boundary(phi)
    for y in (np.array([0.5]), np.array([-1.7]), np.array([3.0])):
        np.testing.assert_allclose(phi(opt.z[None], y)[0], posterior(PRIOR, MEAS, y).mean, atol=1e-8)
    np.testing.assert_allclose(opt.z, 0.0, atol=1e-12)
    assert opt.mse == pytest.approx(opt.mmse, rel=1e-10)
    # E over z ~ N(0, I) pays tr(A^T A) = tr Cov[x0 | y] (sigma(1) = 1): twice the MMSE, exactly
    assert opt.random_mse == pytest.approx(2 * opt.mmse, rel=1e-10)


def test_optimum_under_vp_is_offset_by_alpha_one_and_the_ode_agrees():
    """VP (alpha(1) ~ 6.7e-3): Phi(z*; y) = m(y) + alpha(1) A (m - m(y)); the ODE reference gives the same map."""
    vp = dc.VPSDE()
    phi = conditional_flow_map(vp, PRIOR, MEAS)
    ref = conditional_flow_map(vp, PRIOR, MEAS, reference=True, rtol=1e-10, atol=1e-10)
    opt = optimal_boundary(phi)
    a1 = float(vp.alpha(1.0))
    for y in (np.array([0.5]), np.array([-1.7])):
        my = posterior(PRIOR, MEAS, y).mean
        np.testing.assert_allclose(phi(opt.z[None], y)[0], my + a1 * phi.matrix @ (PRIOR.mean - my), atol=1e-8)
        z = np.vstack([opt.z, [1.0, -0.5]])
        np.testing.assert_allclose(ref(z, y), phi(z, y), atol=1e-7)  # DOPRI5 at 1e-10: ~1e-9 here
    assert opt.mse > opt.mmse  # the alpha(1) offset costs a little


def test_random_start_pays_exactly_the_trace_term():
    """E_z MSE(z) for z ~ N(0, I), by Monte Carlo over z, against MSE(z*) + tr(A^T A) + ||A z*||^2."""
    phi = conditional_flow_map(dc.VESDE(sigma_max=3.0), PRIOR, MEAS)  # alpha = 1: z* = E[x0] != 0
    opt = optimal_boundary(phi)
    zs = np.random.default_rng(5).standard_normal((1000, 2))
    vals = np.array([phi.expected_mse(z) for z in zs])
    assert abs(vals.mean() - opt.random_mse) < 4 * vals.std() / math.sqrt(len(vals))
    extra = np.trace(phi.matrix.T @ phi.matrix) + np.sum((phi.matrix @ opt.z) ** 2)
    assert opt.random_mse - opt.mse == pytest.approx(extra, rel=1e-10)


def test_search_excess_falls_like_one_over_k_in_two_dimensions():
    """The best of K draws on a quadratic ||A (z - z_N)||^2: E[excess] ~ |det A| / (pi phi(z_N) K) in d = 2."""
    phi = conditional_flow_map(COSINE, PRIOR, MEAS)
    x0, y = _pairs(PRIOR, 8, 7)
    target = optimal_boundary(phi, pairs=(x0, y))
    ks, repeats = (8, 32, 128, 512), 120
    rng = np.random.default_rng(11)
    means = []
    for k in ks:
        ex = [boundary_search(phi, x0, y, k, rng=rng).losses.min() - target.mse for _ in range(repeats)]
        means.append(np.mean(ex))
    slope = np.polyfit(np.log(ks), np.log(means), 1)[0]
    # each mean is of ~exponential draws: 1/sqrt(120) = 9% relative error, about 0.05 on the slope
    assert -1.2 < slope < -0.8, slope
    density = math.exp(-0.5 * float(target.z @ target.z)) / (2 * math.pi)
    constant = abs(np.linalg.det(phi.matrix)) / (math.pi * density)
    # at K = 512 the asymptotic constant holds to ~1% (the density varies little on the scale 1/K)
    assert ks[-1] * means[-1] == pytest.approx(constant, rel=0.25)


def test_search_table_custom_loss_and_given_candidates():
    phi = conditional_flow_map(COSINE, PRIOR, MEAS)
    x0, y = _pairs(PRIOR, 5, 1)
    cand = np.array([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
    res = boundary_search(phi, x0, y, cand, loss=lambda a, b: np.abs(a - b).sum(axis=1))
    direct = np.array([[np.abs(phi(c[None], y[i])[0] - x0[i]).sum() for i in range(5)] for c in cand])
    np.testing.assert_allclose(res.table, direct, rtol=1e-13)
    assert res.index == int(np.argmin(direct.mean(axis=1)))
    np.testing.assert_allclose(res.z, cand[res.index])
    np.testing.assert_allclose(res.stderr, direct.std(axis=1, ddof=1) / math.sqrt(5))
    assert isinstance(res, BoundarySearch)


def test_mixture_map_samples_the_posterior_from_noise():
    """Non-affine map (mixture prior): Phi(Z; y) with Z ~ N(0, I) has the posterior mean (4 standard errors)."""
    meas = LinearGaussianMeasurement.inpainting(2, [1], noise_std=0.3)
    phi = conditional_flow_map(dc.VPSDE(), MIXTURE, meas, rtol=1e-6, atol=1e-6)
    assert not phi.affine
    y = np.array([0.2])
    x = phi(np.random.default_rng(2).standard_normal((1500, 2)), y)
    post = posterior(MIXTURE, meas, y)
    se = np.sqrt(np.diag(post.cov) / len(x))
    assert np.all(np.abs(x.mean(axis=0) - post.mean) < 4 * se + 0.01)  # + alpha(1) start mismatch, ~1e-3
    with pytest.raises(ValueError, match="affine"):
        optimal_boundary(phi)


@pytest.mark.parametrize(
    ("thunk", "exc", "words"),
    [
        (lambda: conditional_flow_map("vp", PRIOR, MEAS), TypeError, "process"),
        (lambda: conditional_flow_map(COSINE, PRIOR, SignMeasurement([[1.0, 0.0]], 0.3)), ValueError, "linear"),
        (lambda: conditional_flow_map(COSINE, PRIOR, LinearGaussianMeasurement(np.eye(3), 0.3)), ValueError, "H"),
        (lambda: conditional_flow_map(COSINE, PRIOR, MEAS, t=0.2, s=0.5), ValueError, "s must be < t"),
        (lambda: conditional_flow_map(COSINE, PRIOR, MEAS, rtol=0.0), ValueError, "rtol"),
        (lambda: conditional_flow_map(COSINE, "gauss", MEAS), TypeError, "prior"),
        (lambda: optimal_boundary(lambda z, y: z), TypeError, "phi"),
        (lambda: optimal_boundary(PHI, pairs=(X0, Y), law=(PRIOR, MEAS)), ValueError, "not both"),
        (lambda: optimal_boundary(PHI, pairs=(X0[:0], Y[:0])), ValueError, "x0"),
        (lambda: optimal_boundary(PHI, pairs=(X0, Y[:3])), ValueError, "y"),
        (lambda: optimal_boundary(PHI, pairs=X0), TypeError, "pairs"),
        (lambda: optimal_boundary(PHI, law=PRIOR), TypeError, "law"),
        (lambda: PHI(np.zeros((2, 3)), Y[0]), ValueError, "z"),
        (lambda: PHI(np.full((2, 2), np.nan), Y[0]), ValueError, "z"),
        (lambda: PHI(np.zeros((2, 2)), np.zeros(2)), ValueError, "y"),
        (lambda: boundary_search(PHI, X0, Y, 0), ValueError, "candidates"),
        (lambda: boundary_search(PHI, X0, Y, 2.5), TypeError, "candidates"),
        (lambda: boundary_search(PHI, X0, Y, np.zeros((2, 3))), ValueError, "candidates"),
        (lambda: boundary_search(PHI, X0, Y, 4, loss=lambda a, b: a), ValueError, "loss"),
        (lambda: boundary_search(PHI, X0, Y, 4, loss=3), TypeError, "loss"),
        (lambda: boundary_search(lambda z, y: z[:1], X0, Y, 4), ValueError, "phi"),
        (lambda: boundary_search(lambda z, y: z * np.nan, X0, Y, 4), ValueError, "finite"),
        (lambda: boundary_search(PHI, X0, Y, 4, rng="seed"), TypeError, "rng"),
    ],
)
def test_bad_input_is_refused_naming_the_rule(thunk, exc, words):
    with pytest.raises(exc, match=words):
        thunk()


PHI = conditional_flow_map(COSINE, PRIOR, MEAS)
X0, Y = _pairs(PRIOR, 6, 21)
