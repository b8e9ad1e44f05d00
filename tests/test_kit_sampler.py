"""check_sampler catches the bugs people write, and passes the samplers they write correctly.

The samplers below are written the way a user writes them: a loop over ``ts`` with the schedule
``alpha``, ``sigma`` of the VP SDE, the model called as ``score(x, t)``.  Each planted bug is a
one-line change of a correct one, and each must be caught with a message that names its symptom.
The issue measured why the measured order alone is not enough: a model evaluated at the next grid
time keeps order ~1 and a dropped last step order ~1, so the evaluation times and the endpoint
probe are what catch them (asserted below too).
"""

from __future__ import annotations

import itertools
import re
import time

import numpy as np
import pytest
import torch

import diffcore as dc
from diffcore.testing import (
    Problem,
    check_sampler,
    propagate_gaussian_law,
    sampler_from_solver,
    solver_from_step,
)

P = dc.VPSDE()


def _pairs(ts):
    return itertools.pairwise(ts)


def _ddim_step(score, x, t0, t1, t_model=None):
    eps = -P.sigma(t0 if t_model is None else t_model) * score(x, t0 if t_model is None else t_model)
    x0 = (x - P.sigma(t0) * eps) / P.alpha(t0)
    return P.alpha(t1) * x0 + P.sigma(t1) * eps


def _b(score, y, t):
    """The probability-flow velocity f x - g^2/2 score."""
    return P.drift_coef(t) * y - 0.5 * P.diffusion_squared(t) * score(y, t)


# -- correct user samplers ----------------------------------------------------------------------
def ddim(score, x, ts, rng=None):
    for t0, t1 in _pairs(ts):
        x = _ddim_step(score, x, t0, t1)
    return x


def euler(score, x, ts, rng=None):
    for t0, t1 in _pairs(ts):
        x = x + (t1 - t0) * _b(score, x, t0)
    return x


def heun(score, x, ts, rng=None):
    for t0, t1 in _pairs(ts):
        k1 = _b(score, x, t0)
        k2 = _b(score, x + (t1 - t0) * k1, t1)
        x = x + 0.5 * (t1 - t0) * (k1 + k2)
    return x


def dpmpp_2m(score, x, ts, rng=None):
    """DPM-Solver++(2M) (Lu et al. 2022b, alg. 2) in lambda = log(alpha / sigma): a two-step multistep method."""
    prev = None
    for t0, t1 in _pairs(ts):
        a0, s0, a1, s1 = P.alpha(t0), P.sigma(t0), P.alpha(t1), P.sigma(t1)
        x0 = (x + s0**2 * score(x, t0)) / a0
        h = np.log(a1 / s1) - np.log(a0 / s0)
        d = x0 if prev is None else (1 + h / (2 * prev[1])) * x0 - h / (2 * prev[1]) * prev[0]
        x = (s1 / s0) * x - a1 * np.expm1(-h) * d
        prev = (x0, h)
    return x


def euler_maruyama(score, x, ts, rng=None):
    gen = np.random.default_rng(rng)
    for t0, t1 in _pairs(ts):
        h = t0 - t1
        drift = P.drift_coef(t0) * x - P.diffusion_squared(t0) * score(x, t0)
        x = x - h * drift + np.sqrt(P.diffusion_squared(t0) * h) * gen.standard_normal(x.shape)
    return x


# -- planted bugs: one line off a correct sampler ---------------------------------------------------
def ddim_time_off_by_one(score, x, ts, rng=None):
    for t0, t1 in _pairs(ts):
        x = _ddim_step(score, x, t0, t1, t_model=t1)  # the model called at ts[i + 1]
    return x


def ddim_dropped_last_step(score, x, ts, rng=None):
    for t0, t1 in list(_pairs(ts))[:-1]:  # for i in range(len(ts) - 2)
        x = _ddim_step(score, x, t0, t1)
    return x


def heun_dropped_last_step(score, x, ts, rng=None):
    return heun(score, x, ts[:-1])


def euler_wrong_sign(score, x, ts, rng=None):
    for t0, t1 in _pairs(ts):
        x = x + (t1 - t0) * (P.drift_coef(t0) * x + 0.5 * P.diffusion_squared(t0) * score(x, t0))
    return x


def ddim_eps_x0_swapped(score, x, ts, rng=None):
    for t0, t1 in _pairs(ts):
        eps = -P.sigma(t0) * score(x, t0)
        x0 = (x - P.sigma(t0) * eps) / P.alpha(t0)
        x = P.alpha(t1) * eps + P.sigma(t1) * x0
    return x


def ddim_sigma_not_squared(score, x, ts, rng=None):
    for t0, t1 in _pairs(ts):
        x0 = (x + P.sigma(t0) * score(x, t0)) / P.alpha(t0)  # Tweedie with sigma, not sigma^2
        eps = (x - P.alpha(t0) * x0) / P.sigma(t0)
        x = P.alpha(t1) * x0 + P.sigma(t1) * eps
    return x


def euler_sde_drift(score, x, ts, rng=None):
    for t0, t1 in _pairs(ts):
        x = x + (t1 - t0) * (P.drift_coef(t0) * x - P.diffusion_squared(t0) * score(x, t0))  # g^2 s, not g^2/2 s
    return x


def ddim_final_denoise(score, x, ts, rng=None):
    x = ddim(score, x, ts)
    return (x + P.sigma(ts[-1]) ** 2 * score(x, ts[-1])) / P.alpha(ts[-1])  # returns E[x_0 | x], not x


def heun_stale_second_stage(score, x, ts, rng=None):
    for t0, t1 in _pairs(ts):
        k1 = _b(score, x, t0)
        k2 = _b(score, x + (t1 - t0) * k1, t0)  # the second stage at the start time
        x = x + 0.5 * (t1 - t0) * (k1 + k2)
    return x


def em_noise_without_sqrt_h(score, x, ts, rng=None):
    gen = np.random.default_rng(rng)
    for t0, t1 in _pairs(ts):
        h = t0 - t1
        drift = P.drift_coef(t0) * x - P.diffusion_squared(t0) * score(x, t0)
        x = x - h * drift + np.sqrt(P.diffusion_squared(t0)) * h * gen.standard_normal(x.shape)  # h, not sqrt(h)
    return x


def em_ode_drift(score, x, ts, rng=None):
    gen = np.random.default_rng(rng)
    for t0, t1 in _pairs(ts):
        h = t0 - t1
        drift = P.drift_coef(t0) * x - 0.5 * P.diffusion_squared(t0) * score(x, t0)  # the ODE's drift plus noise
        x = x - h * drift + np.sqrt(P.diffusion_squared(t0) * h) * gen.standard_normal(x.shape)
    return x


CORRECT = [(ddim, 1), (euler, 1), (heun, 2), (dpmpp_2m, 2)]

#: (sampler, declared order, a pattern its report must contain): the symptom in words
PLANTED = [
    (ddim_time_off_by_one, 1, r"first model evaluation is at ts\[1\].*off by one"),
    (ddim_dropped_last_step, 1, r"never evaluated at ts\[-2\].*last step is dropped"),
    (heun_dropped_last_step, 2, r"solution at ts\[-2\].*last step is dropped"),
    (euler_wrong_sign, 1, r"measured order -?\d.*does not decrease"),
    (ddim_eps_x0_swapped, 1, r"does not decrease as the grid is refined"),
    (ddim_sigma_not_squared, 1, r"does not decrease as the grid is refined"),
    (euler_sde_drift, 1, r"does not decrease as the grid is refined"),
    (ddim_final_denoise, 1, r"denoised E\[x_0 \| x_ts\[-1\]\].*denoising step"),
    (heun_stale_second_stage, 2, r"measured order 1\.\d+ .* below the declared order 2"),
]


@pytest.mark.parametrize(("sampler", "order"), CORRECT, ids=[f.__name__ for f, _ in CORRECT])
def test_correct_user_samplers_pass(sampler, order):
    start = time.perf_counter()
    report = check_sampler(sampler, "P1", declared_order=order)
    elapsed = time.perf_counter() - start
    assert report.passed, report
    assert report.measured_order > order - 0.5, report
    assert [row[0] for row in report.table] == [16, 32, 64, 128]
    # the default check is cheap enough to run in a user's test-suite (measured ~0.6-1.3 s on one core)
    assert elapsed < 10, elapsed


@pytest.mark.parametrize(("sampler", "order", "symptom"), PLANTED, ids=[f.__name__ for f, _, _ in PLANTED])
def test_planted_bugs_are_caught_with_their_symptom(sampler, order, symptom):
    report = check_sampler(sampler, "P1", declared_order=order)
    assert not report.passed, report
    assert any(re.search(symptom, m) for m in report.messages), report
    assert "FAILED" in str(report)


@pytest.mark.parametrize("sampler", [ddim_time_off_by_one, ddim_dropped_last_step])
def test_the_order_alone_misses_the_time_bugs(sampler):
    """What the issue measured: these two keep a first-order slope, so only the times and the probe see them."""
    report = check_sampler(sampler, "P1", declared_order=1)
    assert report.measured_order > 0.9, report
    assert not any("measured order" in m for m in report.messages), report


def test_the_correct_sampler_is_recognised_as_diffcores():
    report = check_sampler(ddim, "P1", declared_order=1)
    assert any("equals diffcore's ddim" in note for note in report.notes), report
    assert report.details["ratio_to_diffcore"]["ddim"] == pytest.approx(1.0, rel=1e-9)


def test_euler_maruyama_passes_the_sde_check_and_a_noise_bug_fails_it():
    ok = check_sampler(euler_maruyama, "P2", declared_order=1, kind="sde")
    assert ok.passed, ok
    # the weak error along the worst eigendirection shrinks with the grid (Monte Carlo se ~0.02 at n = 4000)
    assert ok.table[-1][2] < ok.table[0][2], ok
    bad = check_sampler(em_noise_without_sqrt_h, "P2", declared_order=1, kind="sde", n=1000)
    assert not bad.passed
    assert any("does not shrink" in m for m in bad.messages), bad


def em_dropped_last_step(score, x, ts, rng=None):
    return euler_maruyama(score, x, ts[:-1], rng)


def em_time_off_by_one(score, x, ts, rng=None):
    return euler_maruyama(lambda y, t: score(y, ts[min(list(ts).index(t) + 1, len(ts) - 1)]), x, ts, rng)


@pytest.mark.parametrize(
    ("sampler", "symptom"),
    [(em_dropped_last_step, r"never evaluated at ts\[-2\]"), (em_time_off_by_one, r"ts\[1\].*off by one")],
    ids=["dropped-last-step", "time-off-by-one"],
)
def test_stochastic_samplers_are_checked_through_their_evaluation_times(sampler, symptom):
    """No pathwise reference for an SDE sampler: the recorded times see these bugs at any n."""
    report = check_sampler(sampler, "P2", declared_order=1, kind="sde", n=200, steps=(16, 32))
    assert not report.passed
    assert any(re.search(symptom, m) for m in report.messages), report


def test_the_sde_check_compares_with_diffcores_exact_laws():
    report = check_sampler(em_ode_drift, "P2", declared_order=1, kind="sde", n=1000, steps=(16, 32))
    assert not report.passed
    assert any(
        re.search(r"off the exact marginal .* more than 10x .*euler_maruyama, ancestral", m) for m in report.messages
    )
    assert set(report.comparison) == {"euler_maruyama", "ancestral"}


# -- the protocol: per-step functions, diffcore solvers, torch, samplers with their own grid ----------
def _user_em_step(drift, x, t0, t1, *, noise, diffusion):
    return x + (t1 - t0) * drift(x, t0) + diffusion(t0) * np.sqrt(abs(t1 - t0)) * noise


def test_solver_from_step_gives_exact_gaussian_laws_of_a_users_step():
    """The path the issue found closed: a user's step through propagate_gaussian_law, no hidden attributes."""
    mine = solver_from_step(_user_em_step, order=1, uses="drift", stochastic=True, name="my_em")
    problem = Problem("P2")
    start = problem.marginal(1.0)
    dyn = dc.ReverseSDE(P, problem.score)
    ts = dc.time_grid(P, 8)
    m1, c1 = propagate_gaussian_law(dyn, mine, start.mean, start.cov, ts)
    m2, c2 = propagate_gaussian_law(dyn, "euler_maruyama", start.mean, start.cov, ts)
    np.testing.assert_allclose(m1, m2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c1, c2, rtol=0, atol=1e-10)
    assert mine.stochastic and mine.order == 1 and mine.name == "my_em" and mine.affine_step


def test_solver_from_step_runs_through_the_driver_with_state():
    def ab2(drift, x, t0, t1, *, state):  # Adams-Bashforth 2 with an Euler start: a multistep method
        k = drift(x, t0)
        h = t1 - t0
        x1 = x + h * k if state is None else x + h * (1.5 * k - 0.5 * state)
        return x1, k

    solver = solver_from_step(ab2, order=2, uses="drift", multistep=True, name="ab2")
    report = check_sampler(sampler_from_solver(solver, P), "skewed", declared_order=2, grid="uniform")
    assert report.passed, report
    x = Problem("skewed").sample_marginal(5, 1.0, rng=0)
    sol = dc.sample(P, Problem("skewed").score, x, method=solver, steps=10)
    assert sol.nfe == 10


def test_solver_from_step_with_the_score_matches_diffcore_ddim():
    solver = solver_from_step(lambda score, x, t0, t1: _ddim_step(score, x, t0, t1), order=1, name="my_ddim")
    problem = Problem("P1")
    x = problem.sample_marginal(16, 1.0, rng=1)
    mine = dc.sample(P, problem.score, x, method=solver, steps=12, grid="log_snr").x
    ref = dc.sample(P, problem.score, x, method="ddim", steps=12, grid="log_snr").x
    np.testing.assert_allclose(mine, ref, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="ODEs"):  # a score step declared deterministic refuses the reverse SDE
        dc.integrate(dc.ReverseSDE(P, problem.score), x, [1.0, 0.5], solver)


def test_sampler_from_solver_is_diffcores_sample():
    problem = Problem("P1")
    x = problem.sample_marginal(8, 1.0, rng=2)
    ts = dc.time_grid(P, 10)
    out = sampler_from_solver("heun", P)(problem.score, x, ts)
    np.testing.assert_array_equal(out, dc.sample(P, problem.score, x, method="heun", steps=10).x)
    assert sampler_from_solver("heun", P).name == "heun"


def test_a_torch_sampler_is_checked_on_torch_arrays():
    like = torch.zeros((), dtype=torch.float64)
    assert check_sampler(ddim, "P1", declared_order=1, like=like, steps=(16, 32, 64)).passed
    with pytest.raises(TypeError, match=r"sampler must return an array of x_init's type \(torch.Tensor"):
        check_sampler(lambda s, x, ts, rng=None: ddim(s, x, ts).numpy(), "P1", declared_order=1, like=like)


def test_a_sampler_with_its_own_grid_is_run_on_it():
    class Scheduled:
        """A sampler that chooses its times (like a diffusers scheduler): 'trailing' uniform steps."""

        def time_grid(self, steps):
            return np.linspace(0.999, 0.002, steps + 1)

        def __call__(self, score, x, ts, rng=None):
            return ddim(score, x, ts)

    report = check_sampler(Scheduled(), "P1", declared_order=1, grid="uniform")
    assert report.passed, report
    assert report.details["grids"][0][0] == 0.999 and report.details["grids"][0][-1] == 0.002
    assert any("chooses its own times" in note for note in report.notes)


# -- bad input: clear errors ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sampler", "error", "pattern"),
    [
        (
            lambda s, x, ts, rng=None: x[:, :1],
            ValueError,
            r"sampler must return x_init's shape \(64, 2\); got \(64, 1\)",
        ),
        (lambda s, x, ts, rng=None: x * np.nan, ValueError, r"NaN or infinity in 64 of 64 rows"),
        (lambda s, x, ts, rng=None: x.tolist(), TypeError, r"sampler must return an array of x_init's type"),
        (lambda s, x, ts, rng=None: torch.as_tensor(x), TypeError, r"numpy.ndarray float64 .*got torch.Tensor"),
    ],
    ids=["wrong-shape", "nan", "list", "torch-for-numpy"],
)
def test_a_sampler_returning_the_wrong_thing_is_an_error(sampler, error, pattern):
    with pytest.raises(error, match=pattern):
        check_sampler(sampler, "P1", declared_order=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"problem": "P9"}, ValueError, r"unknown problem 'P9'; known: P1, P2, graphs, mixture16, skewed"),
        ({"problem": 3}, TypeError, r"problem must be a Problem or a problem name"),
        ({"declared_order": 0}, ValueError, r"declared_order must be >= 1"),
        ({"declared_order": 1.5}, TypeError, r"declared_order must be an int"),
        ({"declared_order": True}, TypeError, r"declared_order must be an int"),
        ({"kind": "pde"}, ValueError, r"unknown kind 'pde'; known: ode, sde"),
        ({"kind": "sde"}, ValueError, r"kind='sde' needs a Gaussian problem.*'P1' is a GaussianMixture"),
        ({"steps": (32, 16)}, ValueError, r"steps must hold at least two strictly increasing"),
        ({"steps": 16}, TypeError, r"steps must be a sequence"),
        ({"t_min": 1.5}, ValueError, r"t_min must lie in \[0, 1\]"),
        ({"grid": "cosine"}, ValueError, r"unknown grid 'cosine'"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, error, pattern):
    args = {"problem": "P1", "declared_order": 1, **kwargs}
    with pytest.raises(error, match=pattern):
        check_sampler(ddim, args.pop("problem"), **args)


def test_not_a_sampler_and_bad_steps_are_refused():
    with pytest.raises(TypeError, match="sampler must be callable"):
        check_sampler("ddim", "P1", declared_order=1)
    with pytest.raises(TypeError, match="step must be callable"):
        solver_from_step(None, order=1)
    with pytest.raises(TypeError, match=r"got the function '_user_em_step': wrap .* with .*solver_from_step"):
        propagate_gaussian_law(dc.ReverseSDE(P, Problem("P2").score), _user_em_step, np.zeros(64), np.eye(64), [1, 0.5])
    with pytest.raises(ValueError, match="unknown uses 'velocity'"):
        solver_from_step(euler, order=1, uses="velocity")
    with pytest.raises(TypeError, match="multistep=True, so it must return"):
        dc.integrate(
            dc.ProbabilityFlowODE(P, Problem("P1").score),
            np.ones((2, 2)),
            [1.0, 0.5],
            solver_from_step(lambda d, x, t0, t1, *, state: x, order=1, uses="drift", multistep=True),
        )


# -- no false alarms: every diffcore method passes at its declared order (the kit's calibration) ---------
ODE_METHODS = [n for n, c in dc.SOLVERS.items() if not c.stochastic and c.requires.shift != "required"]


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["P1", "P2", "mixture16"])
@pytest.mark.parametrize("method", ODE_METHODS)
def test_every_diffcore_ode_method_passes_at_its_declared_order(method, problem):
    report = check_sampler(sampler_from_solver(method, P), problem, declared_order=dc.SOLVERS[method].order)
    assert report.passed, report


@pytest.mark.slow
@pytest.mark.parametrize("method", ["euler_maruyama", "ancestral"])
def test_diffcore_sde_methods_pass_the_weak_check(method):
    report = check_sampler(sampler_from_solver(method, P), "P2", declared_order=1, kind="sde")
    assert report.passed, report
