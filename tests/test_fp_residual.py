"""Fokker–Planck residuals of scores and log densities, the ODE–SDE gap and the FP regulariser.

Oracles.
* The exact score (and log density) of a Gaussian mixture solves the score (density) FP equation
  of its own process, so its residual is the derivative error alone: rounding for torch autograd,
  fourth-order truncation plus rounding for NumPy finite differences, and the FD residual falls
  by 2^FD_ORDER = 16 when the steps halve.
* Residuals are compared with the size of the terms of the equation, computed here independently
  by torch autograd (``term_scale``): ``|d_t s| + 1/2 g^2 |grad div s| + g^2 |J^T s| + |f| (|s| + |J^T x|)``.
* A perturbed score leaves a residual that is neither small nor shrinking with the steps.
* ODE and SDE samples agree for the exact score and drift apart as the residual grows; a score
  trained with the FP penalty has a smaller residual and a smaller ODE–SDE gap (slow tests).

Error model of the default finite-difference steps (see ``diffcore/fokker_planck/_fd.py``):
``h = eps^{1/6} sigma(t)``, ``k = eps^{1/5} min(t, 0.1)``.  A field varying on the length ``L``
has truncation ``(h/L)^4 <= eps^{2/3}`` (since ``L >= sigma(t)`` for an exact marginal) and
rounding ``eps (L/h)^2 = eps^{2/3} (L/sigma)^2`` relative to the terms (two nested first
differences).  With ``L`` up to the largest component std ``L_max`` of the marginal and a factor
10 for the stencil weights (sum of |weights| 1.5 per difference, squared, times d <= 3 terms),
``fd_tolerance = 10 eps^{2/3} max(1, (L_max / sigma(t))^2)``.
"""

from __future__ import annotations

import functools
import itertools
import math
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from strategies import fp_cases, skewed_mixture_2d

import diffcore as dc
from diffcore.fokker_planck import (
    FD_ORDER,
    fp_residual,
    fp_residual_log_density,
    fp_residual_norm,
    fp_terms,
    ode_sde_gap,
)
from diffcore.testing import Symmetrised, symmetrise
from tests.conftest import PROCESSES, circle_mixture

DATA = skewed_mixture_2d()
TIMES = (0.05, 0.25, 0.5, 0.75, 0.95)
F64 = torch.float64


def _exp(u):
    return torch.exp(u) if isinstance(u, torch.Tensor) else np.exp(u)


def _expm1(u):
    return torch.expm1(u) if isinstance(u, torch.Tensor) else np.expm1(u)


#: PROCESSES with the affine process written in functions that torch autograd passes through
#: (the conftest one applies np.exp, which cannot take a tensor that requires grad)
TORCH_PROCESSES = {
    **PROCESSES,
    "affine-vp": dc.AffineProcess(
        lambda t: _exp(-0.25 * 19.9 * t**2 - 0.05 * t),
        lambda t: (-_expm1(-0.5 * 19.9 * t**2 - 0.1 * t)) ** 0.5,
    ),
}


def _points(process, t, j, n=30, data=DATA):
    return dc.marginal(process, data, t).sample(n, rng=100 + j)


def _twin(process):
    """``process``, or its torch-differentiable twin for the affine one."""
    return TORCH_PROCESSES["affine-vp"] if isinstance(process, dc.AffineProcess) else process


def term_scale(process, data, x, t):
    """Per point, the sum of the sizes of the terms of the score FP equation of the exact score of
    ``data`` (torch autograd, float64)."""
    process = _twin(process)
    score = dc.exact_score(process, data)
    x = torch.as_tensor(np.asarray(x), dtype=F64).requires_grad_(True)
    tt = torch.full((x.shape[0],), float(t), dtype=F64, requires_grad=True)
    s = score(x, tt)
    rows, d_t = [], []
    for i in range(x.shape[1]):
        gx, gt = torch.autograd.grad(s[:, i].sum(), (x, tt), create_graph=True)
        rows.append(gx)
        d_t.append(gt)
    jac = torch.stack(rows, dim=1)  # jac[n, i, j] = d s_i / d x_j
    (grad_div,) = torch.autograd.grad(torch.einsum("nii->n", jac).sum(), x)
    f, g2 = process.drift_coef(t), process.diffusion_squared(t)

    def norm(a):
        return torch.linalg.norm(a.detach(), dim=1)

    jts, jtx = torch.einsum("nij,ni->nj", jac, s), torch.einsum("nij,ni->nj", jac, x)
    scale = norm(torch.stack(d_t, 1)) + 0.5 * g2 * norm(grad_div) + g2 * norm(jts) + abs(f) * (norm(s) + norm(jtx))
    # plus the size of g^2 J^T s and f s one length L = |J|^{-1/2} away from a stationary point (where
    # |s| ~ |J| L), so that the scale does not vanish at a mode (x = 0 of N(0, I) leaves every term 0)
    j_norm = torch.linalg.norm(jac.detach(), dim=(1, 2))
    return (scale + g2 * j_norm**1.5 + abs(f) * j_norm**0.5).numpy()


def density_term_scale(process, data, x, t):
    """Per point, ``|d_t log p| + 1/2 g^2 (|lap log p| + |grad log p|^2) + |f| (|x . grad log p| + d)``."""
    process = _twin(process)
    log_prob = dc.exact_log_prob(process, data)
    x = torch.as_tensor(np.asarray(x), dtype=F64).requires_grad_(True)
    tt = torch.full((x.shape[0],), float(t), dtype=F64, requires_grad=True)
    gx, gt = torch.autograd.grad(log_prob(x, tt).sum(), (x, tt), create_graph=True)
    lap = sum(torch.autograd.grad(gx[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    f, g2 = process.drift_coef(t), process.diffusion_squared(t)
    d = x.shape[1]
    scale = gt.abs() + 0.5 * g2 * (lap.abs() + (gx**2).sum(1)) + abs(f) * ((x * gx).sum(1).abs() + d)
    return scale.detach().numpy()


def fd_tolerance(process, data, t, eps=None):
    """``10 eps^{2/3} max(1, (L_max / sigma(t))^2)``: the error model of the default steps (module docstring)."""
    eps = np.finfo(np.float64).eps if eps is None else eps
    l_max = math.sqrt(float(np.linalg.eigvalsh(np.asarray(dc.marginal(process, data, t).covs)).max()))
    return 10 * eps ** (2 / 3) * max(1.0, (l_max / process.sigma(t)) ** 2)


def _rel(r, scale):
    r = r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r)
    r = r.reshape(r.shape[0], -1)
    return float(np.max(np.linalg.norm(r, axis=1) / scale))


def _rotation(x, t):
    """A smooth non-conservative field: the rotation (-x_2, x_1)."""
    return torch.stack([-x[:, 1], x[:, 0]], 1) if isinstance(x, torch.Tensor) else np.stack([-x[:, 1], x[:, 0]], 1)


PERTURBED = {
    "scaled": lambda s: lambda x, t: 1.1 * s(x, t),
    "rotation": lambda s: lambda x, t: s(x, t) + 0.2 * _rotation(x, t),
}


# -- the exact score and log density solve their FP equations ---------------------------------------------
def test_exact_score_residual_vanishes_by_finite_differences(process):
    # measured max relative residual 1.3e-11 .. 6e-8 (VE at t = 0.05, where sigma(t) = 0.014 is 60x
    # below the widest component, so rounding (L/h)^2 eps dominates); the tolerance is the error model
    score = dc.exact_score(process, DATA)
    for j, t in enumerate(TIMES):
        x = _points(process, t, j)
        rel = _rel(fp_residual(process, score, x, t), term_scale(process, DATA, x, t))
        assert rel < fd_tolerance(process, DATA, t), (t, rel, fd_tolerance(process, DATA, t))


def test_exact_log_density_residual_vanishes_by_finite_differences(process):
    # One level of second differences (sum of |weights| 64/12 per axis), but the rounding acts on the
    # values of log p rather than on its derivatives: an error eps |log p| / h^2 per axis, so the
    # tolerance of the score carries a factor max(1, max |log p|) (|log p| is 4-9 at these points).
    # Measured 0.02-0.71 of that tolerance (the largest for VE at t = 0.5, where rounding dominates:
    # doubling h lowers the error 18x, so it is not truncation).
    log_prob = dc.exact_log_prob(process, DATA)
    for j, t in enumerate(TIMES):
        x = _points(process, t, j)
        r = fp_residual_log_density(process, log_prob, x, t)
        assert r.shape == (30,)
        rel = _rel(r, density_term_scale(process, DATA, x, t))
        tol = fd_tolerance(process, DATA, t) * max(1.0, float(np.abs(log_prob(x, t)).max()))
        assert rel < tol, (t, rel, tol)


@pytest.mark.parametrize("name", list(TORCH_PROCESSES))
def test_exact_score_and_log_density_residuals_vanish_by_autograd(name):
    # Autograd differentiates exactly, so only rounding remains: a few tens of float64 operations per
    # term, ~1e-14 of the terms (measured <= 1.4e-15 for the closed-form schedules).  The affine
    # process takes f and g^2 from its own fourth-order differences of alpha and sigma^2 (fd_step
    # 1e-3, documented to ~1e-10), which bounds its residual instead.
    process = TORCH_PROCESSES[name]
    tol = 1e-9 if name == "affine-vp" else 1e-12
    score, log_prob = dc.exact_score(process, DATA), dc.exact_log_prob(process, DATA)
    for j, t in enumerate(TIMES):
        x = _points(process, t, j)
        xt = torch.as_tensor(x, dtype=F64)
        r = fp_residual(process, score, xt, t)
        assert isinstance(r, torch.Tensor) and r.dtype == F64 and r.shape == xt.shape
        assert _rel(r, term_scale(process, DATA, x, t)) < tol, (t, _rel(r, term_scale(process, DATA, x, t)))
        rd = fp_residual_log_density(process, log_prob, xt, t)
        assert _rel(rd, density_term_scale(process, DATA, x, t)) < tol, t


def test_finite_difference_residual_falls_at_the_declared_order(process):
    # Steps h = 0.1 c L_min and k = 0.1 c min(t, 0.1), c = 1 and 1/2: large enough that the
    # truncation error (not rounding, ~1e-13 here) is what is seen.  A fourth-order stencil divides
    # it by 2^4 = 16; we require the measured order log2(ratio) within FD_ORDER +- 0.25 (measured
    # ratios 15.0-17.3 for the score and the log density at every process and time).
    score, log_prob = dc.exact_score(process, DATA), dc.exact_log_prob(process, DATA)
    for j, t in enumerate(TIMES):
        x = _points(process, t, j)
        l_min = math.sqrt(float(np.linalg.eigvalsh(np.asarray(dc.marginal(process, DATA, t).covs)).min()))
        for fn, field in ((fp_residual, score), (fp_residual_log_density, log_prob)):
            errs = [
                np.linalg.norm(fn(process, field, x, t, h=0.1 * c * l_min, k=0.1 * c * min(t, 0.1))) for c in (1, 0.5)
            ]
            order = math.log2(errs[0] / errs[1])
            assert abs(order - FD_ORDER) < 0.25, (fn.__name__, t, order)


def test_residual_keeps_the_backend(backend):
    # VP at t = 0.5 (sigma = 0.9 and L_max = 1.0: the FD tolerance is 10 eps^{2/3}); torch takes
    # autograd: float64 rounding ~1e-14 (1e-12 asked), float32 ~1e-7 (measured 1e-7; 100 eps32 asked).
    process, t = dc.VPSDE(), 0.5
    score = dc.exact_score(process, DATA)
    x = _points(process, t, 0)
    r = fp_residual(process, score, backend(x), t)
    backend.check_like(r)
    eps = float(np.finfo(backend.dtype).eps)
    tol = 100 * eps if backend.is_torch else fd_tolerance(process, DATA, t, eps)
    assert _rel(backend.to_numpy(r), term_scale(process, DATA, x, t)) < tol
    rd = fp_residual_log_density(process, dc.exact_log_prob(process, DATA), backend(x), t)
    backend.check_like(rd)
    assert tuple(rd.shape) == (30,)


def test_fp_terms_sides_agree_between_finite_differences_and_autograd():
    # the two sides separately (not only their difference): FD and autograd agree to the FD tolerance
    process, t = dc.SubVPSDE(), 0.3
    score = dc.exact_score(process, DATA)
    x = _points(process, t, 0)
    fd, ad = fp_terms(process, score, x, t), fp_terms(process, score, torch.as_tensor(x), t)
    assert (fd.method, ad.method, fd.kind) == ("fd", "autograd", "score")
    np.testing.assert_array_equal(fd.residual, fd.lhs - fd.rhs)
    scale = term_scale(process, DATA, x, t)
    tol = fd_tolerance(process, DATA, t)
    for a, b in ((fd.lhs, ad.lhs), (fd.rhs, ad.rhs)):
        assert _rel(a - b.detach().numpy(), scale) < tol
    # and the sides are not trivially small: |d_t s| is a sizeable part of the scale
    assert np.median(np.linalg.norm(fd.lhs, axis=1) / scale) > 0.05


def test_time_arrays_give_the_residual_at_each_time():
    # per-point times: each row equals the residual computed with that row's time alone, to the FD
    # tolerance (both carry FD error); the score is perturbed (1.1 s) so that the rows are not FD noise
    process = dc.VESDE(sigma_min=0.01, sigma_max=10.0)
    score = PERTURBED["scaled"](dc.exact_score(process, DATA))
    t = np.array([0.1, 0.4, 0.7, 1.0])
    x = np.stack([_points(process, float(u), j, n=1)[0] for j, u in enumerate(t)])
    r = fp_residual(process, score, x, t)
    rows = np.concatenate([fp_residual(process, score, x[i : i + 1], float(t[i])) for i in range(4)])
    scale = np.concatenate([term_scale(process, DATA, x[i : i + 1], t[i]) for i in range(4)])
    tol = np.array([fd_tolerance(process, DATA, float(u)) for u in t])
    assert np.all(np.linalg.norm(r - rows, axis=1) < tol * scale)
    assert np.all(np.linalg.norm(r, axis=1) > 1e-3)


@settings(max_examples=30)
@given(case=fp_cases())
def test_exact_score_residual_vanishes_on_random_mixtures_and_processes(case):
    # every process kind, 1-3 dimensions, t in [0.01, 1]; the tolerances of the tests above
    process, data, t, x = case
    score = dc.exact_score(process, data)
    scale = term_scale(process, data, x, t)
    assert _rel(fp_residual(process, score, x, t), scale) < fd_tolerance(process, data, t)
    assert _rel(fp_residual(process, score, torch.as_tensor(x, dtype=F64), t), scale) < 1e-12


# -- wrong fields leave a residual ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(PERTURBED))
@pytest.mark.parametrize("name", ["vp", "ve", "cosine"])
def test_perturbed_score_leaves_a_residual_that_does_not_shrink(name, kind):
    # 1.1 s has residual -0.11 g^2 J^T s (not a score of an FP solution); s + 0.2 (-x_2, x_1) is not even
    # conservative.  Median relative residual > 1e-3 is asked, 1e4 times the FD error of the exact
    # score (measured 0.01-0.06); halving the steps leaves it (ratio < 1.2; measured 1.00), unlike the
    # exact score's, which falls 16x.
    process = PROCESSES[name]
    exact = dc.exact_score(process, DATA)
    wrong = PERTURBED[kind](exact)
    for j, t in enumerate((0.1, 0.5, 0.9)):
        x = _points(process, t, j)
        scale = term_scale(process, DATA, x, t)
        r = fp_residual(process, wrong, x, t)
        rel = np.median(np.linalg.norm(r, axis=1) / scale)
        assert rel > 1e-3, (t, rel)
        rt = fp_residual(process, wrong, torch.as_tensor(x, dtype=F64), t).detach().numpy()
        np.testing.assert_allclose(rt, r, rtol=0, atol=fd_tolerance(process, DATA, t) * scale.max())
        coarse = np.linalg.norm(fp_residual(process, wrong, x, t, h=0.02, k=0.002))
        fine = np.linalg.norm(fp_residual(process, wrong, x, t, h=0.01, k=0.001))
        assert 1 / 1.2 < coarse / fine < 1.2, (t, coarse, fine)


def test_perturbed_log_density_leaves_a_residual():
    # log p + 0.1 |x|^2 (the same time derivative, a different spatial side): an O(1) residual
    process = dc.VPSDE()
    log_prob = dc.exact_log_prob(process, DATA)
    for j, t in enumerate((0.1, 0.5, 0.9)):
        x = _points(process, t, j)
        r = fp_residual_log_density(process, lambda y, u: log_prob(y, u) + 0.1 * np.sum(y**2, axis=1), x, t)
        assert np.median(np.abs(r) / density_term_scale(process, DATA, x, t)) > 1e-3


# -- the norm over time ---------------------------------------------------------------------------------------
def test_fp_residual_norm_of_the_exact_and_a_perturbed_score():
    process = dc.VPSDE()
    exact = dc.exact_score(process, DATA)
    ts = np.linspace(0.1, 1.0, 4)
    ok = fp_residual_norm(process, exact, ts, DATA, n=50, rng=0)
    bad = fp_residual_norm(process, PERTURBED["scaled"](exact), ts, DATA, n=50, rng=0)
    assert ok.per_time.shape == (4,) and np.all(ok.weights == 1.0)
    # the exact score: FD error squared, ~(1e-9 x terms of size ~10)^2; the perturbed: O(1)
    assert ok.value < 1e-12 and bad.value > 0.1, (ok.value, bad.value)
    assert bad.stderr < bad.value / 3
    # the same draws through the three point forms give the same number; weights scale per time
    draws = np.stack([dc.marginal(process, DATA, t).sample(50, rng=np.random.default_rng(7)) for t in ts])
    as_array = fp_residual_norm(process, exact, ts, draws)
    as_callable = fp_residual_norm(process, exact, ts, lambda t: draws[list(ts).index(t)])
    assert as_array.value == as_callable.value
    g2 = fp_residual_norm(process, exact, ts, draws, weight=process.diffusion_squared)
    np.testing.assert_allclose(g2.value, np.mean(as_array.per_time * [process.diffusion_squared(t) for t in ts]))


# -- bad input ------------------------------------------------------------------------------------------------
_P = dc.VPSDE()
_S = dc.exact_score(_P, DATA)
_X = _points(_P, 0.5, 0, n=5)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: fp_residual(_P, lambda x, t: _S(x, t)[:, :1], _X, 0.5),
            ValueError,
            r"score\(x, t\) must return an array of shape \(5, 2\); got \(5, 1\)",
        ),
        (lambda: fp_residual(_P, lambda x, t: _S(x, t) * np.nan, _X, 0.5), ValueError, r"score\(x, t\) must be finite"),
        (lambda: fp_residual(_P, lambda x, t: list(x), _X, 0.5), TypeError, "must return an array"),
        (lambda: fp_residual(_P, _S, _X * np.inf, 0.5), ValueError, "x must be finite"),
        (lambda: fp_residual(_P, _S, _X[0], 0.5), ValueError, r"x must have shape \(n, d\)"),
        (lambda: fp_residual(_P, _S, _X, 0.0), ValueError, r"t must lie in \(0, 1\]"),
        (lambda: fp_residual(_P, _S, _X, 1.5), ValueError, r"t must lie in \(0, 1\].*; got 1.5"),
        (lambda: fp_residual(_P, _S, _X, np.array([0.5, 0.5, 0.0, 0.5, 0.5])), ValueError, r"\(0, 1\].*; got 0.0"),
        (lambda: fp_residual(_P, _S, _X, np.full(3, 0.5)), ValueError, r"shape \(n,\) = \(5,\)"),
        (lambda: fp_residual(_P, _S, _X, True), TypeError, "t must be a float"),
        (lambda: fp_residual("vp", _S, _X, 0.5), TypeError, "process must be an AbstractProcess"),
        (lambda: fp_residual(_P, "score", _X, 0.5), TypeError, "score must be callable"),
        (lambda: fp_residual(_P, _S, _X, 0.5, method="spectral"), ValueError, "unknown method 'spectral'"),
        (lambda: fp_residual(_P, _S, _X, 0.5, method="autograd"), TypeError, "needs x to be a torch tensor"),
        (lambda: fp_residual(_P, _S, torch.as_tensor(_X), 0.5, h=0.1), ValueError, "h and k are finite-difference"),
        (lambda: fp_residual(_P, _S, _X, 0.5, h=-1.0), ValueError, "h must be > 0"),
        (lambda: fp_residual(_P, _S, _X, 0.1, k=0.06), ValueError, "k must satisfy k < t / 2"),
        (
            lambda: fp_residual_log_density(_P, _S, _X, 0.5),
            ValueError,
            r"log_prob\(x, t\) must return an array of shape \(5,\)",
        ),
        (lambda: fp_residual_norm(_P, _S, [], DATA, n=5), ValueError, "ts must hold at least one time"),
        (lambda: fp_residual_norm(_P, _S, [0.5], DATA), ValueError, "need the sample size n"),
        (
            lambda: fp_residual_norm(_P, _S, [0.5], _X, weight=lambda t: -1.0),
            ValueError,
            r"weight\(t\) must be finite and >= 0",
        ),
        (lambda: fp_residual_norm(_P, _S, [0.5, 0.6], _X[None]), ValueError, r"\(m, n, d\) with m = len\(ts\) = 2"),
        (lambda: ode_sde_gap(_P, _S, _X, steps=5, ode_method="euler_maruyama"), ValueError, "ode_method must be"),
        (lambda: ode_sde_gap(_P, _S, _X, steps=5, sde_method="heun"), ValueError, "sde_method must be"),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_torch_fields_autograd_cannot_differentiate_are_named():
    x = torch.as_tensor(_X)
    with pytest.raises(TypeError, match="is not differentiable by torch autograd"):
        fp_residual(_P, lambda y, t: _S(y, t).detach(), x, 0.5)
    affine = PROCESSES["affine-vp"]  # alpha and sigma through np.exp: not differentiable in t by torch
    with pytest.raises(TypeError, match="use method='fd'"):
        fp_residual(affine, dc.exact_score(affine, DATA), x, 0.5)
    # ... and the named way out works: finite differences on the torch tensor, to the FD tolerance
    score = dc.exact_score(affine, DATA)
    r = fp_residual(affine, score, x, 0.5, method="fd")
    assert isinstance(r, torch.Tensor)
    assert _rel(r, term_scale(affine, DATA, _X, 0.5)) < fd_tolerance(affine, DATA, 0.5)


# -- the ODE–SDE gap grows with the residual (slow) ---------------------------------------------------------
GAP_M = 250  # prior draws; symmetrised to 8 x 250 = 2000 points


@pytest.mark.slow
def test_ode_sde_gap_is_at_the_floor_for_the_exact_score_and_grows_with_the_residual():
    """P1 (8 components on a circle) under the VP-SDE; scores c * s for c = 1, 1.1, 1.2, 1.4.

    Why symmetrised samples.  ODE and SDE samples from the same 1000 prior points of a 3-component
    mixture were measured 1.1-1.7x apart from the i.i.d. floor for the *exact* score: with the same
    starting points, the mode counts of the two outputs fluctuate against each other.  P1's scores
    c * s are rotation-equivariant, so 250 runs with their 8 rotations are 2000 runs with exactly
    balanced mode counts (see test_sampling_accuracy.py); the floor is then 0.11 with sd ~0.008.

    Asserted: for c = 1 the gap (heun 200 steps vs euler_maruyama 1000 steps from the same prior
    points, t_min = 1e-3) is <= 1.3x the floor mean (3+ sd above it; measured 0.098 vs 0.111); the
    FP residual norm (exact marginal points, t in [0.05, 1]) increases with c by > 3 standard errors
    each step (measured 0, 5.9, 28, 153); and the gap increases with c by more than 3 sqrt(2) sd of one
    floor value each step (the noise of a difference of two W2 values; measured 0.098, 0.165, 0.247,
    0.299 against a margin of ~0.035).
    """
    process, data = dc.VPSDE(), circle_mixture()
    exact = dc.exact_score(process, data)
    floor = dc.w2_floor(Symmetrised(dc.marginal(process, data, 1e-3)), 8 * GAP_M, repeats=5, rng=1)
    x_init = process.prior_sample((GAP_M, 2), rng=99)
    ts = np.linspace(0.05, 1.0, 20)
    gaps, norms = [], []
    for c in (1.0, 1.1, 1.2, 1.4):
        score = functools.partial(lambda x, t, c: c * exact(x, t), c=c)
        gap = ode_sde_gap(process, score, x_init, steps=200, sde_steps=1000, rng=4)
        gaps.append(float(dc.w2(symmetrise(gap.x_ode), symmetrise(gap.x_sde))))
        norms.append(fp_residual_norm(process, score, ts, data, n=200, rng=5))
    margin = 3 * math.sqrt(2) * float(np.std(floor.values, ddof=1))
    print(
        f"\nfloor {floor.mean:.4f} (sd {np.std(floor.values, ddof=1):.4f}); gaps {np.round(gaps, 4)}; "
        f"residual norms {[f'{n.value:.3g}' for n in norms]}"
    )
    assert gaps[0] <= 1.3 * floor.mean, (gaps[0], floor.mean)
    for a, b in itertools.pairwise(norms):
        assert b.value - a.value > 3 * math.hypot(a.stderr, b.stderr), (a.value, b.value)
    for a, b in itertools.pairwise(gaps):
        assert b - a > margin, (gaps, margin)


# -- the FP regulariser (torch training, slow) -------------------------------------------------------------
@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_fp_penalty_lowers_the_residual_and_the_ode_sde_gap_of_a_learned_score(one_thread):
    """Deveney et al. 2023, sec. 5, at laptop scale: the 3-component skewed 2-D mixture, VP-SDE, a
    64-wide 2-layer MLPField (float64) trained 500 Adam steps (batch 256, lr 2e-3, cosine) by DSM
    alone and by DSM + 0.01 x the FP penalty (t in [0.05, 1]); same initial weights, same seed.

    Measured over 3 seeds (one torch thread): residual norm 12-21 (DSM) vs 0.36-0.41 (DSM + FP);
    ODE–SDE gap 0.70-0.96 vs 0.24-0.27 (heun 100 vs euler_maruyama 500 steps from the same 1000
    prior points).  One 1000-point W2 value of this mixture fluctuates with sd 0.02-0.05 (five floor
    values 0.157-0.271), so a drop of the gap by > 0.1 and of the residual by 10x leaves the noise far
    behind while staying well below the measured effect (a drop of ~0.5 and ~50x).  As the paper
    reports, the ODE gains and the SDE loses: W2 to exact samples 0.72 -> 0.66 (ODE) and 0.60 -> 0.66
    (SDE) at seed 0; that is not asserted.  A weight of 1 instead of 0.01 drives the net to the
    trivial FP solution s = 0, whose samples blow up (gap ~90): the penalty must stay a regulariser.
    """
    from diffcore.training import MLPField, dsm_fp_loss, fit

    process, data = dc.VPSDE(), DATA
    ts = np.linspace(0.05, 1.0, 10)
    draws = np.stack(
        [dc.marginal(process, data, t).sample(500, rng=np.random.default_rng(j)) for j, t in enumerate(ts)]
    )
    x_init = process.prior_sample((1000, 2), rng=3)
    out = {}
    for weight in (0.0, 0.01):
        model = MLPField(2, width=64, depth=2, rng=0, dtype=F64)
        loss = functools.partial(dsm_fp_loss, process=process, fp_weight=weight)
        start = time.perf_counter()
        fit(model, loss, data, steps=500, batch_size=256, lr=2e-3, schedule="cosine", rng=1, progress=False)
        seconds = time.perf_counter() - start
        norm = fp_residual_norm(process, model, ts, torch.as_tensor(draws))
        gap = ode_sde_gap(process, model, x_init, steps=100, sde_steps=500, rng=4)
        out[weight] = (norm, gap.w2, seconds)
    (n0, g0, s0), (n1, g1, s1) = out[0.0], out[0.01]
    print(
        f"\nDSM: residual {n0.value:.3g} +- {n0.stderr:.2g}, gap {g0:.3f}, {s0:.1f} s; "
        f"DSM + FP: residual {n1.value:.3g} +- {n1.stderr:.2g}, gap {g1:.3f}, {s1:.1f} s"
    )
    assert n1.value < n0.value / 10, (n0.value, n1.value)
    assert g1 < g0 - 0.1, (g0, g1)


def test_fp_penalty_vanishes_for_the_exact_score_and_trains_a_model():
    from diffcore.training import MLPField, dsm_fp_loss, dsm_loss, fp_penalty

    process = dc.VPSDE()
    exact = dc.exact_score(process, DATA)
    t = np.linspace(0.1, 1.0, 40)
    x = torch.as_tensor(np.stack([_points(process, float(u), j, n=1)[0] for j, u in enumerate(t)]))
    tt = torch.as_tensor(t)
    # autograd rounding only (relative 1e-12 of terms of size ~10-100): the mean square is < 1e-18
    assert float(fp_penalty(process, exact, x, tt).detach()) < 1e-18
    wrong = float(fp_penalty(process, PERTURBED["scaled"](exact), x, tt).detach())
    assert wrong > 1e-2
    weighted = float(fp_penalty(process, PERTURBED["scaled"](exact), x, tt, weighting=lambda u: 2.0 + 0 * u).detach())
    np.testing.assert_allclose(weighted, 2 * wrong, rtol=1e-12)
    # differentiable in the parameters of a net
    model = MLPField(2, width=16, depth=1, rng=0, dtype=F64)
    fp_penalty(process, model, x, tt).backward()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert bool(torch.isfinite(grads).all()) and float(grads.abs().max()) > 0
    # fp_weight = 0 is plain DSM with the same seed; a positive weight adds a positive penalty
    x0 = torch.as_tensor(DATA.sample(64, rng=0))
    plain = dsm_loss(model, x0, process, 5)
    np.testing.assert_array_equal(
        float(dsm_fp_loss(model, x0, process, 5, fp_weight=0.0).detach()), float(plain.detach())
    )
    assert float(dsm_fp_loss(model, x0, process, 5, fp_weight=1.0).detach()) > float(plain.detach())
    with pytest.raises(ValueError, match="fp_t_min must be > 0"):
        dsm_fp_loss(model, x0, process, 5, fp_t_min=0.0)
    with pytest.raises(ValueError, match="fp_weight must be >= 0"):
        dsm_fp_loss(model, x0, process, 5, fp_weight=-1.0)
    with pytest.raises(ValueError, match=r"t must lie in \(0, 1\]"):
        fp_penalty(process, model, x, 0.0)
