"""Sampler refinements: EVODiff (variance-optimal multistep) and the Levenberg–Marquardt–Langevin corrector.

The generic sweeps over ``dc.SOLVERS`` (test_samplers.py, test_contracts.py, ...) measure the declared
orders of ``evodiff`` and run ``pc_lml`` everywhere its requirements hold; here are the oracles
specific to each: the order of EVODiff with its variable coefficient, that the coefficient minimises
what it claims, the reduction to DPM-Solver++(2M), and the closed-form stationary law of LML.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov

import diffcore as dc
from diffcore.samplers._evodiff import EVODiff, variance_optimal_eta
from diffcore.samplers._lml import LMLPredictorCorrector, exact_log_density_hessian, lml_langevin_step
from diffcore.testing import Problem, fit_order, reference_ode_solution

VP = dc.VPSDE()


# -- EVODiff --------------------------------------------------------------------------------------
def test_evodiff_pathwise_order_on_the_mixture():
    """Slope of log RMS pathwise error on log step (log-SNR grid, P1, exact score) within 0.25 of 2.

    80-640 steps: local slopes measured 1.86, 1.92, 1.97 (the variable eta* settles as h -> 0);
    a first-order method (slope 1) or a third-order one cannot pass.
    """
    problem = Problem("P1", VP)
    x = problem.marginal(1.0).sample(8, rng=3)
    ref = reference_ode_solution(dc.ProbabilityFlowODE(VP, problem.score), x, 1.0, 1e-3)
    steps = [80, 160, 320, 640]
    errors = []
    for n in steps:
        out = dc.sample(VP, problem.score, x, method="evodiff", steps=n, t_min=1e-3, grid="log_snr")
        errors.append(np.sqrt(np.mean(np.sum((out.x - ref) ** 2, axis=1))))
    assert out.nfe == 640
    assert abs(fit_order(steps, errors) - 2) < 0.25, errors


def test_variance_optimal_eta_minimises_the_variance_it_claims():
    """eta* per sample against a brute-force scan of |(1 - eta) B_+ + eta B_-|^2 over [0, 1]."""
    rng = np.random.default_rng(0)
    b_next, b_prev = rng.standard_normal((200, 3)), rng.standard_normal((200, 3))
    b_prev[:40] = b_next[:40] + 0.1 * rng.standard_normal((40, 3))  # near-equal estimates
    eta = variance_optimal_eta(b_next, b_prev)
    assert eta.shape == (200, 1) and np.all((eta >= 0) & (eta <= 1))
    grid = np.linspace(0, 1, 4001)
    scan = np.sum(((1 - grid[:, None, None]) * b_next + grid[:, None, None] * b_prev) ** 2, axis=2)  # (G, n)
    best = scan.min(axis=0)
    attained = np.sum(((1 - eta) * b_next + eta * b_prev) ** 2, axis=1)
    # the grid minimum is within spacing^2 * |B_+ - B_-|^2 / 4 of the true one: attained can only be lower
    assert np.all(attained <= best + 1e-12), np.max(attained - best)
    assert np.max(np.abs(eta[:, 0] - grid[scan.argmin(axis=0)])) <= grid[1]
    # interior minima are unclipped: there the gradient in eta vanishes
    inner = (eta[:, 0] > 0) & (eta[:, 0] < 1)
    assert inner.sum() > 20
    slope = np.sum(((1 - eta) * b_next + eta * b_prev) * (b_prev - b_next), axis=1)
    np.testing.assert_allclose(slope[inner], 0.0, atol=1e-12)


def test_evodiff_with_eta_one_is_dpm_solver_pp_2m():
    """eta = 1 puts all weight on the backward difference: the corrector is then the identity and,
    from the third step on (after the trapezoidal warm-up correction of step 1), every step is
    DPM-Solver++(2M) (Lu et al. 2022b, alg. 2) from the same state and history, to rounding."""
    problem = Problem("P1", VP)
    dyn = dc.ProbabilityFlowODE(VP, problem.score)
    ts = dc.time_grid(VP, 8, t_min=1e-3, kind="log_snr")
    evo, dpm = EVODiff(eta=1.0), dc.get_solver("dpm_solver_pp_2m")
    x, state = problem.marginal(1.0).sample(16, rng=1), None
    compared = 0
    for i in range(len(ts) - 1):
        if i >= 2:
            _, _, l_prev, m_prev, _ = state
            expected, _ = dpm.step(dyn, x, ts[i], ts[i + 1], None, (l_prev, m_prev))
        x, state = evo.step(dyn, x, ts[i], ts[i + 1], None, state)
        if i >= 2:
            np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-12)
            compared += 1
    assert compared == 6
    # and the variance-optimal choice is a different method on this problem
    out = [dc.sample(VP, problem.score, x, method=EVODiff(eta=e), steps=8, grid="log_snr").x for e in (None, 1.0)]
    assert np.max(np.abs(out[0] - out[1])) > 1e-3


# -- Levenberg–Marquardt–Langevin ----------------------------------------------------------------
def _gaussian_target(d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s = q @ np.diag(np.geomspace(0.05, 5.0, d)) @ q.T
    return rng.standard_normal(d), s


def _affine_map(step, d: int):
    """``(A, B, c)`` with ``step(x, z) = A x + B z + c``, by probing the basis (the step is affine)."""
    zero = np.zeros((1, d))
    c = step(zero, zero)[0]
    eye = np.eye(d)
    a = (step(eye, np.zeros((d, d))) - c).T
    b = (step(np.zeros((d, d)), eye) - c).T
    return a, b, c


def _lml_on(mean, cov, eps, lam, hessian=True):
    prec = np.linalg.inv(cov)

    def step(x, z):
        grad = -(x - mean) @ prec
        hess = np.broadcast_to(-prec, (len(x), *prec.shape)) if hessian else None
        return lml_langevin_step(x, grad, z, step_size=eps, damping=lam, hessian=hess)

    return step


def _plain_langevin_on(mean, cov, h):
    prec = np.linalg.inv(cov)
    return lambda x, z: x - h * (x - mean) @ prec + np.sqrt(2 * h) * z


def test_lml_stationary_law_is_the_closed_form():
    """Exact Hessian on N(m, S): the move is affine, x' = A x + B z + c; its stationary covariance
    (discrete Lyapunov equation, no Monte Carlo) is S (I - eps Q / 2)^{-1}, Q = (I + lambda S)^{-1},
    its mean m; and it tends to S at rate O(eps)."""
    mean, cov = _gaussian_target()
    d = len(mean)
    for eps, lam in [(0.5, 0.3), (0.1, 2.0), (1.0, 0.01)]:
        a, b, c = _affine_map(_lml_on(mean, cov, eps, lam), d)
        stat_cov = solve_discrete_lyapunov(a, b @ b.T)
        stat_mean = np.linalg.solve(np.eye(d) - a, c)
        q = np.linalg.inv(np.eye(d) + lam * cov)
        np.testing.assert_allclose(stat_cov, cov @ np.linalg.inv(np.eye(d) - eps * q / 2), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(stat_mean, mean, rtol=1e-9, atol=1e-12)
        # A = I - eps P S^{-1} and B B^T = 2 eps P with P = (S^{-1} + lambda I)^{-1}
        p = np.linalg.inv(np.linalg.inv(cov) + lam * np.eye(d))
        np.testing.assert_allclose(b @ b.T, 2 * eps * p, rtol=1e-9, atol=1e-12)
    gaps = []
    for eps in (0.2, 0.1, 0.05):
        a, b, _ = _affine_map(_lml_on(mean, cov, eps, 0.5), d)
        gaps.append(np.linalg.norm(solve_discrete_lyapunov(a, b @ b.T) - cov))
    assert abs(fit_order([1 / 0.2, 1 / 0.1, 1 / 0.05], gaps) - 1) < 0.1, gaps  # bias O(eps)


def test_lml_large_damping_is_plain_langevin_with_step_eps_over_lambda():
    mean, cov = _gaussian_target()
    rng = np.random.default_rng(1)
    x, z = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    for hessian in (True, False):
        got = _lml_on(mean, cov, 2.0, 1e7, hessian)(x, z)
        want = _plain_langevin_on(mean, cov, 2.0 / 1e7)(x, z)
        scale = np.max(np.abs(want - x))  # corrections relative to the move are O(|H| / lambda) ~ 1e-6
        np.testing.assert_allclose(got - x, want - x, rtol=1e-5, atol=1e-5 * scale)


def test_lml_beats_plain_langevin_at_equal_nfe_on_an_ill_conditioned_gaussian():
    """W2 to N(m, S) (condition number 100) after 10 moves from N(0, I), exactly by law propagation:
    LML with the exact Hessian against plain Langevin at its best step on a grid (same NFE)."""
    mean, cov = _gaussian_target()
    d = len(mean)

    def w2_after(step, k=10):
        a, b, c = _affine_map(step, d)
        m, s = np.zeros(d), np.eye(d)
        for _ in range(k):
            m, s = a @ m + c, a @ s @ a.T + b @ b.T
        return dc.w2_gaussian(m, s, mean, cov)

    lml = w2_after(_lml_on(mean, cov, 0.5, 0.05))
    s_min = np.linalg.eigvalsh(cov)[0]
    plain = min(w2_after(_plain_langevin_on(mean, cov, f * s_min)) for f in (0.25, 0.5, 1.0, 1.5, 1.9))
    assert lml < 0.3 * plain, (lml, plain)


def test_rank_one_estimate_is_the_damped_inverse_of_s_s_transpose():
    """Without a Hessian the move uses H = s s^T (Sherman-Morrison): it equals the dense move with
    the Hessian array -s s^T, for the drift and for the noise (P^{1/2} z) alike."""
    rng = np.random.default_rng(4)
    x, g, z = rng.standard_normal((7, 3)), 3 * rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    dense = -g[:, :, None] * g[:, None, :]
    for zz in (z, np.zeros_like(z)):
        got = lml_langevin_step(x, g, zz, step_size=0.3, damping=0.7)
        want = lml_langevin_step(x, g, zz, step_size=0.3, damping=0.7, hessian=dense)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_exact_hessian_matches_central_differences_of_the_exact_score():
    problem = Problem("P1", VP)
    hess = exact_log_density_hessian(VP, problem.data)
    x, t, e = problem.marginal(0.3).sample(6, rng=2), 0.3, 1e-5
    cols = [(problem.score(x + e * u, t) - problem.score(x - e * u, t)) / (2 * e) for u in np.eye(2)]
    np.testing.assert_allclose(hess(x, t), np.stack(cols, axis=2), atol=1e-6)  # central difference O(e^2)


def test_pc_lml_runs_through_sample_and_its_exact_hessian_law_is_affine():
    problem = Problem("P1", VP)
    solver = LMLPredictorCorrector(hessian=exact_log_density_hessian(VP, problem.data), corrector_steps=2)
    assert solver.affine_step and not dc.get_solver("pc_lml").affine_step
    out = dc.sample(VP, problem.score, problem.marginal(1.0).sample(64, rng=0), method=solver, steps=20, rng=0)
    assert out.nfe == 60 and np.all(np.isfinite(out.x))


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: LMLPredictorCorrector(damping=0.0), ValueError, "damping"),
        (lambda: LMLPredictorCorrector(step_size=-1.0), ValueError, "step_size"),
        (lambda: LMLPredictorCorrector(corrector_steps=-1), ValueError, "corrector_steps"),
        (lambda: LMLPredictorCorrector(hessian=np.eye(2)), TypeError, "hessian must be None or a callable"),
        (lambda: EVODiff(eta=1.5), ValueError, r"eta must lie in \[0, 1\]"),
        (lambda: EVODiff(eta=True), TypeError, "eta must be None or a float"),
        (lambda: exact_log_density_hessian(VP, np.eye(2)), TypeError, "Gaussian or a GaussianMixture"),
        (
            lambda: lml_langevin_step(
                np.ones((2, 2)),
                np.ones((2, 2)),
                np.ones((2, 2)),
                step_size=0.1,
                damping=1.0,
                hessian=np.ones((2, 3, 3)),
            ),
            ValueError,
            r"hessian\(x, t\) must have shape \(n, d, d\) = \(2, 2, 2\); got \(2, 3, 3\)",
        ),
    ],
)
def test_bad_input_is_named(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_wrong_hessian_shape_inside_sample_is_named():
    problem = Problem("P1", VP)
    solver = LMLPredictorCorrector(hessian=lambda x, t: np.zeros((len(x), 3, 3)))
    with pytest.raises(ValueError, match="hessian"):
        dc.sample(VP, problem.score, np.zeros((4, 2)), method=solver, steps=2, rng=0)
