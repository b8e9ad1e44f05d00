"""The kit's problems, its strategies and its pytest plugin."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import time_grids

import diffcore as dc
import diffcore.testing as dt
from diffcore.testing import PROBLEMS, Problem

pytest_plugins = ["pytester"]


@pytest.mark.parametrize("name", PROBLEMS)
def test_every_problem_has_its_exact_fields(name):
    """eps, x0, v and the velocity are the score's converters: the identities of the parametrisations hold."""
    p = Problem(name)
    t = 0.4
    x = p.sample_marginal(32, t, rng=0)
    a, s = p.process.alpha(t), p.process.sigma(t)
    score, eps, x0, v = p.score(x, t), p.eps(x, t), p.x0(x, t), p.v(x, t)
    np.testing.assert_allclose(eps, -s * score, rtol=1e-12)
    np.testing.assert_allclose(
        x, a * x0 + s * eps, rtol=1e-10, atol=1e-12
    )  # Tweedie: x = alpha E[x0|x] + sigma E[eps|x]
    np.testing.assert_allclose(v, a * eps - s * x0, rtol=1e-10, atol=1e-12)
    f, g2 = p.process.drift_coef(t), p.process.diffusion_squared(t)
    np.testing.assert_allclose(p.velocity(x, t), f * x - 0.5 * g2 * score, rtol=1e-12)
    assert p.log_prob(x, t).shape == (32,)
    np.testing.assert_allclose(p.log_prob(x, t), p.marginal(t).log_prob(x), rtol=1e-12)
    assert p.sample_prior(5, rng=0).shape == (5, p.dim)
    assert p.description and p.name == name and name in repr(p)


def test_the_reference_is_the_flow_of_the_probability_flow_ode():
    """For a Gaussian the flow map is linear and known: x_t = m_t + C_t^{1/2} C_s^{-1/2} (x_s - m_s) for commuting C."""
    p = Problem("mine", data=dc.Gaussian(np.array([1.0, -1.0]), np.diag([0.5, 2.0])))
    x = p.sample_marginal(4, 1.0, rng=0)
    start, end = p.marginal(1.0), p.marginal(0.1)
    exact = end.mean + (x - start.mean) * np.sqrt(np.diag(end.cov) / np.diag(start.cov))
    np.testing.assert_allclose(p.reference(x, 1.0, 0.1), exact, rtol=1e-9, atol=1e-10)


def test_problems_are_the_benchmark_definitions():
    assert Problem("P1").dim == 2 and Problem("P1").data.n_components == 8
    p2 = Problem("P2")
    lam = np.linalg.eigvalsh(np.asarray(p2.data.cov))
    assert p2.dim == 64 and p2.is_gaussian and lam.min() >= 0.01 - 1e-12 and lam.max() <= 4 + 1e-12
    assert Problem("mixture16").dim == 16 and Problem("graphs").dim == 10
    assert Problem("graphs").data.n_components == 12 + 3 + 4 + 12  # P4, C4, star, paw labellings
    ve = Problem("P1", process=dc.VESDE())
    assert ve.process == dc.VESDE() and ve.marginal(1.0).covs[0][0, 0] > 100


def test_problem_errors():
    with pytest.raises(ValueError, match="unknown problem 'P3'; known: P1, P2, graphs, mixture16, skewed"):
        Problem("P3")
    with pytest.raises(TypeError, match="process must be an AbstractProcess"):
        Problem("P1", process="vp")
    with pytest.raises(TypeError, match="data must be a Gaussian or a GaussianMixture"):
        Problem("mine", data=np.zeros(2))
    with pytest.raises(ValueError, match="to_graphs needs the 'graphs' problem"):
        Problem("P1").to_graphs(np.zeros((1, 2)))


@settings(max_examples=30)
@given(time_grids())
def test_time_grids_are_valid_sampler_grids(ts):
    assert ts[0] == 1.0 and ts[-1] == 1e-3 and np.all(np.diff(ts) < 0)
    x = dc.sample(dc.VPSDE(), Problem("P1").score, np.zeros((1, 2)), method="euler", steps=1).x  # noqa: F841
    dc.integrate(dc.ProbabilityFlowODE(dc.VPSDE(), Problem("P1").score), np.ones((2, 2)), ts, "heun")


def test_strategies_are_public_and_hypothesis_stays_out_of_the_kit():
    code = (
        "import sys, diffcore.testing; assert 'hypothesis' not in sys.modules, 'diffcore.testing imported hypothesis'; "
        "import diffcore.testing.strategies as s; assert 'hypothesis' in sys.modules; print(len(s.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 20
    assert all(
        callable(getattr(dt.strategies, name)) or name in ("finite", "times", "INTERPOLANT_KINDS")
        for name in dt.strategies.__all__
    )


# -- the pytest plugin ----------------------------------------------------------------------------------
USER_TESTS = textwrap.dedent(
    """
    import pytest
    from diffcore.testing import Problem, check_score_model

    def test_problem(diffcore_problem):
        assert isinstance(diffcore_problem, Problem)
        assert check_score_model(diffcore_problem.score, diffcore_problem, times=(0.5,), n=16).passed

    @pytest.mark.diffcore_problems("P1", "graphs")
    def test_marked(diffcore_problem):
        assert diffcore_problem.name in ("P1", "graphs")

    def test_gaussian(diffcore_gaussian_problem):
        assert diffcore_gaussian_problem.is_gaussian
    """
)


def test_the_plugin_gives_problem_fixtures(pytester):
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-o", "addopts=")
    result.assert_outcomes(passed=4 + 2 + 1)
    result = pytester.runpytest_inprocess("-v", "-p", "no:cacheprovider", "-o", "addopts=", "--diffcore-problems=P2")
    result.assert_outcomes(passed=1 + 2 + 1)
    result.stdout.fnmatch_lines(["*test_problem?P2? PASSED*"])


def test_the_plugin_refuses_unknown_problem_names(pytester):
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-o", "addopts=", "--diffcore-problems=P7")
    result.stderr.fnmatch_lines(["*--diffcore-problems: unknown diffcore problem(s) [[]'P7'[]]*"])
    assert result.ret != 0



RF = dc.process_from_interpolant(dc.OneSidedInterpolant("linear"))  # alpha = 1 - t, sigma = t: alpha(1) = 0
STANDARD = dc.Gaussian(np.zeros(2), np.eye(2))


def test_the_exact_velocity_is_finite_where_the_schedule_reaches_pure_noise():
    """Rectified flow has alpha(1) = 0, where f = alpha'/alpha is infinite: the exact velocity there comes from
    the denoiser, alpha' E[x0|x] - sigma sigma' score, and equals the interpolant's closed-form velocity
    (b_s = -u_{1-s}); inside (0, 1) it is the score route f x - g^2/2 score, to rounding."""
    problem = Problem("P1", process=RF)
    fields = dc.interpolant_fields(dc.OneSidedInterpolant("linear"), STANDARD, problem.data)
    x = problem.sample_marginal(50, 0.9, rng=0)
    assert problem.reaches_pure_noise and not Problem("P1").reaches_pure_noise
    for t in (1.0, 0.5, 1e-3):
        np.testing.assert_allclose(problem.velocity(x, t), -fields.velocity(x, 1.0 - t), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"infinite at t = 1\.0"):  # what the score route says at t = 1
        dc.reparametrize(problem.score, RF, source="score", target="velocity")(x, 1.0)


def test_the_reference_and_check_sampler_run_to_pure_noise():
    """On rectified flow from t = 1 (alpha = 0): the DOP853 reference runs on the exact velocity, and
    flow_matching's samplers are checked there (they get the velocity through Problem.flow_model)."""
    problem = Problem("P1", process=RF)
    fields = dc.interpolant_fields(dc.OneSidedInterpolant("linear"), STANDARD, problem.data)
    x1 = problem.sample_marginal(20, 1.0, rng=1)
    velocity = dc.reparametrize(dc.reverse_time(fields.velocity, "velocity"), RF, source="velocity")
    other = dt.reference_ode_solution(dc.ProbabilityFlowODE(RF, velocity), x1, 1.0, 1e-3)
    assert np.max(np.abs(problem.reference(x1, 1.0, 1e-3) - other)) < 1e-9  # two DOP853 runs at 1e-12
    di = pytest.importorskip("diffcore.interop")
    pytest.importorskip("flow_matching")
    heun = dt.check_sampler(
        di.sampler_from_flow_matching(RF, method="heun2"), problem, declared_order=2, grid="uniform"
    )
    assert heun.passed and heun.measured_order > 1.7, heun
    euler = dt.check_sampler(
        di.sampler_from_flow_matching(RF, method="euler"), problem, declared_order=2, grid="uniform"
    )
    assert not euler.passed and "below the declared order 2" in euler.messages[0], euler
