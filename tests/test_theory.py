"""Theory you can measure: exact reverse-SDE laws, the score-error KL bound, rates, label corruption."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from diffcore import VPSDE, Gaussian, GaussianMixture, exact_score, marginal, sample, w2_gaussian
from diffcore.theory import (
    EmpiricalScore,
    empirical_marginal,
    gaussian_kl,
    grid_path_kl,
    nearest_distance,
    reverse_sde_law,
    score_error_bound,
    w2_1d,
)

PROCESS = VPSDE()
DATA = Gaussian(np.array([1.0, -0.5]), np.array([[1.0, 0.3], [0.3, 0.5]]))
OTHER = Gaussian(np.array([0.5, 0.0]), np.array([[0.6, -0.1], [-0.1, 0.9]]))
EXACT = exact_score(PROCESS, DATA)
P1 = marginal(PROCESS, DATA, 1.0)


def perturbed(eps: float, kind: int = 0):
    """The exact score plus ``eps`` times an affine error (a rotation, a scaling, a constant)."""
    mats = [np.array([[0.0, 1.0], [-1.0, 0.5]]), np.diag([0.5, -0.3]), np.zeros((2, 2))]
    shifts = [np.array([0.2, 0.0]), np.zeros(2), np.array([0.3, -0.4])]
    return lambda x, t: EXACT(x, t) + eps * (x @ mats[kind].T + shifts[kind])


def test_exact_score_gives_the_exact_law():
    # started at the exact p_1, the exact score carries it to p_0: KL at rounding (the moment equations
    # are solved at rtol 1e-12)
    res = score_error_bound(PROCESS, DATA, EXACT, prior=P1)
    assert res.kl < 1e-10 and res.score_term < 1e-12 and res.prior_kl == 0.0, res
    law = reverse_sde_law(PROCESS, EXACT, P1, t_min=0.3)
    want = marginal(PROCESS, DATA, 0.3)
    assert np.max(np.abs(np.asarray(law.cov) - np.asarray(want.cov))) < 1e-9


def test_reverse_law_matches_monte_carlo():
    # Euler-Maruyama with 400 steps, 6000 paths: weak error O(h) ~ 1e-3 and a standard error ~ 0.015 for
    # the means; the tolerance is 5 standard errors plus 0.01 for the discretisation
    score = perturbed(0.4)
    law = reverse_sde_law(PROCESS, score, P1, t_min=1e-3)
    n = 6000
    x1 = P1.sample(n, rng=1)
    out = sample(PROCESS, score, x1, method="euler_maruyama", steps=400, t_min=1e-3, rng=2).x
    mean, cov = np.asarray(law.mean), np.asarray(law.cov)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(out.mean(0) - mean) < 5 * se_mean + 0.01), (out.mean(0), mean)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(out.T) - cov) < 5 * se_cov + 0.01), (np.cov(out.T), cov)


def test_gaussian_kl_against_quadrature_and_monte_carlo():
    # 1-D: adaptive quadrature of p log(p/q) to 1e-10
    m0, s0, m1, s1 = 0.3, 0.7, -0.2, 1.3
    lp = lambda x, m, s: -0.5 * ((x - m) / s) ** 2 - np.log(s * np.sqrt(2 * np.pi))  # noqa: E731
    quad = integrate.quad(lambda x: np.exp(lp(x, m0, s0)) * (lp(x, m0, s0) - lp(x, m1, s1)), -12, 12, epsabs=1e-12)[0]
    assert abs(gaussian_kl(np.array([m0]), np.array([[s0**2]]), np.array([m1]), np.array([[s1**2]])) - quad) < 1e-9
    # 2-D: Monte Carlo mean of log p - log q, within 5 standard errors
    x = DATA.sample(40000, rng=3)
    ratio = np.asarray(DATA.log_prob(x)) - np.asarray(OTHER.log_prob(x))
    kl = gaussian_kl(DATA.mean, DATA.cov, OTHER.mean, OTHER.cov)
    assert abs(ratio.mean() - kl) < 5 * ratio.std() / np.sqrt(x.shape[0])


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("eps", [0.05, 0.5, 2.0])
def test_bound_holds(kind, eps):
    res = score_error_bound(PROCESS, DATA, perturbed(eps, kind), t_min=1e-3)
    assert 0 < res.kl <= res.bound * (1 + 1e-9), (res.kl, res.bound)


def test_equality_when_the_score_is_another_laws_score():
    # s_theta = grad log q_t and the model starts at q_1: the model is the time reversal of the forward process
    # from q_0, both path laws share the forward kernel given x_0, and the bound is an equality (to the ODE
    # tolerance); its value is KL(p_0 || q_0)
    res = score_error_bound(PROCESS, DATA, exact_score(PROCESS, OTHER), prior=marginal(PROCESS, OTHER, 1.0))
    kl = gaussian_kl(DATA.mean, DATA.cov, OTHER.mean, OTHER.cov)
    assert abs(res.kl - res.bound) < 1e-9 and abs(res.kl - kl) < 1e-9, (res.kl, res.bound, kl)


def test_grid_path_kl_increases_to_the_girsanov_integral():
    score = perturbed(0.3)
    res = score_error_bound(PROCESS, DATA, score)
    kls = [grid_path_kl(PROCESS, DATA, score, np.linspace(1.0, 0.0, n + 1)) for n in (1, 4, 16)]
    # data processing: marginal KL <= grid KL, nested refinements increase it, all below the path KL
    assert res.kl <= kls[0] * (1 + 1e-9) and kls[0] < kls[1] < kls[2] < res.bound, (res.kl, kls, res.bound)
    # the gap to the Girsanov integral falls with the grid, faster once the steps resolve the schedule
    # (measured 0.97, 0.78, 0.32 for 1, 4, 16 steps)
    gaps = [res.bound - k for k in kls]
    assert gaps[2] < gaps[1] / 2 and gaps[1] < gaps[0], gaps


def test_rates_in_the_score_error():
    # with the exact prior, KL ~ eps^2 and W2 ~ eps exactly as eps -> 0 (both sides are exact numbers, so the
    # slopes are within O(eps) of 2 and 1: tolerance 0.05 over eps in [1e-3, 1e-2])
    eps = np.array([1e-3, 3e-3, 1e-2])
    kls, w2s = [], []
    for e in eps:
        res = score_error_bound(PROCESS, DATA, perturbed(e), prior=P1)
        kls.append(res.kl)
        w2s.append(float(w2_gaussian(res.law.mean, res.law.cov, res.target.mean, res.target.cov)))
    assert abs(np.polyfit(np.log(eps), np.log(kls), 1)[0] - 2) < 0.05
    assert abs(np.polyfit(np.log(eps), np.log(w2s), 1)[0] - 1) < 0.05


def test_parametric_rate_in_n():
    # Gaussian fit from n points; the exact-score sampler started at the fit's q_1 outputs the fit itself
    # (the equality case), so W2 to the truth is w2_gaussian of the fit. E W2 ~ c n^{-1/2}: over 300
    # repetitions the relative standard error of each mean is ~4 %, i.e. a slope error ~0.04 over a 64x
    # range of n; tolerance 0.1
    rng = np.random.default_rng(5)
    ns, means = [50, 400, 3200], []
    for n in ns:
        vals = []
        for _ in range(300):
            x = DATA.sample(n, rng)
            vals.append(float(w2_gaussian(x.mean(0), np.cov(x.T), DATA.mean, DATA.cov)))
        means.append(np.mean(vals))
    assert abs(np.polyfit(np.log(ns), np.log(means), 1)[0] + 0.5) < 0.1, means


def test_memorisation_and_the_empirical_score():
    train = np.random.default_rng(6).normal(size=(20, 2))
    score = EmpiricalScore(PROCESS, train)
    # the empirical score is the exact score of the empirical marginal
    x = np.random.default_rng(7).normal(size=(5, 2))
    law = empirical_marginal(PROCESS, train, 0.2)
    assert np.max(np.abs(score(x, 0.2) - np.asarray(law.score(x)))) < 1e-10
    # sampling down to t_min: the distance to the nearest training point falls like sigma(t_min) ~ t_min^{1/2}
    tmins, dist = [1e-2, 1e-3, 1e-4], []
    for tm in tmins:
        x1 = PROCESS.prior_sample((400, 2), rng=8)
        out = sample(PROCESS, score, x1, method="ddim", steps=200, t_min=tm).x
        dist.append(np.median(nearest_distance(out, train)))
    slope = np.polyfit(np.log(tmins), np.log(dist), 1)[0]
    assert dist[-1] < 0.02 and abs(slope - 0.5) < 0.15, (dist, slope)


def test_w2_1d_against_closed_forms():
    assert abs(w2_1d(Gaussian([0.0], [[1.0]]), Gaussian([0.5], [[4.0]])) - np.sqrt(1.25)) < 1e-5
    mix = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[0.09]], [[0.09]]])
    shifted = GaussianMixture([0.5, 0.5], [[-0.7], [1.3]], [[[0.09]], [[0.09]]])
    assert abs(w2_1d(mix, shifted) - 0.3) < 1e-5  # a translation moves every quantile by 0.3
    assert w2_1d(mix, mix) < 1e-8


def test_corruption_raises_entropy():
    # the Gaussian fit of class 0 trained on labels flipped with rate eta: E log det C_eta grows with eta
    # (at the population level C_eta = I + eta (1 - eta) D D^T); over 4000 training sets the standard
    # errors are ~0.01 against differences ~0.1, so 4 standard errors separate them
    rng = np.random.default_rng(9)
    reps, n, d = 4000, 12, 4
    mu1 = np.array([2.0, 0, 0, 0])
    ent, w2 = {}, {}
    for eta in (0.0, 0.1, 0.2):
        flip = rng.random((reps, n)) < eta
        x = flip[:, :, None] * mu1 + rng.normal(size=(reps, n, d))
        m = x.mean(1)
        c = np.einsum("rni,rnj->rij", x - m[:, None], x - m[:, None]) / n
        lam = np.linalg.eigvalsh(c)
        h = 0.5 * np.sum(np.log(2 * np.pi * np.e * lam), axis=1)
        # W2 to N(0, I) in closed form: |m|^2 + tr C + d - 2 tr C^{1/2}
        w = np.sqrt(np.sum(m**2, 1) + np.sum(lam, 1) + d - 2 * np.sum(np.sqrt(lam), 1))
        ent[eta], w2[eta] = (h.mean(), h.std() / np.sqrt(reps)), (w.mean(), w.std() / np.sqrt(reps))
    assert ent[0.1][0] - ent[0.0][0] > 4 * np.hypot(ent[0.1][1], ent[0.0][1]), ent
    assert ent[0.2][0] - ent[0.1][0] > 4 * np.hypot(ent[0.2][1], ent[0.1][1]), ent
    # and in this laboratory the W2 to the clean class law does NOT fall (see the book chapter)
    assert w2[0.1][0] - w2[0.0][0] > 2 * np.hypot(w2[0.1][1], w2[0.0][1]), w2


def test_bad_input():
    with pytest.raises(TypeError, match="process"):
        score_error_bound("vp", DATA, EXACT)
    with pytest.raises(TypeError, match="data must be a Gaussian"):
        score_error_bound(PROCESS, GaussianMixture([1.0], [[0.0, 0.0]], [np.eye(2)]), EXACT)
    with pytest.raises(ValueError, match="affine"):
        score_error_bound(PROCESS, DATA, lambda x, t: EXACT(x, t) + np.sin(x))
    with pytest.raises(ValueError, match="t_min must be < t_max"):
        reverse_sde_law(PROCESS, EXACT, P1, t_min=0.5, t_max=0.5)
    with pytest.raises(ValueError, match="ts must decrease"):
        grid_path_kl(PROCESS, DATA, EXACT, [0.0, 1.0])
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_kl(np.zeros(1), np.zeros((1, 1)), np.zeros(1), np.eye(1))
    with pytest.raises(ValueError, match="shape"):
        gaussian_kl(np.array([0.0, 1.0]), np.eye(2), np.zeros(1), np.eye(1))
    with pytest.raises(ValueError, match="t > 0"):
        EmpiricalScore(PROCESS, np.zeros((3, 2)))(np.zeros((1, 2)), 0.0)
    with pytest.raises(ValueError, match="t > 0"):
        empirical_marginal(PROCESS, np.zeros((3, 2)), 0.0)
    with pytest.raises(ValueError, match="finite"):
        EmpiricalScore(PROCESS, np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="one-dimensional"):
        w2_1d(DATA, DATA)
