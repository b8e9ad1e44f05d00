"""Likelihood-guided posterior samplers (DPS, Pi-GDM, second-order Tweedie, the oracle) and RED-diff.

Oracles: the exact posterior of a Gaussian-mixture prior (its component weights and mean, to
standard errors), the exact noisy-level likelihood score (closed form, for the cases where an
approximation is provably exact), the exact posterior covariance (against autograd), finite
differences of the likelihoods the approximations differentiate.
"""

import numpy as np
import pytest

from diffcore import VPSDE, Gaussian, GaussianMixture, exact_denoiser, exact_score
from diffcore.conditional import (
    LinearGaussianMeasurement,
    SignMeasurement,
    exact_likelihood_score,
    exact_posterior_covariance,
    posterior,
)
from diffcore.conditional._guided_posterior import (
    _likelihood,
    denoiser_covariance,
    dps,
    exact_posterior_sampler,
    pigdm,
    posterior_score,
    second_order_tweedie,
)
from diffcore.conditional._red_diff import red_diff
from diffcore.distributions._components import softmax
from diffcore.processes import MeanRevertingSDE

P = VPSDE()
# bimodal posterior: observing x[0] leaves x[1] at -1.5 (weight 0.72) or +1.5 (weight 0.28)
PRIOR = GaussianMixture([0.3, 0.7], [[1.0, -1.5], [-1.0, 1.5]], [np.diag([1.0, 0.25]), np.diag([0.5, 0.3])])
MEAS = LinearGaussianMeasurement.inpainting(2, [0], noise_std=0.3)
Y = np.array([0.6])
POST = posterior(PRIOR, MEAS, Y)
SCORE, COV = exact_score(P, PRIOR), exact_posterior_covariance(P, PRIOR)
GAUSS = Gaussian(np.array([0.5, -1.0]), np.array([[1.0, 0.6], [0.6, 2.0]]))
TIMES = (0.02, 0.3, 0.7, 0.99)
N = 4000


def _errors(x):
    """(weight error, its SE, mean error / SE per coordinate): E[responsibilities] under the exact posterior."""
    lj = np.stack(
        [np.log(POST.weights[k]) + GaussianMixture([1.0], POST.means[k : k + 1], POST.covs[k : k + 1]).log_prob(x)
         for k in range(2)],
        axis=1,
    )  # fmt: skip
    r0 = softmax(lj, axis=1)[:, 0]
    mean = (POST.weights[:, None] * POST.means).sum(0)
    z_mean = (x.mean(0) - mean) / (x.std(0) / np.sqrt(len(x)))
    return r0.mean() - POST.weights[0], r0.std() / np.sqrt(len(x)), z_mean


@pytest.fixture(scope="module")
def x_init():
    return P.prior_sample((N, 2), rng=1)


def test_oracle_samples_the_exact_posterior(x_init):
    sol = exact_posterior_sampler(P, SCORE, MEAS, Y, x_init, prior=PRIOR, nfe=100, rng=2)
    assert sol.nfe == 100 and sol.solver is not None
    dw, se, z_mean = _errors(sol.x)
    # discretisation bias of the weight: 0.035 at 20 ancestral steps, ~0.01 (1.3 SE) at 50, ~0.002 at 100
    # (measured over seeds); SE 0.007 at n = 4000: a 4 SE band
    assert abs(dw) < 4 * se, (dw, se)
    assert np.all(np.abs(z_mean) < 4), z_mean


@pytest.mark.parametrize("method", [dps, pigdm, second_order_tweedie])
def test_tweedie_approximations_are_biased(method, x_init):
    """Measured biases (n = 4000, nfe 50): weight of mode 0 off by +0.20 (DPS), -0.06 (Pi-GDM), -0.11 (second order)."""
    sol = method(P, SCORE, MEAS, Y, x_init, nfe=50, rng=2, covariance=COV)
    dw, se, _ = _errors(sol.x)
    # the oracle above passes a 4 SE band with the same draws; over 10 seeds these sat at |z| >= 6.4 (Pi-GDM),
    # 11.7 (second order), 44 (DPS): the approximations are approximations
    assert abs(dw) > 4 * se, (dw, se)
    assert sol.nfe == 50


def test_second_order_tweedie_is_exact_for_a_gaussian_prior():
    torch = pytest.importorskip("torch")
    meas = LinearGaussianMeasurement(np.array([[1.0, 0.5]]), 0.2)
    y = np.array([1.2])
    exact = exact_likelihood_score(P, GAUSS, meas, y)
    score = exact_score(P, GAUSS)
    closed = _likelihood(P, score, meas, y, "second_order", exact_posterior_covariance(P, GAUSS))
    auto = _likelihood(P, score, meas, y, "second_order", None)
    x = np.random.default_rng(0).standard_normal((5, 2)) * 2
    for t in (*TIMES, np.linspace(0.05, 0.95, 5)):
        ref = exact(x, t)
        assert np.max(np.abs(closed(x, t) - ref)) < 1e-10
        tt = t if np.isscalar(t) else torch.as_tensor(t)
        assert np.max(np.abs(auto(torch.tensor(x), tt).numpy() - ref)) < 1e-10


def test_pigdm_is_exact_for_an_isotropic_gaussian_prior_only():
    meas, y = LinearGaussianMeasurement(np.array([[1.0, 0.5], [0.2, -1.0]]), 0.2), np.array([1.2, -0.3])
    iso = Gaussian(np.zeros(2), 1.7 * np.eye(2))
    x = np.random.default_rng(0).standard_normal((5, 2))
    for prior, data_var, exact_expected in ((iso, 1.7, True), (iso, 1.0, False), (GAUSS, 1.0, False)):
        lik = _likelihood(
            P, exact_score(P, prior), meas, y, "pigdm", exact_posterior_covariance(P, prior), data_var=data_var
        )
        gap = max(np.max(np.abs(lik(x, t) - exact_likelihood_score(P, prior, meas, y)(x, t))) for t in TIMES)
        assert (gap < 1e-10) if exact_expected else (gap > 1e-3), (data_var, gap)


def test_autograd_covariance_equals_the_exact_covariance():
    torch = pytest.importorskip("torch")
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    cov = denoiser_covariance(P, SCORE)
    for t in (*TIMES, torch.linspace(0.05, 0.95, 7, dtype=torch.float64)):
        got = cov(x, t)
        assert got.dtype == torch.float64 and got.shape == (7, 2, 2)
        assert torch.max(torch.abs(got - torch.as_tensor(COV(x, t)))) < 1e-8


def _fd_grad(f, x, h=1e-5):
    e = np.eye(x.shape[1])
    return np.stack([(f(x + h * e[j]) - f(x - h * e[j])) / (2 * h) for j in range(x.shape[1])], axis=1)


@pytest.mark.parametrize("case", ["likelihood", "normalised", "sign"])
def test_dps_differentiates_the_likelihood_at_the_denoiser(case):
    """DPS = grad_x log p(y | x0_hat(x)) (or -grad_x ||y - H x0_hat||), checked against central differences."""
    den = exact_denoiser(P, PRIOR)
    meas, y = (SignMeasurement(np.array([[1.0, -0.5]]), 0.3), np.array([-1.0])) if case == "sign" else (MEAS, Y)
    step = "normalised" if case == "normalised" else "likelihood"
    lik = _likelihood(P, SCORE, meas, y, "dps", COV, zeta=0.7, step=step)
    x = np.random.default_rng(1).standard_normal((6, 2))
    for t in (0.1, 0.6):
        if case == "normalised":
            fn = lambda z, t=t: -0.7 * np.linalg.norm(y[None] - meas.forward(den(z, t)), axis=1)  # noqa: E731
        else:
            fn = lambda z, t=t: 0.7 * meas.log_likelihood(den(z, t), y)  # noqa: E731
        assert np.max(np.abs(lik(x, t) - _fd_grad(fn, x))) < 1e-6


def test_torch_autograd_path_runs_every_method():
    torch = pytest.importorskip("torch")
    x0 = torch.as_tensor(P.prior_sample((64, 2), rng=0))
    s = exact_score(P, PRIOR)
    for method in (dps, pigdm, second_order_tweedie):
        sol = method(P, s, MEAS, torch.as_tensor(Y), x0, steps=10, rng=torch.Generator().manual_seed(0))
        assert isinstance(sol.x, torch.Tensor) and sol.x.dtype == torch.float64 and not sol.x.requires_grad
        assert bool(torch.isfinite(sol.x).all()) and sol.nfe == 10
    sol = red_diff(P, s, MEAS, Y, x0, steps=20, rng=torch.Generator().manual_seed(0))
    assert isinstance(sol.x, torch.Tensor) and sol.solver is None and sol.ts.shape == (20,)


def test_posterior_score_adds_the_two_fields():
    lik = exact_likelihood_score(P, PRIOR, MEAS, Y)
    x = np.random.default_rng(2).standard_normal((4, 2))
    assert np.allclose(posterior_score(SCORE, lik)(x, 0.4), SCORE(x, 0.4) + lik(x, 0.4), rtol=0, atol=1e-14)


def test_red_diff_converges_to_a_point_for_a_gaussian_prior():
    """Mode seeking: with both coordinates measured the means collapse; the posterior's std is ~0.2."""
    meas, y = LinearGaussianMeasurement(np.array([[1.0, 0.0], [0.5, 1.0]]), 0.3), np.array([1.2, -0.4])
    x0 = np.random.default_rng(0).standard_normal((200, 2)) * 2
    sol = red_diff(P, exact_score(P, GAUSS), meas, y, x0, nfe=300, rng=1)
    post_std = np.sqrt(np.diag(posterior(GAUSS, meas, y).cov))
    assert sol.nfe == 300 and sol.solver is None and np.all(np.diff(sol.ts) < 0)
    assert np.all(sol.x.std(0) < 0.05 * post_std), (sol.x.std(0), post_std)


def test_red_diff_regulariser_pulls_toward_the_prior():
    """Inpainting a Gaussian prior: the unmeasured coordinate is set by the score term alone; it lands near the
    posterior mode (-0.61, posterior std 1.29; measured -0.65 to -0.80 over nfe 200..1000)."""
    x0 = np.random.default_rng(0).standard_normal((200, 2)) * 2
    meas, y = LinearGaussianMeasurement.inpainting(2, [0], noise_std=0.3), np.array([1.2])
    sol = red_diff(P, exact_score(P, GAUSS), meas, y, x0, nfe=300, rng=1)
    post = posterior(GAUSS, meas, y)
    assert abs(sol.x[:, 1].mean() - post.mean[1]) < 0.3 * np.sqrt(post.cov[1, 1])
    assert sol.x[:, 1].std() < 0.5 * np.sqrt(post.cov[1, 1])  # optimiser jitter (Adam, lr 0.1), not uncertainty


def test_red_diff_collapses_toward_modes_of_a_bimodal_posterior():
    x0 = P.prior_sample((200, 2), rng=3) * 1.5
    sol = red_diff(P, SCORE, MEAS, Y, x0, nfe=500, rng=1)
    exact = POST.sample(4000, np.random.default_rng(0))
    # the observed coordinate: the posterior spreads 0.28, RED-diff fits y (a point)
    assert sol.x[:, 0].std() < 0.05 * exact[:, 0].std()
    # the unobserved one: both modes reached, each cluster tighter than the posterior's component
    for sign in (-1, 1):
        mine, ref = sol.x[sign * sol.x[:, 1] > 0, 1], exact[sign * exact[:, 1] > 0, 1]
        assert len(mine) > 20
        assert mine.std() < 0.8 * ref.std(), (sign, mine.std(), ref.std())


def test_bad_input():
    sign = SignMeasurement(np.array([[1.0, 0.0]]), 0.3)
    x0 = np.zeros((3, 2))
    for method in (pigdm, second_order_tweedie):
        with pytest.raises(ValueError, match="linear-Gaussian"):
            method(P, SCORE, sign, np.array([1.0]), x0, steps=2, covariance=COV)
    with pytest.raises(ValueError, match="linear-Gaussian"):
        dps(P, SCORE, sign, np.array([1.0]), x0, steps=2, covariance=COV, step="normalised")
    with pytest.raises(TypeError, match="torch tensor"):
        denoiser_covariance(P, SCORE)(x0, 0.5)
    with pytest.raises(TypeError, match="torch tensor"):
        dps(P, SCORE, MEAS, Y, x0, steps=2)  # learned-score path (no covariance) with NumPy points
    with pytest.raises(ValueError, match="mean shift"):
        dps(MeanRevertingSDE(mu=1.0), SCORE, MEAS, Y, x0, steps=2, covariance=COV)
    with pytest.raises(ValueError, match="mean shift"):
        red_diff(MeanRevertingSDE(mu=1.0), SCORE, MEAS, Y, x0, steps=2)
    with pytest.raises(ValueError, match="x_init"):
        dps(P, SCORE, MEAS, Y, np.zeros((3, 3)), steps=2, covariance=COV)
    with pytest.raises(ValueError, match="y must have shape"):
        pigdm(P, SCORE, MEAS, np.zeros(2), x0, steps=2, covariance=COV)
    with pytest.raises(TypeError, match="covariance"):
        second_order_tweedie(P, SCORE, MEAS, Y, x0, steps=2, covariance=3.0)
    with pytest.raises(ValueError, match="step"):
        dps(P, SCORE, MEAS, Y, x0, steps=2, covariance=COV, step="paper")
    with pytest.raises(ValueError, match="zeta"):
        dps(P, SCORE, MEAS, Y, x0, steps=2, covariance=COV, zeta=-1.0)
    with pytest.raises(TypeError, match="exactly one"):
        red_diff(P, SCORE, MEAS, Y, x0, steps=2, nfe=2)
    with pytest.raises(ValueError, match="weighting"):
        red_diff(P, SCORE, MEAS, Y, x0, steps=2, weighting="snr")
    with pytest.raises(ValueError, match="betas"):
        red_diff(P, SCORE, MEAS, Y, x0, steps=2, betas=(0.9, 1.0))


@pytest.mark.parametrize("rule", [dps, pigdm, second_order_tweedie])
@pytest.mark.parametrize("backend", ["numpy", "torch-autograd"])
def test_one_score_evaluation_per_counted_nfe(rule, backend):
    """The prior score inside the likelihood approximation is the same evaluation the sampler counts."""
    calls = []

    def counted(x, t):
        calls.append(1)
        return SCORE(x, t)

    x = P.prior_sample((6, 2), rng=0)
    cov = COV
    if backend == "torch-autograd":
        torch = pytest.importorskip("torch")
        x, cov = torch.from_numpy(x), None
    sol = rule(P, counted, MEAS, Y, x, nfe=5, covariance=cov)
    assert sol.nfe == 5 and len(calls) == 5
