"""Gaussian and Gaussian-mixture data: densities, scores, sampling, and their exact laws under
every process (marginals, scores, log densities, Tweedie denoisers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp
from strategies import gaussians, mixtures, points_near, processes, skewed_mixture_2d

import diffcore as dc

EPS = np.finfo(np.float64).eps
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def params(law):
    """``(weights, means, covs)`` of a Gaussian or mixture as NumPy arrays."""
    mix = law.as_mixture() if isinstance(law, dc.Gaussian) else law
    return np.asarray(mix.weights), np.asarray(mix.means), np.asarray(mix.covs)


# -- finite-difference gradients with an error bound -------------------------------------------

H = 1e-5


def fd_gradient(log_prob, x, h=H):
    """Central differences of ``log_prob`` along each axis, shape ``(n, d)``."""
    grad = np.empty_like(x)
    for i in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[i] = h
        grad[:, i] = (log_prob(x + e) - log_prob(x - e)) / (2 * h)
    return grad


def fd_error_bound(weights, means, covs, x, h=H):
    """A bound on |central difference - d/dx_i log p| for p = sum_k w_k N(m_k, C_k), ``(n, d)``.

    Truncation.  The central difference errs by h^2/6 max |F'''| on [x - h, x + h], F = log p
    along axis i.  F = log sum_k w_k exp(l_k) with quadratic l_k, so with responsibilities r_k
    as the probabilities, F''' = 3 Cov(l'', l') + kappa_3(l') with l_k' = -(P_k (x - m_k))_i,
    l_k'' = -(P_k)_ii, P_k = C_k^{-1}.  If |l_k'| <= G and 0 <= -l_k'' <= Lam for all k, then
    |Cov| <= (Lam/2) G and |kappa_3| <= 2G * Var <= 2 G^3, so |F'''| <= 1.5 Lam G + 2 G^3
    (G grows by at most h Lam across the stencil).  For a single Gaussian F''' = 0.
    Round-off.  Each log p carries an absolute rounding error of a few eps times the size of
    its terms and the condition number of C_k; the difference divides two of them by 2h.
    We take 64 eps kappa (1 + |log p| + d + sum |log lam|) / h, with kappa = max cond(C_k).
    """
    prec = np.linalg.inv(covs)
    diff = x[:, None, :] - means[None]
    g = np.abs(np.einsum("kij,nkj->nki", prec, diff))  # (n, K, d)
    lam_ii = np.einsum("kii->ki", prec).max(axis=0)  # (d,)
    big_g = g.max(axis=1) + h * lam_ii
    trunc = h**2 / 6 * (1.5 * lam_ii * big_g + 2 * big_g**3) if len(weights) > 1 else 0.0
    eig = np.linalg.eigvalsh(covs)
    kappa = (eig[:, -1] / eig[:, 0]).max()
    logp = logsumexp(
        np.log(weights)
        + np.stack([stats.multivariate_normal(m, c).logpdf(x).reshape(-1) for m, c in zip(means, covs)], 1),
        axis=1,
    )
    size = 1 + np.abs(logp) + x.shape[1] + np.abs(np.log(eig)).sum(axis=1).max()
    return trunc + (64 * EPS * kappa * size / h)[:, None]


@given(data=st.data(), law=st.one_of(gaussians(), mixtures()))
def test_score_is_gradient_of_log_prob(data, law):
    x = data.draw(points_near(law, n=4))
    err = np.abs(law.score(x) - fd_gradient(law.log_prob, x))
    bound = fd_error_bound(*params(law), x)
    assert np.all(err <= bound), (err, bound)


def test_fd_bound_is_tight_enough_to_catch_a_wrong_score():
    # the bound is far below the size of the score, so a wrong score (here: the score of a
    # mixture with one covariance perturbed by 1%) would fail the test above
    gm = skewed_mixture_2d()
    x = gm.sample(200, rng=np.random.default_rng(0))
    w, m, c = params(gm)
    bound = fd_error_bound(w, m, c, x)
    assert np.max(bound) < 1e-4
    c2 = c.copy()
    c2[1] *= 1.01
    wrong = dc.GaussianMixture(w, m, c2).score(x)
    assert np.max(np.abs(wrong - fd_gradient(gm.log_prob, x)) / bound) > 10


# -- log densities against scipy ---------------------------------------------------------------


@given(data=st.data(), g=gaussians())
def test_gaussian_log_prob_matches_scipy(data, g):
    # both evaluate -q/2 - log det/2 - d/2 log 2 pi from a factorisation of C: rounding ~ d eps cond(C)
    # (cond <= 80 for the strategy) times the size of the terms; 1e-11 (1 + |log p| + q) is ~50x that.
    x = data.draw(points_near(g, n=5))
    ref = stats.multivariate_normal(np.asarray(g.mean), np.asarray(g.cov)).logpdf(x).reshape(-1)
    np.testing.assert_allclose(g.log_prob(x), ref, rtol=1e-11, atol=1e-11)
    prec = np.linalg.inv(np.asarray(g.cov))
    np.testing.assert_allclose(g.score(x), -(x - g.mean) @ prec, rtol=1e-10, atol=1e-10)


@given(data=st.data(), gm=mixtures())
def test_mixture_log_prob_matches_direct_sum(data, gm):
    x = data.draw(points_near(gm, n=5))
    w, m, c = params(gm)
    terms = np.stack([stats.multivariate_normal(mk, ck).logpdf(x).reshape(-1) for mk, ck in zip(m, c)], axis=1)
    ref = logsumexp(np.log(w) + terms, axis=1)
    np.testing.assert_allclose(gm.log_prob(x), ref, rtol=1e-11, atol=1e-11)
    resp = np.exp(np.log(w) + terms - ref[:, None])
    np.testing.assert_allclose(gm.responsibilities(x), resp, rtol=1e-9, atol=1e-12)


def test_log_prob_far_in_the_tails_is_finite():
    gm = skewed_mixture_2d()
    x = np.array([[200.0, -300.0]])
    assert np.isfinite(gm.log_prob(x)).all() and np.isfinite(gm.score(x)).all()
    # far away the dominant component is the widest along the direction; the score is finite
    # and points back towards the data
    assert np.sum(gm.score(x) * x) < 0


# -- sampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "law", [skewed_mixture_2d(), dc.Gaussian([1.0, -2.0], [[2.0, 0.6], [0.6, 0.5]])], ids=["mixture", "gaussian"]
)
def test_sample_moments(law):
    # Sample mean: SE sqrt(C_ii / n).  Sample covariance entry: SE = std((x_i - m_i)(x_j - m_j)) / sqrt(n),
    # estimated from the sample (the mixture's fourth moments are not Gaussian).  k = 4 over
    # 2 + 3 entries: false-alarm probability ~3e-4.
    n, k = 40_000, 4.0
    x = law.sample(n, rng=np.random.default_rng(5))
    assert x.shape == (n, 2)
    if isinstance(law, dc.GaussianMixture):
        mean, cov = law.mean, law.cov
    else:
        mean, cov = law.mean, law.cov
    assert np.all(np.abs(x.mean(0) - mean) <= k * np.sqrt(np.diag(cov) / n))
    c = x - x.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    se = prods.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(np.cov(x.T) - cov) <= k * se)


def test_mixture_mean_and_cov_are_the_moment_formulas():
    gm = skewed_mixture_2d()
    w, m, c = params(gm)
    mean = w @ m
    cov = sum(wk * (ck + np.outer(mk - mean, mk - mean)) for wk, mk, ck in zip(w, m, c))
    np.testing.assert_allclose(gm.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(gm.cov, cov, rtol=1e-13)


# -- exact laws under a process ----------------------------------------------------------------


def test_marginal_is_the_pushed_gaussian(process):
    g = dc.Gaussian([0.5, -1.0], [[1.0, 0.3], [0.3, 0.4]])
    gm = skewed_mixture_2d()
    for t in (0.0, 0.1, 0.5, 0.9, 1.0):
        a, s = process.alpha(t), process.sigma(t)
        law = dc.marginal(process, g, t)
        assert isinstance(law, dc.Gaussian)
        # alpha^2 C + sigma^2 I rebuilt from the eigenfactors of C: ~d eps cond(C) relative
        np.testing.assert_allclose(law.mean, a * np.asarray(g.mean), rtol=1e-14)
        np.testing.assert_allclose(law.cov, a**2 * np.asarray(g.cov) + s**2 * np.eye(2), rtol=1e-12, atol=1e-14 * s**2)
        mix = dc.marginal(process, gm, t)
        assert isinstance(mix, dc.GaussianMixture)
        w, m, c = params(gm)
        np.testing.assert_array_equal(mix.weights, w)
        np.testing.assert_allclose(mix.means, a * m, rtol=1e-14)
        np.testing.assert_allclose(mix.covs, a**2 * c + s**2 * np.eye(2), rtol=1e-12, atol=1e-14 * (a**2 + s**2))
    with pytest.raises(ValueError, match="scalar t"):
        dc.marginal(process, g, np.array([0.1, 0.2]))
    with pytest.raises(TypeError, match="data must be"):
        dc.marginal(process, np.zeros(2), 0.5)


def _pushed_params(process, law, t):
    w, m, c = params(law)
    a, s = process.alpha(t), process.sigma(t)
    return w, a * m, a**2 * c + s**2 * np.eye(m.shape[1])


@given(data=st.data(), gm=mixtures(), p=processes(), t=st.floats(0.01, 1.0))
def test_exact_score_is_marginal_score_and_gradient_of_exact_log_prob(data, gm, p, t):
    w, m, v = _pushed_params(p, gm, t)
    x = data.draw(points_near(dc.GaussianMixture(w, m, v), n=4))
    score = dc.exact_score(p, gm)(x, t)
    law = dc.marginal(p, gm, t)
    # same closed form through two factorisations (eigenfactors of C pushed, or of V refactored):
    # rounding ~ d eps cond(V) |V^{-1}(x - alpha m)| <= 3 eps 80 |.| ~ 5e-14 |.|; 1e-12 is 20x that
    # (measured <= 2e-15)
    big = np.abs(np.einsum("kij,nkj->nki", np.linalg.inv(v), x[:, None, :] - m[None])).max(axis=(1, 2))
    assert np.all(np.abs(score - law.score(x)) <= 1e-12 * (1 + big)[:, None])
    log_prob = dc.exact_log_prob(p, gm)
    np.testing.assert_allclose(log_prob(x, t), law.log_prob(x), rtol=1e-11, atol=1e-11)
    err = np.abs(score - fd_gradient(lambda y: log_prob(y, t), x))
    assert np.all(err <= fd_error_bound(w, m, v, x)), err


def test_per_sample_times_agree_row_by_row(process):
    gm = skewed_mixture_2d()
    rng = np.random.default_rng(1)
    n = 12
    t = np.linspace(0.02, 1.0, n)
    x = rng.standard_normal((n, 2)) * 2
    for field in (dc.exact_score(process, gm), dc.exact_denoiser(process, gm), dc.exact_log_prob(process, gm)):
        batch = field(x, t)
        rows = np.concatenate([field(x[i : i + 1], float(t[i])) for i in range(n)])
        # identical formulas, only broadcast differently: agreement to a few ulp of the row's size
        np.testing.assert_allclose(batch, rows, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="shape"):
        dc.exact_score(process, gm)(x, t[:-1])


@settings(max_examples=60)
@given(data=st.data(), gm=mixtures(), p=processes(), t=st.floats(1e-3, 1.0))
def test_tweedie(data, gm, p, t):
    # sigma^2 score(x) = alpha E[x0 | x] - x holds exactly per component, whatever the
    # responsibilities, so the only error is rounding: a few eps of the norms of x, alpha D,
    # sigma^2 score and alpha m_k (row norms: the eigenvector rotations mix coordinates); the
    # division-free form avoids amplifying it by 1/sigma^2.  64 eps of them (measured <= 2.3 eps
    # over 500 examples).
    w, m, v = _pushed_params(p, gm, t)
    x = data.draw(points_near(dc.GaussianMixture(w, m, v), n=4))
    a, s = p.alpha(t), p.sigma(t)
    score = dc.exact_score(p, gm)(x, t)
    den = dc.exact_denoiser(p, gm)(x, t)
    lhs, rhs = s**2 * score, a * den - x
    norm = np.linalg.norm
    size = norm(x, axis=1) + norm(a * den, axis=1) + norm(lhs, axis=1) + norm(a * m, axis=1).max()
    assert np.all(norm(lhs - rhs, axis=1) <= 64 * EPS * size)


def test_denoiser_of_1d_gaussian_is_the_posterior_mean(process):
    # x0 ~ N(mu, c), x = alpha x0 + sigma eps  =>  E[x0 | x] = mu + alpha c (x - alpha mu) / (alpha^2 c + sigma^2)
    mu, c = 0.7, 1.3
    g = dc.Gaussian([mu], [[c]])
    x = np.linspace(-4, 4, 9)[:, None]
    for t in (0.05, 0.3, 0.7, 1.0):
        a, s = process.alpha(t), process.sigma(t)
        expect = mu + a * c * (x - a * mu) / (a**2 * c + s**2)
        np.testing.assert_allclose(dc.exact_denoiser(process, g)(x, t), expect, rtol=1e-13, atol=1e-14)


def test_denoiser_of_1d_mixture_against_importance_sampling():
    # E[x0 | x] = E_{x0 ~ data}[x0 N(x; alpha x0, sigma^2)] / E[N(x; alpha x0, sigma^2)],
    # estimated by self-normalised importance sampling with data draws.  Its delta-method
    # standard error is sqrt(sum w_i^2 (x0_i - est)^2) / sum w_i; k = 4 for 7 query points.
    gm = dc.GaussianMixture([0.4, 0.6], [[-1.0], [1.5]], [[[0.3]], [[0.5]]])
    p = dc.VPSDE()
    t = 0.3
    a, s = p.alpha(t), p.sigma(t)
    x0 = gm.sample(400_000, rng=np.random.default_rng(9))[:, 0]
    xs = np.linspace(-2.0, 2.5, 7)
    den = dc.exact_denoiser(p, gm)(xs[:, None], t)[:, 0]
    for xq, d in zip(xs, den):
        logw = -0.5 * ((xq - a * x0) / s) ** 2
        w = np.exp(logw - logw.max())
        est = np.sum(w * x0) / np.sum(w)
        se = math.sqrt(np.sum(w**2 * (x0 - est) ** 2)) / np.sum(w)
        assert abs(d - est) <= 4 * se, (xq, d, est, se)


def test_exact_fields_validate():
    gm = skewed_mixture_2d()
    p = dc.VPSDE()
    with pytest.raises(TypeError, match="process must be"):
        dc.exact_score("vp", gm)
    with pytest.raises(ValueError, match="kind"):
        dc.ExactField(p, gm, "velocity")
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        dc.exact_score(p, gm)(np.zeros((3, 3)), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dc.exact_score(p, gm)(np.zeros((3, 2)), 1.5)


@fixture_ok
@given(data=st.data())
def test_exact_score_at_time_zero_is_data_score(process, data):
    # exact processes: the t = 0 law is the data itself
    gm = skewed_mixture_2d()
    x = data.draw(points_near(gm, n=3))
    law0 = dc.marginal(process, gm, 0.0)
    np.testing.assert_allclose(dc.exact_score(process, gm)(x, 0.0), law0.score(x), rtol=1e-11, atol=1e-11)
    if not (isinstance(process, dc.VESDE) and process.variant == "song2021"):
        np.testing.assert_allclose(law0.covs, gm.covs, rtol=1e-12, atol=1e-15)
