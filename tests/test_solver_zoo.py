"""The solver zoo: EDM (Heun, churn), heavy-ball momentum (HB, GHVB), BDIA and inversion, adaptive RK.

The pathwise orders of the deterministic fixed-step methods (edm_heun, hb, ghvb, bdia) are
measured by the one parametrised test over ``dc.SOLVERS`` in ``test_samplers.py``; here are the
properties specific to each method: reductions to simpler methods, weak order of the churn
sampler with the exact Gaussian-law oracle, stability regions (closed forms and the real solvers
on the linear test equation), exact inversion, error control, and bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import diffcore as dc
from diffcore.samplers import (
    BDIA,
    GHVB,
    Adaptive,
    EDMHeun,
    EDMStochastic,
    HeavyBall,
    amplification_factor,
    invert,
    stability_region,
)
from diffcore.testing import fit_order, propagate_gaussian_law, reference_ode_solution
from tests.conftest import PROCESSES, circle_mixture

T_MIN = 1e-3
PROC = dc.VPSDE()
P1 = circle_mixture()
SCORE = dc.exact_score(PROC, P1)
GAUSS3 = dc.Gaussian(np.array([1.0, -2.0, 0.5]), np.array([[1.0, 0.6, -0.3], [0.6, 0.8, 0.2], [-0.3, 0.2, 0.5]]))


def _x(n: int = 20, dim: int = 2) -> np.ndarray:
    return PROC.prior_sample((n, dim), rng=0)


class CountingScore:
    def __init__(self, score) -> None:
        self.score, self.calls = score, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)


# -- EDM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", ["uniform", "edm"])
def test_edm_stochastic_without_churn_is_edm_heun(grid):
    x = _x()
    heun = dc.sample(PROC, SCORE, x, method="edm_heun", steps=12, grid=grid).x
    still = dc.sample(PROC, SCORE, x, method=EDMStochastic(churn=0.0), steps=12, grid=grid, rng=0).x
    np.testing.assert_array_equal(still, heun)
    # churn outside the band [s_tmin, s_tmax] of noise levels is no churn either
    banded = dc.sample(PROC, SCORE, x, method=EDMStochastic(churn=5.0, s_tmax=1e-9), steps=12, grid=grid, rng=0).x
    np.testing.assert_array_equal(banded, heun)


def test_edm_heun_last_step_to_sigma_zero_is_ddim():
    """Alg. 1, line 9: a step that ends at sigma = 0 is the Euler step in (n, y), which is DDIM."""
    ode = dc.ProbabilityFlowODE(PROC, dc.exact_score(PROC, GAUSS3))
    x, ts = _x(dim=3), [0.3, 0.0]
    ddim = dc.integrate(ode, x, ts, "ddim").x
    np.testing.assert_allclose(dc.integrate(ode, x, ts, "edm_heun").x, ddim, rtol=1e-12, atol=1e-12)


def test_edm_heun_counts_the_euler_step_to_sigma_zero():
    """Down to t = 0 (sigma = 0) the last step is Euler (alg. 1, line 9): one evaluation, counted honestly."""
    score = CountingScore(dc.exact_score(PROC, GAUSS3))
    ts = np.linspace(1.0, 0.0, 9)
    sol = dc.integrate(dc.ProbabilityFlowODE(PROC, score), _x(dim=3), ts, "edm_heun")
    assert sol.nfe == score.calls == 2 * 8 - 1
    assert np.all(np.isfinite(sol.x))


#: Uniform steps 25-200: fitted weak slopes 2.00 (VP), 1.97 (cosine), 1.98 (VE).  (On the EDM grid
#: 25-200 steps are pre-asymptotic for the churn rate per unit time: 1.79 on VP, 1.52 on cosine.)
WEAK_STEPS = (25, 50, 100, 200)


@pytest.mark.parametrize("process_name", ["vp", "cosine", "ve"])
def test_edm_stochastic_weak_order(process_name):
    """Exact law of the churn sampler (affine in state and noise for Gaussian data): weak order 2."""
    process = PROCESSES[process_name]
    start, target = dc.marginal(process, GAUSS3, 1.0), dc.marginal(process, GAUSS3, T_MIN)
    dyn = dc.ReverseSDE(process, dc.exact_score(process, GAUSS3))
    errors, churned = [], []
    for n in WEAK_STEPS:
        ts = dc.time_grid(process, n, t_min=T_MIN)
        mean, cov = propagate_gaussian_law(dyn, EDMStochastic(churn=10.0), start.mean, start.cov, ts)
        errors.append(float(dc.w2_gaussian(mean, cov, target.mean, target.cov)))
        still = propagate_gaussian_law(dyn, EDMStochastic(churn=0.0), start.mean, start.cov, ts)
        churned.append(float(dc.w2_gaussian(mean, cov, *still)))
    slope = fit_order(WEAK_STEPS, errors)
    assert abs(slope - EDMStochastic.order) < 0.25, (slope, errors)
    assert min(churned) > 1e-6  # the churn does change the law (the test has power)


def test_edm_stochastic_law_matches_monte_carlo():
    """The oracle applies: 20 000 runs of the real sampler agree with the propagated law (4.5 s.e.)."""
    process, n = PROCESSES["vp"], 20_000
    start = dc.marginal(process, GAUSS3, 1.0)
    dyn = dc.ReverseSDE(process, dc.exact_score(process, GAUSS3))
    ts = dc.time_grid(process, 6, t_min=T_MIN)
    solver = EDMStochastic(churn=30.0)
    mean, cov = propagate_gaussian_law(dyn, solver, start.mean, start.cov, ts)
    x = dc.integrate(dyn, start.sample(n, rng=1), ts, solver, rng=2).x
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.max(np.abs(x.mean(axis=0) - mean) / se_mean) < 4.5
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.max(np.abs(np.cov(x.T, bias=True) - cov) / se_cov) < 4.5


# -- momentum -----------------------------------------------------------------------------------


@pytest.mark.parametrize("process_name", ["vp", "ve"])
def test_momentum_with_beta_one(process_name):
    """beta = 1: HB is DDIM; GHVB is variable-step AB2 in (n, y) (checked against a direct formula)."""
    process = PROCESSES[process_name]
    score = dc.exact_score(process, P1)
    x = process.prior_sample((10, 2), rng=0)
    ddim = dc.sample(process, score, x, method="ddim", steps=15).x
    hb = dc.sample(process, score, x, method=HeavyBall(beta=1.0), steps=15).x
    np.testing.assert_allclose(hb, ddim, rtol=1e-12, atol=1e-12 * np.max(np.abs(ddim)))
    ts = dc.time_grid(process, 15, t_min=T_MIN)
    n = process.sigma(ts) / process.alpha(ts)
    y, eps_prev = x / process.alpha(ts[0]), None
    for k in range(15):
        xk = process.alpha(ts[k]) * y
        eps = -process.sigma(ts[k]) * score(xk, ts[k])
        d = n[k + 1] - n[k]
        slope = eps if eps_prev is None else eps + 0.5 * d / (n[k] - n[k - 1]) * (eps - eps_prev)
        y, eps_prev = y + d * slope, eps
    ab2 = process.alpha(ts[-1]) * y
    ghvb = dc.sample(process, score, x, method=GHVB(beta=1.0), steps=15).x
    np.testing.assert_allclose(ghvb, ab2, rtol=1e-10, atol=1e-10 * np.max(np.abs(ab2)))


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.8, 1.0])
def test_stability_intervals_on_the_real_axis(beta):
    """Closed forms: HB stable on [-2(2 - beta)/beta, 0], GHVB-2 on [-(2 - beta), 0] (derived in _stability)."""
    for method, edge in [("hb", -2 * (2 - beta) / beta), ("ghvb", -(2 - beta))]:
        inside = np.linspace(edge * 0.999, -1e-3, 200)
        assert np.all(amplification_factor(method, inside, beta=beta) <= 1 + 1e-12), method
        assert amplification_factor(method, edge * 1.001, beta=beta) > 1, method
        assert abs(amplification_factor(method, edge, beta=beta) - 1) < 1e-9, method
    # the classical ends: Euler/DDIM -2, Heun -2, RK4 -2.7853 (Hairer and Wanner 1996, fig. IV.2.1)
    for method, edge in [("euler", -2.0), ("ddim", -2.0), ("heun", -2.0), ("rk4", -2.785293563405)]:
        assert abs(amplification_factor(method, edge) - 1) < 1e-9, method


def test_momentum_enlarges_the_stability_region():
    """The stable area grows as beta decreases (Wizadwongsa et al. 2023, fig. 3), for HB and for GHVB."""
    for method in ("hb", "ghvb"):
        areas = [stability_region(method, (-12, 1), (-6, 6), points=121, beta=b)[2].sum() for b in (1.0, 0.8, 0.5)]
        assert areas[0] < areas[1] < areas[2], (method, areas)
    # (the regions are not nested: near the imaginary axis AB2's reaches further than GHVB(0.5)'s)


def test_bdia_is_a_leapfrog_on_the_test_equation():
    """gamma = 0: stable only on the imaginary segment [-i, i]; gamma > 0 adds a real interval."""
    assert amplification_factor("bdia", 0.9j, gamma=0.0) <= 1 + 1e-12
    assert amplification_factor("bdia", 1.1j, gamma=0.0) > 1
    assert amplification_factor("bdia", -0.05, gamma=0.0) > 1
    assert amplification_factor("bdia", -0.05, gamma=0.5) <= 1
    np.testing.assert_allclose(amplification_factor("bdia", [-0.5, 0.3j], gamma=1.0), np.abs([0.5, 1 + 0.3j]))


@pytest.mark.parametrize(
    ("method", "solver", "z"),
    [
        ("hb", HeavyBall(beta=0.5), -5.0),  # stable for HB(0.5) (edge -6), unstable for DDIM (|1 + z| = 4)
        ("hb", HeavyBall(beta=0.5), -6.5),
        ("ghvb", GHVB(beta=0.5), -1.4),  # stable for GHVB(0.5) (edge -1.5), unstable for AB2 (edge -1)
        ("ghvb", GHVB(beta=0.5), -1.6),
        ("ddim", "ddim", -1.5),
    ],
)
def test_real_solvers_grow_as_their_amplification_factor(method, solver, z):
    """The real samplers on ``dy/dn = lambda y`` (VE process, uniform n grid) grow at the predicted rate.

    With ``alpha = 1`` and the score ``s(x, t) = -lambda x / sigma(t)``, ``eps_hat = lambda x``; on
    a grid uniform in ``n = sigma`` the solver is the linear recurrence of :func:`amplification_factor`
    with ``z = delta lambda``.  Over the last 20 of 120 steps the growth per step matches the
    spectral radius to 1 % (the dominant eigenvalue has taken over).
    """
    process = dc.VESDE(sigma_min=0.01, sigma_max=10.0)
    n = np.linspace(process.sigma(1.0), process.sigma(0.05), 121)
    ts = np.asarray(process.log_snr_inverse(-2 * np.log(n)))
    ts[0], ts[-1] = 1.0, 0.05
    n = process.sigma(ts)  # the grid's true levels (uniform up to the inverse's accuracy)
    delta = float(np.mean(np.diff(n)))
    lam = z / delta
    score = lambda x, t: -lam * x / process.sigma(t)  # noqa: E731
    sol = dc.integrate(dc.ProbabilityFlowODE(process, score), np.ones((1, 1)), ts, solver, save_path=True)
    norms = np.abs(sol.path[:, 0, 0])
    rate = (norms[-1] / norms[-21]) ** (1 / 20)
    rho = float(amplification_factor(method, z, **({"beta": 0.5} if method != "ddim" else {})))
    assert abs(rate / rho - 1) < 0.01, (rate, rho)
    assert (rate <= 1) == (rho <= 1)


# -- BDIA and inversion -------------------------------------------------------------------------


def test_bdia_with_gamma_one_is_ddim():
    x = _x()
    np.testing.assert_allclose(
        dc.sample(PROC, SCORE, x, method=BDIA(gamma=1.0), steps=10).x,
        dc.sample(PROC, SCORE, x, method="ddim", steps=10, grid=BDIA.grid).x,
        rtol=1e-12,
        atol=1e-12,
    )


def test_bdia_with_gamma_between_is_first_order():
    """gamma in (0, 1): only the first-order condition holds (log-SNR grid, P1-ve: slope 1)."""
    process = PROCESSES["ve"]
    score = dc.exact_score(process, P1)
    x = process.prior_sample((50, 2), rng=0)
    ref = reference_ode_solution(dc.ProbabilityFlowODE(process, score), x, 1.0, T_MIN)
    steps = (100, 200, 400)
    errors = [
        np.max(np.abs(dc.sample(process, score, x, method=BDIA(gamma=0.5), steps=n, grid="log_snr").x - ref))
        for n in steps
    ]
    assert abs(fit_order(steps, errors) - 1) < 0.25, errors


@pytest.mark.parametrize("process_name", ["vp", "cosine", "ve"])
@pytest.mark.parametrize("gamma", [0.0, 0.1])
def test_bdia_round_trip_is_exact(process_name, gamma):
    """x0 -> invert -> sample recovers x0 to rounding (measured <= 2e-14 relative; asked 1e-10).

    For ``gamma > 0`` the inverse divides by ``1 - gamma`` each step, so rounding errors grow like
    ``(1 - gamma)^-N``: 190x over 50 steps at ``gamma = 0.1`` (still far below 1e-10), but ~1e15x
    at ``gamma = 0.5`` (round trip 1.8e-7 measured); see :func:`test_bdia_inversion_conditioning`.
    """
    process = PROCESSES[process_name]
    score = CountingScore(dc.exact_score(process, P1))
    x0 = P1.sample(30, rng=1)
    steps = 50
    inv = invert(process, score, x0, method=BDIA(gamma=gamma), steps=steps, grid="log_snr")
    assert inv.nfe == score.calls == steps
    score.calls = 0
    back = dc.sample(process, score, inv.x, method=inv.solver, steps=steps, grid="log_snr")
    assert back.nfe == score.calls == steps - 1  # the first state is carried, not computed
    assert np.max(np.abs(back.x - x0)) < 1e-10 * np.max(np.abs(x0))
    # the noise is noise: far from the data, of the prior's scale
    assert np.max(np.abs(inv.x - x0)) > 0.5


def test_bdia_inversion_conditioning():
    """gamma = 0.5: the round trip error grows like 2^N eps (exact algebra, unstable arithmetic)."""
    x0 = P1.sample(30, rng=1)
    errors = []
    for steps in (10, 30):
        inv = invert(PROC, SCORE, x0, method=BDIA(gamma=0.5), steps=steps, grid="log_snr")
        back = dc.sample(PROC, SCORE, inv.x, method=inv.solver, steps=steps, grid="log_snr").x
        errors.append(float(np.max(np.abs(back - x0))))
    assert errors[0] < 1e-11  # 2^10 eps
    assert errors[1] > 100 * errors[0]  # 2^20 more amplification, at least 100x observed


@pytest.mark.parametrize("process_name", ["vp", "ve"])
def test_ddim_inversion_round_trip_is_first_order(process_name):
    """DDIM inversion evaluates the score at the other end of each step: round trip error O(h).

    Measured on P1 (50 points), uniform grid: VP 7.9e-2, 3.6e-2, 1.7e-2, 8.3e-3 at 100-800
    steps (slope 1.08); VE slope 1.07.  BDIA at the same steps: <= 2e-14.
    """
    process = PROCESSES[process_name]
    score = dc.exact_score(process, P1)
    x0 = P1.sample(50, rng=1)
    steps, errors = (100, 200, 400, 800), []
    for n in steps:
        inv = invert(process, score, x0, method="ddim", steps=n)
        assert inv.nfe == n
        errors.append(float(np.max(np.abs(dc.sample(process, score, inv.x, method=inv.solver, steps=n).x - x0))))
    assert abs(fit_order(steps, errors) - 1) < 0.25, errors
    inv = invert(process, score, x0, method="bdia", steps=100)
    assert np.max(np.abs(dc.sample(process, score, inv.x, method=inv.solver, steps=100).x - x0)) < 1e-10


def test_inversion_solver_checks_the_grid():
    x0 = P1.sample(5, rng=1)
    inv = invert(PROC, SCORE, x0, method="bdia", steps=10)
    with pytest.raises(ValueError, match="same grid"):
        dc.sample(PROC, SCORE, inv.x, method=inv.solver, steps=11)
    with pytest.raises(ValueError, match="gamma = 1 is DDIM"):
        invert(PROC, SCORE, x0, method=BDIA(gamma=1.0), steps=10)
    with pytest.raises(ValueError, match="'ddim' or 'bdia'"):
        invert(PROC, SCORE, x0, method="heun", steps=10)
    with pytest.raises(ValueError, match="x0 must be finite"):
        invert(PROC, SCORE, x0 * np.nan, method="ddim", steps=10)


# -- adaptive ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def p1_reference():
    x = _x(50)
    return x, reference_ode_solution(dc.ProbabilityFlowODE(PROC, SCORE), x, 1.0, T_MIN)


def test_adaptive_meets_its_tolerance_and_counts_honestly(p1_reference):
    """Error vs DOP853 below 10 rtol |x|_max (measured 2.4-9 rtol), falling with rtol; NFE = score calls.

    Measured on P1-vp (100 points) for rtol = atol = 1e-3 ... 1e-8: error 9.0e-3, 3.4e-4, 6.7e-5,
    2.4e-6, 1.8e-7, 1.7e-8; NFE 43, 97, 121, 193, 253, 355; rejected steps 2, 7, 7, 12, 12, 12.
    """
    x, ref = p1_reference
    scale = max(1.0, float(np.max(np.abs(ref))))
    errors, nfes = [], []
    for tol in (1e-3, 1e-5, 1e-7):
        score = CountingScore(SCORE)
        sol = dc.sample(PROC, score, x, method=Adaptive(rtol=tol, atol=tol), steps=1, t_min=T_MIN)
        err = float(np.max(np.abs(sol.x - ref)))
        assert err < 10 * tol * scale, (tol, err)
        assert sol.nfe == score.calls
        assert sol.nfe == 1 + 6 * (sol.accepted_steps + sol.rejected_steps)
        errors.append(err)
        nfes.append(sol.nfe)
    assert errors[0] > errors[1] > errors[2]
    assert nfes[0] < nfes[1] < nfes[2]


def test_adaptive_reports_rejected_steps_and_outputs_at_grid_times(p1_reference):
    x, _ = p1_reference
    sol = dc.sample(PROC, SCORE, x, method=Adaptive(rtol=1e-4, atol=1e-4), steps=4, save_path=True)
    assert sol.rejected_steps > 0 and sol.accepted_steps >= 4
    assert sol.path.shape == (5, *x.shape)
    ode = dc.ProbabilityFlowODE(PROC, SCORE)
    mid = reference_ode_solution(ode, x, 1.0, float(sol.ts[2]))
    assert np.max(np.abs(sol.path[2] - mid)) < 1e-3 * max(1.0, float(np.max(np.abs(mid))))
    # fixed-step solvers report their grid steps
    heun = dc.sample(PROC, SCORE, x, method="heun", steps=4)
    assert (heun.accepted_steps, heun.rejected_steps) == (4, 0)
    assert dc.sample(PROC, SCORE, x, method="adaptive", steps=2).nfe > 0


def test_adaptive_blow_up_gives_a_clear_error():
    """dx/dt = -g^2/2 s with s = 10 x^3 (plus f x) blows up in finite reverse time: say where and why."""
    score = lambda x, t: 10.0 * x**3  # noqa: E731
    x = np.full((3, 2), 2.0)
    with pytest.raises(FloatingPointError) as info:
        dc.sample(PROC, score, x, method=Adaptive(rtol=1e-6, atol=1e-6), steps=2)
    msg = str(info.value)
    assert "adaptive" in msg and "at t = " in msg and "|h|" in msg, msg
    assert "step size underflow" in msg or "not finite" in msg, msg


def test_adaptive_nan_from_the_score_is_named():
    calls = {"n": 0}

    def score(x, t):
        calls["n"] += 1
        return SCORE(x, t) * (np.nan if calls["n"] > 20 else 1.0)

    with pytest.raises(FloatingPointError, match=r"adaptive: .*(not finite|underflow).* at t = "):
        dc.sample(PROC, score, _x(), method="adaptive", steps=3)


# -- backends and bad input --------------------------------------------------------------------

BACKEND_METHODS = [
    "edm_heun",
    "hb",
    "ghvb",
    "bdia",
    "edm_stochastic",
    Adaptive(rtol=1e-5, atol=1e-5),
]


@pytest.mark.parametrize("method", BACKEND_METHODS, ids=lambda m: m if isinstance(m, str) else m.name)
def test_torch_agrees_with_numpy(method):
    """torch float64 gives NumPy's numbers (same noise from the NumPy generator), type and dtype kept."""
    torch = pytest.importorskip("torch")
    x = _x(16)
    kwargs = {"method": method, "steps": 8, "t_min": 0.01}
    ref = dc.sample(PROC, SCORE, x, rng=np.random.default_rng(5), **kwargs)
    out = dc.sample(PROC, SCORE, torch.as_tensor(x), rng=np.random.default_rng(5), **kwargs)
    assert isinstance(out.x, torch.Tensor) and out.x.dtype == torch.float64
    np.testing.assert_allclose(out.x.numpy(), ref.x, rtol=0, atol=1e-10 * np.max(np.abs(ref.x)))
    assert out.nfe == ref.nfe


def test_bdia_inversion_on_torch():
    torch = pytest.importorskip("torch")
    x0 = torch.as_tensor(P1.sample(8, rng=1))
    inv = invert(PROC, SCORE, x0, method="bdia", steps=20)
    back = dc.sample(PROC, SCORE, inv.x, method=inv.solver, steps=20)
    assert isinstance(back.x, torch.Tensor)
    assert float(torch.max(torch.abs(back.x - x0))) < 1e-10


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: EDMStochastic(churn=-1.0), r"churn must be >= 0; got -1.0"),
        (lambda: EDMStochastic(s_noise=0.0), r"s_noise must be > 0"),
        (lambda: EDMStochastic(s_tmin=2.0, s_tmax=1.0), r"s_tmax must be a number >= s_tmin"),
        (lambda: HeavyBall(beta=0.0), r"beta must lie in \(0, 1\]"),
        (lambda: GHVB(beta=1.5), r"beta must lie in \(0, 1\]"),
        (lambda: BDIA(gamma=-0.1), r"gamma must lie in \[0, 1\]"),
        (lambda: BDIA(gamma=1.2), r"gamma must lie in \[0, 1\]"),
        (lambda: Adaptive(rtol=0.0), r"rtol must be > 0; got 0.0"),
        (lambda: Adaptive(atol=-1e-6), r"atol must be > 0"),
        (lambda: Adaptive(safety=1.5), r"safety must lie in \(0, 1\)"),
        (lambda: Adaptive(min_factor=2.0), r"min_factor < 1 < max_factor"),
        (lambda: amplification_factor("ab3", 0.0), r"unknown method 'ab3'; known: .*ghvb.*hb"),
        (lambda: amplification_factor("hb", 0.0, gamma=0.1), r"hb takes parameters \('beta',\)"),
    ],
)
def test_bad_input_is_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_types_and_names():
    with pytest.raises(TypeError, match="beta must be a real number"):
        HeavyBall(beta="0.5")
    with pytest.raises(ValueError, match=r"known: .*edm_heun.*hb.*ghvb.*bdia.*adaptive"):
        dc.sample(PROC, SCORE, _x(), method="ghvb3", steps=3)
    with pytest.raises(ValueError, match="grid must decrease"):
        dc.integrate(dc.ProbabilityFlowODE(PROC, SCORE), _x(), [0.1, 0.5], EDMStochastic())


def test_solver_objects_are_registered():
    assert dc.get_solver("adaptive") == Adaptive()
    for name, cls in [("edm_heun", EDMHeun), ("edm_stochastic", EDMStochastic), ("hb", HeavyBall)]:
        assert isinstance(dc.get_solver(name), cls) and name in dc.SOLVERS
    assert "adaptive" not in dc.SOLVERS  # no order in the step count: not in the order-tested list
    assert math.isclose(float(amplification_factor("euler", -1.0)), 0.0, abs_tol=1e-15)


def test_sample_passes_solver_options_by_name():
    """sample(method="adaptive", rtol=..., atol=...) equals passing the configured object; options
    are refused with an object and named when the solver does not take them."""
    process = dc.VPSDE()  # the circle mixture: a non-trivial flow (N(0, I) data would have score -x)
    score = dc.exact_score(process, circle_mixture())
    x = process.prior_sample((5, 2), rng=0)
    by_name = dc.sample(process, score, x, method="adaptive", steps=4, rtol=1e-7, atol=1e-7)
    by_object = dc.sample(process, score, x, method=dc.Adaptive(rtol=1e-7, atol=1e-7), steps=4)
    np.testing.assert_array_equal(by_name.x, by_object.x)
    assert by_name.nfe == by_object.nfe
    loose = dc.sample(process, score, x, method="adaptive", steps=4, rtol=1e-3, atol=1e-3)
    assert loose.nfe < by_name.nfe  # the options reached the solver
    with pytest.raises(TypeError, match="apply to a method name"):
        dc.sample(process, score, x, method=dc.Adaptive(), steps=4, rtol=1e-6)
    with pytest.raises(TypeError, match=r"bad options \['rtol'\] for method 'heun'"):
        dc.sample(process, score, x, method="heun", steps=4, rtol=1e-6)
