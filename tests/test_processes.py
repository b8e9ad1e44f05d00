"""Forward processes: endpoints, self-consistency of (alpha, sigma) with (f, g^2), log-SNR,
transition laws, and the marginals against Monte Carlo of the forward SDE itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from strategies import processes, times

import diffcore as dc

EPS = np.finfo(np.float64).eps
# the ``process`` fixture returns shared frozen objects, so reusing it across examples is safe
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def is_song2021(process) -> bool:
    return isinstance(process, dc.VESDE) and process.variant == "song2021"


# -- endpoints ---------------------------------------------------------------------------------


def test_time_zero_is_the_data(process):
    assert process.alpha(0.0) == pytest.approx(1.0, rel=4 * EPS, abs=0)
    if is_song2021(process):  # the paper's convention: the time-0 law is data * N(0, sigma_min^2)
        assert process.sigma(0.0) == pytest.approx(process.sigma_min, rel=4 * EPS)
    else:
        assert process.sigma(0.0) == 0.0


def test_song2021_sigma_at_zero_is_sigma_min():
    p = dc.VESDE(sigma_min=0.01, sigma_max=10.0, variant="song2021")
    assert p.alpha(0.0) == 1.0
    assert p.sigma(0.0) == pytest.approx(0.01, rel=4 * EPS)
    assert dc.VESDE(sigma_min=0.01, sigma_max=10.0).sigma(0.0) == 0.0


# -- self-consistency: f = d log alpha / dt, g^2 = d sigma^2/dt - 2 f sigma^2 ------------------

INTERIOR = np.linspace(0.05, 0.95, 37)


def test_drift_and_diffusion_match_the_generic_formula(process):
    # ``drift_coef``/``diffusion_squared`` may be closed-form overrides; the generic formula is
    # built here from ``d_alpha``/``d_sigma``.  Both terms of g^2 have the same sign for every
    # process here (f <= 0), so there is no cancellation: each side is a handful of correctly
    # rounded operations, i.e. agreement to ~10 eps; 1e-12 leaves a factor ~50.
    t = INTERIOR
    a, s, da, ds = process.alpha(t), process.sigma(t), process.d_alpha(t), process.d_sigma(t)
    f = da / a
    g2 = 2 * s * ds - 2 * f * s**2
    np.testing.assert_allclose(process.drift_coef(t), f, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(process.diffusion_squared(t), g2, rtol=1e-12)
    np.testing.assert_allclose(process.diffusion(t) ** 2, g2, rtol=1e-12)
    # the scalar path is the same formula
    for ti in (0.1, 0.5, 0.9):
        assert process.drift_coef(ti) == pytest.approx(float(process.drift_coef(np.array([ti]))[0]), rel=1e-14)
        assert process.diffusion_squared(ti) == pytest.approx(
            float(process.diffusion_squared(np.array([ti]))[0]), rel=1e-14
        )


_C8 = np.array([1 / 280, -4 / 105, 1 / 5, -4 / 5, 0.0, 4 / 5, -1 / 5, 4 / 105, -1 / 280])


def central_derivative_8(fn, t, h):
    """Eighth-order central difference: error h^8 |fn^(9)| / 630 plus round-off ~ 3.6 eps |fn| / h."""
    return sum(c * fn(t + k * h) for c, k in zip(_C8, range(-4, 5))) / h


def test_derivatives_match_finite_differences(process):
    # Eighth-order stencil, h = 1e-3.  On t in [0.05, 0.95] the schedules vary at rates <= ~20
    # (beta_max, 2 log(sigma_max/sigma_min), the cosine tan, and 1/t for sigma ~ sqrt(t)), so the
    # truncation error is ~ h^8 20^9 / 630 ~ 1e-15 relative and the round-off ~ 3.6 eps/h ~ 1e-12
    # relative to |fn| / |fn'|.  ``AffineProcess`` differentiates its callables by its own
    # 4th-order stencil with h = 1e-3, whose error is ~(h/t)^4 / 5 ~ 2e-9 at t = 0.05 for
    # sigma ~ sqrt(t).  rtol = 1e-8 (relative to |fn'| + |fn|, since d alpha = 0 for VE) covers both.
    h = 1e-3
    for value, deriv in ((process.alpha, process.d_alpha), (process.sigma, process.d_sigma)):
        exact = deriv(INTERIOR)
        fd = central_derivative_8(value, INTERIOR, h)
        scale = np.abs(exact) + np.abs(value(INTERIOR))
        assert np.all(np.abs(fd - exact) <= 1e-8 * scale), np.max(np.abs(fd - exact) / scale)


@given(
    bmin=st.floats(0.01, 1.0),
    spread=st.floats(0.0, 30.0),
    t=st.floats(0.0, 1.0),
)
def test_vp_preserves_variance(bmin, spread, t):
    # sigma = sqrt(-expm1(-B)), alpha = exp(-B/2): each square is correctly rounded to ~2 eps,
    # so the sum is 1 to ~4 eps; 8 eps.
    p = dc.VPSDE(bmin, bmin + spread)
    assert abs(p.alpha(t) ** 2 + p.sigma(t) ** 2 - 1.0) <= 8 * EPS
    ts = np.array([t, t / 2, 1.0])
    assert np.all(np.abs(p.alpha(ts) ** 2 + p.sigma(ts) ** 2 - 1.0) <= 8 * EPS)


@given(s=st.floats(1e-3, 0.05), end=st.floats(0.5, 1.0), t=st.floats(0.0, 1.0))
def test_cosine_preserves_variance(s, end, t):
    # alpha = cos(theta)/cos(theta0) and sigma^2 = sin(theta - theta0) sin(theta + theta0)/cos^2(theta0):
    # a few correctly rounded trig calls and products, ~8 ulp in all; 16 eps.
    p = dc.CosineVPSDE(s=s, end=end)
    assert abs(p.alpha(t) ** 2 + p.sigma(t) ** 2 - 1.0) <= 16 * EPS


def test_cosine_end_one_reaches_pure_noise():
    p = dc.CosineVPSDE(end=1.0)
    assert p.alpha(1.0) == 0.0  # exactly: the schedule reaches pure noise
    assert p.sigma(1.0) == pytest.approx(1.0, abs=4 * EPS)
    assert p.log_snr(1.0) == -math.inf
    assert p.alpha(0.0) == pytest.approx(1.0, rel=4 * EPS)


# -- log-SNR ---------------------------------------------------------------------------------


@given(p=processes(), t1=st.floats(0.0, 1.0), gap=st.floats(1e-6, 1.0))
def test_log_snr_strictly_decreasing(p, t1, gap):
    t2 = min(t1 + gap, 1.0)
    if t2 <= t1:
        t1 = t2 - gap
    assert p.log_snr(t1) > p.log_snr(t2)
    grid = np.linspace(0.0, 1.0, 1001)
    assert np.all(np.diff(p.log_snr(grid)) < 0)


def _inverse_tolerance(p, t):
    """|t' - t| allowed when inverting lam = log_snr(t), i.e. the relative tolerance |t' - t| / t.

    Inverting is well conditioned as long as lam'(t) is not tiny: a relative error rho in lam
    (the backward error of evaluating and inverting log_snr with log/expm1/logaddexp formulas,
    a few ulp) moves t by rho (1 + |lam|) / |lam'(t)|, with lam' = 2 (alpha'/alpha - sigma'/sigma)
    taken from the process's own derivatives; we allow rho = 64 eps.  Near t = 0, lam' ~ -1/t,
    so this is a *relative* tolerance ~ 64 eps (1 + |lam|) in t.  The cosine closed form passes
    through alpha^2 = sigmoid(lam), which near alpha^2 = 1 carries an absolute error eps, i.e. a
    relative error eps / sigma^2 in sigma^2 and hence in lam: that term is added for it
    (measured: 5.6e-9 relative at t = 1e-6, against 2e-15 for VP).  Bisection
    (AffineProcess) resolves t to 2^-64, below all of this.
    """
    lam = p.log_snr(t)
    dlam = 2 * (p.d_alpha(t) / p.alpha(t) - p.d_sigma(t) / p.sigma(t))
    backward = 1 + abs(lam)
    if isinstance(p, dc.CosineVPSDE):
        backward += 1 / p.sigma(t) ** 2
    return 64 * EPS * backward / abs(dlam) + 2 * EPS * t


@given(p=processes(), t=times)
def test_log_snr_inverse_round_trip(p, t):
    back = p.log_snr_inverse(p.log_snr(t))
    assert abs(back - t) <= _inverse_tolerance(p, t)


@fixture_ok
@given(t=st.floats(0.01, 0.99))
def test_log_snr_inverse_round_trip_every_kind(process, t):
    ts = np.array([t, 0.5 * t, 0.5 + 0.5 * t])
    back = process.log_snr_inverse(process.log_snr(ts))
    tol = np.array([_inverse_tolerance(process, float(u)) for u in ts])
    assert np.all(np.abs(back - ts) <= tol)
    assert abs(process.log_snr_inverse(process.log_snr(t)) - t) <= _inverse_tolerance(process, t)


def test_log_snr_inverse_rejects_out_of_range(process):
    lo, hi = process.log_snr(1.0), process.log_snr(0.0)
    with pytest.raises(ValueError, match="lam must lie in"):
        process.log_snr_inverse(lo - 1.0)
    with pytest.raises(ValueError, match="lam must lie in"):
        process.log_snr_inverse(float("nan"))
    with pytest.raises(ValueError, match="lam must lie in"):
        process.log_snr_inverse(np.array([0.5 * (lo + min(hi, 20.0)), lo - 1.0]))
    if math.isfinite(hi):  # song2021: log_snr(0) = -2 log sigma_min is finite
        with pytest.raises(ValueError, match="lam must lie in"):
            process.log_snr_inverse(hi + 1.0)
    assert process.log_snr_inverse(lo) == pytest.approx(1.0, abs=1e-12)


# -- transition laws -------------------------------------------------------------------------


@given(p=processes(), ts=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_transitions_compose(p, ts):
    s, u, t = sorted(ts)
    su, ut, st_ = p.transition(s, u), p.transition(u, t), p.transition(s, t)
    # scale_st = scale_su scale_ut: ratios of alphas, a few ulp each
    assert st_.scale == pytest.approx(su.scale * ut.scale, rel=16 * EPS)
    # var_st = scale_ut^2 var_su + var_ut.  The generic variance sigma_t^2 - scale^2 sigma_s^2
    # is a difference, so its rounding error is a few eps times the size of the two terms
    # it subtracts (sigma_t^2 bounds both), not of the result; 32 eps of that.
    composed = ut.scale**2 * su.std**2 + ut.std**2
    size = p.sigma(t) ** 2 + p.sigma(u) ** 2 + p.sigma(s) ** 2
    assert abs(st_.std**2 - composed) <= 32 * EPS * size


def test_transition_from_zero_is_the_marginal(process):
    for t in (0.0, 0.1, 0.5, 1.0):
        tr = process.transition(0.0, t)
        assert tr.scale == pytest.approx(process.alpha(t), rel=4 * EPS)
        if is_song2021(process):  # the SDE adds only sigma_ve(t)^2 - sigma_min^2 after t = 0
            expect = math.sqrt(process.sigma(t) ** 2 - process.sigma_min**2)
        else:
            expect = process.sigma(t)
        assert tr.std == pytest.approx(expect, rel=1e-12, abs=1e-300)


def test_transition_arrays_and_order():
    p = dc.VPSDE()
    s, t = np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.2, 0.9])
    tr = p.transition(s, t)
    for i in range(3):
        one = p.transition(float(s[i]), float(t[i]))
        assert tr.scale[i] == pytest.approx(one.scale, rel=1e-14)
        assert tr.std[i] == pytest.approx(one.std, rel=1e-14, abs=1e-300)
    with pytest.raises(ValueError, match="s <= t"):
        p.transition(0.6, 0.5)
    with pytest.raises(ValueError, match="s <= t"):
        p.transition(np.array([0.1, 0.6]), np.array([0.2, 0.5]))


def test_sample_transition_matches_transition_law(process):
    # z = (x_t - scale x_s) / std must be N(0, I): with n d = 40000 draws the sample mean has
    # standard error 1/sqrt(n d) = 0.005 and the sample variance sqrt(2/(n d)) = 0.0071.
    # k = 4 standard errors: a false alarm has probability ~6e-5 per check.
    n, d, k = 20_000, 2, 4.0
    rng = np.random.default_rng(7)
    x_s = rng.standard_normal((n, d)) * 3.0 + 1.0
    for s, t in ((0.3, 0.7), (np.full(n, 0.1), np.linspace(0.2, 1.0, n))):
        tr = process.transition(s, t)
        x_t = process.sample_transition(x_s, s, t, rng=rng)
        scale = np.reshape(tr.scale, (-1, 1)) if np.ndim(tr.scale) else tr.scale
        std = np.reshape(tr.std, (-1, 1)) if np.ndim(tr.std) else tr.std
        z = (x_t - scale * x_s) / std
        assert abs(z.mean()) <= k / math.sqrt(n * d)
        assert abs(z.var() - 1.0) <= k * math.sqrt(2.0 / (n * d))


# -- marginals against Monte Carlo of the forward SDE ----------------------------------------

DATA = dc.Gaussian(np.array([1.0, -0.5]), np.array([[0.5, 0.2], [0.2, 0.3]]))


def moment_recursion(process, m0, c0, steps, t_save):
    """Mean and covariance of the Euler–Maruyama chain, exactly.

    For dx = f x dt + g dW the EM step x' = (1 + f h) x + g sqrt(h) z has, exactly,
    m' = (1 + f h) m and C' = (1 + f h)^2 C + g^2 h I: this is E[EM], with no sampling error.
    """
    h = 1.0 / steps
    ts = np.arange(steps) * h
    a = 1 + process.drift_coef(ts) * h
    g2h = process.diffusion_squared(ts) * h
    m, c, out = m0.copy(), c0.copy(), {}
    for i in range(steps):
        m = a[i] * m
        c = a[i] ** 2 * c + g2h[i] * np.eye(len(m0))
        for ts_ in t_save:
            if i + 1 == round(ts_ * steps):
                out[ts_] = (m, c)
    return out


def test_moment_recursion_converges_to_marginal_at_first_order(process):
    # Noise-free check that alpha, sigma are the marginal coefficients of the process's own
    # f and g^2.  The EM moment recursion is a first-order scheme for the moment ODEs, so its
    # error is e(h) = C h + D h^2 + ...: halving h must halve it (ratio 2 + O(h D/C); measured
    # 1.990-2.005) and the Richardson combination 2 R_{h/2} - R_h must remove the leading term
    # (measured: <= 1% of e(h/2)).  A mismatch between (alpha, sigma) and (f, g^2) leaves an
    # O(1) error that does not shrink: ratio ~ 1.
    law0 = dc.marginal(process, DATA, 0.0)
    m0, c0 = np.asarray(law0.mean), np.asarray(law0.cov)
    coarse, fine = (moment_recursion(process, m0, c0, steps, (0.5, 1.0)) for steps in (1000, 2000))
    for t in (0.5, 1.0):
        law = dc.marginal(process, DATA, t)
        exact = np.concatenate([law.mean, law.cov.ravel()])
        e_h, e_h2 = (np.concatenate([r[t][0], r[t][1].ravel()]) - exact for r in (coarse, fine))
        assert 1.9 < np.linalg.norm(e_h) / np.linalg.norm(e_h2) < 2.1, (t, e_h, e_h2)
        assert np.linalg.norm(2 * e_h2 - e_h) <= 0.05 * np.linalg.norm(e_h2), (t, e_h, e_h2)


def test_marginal_matches_monte_carlo_of_forward_sde(process):
    # Euler–Maruyama with 1000 uniform steps and 20 000 particles started from the t = 0 law
    # (the data; the data plus N(0, sigma_min^2) for song2021).
    # * Sampling error: mean_i has SE sqrt(C_ii / n); cov_ij has SE sqrt((C_ii C_jj + C_ij^2)/n)
    #   (Gaussian fourth moments; the EM chain is exactly Gaussian here).  k = 4.5: 2 times x 5
    #   entries x 6 processes = 60 comparisons, two-sided false-alarm 7e-6 each, 4e-4 in all.
    # * Discretisation bias: EM is weakly first order and its moments obey the recursion above
    #   exactly, so bias(h) = R_h - exact ~ C h and R_h - R_{h/2} ~ C h / 2: the Richardson
    #   estimate 2 |R_h - R_{h/2}|, times a safety factor 1.5, bounds the bias without using
    #   ``marginal`` at all.  It is < 1 SE everywhere except for the cosine schedule at t = 1
    #   (f(1) = -184, so 1 + f h = 0.82): there the covariance bias is ~6 SE and the sample
    #   covariance is indeed off by 5.4 and 6.1 SE (seed 2024), which the bound (9.1 SE) covers.
    n, steps, k = 20_000, 1000, 4.5
    rng = np.random.default_rng(2024)
    law0 = dc.marginal(process, DATA, 0.0)
    x = law0.sample(n, rng=rng)
    h = 1.0 / steps
    ts = np.arange(steps) * h
    f, g = process.drift_coef(ts), np.sqrt(process.diffusion_squared(ts))
    saved = {}
    for i in range(steps):
        x = x + f[i] * x * h + g[i] * math.sqrt(h) * rng.standard_normal(x.shape)
        if i + 1 in (steps // 2, steps):
            saved[(i + 1) / steps] = x.copy()
    m0, c0 = np.asarray(law0.mean), np.asarray(law0.cov)
    coarse = moment_recursion(process, m0, c0, steps, (0.5, 1.0))
    fine = moment_recursion(process, m0, c0, 2 * steps, (0.5, 1.0))
    for t, xs in saved.items():
        law = dc.marginal(process, DATA, t)
        mean, cov = np.asarray(law.mean), np.asarray(law.cov)
        se_mean = np.sqrt(np.diag(cov) / n)
        se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
        bias_mean = 3.0 * np.abs(coarse[t][0] - fine[t][0])
        bias_cov = 3.0 * np.abs(coarse[t][1] - fine[t][1])
        z_mean = (xs.mean(0) - mean) / (k * se_mean + bias_mean)
        z_cov = (np.cov(xs.T) - cov) / (k * se_cov + bias_cov)
        assert np.all(np.abs(z_mean) <= 1), (t, z_mean)
        assert np.all(np.abs(z_cov) <= 1), (t, z_cov)


# -- the two VE variants ---------------------------------------------------------------------


def test_ve_variants():
    smin, smax = 0.02, 30.0
    exact, song = dc.VESDE(smin, smax), dc.VESDE(smin, smax, variant="song2021")
    t = np.linspace(0.0, 1.0, 21)
    sigma_ve = smin * (smax / smin) ** t
    np.testing.assert_allclose(exact.sigma(t), np.sqrt(sigma_ve**2 - smin**2), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(song.sigma(t), sigma_ve, rtol=1e-12)
    # the same SDE: g^2 = d sigma_ve^2 / dt = 2 log(smax/smin) sigma_ve^2, alpha = 1, f = 0
    g2 = 2 * math.log(smax / smin) * sigma_ve**2
    for p in (exact, song):
        np.testing.assert_allclose(p.diffusion_squared(t), g2, rtol=1e-12)
        np.testing.assert_array_equal(p.alpha(t), 1.0)
        np.testing.assert_array_equal(p.drift_coef(t), 0.0)
        assert p.prior_std == pytest.approx(p.sigma(1.0), rel=1e-15)


# -- AffineProcess ---------------------------------------------------------------------------


def _vp_lambdas(bmin=0.1, bmax=20.0):
    half_b = lambda t: 0.5 * (bmin * t + 0.5 * (bmax - bmin) * t**2)  # noqa: E731
    beta = lambda t: bmin + (bmax - bmin) * t  # noqa: E731
    alpha = lambda t: np.exp(-half_b(t))  # noqa: E731
    sigma = lambda t: np.sqrt(-np.expm1(-2 * half_b(t)))  # noqa: E731
    d_alpha = lambda t: -0.5 * beta(t) * alpha(t)  # noqa: E731
    d_sigma = lambda t: 0.5 * beta(t) * np.exp(-2 * half_b(t)) / sigma(t)  # noqa: E731
    return alpha, sigma, d_alpha, d_sigma


def test_affine_with_finite_differences_matches_vp():
    # The AffineProcess differentiates alpha, sigma with a 4th-order stencil, h = 1e-3: error
    # h^4 |phi^(5)| / 5 (one-sided within 2h of the ends).  With |phi^(5)/phi'| <= (beta/2)^4 ~ 1e4
    # for alpha and <= (1/t)^4 for sigma ~ sqrt(t), on t in [0.1, 1] that is ~1e-9 relative
    # (measured: 3e-10 at t = 1, where the stencil is one-sided).
    alpha, sigma, _, _ = _vp_lambdas()
    vp, affine = dc.VPSDE(), dc.AffineProcess(alpha, sigma)
    t = np.linspace(0.1, 1.0, 91)
    np.testing.assert_allclose(affine.drift_coef(t), vp.drift_coef(t), rtol=1e-9)
    np.testing.assert_allclose(affine.diffusion_squared(t), vp.diffusion_squared(t), rtol=1e-9)
    np.testing.assert_allclose(affine.alpha(t), vp.alpha(t), rtol=1e-14)
    np.testing.assert_allclose(affine.sigma(t), vp.sigma(t), rtol=1e-14)


def test_affine_with_given_derivatives_is_exact():
    # exact derivatives: the only differences are rounding of the same formulas (~10 eps)
    vp, affine = dc.VPSDE(), dc.AffineProcess(*_vp_lambdas())
    t = np.linspace(1e-3, 1.0, 101)
    np.testing.assert_allclose(affine.drift_coef(t), vp.drift_coef(t), rtol=1e-13)
    np.testing.assert_allclose(affine.diffusion_squared(t), vp.diffusion_squared(t), rtol=1e-13)
    np.testing.assert_allclose(affine.log_snr(t), vp.log_snr(t), rtol=1e-13)


def test_affine_validates():
    with pytest.raises(TypeError, match="alpha_fn must be callable"):
        dc.AffineProcess(1.0, lambda t: t)
    with pytest.raises(ValueError, match="fd_step"):
        dc.AffineProcess(lambda t: 1 - t, lambda t: t, fd_step=0.1)


# -- prior -----------------------------------------------------------------------------------


def test_prior_log_prob_is_the_gaussian_formula(process):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 2, 3)) * process.prior_std
    ref = stats.multivariate_normal(np.zeros(6), process.prior_std**2 * np.eye(6)).logpdf(x.reshape(50, 6))
    np.testing.assert_allclose(process.prior_log_prob(x), ref, rtol=1e-12)


def test_prior_sample_has_prior_std(process):
    # n d = 40 000 standard normals scaled by prior_std: the sample mean has SE prior_std / 200,
    # the sample variance SE prior_std^2 sqrt(2 / 40000); k = 4.
    n, d, k = 20_000, 2, 4.0
    x = process.prior_sample((n, d), rng=np.random.default_rng(11))
    assert x.shape == (n, d) and x.dtype == np.float64
    s2 = process.prior_std**2
    assert abs(x.mean()) <= k * process.prior_std / math.sqrt(n * d)
    assert abs(x.var() - s2) <= k * s2 * math.sqrt(2.0 / (n * d))
    same = process.prior_sample((n, d), rng=np.random.default_rng(11))
    np.testing.assert_array_equal(x, same)  # same seed, same numbers
