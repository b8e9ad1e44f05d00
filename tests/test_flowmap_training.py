"""Flow-map losses (diffcore.training): the exact flow map is their zero or their stationary point.

* Consistency distillation with the exact teacher step is zero at the exact map (to rounding) and
  not at the map of another process; with a Heun teacher it is small at the exact map and
  shrinks with the number of steps (the teacher's local error).
* Consistency training and MeanFlow are quadratic in the model with a frozen target, so the
  check of tests/test_training.py applies: the cross term ``X(h) = (L(f* + d h) - L(f* - d h)) /
  (4 d)`` with common noise is zero within 4.5 standard errors (16 chunks) at the exact field,
  and more than 10 standard errors away for a wrong one.  Consistency training is stationary only
  up to the DDIM step's local error (Song et al. 2023, thm. 2): its cross term falls with the
  number of steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffcore as dc
from diffcore.training import (
    consistency_distillation_loss,
    consistency_training_loss,
    meanflow_loss,
    solver_teacher,
)

F64 = torch.float64
MEAN, COV = np.array([1.0, -0.5]), np.array([[1.0, 0.6], [0.6, 0.5]])
DATA = dc.Gaussian(MEAN, COV)
LAM, VEC = (torch.as_tensor(a, dtype=F64) for a in np.linalg.eigh(COV))
CHUNKS, CHUNK, Z_MAX = 16, 2_000, 4.5


def _col(u, x):
    u = torch.as_tensor(u, dtype=F64, device=x.device)
    return u.reshape(-1, 1) if u.ndim else u


def _coef(fn, u, x):
    """A process coefficient at a float or per-point time, shaped (n|1, 1)."""
    u = torch.as_tensor(u, dtype=F64, device=x.device)
    return fn(u.reshape(-1)).reshape(-1, 1) if u.ndim else fn(u)


def gaussian_map(process, mean=MEAN):
    """The exact flow map of N(mean, COV) under ``process`` in torch, per-point times, differentiable."""
    m = torch.as_tensor(mean, dtype=F64)

    def moments(u, x):
        a, s = _coef(process.alpha, u, x), _coef(process.sigma, u, x)
        return a * m, a**2 * LAM + s**2  # mean (n|1, d), eigenvalues of Sigma_u (n|1, d)

    def phi(x, t, s):
        (mt, lt), (ms, ls) = moments(t, x), moments(s, x)
        return ms + ((x - mt) @ VEC * torch.sqrt(ls / lt)) @ VEC.T

    return phi


def linear_path_velocity(mean=MEAN):
    """The exact average velocity u(x, t, s) of the one-sided linear interpolant N(0, I) -> N(mean, COV)."""
    m = torch.as_tensor(mean, dtype=F64)

    def moments(u, x):
        u = _col(u, x)
        return u * m, (1 - u) ** 2 + u**2 * LAM

    def u_avg(x, t, s):
        (mt, lt), (ms, ls) = moments(t, x), moments(s, x)
        phi = ms + ((x - mt) @ VEC * torch.sqrt(ls / lt)) @ VEC.T
        ds = _col(s, x) - _col(t, x)
        vel = (
            m + ((x - mt) @ VEC * ((-(1 - _col(t, x)) + _col(t, x) * LAM) / lt)) @ VEC.T
        )  # v = mu' + Sigma'/2 Sigma^-1 (x - mu)
        safe = torch.where(ds == 0, torch.ones_like(ds), ds)
        return torch.where(ds == 0, vel, (phi - x) / safe)

    return u_avg


def _x0(k):
    return DATA.sample(CHUNK, rng=500 + k, like=torch.empty(0, dtype=F64))


def test_linear_path_velocity_helper_is_the_exact_field():
    """The test's own closed forms agree with diffcore (exact_flow_map, interpolant_fields)."""
    from diffcore.flowmaps import exact_flow_map

    vp = dc.VPSDE()
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(5, 2)))
    np.testing.assert_allclose(
        gaussian_map(vp)(x, 0.8, 0.1).numpy(), exact_flow_map(vp, DATA, 0.8, 0.1)(x.numpy()), atol=1e-12
    )
    path = dc.OneSidedInterpolant("linear")
    ends = (dc.Gaussian(np.zeros(2), np.eye(2)), DATA)
    u = linear_path_velocity()
    np.testing.assert_allclose(
        (x + 0.5 * u(x, 0.2, 0.7)).numpy(), exact_flow_map(path, ends, 0.2, 0.7)(x.numpy()), atol=1e-12
    )
    v = dc.interpolant_fields(path, *ends).velocity
    np.testing.assert_allclose(u(x, 0.3, 0.3).numpy(), v(x.numpy(), 0.3), atol=1e-12)


def test_consistency_distillation_with_the_exact_teacher_vanishes_at_the_exact_map():
    vp = dc.VPSDE()
    phi = gaussian_map(vp)
    x0 = _x0(0)
    loss = consistency_distillation_loss(phi, x0, vp, phi, rng=1, steps=12)
    assert float(loss) < 1e-24
    wrong = gaussian_map(dc.VPSDE(beta_max=15.0))
    # (a whole map of another schedule is self-consistent; only its disagreement with the teacher's
    # one step shows: measured 2.9e-4, twenty orders of magnitude above the exact map's)
    assert float(consistency_distillation_loss(wrong, x0, vp, phi, rng=1, steps=12)) > 1e-5
    # the model is only differentiated through its prediction, not through the target
    w = torch.ones((), dtype=F64, requires_grad=True)
    scaled = lambda x, t, s: w * phi(x, t, s)  # noqa: E731
    consistency_distillation_loss(scaled, x0, vp, phi, rng=1, steps=12).backward()
    assert w.grad is not None and abs(float(w.grad)) < 1e-10


def test_consistency_distillation_with_a_heun_teacher_converges_with_the_steps():
    """The exact map's loss under a Heun teacher is the teacher's squared local error: it falls fast
    (measured slope of log L against log N below -4; Heun's local error is O(h^3))."""
    vp = dc.VPSDE()
    phi = gaussian_map(vp)
    heun = solver_teacher(vp, dc.exact_score(vp, DATA), "heun")
    x0 = _x0(1)
    steps = np.array([6, 12, 24])
    losses = np.array([float(consistency_distillation_loss(phi, x0, vp, heun, rng=2, steps=int(n))) for n in steps])
    slope = np.polyfit(np.log(steps), np.log(losses), 1)[0]
    assert slope < -4, (slope, losses)


def _cross_terms(loss_at, exact, delta=0.1):
    """X(h) per direction, mean and standard error over the chunks (frozen target = the exact field)."""
    directions = {
        "const": lambda x, t, s: torch.ones_like(x),
        "linear": lambda x, t, s: x,
        "time": lambda x, t, s: torch.sin(3 * _col(t, x)) * x[:, [1, 0]],
    }
    out = {}
    for name, h in directions.items():
        xs = []
        for k in range(CHUNKS):
            lp = loss_at(lambda x, t, s, h=h: exact(x, t, s) + delta * h(x, t, s), k)
            lm = loss_at(lambda x, t, s, h=h: exact(x, t, s) - delta * h(x, t, s), k)
            xs.append((lp - lm) / (4 * delta))
        xs = np.asarray(xs)
        out[name] = (xs.mean(), xs.std(ddof=1) / np.sqrt(CHUNKS))
    return out


def test_meanflow_loss_is_stationary_at_the_exact_average_velocity():
    path = dc.OneSidedInterpolant("linear")
    u_exact = linear_path_velocity()

    def loss_at_for(target):
        def loss_at(field, k):
            return float(meanflow_loss(field, _x0(k), path, rng=k, target=target, t_min=0.0, t_max=0.99))

        return loss_at

    for name, (x, se) in _cross_terms(loss_at_for(u_exact), u_exact).items():
        assert abs(x) <= Z_MAX * se, (name, x, se)
    wrong = linear_path_velocity(MEAN + 0.3)
    z = [abs(x) / se for x, se in _cross_terms(loss_at_for(wrong), wrong).values()]
    assert max(z) > 10, z


def test_consistency_training_is_stationary_up_to_the_step():
    """The cross term at the exact map, relative to that of a wrong map, falls with the steps."""
    vp = dc.VPSDE()
    phi = gaussian_map(vp)
    wrong = gaussian_map(vp, MEAN + 0.3)

    def ratio(steps):
        def loss_at(field, k):
            return float(consistency_training_loss(field, _x0(k), vp, rng=k, steps=steps, target=phi))

        exact_x = max(abs(x) for x, _ in _cross_terms(loss_at, phi).values())

        def loss_wrong(field, k):
            return float(consistency_training_loss(field, _x0(k), vp, rng=k, steps=steps, target=wrong))

        wrong_x = max(abs(x) for x, _ in _cross_terms(loss_wrong, wrong).values())
        return exact_x / wrong_x

    r = [ratio(n) for n in (6, 24)]
    assert r[1] < r[0] / 2, r


def test_bad_input():
    vp = dc.VPSDE()
    phi = gaussian_map(vp)
    x0 = _x0(0)[:8]
    with pytest.raises(TypeError, match=r"model must be a callable \(x, t, s\)"):
        consistency_distillation_loss(None, x0, vp, phi)
    with pytest.raises(TypeError, match=r"teacher must be a callable \(x, t, s\)"):
        consistency_distillation_loss(phi, x0, vp, "heun")
    with pytest.raises(TypeError, match="process must be an AbstractProcess"):
        consistency_training_loss(phi, x0, "vp")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        consistency_training_loss(phi, x0, vp, steps=0)
    with pytest.raises(ValueError, match="x0 must be finite"):
        consistency_training_loss(phi, x0 * float("nan"), vp)
    with pytest.raises(ValueError, match=r"teacher must return an array shaped like its input x \(\d+, 2\)"):
        consistency_distillation_loss(phi, x0, vp, lambda x, t, s: x[:, :1])
    nan_teacher = lambda x, t, s: x * float("nan")  # noqa: E731
    with pytest.raises(ValueError, match="the teacher's step must be finite"):
        consistency_distillation_loss(phi, x0, vp, nan_teacher)
    score = dc.exact_score(vp, DATA)  # a score is not a teacher: it takes (x, t), not (x, t, s)
    with pytest.raises(TypeError, match=r"teacher must take 3 positional arguments \(x, t, s\); its signature is"):
        consistency_distillation_loss(phi, x0, vp, lambda x, t: score(x, t))
    with pytest.raises(TypeError, match=r"model must take 3 positional arguments"):
        consistency_training_loss(MLPField(2, width=8, depth=1, rng=0), x0, vp)
    with pytest.raises(ValueError, match=r"equal_fraction must lie in \[0, 1\]"):
        meanflow_loss(linear_path_velocity(), x0, dc.OneSidedInterpolant(), equal_fraction=1.5)


# -- progressive distillation -------------------------------------------------------------------------
from diffcore.training import progressive_distillation_loss  # noqa: E402
from diffcore.training._flowmap_losses import progressive_target  # noqa: E402


def _ideal_student(process, teacher, ts):
    """The denoiser whose DDIM step t_{2k} -> t_{2k+2} is the teacher's two steps (per-point times on the grid)."""
    grid = torch.as_tensor(ts, dtype=F64)

    def student(x, t):
        k = torch.searchsorted(-grid, -t.reshape(-1))  # index of t in the decreasing grid
        return progressive_target(process, teacher, x, t, grid[k + 1], grid[k + 2])

    return student


def test_progressive_distillation_vanishes_for_the_ideal_student_and_halves_the_steps():
    """The ideal student (progressive_target at its own time) has zero loss, and its N-step DDIM
    sampler reproduces the teacher's 2N-step DDIM sampler to rounding; the teacher itself, used as
    the student, does not (its loss is the two-step/one-step gap, > 0)."""
    vp, n = dc.VPSDE(), 4
    teacher = dc.exact_denoiser(vp, DATA)
    ts = np.asarray(dc.samplers.time_grid(vp, 2 * n, t_min=1e-3, kind="uniform"))
    ideal = _ideal_student(vp, teacher, ts)
    x0 = _x0(2)
    assert float(progressive_distillation_loss(ideal, x0, vp, teacher, rng=3, steps=n)) < 1e-24
    assert float(progressive_distillation_loss(teacher, x0, vp, teacher, rng=3, steps=n)) > 1e-4
    x1 = torch.as_tensor(vp.prior_sample((64, 2), rng=4))
    x_teacher, x_student = x1.clone(), x1.clone()
    for i in range(2 * n):
        t, s = torch.full((64,), ts[i], dtype=F64), torch.full((64,), ts[i + 1], dtype=F64)
        x_teacher = _ddim_step(vp, x_teacher, teacher(x_teacher, t), t, s)
    for i in range(0, 2 * n, 2):
        t, s = torch.full((64,), ts[i], dtype=F64), torch.full((64,), ts[i + 2], dtype=F64)
        x_student = _ddim_step(vp, x_student, ideal(x_student, t), t, s)
    assert float((x_student - x_teacher).abs().max()) < 1e-10


def _ddim_step(process, x, x0, t, s):
    a_t, s_t = process.alpha(t).reshape(-1, 1), process.sigma(t).reshape(-1, 1)
    a_s, s_s = process.alpha(s).reshape(-1, 1), process.sigma(s).reshape(-1, 1)
    return a_s * x0 + (s_s / s_t) * (x - a_t * x0)


def test_progressive_distillation_bad_input():
    vp = dc.VPSDE()
    teacher = dc.exact_denoiser(vp, DATA)
    x0 = _x0(0)[:8]
    with pytest.raises(TypeError, match=r"student must be a callable \(x, t\)"):
        progressive_distillation_loss(None, x0, vp, teacher)
    with pytest.raises(ValueError, match="needs 0 < t_min < t_max"):
        progressive_distillation_loss(teacher, x0, vp, teacher, t_min=0.0)
    with pytest.raises(ValueError, match="the teacher's target must be finite"):
        progressive_distillation_loss(teacher, x0, vp, lambda x, t: x * float("nan"))


# -- guided distillation ------------------------------------------------------------------------------
from diffcore.conditional import LabelledMixture, classifier_free_guidance, exact_conditional_score  # noqa: E402
from diffcore.training import guided_distillation_loss  # noqa: E402

LAB = LabelledMixture([0.4, 0.6], [[-1.5, 0.0], [1.5, 0.5]], [np.eye(2) * 0.3, np.eye(2) * 0.5], labels=[0, 1])


def test_guided_distillation_vanishes_at_the_guided_teacher():
    """The w-conditioned student equal to the teacher's guided denoiser (built here from the
    *scores* with classifier_free_guidance and converted to x0: an independent route) has zero
    loss; the unguided conditional denoiser does not."""
    vp = dc.VPSDE()
    s_cond, s_uncond = exact_conditional_score(vp, LAB, 1), dc.exact_score(vp, LAB)
    den_cond = dc.reparametrize(s_cond, vp, source="score", target="x0")
    den_uncond = dc.reparametrize(s_uncond, vp, source="score", target="x0")

    def student(x, t, w):
        out = torch.empty_like(x)
        for i in range(x.shape[0]):  # per-point weight: one guided score each
            g = classifier_free_guidance(s_cond, s_uncond, float(w[i]))
            xi, ti = x[i : i + 1], t[i : i + 1]
            out[i] = dc.convert(g(xi, ti), xi, ti, vp, source="score", target="x0")[0]
        return out

    x0 = LAB.conditional(1).sample(200, rng=0, like=torch.empty(0, dtype=F64))
    kw = {"w_max": 3.0, "t_min": 0.05}
    assert float(guided_distillation_loss(student, x0, vp, den_cond, den_uncond, rng=1, **kw)) < 1e-20
    unguided = lambda x, t, w: den_cond(x, t)  # noqa: E731
    assert float(guided_distillation_loss(unguided, x0, vp, den_cond, den_uncond, rng=1, **kw)) > 1e-3
    with pytest.raises(ValueError, match="-1 <= w_min <= w_max"):
        guided_distillation_loss(student, x0, vp, den_cond, den_uncond, w_min=2.0, w_max=1.0)


# -- continuous-time (Eulerian) distillation -----------------------------------------------------------
from diffcore.training import eulerian_distillation_loss  # noqa: E402


@pytest.mark.parametrize("s", [None, 2e-3])
def test_eulerian_distillation_vanishes_at_the_exact_map_and_trains(s):
    """Zero (to rounding) at the exact map for random and fixed target times; of order one for the
    map of another schedule; and its gradient reaches the model's parameters."""
    vp = dc.VPSDE()
    v = dc.ProbabilityFlowODE(vp, dc.exact_score(vp, DATA)).drift
    x0 = _x0(3)[:500]
    phi = gaussian_map(vp)
    assert float(eulerian_distillation_loss(phi, x0, vp, v, rng=1, s=s).detach()) < 1e-20
    wrong = gaussian_map(dc.VPSDE(beta_max=15.0))
    assert float(eulerian_distillation_loss(wrong, x0, vp, v, rng=1, s=s).detach()) > 1e-3
    w = torch.ones((), dtype=F64, requires_grad=True)
    scaled = lambda x, t, s: phi(x, t, s) + (w - 1) * x * torch.sin(3 * _col(t, x))  # noqa: E731
    eulerian_distillation_loss(scaled, x0, vp, v, rng=1, s=s).backward()
    assert w.grad is not None and float(w.grad) == pytest.approx(0.0, abs=1e-12)  # stationary at w = 1
    w2 = torch.full((), 1.1, dtype=F64, requires_grad=True)
    off = lambda x, t, s: phi(x, t, s) + (w2 - 1) * x * torch.sin(3 * _col(t, x))  # noqa: E731
    eulerian_distillation_loss(off, x0, vp, v, rng=1, s=s).backward()
    assert float(w2.grad) > 1e-3  # the loss grows away from the exact map


# -- BOOT ---------------------------------------------------------------------------------------------
from diffcore.training import boot_loss  # noqa: E402


def _exact_signal(process, t_max=1.0):
    """The exact BOOT student: the signal (Phi(eps, t_max, t) - sigma_t eps) / alpha_t of the ODE from x = eps."""
    phi = gaussian_map(process)

    def g(eps, t):
        return (phi(eps, t_max, t) - _coef(process.sigma, t, eps) * eps) / _coef(process.alpha, t, eps)

    return g


def test_boot_vanishes_at_the_exact_signal_and_its_ddim_teacher_converges():
    vp = dc.VPSDE()
    eps = torch.randn(2000, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    exact = _exact_signal(vp)
    phi = gaussian_map(vp)
    assert float(boot_loss(exact, eps, vp, phi, rng=1, steps=12)) < 1e-20
    wrong = _exact_signal(dc.VPSDE(beta_max=15.0))
    assert float(boot_loss(wrong, eps, vp, phi, rng=1, steps=12)) > 1e-3
    ddim = solver_teacher(vp, dc.exact_score(vp, DATA), "ddim")
    losses = [float(boot_loss(exact, eps, vp, ddim, rng=1, steps=n)) for n in (6, 12, 24)]
    assert losses[2] < losses[1] < losses[0], losses  # the teacher's local error shrinks
    with pytest.raises(ValueError, match="boundary_weight must be >= 0"):
        boot_loss(exact, eps, vp, phi, boundary_weight=-1.0)


# -- SCott: consistency distillation with a stochastic teacher ------------------------------------------
from diffcore.training import sde_teacher  # noqa: E402


def test_stochastic_teacher_bias_of_consistency_distillation():
    """eta = 0 is the DDIM teacher (to rounding).  With eta = 1 (the ancestral step) the exact map is
    not stationary: the cross term at the exact map falls with the steps (measured 0.77 -> 0.28 from
    6 to 24 steps) but stays far above the DDIM teacher's (0.0066 at 24 steps, 42x smaller): the
    stochastic step's mean differs from the ODE step at first order."""
    vp = dc.VPSDE()
    score = dc.exact_score(vp, DATA)
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(6, 2)))
    ddim = solver_teacher(vp, score, "ddim")(x, 0.8, 0.6)
    assert float((sde_teacher(vp, score, 0.0)(x, 0.8, 0.6) - ddim).abs().max()) < 1e-14
    phi = gaussian_map(vp)

    def cross(eta, steps):
        def loss_at(field, k):
            teacher = sde_teacher(vp, score, eta, rng=k)
            return float(consistency_distillation_loss(field, _x0(k), vp, teacher, rng=k, steps=steps, target=phi))

        return max(abs(v) for v, _ in _cross_terms(loss_at, phi).values())

    sde6, sde24, ode24 = cross(1.0, 6), cross(1.0, 24), cross(0.0, 24)
    assert sde24 < 0.7 * sde6, (sde6, sde24)
    assert sde24 > 10 * ode24, (sde24, ode24)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        sde_teacher(vp, score, -0.5)
    with pytest.raises(ValueError, match=r"steps backwards in time \(s < t\)"):
        sde_teacher(vp, score)(x, 0.3, 0.6)


# -- LoRA ---------------------------------------------------------------------------------------------
from diffcore.training import MLPField, add_lora, lora_parameters  # noqa: E402


def test_lora_starts_at_the_base_model_and_trains_only_the_adapters():
    net = MLPField(2, width=16, depth=2, rng=0, dtype=F64)
    x = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    before = net(x, 0.5).detach()
    add_lora(net, 3, rng=1)
    assert torch.equal(net(x, 0.5).detach(), before)  # B = 0
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in lora_parameters(net)}
    sizes = [(2 + 32, 16), (16, 16), (16, 2)]  # (in, out) of the three layers; r (in + out) each, r <= min(in, out)
    assert sum(p.numel() for p in trainable) == sum(min(3, i, o) * (i + o) for i, o in sizes)


@pytest.mark.parametrize("rank", [1, 2])
def test_lora_reaches_the_best_rank_r_update(rank):
    """Fitting W + D with D of rank 2: the adapter of rank r reaches the Eckart-Young optimum
    ||D - D_r||_F^2 = sum of the squared singular values beyond r (0 for r = 2)."""
    gen = torch.Generator().manual_seed(2)
    layer = torch.nn.Linear(5, 4, dtype=F64)
    u, v = torch.randn(4, 2, dtype=F64, generator=gen), torch.randn(2, 5, dtype=F64, generator=gen)
    delta = u @ v
    target = layer.weight.detach() + delta
    holder = torch.nn.Sequential(layer)
    add_lora(holder, rank, rng=3)
    opt = torch.optim.Adam(lora_parameters(holder), lr=0.02)
    for _ in range(3000):
        opt.zero_grad()
        loss = torch.sum((holder[0].weight - target) ** 2)
        loss.backward()
        opt.step()
    optimum = float(torch.sum(torch.linalg.svdvals(delta)[rank:] ** 2))
    assert float(loss.detach()) == pytest.approx(optimum, abs=1e-6, rel=1e-4), (float(loss.detach()), optimum)


def test_lora_bad_input():
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.Module"):
        add_lora("net", 2)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        add_lora(torch.nn.Sequential(torch.nn.Linear(3, 3)), 0)
    with pytest.raises(ValueError, match=r"must contain torch\.nn\.Linear layers"):
        add_lora(torch.nn.Sequential(torch.nn.ReLU()), 1)
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.Module"):
        lora_parameters([1, 2])


def test_consistency_distillation_skipping_steps():
    """With the exact teacher any skip keeps the loss at zero; with a DDIM teacher a longer jump has a
    larger local error (measured: the loss grows with skip)."""
    vp = dc.VPSDE()
    phi = gaussian_map(vp)
    x0 = _x0(4)[:1000]
    assert float(consistency_distillation_loss(phi, x0, vp, phi, rng=1, steps=12, skip=4)) < 1e-24
    ddim = solver_teacher(vp, dc.exact_score(vp, DATA), "ddim")
    losses = [float(consistency_distillation_loss(phi, x0, vp, ddim, rng=1, steps=24, skip=k)) for k in (1, 4)]
    assert losses[1] > losses[0], losses
    with pytest.raises(ValueError, match="skip must be <= steps = 4"):
        consistency_distillation_loss(phi, x0, vp, phi, steps=4, skip=5)


def test_stochastic_teacher_step_is_the_ddim_eta_kernel():
    """One eta = 1 step from a fixed point, repeated 20 000 times: its sample mean and variance agree
    (within 4.5 standard errors) with the DDIM-eta kernel of diffcore.conditional's particle samplers
    (an independent implementation through the process's exact transition)."""
    from diffcore.conditional._particles import prior_kernel, tweedie

    vp = dc.VPSDE()
    score = dc.exact_score(vp, DATA)
    n, t, s = 20_000, 0.1, 0.08  # sigma_t = 0.32: a kernel off by 1 / sigma_t would show
    x = torch.tensor([[0.3, -0.8]], dtype=F64).expand(n, 2).contiguous()
    out = sde_teacher(vp, score, 1.0, rng=5)(x, t, s)
    x_np = x[:1].numpy()
    mean, var = prior_kernel(vp, x_np, tweedie(vp, score(x_np, t), x_np, t), t, s, eta=1.0)
    se_mean = np.sqrt(var / n)
    np.testing.assert_array_less(np.abs(out.mean(0).numpy() - mean[0]), 4.5 * se_mean)
    se_var = var * np.sqrt(2 / (n - 1))
    np.testing.assert_array_less(np.abs(out.var(0).numpy() - var), 4.5 * se_var)


def test_guided_progressive_distillation_for_every_weight():
    """Stage two: with guidance=(0, 3) the ideal student of each point's weight w (the two-step target
    of the guided teacher at that w) has zero loss; the ideal student of one fixed w does not."""
    vp, n = dc.VPSDE(), 2
    s_cond, s_uncond = exact_conditional_score(vp, LAB, 1), dc.exact_score(vp, LAB)
    den_c = dc.reparametrize(s_cond, vp, source="score", target="x0")
    den_u = dc.reparametrize(s_uncond, vp, source="score", target="x0")

    def guided(x, t, w):  # the guided teacher in x0-form, per-point weights
        return (1 + w.reshape(-1, 1)) * den_c(x, t) - w.reshape(-1, 1) * den_u(x, t)

    grid = torch.as_tensor(np.asarray(dc.samplers.time_grid(vp, 2 * n, t_min=1e-3, kind="uniform")), dtype=F64)

    def ideal(x, t, w):
        k = torch.searchsorted(-grid, -t.reshape(-1))
        return progressive_target(vp, lambda y, u: guided(y, u, w), x, t, grid[k + 1], grid[k + 2])

    x0 = LAB.conditional(1).sample(300, rng=0, like=torch.empty(0, dtype=F64))
    kw = {"steps": n, "guidance": (0.0, 3.0)}
    assert float(progressive_distillation_loss(ideal, x0, vp, guided, rng=2, **kw)) < 1e-20
    fixed = lambda x, t, w: ideal(x, t, torch.full_like(w, 1.5))  # noqa: E731
    assert float(progressive_distillation_loss(fixed, x0, vp, guided, rng=2, **kw)) > 1e-4
    with pytest.raises(TypeError, match="guidance must be a pair"):
        progressive_distillation_loss(ideal, x0, vp, guided, guidance=2.0)


# -- shortcut models ----------------------------------------------------------------------------------
from diffcore.training import shortcut_loss  # noqa: E402


def test_shortcut_loss_is_stationary_at_the_exact_average_velocity():
    """The self-consistency target of the exact map is the exact map (semigroup law), the flow-matching
    part is stationary at the velocity: the cross term is zero within 4.5 standard errors; for the map
    of data moved by 0.3 it is more than 10 standard errors away."""
    path = dc.OneSidedInterpolant("linear")

    def shortcut_form(u_avg):
        return lambda x, t, d: u_avg(x, t, _col(t, x).reshape(-1) + d)

    def loss_at_for(target):
        def loss_at(field, k):
            return float(shortcut_loss(field, _x0(k), path, rng=k, target=target, consistency_fraction=0.5))

        return loss_at

    exact = shortcut_form(linear_path_velocity())
    for name, (x, se) in _cross_terms(loss_at_for(exact), exact).items():
        assert abs(x) <= Z_MAX * se, (name, x, se)
    wrong = shortcut_form(linear_path_velocity(MEAN + 0.3))
    z = [abs(x) / se for x, se in _cross_terms(loss_at_for(wrong), wrong).values()]
    assert max(z) > 10, z
    with pytest.raises(ValueError, match=r"consistency_fraction must lie in \[0, 1\]"):
        shortcut_loss(exact, _x0(0)[:8], path, consistency_fraction=2.0)
