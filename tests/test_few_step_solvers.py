"""Few-step solvers: iPNDM (equal-step Adams–Bashforth in rho) and UniPC's B(h) variants.

Their declared orders are measured by the one parametrised test over ``dc.SOLVERS`` in
``test_samplers.py`` (on their declared grids); here are the oracles for what that test cannot see:
the warm start, exactness for polynomial noise predictions on a grid uniform in ``rho``, why the
order is 2 on the other grids, and the wiring of ``B(h)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import diffcore as dc
from diffcore.samplers._unipc import b_of_h, unipc_coefficients
from diffcore.testing import fit_order
from tests.test_samplers import ODE_SOLVERS

NEW = ["ipndm", "unipc_2_bh1", "unipc_3_bh1"]
VP = dc.VPSDE()
DATA = dc.Gaussian(np.array([0.5, -1.0]), np.array([[1.0, 0.3], [0.3, 0.5]]))
SCORE = dc.exact_score(VP, DATA)
ODE = dc.ProbabilityFlowODE(VP, SCORE)


def _rho(t: float) -> float:
    return float(VP.sigma(t) / VP.alpha(t))


def _rho_grid(rho_max: float, rho_min: float, steps: int) -> np.ndarray:
    """Times whose ``rho = sigma / alpha = exp(-lambda)`` are equally spaced (VP's exact inverse)."""
    rho = np.linspace(rho_max, rho_min, steps + 1)
    return np.asarray(VP.log_snr_inverse(-2.0 * np.log(rho)), dtype=np.float64)


def test_new_solvers_are_order_tested():
    """The parametrised order test of test_samplers.py measures each of them on its declared grid."""
    assert set(NEW) <= set(ODE_SOLVERS)
    assert dc.SOLVERS["ipndm"].grid == "edm"
    assert dc.SOLVERS["unipc_3_bh1"].order == dc.SOLVERS["unipc_3"].order
    assert dc.SOLVERS["unipc_2_bh1"].order == dc.SOLVERS["unipc_2"].order


# -- iPNDM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", dc.GRIDS)
def test_ipndm_first_step_is_ddim(grid, method="ipndm"):
    ts = dc.time_grid(VP, 6, t_min=1e-3, kind=grid)
    x = VP.prior_sample((5, 2), rng=0)
    first = dc.integrate(ODE, x, ts[:2], method).x
    np.testing.assert_allclose(first, dc.integrate(ODE, x, ts[:2], "ddim").x, rtol=1e-14, atol=1e-14)


def _polynomial_eps(coef):
    """A noise prediction independent of x, polynomial in rho: dy/drho = P'(rho), solved exactly."""
    return lambda x, t: -np.polyval(coef, _rho(t)) * np.ones_like(x) / VP.sigma(t)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ipndm_integrates_polynomials_in_rho(degree, method="ipndm"):
    """eps a polynomial of degree ``d`` in rho: from step ``d + 1`` on each step is exact on a grid uniform in
    rho; the warm-start steps before are not (Adams–Bashforth of order ``min(i, 4)`` at step ``i``), and the
    equal-step weights are not exact on the log-SNR grid.  That the inexact cases differ by far more than
    rounding gives the test its power."""
    coef = np.array([0.02, -0.1, 0.3, 0.7])[3 - degree :]
    antider = np.polyint(coef)
    ode = dc.ProbabilityFlowODE(VP, _polynomial_eps(coef))
    x0 = np.array([[0.4, -0.3]])
    for grid, ts in (
        ("rho", _rho_grid(_rho(0.6), _rho(0.05), 8)),
        ("log_snr", dc.time_grid(VP, 8, t_min=0.05, t_max=0.6, kind="log_snr")),
    ):
        path = dc.integrate(ode, x0, ts, method, save_path=True).path
        for i in range(8):
            a0, a1 = float(VP.alpha(ts[i])), float(VP.alpha(ts[i + 1]))
            exact = (a1 / a0) * path[i] + a1 * (np.polyval(antider, _rho(ts[i + 1])) - np.polyval(antider, _rho(ts[i])))
            err = float(np.max(np.abs(path[i + 1] - exact)))
            should_be_exact = i >= degree and grid == "rho"
            if should_be_exact:
                assert err < 1e-12, (method, grid, i, err)
            elif degree > 0:
                assert err > 1e-6, (method, grid, i, err)


def test_ipndm_is_second_order_off_a_rho_uniform_grid():
    """The equal-step weights on the edm grid leave an O(h^3) local error: order 2 (the docstring's claim).

    2-D Gaussian data, t from 1 to 1e-2, 100-400 steps: measured slope 2.01; the tolerance 0.25 of the
    order test.  (The weights are exact on a grid uniform in rho, where the method is of order 4, but
    such a grid puts nearly every step at the noisy end, rho(1) ~ 150, and is useless in practice.)
    """
    x = VP.prior_sample((20, 2), rng=2)
    from diffcore.testing import reference_ode_solution

    ref = reference_ode_solution(ODE, x, 1.0, 1e-2, rtol=1e-12, atol=1e-12)
    steps = (100, 200, 400)
    errors = [
        float(np.max(np.abs(dc.integrate(ODE, x, dc.time_grid(VP, n, t_min=1e-2, kind="edm"), "ipndm").x - ref)))
        for n in steps
    ]
    assert abs(fit_order(steps, errors) - 2) < 0.25, errors


@pytest.mark.parametrize("method", NEW)
def test_torch_matches_numpy(method):
    torch = pytest.importorskip("torch")
    x = VP.prior_sample((5, 2), rng=2)
    ref = dc.sample(VP, SCORE, x, method=method, steps=7, grid="log_snr").x
    out = dc.sample(VP, SCORE, torch.as_tensor(x), method=method, steps=7, grid="log_snr").x
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)


# -- UniPC's B(h) ---------------------------------------------------------------------------------


def test_b_of_h_values_and_bad_variant():
    h = 0.7
    assert b_of_h(h, "bh1") == h
    assert b_of_h(h, "bh2") == pytest.approx(1 - math.exp(-h), rel=1e-15)
    with pytest.raises(ValueError, match=r"unknown variant 'bh3'"):
        b_of_h(h, "bh3")
    with pytest.raises(ValueError, match=r"unknown variant 'bh3'"):
        unipc_coefficients([-1.0, 1.0], h, "bh3")


@pytest.mark.parametrize("nodes", [[-1.0, 1.0], [-0.8, -1.9, 1.0]])
def test_b_of_h_cancels_with_two_or_more_nodes(nodes):
    """For K >= 2 the solved a_j scale as 1/B(h): B(h) a_j is the same for both variants (to rounding)."""
    for h in (0.05, 0.5, 2.0):
        b1 = b_of_h(h, "bh1") * unipc_coefficients(nodes, h, "bh1")
        b2 = b_of_h(h, "bh2") * unipc_coefficients(nodes, h, "bh2")
        np.testing.assert_allclose(b1, b2, rtol=1e-12)


@pytest.mark.parametrize(("bh2", "bh1"), [("unipc_2", "unipc_2_bh1"), ("unipc_3", "unipc_3_bh1")])
def test_variants_differ_by_a_third_order_local_term(bh2, bh1):
    """Two steps of length h in lambda from t = 0.5: the variants agree on step 1 (no K = 1 formula) and
    differ on step 2 by alpha (h - (1 - e^{-h})) D_1 / 2 = O(h^3) (D_1 = O(h)).  Measured slopes 3.10 (unipc_2) and
    3.19 (unipc_3) from h = 0.4 to 0.05; a wrong B(h) (or none) gives slope 2 or an identical result."""
    x = VP.prior_sample((4, 2), rng=3)
    lam0 = 0.5 * float(VP.log_snr(0.5))
    diffs = []
    hs = (0.4, 0.2, 0.1, 0.05)
    for h in hs:
        ts = np.asarray(VP.log_snr_inverse(2.0 * (lam0 + h * np.arange(3))), dtype=np.float64)
        p2 = dc.integrate(ODE, x, ts, bh2, save_path=True).path
        p1 = dc.integrate(ODE, x, ts, bh1, save_path=True).path
        np.testing.assert_array_equal(p1[1], p2[1])
        diffs.append(float(np.max(np.abs(p1[2] - p2[2]))))
    assert min(diffs) > 1e-9, diffs
    assert abs(fit_order([1 / h for h in hs], diffs) - 3) < 0.25, diffs
