"""The adapters of ``diffcore.interop`` against the real diffusers, k-diffusion and flow_matching.

Where a library's algorithm is the same as one of diffcore's, the two must give the same numbers on
the same grid from the same points with the same model, up to rounding:

* rounding in float64 (k-diffusion, flow_matching/torchdiffeq, and diffusers' DDIM once its tables
  are float64): each of ``steps`` steps rounds the state and its coefficients a few times, so the
  difference is at most ``C * steps * eps_64 * max|x|``; ``C = 10`` (measured ratios <= 0.5);
* float32 rounding (diffusers as it ships: ``alphas_cumprod`` and ``sigmas`` are float32 tables, and
  ``DPMSolverMultistepScheduler.step`` / ``EulerDiscreteScheduler.step`` cast the state to float32):
  at most ``C * steps * eps_32 * max|x|`` with ``C = 2`` (measured ratios 0.1-0.2).

Settings under which they coincide (found by reading the libraries and confirmed here):

* ``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint")``
  is diffcore's ``dpm_solver_pp_2m`` on ``sampler.time_grid(steps)`` (any ``timestep_spacing``);
  first step first order in both; ``lower_order_final=True`` with fewer than 15 steps makes the last
  step first order (= ``DPMSolverPP2M(first_order_below=t)`` with ``t`` between the last two times);
  ``final_sigmas_type="zero"`` makes the last step the jump to ``sigma = 0``, which is Tweedie's
  denoiser at the last positive time (``diffcore.samplers.denoise``).
* ``DDIMScheduler(clip_sample=False, timestep_spacing="trailing")`` with ``eta = 0`` is ``ddim``;
  ``set_alpha_to_one=False`` ends at the level of timestep 0 (``t = 1/N``), ``True`` at ``t = 0``.
* k-diffusion's ``sample_euler`` is ``ddim``, ``sample_heun`` is ``edm_heun`` (Euler at a final
  ``sigma = 0`` in both), ``sample_dpmpp_2m`` is ``dpm_solver_pp_2m`` on any grid.
* flow_matching's ``ODESolver`` with ``"euler"`` / ``"heun2"`` / ``"midpoint"`` / ``"rk4"`` on ``1 - ts`` is
  ``euler`` / ``heun`` / ``midpoint`` / ``rk4_38`` (torchdiffeq's rk4 is Kutta's 3/8 rule).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import diffcore as dc
import diffcore.interop as di

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("flow_matching")

EPS64 = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)
N = 1000
GM = dc.GaussianMixture(
    np.array([0.3, 0.7]),
    np.array([[-1.0, 0.5], [1.5, -0.5]]),
    np.stack([0.2 * np.eye(2), np.diag([0.5, 0.1])]),
)


def _max(a, b) -> float:
    a, b = (np.asarray(v.detach().numpy() if hasattr(v, "detach") else v, dtype=np.float64) for v in (a, b))
    return float(np.max(np.abs(a - b)))


def _float64_bound(steps: int, x) -> float:
    return 10 * steps * EPS64 * float(np.max(np.abs(np.asarray(x))))


def _float32_bound(steps: int, x) -> float:
    return 2 * steps * EPS32 * float(np.max(np.abs(np.asarray(x))))


class EpsNet(torch.nn.Module):
    """A small random diffusers-convention eps model: ``net(x, timestep) -> eps`` (float64)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(3, 16, generator=gen, dtype=torch.float64) / 2)
        self.w2 = torch.nn.Parameter(torch.randn(16, 2, generator=gen, dtype=torch.float64) / 4)

    def forward(self, x, timestep):
        k = torch.as_tensor(timestep, dtype=x.dtype).reshape(-1, 1).expand(x.shape[0], 1) / N
        return 0.5 * x + torch.tanh(torch.cat([x, k], 1) @ self.w1) @ self.w2


def _diffcore_run(process, score, x1, ts, solver):
    """diffcore on the scheduler's grid; a grid ending at t = 0 ends with Tweedie's denoiser (the jump)."""
    if ts[-1] == 0:
        x = dc.integrate(dc.ProbabilityFlowODE(process, score), x1, ts[:-1], solver).x
        return dc.samplers.denoise(process, score, x, float(ts[-2]))
    return dc.integrate(dc.ProbabilityFlowODE(process, score), x1, ts, solver).x


def test_importing_the_adapters_loads_none_of_the_libraries():
    code = (
        "import sys, diffcore, diffcore.interop; "
        "heavy = sorted(m for m in ('torch', 'diffusers', 'k_diffusion', 'flow_matching', 'torchdiffeq') "
        "if m in sys.modules); assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- diffusers: the process through the discrete levels ---------------------------------------------


def test_process_from_diffusers_passes_through_every_level():
    s = diffusers.DDPMScheduler(num_train_timesteps=N, beta_schedule="linear")
    p = di.process_from_diffusers(s)
    ac = s.alphas_cumprod.double().numpy()
    tk = di.timestep_to_time(np.arange(N), N)
    np.testing.assert_array_equal(tk, (np.arange(N) + 1) / N)
    # exp(log(abar)) at the knots: a few roundings, 1e-14 relative
    np.testing.assert_allclose(p.alpha(tk) ** 2, ac, rtol=1e-14)
    np.testing.assert_allclose(p.alpha(tk) ** 2 + p.sigma(tk) ** 2, 1.0, rtol=0, atol=4 * EPS64)
    assert p.alpha(0.0) == 1.0 and p.sigma(0.0) == 0.0
    np.testing.assert_allclose(di.time_to_timestep(tk, N), np.arange(N), atol=1e-12)
    assert p.timestep_to_time(-1) == 0.0 and p.time_to_timestep(1.0) == N - 1
    # monotone interpolation between the levels: log-SNR strictly decreasing, g^2 > 0
    t = np.linspace(0.0, 1.0, 20_001)
    assert np.all(np.diff(p.log_snr(t[1:])) < 0) and np.all(p.diffusion_squared(t) > 0)
    np.testing.assert_allclose(p.log_snr_inverse(p.log_snr(t[1:])), t[1:], atol=1e-13)


def test_discrete_vp_is_consistent_with_its_sde():
    """f = d log alpha/dt and g^2 = d sigma^2/dt - 2 f sigma^2 (closed forms vs central differences
    inside a segment, where h is a cubic: error h^2 |h'''| / 6 + eps/h ~ 1e-9), and the Fokker-Planck
    residual of an exact Gaussian marginal is zero (autograd in x and t: exact derivatives)."""
    p = di.process_from_diffusers(diffusers.DDIMScheduler(num_train_timesteps=N))
    t = (np.arange(5, N, 97) + 0.5) / N  # mid-segment: the schedule is a cubic within +-h
    h = 1e-7
    fd_alpha = (p.alpha(t + h) - p.alpha(t - h)) / (2 * h)
    fd_s2 = (p.sigma(t + h) ** 2 - p.sigma(t - h) ** 2) / (2 * h)
    np.testing.assert_allclose(p.d_alpha(t), fd_alpha, rtol=1e-7)
    np.testing.assert_allclose(p.drift_coef(t), p.d_alpha(t) / p.alpha(t), rtol=1e-14)
    g2 = fd_s2 - 2 * p.drift_coef(t) * p.sigma(t) ** 2
    np.testing.assert_allclose(p.diffusion_squared(t), g2, rtol=1e-6)
    data = dc.Gaussian(np.array([0.5, -1.0]), np.array([[1.0, 0.3], [0.3, 0.5]]))
    x = torch.tensor([[0.3, -1.2], [1.5, 0.4], [-0.7, 0.9]], dtype=torch.float64)
    for tt in (0.0123, 0.4, 0.9):  # 0.4 lies on a knot: h is C^1, the residual needs only h'
        res = dc.fp_residual(p, dc.exact_score(p, data), x, tt, method="autograd")
        assert float(res.detach().abs().max()) < 1e-9, (tt, res)


def test_diffusers_betas_round_trip():
    """A scheduler built from diffusers_betas(VPSDE) has alphas_cumprod = alpha(t_k)^2 up to its float32
    cumulative product (N products, each rounded: relative N eps_32 at most)."""
    vp = dc.VPSDE()
    betas = di.diffusers_betas(vp, N)
    tk = (np.arange(N) + 1) / N
    np.testing.assert_allclose(np.cumprod(1 - betas), vp.alpha(tk) ** 2, rtol=1e-12)
    s = diffusers.DDIMScheduler(num_train_timesteps=N, trained_betas=betas.tolist())
    ac = s.alphas_cumprod.double().numpy()
    np.testing.assert_allclose(ac, vp.alpha(tk) ** 2, rtol=N * EPS32)
    p = di.process_from_diffusers(s)
    np.testing.assert_allclose(p.alpha(tk), vp.alpha(tk), rtol=N * EPS32)
    # between the levels the monotone cubic follows the continuous schedule to O(N^-3) relative
    mid = (np.arange(N) + 0.5) / N
    np.testing.assert_allclose(p.alpha(mid), vp.alpha(mid), rtol=N * EPS32)


# -- diffusers: models both ways --------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_score_to_diffusers_model_and_back(prediction_type):
    s = diffusers.DDIMScheduler(num_train_timesteps=N, prediction_type=prediction_type)
    p = di.process_from_diffusers(s)
    score = dc.exact_score(p, GM)
    model = di.model_for_diffusers(score, p, s)
    back = di.score_from_diffusers(model, s)
    assert back.prediction_type == prediction_type
    x = np.random.default_rng(1).normal(size=(7, 2))
    # the conversions divide by sigma(t) (eps) and alpha(t) (x0), each ~1 ulp: 1e-12 relative to |s|
    for t in (0.003, 0.0427, 0.5, 1.0):  # on levels (k = 2, 499, 999) and between them (k = 41.7)
        ref = score(x, t)
        assert _max(back(x, t), ref) <= 1e-11 * np.max(np.abs(ref)), t
    t = np.array([0.003, 0.01, 0.0427, 0.3, 0.5, 0.77, 1.0])
    ref = score(x, t)
    assert _max(back(x, t), ref) <= 1e-11 * np.max(np.abs(ref))
    xt = torch.as_tensor(x)
    out = back(xt, 0.5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert _max(out, score(x, 0.5)) <= 1e-12 * np.max(np.abs(score(x, 0.5)))


def test_the_model_sees_diffusers_timesteps():
    seen = []

    def model(x, timestep):
        seen.append(timestep)
        return torch.zeros_like(x)

    s = diffusers.DDIMScheduler(num_train_timesteps=N)
    score = di.score_from_diffusers(model, s, "epsilon")
    x = torch.zeros((3, 2), dtype=torch.float64)
    score(x, 0.5)
    score(x, 0.5004)
    score(x, torch.tensor([0.001, 0.5, 1.0], dtype=torch.float64))
    assert seen[0].dtype == torch.int64 and int(seen[0]) == 499 and seen[0].ndim == 0
    assert seen[1].dtype == torch.float64 and float(seen[1]) == pytest.approx(499.4, abs=1e-9)
    assert seen[2].dtype == torch.int64 and seen[2].tolist() == [0, 499, 999]


def test_denoise_from_diffusers_is_tweedie():
    s = diffusers.DDIMScheduler(num_train_timesteps=N)
    p = di.process_from_diffusers(s)
    score = dc.exact_score(p, GM)
    model = di.model_for_diffusers(score, p, s, "epsilon")
    x = dc.marginal(p, GM, 0.05).sample(5, rng=0)
    ref = dc.samplers.denoise(p, score, x, 0.05)
    assert _max(di.denoise_from_diffusers(model, x, 49, s), ref) <= 1e-12 * np.max(np.abs(ref))


# -- diffusers: their schedulers against diffcore's solvers on the same grid -------------------------

DPM_SETTINGS = [
    pytest.param(True, "sigma_min", id="lower_order_final-sigma_min"),
    pytest.param(False, "sigma_min", id="second_order_final-sigma_min"),
    pytest.param(True, "zero", id="final_jump_to_zero"),
]


def _dpm(lower_order_final: bool, final: str, **kw):
    return diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=N,
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=lower_order_final,
        final_sigmas_type=final,
        **kw,
    )


def _pp2m(ts, lower_order_final: bool):
    # diffusers' lower_order_final (fewer than 15 steps) = first order on the last step only
    below = 0.5 * (ts[-1] + ts[-2]) if lower_order_final and ts[-1] > 0 and len(ts) - 1 < 15 else 0.0
    return dc.samplers.DPMSolverPP2M(first_order_below=below)


@pytest.mark.parametrize(("lower_order_final", "final"), DPM_SETTINGS)
@pytest.mark.parametrize("steps", [6, 10])
def test_dpm_solver_pp_2m_is_diffusers_dpmsolver_multistep(lower_order_final, final, steps):
    """The exact model of a Gaussian-mixture problem, through model_for_diffusers, in diffusers'
    scheduler; the same model back through score_from_diffusers, in diffcore's DPM-Solver++(2M)."""
    s = _dpm(lower_order_final, final)
    p = di.process_from_diffusers(s)
    score = dc.exact_score(p, GM)
    sampler = di.sampler_from_diffusers(s, p)
    ts = sampler.time_grid(steps)
    assert ts[0] == 1.0 and (ts[-1] == 0.0) == (final == "zero")
    x1 = dc.marginal(p, GM, 1.0).sample(200, rng=0)
    x_diffusers = sampler(score, x1, ts)
    assert isinstance(x_diffusers, np.ndarray) and x_diffusers.shape == x1.shape
    back = di.score_from_diffusers(di.model_for_diffusers(score, p, s), s)
    x_diffcore = _diffcore_run(p, back, x1, ts, _pp2m(ts, lower_order_final))
    assert _max(x_diffusers, x_diffcore) <= _float32_bound(steps, x_diffcore)
    # not a vacuous agreement: the other final-step rule differs by far more than rounding
    other = _diffcore_run(p, back, x1, ts, _pp2m(ts, not lower_order_final)) if final != "zero" else None
    if other is not None:
        assert _max(other, x_diffcore) > 100 * _float32_bound(steps, x_diffcore)


@pytest.mark.parametrize(("lower_order_final", "final"), DPM_SETTINGS)
def test_a_random_eps_network_in_diffusers_and_in_diffcore(lower_order_final, final):
    """A small random torch eps network: diffusers' loop on it, and diffcore's DPM-Solver++(2M) on
    score_from_diffusers(net) on the same grid, give the same samples (float32 rounding)."""
    net, steps = EpsNet(), 8
    s = _dpm(lower_order_final, final)
    p = di.process_from_diffusers(s)
    ts = di.sampler_from_diffusers(s, p).time_grid(steps)
    x1 = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s.set_timesteps(steps)
    x = x1.clone()
    with torch.no_grad():
        for k in s.timesteps:
            x = s.step(net(s.scale_model_input(x, k), k), k, x).prev_sample
        x_diffcore = _diffcore_run(p, di.score_from_diffusers(net, s), x1, ts, _pp2m(ts, lower_order_final))
    assert isinstance(x_diffcore, torch.Tensor)
    assert _max(x, x_diffcore) <= _float32_bound(steps, x_diffcore)


def test_levels_that_share_a_timestep_are_two_steps():
    """use_lu_lambdas with 60 steps rounds two levels to one timestep: the scheduler still takes a step
    between them, and the model reads its running sigma, so the run is DPM-Solver++(2M) on all the levels."""
    s = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=N, use_lu_lambdas=True)  # ends at sigma = 0
    s.set_timesteps(60)
    ks = [int(k) for k in s.timesteps]
    assert len(set(ks)) < len(ks)  # the premise: a repeated timestep
    p = di.process_from_diffusers(s)
    score = dc.exact_score(p, GM)
    sampler = di.sampler_from_diffusers(s, p)
    ts = sampler.time_grid(60)
    assert len(ts) == 61 and np.all(np.diff(ts) < 0) and ts[-1] == 0.0
    x1 = dc.marginal(p, GM, 1.0).sample(100, rng=0)
    ref = _diffcore_run(p, score, x1, ts, _pp2m(ts, lower_order_final=False))
    assert _max(sampler(score, x1, ts), ref) <= _float32_bound(60, ref)


@pytest.mark.parametrize("set_alpha_to_one", [False, True])
@pytest.mark.parametrize("float64", [False, True])
def test_ddim_is_diffusers_ddim(set_alpha_to_one, float64):
    """DDIMScheduler (eta = 0) is diffcore's ddim.  As shipped its tables are float32 (agreement to
    float32 rounding); with alphas_cumprod in float64 its arithmetic is float64: agreement to rounding."""
    steps = 10
    s = diffusers.DDIMScheduler(
        num_train_timesteps=N, clip_sample=False, set_alpha_to_one=set_alpha_to_one, timestep_spacing="trailing"
    )
    if float64:
        s.alphas_cumprod = s.alphas_cumprod.double()
        s.final_alpha_cumprod = torch.as_tensor(s.final_alpha_cumprod).double()
    p = di.process_from_diffusers(s)
    score = dc.exact_score(p, GM)
    sampler = di.sampler_from_diffusers(s, p)
    ts = sampler.time_grid(steps)
    assert ts[-1] == (0.0 if set_alpha_to_one else pytest.approx(1.0 / N, rel=1e-12))
    x1 = torch.as_tensor(dc.marginal(p, GM, 1.0).sample(200, rng=0))
    out = sampler(score, x1, ts)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    ref = dc.integrate(dc.ProbabilityFlowODE(p, score), x1, ts, "ddim").x
    bound = _float64_bound(steps, ref) if float64 else _float32_bound(steps, ref)
    assert _max(out, ref) <= bound


def test_euler_discrete_is_ddim():
    """EulerDiscreteScheduler steps x / alpha in sigma = sigma_t / alpha_t: the Euler step there is DDIM."""
    steps = 10
    s = diffusers.EulerDiscreteScheduler(num_train_timesteps=N, timestep_spacing="trailing")
    p = di.process_from_diffusers(s)
    score = dc.exact_score(p, GM)
    sampler = di.sampler_from_diffusers(s, p)
    ts = sampler.time_grid(steps)
    x1 = dc.marginal(p, GM, 1.0).sample(200, rng=0)
    ref = _diffcore_run(p, score, x1, ts, "ddim")
    assert _max(sampler(score, x1, ts), ref) <= _float32_bound(steps, ref)


def test_diffusers_sampler_on_a_diffcore_process():
    """A scheduler built for VPSDE (diffusers_betas) runs diffcore's VPSDE problem: its times are
    those of VPSDE with the scheduler's (float32) levels, and the result is the DDIM solution."""
    vp = dc.VPSDE()
    s = diffusers.DDIMScheduler(
        num_train_timesteps=N,
        trained_betas=di.diffusers_betas(vp, N).tolist(),
        clip_sample=False,
        set_alpha_to_one=False,
        timestep_spacing="trailing",
    )
    sampler = di.sampler_from_diffusers(s, vp)
    ts = sampler.time_grid(5)
    np.testing.assert_allclose(ts, [1.0, 0.8, 0.6, 0.4, 0.2, 0.001], atol=1e-6)  # float32 levels
    score = dc.exact_score(vp, GM)
    x1 = dc.marginal(vp, GM, 1.0).sample(100, rng=0)
    ref = dc.integrate(dc.ProbabilityFlowODE(vp, score), x1, ts, "ddim").x
    # Rounding the scheduler's float32 coefficients costs about eps32 * |x| per step, but a DDIM step
    # x' = (alpha'/alpha) (x - sigma eps) + sigma' eps multiplies the rounding of the cancelling bracket
    # by alpha'/alpha (6.0, 4.1, 2.7, 1.8, 1.2 on this grid): the budget is 2 eps32 |x| per unit of it.
    gain = float(np.sum(np.maximum(1.0, vp.alpha(ts[1:]) / vp.alpha(ts[:-1]))))
    assert gain > 15  # the premise: the early steps amplify rounding several-fold
    assert _max(sampler(score, x1, ts), ref) <= 2 * gain * EPS32 * float(np.max(np.abs(ref)))


def test_diffusers_sampler_refuses_what_it_cannot_run():
    p = di.process_from_diffusers(diffusers.DDIMScheduler(num_train_timesteps=N))
    score = dc.exact_score(p, GM)
    x1 = np.zeros((3, 2))
    trailing = di.sampler_from_diffusers(diffusers.DDIMScheduler(num_train_timesteps=N, timestep_spacing="trailing"), p)
    with pytest.raises(ValueError, match=r"runs on its own grid; use ts = sampler.time_grid\(5\)"):
        trailing(score, x1, np.linspace(1.0, 1e-3, 6))
    with pytest.raises(ValueError, match=r"does not chain: its step from timestep 999 ends at 857"):
        trailing.time_grid(7)  # 1000 / 7 is not an integer: trailing DDIM skips levels between steps
    leading = di.sampler_from_diffusers(diffusers.DDIMScheduler(num_train_timesteps=N, set_alpha_to_one=False), p)
    with pytest.raises(ValueError, match="zero-length step"):
        leading.time_grid(5)  # ends at timestep 0 and then at alphas_cumprod[0] again
    euler = di.sampler_from_diffusers(diffusers.EulerDiscreteScheduler(final_sigmas_type="sigma_min"), p)
    with pytest.raises(ValueError, match="zero-length step"):
        euler.time_grid(5)
    with pytest.raises(ValueError, match="ts must be decreasing"):
        trailing(score, x1, [0.5, 1.0])
    # linear betas 1e-4..0.02 reach log-SNR -10.12 at timestep 999, VPSDE(0.1, 20) only -10.05 at t = 1
    with pytest.raises(ValueError, match="lies beyond the end of VPSDE"):
        di.sampler_from_diffusers(diffusers.DDIMScheduler(timestep_spacing="trailing"), dc.VPSDE()).time_grid(5)


# -- diffusers: bad input ------------------------------------------------------------------------------


def test_bad_alphas_cumprod_and_prediction_types():
    ac = np.cumprod(1 - np.linspace(1e-4, 0.02, 10))
    bumped = ac.copy()
    bumped[4] = bumped[3] * 1.01
    with pytest.raises(ValueError, match=r"strictly decreasing.*alphas_cumprod\[4\] = 0\.99.* not below .*\[3\]"):
        di.process_from_diffusers(bumped)
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\]; alphas_cumprod\[9\] = 0\.0"):
        di.process_from_diffusers(np.concatenate([ac[:9], [0.0]]))
    with pytest.raises(ValueError, match=r"alphas_cumprod\[0\] = 1\.0 is not below alpha\(0\)\^2 = 1"):
        di.process_from_diffusers(np.concatenate([[1.0], ac[1:]]))
    with pytest.raises(ValueError, match="1-D array of at least 2 levels"):
        di.process_from_diffusers(ac[:1])
    with pytest.raises(TypeError, match="diffusers scheduler with alphas_cumprod"):
        di.process_from_diffusers("ddim")
    s = diffusers.DDIMScheduler(num_train_timesteps=N)
    with pytest.raises(ValueError, match="unknown prediction_type 'flow_prediction'; known: epsilon, sample"):
        di.score_from_diffusers(EpsNet(), s, "flow_prediction")
    with pytest.raises(ValueError, match="unknown prediction_type 'eps'"):
        di.model_for_diffusers(dc.exact_score(dc.VPSDE(), GM), dc.VPSDE(), s, "eps")
    with pytest.raises(ValueError, match="variance-preserving"):
        di.diffusers_betas(dc.VESDE(), N)
    with pytest.raises(ValueError, match="timestep must lie in"):
        di.timestep_to_time(1000, N)


def test_a_model_of_the_wrong_shape_is_refused():
    s = diffusers.DDIMScheduler(num_train_timesteps=N)
    score = di.score_from_diffusers(lambda x, k: x[:, :1], s)
    with pytest.raises(ValueError, match=r"model must return an array shaped like its input x \(4, 2\); got \(4, 1\)"):
        score(np.zeros((4, 2)), 0.5)
    model = di.model_for_diffusers(lambda x, t: x.sum(axis=1), di.process_from_diffusers(s), s)
    with pytest.raises(ValueError, match=r"score must return an array shaped like its input x"):
        model(np.zeros((4, 2)), 10)


# -- k-diffusion ----------------------------------------------------------------------------------------


def test_kdiffusion_sampling_loads_without_its_training_extras():
    k = di.import_kdiffusion_sampling()
    assert k.__file__.replace("\\", "/").endswith("k_diffusion/sampling.py")
    for name in ("sample_euler", "sample_heun", "sample_dpmpp_2m", "get_sigmas_karras"):
        assert callable(getattr(k, name))
    if "torchvision" in sys.modules:  # a stand-in never outlives the load
        assert getattr(sys.modules["torchvision"], "__file__", None) is not None
    assert di.import_kdiffusion_sampling() is k


def test_denoiser_and_score_round_trip():
    vp = dc.VPSDE()
    score = dc.exact_score(vp, GM)
    denoiser = di.denoiser_for_kdiffusion(score, vp)
    back = di.score_from_kdiffusion(denoiser, vp)
    x = np.random.default_rng(2).normal(size=(6, 2))
    for t in (1e-3, 0.3, 1.0):
        ref = score(x, t)
        assert _max(back(x, t), ref) <= 1e-11 * np.max(np.abs(ref)), t
    # the denoiser is Tweedie's formula in the variance-exploding variable
    t, a = 0.3, vp.alpha(0.3)
    sigma_ve = vp.sigma(t) / a
    x0 = denoiser(torch.as_tensor(x / a), torch.full((6,), sigma_ve, dtype=torch.float64))
    assert _max(x0, dc.samplers.denoise(vp, score, x, t)) <= 1e-13
    levels = torch.tensor([sigma_ve] * 3 + [2 * sigma_ve] * 3, dtype=torch.float64)
    per_point = denoiser(torch.as_tensor(x / a), levels)
    assert _max(per_point[:3], x0[:3]) <= 1e-13 and _max(per_point[3:], x0[3:]) > 1e-3
    with pytest.raises(ValueError, match="lies beyond the end of VPSDE"):
        denoiser(torch.as_tensor(x), torch.full((6,), 1e3))


KDIFF = [
    ("sample_euler", "ddim"),
    ("sample_heun", "edm_heun"),
    ("sample_dpmpp_2m", "dpm_solver_pp_2m"),
]


@pytest.mark.parametrize(("kname", "method"), KDIFF)
@pytest.mark.parametrize("to_zero", [False, True])
def test_kdiffusion_samplers_are_diffcore_solvers(kname, method, to_zero):
    vp = dc.VPSDE()
    score = dc.exact_score(vp, GM)
    steps = 8
    ts = dc.time_grid(vp, steps, t_min=1e-3, kind="edm")
    if to_zero:  # k-diffusion's usual grid: a final sigma = 0
        ts = np.concatenate([ts, [0.0]])
    x1 = dc.marginal(vp, GM, 1.0).sample(200, rng=0)
    sampler = di.sampler_from_kdiffusion(getattr(di.import_kdiffusion_sampling(), kname), vp)
    out = sampler(score, x1, ts, rng=0)
    if to_zero and method == "dpm_solver_pp_2m":  # its last step to sigma = 0 is first order: the denoiser
        ref = _diffcore_run(vp, score, x1, ts, method)
    else:  # edm_heun and ddim step to t = 0 themselves (Euler there, as in k-diffusion)
        ref = dc.integrate(dc.ProbabilityFlowODE(vp, score), x1, ts, method).x
    assert _max(out, ref) <= _float64_bound(len(ts) - 1, ref)


def test_kdiffusion_sampler_leaves_torchs_global_generator_alone():
    vp = dc.VPSDE()
    score = dc.exact_score(vp, GM)
    k = di.import_kdiffusion_sampling()
    # stochastic (churn below sigma = 10, so the raised level stays inside VPSDE's range)
    churn = di.sampler_from_kdiffusion(k.sample_euler, vp, s_churn=2.0, s_tmax=10.0)
    x1 = dc.marginal(vp, GM, 1.0).sample(50, rng=0)
    ts = dc.time_grid(vp, 6, kind="edm")
    state = torch.random.get_rng_state()
    a, b, c = churn(score, x1, ts, rng=3), churn(score, x1, ts, rng=3), churn(score, x1, ts, rng=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(a, b)
    assert _max(a, c) > 1e-3


# -- flow_matching ----------------------------------------------------------------------------------------

LINEAR = dc.OneSidedInterpolant("linear")
RF = dc.process_from_interpolant(LINEAR)  # alpha = 1 - t: alpha(1) = 0
DATA = dc.Gaussian(np.array([1.0, -1.0]), np.array([[0.5, 0.2], [0.2, 2.0]]))
FM = dc.interpolant_fields(LINEAR, dc.Gaussian(np.zeros(2), np.eye(2)), DATA)  # exact u(x, s), data at s = 1


def _flow_map(x1: np.ndarray, t: float) -> np.ndarray:
    """The exact probability-flow map of RF from t = 1 (where x_1 ~ N(0, I)) to t, for Gaussian data:
    x_t = alpha m + Sigma_t^{1/2} x_1 with Sigma_t = alpha^2 C + sigma^2 I (all functions of C commute)."""
    lam, u = np.linalg.eigh(DATA.cov)
    a, s = 1 - t, t
    root = u @ np.diag(np.sqrt(a**2 * lam + s**2)) @ u.T
    return a * DATA.mean + x1 @ root


def test_flow_matching_velocity_round_trip():
    v = di.velocity_from_flow_matching(FM.velocity)
    u = di.velocity_for_flow_matching(v)
    x = np.random.default_rng(3).normal(size=(5, 2))
    for s in (0.0, 0.3, 1.0):
        assert _max(u(x=x, t=s), FM.velocity(x, s)) <= 4 * EPS64 * np.max(np.abs(FM.velocity(x, s)))
        assert _max(v(x, 1 - s), -FM.velocity(x, s)) <= 4 * EPS64 * np.max(np.abs(FM.velocity(x, s)))
    xt = torch.as_tensor(x)
    out = u(x=xt, t=torch.tensor(0.3, dtype=torch.float64))  # as ODESolver calls it
    assert isinstance(out, torch.Tensor) and _max(out, FM.velocity(x, 0.3)) <= 1e-15
    # the probability-flow velocity of the process is the flow-matching velocity reversed in time
    pf = dc.reparametrize(dc.exact_score(RF, DATA), RF, source="score", target="velocity")
    assert _max(pf(x, 0.4), v(x, 0.4)) <= 1e-12


@pytest.mark.parametrize(
    ("fm_method", "method"), [("euler", "euler"), ("heun2", "heun"), ("midpoint", "midpoint"), ("rk4", "rk4_38")]
)
def test_ode_solver_is_diffcore_euler_heun_midpoint_and_rk4_38(fm_method, method):
    """ODESolver on 1 - ts against diffcore on ts, both starting at t = 1 where alpha = 0: diffcore
    integrates the velocity given as a score of RF (the probability-flow drift is that velocity)."""
    score = dc.reparametrize(di.velocity_from_flow_matching(FM.velocity), RF, source="velocity")
    ts = np.linspace(1.0, 0.0, 11)
    x1 = RF.prior_sample((100, 2), rng=1)
    out = di.sampler_from_flow_matching(RF, method=fm_method)(score, x1, ts)
    ref = dc.integrate(dc.ProbabilityFlowODE(RF, score), x1, ts, method).x
    assert _max(out, ref) <= _float64_bound(10, ref)


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_sampling_a_flow_from_its_noise_end(method, order):
    """The documented route (reverse_time, reparametrize(source="velocity")) samples from t = 1, where
    alpha = 0, with the exact velocity: no error, and the pathwise error against the closed-form flow
    map falls at the method's order (the slope between 32 and 64 steps, within 0.2 of the order: measured
    0.99, 2.09, 4.15; the slopes approach the orders from above as the steps are refined)."""
    score = dc.reparametrize(dc.reverse_time(FM.velocity, "velocity"), RF, source="velocity")
    x1 = RF.prior_sample((200, 2), rng=2)
    exact = _flow_map(x1, 1e-3)
    sols = [dc.sample(RF, score, x1, method=method, steps=n) for n in (32, 64)]
    per_step = dc.get_solver(method).nfe_per_step
    assert [s.nfe for s in sols] == [32 * per_step, 64 * per_step]  # one velocity call per evaluation
    errors = [_max(s.x, exact) for s in sols]
    slope = math.log2(errors[0] / errors[1])
    assert abs(slope - order) < 0.2, (errors, slope)


def test_where_alpha_is_zero_the_drift_coefficient_says_so():
    with pytest.raises(ValueError, match=r"f\(t\) = alpha'\(t\) / alpha\(t\) is infinite at t = 1\.0"):
        RF.drift_coef(1.0)
    with pytest.raises(ValueError, match=r"infinite at t = 1\.0"):
        RF.diffusion_squared(1.0)
    assert RF.drift_coef(np.array([0.5, 1.0]))[1] == -math.inf  # arrays hold the IEEE limit
    score = dc.reparametrize(dc.reverse_time(FM.velocity, "velocity"), RF, source="velocity")
    with pytest.raises(ValueError, match=r"infinite at t = 1\.0"):  # the SDE needs f x as well
        dc.sample(RF, score, RF.prior_sample((4, 2), rng=0), method="euler_maruyama", steps=4, rng=0)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_flow_log_likelihood_is_the_exact_log_density(backend):
    """Adaptive Dormand-Prince at rtol = atol = 1e-10: each accepted step errs by at most ~1e-10 of
    the state (|ell| < 10), and a few hundred steps at most add up to < 1e-7."""
    x = DATA.sample(20, rng=0)
    exact = DATA.log_prob(x)
    xin = torch.as_tensor(x) if backend == "torch" else x
    res = dc.flow_log_likelihood(FM.velocity, xin, method="adaptive", rtol=1e-10, atol=1e-10)
    assert type(res.value) is type(xin) and res.t_min == 0.0
    assert _max(res.value, exact) < 1e-7
    # diffcore's clock, and a distance from the data end
    v = di.velocity_from_flow_matching(FM.velocity)
    same = dc.flow_log_likelihood(v, x, data_time=0.0, method="adaptive", rtol=1e-10, atol=1e-10)
    assert _max(same.value, exact) < 1e-7
    far = dc.flow_log_likelihood(FM.velocity, x, t_min=0.1, method="adaptive", rtol=1e-10, atol=1e-10)
    assert _max(far.value, dc.exact_log_prob(RF, DATA)(x, 0.1)) < 1e-7
    assert far.t_min == 0.1


def test_log_likelihood_of_a_velocity_model_runs_to_alpha_zero():
    """The documented route itself (reparametrize(velocity) as a score of the rectified-flow process)
    reaches t = 1, where alpha = 0, and starts at t_min = 0: the augmented flow takes the drift and
    its divergence from the velocity.  Same tolerance argument as above."""
    x = DATA.sample(20, rng=0)
    score = dc.reparametrize(dc.reverse_time(FM.velocity, "velocity"), RF, source="velocity")
    res = dc.log_likelihood(RF, score, x, t_min=0.0, method="adaptive", rtol=1e-10, atol=1e-10)
    assert _max(res.value, DATA.log_prob(x)) < 1e-7
    # a score model still needs t_min > 0 (sigma(0) = 0)
    with pytest.raises(ValueError, match=r"t_min must be > 0; got 0\.0"):
        dc.log_likelihood(RF, dc.exact_score(RF, DATA), x, t_min=0.0)


def test_flow_log_likelihood_refuses_bad_input():
    x = DATA.sample(3, rng=0)
    with pytest.raises(ValueError, match=r"data_time must be 1\.0"):
        dc.flow_log_likelihood(FM.velocity, x, data_time=0.5)
    with pytest.raises(ValueError, match="unknown grid 'log_snr'; known: uniform"):
        dc.flow_log_likelihood(FM.velocity, x, grid="log_snr")
    with pytest.raises(ValueError, match=r"t_min must lie in \[0, 1\)"):
        dc.flow_log_likelihood(FM.velocity, x, t_min=1.0)
    with pytest.raises(ValueError, match=r"velocity must return an array shaped like its input x"):
        dc.flow_log_likelihood(lambda y, s: y[:, :1], x, steps=4)
