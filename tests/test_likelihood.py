"""The probability-flow ODE log-likelihood against exact marginal densities.

With the exact score of Gaussian-mixture data and the exact law at ``t = 1`` as the prior, the
instantaneous change of variables has no modelling error: ``log_likelihood`` must reproduce
``exact_log_prob(process, data)(x, t_min)`` up to the ODE solver's error, which is measured
(order 4 for rk4) and driven below 1e-4 nats.  Hutchinson's estimator is checked for
unbiasedness and its 1/probes variance with tolerances from the measured spread.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import PROCESSES
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from strategies import mixtures_with_points, processes, skewed_mixture_2d

import diffcore as dc
from diffcore.likelihood import bits_per_dim, dequantize, divergence, log_likelihood, t_min_gap
from diffcore.likelihood._divergence import field_quadratic
from diffcore.testing import fit_order

T_MIN = 1e-3
#: the processes of the accuracy oracle (the affine-vp copy of VP is covered by the fixture elsewhere)
LIK_PROCESSES = ["vp", "subvp", "cosine", "ve"]


def mixture_16d(seed: int = 0, d: int = 16, k: int = 3) -> dc.GaussianMixture:
    """A 16-D mixture with random SPD covariances (eigenvalues log-uniform in [0.05, 1]) and spread means."""
    rng = np.random.default_rng(seed)
    covs = []
    for _ in range(k):
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        covs.append((q * np.exp(rng.uniform(np.log(0.05), 0.0, d))) @ q.T)
    w = rng.uniform(0.5, 1.0, k)
    return dc.GaussianMixture(w / w.sum(), 1.5 * rng.standard_normal((k, d)), np.stack(covs))


DATA = {"2d": skewed_mixture_2d(), "16d": mixture_16d()}


def exact_case(name: str, data_key: str, n: int = 6):
    process, data = PROCESSES[name], DATA[data_key]
    x = data.sample(n, rng=1)
    return process, data, x, dc.exact_log_prob(process, data)(x, T_MIN), dc.marginal(process, data, 1.0).log_prob


# -- the oracle: exact log p_{t_min} ---------------------------------------------------------------
@pytest.mark.parametrize("data_key", ["2d", "16d"])
@pytest.mark.parametrize("name", LIK_PROCESSES)
def test_exact_divergence_matches_exact_log_density(name, data_key):
    # rk4 with 200 steps: measured max errors 4.6e-8 (2-D) to 6.5e-7 (16-D VE) nats, so 1e-4 holds with
    # >100x margin; DOP853 (SciPy) and diffcore's Dormand-Prince at rtol = atol = 1e-10 reach 1e-9 or better
    process, data, x, exact, prior = exact_case(name, data_key)
    score = dc.exact_score(process, data)
    rk4 = log_likelihood(process, score, x, steps=200, prior_log_prob=prior, t_min=T_MIN)
    assert np.max(np.abs(rk4.value - exact)) < 1e-4
    for method in ("adaptive", "scipy_dop853"):
        adaptive = log_likelihood(process, score, x, method=method, rtol=1e-10, atol=1e-10, prior_log_prob=prior)
        assert np.max(np.abs(adaptive.value - exact)) < 1e-4, method
        assert adaptive.method == method
    assert rk4.nfe == 4 * 200  # 4 evaluations per rk4 step (the output check costs none)
    assert np.all(rk4.stderr == 0) and rk4.probe_integrals is None
    np.testing.assert_allclose(rk4.prior_term + rk4.divergence_integral, rk4.value, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", LIK_PROCESSES)
def test_rk4_error_converges_at_order_four(name):
    # errors against the exact log density fall as steps^-4 (measured slopes 4.0-4.2); the finest
    # level stays far above the float64 floor (~1e-12), so the fit sees the discretisation only
    process, data, x, exact, prior = exact_case(name, "2d")
    score = dc.exact_score(process, data)
    steps = np.array([16, 32, 64])
    errors = [
        np.max(np.abs(log_likelihood(process, score, x, steps=int(s), prior_log_prob=prior).value - exact))
        for s in steps
    ]
    assert errors[-1] > 1e-11
    assert 3.5 < fit_order(steps, errors) < 4.7


def test_default_prior_error_is_the_prior_mismatch():
    # the default N(0, prior_std^2) prior differs from the exact p_1 only in the prior term: the
    # change in value equals log N(x_1) - log p_1(x_1) at the flow's end (to the ODE error, 1e-6 here)
    for name in ("vp", "ve"):
        process, data, x, exact, prior = exact_case(name, "16d")
        score = dc.exact_score(process, data)
        res = log_likelihood(process, score, x, steps=200)
        mismatch = process.prior_log_prob(res.x_end) - prior(res.x_end)
        np.testing.assert_allclose(res.value - exact, mismatch, rtol=0, atol=1e-5)
        assert np.max(np.abs(mismatch)) > 1e-3  # not zero: the priors differ
        # and small next to the density itself: VP alpha(1) = 6.4e-3 leaves |mismatch| ~ 1e-2;
        # VE sigma(1) = 10 against data of scale ~2 leaves ~ 0.5 nats
        assert np.max(np.abs(mismatch)) < (0.1 if name == "vp" else 1.0)


# -- divergences: closed form vs autograd vs finite differences ------------------------------------
@pytest.mark.parametrize("t", [T_MIN, 0.3, 0.9])
def test_closed_form_divergence_equals_autograd_and_finite_differences(t):
    process, data = PROCESSES["vp"], DATA["16d"]
    x = data.sample(5, rng=2)
    field = dc.exact_score(process, data)
    closed = divergence(field, x, t)
    auto = divergence(lambda y, u: field(y, u), torch.as_tensor(x), t).numpy()  # a plain callable: autograd
    fd = divergence(lambda y, u: field(y, u), x, t)  # a plain NumPy callable: central differences
    # autograd differs from the closed form by rounding only (measured 7e-14 on |div| ~ 100)
    np.testing.assert_allclose(auto, closed, rtol=1e-10)
    # central differences with h = 1e-4: O(h^2 s''') + O(eps |s| / h), measured 5e-11
    np.testing.assert_allclose(fd, closed, rtol=1e-7)


@settings(max_examples=30)
@given(mixtures_with_points(n=3), processes(), st.floats(1e-3, 1.0), st.integers(0, 2**31 - 1))
def test_property_closed_form_divergence_and_quadratic_form_match_autograd(case, process, t, seed):
    """For random mixtures, processes and times, the closed-form div s and eps^T (ds/dx) eps equal
    autograd's (float64, so they differ by rounding on the scale of the summed terms)."""
    data, x = case
    field = dc.exact_score(process, data)
    closed = divergence(field, x, t)
    auto = divergence(lambda y, u: field(y, u), torch.as_tensor(x), t).numpy()
    scale = 1.0 + np.abs(closed) + np.sum(field(x, t) ** 2, axis=1)
    assert np.all(np.abs(auto - closed) <= 1e-9 * scale)
    eps = np.random.default_rng(seed).standard_normal((2, *x.shape))
    _, quad = field_quadratic(field, x, t, eps)
    xt = torch.as_tensor(x).requires_grad_(True)
    s = field(xt, t)
    for j in range(2):
        e = torch.as_tensor(eps[j])
        (g,) = torch.autograd.grad((s * e).sum(), xt, retain_graph=True)
        vjp = (g * e).sum(dim=1).detach().numpy()
        qscale = scale * (1.0 + np.sum(eps[j] ** 2, axis=1))
        assert np.all(np.abs(vjp - quad[:, j]) <= 1e-9 * qscale)


@settings(max_examples=30)
@given(mixtures_with_points(n=3), processes(), st.floats(1e-3, 1.0))
def test_property_hutchinson_rademacher_expectation_is_the_divergence_exactly(case, process, t):
    """Unbiasedness without Monte Carlo: the Rademacher probe takes each of the 2^d sign vectors
    with probability 2^-d, so the average of eps^T (ds/dx) eps over all of them *is* the
    estimator's expectation; it must equal div s up to rounding (sum_{i != j} J_ij e_i e_j
    cancels exactly over the sign patterns)."""
    data, x = case
    d = x.shape[1]
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=d)))  # (2^d, d)
    eps = np.broadcast_to(signs[:, None, :], (len(signs), *x.shape)).copy()
    field = dc.exact_score(process, data)
    _, quad = field_quadratic(field, x, t, eps)
    exact = divergence(field, x, t)
    scale = 1.0 + np.abs(exact) + np.sum(field(x, t) ** 2, axis=1)
    assert np.all(np.abs(quad.mean(axis=1) - exact) <= 1e-10 * d * scale)


@pytest.mark.parametrize("divergence_kind", ["exact", "hutchinson"])
def test_torch_autograd_log_likelihood_equals_closed_form(divergence_kind):
    # same probes (same seed, drawn on the host), same trajectory: torch autograd / VJPs and the
    # closed form agree to rounding
    process, data, x, _, _ = exact_case("vp", "2d", n=4)
    field = dc.exact_score(process, data)
    probes = 3 if divergence_kind == "hutchinson" else 1
    kw = dict(divergence=divergence_kind, probes=probes, rng=5, steps=40)
    ref = log_likelihood(process, field, x, **kw)
    xt = torch.as_tensor(x)
    res = log_likelihood(process, lambda y, u: field(y, u), xt, **kw)
    assert isinstance(res.value, torch.Tensor) and res.value.dtype == torch.float64
    np.testing.assert_allclose(res.value.numpy(), ref.value, rtol=1e-10)
    np.testing.assert_allclose(res.stderr.numpy(), ref.stderr, rtol=1e-8)


# -- Hutchinson: unbiased, variance 1 / probes -----------------------------------------------------
def _replicated(point: np.ndarray, copies: int) -> np.ndarray:
    """``copies`` copies of one point: the batch gives that many independent estimates in one call."""
    return np.repeat(point[None, :], copies, axis=0)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
@pytest.mark.parametrize("data_key", ["2d", "16d"])
def test_hutchinson_is_unbiased(noise, data_key):
    # The x-part of the flow does not see the probes, so the exact and Hutchinson runs share the
    # trajectory and grid and the estimate's expectation is the exact-divergence run itself (no
    # discretisation bias between them).  2000 independent estimates: mean within 3 standard errors.
    process, data, _, _, prior = exact_case("vp", data_key)
    point = data.sample(1, rng=7)[0]
    field = dc.exact_score(process, data)
    exact = log_likelihood(process, field, point[None], steps=20, prior_log_prob=prior).value[0]
    res = log_likelihood(
        process, field, _replicated(point, 2000), divergence="hutchinson", probes=1, noise=noise, rng=11, steps=20,
        prior_log_prob=prior,
    )
    vals = res.value
    se = np.std(vals, ddof=1) / math.sqrt(vals.size)
    assert abs(np.mean(vals) - exact) < 3 * se
    assert se > 0 and np.all(np.isnan(res.stderr))  # one probe: no per-point spread to report


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_variance_falls_as_one_over_probes(noise):
    # R independent estimates at probes = 1 and 16.  The ratio of sample variances has
    # se(log ratio) ~ sqrt((k1 - 1)/R + (k16 - 1)/R) with k the measured kurtosis (delta method);
    # the ratio must be 16 within 4 such standard errors.  Each result's own stderr must also agree
    # with the spread across independent calls.
    process, data, _, _, prior = exact_case("vp", "16d")
    point = data.sample(1, rng=3)[0]
    field = dc.exact_score(process, data)
    r = 1500
    kw = dict(divergence="hutchinson", noise=noise, steps=10, prior_log_prob=prior)
    v1 = log_likelihood(process, field, _replicated(point, r), probes=1, rng=21, **kw).value
    res16 = log_likelihood(process, field, _replicated(point, r), probes=16, rng=22, **kw)
    v16 = res16.value

    def kurtosis(v):
        c = v - v.mean()
        return np.mean(c**4) / np.mean(c**2) ** 2

    ratio = np.var(v1, ddof=1) / np.var(v16, ddof=1)
    se_log = math.sqrt((kurtosis(v1) - 1) / r + (kurtosis(v16) - 1) / r)
    assert abs(math.log(ratio / 16.0)) < 4 * se_log
    # the reported stderr (per point, from 16 probes) estimates the same spread: its RMS over the
    # batch matches the spread across points to within 10% (chi^2 with 15 dof per point, 1500 points)
    assert abs(np.sqrt(np.mean(res16.stderr**2)) / np.std(v16, ddof=1) - 1) < 0.1


# -- bits per dimension and dequantisation ---------------------------------------------------------
def test_bits_per_dim_of_a_uniform_model_is_log2_bins():
    # a model uniform on [low, high]^d has log p_Y = -d log(high - low): exactly log2(n_bins) bits
    for n_bins, low, high, d in ((256, -1.0, 1.0, 3), (256, 0.0, 1.0, 5), (32, -2.0, 3.0, 2)):
        log_p = np.full(4, -d * math.log(high - low))
        np.testing.assert_allclose(bits_per_dim(log_p, d, n_bins=n_bins, low=low, high=high), math.log2(n_bins))


def test_bits_per_dim_of_dequantised_gaussian_has_the_known_expectation():
    # A 1-D Gaussian model N(mu, s^2) on y in [-1, 1], 256 bins.  For a bin k, y = low + c (k + u) and
    # E_u[y'^2] = (mid - mu)^2 + c^2 / 12, so E_u[bpd] is closed form; it bounds -log2 P(k) from above
    # (Jensen) by less than 1e-4 bits for these narrow bins.  The Monte Carlo mean of bits_per_dim on
    # dequantize must match it within 4 standard errors.
    mu, s, n_bins, low, high = 0.1, 0.3, 256, -1.0, 1.0
    c = (high - low) / n_bins
    k = np.array([100, 128, 140, 170])
    draws = 20000
    ints = np.repeat(k[:, None], draws, axis=1).reshape(-1, 1)
    y = dequantize(ints, n_bins, rng=0, low=low, high=high)
    assert np.all((y >= low + c * ints) & (y < low + c * (ints + 1)))
    log_p = norm.logpdf(y[:, 0], mu, s)
    bpd = bits_per_dim(log_p, 1, n_bins=n_bins, low=low, high=high).reshape(len(k), draws)
    mid = low + c * (k + 0.5)
    expected_log_p = -((mid - mu) ** 2 + c**2 / 12) / (2 * s**2) - 0.5 * math.log(2 * math.pi * s**2)
    expected = -(expected_log_p + math.log(c)) / math.log(2)
    se = bpd.std(axis=1, ddof=1) / math.sqrt(draws)
    assert np.all(np.abs(bpd.mean(axis=1) - expected) < 4 * se)
    discrete = -np.log2(norm.cdf(low + c * (k + 1), mu, s) - norm.cdf(low + c * k, mu, s))
    assert np.all(expected >= discrete) and np.all(expected - discrete < 1e-4)


def test_bits_per_dim_accepts_a_result_and_offsets_by_seven_bits_on_minus_one_one():
    # a LogLikelihood in gives per-point values and errors out; the 7-bit offset of 8-bit data on
    # [-1, 1] only when that quantisation is stated, none for continuous data
    process, data, x, _, prior = exact_case("vp", "2d", n=3)
    res = log_likelihood(process, dc.exact_score(process, data), x, steps=20, prior_log_prob=prior)
    continuous = -res.value / (2 * math.log(2))
    np.testing.assert_allclose(bits_per_dim(res).value, continuous, rtol=1e-13)
    quantised = bits_per_dim(res, 2, n_bins=256, low=-1.0, high=1.0)
    np.testing.assert_allclose(quantised.value, continuous + 7.0, rtol=1e-13)
    assert quantised.offset == 7.0 and np.all(quantised.stderr == 0)


# -- stopping at t_min -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", LIK_PROCESSES)
def test_t_min_gap_is_first_order_in_t_min(name):
    # the exact gap log p_{t_min} - log p_0 is t_min * rate + O(t_min^2): the relative error of the
    # first-order term must fall ~10x per decade of t_min (an O(t_min) remainder), and the ODE
    # estimate differs from log p_0 by exactly this gap (to the solver error)
    process, data = PROCESSES[name], DATA["2d"]
    x = data.sample(5, rng=4)
    rel = []
    for t in (1e-3, 1e-4):
        gap = t_min_gap(process, data, x, t)
        rel.append(np.max(np.abs(gap.exact / gap.first_order - 1)))
    assert rel[1] < 0.2 * rel[0] and rel[1] < 0.05
    gap = t_min_gap(process, data, x, T_MIN)
    res = log_likelihood(
        process, dc.exact_score(process, data), x, steps=200, prior_log_prob=dc.marginal(process, data, 1.0).log_prob
    )
    np.testing.assert_allclose(res.value - dc.exact_log_prob(process, data)(x, 0.0), gap.exact, rtol=0, atol=1e-5)


def test_t_min_gap_averages_to_minus_kl_for_gaussian_data():
    # for Gaussian data, E_{p_0}[log p_t - log p_0] = -KL(p_0 || p_t) in closed form; the sample mean
    # of the exact gap over 20000 draws must match it within 4 standard errors
    process, data = PROCESSES["vp"], dc.Gaussian(np.array([0.5, -0.2]), np.array([[0.2, 0.05], [0.05, 0.1]]))
    t = 0.01
    m0, c0 = np.asarray(data.mean), np.asarray(data.cov)
    pt = dc.marginal(process, data, t)
    m1, c1 = np.asarray(pt.mean), np.asarray(pt.cov)
    inv = np.linalg.inv(c1)
    kl = 0.5 * (np.trace(inv @ c0) + (m1 - m0) @ inv @ (m1 - m0) - 2 + np.log(np.linalg.det(c1) / np.linalg.det(c0)))
    gaps = t_min_gap(process, data, data.sample(20000, rng=5), t).exact
    assert abs(np.mean(gaps) + kl) < 4 * np.std(gaps, ddof=1) / math.sqrt(gaps.size)
    assert kl > 0


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_input_is_rejected_with_the_rule_and_the_value():
    process, data, x, _, _ = exact_case("vp", "2d", n=3)
    score = dc.exact_score(process, data)
    with pytest.raises(ValueError, match="probes must be >= 1; got 0"):
        log_likelihood(process, score, x, divergence="hutchinson", probes=0)
    with pytest.raises(TypeError, match="probes must be an int"):
        log_likelihood(process, score, x, divergence="hutchinson", probes=2.0)
    with pytest.raises(ValueError, match="with 'exact' it must be None or 1, got 4"):
        log_likelihood(process, score, x, divergence="exact", probes=4)
    with pytest.raises(ValueError, match="unknown divergence 'trace'"):
        log_likelihood(process, score, x, divergence="trace")
    with pytest.raises(ValueError, match="unknown noise 'uniform'"):
        log_likelihood(process, score, x, divergence="hutchinson", noise="uniform")
    with pytest.raises(ValueError, match="unknown method 'rk5'"):
        log_likelihood(process, score, x, method="rk5")
    with pytest.raises(ValueError, match="must be an ODE solver"):
        log_likelihood(process, score, x, method="euler_maruyama")
    with pytest.raises(ValueError, match="unknown method 'scipy_lsoda'"):
        log_likelihood(process, score, x, method="scipy_lsoda")
    with pytest.raises(ValueError, match="rtol must be > 0; got -1"):
        log_likelihood(process, score, x, method="scipy_dop853", rtol=-1)
    with pytest.raises(ValueError, match="t_min must lie in"):
        log_likelihood(process, score, x, t_min=1.0)
    with pytest.raises(ValueError, match=r"t_min must be > 0; got 0\.0"):
        log_likelihood(process, score, x, t_min=0.0)
    with pytest.raises(ValueError, match="x must be finite"):
        log_likelihood(process, score, np.array([[0.0, np.nan]]))
    with pytest.raises(TypeError, match="process must be an AbstractProcess"):
        log_likelihood("vp", score, x)

    def half_score(y, t):
        return score(y, t)[:, :1]

    # (central differences send the point and its 2d shifted copies in one batch: 5 x 3 points)
    rule = r"score 'half_score' must return an array shaped like its input x \(15, 2\); got \(15, 1\)"
    with pytest.raises(ValueError, match=rule):
        log_likelihood(process, half_score, x)
    with pytest.raises(ValueError, match=r"prior_log_prob must be finite at x_1; got nan at point 0"):
        log_likelihood(process, score, x, steps=2, prior_log_prob=lambda y: np.full(y.shape[0], np.nan))
    with pytest.raises(ValueError, match=r"prior_log_prob must return shape \(n,\) = \(3,\); got \(3, 1\)"):
        log_likelihood(process, score, x, steps=2, prior_log_prob=lambda y: np.zeros((y.shape[0], 1)))
    with pytest.raises(ValueError, match=r"x_int must hold integers in \[0, 255\]"):
        dequantize(np.array([[256]]), 256)
    with pytest.raises(ValueError, match="need finite low < high"):
        bits_per_dim(np.zeros(2), 2, n_bins=256, low=1.0, high=1.0)


def test_non_finite_state_raises_with_step_and_time():
    process = PROCESSES["vp"]

    def blows_up(y, t):
        return torch.full_like(y, math.inf) if t > 0.5 else -y

    with pytest.raises(FloatingPointError, match=r"rk4: non-finite state after step \d+ of 10 \(t = "):
        log_likelihood(process, blows_up, torch.zeros((2, 2), dtype=torch.float64), steps=10)
