"""FlowChef, null-text inversion and the DiffusionMBIR slice toy (issue 15): oracles from the exact laws."""

from __future__ import annotations

import numpy as np
import pytest

import diffcore as dc
from diffcore.conditional import (
    LabelledMixture,
    LinearGaussianMeasurement,
    SignMeasurement,
    classifier_free_guidance,
    exact_conditional_score,
    posterior,
)
from diffcore.conditional._flowchef import flowchef
from diffcore.conditional._null_text import ddim_pivot, null_text_inversion, null_text_sample
from diffcore.conditional._slices import slice_posterior, slice_posterior_sampling, slice_prior, slice_score

# ---------------------------------------------------------------------------------------------
# FlowChef on a 2-D Gaussian mixture with the rectified flow (x_t = (1 - t) x_0 + t eps)

FC_PRIOR = dc.GaussianMixture([0.3, 0.3, 0.4], [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]], np.array([0.3 * np.eye(2)] * 3))
FC_MEAS = LinearGaussianMeasurement.inpainting(2, [0], noise_std=0.1)  # observe the first coordinate
FC_Y = np.array([0.5])
RF = dc.AffineProcess(lambda t: 1 - t, lambda t: t, lambda t: -1 + 0 * t, lambda t: 1 + 0 * t)
RF_PATH = dc.OneSidedInterpolant("linear")  # Gaussian at t = 0, data at t = 1 (flow-matching clock)
FC_FIELDS = dc.interpolant_fields(RF_PATH, dc.Gaussian(np.zeros(2), np.eye(2)), FC_PRIOR)
FC_N, FC_STEPS = 4000, 40


class _Counted:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.fn(x, t)


@pytest.fixture(scope="module")
def fc_runs():
    noise = np.random.default_rng(0).standard_normal((FC_N, 2))
    vel = _Counted(FC_FIELDS.velocity)
    steered = flowchef(RF_PATH, vel, FC_MEAS, FC_Y, noise, steps=FC_STEPS, prediction="velocity")
    free = dc.integrate(dc.InterpolantODE(FC_FIELDS.velocity), noise, np.linspace(0, 1, FC_STEPS + 1), "euler").x
    return steered, vel.calls, free


def test_flowchef_nfe_is_the_number_of_velocity_calls(fc_runs):
    steered, calls, _ = fc_runs
    assert steered.nfe == calls == FC_STEPS and steered.solver is None
    assert steered.ts[0] == 1.0 and steered.ts[-1] == 0.0 and steered.ts.shape == (FC_STEPS + 1,)


def test_flowchef_velocity_and_score_paths_agree():
    # the same algorithm from an interpolant velocity (flow-matching clock) and from a score on the
    # rectified-flow process (diffusion clock, Tweedie + probability-flow velocity): equal to 1e-8
    noise = np.random.default_rng(1).standard_normal((50, 2))
    a = flowchef(RF_PATH, FC_FIELDS.velocity, FC_MEAS, FC_Y, noise, nfe=20, prediction="velocity", t_max=0.999)
    b = flowchef(RF, dc.exact_score(RF, FC_PRIOR), FC_MEAS, FC_Y, noise, steps=20, t_max=0.999)
    np.testing.assert_allclose(a.x, b.x, atol=1e-8)


def test_flowchef_satisfies_the_measurement_but_is_not_the_posterior(fc_runs):
    steered, _, free = fc_runs
    x = steered.x
    resid = np.abs(FC_Y - x @ FC_MEAS.H.T)[:, 0]
    resid_free = np.abs(FC_Y - free @ FC_MEAS.H.T)[:, 0]
    # measured: mean |y - Hx| 0.0019 steered vs 1.42 unsteered (factor ~760); demand 100
    assert resid.mean() * 100 < resid_free.mean()
    post = posterior(FC_PRIOR, FC_MEAS, FC_Y)
    # posterior mean: measured error 1.19 (second coordinate -0.72 vs -1.91), SE 0.021
    se_mean = x.std(axis=0) / np.sqrt(FC_N)
    err_mean = np.abs(x.mean(axis=0) - np.asarray(post.mean))
    assert np.max(err_mean / se_mean) > 10
    # component weights (mean posterior responsibility of the samples): measured (0.0004, 0.364, 0.635)
    # against the exact (0.00005, 0.029, 0.971): error 0.34, SE 0.0075
    resp = np.asarray(post.responsibilities(x))
    err_w = np.abs(resp.mean(axis=0) - np.asarray(post.weights))
    assert np.max(err_w / (resp.std(axis=0) / np.sqrt(FC_N) + 1e-12)) > 10
    # over-fit: the posterior's mean |y - Hx| is noise_std-sized (0.081), FlowChef's 43 times smaller
    exact = post.sample(FC_N, 3)
    assert resid.mean() * 10 < np.abs(FC_Y - exact @ FC_MEAS.H.T).mean()


def test_flowchef_steers_nonlinear_measurements():
    sign = SignMeasurement(np.array([[1.0, 0.0]]), 0.1)
    noise = np.random.default_rng(2).standard_normal((400, 2))
    sol = flowchef(
        RF_PATH, FC_FIELDS.velocity, sign, np.array([1.0]), noise, steps=30, prediction="velocity", step_size=0.05
    )
    free = dc.integrate(dc.InterpolantODE(FC_FIELDS.velocity), noise, np.linspace(0, 1, 31), "euler").x
    # unsteered, 0.49 of the draws have x_1 > 0; steered toward the sign y = +1, measured 1.00
    assert np.mean(sol.x[:, 0] > 0) > np.mean(free[:, 0] > 0) + 0.3


def test_flowchef_rejects_bad_input():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="exactly one of steps and nfe"):
        flowchef(RF, dc.exact_score(RF, FC_PRIOR), FC_MEAS, FC_Y, x, steps=3, nfe=3, t_max=0.9)
    with pytest.raises(ValueError, match="prediction='velocity'"):
        flowchef(RF_PATH, FC_FIELDS.velocity, FC_MEAS, FC_Y, x, steps=3)
    with pytest.raises(ValueError, match="alpha\\(t_max\\) > 0"):
        flowchef(RF, dc.exact_score(RF, FC_PRIOR), FC_MEAS, FC_Y, x, steps=3)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        flowchef(RF, dc.exact_score(RF, FC_PRIOR), FC_MEAS, FC_Y, x, steps=3, t_max=0.9, step_size=-1.0)
    with pytest.raises(ValueError, match="prediction must be one of"):
        flowchef(RF, dc.exact_score(RF, FC_PRIOR), FC_MEAS, FC_Y, x, steps=3, prediction="eps")
    with pytest.raises(TypeError, match="AbstractProcess or an AbstractInterpolant"):
        flowchef("rf", FC_FIELDS.velocity, FC_MEAS, FC_Y, x, steps=3)


# ---------------------------------------------------------------------------------------------
# Null-text inversion on a labelled mixture: class 0 is the "prompt"

LAB = LabelledMixture(
    [0.3, 0.2, 0.5], [[-2.0, 0.0], [0.0, 2.0], [2.0, -0.5]], np.array([0.25 * np.eye(2)] * 3), [0, 0, 1]
)
VP = dc.VPSDE()
COND, UNCOND = exact_conditional_score(VP, LAB, 0), dc.exact_score(VP, LAB.mixture)
NT_X0 = LAB.conditional(0).sample(100, rng=1)
NT_STEPS, NT_W = 20, 3.0


def _rms(a, b):
    return float(np.sqrt(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=1))))


@pytest.fixture(scope="module")
def nt_result():
    return null_text_inversion(VP, COND, UNCOND, NT_X0, w=NT_W, steps=NT_STEPS, inner_steps=10, lr=0.8)


def test_null_text_pivot_is_ddim_inversion(nt_result):
    inv = dc.invert(VP, COND, NT_X0, method="ddim", steps=NT_STEPS)
    np.testing.assert_allclose(nt_result.latent, inv.x, atol=1e-12)
    np.testing.assert_array_equal(nt_result.pivot[-1], NT_X0)
    assert nt_result.offsets.shape == (NT_STEPS, *NT_X0.shape) and nt_result.nfe == 3 * NT_STEPS


def test_null_text_restores_guided_reconstruction(nt_result):
    cfg = classifier_free_guidance(COND, UNCOND, NT_W)
    # (a) w = 0: DDIM's O(h) round trip, measured rms 0.200 (20 steps) and 0.102 (40 steps)
    err_a = {n: _rms(dc.sample(VP, COND, ddim_pivot(VP, COND, NT_X0, dc.time_grid(VP, n))[0], method="ddim",
                               steps=n).x, NT_X0) for n in (20, 40)}  # fmt: skip
    assert 1.6 < err_a[20] / err_a[40] < 2.4
    # (b) plain CFG from the same latent: measured rms 1.31 at w = 3
    err_b = _rms(dc.sample(VP, cfg, nt_result.latent, method="ddim", steps=NT_STEPS).x, NT_X0)
    # (c) tuned null offsets: the per-step residual shrinks by (1 - lr)^10 = 1e-7; measured rms 2.7e-9
    err_c = _rms(nt_result.reconstruction, NT_X0)
    assert err_c < 1e-7 and err_b > 10 * 1e-7 and err_b > 3 * err_a[20]
    # (d) BDIA inverts the guided sampler itself exactly: measured 1.2e-13
    inv = dc.invert(VP, cfg, NT_X0, method="bdia", steps=NT_STEPS)
    assert _rms(dc.sample(VP, cfg, inv.x, method=inv.solver, steps=NT_STEPS).x, NT_X0) < 1e-11


def test_null_text_contracts_at_the_declared_rate():
    # the inner problem is quadratic with a known Hessian: each preconditioned step multiplies the
    # residual by (1 - lr), so 4 more inner steps at lr = 0.5 divide the error by 2^4 = 16
    x0 = NT_X0[:20]
    recs = [
        null_text_inversion(VP, COND, UNCOND, x0, w=1.0, steps=10, inner_steps=k, lr=0.5).reconstruction for k in (3, 7)
    ]
    errs = [_rms(r, x0) for r in recs]
    assert 12 < errs[0] / errs[1] < 20


def test_null_text_sample_reproduces_and_generalises_cfg(nt_result):
    rec = null_text_sample(VP, COND, UNCOND, nt_result.latent, nt_result.offsets, nt_result.ts, w=NT_W)
    np.testing.assert_allclose(rec, nt_result.reconstruction, atol=1e-13)
    plain = null_text_sample(VP, COND, UNCOND, nt_result.latent, 0 * nt_result.offsets, nt_result.ts, w=NT_W)
    cfg = classifier_free_guidance(COND, UNCOND, NT_W)
    np.testing.assert_allclose(plain, dc.sample(VP, cfg, nt_result.latent, method="ddim", steps=NT_STEPS).x, atol=1e-12)
    with pytest.raises(ValueError, match="offsets must have shape"):
        null_text_sample(VP, COND, UNCOND, nt_result.latent, nt_result.offsets[1:], nt_result.ts, w=NT_W)


def test_null_text_rejects_bad_input():
    with pytest.raises(ValueError, match="w must be != 0"):
        null_text_inversion(VP, COND, UNCOND, NT_X0, w=0.0, steps=3)
    with pytest.raises(ValueError, match="lr must lie in"):
        null_text_inversion(VP, COND, UNCOND, NT_X0, w=1.0, steps=3, lr=2.0)
    with pytest.raises(TypeError, match="AbstractProcess"):
        null_text_inversion("vp", COND, UNCOND, NT_X0, w=1.0, steps=3)


# ---------------------------------------------------------------------------------------------
# DiffusionMBIR toy: 5 slices of a 2-D Gaussian, smoothness along z, slices 0, 2, 4 observed

S, D = 5, 2
SL_MEAN, SL_COV, SL_LAM = np.array([0.5, -0.3]), np.array([[0.6, 0.2], [0.2, 0.4]]), 4.0
SL_MEAS = LinearGaussianMeasurement.inpainting(S * D, [i for k in (0, 2, 4) for i in range(k * D, (k + 1) * D)], 0.1)
_g = np.random.default_rng(0)
SL_Y = SL_MEAS.H @ slice_prior(SL_MEAN, SL_COV, S, SL_LAM).sample(1, _g)[0] + 0.1 * _g.standard_normal(6)
VE = dc.VESDE(sigma_min=0.01, sigma_max=10.0)
SLICE_SCORE = dc.exact_score(VE, dc.Gaussian(SL_MEAN, SL_COV))


def test_slice_posterior_is_bayes():
    post = slice_posterior(SL_MEAN, SL_COV, S, SL_LAM, SL_MEAS, SL_Y)
    ref = posterior(slice_prior(SL_MEAN, SL_COV, S, SL_LAM), SL_MEAS, SL_Y)  # covariance (Kalman-gain) form
    np.testing.assert_allclose(post.mean, ref.mean, atol=1e-10)
    np.testing.assert_allclose(post.cov, ref.cov, atol=1e-10)
    # no coupling: the prior is the block-diagonal product of the slice priors
    np.testing.assert_allclose(slice_prior(SL_MEAN, SL_COV, S, 0.0).cov, np.kron(np.eye(S), SL_COV), atol=1e-12)


def test_slice_score_is_the_product_prior_score():
    x = np.random.default_rng(1).standard_normal((7, S * D))
    product = dc.exact_score(VE, slice_prior(SL_MEAN, SL_COV, S, 0.0))
    for t in (0.1, 0.7):
        np.testing.assert_allclose(slice_score(SLICE_SCORE, S)(x, t), product(x, t), atol=1e-10)


def test_coupled_slice_sampler_beats_the_uncoupled_one():
    post = slice_posterior(SL_MEAN, SL_COV, S, SL_LAM, SL_MEAS, SL_Y)
    x_init = VE.prior_sample((1000, S * D), rng=1)
    errs = {}
    for lam in (SL_LAM, 0.0):
        sol = slice_posterior_sampling(
            VE, SLICE_SCORE, SL_MEAS, SL_Y, x_init, steps=50, rng=2, n_slices=S, coupling=lam
        )
        assert sol.nfe == 50
        errs[lam] = np.linalg.norm(sol.x.mean(axis=0) - post.mean)
    # measured mean error 0.060 (coupled) vs 0.301 (uncoupled; the exact uncoupled posterior errs 0.327);
    # the Monte Carlo floor of 1000 exact draws is ~0.02 (10 coordinates, sd <= 0.8)
    assert errs[SL_LAM] * 3 < errs[0.0]


def test_slice_sampler_rejects_bad_input():
    x = np.zeros((2, S * D))
    with pytest.raises(ValueError, match="multiple of n_slices"):
        slice_posterior_sampling(VE, SLICE_SCORE, SL_MEAS, SL_Y, x, steps=2, n_slices=3, coupling=1.0)
    with pytest.raises(ValueError, match="exactly one of steps and nfe"):
        slice_posterior_sampling(VE, SLICE_SCORE, SL_MEAS, SL_Y, x, steps=2, nfe=2, n_slices=S, coupling=1.0)
    with pytest.raises(ValueError, match="coupling must be >= 0"):
        slice_posterior_sampling(VE, SLICE_SCORE, SL_MEAS, SL_Y, x, steps=2, n_slices=S, coupling=-1.0)
    with pytest.raises(ValueError, match="linear-Gaussian"):
        slice_posterior(SL_MEAN, SL_COV, S, 1.0, SignMeasurement(np.eye(S * D), 0.1), np.ones(S * D))
    with pytest.raises(ValueError, match="S d = 10 columns"):
        slice_posterior(SL_MEAN, SL_COV, S, 1.0, LinearGaussianMeasurement(np.eye(4), 0.1), np.ones(4))


def test_torch_tensors_take_the_same_path():
    torch = pytest.importorskip("torch")
    noise = np.random.default_rng(0).standard_normal((20, 2))
    fc = [
        flowchef(RF, dc.exact_score(RF, FC_PRIOR), FC_MEAS, FC_Y, x, steps=5, t_max=0.99).x
        for x in (noise, torch.from_numpy(noise))
    ]
    nt = [
        null_text_inversion(VP, COND, UNCOND, x, w=1.0, steps=4).offsets
        for x in (NT_X0[:5], torch.from_numpy(NT_X0[:5]))
    ]
    x_init = VE.prior_sample((8, S * D), rng=1)
    opts = {"steps": 4, "rng": 2, "n_slices": S, "coupling": 1.0, "method": "euler"}
    sl = [
        slice_posterior_sampling(VE, SLICE_SCORE, SL_MEAS, SL_Y, x, **opts).x
        for x in (x_init, torch.from_numpy(x_init))
    ]
    for a, b in (fc, nt, sl):
        assert isinstance(b, torch.Tensor) and b.dtype == torch.float64
        np.testing.assert_allclose(b.numpy(), a, atol=1e-12)
