"""Exponential integrators in log-SNR time (DPM-Solver, DPM-Solver++, DEIS, UniPC): oracles beyond the order test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

import diffcore as dc
from diffcore.samplers._deis import deis_weights
from diffcore.samplers._exponential import phi
from tests.conftest import PROCESSES

FAST = ["dpm_solver_2", "dpm_solver_3", "dpm_solver_pp_2m", "dpm_solver_pp_3m"]
FAST += ["deis_1", "deis_2", "deis_3", "unipc_2", "unipc_3"]
M = np.array([1.5, -0.5])


def _point_mass(process):
    """Score of data = delta_M: along the exact flow eps = z and x0 = M are constant."""
    return lambda x, t: -(x - process.alpha(t) * M) / process.sigma(t) ** 2


@pytest.mark.parametrize("process_name", ["vp", "cosine", "ve", "subvp"])
@pytest.mark.parametrize("method", FAST)
def test_exact_for_a_point_mass(method, process_name):
    """Every exponential integrator is exact (to rounding) when eps and x0 are constant on the path."""
    p = PROCESSES[process_name]
    x1 = p.prior_sample((5, 2), rng=0)
    z = (x1 - p.alpha(1.0) * M) / p.sigma(1.0)
    exact = p.alpha(1e-3) * M + p.sigma(1e-3) * z
    x = dc.sample(p, _point_mass(p), x1, method=method, steps=6, grid="uniform").x
    np.testing.assert_allclose(x, exact, rtol=0, atol=1e-11)
    heun = dc.sample(p, _point_mass(p), x1, method="heun", steps=6).x
    assert np.max(np.abs(heun - exact)) > 1e-6  # the oracle has power


def test_dpm_solver_1_step_is_ddim():
    """deis_1 (tAB order 1 = DPM-Solver-1) equals DDIM step for step."""
    p, data = dc.VPSDE(), dc.Gaussian(np.zeros(2), np.eye(2) * 0.5)
    x = p.prior_sample((4, 2), rng=1)
    a = dc.sample(p, dc.exact_score(p, data), x, method="ddim", steps=7).x
    b = dc.sample(p, dc.exact_score(p, data), x, method="deis_1", steps=7).x
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("process_name", ["vp", "cosine", "ve"])
def test_deis_weights_match_adaptive_quadrature(process_name):
    p = PROCESSES[process_name]
    t0, t1, times = 0.3, 0.05, [0.3, 0.4, 0.5]
    w = deis_weights(p, t0, t1, times)
    l1 = 0.5 * p.log_snr(t1)

    def basis(j, lam):
        t = p.log_snr_inverse(2 * lam)
        return math.prod((t - times[m]) / (times[j] - times[m]) for m in range(3) if m != j) * math.exp(l1 - lam)

    for j in range(3):
        ref = -quad(lambda lam, j=j: basis(j, lam), 0.5 * p.log_snr(t0), l1, epsabs=1e-13, epsrel=1e-13)[0]
        assert abs(w[j] - ref) < 1e-11 * max(1.0, abs(ref))


def test_phi_series_and_recursion_agree():
    for k in range(4):
        for z in (0.49, -0.49):
            rec = math.exp(z)
            for j in range(k):
                rec = (rec - 1 / math.factorial(j)) / z
            assert abs(phi(k, z) - rec) < 1e-13


@pytest.mark.parametrize(("method", "deg"), [("deis_3", 2), ("deis_2", 1)])
def test_deis_integrates_polynomials_in_t_exactly(method, deg):
    """An x-independent noise prediction polynomial in t: after warm-up every step is exact."""
    p = dc.VPSDE()
    coef = np.array([0.3, -1.2, 0.7])[: deg + 1]

    def eps(t):
        return np.polyval(coef, t) * np.ones((1, 2))

    def score(x, t):
        return -eps(t) / p.sigma(t)

    ts = dc.time_grid(p, 6, t_min=0.05)
    sol = dc.integrate(dc.ProbabilityFlowODE(p, score), np.zeros((1, 2)), ts, method, save_path=True)
    for i in range(dc.SOLVERS[method].order + 1, 6):
        t0, t1 = ts[i], ts[i + 1]
        l0, l1 = 0.5 * p.log_snr(t0), 0.5 * p.log_snr(t1)
        f = lambda lam, l1=l1: np.polyval(coef, p.log_snr_inverse(2 * lam)) * math.exp(l1 - lam)  # noqa: E731
        exact = p.alpha(t1) / p.alpha(t0) * sol.path[i] - p.sigma(t1) * quad(f, l0, l1, epsabs=1e-14)[0]
        np.testing.assert_allclose(sol.path[i + 1], exact, rtol=1e-10, atol=1e-12)


def test_dpm_solver_pp_3m_integrates_quadratic_x0_exactly():
    """x0 prediction quadratic in lambda, independent of x: 3M is exact from step 3 on."""
    p = dc.VPSDE()
    c = np.array([0.2, -0.4, 1.0])

    def score(x, t):
        lam = 0.5 * p.log_snr(t)
        m = np.polyval(c, lam) * np.ones((1, 2))
        return (p.alpha(t) * m - x) / p.sigma(t) ** 2

    ts = dc.time_grid(p, 6, t_min=0.05, kind="log_snr")
    sol = dc.integrate(dc.ProbabilityFlowODE(p, score), np.zeros((1, 2)), ts, "dpm_solver_pp_3m", save_path=True)
    for i in range(3, 6):
        t0, t1 = ts[i], ts[i + 1]
        l0, l1 = 0.5 * p.log_snr(t0), 0.5 * p.log_snr(t1)
        integral = quad(lambda lam, l1=l1: np.polyval(c, lam) * math.exp(lam - l1), l0, l1, epsabs=1e-14)[0]
        exact = p.sigma(t1) / p.sigma(t0) * sol.path[i] + p.alpha(t1) * integral
        np.testing.assert_allclose(sol.path[i + 1], exact, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", FAST)
def test_torch_matches_numpy(method):
    torch = pytest.importorskip("torch")
    p, data = dc.VPSDE(), dc.Gaussian(np.array([0.5, -1.0]), np.array([[1.0, 0.3], [0.3, 0.5]]))
    x = p.prior_sample((5, 2), rng=2)
    ref = dc.sample(p, dc.exact_score(p, data), x, method=method, steps=5).x
    out = dc.sample(p, dc.exact_score(p, data), torch.as_tensor(x), method=method, steps=5).x
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_denoise_is_a_ddim_step_to_zero_and_exact_for_a_point_mass():
    p = dc.VPSDE()
    score = _point_mass(p)
    x = p.alpha(0.01) * M + p.sigma(0.01) * np.array([[0.3, -0.7]])
    np.testing.assert_allclose(dc.samplers.denoise(p, score, x, 0.01), M[None], atol=1e-12)
    data = dc.Gaussian(np.zeros(2), np.eye(2))
    s = dc.exact_score(p, data)
    y = p.prior_sample((3, 2), rng=0)
    a0, s0 = p.alpha(0.01), p.sigma(0.01)
    ddim_to_zero = (p.alpha(0.0) / a0) * y + (p.sigma(0.0) - p.alpha(0.0) / a0 * s0) * (-s0 * s(y, 0.01))
    np.testing.assert_allclose(dc.samplers.denoise(p, s, y, 0.01), ddim_to_zero, rtol=1e-12)
    with pytest.raises(ValueError, match=r"t must lie in \(0, 1\]"):
        dc.samplers.denoise(p, s, y, 0.0)


def test_first_order_below_makes_the_last_step_ddim():
    p, data = dc.VPSDE(), dc.Gaussian(np.zeros(2), np.eye(2) * 0.3)
    score = dc.exact_score(p, data)
    ts = dc.time_grid(p, 8, t_min=1e-3, kind="log_snr")
    solver = dc.samplers.DPMSolverPP3M(first_order_below=float(ts[-2]) * 0.999)
    ode = dc.ProbabilityFlowODE(p, score)
    sol = dc.integrate(ode, p.prior_sample((4, 2), rng=0), ts, solver, save_path=True)
    last, _ = dc.DDIM().step(ode, sol.path[-2], ts[-2], ts[-1], None, None)
    np.testing.assert_allclose(sol.x, last, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"first_order_below must lie in \[0, 1\]"):
        dc.samplers.DEIS3(first_order_below=2.0)


def test_alpha_zero_raises_with_the_time():
    p = dc.VPSDE()
    with pytest.raises(ValueError, match="needs alpha"):
        dc.integrate(dc.ProbabilityFlowODE(p, _point_mass(p)), np.ones((2, 2)), [0.5, 0.0], "dpm_solver_pp_2m")
