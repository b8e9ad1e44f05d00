"""The Gaussian Schrödinger bridge (diffcore.bridges): coupling, limits, marginals, drift, simulation.

Oracles: the static coupling is characterised by its joint precision (off-diagonal block
``-I / sigma^2``: the density ratio to the reference kernel factorises); as ``sigma -> 0`` it is
the Gaussian optimal-transport coupling; the drift and the probability-flow velocity carry the
closed-form marginals (the covariance ODE by central differences); and Euler-Maruyama paths of
the bridge SDE end in the target law (moments within their standard errors).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from diffcore.bridges import GaussianSchrodingerBridge

M0, M1 = np.array([0.5, -1.0]), np.array([-1.0, 2.0])
C0 = np.array([[1.0, 0.3], [0.3, 0.5]])
C1 = np.array([[0.4, -0.2], [-0.2, 2.0]])  # does not commute with C0


def _sqrtm(a, p=0.5):
    lam, vec = np.linalg.eigh(a)
    return (vec * lam**p) @ vec.T


@pytest.mark.parametrize("sigma", [0.1, 1.0, 3.0])
def test_the_coupling_is_the_entropic_optimum(sigma):
    sb = GaussianSchrodingerBridge(M0, C0, M1, C1, sigma)
    joint = np.block([[C0, sb.cross_cov], [sb.cross_cov.T, C1]])
    assert np.linalg.eigvalsh(joint).min() > 0
    precision = np.linalg.inv(joint)
    np.testing.assert_allclose(precision[:2, 2:], -np.eye(2) / sigma**2, atol=1e-10 / sigma**2)


def test_small_noise_gives_the_optimal_transport_coupling():
    """C_sigma -> Sigma0^{1/2} (Sigma0^{1/2} Sigma1 Sigma0^{1/2})^{1/2} Sigma0^{-1/2} = Sigma0 T (the OT map T),
    at rate sigma^2."""
    root = _sqrtm(C0)
    ot = root @ _sqrtm(root @ C1 @ root) @ np.linalg.inv(root)
    errs = [np.abs(GaussianSchrodingerBridge(M0, C0, M1, C1, s).cross_cov - ot).max() for s in (1e-1, 1e-2)]
    assert errs[1] < 1e-3 and errs[0] / errs[1] > 50, errs  # O(sigma^2): a factor 100 per decade


def test_marginals_at_the_ends_and_the_drift_carries_them():
    sigma = 0.8
    sb = GaussianSchrodingerBridge(M0, C0, M1, C1, sigma)
    for t, (m, c) in ((0.0, (M0, C0)), (1.0, (M1, C1))):
        law = sb.marginal(t)
        np.testing.assert_allclose(law.mean, m, atol=1e-14)
        np.testing.assert_allclose(law.cov, c, atol=1e-12)
    eye = np.eye(2)
    for t in (0.2, 0.5, 0.8):
        h = 1e-5
        d_cov = (sb.marginal(t + h).cov - sb.marginal(t - h).cov) / (2 * h)
        d_mean = (sb.marginal(t + h).mean - sb.marginal(t - h).mean) / (2 * h)
        law = sb.marginal(t)
        # affine fields: f(x) = A x + b, read off at the points 0 and e_i
        for field, noise in ((sb.drift, sigma**2), (sb.velocity, 0.0)):
            b = field(np.zeros((1, 2)), t)[0]
            a = (field(eye, t) - b).T
            np.testing.assert_allclose(a @ law.cov + law.cov @ a.T + noise * eye, d_cov, atol=1e-6)
            np.testing.assert_allclose(a @ law.mean + b, d_mean, atol=1e-6)


def test_bridge_sde_reaches_the_target():
    """Euler-Maruyama with 400 steps from N(mu0, Sigma0) (n = 20 000): the end mean within 4.5
    standard errors of mu1 and the covariance within 4.5 standard errors + the O(h) bias of Sigma1."""
    sigma, n, steps = 1.0, 20_000, 400
    sb = GaussianSchrodingerBridge(M0, C0, M1, C1, sigma)
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal(M0, C0, size=n)
    ts = np.linspace(0.0, 1.0, steps + 1)
    for t0, t1 in itertools.pairwise(ts):  # the drift is evaluated at t0 < 1 only
        x = x + sb.drift(x, t0) * (t1 - t0) + sigma * np.sqrt(t1 - t0) * rng.normal(size=x.shape)
    se = np.sqrt(np.diag(C1) / n)
    assert np.all(np.abs(x.mean(axis=0) - M1) < 4.5 * se + 1e-2), (x.mean(axis=0), M1)
    cov_se = np.sqrt((C1**2 + np.outer(np.diag(C1), np.diag(C1))) / n)
    assert np.all(np.abs(np.cov(x.T) - C1) < 4.5 * cov_se + 2e-2), np.cov(x.T)


def test_bad_input():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        GaussianSchrodingerBridge(M0, C0, M1, C1, 0.0)
    with pytest.raises(ValueError, match="cov1 must be positive definite"):
        GaussianSchrodingerBridge(M0, C0, M1, np.diag([1.0, 0.0]), 1.0)
    with pytest.raises(ValueError, match="cov0 must be symmetric"):
        GaussianSchrodingerBridge(M0, np.array([[1.0, 0.2], [0.0, 1.0]]), M1, C1, 1.0)
    with pytest.raises(ValueError, match=r"mean1 must have shape \(2,\)"):
        GaussianSchrodingerBridge(M0, C0, np.zeros(3), C1, 1.0)
    with pytest.raises(ValueError, match=r"cov1 must have shape \(2, 2\)"):
        GaussianSchrodingerBridge(M0, C0, M1, np.eye(3), 1.0)
    sb = GaussianSchrodingerBridge(M0, C0, M1, C1, 1.0)
    with pytest.raises(ValueError, match="needs t < 1"):
        sb.drift(np.zeros((2, 2)), 1.0)
    with pytest.raises(ValueError, match="x must"):
        sb.drift(np.zeros((2, 3)), 0.5)


def test_the_drift_produces_the_coupling_not_only_the_marginals():
    """Marginals do not pin down a process (the drift built from C^T has the same ones); the joint law
    does: along dX = (A_t X + b_t) dt + sigma dW, M_t = Cov(X_0, X_t) solves M' = M A_t^T from
    M_0 = Sigma0, and for the bridge M_t = (1 - t) Sigma0 + t C.  RK4 with 2000 steps to t = 0.9."""
    sb = GaussianSchrodingerBridge(M0, C0, M1, C1, 0.8)
    eye = np.eye(2)

    def a_of(t):
        b = sb.drift(np.zeros((1, 2)), t)[0]
        return (sb.drift(eye, t) - b).T

    def rhs(t, m):
        return m @ a_of(t).T

    m, t, h = C0.copy(), 0.0, 0.9 / 2000
    for _ in range(2000):
        k1 = rhs(t, m)
        k2 = rhs(t + h / 2, m + h / 2 * k1)
        k3 = rhs(t + h / 2, m + h / 2 * k2)
        k4 = rhs(t + h, m + h * k3)
        m, t = m + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + h
    np.testing.assert_allclose(m, 0.1 * C0 + 0.9 * sb.cross_cov, atol=1e-8)
