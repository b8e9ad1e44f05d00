"""The conditioning laboratory (diffcore.conditional) against independent oracles.

Oracles: Bayes by quadrature on a grid (spectrally accurate, ~1e-12), the information form of
the Gaussian posterior, Bayes' rule at level t with marginals from :func:`diffcore.marginal`,
central finite differences (step 1e-5: truncation ~h^2 |F'''| ~ 1e-10, round-off ~eps/h ~ 1e-11,
so 1e-7 leaves a wide margin and still catches any wrong term, which is O(1)), the probit
closed form ``P(y = 1) = Phi(h m / sqrt(s^2 + h^2 c))``, and sampling checks with tolerances
of 4 standard errors (estimated from the samples themselves).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import diffcore as dc
from diffcore.conditional import (
    GuidedScore,
    LabelledMixture,
    LinearGaussianMeasurement,
    SignMeasurement,
    TiltedLaw,
    classifier_free_guidance,
    classifier_guidance,
    exact_classifier,
    exact_classifier_score,
    exact_conditional_score,
    exact_likelihood_score,
    exact_posterior_covariance,
    posterior,
    quadrature_posterior,
)

# -- the laboratory ------------------------------------------------------------------------------

W2D = np.array([0.3, 0.25, 0.45])
M2D = np.array([[-1.5, 0.5], [1.0, -1.0], [1.2, 1.4]])
C2D = np.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]], [[0.45, 0.0], [0.0, 0.25]]])
LAB2D = LabelledMixture(W2D, M2D, C2D, [0, 1, 1])
PRIOR2D = dc.GaussianMixture(W2D, M2D, C2D)
PRIOR1D = dc.GaussianMixture([0.4, 0.6], [[-1.0], [1.5]], [[[0.3]], [[0.5]]])

MEAS2D = {
    "inpainting": LinearGaussianMeasurement.inpainting(2, [1], noise_std=0.3),
    "projection": LinearGaussianMeasurement.random_projection(1, 2, noise_std=0.4, rng=3),
    "blur": LinearGaussianMeasurement.blur(2, width=1.0, noise_std=0.35),
}
Y2D = {"inpainting": np.array([0.7]), "projection": np.array([-0.4]), "blur": np.array([0.3, -0.2])}
MEAS1D = LinearGaussianMeasurement([[0.8]], 0.5)
Y1D = np.array([0.6])

VP, VE = dc.VPSDE(), dc.VESDE(sigma_min=0.01, sigma_max=10.0)
SHIFTED = dc.MeanRevertingSDE(mu=0.5)
XS = np.array([[0.3, -0.2], [-1.0, 0.8], [1.5, 1.1], [0.0, -1.4]])  # 4 points (t-arrays below are (4,))
TS = np.array([0.05, 0.3, 0.6, 0.9])
FD_H, FD_TOL = 1e-5, 1e-7


def fd_grad(f, x, h=FD_H):
    """Central differences of ``f: (n, d) -> (n,)`` along each axis, ``(n, d)``."""
    out = np.empty_like(x)
    for i in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[i] = h
        out[:, i] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h)
    return out


def np_(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def log_p_t(process, law, x, t):
    """``log p_t(x)`` of ``law`` at a float ``t`` (the pushed mixture's density)."""
    return np_(dc.marginal(process, law, t).log_prob(x))


def log_evidence(prior, meas, y):
    """``log p(y) = log sum_k w_k N(y; H m_k, H C_k H^T + s^2 I)``."""
    H, s2 = np.asarray(meas.H), meas.noise_std**2
    w, m, c = (np.asarray(a) for a in (prior.weights, prior.means, prior.covs))
    terms = [
        math.log(w[k]) + stats.multivariate_normal(H @ m[k], H @ c[k] @ H.T + s2 * np.eye(len(y))).logpdf(y)
        for k in range(len(w))
    ]
    return float(logsumexp(terms))


@pytest.fixture(scope="module")
def quadratures():
    """The 2-D quadrature posteriors (one per measurement) and the 1-D one, computed once."""
    out = {name: quadrature_posterior(PRIOR2D, MEAS2D[name], Y2D[name], resolution=401) for name in MEAS2D}
    out["1d"] = quadrature_posterior(PRIOR1D, MEAS1D, Y1D, resolution=2001)
    return out


# -- the exact posterior against Bayes by quadrature ----------------------------------------------


@pytest.mark.parametrize("name", ["1d", *MEAS2D])
def test_posterior_matches_quadrature(quadratures, name):
    prior, meas, y = (PRIOR1D, MEAS1D, Y1D) if name == "1d" else (PRIOR2D, MEAS2D[name], Y2D[name])
    post, grid = posterior(prior, meas, y), quadratures[name]
    np.testing.assert_allclose(np_(post.mean), grid.mean, atol=1e-10)
    np.testing.assert_allclose(np_(post.cov), grid.cov, atol=1e-10)
    # posterior component weights: P(k | y) = E[P(k | x) | y], since y depends on k only through x
    w, m, c = (np.asarray(a) for a in (prior.weights, prior.means, prior.covs))
    logj = np.stack([np.log(w[k]) + stats.multivariate_normal(m[k], c[k]).logpdf(grid.points) for k in range(len(w))])
    resp = np.exp(logj - logsumexp(logj, axis=0)).T
    np.testing.assert_allclose(np_(post.weights), grid.expectation(lambda _: resp), atol=1e-10)
    # each component's posterior moments: E[x 1{k} | y] / P(k | y)
    for k in range(len(w)):
        mk = grid.expectation(lambda p: resp[:, k : k + 1] * p) / np_(post.weights)[k]  # noqa: B023
        np.testing.assert_allclose(np_(post.means)[k], mk, atol=1e-9)
    # the normaliser of p(x) p(y | x) is the evidence p(y)
    assert grid.log_normaliser == pytest.approx(log_evidence(prior, meas, y), abs=1e-10)


def test_posterior_labelled_keeps_labels_and_class_masses(quadratures):
    post = posterior(LAB2D, MEAS2D["blur"], Y2D["blur"])
    assert isinstance(post, LabelledMixture)
    np.testing.assert_array_equal(post.labels, LAB2D.labels)
    grid = quadratures["blur"]
    lab0 = TiltedLaw(LAB2D, 0, 1.0)  # log p(y = 0 | x) at time 0, an independent route to the class masses
    p0 = grid.expectation(lambda p: np.exp(lab0.log_classifier(p)))
    np.testing.assert_allclose(np_(post.class_probs), [p0, 1 - p0], atol=1e-10)


def test_posterior_one_component_is_kalman(backend):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    m0, c0 = rng.normal(size=3), a @ a.T + 0.5 * np.eye(3)
    H, s, y = rng.normal(size=(2, 3)), 0.4, np.array([0.3, -1.2])
    # information form (a different formula from the gain form of the code)
    cp = np.linalg.inv(np.linalg.inv(c0) + H.T @ H / s**2)
    mp = cp @ (np.linalg.solve(c0, m0) + H.T @ y / s**2)
    post = posterior(dc.Gaussian(backend(m0), backend(c0)), LinearGaussianMeasurement(backend(H), s), backend(y))
    assert isinstance(post, dc.Gaussian)
    backend.check_like(post.mean)
    tol = 1e-10 if backend.dtype == "float64" else 1e-4
    np.testing.assert_allclose(backend.to_numpy(post.mean), mp, atol=tol * 10)
    np.testing.assert_allclose(backend.to_numpy(post.cov), cp, atol=tol * 10)


def test_posterior_backends(backend):
    ref = posterior(LAB2D, MEAS2D["blur"], Y2D["blur"])
    lab = LabelledMixture(backend(W2D), backend(M2D), backend(C2D), [0, 1, 1])
    meas = LinearGaussianMeasurement(backend(np.asarray(MEAS2D["blur"].H)), 0.35)
    post = posterior(lab, meas, backend(Y2D["blur"]))
    backend.check_like(post.means)
    for a, b in ((post.weights, ref.weights), (post.means, ref.means), (post.covs, ref.covs)):
        np.testing.assert_allclose(backend.to_numpy(a), b, rtol=backend.rtol, atol=backend.rtol)


# -- labelled mixtures: conditional scores and classifiers ----------------------------------------


@pytest.mark.parametrize("process", [VP, VE, SHIFTED], ids=["vp", "ve", "mean-reverting"])
@pytest.mark.parametrize("t", [0.1, 0.7])
def test_conditional_and_classifier_scores_are_gradients(process, t):
    prior = LAB2D.mixture
    clf = np_(exact_classifier(process, LAB2D)(XS, t))
    np.testing.assert_allclose(np.exp(clf).sum(axis=1), 1.0, atol=1e-12)
    for y in LAB2D.classes:
        cond = LAB2D.conditional(y)

        def log_cond(x, cond=cond):
            return log_p_t(process, cond, x, t)

        def log_clf(x, y=y):
            return np_(exact_classifier(process, LAB2D)(x, t))[:, y]

        # Bayes at level t: log p_t(y | x) = log p_t(x | y) + log p(y) - log p_t(x)
        bayes = log_cond(XS) + math.log(float(LAB2D.class_probs[y])) - log_p_t(process, prior, XS, t)
        np.testing.assert_allclose(clf[:, y], bayes, atol=1e-11)
        s_cond = np_(exact_conditional_score(process, LAB2D, y)(XS, t))
        s_clf = np_(exact_classifier_score(process, LAB2D, y)(XS, t))
        np.testing.assert_allclose(s_cond, fd_grad(log_cond, XS), atol=FD_TOL)
        np.testing.assert_allclose(s_clf, fd_grad(log_clf, XS), atol=FD_TOL)
        np.testing.assert_allclose(s_clf, s_cond - np_(dc.exact_score(process, prior)(XS, t)), atol=1e-12)


def test_per_sample_labels_and_times():
    ys = np.array([0, 1, 1, 0])
    for make in (exact_conditional_score, exact_classifier_score):
        rows = np_(make(VP, LAB2D, ys)(XS, TS))
        for i in range(len(XS)):
            np.testing.assert_allclose(rows[i], np_(make(VP, LAB2D, int(ys[i]))(XS[i : i + 1], float(TS[i])))[0])
    rows = np_(exact_classifier(VP, LAB2D)(XS, TS))
    for i in range(len(XS)):
        np.testing.assert_allclose(rows[i], np_(exact_classifier(VP, LAB2D)(XS[i : i + 1], float(TS[i])))[0])


def test_labelled_fields_backends(backend):
    lab = LabelledMixture(backend(W2D), backend(M2D), backend(C2D), [0, 1, 1])
    x, ts = backend(XS), backend(TS)
    for field in (exact_conditional_score(VP, lab, 1), exact_classifier_score(VP, lab, np.array([0, 1, 1, 0]))):
        out = field(x, ts)
        backend.check_like(out)
        ref = type(field)(VP, LAB2D, field.y)(XS, TS)
        np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=backend.rtol, atol=backend.rtol)
    backend.check_like(lab.class_probs)
    np.testing.assert_allclose(backend.to_numpy(lab.class_probs), [W2D[0], W2D[1] + W2D[2]], rtol=backend.rtol)
    one = exact_conditional_score(VP, lab, backend.torch.tensor(1) if backend.is_torch else np.array(1))  # 0-d label
    np.testing.assert_allclose(
        backend.to_numpy(one(x, 0.3)),
        exact_conditional_score(VP, LAB2D, 1)(XS, 0.3),
        rtol=10 * backend.rtol,
        atol=10 * backend.rtol,
    )
    out = exact_classifier(VP, lab)(x, 0.3)
    backend.check_like(out)
    np.testing.assert_allclose(backend.to_numpy(out), exact_classifier(VP, LAB2D)(XS, 0.3), atol=10 * backend.rtol)


def test_sample_labelled_class_frequencies():
    n = 4000
    ys, x = LAB2D.sample_labelled(n, rng=1)
    p1 = float(LAB2D.class_probs[1])
    assert abs(np.mean(ys == 1) - p1) < 4 * math.sqrt(p1 * (1 - p1) / n)
    # the points of class 0 come from component 0 alone: their mean is m_0 within 4 SE
    x0 = np.asarray(x)[ys == 0]
    se = np.sqrt(np.diag(C2D[0]) / len(x0))
    assert np.all(np.abs(x0.mean(axis=0) - M2D[0]) < 4 * se)


# -- the exact noisy-level likelihood score --------------------------------------------------------


@pytest.mark.parametrize("process", [VP, VE, SHIFTED], ids=["vp", "ve", "mean-reverting"])
@pytest.mark.parametrize("name", list(MEAS2D))
def test_exact_likelihood_score_is_bayes_at_level_t(process, name):
    meas, y = MEAS2D[name], Y2D[name]
    post = posterior(PRIOR2D, meas, y)
    lik = exact_likelihood_score(process, PRIOR2D, meas, y)
    for t in (0.02, 0.5, TS):
        diff = np_(dc.exact_score(process, post)(XS, t)) - np_(dc.exact_score(process, PRIOR2D)(XS, t))
        np.testing.assert_allclose(np_(lik(XS, t)), diff, atol=1e-10)
    log_py = log_evidence(PRIOR2D, meas, y)
    for t in (0.02, 0.5):
        bayes = log_p_t(process, post, XS, t) - log_p_t(process, PRIOR2D, XS, t) + log_py
        np.testing.assert_allclose(np_(lik.log_likelihood(XS, t)), bayes, atol=1e-10)
        np.testing.assert_allclose(np_(lik(XS, t)), fd_grad(lambda x: lik.log_likelihood(x, t), XS), atol=FD_TOL)  # noqa: B023
    # per-sample t: each row is its scalar-t value
    rows = np_(lik.log_likelihood(XS, TS))
    for i in range(len(XS)):
        assert rows[i] == pytest.approx(float(lik.log_likelihood(XS[i : i + 1], float(TS[i]))[0]), abs=1e-12)


def test_exact_likelihood_score_when_responsibilities_underflow():
    """x_t sits on component A at small t (r_B = exp(-1800) underflows) but y points to B.

    Oracle: Bayes at level t with every weight kept in log space (the posterior weight of A,
    exp(-2e4), underflows too), from the per-component posteriors and evidences."""
    w, m, c = np.array([0.5, 0.5]), np.array([[-3.0, 0.0], [3.0, 0.0]]), np.stack([0.01 * np.eye(2)] * 2)
    prior, meas, y = dc.GaussianMixture(w, m, c), LinearGaussianMeasurement.inpainting(2, [0], 0.02), np.array([3.0])
    x, t = np.array([[-3.0, 0.0], [-2.9, 0.1]]), 1e-3
    a, s2 = float(VP.alpha(t)), float(VP.sigma(t)) ** 2
    H = np.asarray(meas.H)
    log_post, log_prior = [], []
    for k in range(2):
        S = H @ c[k] @ H.T + meas.noise_std**2 * np.eye(1)
        gain = c[k] @ H.T @ np.linalg.inv(S)
        mk, ck = m[k] + gain @ (y - H @ m[k]), c[k] - gain @ H @ c[k]
        log_ev = stats.multivariate_normal(H @ m[k], S).logpdf(y)
        log_post.append(
            math.log(w[k]) + log_ev + stats.multivariate_normal(a * mk, a**2 * ck + s2 * np.eye(2)).logpdf(x)
        )
        log_prior.append(math.log(w[k]) + stats.multivariate_normal(a * m[k], a**2 * c[k] + s2 * np.eye(2)).logpdf(x))
    expect = logsumexp(log_post, axis=0) - logsumexp(log_prior, axis=0)  # log p(y) cancels the posterior's normaliser
    lik = exact_likelihood_score(VP, prior, meas, y)
    with np.errstate(divide="raise", invalid="raise"):  # no log(0) of an underflowed r_k
        got = np_(lik.log_likelihood(x, t))
        grad = np_(lik(x, t))
    np.testing.assert_allclose(got, expect, rtol=1e-10)
    np.testing.assert_allclose(grad, fd_grad(lambda p: lik.log_likelihood(p, t), x, h=1e-7), rtol=1e-5)


def test_posterior_when_a_weight_underflows():
    w, m, c = np.array([0.5, 0.5]), np.array([[-3.0, 0.0], [3.0, 0.0]]), np.stack([0.01 * np.eye(2)] * 2)
    post = posterior(dc.GaussianMixture(w, m, c), LinearGaussianMeasurement.inpainting(2, [0], 0.02), np.array([3.0]))
    assert float(post.weights[1]) == 1.0 and 0 < float(post.weights[0]) < 1e-300


def test_exact_likelihood_score_backends(backend):
    meas = LinearGaussianMeasurement(backend(np.asarray(MEAS2D["blur"].H)), 0.35)
    prior = dc.GaussianMixture(backend(W2D), backend(M2D), backend(C2D))
    lik = exact_likelihood_score(VP, prior, meas, backend(Y2D["blur"]))
    ref = exact_likelihood_score(VP, PRIOR2D, MEAS2D["blur"], Y2D["blur"])
    out = lik(backend(XS), backend(TS))
    backend.check_like(out)
    np.testing.assert_allclose(backend.to_numpy(out), ref(XS, TS), rtol=10 * backend.rtol, atol=10 * backend.rtol)
    out = lik.log_likelihood(backend(XS), 0.4)
    backend.check_like(out)
    np.testing.assert_allclose(backend.to_numpy(out), ref.log_likelihood(XS, 0.4), rtol=10 * backend.rtol)


# -- the exact posterior covariance ----------------------------------------------------------------


@pytest.mark.parametrize("process", [VP, VE, SHIFTED], ids=["vp", "ve", "mean-reverting"])
def test_posterior_covariance_is_tweedie_jacobian(process):
    cov = exact_posterior_covariance(process, PRIOR2D)
    den = dc.exact_denoiser(process, PRIOR2D)
    for t in (0.1, 0.6):
        a, s = float(process.alpha(t)), float(process.sigma(t))
        jac = np.stack([fd_grad(lambda x: np_(den(x, t))[:, j], XS) for j in range(2)], axis=1)  # noqa: B023
        out = np_(cov(XS, t))
        np.testing.assert_allclose(out, s**2 / a * jac, atol=1e-7 * max(1.0, s**2 / a))
        np.testing.assert_allclose(out, np.swapaxes(out, 1, 2), atol=1e-12)
        assert np.all(np.linalg.eigvalsh(out) > 0)
    rows = np_(cov(XS, TS))
    for i in range(len(XS)):
        np.testing.assert_allclose(rows[i], np_(cov(XS[i : i + 1], float(TS[i])))[0], atol=1e-12)


def test_posterior_covariance_far_from_the_origin():
    """Means at 1e5: the uncentred second moments (1e10) would cancel to ~1e-6 absolute error."""
    w, m, c = np.array([0.5, 0.5]), np.array([[1e5, 0.0], [1e5 + 0.5, 0.0]]), np.stack([0.1 * np.eye(2)] * 2)
    near = dc.GaussianMixture(w, m - [1e5, 0.0], c)  # the same law translated: Cov[x_0 | x_t] is translation-invariant
    t, a = 0.5, float(VP.alpha(0.5))
    x = np.array([[0.2, 0.0], [0.4, -0.1]])
    far = np_(exact_posterior_covariance(VP, dc.GaussianMixture(w, m, c))(x + np.array([a * 1e5, 0.0]), t))
    np.testing.assert_allclose(far, np_(exact_posterior_covariance(VP, near)(x, t)), atol=1e-9)


def test_posterior_covariance_tends_to_prior_covariance():
    cov = exact_posterior_covariance(VP, PRIOR2D)
    errs = [np.abs(np_(cov(XS, t)) - np.asarray(PRIOR2D.cov)).max() for t in (0.5, 0.8, 1.0)]
    # x_t carries alpha(t) of x_0: the error shrinks with alpha (alpha(1) = 6.5e-3 for the VP-SDE)
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05 * float(VP.alpha(1.0)) / 6.5e-3


# -- the 1-bit measurement -------------------------------------------------------------------------


def test_sign_measurement_likelihood_and_score(backend):
    H = np.array([[1.0, 0.5], [-0.3, 1.0]])
    meas, y = SignMeasurement(H, 0.3), np.array([1.0, -1.0])
    x = np.concatenate([XS, [[-9.0, 4.0]]])  # a point deep in the tail of Phi (log_ndtr keeps it finite)
    ll = np_(meas.log_likelihood(x, y))
    np.testing.assert_allclose(ll, stats.norm.logcdf(y * (x @ H.T) / 0.3).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(
        np_(meas.likelihood_score(x, y)), fd_grad(lambda p: meas.log_likelihood(p, y), x), atol=1e-6
    )
    bm = SignMeasurement(backend(H), 0.3)
    out = bm.likelihood_score(backend(x), backend(y))
    backend.check_like(out)
    np.testing.assert_allclose(backend.to_numpy(out), meas.likelihood_score(x, y), rtol=10 * backend.rtol)


def test_sign_quadrature_posterior_normalises():
    # 1-D probit: p(y = 1) = sum_k w_k Phi(h m_k / sqrt(s^2 + h^2 c_k)) in closed form
    h, s = 0.8, 0.4
    meas = SignMeasurement([[h]], s)
    w, m, c = (np.asarray(a).ravel() for a in (PRIOR1D.weights, PRIOR1D.means, PRIOR1D.covs))
    p_plus = float(np.sum(w * stats.norm.cdf(h * m / np.sqrt(s**2 + h**2 * c))))
    grids = {sgn: quadrature_posterior(PRIOR1D, meas, [sgn], resolution=2001) for sgn in (1.0, -1.0)}
    assert math.exp(grids[1.0].log_normaliser) == pytest.approx(p_plus, abs=1e-10)
    assert math.exp(grids[-1.0].log_normaliser) == pytest.approx(1 - p_plus, abs=1e-10)
    # 2-D, two bits: the four evidences sum to one; the mixture of the posteriors is the prior
    meas2 = SignMeasurement([[1.0, 0.5], [-0.3, 1.0]], 0.5)
    z, mean = 0.0, 0.0
    for y in ([1, 1], [1, -1], [-1, 1], [-1, -1]):
        g = quadrature_posterior(PRIOR2D, meas2, np.asarray(y, dtype=float), resolution=301)
        z, mean = z + math.exp(g.log_normaliser), mean + math.exp(g.log_normaliser) * g.mean
    assert z == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(mean, np.asarray(PRIOR2D.mean), atol=1e-10)


def test_measurement_sample_frequencies():
    n, x0 = 20000, np.array([0.2, -0.1])
    meas = SignMeasurement([[1.0, 0.5], [-0.3, 1.0]], 0.5)
    ys = np_(meas.sample(np.tile(x0, (n, 1)), rng=7))
    assert set(np.unique(ys)) <= {-1.0, 1.0}
    p = stats.norm.cdf(meas.H @ x0 / 0.5)
    assert np.all(np.abs((ys == 1).mean(axis=0) - p) < 4 * np.sqrt(p * (1 - p) / n))
    lin = MEAS2D["blur"]
    yl = np_(lin.sample(np.tile(x0, (n, 1)), rng=8))
    assert np.all(np.abs(yl.mean(axis=0) - lin.H @ x0) < 4 * lin.noise_std / math.sqrt(n))
    assert np.all(np.abs(yl.std(axis=0) / lin.noise_std - 1) < 4 / math.sqrt(2 * n))


# -- guidance --------------------------------------------------------------------------------------


def test_guidance_weights(backend):
    cond, unc = exact_conditional_score(VP, LAB2D, 1), dc.exact_score(VP, LAB2D.mixture)
    clf = exact_classifier_score(VP, LAB2D, 1)
    x, t = XS, 0.3
    c, u = cond(x, t), unc(x, t)
    np.testing.assert_allclose(classifier_free_guidance(cond, unc, 0.0)(x, t), c, atol=1e-12)
    np.testing.assert_allclose(classifier_free_guidance(cond, unc, -1.0)(x, t), u, atol=1e-12)
    for w in (0.5, 2.0):
        cfg = classifier_free_guidance(cond, unc, w)(x, t)
        np.testing.assert_allclose(cfg, (1 + w) * c - w * u, atol=1e-12)
        np.testing.assert_allclose(cfg, classifier_guidance(unc, clf, 1 + w)(x, t), atol=1e-10)
    np.testing.assert_allclose(classifier_guidance(unc, clf, 1.0)(x, t), c, atol=1e-12)
    # the interval switches per sample for an (n,) array t: outside it the plain conditional score
    g = classifier_free_guidance(cond, unc, 2.0, interval=(0.2, 0.7))
    lab = LabelledMixture(backend(W2D), backend(M2D), backend(C2D), [0, 1, 1])
    gb = classifier_free_guidance(
        exact_conditional_score(VP, lab, 1), dc.exact_score(VP, lab.mixture), 2.0, interval=(0.2, 0.7)
    )
    out = gb(backend(XS), backend(TS))
    backend.check_like(out)
    inside = (TS >= 0.2) & (TS <= 0.7)
    expect = np.where(inside[:, None], 3 * cond(XS, TS) - 2 * unc(XS, TS), cond(XS, TS))
    assert inside.any() and not inside.all()
    np.testing.assert_allclose(backend.to_numpy(out), expect, rtol=10 * backend.rtol, atol=10 * backend.rtol)
    for i in range(len(XS)):
        np.testing.assert_allclose(g(XS[i : i + 1], float(TS[i]))[0], expect[i], atol=1e-12)
    cg = classifier_guidance(unc, clf, 4.0, interval=(0.2, 0.7))
    np.testing.assert_allclose(
        cg(XS, TS), np.where(inside[:, None], unc(XS, TS) + 4 * clf(XS, TS), cond(XS, TS)), atol=1e-12
    )
    assert isinstance(cg, GuidedScore)


def _moments_within_se(x, mean, cov):
    """Sample mean and covariance of ``x (n, d)`` agree with ``mean``, ``cov`` to 4 standard errors."""
    n = len(x)
    c = x - x.mean(axis=0)
    assert np.all(np.abs(x.mean(axis=0) - mean) < 4 * c.std(axis=0) / math.sqrt(n))
    prods = c[:, :, None] * c[:, None, :]
    se = prods.reshape(n, -1).std(axis=0).reshape(cov.shape) / math.sqrt(n)
    assert np.all(np.abs(np.cov(x.T) - cov) < 4 * se + 1e-12)


def test_tilted_law():
    n = 4000
    exact = LAB2D.conditional(1)
    x1 = np.asarray(TiltedLaw(LAB2D, 1, 1.0).sample(n, rng=11))
    _moments_within_se(x1, np.asarray(exact.mean), np.asarray(exact.cov))
    # overlapping classes, so that the tilt visibly moves the law (away from class 0)
    lab = LabelledMixture([0.5, 0.5], [[-0.5, 0.0], [0.5, 0.3]], np.stack([0.6 * np.eye(2)] * 2), [0, 1])
    tilted = TiltedLaw(lab, 1, 3.0)
    grid = tilted.grid(resolution=301)
    x3 = np.asarray(tilted.sample(n, rng=12))
    _moments_within_se(x3, grid.mean, grid.cov)
    # gamma matters: the tilted mean is 30 SE from p(x | y)'s, so a sampler ignoring gamma fails above
    assert np.linalg.norm(grid.mean - np.asarray(lab.conditional(1).mean)) > 25 * x3.std(axis=0).max() / math.sqrt(n)
    for law in (tilted, TiltedLaw(LAB2D, 1, 3.0), TiltedLaw(LAB2D, 0, 0.4)):
        np.testing.assert_allclose(np_(law.score(XS)), fd_grad(law.log_prob_unnormalised, XS), atol=FD_TOL)
    # gamma = 0 is the prior, gamma = 1 the class-conditional law (normalisers 1 and p(y))
    assert TiltedLaw(LAB2D, 1, 0.0).grid(301).log_normaliser == pytest.approx(0.0, abs=1e-10)
    assert TiltedLaw(LAB2D, 1, 1.0).grid(301).log_normaliser == pytest.approx(math.log(W2D[1] + W2D[2]), abs=1e-10)


# -- bad input -------------------------------------------------------------------------------------


def test_bad_input():
    lab = LAB2D
    with pytest.raises(ValueError, match=r"H must have shape \(m, d\) with d = 2"):
        posterior(PRIOR2D, LinearGaussianMeasurement(np.eye(3), 0.1), np.zeros(3))
    with pytest.raises(ValueError, match=r"H must have shape \(m, d\) with d = 2"):
        exact_likelihood_score(VP, PRIOR2D, LinearGaussianMeasurement(np.eye(3), 0.1), np.zeros(3))
    for s in (-0.1, 0.0):
        with pytest.raises(ValueError, match="noise_std must be > 0"):
            LinearGaussianMeasurement(np.eye(2), s)
        with pytest.raises(ValueError, match="noise_std must be > 0"):
            SignMeasurement(np.eye(2), s)
    with pytest.raises(ValueError, match=r"labels must be among the classes \[0, 1\]; got \[2\]"):
        exact_conditional_score(VP, lab, 2)
    with pytest.raises(ValueError, match=r"labels must be among the classes"):
        exact_classifier_score(VP, lab, np.array([0, 5]))
    with pytest.raises(TypeError, match="y must be an int or a 1-D integer array"):
        exact_conditional_score(VP, lab, 0.5)
    with pytest.raises(ValueError, match="y must hold one label per point: 2 labels for 4 points"):
        exact_conditional_score(VP, lab, np.array([0, 1]))(XS, 0.5)
    with pytest.raises(TypeError, match="labels must be integers"):
        LabelledMixture(W2D, M2D, C2D, [0, 0.5, 1])
    with pytest.raises(ValueError, match="labels must be >= 0"):
        LabelledMixture(W2D, M2D, C2D, [0, -1, 1])
    cond, unc = exact_conditional_score(VP, lab, 1), dc.exact_score(VP, lab.mixture)
    with pytest.raises(ValueError, match="w must be >= -1"):
        classifier_free_guidance(cond, unc, -1.5)
    with pytest.raises(ValueError, match="scale must be >= 0"):
        classifier_guidance(unc, exact_classifier_score(VP, lab, 1), -0.1)
    with pytest.raises(ValueError, match="interval must have t_lo <= t_hi"):
        classifier_free_guidance(cond, unc, 1.0, interval=(0.7, 0.2))
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        TiltedLaw(lab, 1, -0.5)
    meas = MEAS2D["blur"]
    with pytest.raises(ValueError, match="y must be finite"):
        posterior(PRIOR2D, meas, np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match=r"y must have shape \(m,\) = \(2,\)"):
        posterior(PRIOR2D, meas, np.zeros(3))
    with pytest.raises(ValueError, match=r"y must have shape \(m,\) = \(2,\)"):
        meas.log_likelihood(XS, np.zeros((1, 2)))
    sign = SignMeasurement(np.eye(2), 0.3)
    with pytest.raises(ValueError, match="y of a SignMeasurement must hold only -1 and"):
        sign.log_likelihood(XS, np.array([1.0, 0.0]))
    prior3 = dc.Gaussian(np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="quadrature_posterior works in d = 1 or 2"):
        quadrature_posterior(prior3, LinearGaussianMeasurement(np.eye(3), 0.1), np.zeros(3))
    with pytest.raises(ValueError, match="posterior is exact only for a linear-Gaussian measurement"):
        posterior(PRIOR2D, sign, np.ones(2))
    with pytest.raises(ValueError, match="exact_likelihood_score is exact only for a linear-Gaussian"):
        exact_likelihood_score(VP, PRIOR2D, sign, np.ones(2))
    with pytest.raises(TypeError, match="prior must be a Gaussian, GaussianMixture or LabelledMixture"):
        posterior("not a prior", meas, np.zeros(2))
