"""Stochastic interpolants and their exact fields, checked against oracles that do not share their algebra.

For every interpolant kind (``CASES``) between 2-D Gaussian-mixture ends:

* the density ``rho_t = exp(log_prob)`` and the velocity solve the transport equation
  ``d_t rho + div(b rho) = 0``, and the SDE drifts ``b +- eps s`` with diffusion ``sqrt(2 eps)``
  solve the Fokker–Planck equations with the same ``rho_t`` (finite differences: the residual is
  at the discretisation level and falls ~4x when the steps halve; a 5 % wrong velocity fails);
* ``score`` is the finite-difference gradient of ``log_prob`` and ``denoiser = -gamma score``;
* Monte Carlo of ``sample_xt`` on fresh samples of ``rho_0``, ``rho_1`` and ``z`` reproduces the
  mean and covariance of ``marginal(t)``, and the defining conditional expectations of the fields:
  ``E[(dx_t/dt - b(x_t)) phi(x_t)] = 0``, ``E[(z - eta(x_t)) phi(x_t)] = 0`` and the Stein
  identity ``E[s(x_t) phi(x_t) + grad phi(x_t)] = 0`` for a handful of test functions ``phi``;
* between 1-D Gaussians the fields equal closed forms derived here from the coefficients
  (written out below, not taken from the library), and the ODE flow is the exact affine map.

Then: hypothesis properties (boundary conditions, derivatives, exact ends of ``sample_xt``,
converter round trips, the diffusion and flow-matching conventions giving the same score and
velocity), bad input, and array backends.  Sampling to the W2 floor is in
``test_interpolant_sampling.py``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from strategies import bridging_processes, finite, interpolants, skewed_mixture_2d, times

import diffcore as dc

# -- the interpolant kinds and their ends ----------------------------------------------------------

R0 = dc.GaussianMixture([0.6, 0.4], [[-1.0, 0.5], [1.5, -0.5]], [[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]]])
R1 = skewed_mixture_2d()
STD_NORMAL = dc.Gaussian(np.zeros(2), np.eye(2))

#: a user-defined interpolant whose derivatives are the library's finite differences
USER = dc.Interpolant(
    lambda t: (1 - t) * np.exp(-t),
    lambda t: np.sin(0.5 * np.pi * t) ** 2,
    lambda t: 0.8 * np.sin(np.pi * t * (1 - t)),
)

#: name -> (interpolant, rho0, rho1); one-sided kinds start from N(0, I), the mirror needs rho0 = rho1
CASES = {
    "linear-0": (dc.LinearInterpolant(0.0), R0, R1),
    "linear-1": (dc.LinearInterpolant(1.0), R0, R1),
    "trigonometric": (dc.TrigonometricInterpolant(), R0, R1),
    "trigonometric-albergo2023": (dc.TrigonometricInterpolant(variant="albergo2023"), R0, R1),
    "encoder-decoder": (dc.EncoderDecoderInterpolant(), R0, R1),
    "one-sided-linear": (dc.OneSidedInterpolant(), STD_NORMAL, R1),
    "one-sided-trigonometric": (dc.OneSidedInterpolant("trigonometric"), STD_NORMAL, R1),
    "mirror": (dc.MirrorInterpolant(), R1, R1),
    "user-fd": (USER, R0, R1),
    "cosine-vp-path": (dc.interpolant_from_process(dc.CosineVPSDE(end=1.0)), STD_NORMAL, R1),
}
FIELDS = {name: dc.interpolant_fields(*case) for name, case in CASES.items()}

#: times of the finite-difference checks: inside (0.05, 0.95), off the encoder-decoder's switch at 1/2
TIMES = (0.1, 0.3, 0.45, 0.7, 0.9)

by_case = pytest.mark.parametrize("name", list(CASES))


def _points(fields: dc.InterpolantFields, t: float, n: int, seed: int) -> tuple[np.ndarray, float]:
    """``n`` draws of ``rho_t`` (where it has mass) and the smallest component std of ``rho_t``."""
    law = fields.marginal(t)
    std = math.sqrt(float(np.linalg.eigvalsh(np.asarray(law.covs)).min()))
    return law.sample(n, rng=seed), std


# -- the transport and Fokker–Planck equations ------------------------------------------------------


def pde_residual(fields, x, t, h, k, *, velocity=None, eps=0.0, sign=1.0):
    r"""Relative residual of ``d_t rho + div((b + sign eps s) rho) - sign eps Laplacian(rho) = 0``.

    ``sign = +1`` is the forward SDE, ``-1`` the backward one, ``eps = 0`` the transport
    equation.  Central differences with step ``k`` in ``t`` and ``h`` in ``x``, all second order:
    the residual is ``O(h^2 + k^2)`` (round-off ``eps_mach |rho| / h^2`` is ~1e-12 relative).
    Returns ``||residual|| / ||sum of the absolute terms||`` over the points.
    """
    velocity = velocity or fields.velocity

    def rho(y, s):
        return np.exp(fields.log_prob(y, s))

    def flux(y):
        drift = velocity(y, t) + (sign * eps) * fields.score(y, t) if eps else velocity(y, t)
        return drift * rho(y, t)[:, None]

    d = x.shape[1]
    rho_x = rho(x, t)
    d_t = (rho(x, t + k) - rho(x, t - k)) / (2 * k)
    resid, size = d_t.copy(), np.abs(d_t)
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        div_i = (flux(x + e)[:, i] - flux(x - e)[:, i]) / (2 * h)
        lap_i = (sign * eps) * (rho(x + e, t) - 2 * rho_x + rho(x - e, t)) / h**2
        resid += div_i - lap_i
        size += np.abs(div_i) + np.abs(lap_i)
    return float(np.linalg.norm(resid) / np.linalg.norm(size))


def residual_study(name, **kwargs):
    """``{t: (coarse, fine)}`` relative residuals at 30 draws of ``rho_t``; the fine steps are half the coarse.

    Coarse steps: ``h = 0.04`` of the smallest component std of ``rho_t`` (the length on which
    ``rho_t`` varies) and ``k = 0.01``.
    """
    fields, out = FIELDS[name], {}
    for j, t in enumerate(TIMES):
        x, std = _points(fields, t, 30, seed=100 + j)
        out[t] = tuple(pde_residual(fields, x, t, 0.04 * std * c, 0.01 * c, **kwargs) for c in (1.0, 0.5))
    return out


# Thresholds shared by the PDE checks.  Second-order stencils with h = 0.02 std and k = 0.005 err
# by ~(h/std)^2/6 ~ 7e-5 in space and ~(k r)^2/6 in time, r the rate at which rho_t changes (up to
# ~10 near the ends: coefficients like sqrt(t (1 - t)) or sigma(1 - t)); measured fine residuals
# 3e-5 .. 1.3e-3 (encoder-decoder at t = 0.9, the sharpest rho_t).  A 5 % wrong velocity leaves
# 0.05 |div(b rho)| ~ 0.025 of the terms, which no step size removes (measured 1.8e-2 .. 2.5e-2).
FINE_MAX = 5e-3
ORDER_MIN = 3.5  # second order: halving the steps divides the residual by 4 (measured 3.98 .. 4.01)


@by_case
def test_exact_fields_solve_the_transport_equation(name):
    for t, (coarse, fine) in residual_study(name).items():
        assert fine < FINE_MAX, (name, t, coarse, fine)
        assert coarse / fine > ORDER_MIN, (name, t, coarse, fine)


@by_case
def test_wrong_velocity_fails_the_transport_equation(name):
    wrong = FIELDS[name].velocity
    for t, (coarse, fine) in residual_study(name, velocity=lambda x, s: 1.05 * wrong(x, s)).items():
        assert fine > 2 * FINE_MAX, (name, t, coarse, fine)
        assert coarse / fine < 1.5, (name, t, coarse, fine)  # an O(1) error does not shrink (0.95 .. 1.13)


@by_case
@pytest.mark.parametrize("eps", [0.1, 1.0])
@pytest.mark.parametrize("way", ["forward", "backward"])
def test_sde_drifts_solve_their_fokker_planck_equations(name, eps, way):
    # The same rho_t solves d_t rho = -div((b +- eps s) rho) +- eps Laplacian(rho): the score term
    # is checked against the finite-difference Laplacian of exp(log_prob).  Same steps and
    # thresholds as the transport equation (measured fine residuals <= 1.2e-3, ratios 3.98 .. 4.01).
    sign = 1.0 if way == "forward" else -1.0
    for t, (coarse, fine) in residual_study(name, eps=eps, sign=sign).items():
        assert fine < FINE_MAX, (name, t, coarse, fine)
        assert coarse / fine > ORDER_MIN, (name, t, coarse, fine)


@pytest.mark.parametrize("name", ["linear-1", "encoder-decoder", "mirror"])
def test_wrong_sign_of_the_noise_fails_fokker_planck(name):
    # The forward drift b + s checked against the backward equation (-Laplacian) leaves a residual
    # 2 Laplacian(rho), of the size of the terms (measured 0.49 .. 0.96 relative).
    fields = FIELDS[name]
    for j, t in enumerate(TIMES):
        x, std = _points(fields, t, 30, seed=100 + j)
        h, k = 0.02 * std, 0.005

        def forward_drift(y, s):
            return fields.velocity(y, s) + 2.0 * fields.score(y, s)  # b + s written as b - s + 2 s

        assert pde_residual(fields, x, t, h, k, velocity=forward_drift, eps=1.0, sign=-1.0) > 2 * FINE_MAX


# -- score, denoiser, per-sample times, marginal ---------------------------------------------------


@by_case
def test_score_is_the_gradient_of_log_prob(name):
    # Central differences with h = 1e-4 std: truncation (h/std)^2/6 ~ 2e-9 relative, round-off
    # 1e-16 |log rho| / h ~ 1e-11; measured <= 8e-9.  Tolerance 1e-7 of the score's size.
    fields = FIELDS[name]
    for j, t in enumerate(TIMES):
        x, std = _points(fields, t, 20, seed=200 + j)
        h = 1e-4 * std
        grad = np.stack(
            [(fields.log_prob(x + h * e, t) - fields.log_prob(x - h * e, t)) / (2 * h) for e in np.eye(2)], axis=1
        )
        s = fields.score(x, t)
        np.testing.assert_allclose(s, grad, rtol=0, atol=1e-7 * np.abs(s).max(), err_msg=f"{name} t={t}")


@by_case
def test_denoiser_is_minus_gamma_times_score(name):
    it, fields = CASES[name][0], FIELDS[name]
    for j, t in enumerate(TIMES):
        x, _ = _points(fields, t, 20, seed=300 + j)
        eta, s, gamma = fields.denoiser(x, t), fields.score(x, t), it.gamma(t)
        np.testing.assert_allclose(eta, -gamma * s, rtol=1e-12, atol=1e-14)
        if gamma > 0:  # the form of the issue: s = -eta / gamma
            np.testing.assert_allclose(s, -eta / gamma, rtol=1e-12, atol=1e-14)
        else:
            assert np.all(eta == 0)  # without latent noise, x_t carries no information on z


@by_case
def test_per_sample_times_agree_with_scalar_times(name):
    fields = FIELDS[name]
    t = np.linspace(0.02, 0.98, 12)
    x = np.concatenate([_points(fields, float(s), 1, seed=400 + j)[0] for j, s in enumerate(t)])
    for field in ("velocity", "score", "denoiser", "log_prob"):
        batched = getattr(fields, field)(x, t)
        rows = np.concatenate([getattr(fields, field)(x[i : i + 1], float(t[i])) for i in range(len(t))])
        np.testing.assert_allclose(batched, rows, rtol=1e-12, atol=1e-13, err_msg=f"{name}.{field}")


@by_case
def test_marginal_log_density_is_log_prob(name):
    fields = FIELDS[name]
    for j, t in enumerate((0.0, *TIMES, 1.0)):
        law = fields.marginal(t)
        x = law.sample(20, rng=500 + j)
        np.testing.assert_allclose(law.log_prob(x), fields.log_prob(x, t), rtol=1e-12, atol=1e-12)


# -- Monte Carlo of sample_xt: moments and the conditional expectations that define the fields -------

MC_N = 20_000
MC_TIMES = (0.2, 0.4, 0.75)  # where gamma' != 0 (the mirror's velocity vanishes at 1/2) and x_t != z
# One statistic's z-score is |mean| / (sample std / sqrt(n)), standard normal for a right field.
# Each case makes ~130 of them (correlated); max |z| > 4.5 has probability < 130 * 6.8e-6 = 1e-3
# per case, so a right field passes for almost every seed (measured max 3.2 over all cases), while
# a 25 % error gives z > 10.
Z_MAX = 4.5


def _z_scores(samples: np.ndarray) -> np.ndarray:
    """``|mean| / standard error`` of each column of ``samples`` ``(n, k)``."""
    se = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    return np.abs(samples.mean(axis=0)) / se


def _test_functions(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """phi(x) = (1, x_1, x_2, sin x_1, cos x_2, x_1 x_2): values ``(n, 6)`` and gradients ``(n, 6, 2)``."""
    x1, x2 = x[:, 0], x[:, 1]
    one, zero = np.ones_like(x1), np.zeros_like(x1)
    phi = np.stack([one, x1, x2, np.sin(x1), np.cos(x2), x1 * x2], axis=1)
    grads = [(zero, zero), (one, zero), (zero, one), (np.cos(x1), zero), (zero, -np.sin(x2)), (x2, x1)]
    return phi, np.stack([np.stack(g, axis=1) for g in grads], axis=1)


def _mc_draws(name: str, t: float, seed: int):
    it, rho0, rho1 = CASES[name]
    rng = np.random.default_rng(seed)
    x0 = rho0.sample(MC_N, rng)
    x1 = x0 if it.coupling == "identical" else rho1.sample(MC_N, rng)
    z = rng.standard_normal((MC_N, 2))
    return it.sample_xt(x0, x1, t, z), it.time_derivative(x0, x1, t, z), z


def field_z_scores(fields, x_t, x_dot, z, t, *, velocity=None, denoiser=None, score=None):
    """Largest z-scores of the three identities that characterise velocity, denoiser and score."""
    velocity, denoiser, score = velocity or fields.velocity, denoiser or fields.denoiser, score or fields.score
    phi, grad_phi = _test_functions(x_t)

    def moments(v):  # E[v_i phi_j] for all i, j as columns
        return (v[:, None, :] * phi[:, :, None]).reshape(len(v), -1)

    return {
        "velocity": _z_scores(moments(x_dot - velocity(x_t, t))).max(),
        "denoiser": _z_scores(moments(z - denoiser(x_t, t))).max(),
        "score": _z_scores(moments(score(x_t, t)) + grad_phi.reshape(len(x_t), -1)).max(),
    }


def moment_z_scores(x_t: np.ndarray, law: dc.GaussianMixture) -> float:
    """Largest z-score of the sample mean and covariance of ``x_t`` against ``law``'s."""
    mean, cov = np.asarray(law.mean), np.asarray(law.cov)
    centred = x_t - mean  # with the exact mean, E[c_i c_j] = cov_ij; standard error from the sample
    products = (centred[:, :, None] * centred[:, None, :]).reshape(len(x_t), -1) - cov.reshape(-1)
    return float(max(_z_scores(centred).max(), _z_scores(products).max()))


@by_case
def test_marginal_moments_match_monte_carlo_of_sample_xt(name):
    for j, t in enumerate(MC_TIMES):
        x_t, _, _ = _mc_draws(name, t, seed=600 + j)
        assert moment_z_scores(x_t, FIELDS[name].marginal(t)) < Z_MAX, (name, t)


@by_case
def test_fields_are_the_conditional_expectations_of_the_interpolant(name):
    for j, t in enumerate(MC_TIMES):
        scores = field_z_scores(FIELDS[name], *_mc_draws(name, t, seed=700 + j), t)
        assert np.max(list(scores.values())) < Z_MAX, (name, t, scores)  # np.max: NaN fails


@pytest.mark.parametrize("name", ["linear-1", "trigonometric", "encoder-decoder", "mirror", "one-sided-linear"])
def test_conditional_expectation_check_can_fail(name):
    # 25 % too large fields: measured z-scores >= 11 (velocity), >= 14 (score), >= 17 (denoiser)
    fields, t = FIELDS[name], 0.4
    draws = _mc_draws(name, t, seed=800)

    def too_large(field):
        return lambda x, s: 1.25 * field(x, s)

    wrong = {key: too_large(getattr(fields, key)) for key in ("velocity", "denoiser", "score")}
    scores = field_z_scores(fields, *draws, t, **wrong)
    assert scores["velocity"] > 2 * Z_MAX and scores["score"] > 2 * Z_MAX, scores
    if CASES[name][0].gamma(t) > 0:  # otherwise the denoiser is 0 and stays 0
        assert scores["denoiser"] > 2 * Z_MAX, scores
    assert moment_z_scores(draws[0], fields.marginal(0.05)) > 2 * Z_MAX  # another time: measured z >= 11


# -- 1-D Gaussian ends: closed forms derived from the coefficients -------------------------------------
#
# x_0 ~ N(m0, a0), x_1 ~ N(m1, a1), z ~ N(0, 1) independent: x_t ~ N(mu, v) with
#     mu = c0 m0 + c1 m1,   v = c0^2 a0 + c1^2 a1 + gamma^2,
# and (dx_t/dt, x_t) is jointly Gaussian with Cov(dx_t/dt, x_t) = c0 c0' a0 + c1 c1' a1 + gamma gamma'
# = v'/2, so
#     b(x) = E[dx_t/dt | x_t = x] = mu' + v' / (2 v) (x - mu),   s(x) = -(x - mu) / v,
#     eta(x) = E[z | x_t = x] = gamma (x - mu) / v.
# The flow of b is the affine map X_t = mu(t) + sqrt(v(t) / v(0)) (X_0 - mu(0)).  The coefficients
# are written out here by hand (not read from the library), with gamma^2 and its derivative.

M0, A0, M1, A1 = -1.0, 0.5, 2.0, 0.2
PI = math.pi
ORACLE_COEFS = {  # name -> (interpolant, t -> (c0, c1, gamma^2, c0', c1', (gamma^2)'))
    "linear-1": (dc.LinearInterpolant(1.0), lambda t: (1 - t, t, t * (1 - t), -1.0, 1.0, 1 - 2 * t)),
    "linear-0": (dc.LinearInterpolant(0.0), lambda t: (1 - t, t, 0.0, -1.0, 1.0, 0.0)),
    "trigonometric-2": (
        dc.TrigonometricInterpolant(2.0),
        lambda t: (
            math.cos(PI * t / 2),
            math.sin(PI * t / 2),
            2 * t * (1 - t),
            -PI / 2 * math.sin(PI * t / 2),
            PI / 2 * math.cos(PI * t / 2),
            2 - 4 * t,
        ),
    ),
    # the reference code's variant: the path shrunk by r = sqrt(1 - gamma^2), here gamma^2 = 2 t (1 - t)
    "trigonometric-albergo2023-2": (
        dc.TrigonometricInterpolant(2.0, variant="albergo2023"),
        lambda t: (
            math.sqrt(1 - 2 * t * (1 - t)) * math.cos(PI * t / 2),
            math.sqrt(1 - 2 * t * (1 - t)) * math.sin(PI * t / 2),
            2 * t * (1 - t),
            -(1 - 2 * t) / math.sqrt(1 - 2 * t * (1 - t)) * math.cos(PI * t / 2)
            - PI / 2 * math.sqrt(1 - 2 * t * (1 - t)) * math.sin(PI * t / 2),
            -(1 - 2 * t) / math.sqrt(1 - 2 * t * (1 - t)) * math.sin(PI * t / 2)
            + PI / 2 * math.sqrt(1 - 2 * t * (1 - t)) * math.cos(PI * t / 2),
            2 - 4 * t,
        ),
    ),
    "encoder-decoder": (
        dc.EncoderDecoderInterpolant(),
        lambda t: (
            math.cos(PI * t) ** 2 * (t < 0.5),
            math.cos(PI * t) ** 2 * (t > 0.5),
            math.sin(PI * t) ** 4,
            -2 * PI * math.cos(PI * t) * math.sin(PI * t) * (t < 0.5),
            -2 * PI * math.cos(PI * t) * math.sin(PI * t) * (t > 0.5),
            4 * PI * math.sin(PI * t) ** 3 * math.cos(PI * t),
        ),
    ),
    "one-sided-trigonometric": (
        dc.OneSidedInterpolant("trigonometric"),
        lambda t: (
            math.cos(PI * t / 2),
            math.sin(PI * t / 2),
            0.0,
            -PI / 2 * math.sin(PI * t / 2),
            PI / 2 * math.cos(PI * t / 2),
            0.0,
        ),
    ),
}


def _gaussian_1d(m, a):
    return dc.Gaussian(np.array([m]), np.array([[a]]))


def _oracle(coefs, t, mirror=False):
    c0, c1, g2, d0, d1, dg2 = coefs(t)
    if mirror:  # x_0 = x_1 = x ~ N(M0, A0)
        return M0, A0 + g2, 0.0, dg2, math.sqrt(g2)
    mu, v = c0 * M0 + c1 * M1, c0**2 * A0 + c1**2 * A1 + g2
    return mu, v, d0 * M0 + d1 * M1, 2 * c0 * d0 * A0 + 2 * c1 * d1 * A1 + dg2, math.sqrt(g2)


@pytest.mark.parametrize("name", list(ORACLE_COEFS))
def test_coefficients_match_the_closed_form(name):
    it, coefs = ORACLE_COEFS[name]
    for t in (0.0, 0.05, 0.3, 0.5, 0.7, 0.95, 1.0):
        c0, c1, g2, d0, d1, dg2 = coefs(t)
        got = (it.coef0(t), it.coef1(t), it.gamma(t) ** 2, it.d_coef0(t), it.d_coef1(t), 2 * it.gamma_d_gamma(t))
        np.testing.assert_allclose(got, (c0, c1, g2, d0, d1, dg2), rtol=1e-13, atol=1e-15, err_msg=f"{name} at t={t}")


@pytest.mark.parametrize("name", [*ORACLE_COEFS, "mirror"])
def test_fields_of_1d_gaussians_match_the_closed_form(name):
    if name == "mirror":
        it, coefs = dc.MirrorInterpolant(1.5), lambda t: (1 - t, t, 1.5 * t * (1 - t), -1.0, 1.0, 1.5 * (1 - 2 * t))
        fields = dc.interpolant_fields(it, _gaussian_1d(M0, A0), _gaussian_1d(M0, A0))
    else:
        it, coefs = ORACLE_COEFS[name]
        fields = dc.interpolant_fields(it, _gaussian_1d(M0, A0), _gaussian_1d(M1, A1))
    x = np.linspace(-4.0, 4.0, 17)[:, None]
    for t in (0.0, 0.05, 0.3, 0.5, 0.7, 0.95, 1.0):
        mu, v, d_mu, d_v, gamma = _oracle(coefs, t, mirror=name == "mirror")
        np.testing.assert_allclose(fields.velocity(x, t), d_mu + d_v / (2 * v) * (x - mu), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fields.score(x, t), -(x - mu) / v, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fields.denoiser(x, t), gamma * (x - mu) / v, rtol=1e-12, atol=1e-12)
        log_density = -0.5 * (x[:, 0] - mu) ** 2 / v - 0.5 * math.log(2 * PI * v)
        np.testing.assert_allclose(fields.log_prob(x, t), log_density, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name", ["linear-1", "trigonometric-2", "trigonometric-albergo2023-2", "one-sided-trigonometric"]
)
def test_ode_flow_of_1d_gaussians_is_the_exact_affine_map_both_ways(name):
    # Heun is second order: the error at the end must fall ~4x from 50 to 100 steps (measured
    # 3.82 .. 4.15, > 3.5 required) and be small (measured <= 1.2e-3 at 100 steps, < 3e-3 required).
    it, coefs = ORACLE_COEFS[name]
    fields = dc.interpolant_fields(it, _gaussian_1d(M0, A0), _gaussian_1d(M1, A1))
    mu0, v0, *_ = _oracle(coefs, 0.0)
    mu1, v1, *_ = _oracle(coefs, 1.0)
    x0 = np.linspace(-3.0, 3.0, 13)[:, None]
    x1 = mu1 + math.sqrt(v1 / v0) * (x0 - mu0)  # the exact flow map from t = 0 to t = 1
    ode = dc.InterpolantODE(fields.velocity)
    for start, end, grid in ((x0, x1, (0.0, 1.0)), (x1, x0, (1.0, 0.0))):
        errors = [
            np.abs(dc.integrate(ode, start, np.linspace(*grid, steps + 1), "heun").x - end).max() for steps in (50, 100)
        ]
        assert errors[1] < 3e-3 and errors[0] / errors[1] > ORDER_MIN, (name, grid, errors)


# -- properties -----------------------------------------------------------------------------------------


@given(it=interpolants(), t=arrays(np.float64, (5,), elements=st.floats(0.0, 1.0)))
def test_boundary_conditions_hold_exactly(it, t):
    assert (it.coef0(0.0), it.coef0(1.0), it.coef1(0.0), it.coef1(1.0)) == (1.0, 0.0, 0.0, 1.0)
    assert (it.gamma(0.0), it.gamma(1.0)) == (0.0, 0.0)
    it.check_boundaries(atol=0.0)
    ends = np.array([0.0, 1.0])
    np.testing.assert_array_equal(np.stack([it.coef0(ends), it.coef1(ends), it.gamma(ends)]), [[1, 0], [0, 1], [0, 0]])
    assert np.all(it.gamma(t) >= 0)


def _check_derivatives(it, t):
    # central differences with h = 1e-6: truncation h^2 |f'''| / 6 ~ 1e-10, round-off 1e-16 / h ~ 1e-10;
    # across the encoder-decoder's switch at t = 1/2, where c'' jumps by 2 pi^2, pi^2 h / 2 = 5e-6
    h = 1e-6
    for f, df in ((it.coef0, it.d_coef0), (it.coef1, it.d_coef1), (it.gamma, it.d_gamma)):
        assert df(t) == pytest.approx((f(t + h) - f(t - h)) / (2 * h), abs=1e-5)
    half_d_gamma2 = (it.gamma(t + h) ** 2 - it.gamma(t - h) ** 2) / (4 * h)
    assert it.gamma_d_gamma(t) == pytest.approx(half_d_gamma2, abs=1e-5)
    assert it.gamma_d_gamma(t) == pytest.approx(it.gamma(t) * it.d_gamma(t), abs=1e-12)


@given(it=interpolants(), t=st.floats(0.02, 0.98))
def test_coefficient_derivatives_match_finite_differences(it, t):
    _check_derivatives(it, t)


#: the reference code's trigonometric interpolant, gamma_scale in [0, 3.9] (it needs gamma_scale < 4)
albergo2023_interpolants = st.builds(
    lambda a: dc.TrigonometricInterpolant(a, variant="albergo2023"), st.one_of(st.just(0.0), st.floats(0.0, 3.9))
)


@given(it=albergo2023_interpolants, t=st.floats(0.02, 0.98))
def test_albergo2023_derivatives_match_finite_differences(it, t):
    # near gamma_scale = 3.9 and t = 1/2 the factor r = sqrt(1 - gamma^2) falls to 0.16 and the third
    # derivatives of c_0, c_1 grow to ~1e3: truncation h^2 |c'''| / 6 ~ 2e-10, far below 1e-5
    _check_derivatives(it, t)


@given(it=albergo2023_interpolants, t=arrays(np.float64, (5,), elements=st.floats(0.0, 1.0)))
def test_albergo2023_preserves_variance_and_the_ends(it, t):
    """``c_0^2 + c_1^2 + gamma^2 = 1`` (standard ends give a standard ``x_t``), and the ends are exact."""
    np.testing.assert_allclose(it.coef0(t) ** 2 + it.coef1(t) ** 2 + it.gamma(t) ** 2, 1.0, rtol=0, atol=1e-14)
    assert (it.coef0(0.0), it.coef0(1.0), it.coef1(0.0), it.coef1(1.0)) == (1.0, 0.0, 0.0, 1.0)
    it.check_boundaries(atol=0.0)


def test_trigonometric_variants_agree_without_latent_noise_and_differ_with_it():
    t = np.linspace(0.0, 1.0, 41)
    ours, theirs = dc.TrigonometricInterpolant(0.0), dc.TrigonometricInterpolant(0.0, variant="albergo2023")
    for coef in ("coef0", "coef1", "gamma", "d_coef0", "d_coef1", "d_gamma", "gamma_d_gamma"):
        np.testing.assert_array_equal(getattr(ours, coef)(t), getattr(theirs, coef)(t), err_msg=coef)
    fields = [dc.interpolant_fields(it, R0, R1) for it in (ours, theirs)]
    x = fields[0].marginal(0.4).sample(10, rng=0)
    for name in ("velocity", "score", "log_prob"):
        np.testing.assert_array_equal(getattr(fields[0], name)(x, 0.4), getattr(fields[1], name)(x, 0.4), name)
    # with gamma > 0 the path is shrunk by r = sqrt(1 - gamma^2), r(1/2) = sqrt(3)/2 for gamma_scale = 1
    ours, theirs = dc.TrigonometricInterpolant(1.0), dc.TrigonometricInterpolant(1.0, variant="albergo2023")
    assert theirs.coef1(0.5) == pytest.approx(math.sqrt(3) / 2 * ours.coef1(0.5), rel=1e-14)
    assert theirs.gamma(0.5) == ours.gamma(0.5) == 0.5


def _bad_user_functions(delta):
    """rule -> (coef0, coef1, gamma) violating exactly that rule by ``delta``."""
    c0, c1, g = (lambda t: 1 - t), (lambda t: t), (lambda t: np.sqrt(t * (1 - t)))
    return {
        "coef0(0) = 1": (lambda t: (1 + delta) * (1 - t), c1, g),
        "coef0(1) = 0": (lambda t: 1 - (1 - delta) * t, c1, g),
        "coef1(0) = 0": (c0, lambda t: delta + (1 - delta) * t, g),
        "coef1(1) = 1": (c0, lambda t: (1 + delta) * t, g),
        "gamma(0) = 0": (c0, c1, lambda t: delta * (1 - t) + t * (1 - t)),
        "gamma(1) = 0": (c0, c1, lambda t: delta * t + t * (1 - t)),
        "gamma must be >= 0": (c0, c1, lambda t: -delta * t * (1 - t)),
    }


@given(delta=st.floats(1e-8, 1.0), rule=st.sampled_from(list(_bad_user_functions(0.1))))
def test_user_interpolant_names_the_violated_boundary_condition(delta, rule):
    coefs = _bad_user_functions(delta)[rule]
    with pytest.raises(ValueError, match=re.escape(rule)):
        dc.Interpolant(*coefs)
    dc.Interpolant(*coefs, atol=2 * delta)  # the same functions pass within a tolerance above the violation


@given(
    it=st.one_of(interpolants(), st.sampled_from([CASES["user-fd"][0], CASES["cosine-vp-path"][0]])),
    xs=arrays(np.float64, (3, 4, 2), elements=finite),
    per_sample=st.booleans(),
)
def test_sample_xt_returns_the_ends_exactly(it, xs, per_sample):
    x0, x1, z = xs
    for t, end in ((0.0, x0), (1.0, x1)):
        np.testing.assert_array_equal(it.sample_xt(x0, x1, np.full(4, t) if per_sample else t, z), end)


@given(t=times, field=st.sampled_from(["velocity", "score", "denoiser", "log_prob"]), name=st.sampled_from(list(CASES)))
@settings(max_examples=20)
def test_reverse_time_twice_gives_back_the_field(t, field, name):
    kind = {"log_prob": "density"}.get(field, field)
    f = getattr(FIELDS[name], field)
    twice = dc.reverse_time(dc.reverse_time(f, kind), kind)
    x, _ = _points(FIELDS[name], t, 5, seed=900)
    # exact up to the rounding of 1 - (1 - t), |error| <= 1.1e-16 (none for t >= 1/2): with
    # coefficients ~ sqrt(t) near the ends that is a relative change <= 1e-16 / t = 1e-12
    np.testing.assert_allclose(twice(x, t), f(x, t), rtol=1e-10, atol=1e-12)
    once = dc.reverse_time(f, kind)(x, 1 - t)
    np.testing.assert_allclose(once, -f(x, t) if kind == "velocity" else f(x, t), rtol=1e-10, atol=1e-12)


@given(pair=bridging_processes(), t=times)
def test_process_interpolant_round_trip(pair, t):
    p, atol = pair
    q = dc.process_from_interpolant(dc.interpolant_from_process(p, atol=atol))
    # the round trip evaluates p at 1 - (1 - t), within 1.1e-16 of t: relative 1e-16 / t <= 1e-12
    # for sigma ~ sqrt(t).  f and g^2 are derived differently (AffineProcess: d_alpha / alpha; the
    # cosine schedule: -theta' tan theta, which loses digits as alpha -> 0 at t -> end = 1), so
    # they are compared away from t = 1.
    coefs = ("alpha", "sigma", "d_alpha", "d_sigma") + (("drift_coef", "diffusion_squared") if t <= 0.99 else ())
    for coef in coefs:
        assert getattr(q, coef)(t) == pytest.approx(getattr(p, coef)(t), rel=1e-9, abs=1e-12), coef
    for coef in ("alpha", "sigma"):
        assert getattr(q, coef)(0.0) == getattr(p, coef)(0.0) and getattr(q, coef)(1.0) == getattr(p, coef)(1.0)


def test_linear_beta_vp_path_needs_a_tolerance():
    with pytest.raises(ValueError, match=r"boundary condition coef[01]\(0\) = [01]"):
        dc.interpolant_from_process(dc.VPSDE())
    it = dc.interpolant_from_process(dc.VPSDE(), atol=7e-3)
    assert it.coef1(0.0) == pytest.approx(dc.VPSDE().alpha(1.0)) and 0 < it.coef1(0.0) < 7e-3
    # and a path whose only fault is alpha(1) != 0 is refused naming that condition
    with pytest.raises(ValueError, match=re.escape("coef1(0) = 0")):
        dc.interpolant_from_process(dc.AffineProcess(lambda t: 1 - 0.99 * t, lambda t: t))


def test_one_sided_linear_interpolant_is_the_rectified_flow_process():
    p = dc.process_from_interpolant(dc.OneSidedInterpolant())
    t = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(p.alpha(t), 1 - t, rtol=0, atol=1e-15)
    np.testing.assert_allclose(p.sigma(t), t, rtol=0, atol=1e-15)
    np.testing.assert_allclose(p.d_alpha(t), -1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(p.d_sigma(t), 1.0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["one-sided-linear", "one-sided-trigonometric", "cosine-vp-path"])
def test_diffusion_and_flow_conventions_give_the_same_fields(name):
    # The diffusion side is computed by diffcore.distributions (exact_score, a different
    # implementation of the mixture algebra); the flow side by the interpolant fields.  Measured
    # agreement: 1e-15 (score) and 1e-14 (velocity) of the field's size; 1e-12 required.
    it, _, data = CASES[name]
    process = dc.process_from_interpolant(it)
    fields = FIELDS[name]
    score = dc.exact_score(process, data)
    pf_ode = dc.ProbabilityFlowODE(process, score)
    flow_score, flow_velocity = dc.reverse_time(fields.score, "score"), dc.reverse_time(fields.velocity)
    for j, t in enumerate(np.linspace(0.05, 0.95, 7)):
        x = dc.marginal(process, data, float(t)).sample(20, rng=1000 + j)
        s = score(x, float(t))
        np.testing.assert_allclose(flow_score(x, float(t)), s, rtol=1e-12, atol=1e-12 * np.abs(s).max())
        drift = pf_ode.drift(x, float(t))
        np.testing.assert_allclose(flow_velocity(x, float(t)), drift, rtol=1e-12, atol=1e-12 * np.abs(drift).max())
        per_sample = np.full(20, t)
        np.testing.assert_allclose(flow_score(x, per_sample), s, rtol=1e-12, atol=1e-12 * np.abs(s).max())


# -- bad input ----------------------------------------------------------------------------------------

F = FIELDS["linear-1"]
X = np.zeros((3, 2))
G3 = dc.Gaussian(np.zeros(3), np.eye(3))
UP, DOWN = np.linspace(0.0, 1.0, 5), np.linspace(1.0, 0.0, 5)


def _case(id_, thunk, exc, match):
    return pytest.param(thunk, exc, match, id=id_)


BAD_INPUT = [
    _case(
        "sde-eps-negative",
        lambda: dc.InterpolantSDE(F.velocity, F.score, eps=-0.1),
        ValueError,
        r"eps must be >= 0; got -0.1",
    ),
    _case(
        "sde-way",
        lambda: dc.InterpolantSDE(F.velocity, F.score, way="sideways"),
        ValueError,
        r"unknown way 'sideways'; known: backward, forward",
    ),
    _case(
        "linear-gamma-negative", lambda: dc.LinearInterpolant(-1.0), ValueError, r"gamma_scale must be >= 0; got -1.0"
    ),
    _case(
        "trig-gamma-negative",
        lambda: dc.TrigonometricInterpolant(-0.5),
        ValueError,
        r"gamma_scale must be >= 0; got -0.5",
    ),
    _case(
        "trig-variant-unknown",
        lambda: dc.TrigonometricInterpolant(variant="albergo"),
        ValueError,
        r"unknown variant 'albergo'; known: albergo2023, diffcore",
    ),
    _case(
        "trig-albergo2023-gamma-too-large",
        lambda: dc.TrigonometricInterpolant(4.0, variant="albergo2023"),
        ValueError,
        r"variant 'albergo2023' needs gamma_scale < 4 .*; got 4.0",
    ),
    _case("mirror-gamma-zero", lambda: dc.MirrorInterpolant(0.0), ValueError, r"gamma_scale must be > 0; got 0.0"),
    _case("one-sided-kind", lambda: dc.OneSidedInterpolant("cubic"), ValueError, r"unknown kind 'cubic'"),
    _case(
        "fields-dims",
        lambda: dc.interpolant_fields(dc.LinearInterpolant(), STD_NORMAL, G3),
        ValueError,
        r"rho0 and rho1 must have the same dimension; got 2 and 3",
    ),
    _case(
        "mirror-different-laws",
        lambda: dc.interpolant_fields(dc.MirrorInterpolant(), R0, R1),
        ValueError,
        r"MirrorInterpolant needs rho0 and rho1 to be the same law",
    ),
    _case(
        "fields-not-interpolant",
        lambda: dc.interpolant_fields(dc.VPSDE(), R0, R1),
        TypeError,
        r"interpolant must be an AbstractInterpolant; got VPSDE",
    ),
    _case(
        "fields-not-a-law",
        lambda: dc.interpolant_fields(dc.LinearInterpolant(), np.zeros(2), R1),
        TypeError,
        r"rho0 must be a Gaussian or a GaussianMixture; got ndarray",
    ),
    _case(
        "ode-not-callable",
        lambda: dc.InterpolantODE(3.0),
        TypeError,
        r"velocity must be callable \(x, t\) -> array; got float",
    ),
    _case(
        "sde-score-not-callable",
        lambda: dc.InterpolantSDE(F.velocity, None),
        TypeError,
        r"score must be callable \(x, t\) -> array; got NoneType",
    ),
    _case(
        "user-not-callable",
        lambda: dc.Interpolant(1.0, lambda t: t, lambda t: 0 * t),
        TypeError,
        r"coef0_fn must be callable; got float",
    ),
    _case(
        "x-wrong-dim",
        lambda: F.velocity(np.zeros((3, 3)), 0.5),
        ValueError,
        r"x must have shape \(n, 2\); got \(3, 3\)",
    ),
    _case("x-flat", lambda: F.score(np.zeros(2), 0.5), ValueError, r"x must have shape \(n, 2\); got \(2,\)"),
    _case("t-above", lambda: F.score(X, 1.5), ValueError, r"t must lie in \[0, 1\]; got 1.5"),
    _case(
        "t-below-array",
        lambda: F.log_prob(X, np.array([0.5, -0.1, 0.2])),
        ValueError,
        r"t must lie in \[0, 1\]; got -0.1",
    ),
    _case(
        "t-batch-mismatch",
        lambda: F.velocity(X, np.array([0.5, 0.2])),
        ValueError,
        r"t must be a float or have shape \(n,\) = \(3,\); got \(2,\)",
    ),
    _case(
        "coef-t-outside", lambda: dc.LinearInterpolant().coef0(-0.1), ValueError, r"t must lie in \[0, 1\]; got -0.1"
    ),
    _case(
        "sample-xt-t-outside",
        lambda: dc.LinearInterpolant().sample_xt(X, X, 1.2, X),
        ValueError,
        r"t must lie in \[0, 1\]; got 1.2",
    ),
    _case(
        "sample-xt-shapes",
        lambda: dc.LinearInterpolant().sample_xt(X, np.zeros((3, 3)), 0.5, X),
        ValueError,
        r"x0, x1 and z must have the same shape; got \(3, 2\), \(3, 3\), \(3, 2\)",
    ),
    _case("marginal-array-t", lambda: F.marginal(np.array([0.5])), ValueError, r"marginal needs a scalar t"),
    _case(
        "backward-sde-increasing-grid",
        lambda: dc.integrate(dc.InterpolantSDE(F.velocity, F.score, way="backward"), X, UP, "euler_maruyama"),
        ValueError,
        r"integrated backwards in time; ts must be decreasing",
    ),
    _case(
        "forward-sde-decreasing-grid",
        lambda: dc.integrate(dc.InterpolantSDE(F.velocity, F.score), X, DOWN, "euler_maruyama"),
        ValueError,
        r"integrated forwards in time; ts must be increasing",
    ),
    _case(
        "ode-solver-for-sde",
        lambda: dc.integrate(dc.InterpolantSDE(F.velocity, F.score), X, UP, "heun"),
        ValueError,
        r"heun integrates ODEs \(zero diffusion\)",
    ),
    _case(
        "process-of-two-sided",
        lambda: dc.process_from_interpolant(dc.LinearInterpolant()),
        ValueError,
        r"needs a one-sided interpolant \(gamma = 0 everywhere\)",
    ),
    _case("reverse-time-kind", lambda: dc.reverse_time(F.score, "curl"), ValueError, r"unknown kind 'curl'"),
    _case("reverse-time-not-callable", lambda: dc.reverse_time("score"), TypeError, r"field must be callable"),
]


@pytest.mark.parametrize(("thunk", "exc", "match"), BAD_INPUT)
def test_bad_input_is_refused_with_the_rule(thunk, exc, match):
    with pytest.raises(exc, match=match):
        thunk()


def test_sde_runs_in_its_own_direction_and_an_eps_zero_sde_either_way():
    for way, grid in (("forward", UP), ("backward", DOWN)):
        sol = dc.integrate(dc.InterpolantSDE(F.velocity, F.score, eps=0.5, way=way), X, grid, "euler_maruyama", rng=0)
        assert sol.x.shape == X.shape and np.all(np.isfinite(sol.x))
    ode_like = dc.InterpolantSDE(F.velocity, F.score, eps=0.0, way="backward")
    assert ode_like.direction == 0 and not ode_like.stochastic
    np.testing.assert_array_equal(
        dc.integrate(ode_like, X, UP, "heun").x, dc.integrate(dc.InterpolantODE(F.velocity), X, UP, "heun").x
    )


# -- array backends -------------------------------------------------------------------------------------

BACKEND_CASES = [name for name in CASES if name != "user-fd"]  # the user functions are NumPy-only


@pytest.mark.parametrize("name", BACKEND_CASES)
def test_fields_keep_the_backend(backend, name):
    fields = FIELDS[name]
    x_np, _ = _points(fields, 0.4, 8, seed=1100)
    t_np = np.linspace(0.1, 0.9, 8)
    x, t = backend(x_np), backend(t_np)
    for field in ("velocity", "score", "denoiser", "log_prob"):
        for tt, tt_np in ((0.4, 0.4), (t, t_np)):
            out = getattr(fields, field)(x, tt)
            backend.check_like(out)
            ref = getattr(fields, field)(x_np, tt_np)
            np.testing.assert_allclose(
                backend.to_numpy(out), ref, rtol=backend.rtol, atol=backend.rtol * np.abs(ref).max(), err_msg=field
            )


@pytest.mark.parametrize("name", BACKEND_CASES)
def test_interpolant_keeps_the_backend(backend, name):
    it = CASES[name][0]
    rng = np.random.default_rng(1200)
    x0, x1, z = (rng.standard_normal((6, 2)) for _ in range(3))
    t_np = np.linspace(0.1, 0.9, 6)
    t = backend(t_np)
    for coef in ("coef0", "coef1", "gamma", "d_coef0", "d_coef1", "d_gamma", "gamma_d_gamma"):
        out = getattr(it, coef)(t)
        backend.check_like(out)
        np.testing.assert_allclose(backend.to_numpy(out), getattr(it, coef)(t_np), rtol=backend.rtol, atol=backend.rtol)
    for method in ("sample_xt", "time_derivative"):
        out = getattr(it, method)(backend(x0), backend(x1), t, backend(z))
        backend.check_like(out)
        ref = getattr(it, method)(x0, x1, t_np, z)
        np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=backend.rtol, atol=backend.rtol * np.abs(ref).max())


def test_interpolant_ode_keeps_the_backend(backend):
    fields = FIELDS["linear-1"]
    x_np = R0.sample(10, rng=1300)
    out = dc.integrate(dc.InterpolantODE(fields.velocity), backend(x_np), UP, "heun").x
    backend.check_like(out)
    ref = dc.integrate(dc.InterpolantODE(fields.velocity), x_np, UP, "heun").x
    np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=backend.rtol, atol=backend.rtol * np.abs(ref).max())
