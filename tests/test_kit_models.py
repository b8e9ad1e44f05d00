"""The kit's checks of models and schedules: each passes the exact object and catches a planted defect."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from conftest import PROCESSES
from hypothesis import given, settings
from strategies import processes

import diffcore as dc
from diffcore.testing import (
    CheckReport,
    Problem,
    check_graph_score,
    check_likelihood,
    check_schedule,
    check_score_model,
)

P1 = Problem("P1")


# -- score models -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["P1", "P2", "skewed", "mixture16", "graphs"])
def test_the_exact_score_passes_on_every_problem(name):
    problem = Problem(name)
    report = check_score_model(problem.score, problem)
    assert report.passed, report
    assert isinstance(report, CheckReport)
    assert max(report.details["errors"].values()) < 1e-12  # the same closed form: rounding only


def test_a_torch_float32_score_is_checked_in_float32():
    net_like = torch.zeros((), dtype=torch.float32)
    report = check_score_model(P1.score, P1, like=net_like)
    assert report.passed, report  # float32 rounding (~1e-7) is far below the 5 % tolerance and sqrt(eps) = 3.5e-4


def _off_at_small_t(x, t):
    """10 % too long below t = 0.05, exact above: the defect a learned score typically has."""
    factor = np.where(np.asarray(t) < 0.05, 1.1, 1.0)
    return P1.score(x, t) * (factor[:, None] if factor.ndim else factor)


@pytest.mark.parametrize(
    ("score", "pattern"),
    [
        (_off_at_small_t, r"relative L2 error 0.1 at t = 0.01 exceeds the tolerance 0.05"),
        (lambda x, t: P1.score(x, t) + 0.01 * (x.mean(axis=0) - x), r"rows interact"),
        (lambda x, t: P1.score(x, float(np.asarray(t).reshape(-1)[0])), r"per-row times are not applied"),
        (lambda x, t: P1.score(x, t).astype(np.float32), r"returned dtype float32 for input dtype float64"),
        (lambda x, t: P1.score(x, t)[:, :1], r"score must return an array shaped like its input x \(512, 2\)"),
        (lambda x, t: torch.as_tensor(P1.score(x, t)), r"of x's array type"),
        (lambda x, t: P1.score(x, t) if np.ndim(t) == 0 else t.sum(), r"score with \(n,\) times must return"),
    ],
    ids=["10%-off-at-small-t", "rows-interact", "first-time-only", "float32", "wrong-shape", "torch", "no-vector-t"],
)
def test_score_model_defects_are_caught(score, pattern):
    report = check_score_model(score, P1)
    assert not report.passed
    assert any(pytest.importorskip("re").search(pattern, m) for m in report.messages), report


def test_a_raising_score_is_a_symptom_not_a_crash():
    def broken(x, t):
        raise RuntimeError("CUDA out of memory")

    report = check_score_model(broken, P1)
    assert report.messages == ("score(x, t=0.01) raised RuntimeError: CUDA out of memory",)


# -- likelihoods --------------------------------------------------------------------------------------
def test_diffcores_ode_likelihood_passes_and_a_missing_constant_fails():
    exact = check_likelihood(lambda x: dc.log_likelihood(P1.process, P1.score, x), P1)
    assert exact.passed, exact
    # rk4 with 100 steps against the closed form: ~1e-3 nats, well inside the 0.01 tolerance
    assert exact.details["max_error"] < 5e-3
    missing = check_likelihood(lambda x: dc.log_likelihood(P1.process, P1.score, x).value + np.log(2 * np.pi), P1)
    assert not missing.passed
    assert "error 1.84 nats" in missing.messages[0], missing


def test_a_stochastic_estimator_is_judged_with_its_standard_error():
    """Hutchinson with 32 Gaussian probes: the per-point error is within 5 of its own standard errors."""
    report = check_likelihood(
        lambda x: dc.log_likelihood(
            P1.process, P1.score, x, divergence="hutchinson", probes=32, noise="gaussian", rng=1
        ),
        P1,
    )
    assert report.passed, report
    assert np.all(report.details["stderr"] > 0)
    assert report.details["max_error"] > 0.01  # it needed the standard errors: the tolerance alone would fail


def test_likelihood_output_defects():
    assert "of shape (64,)" in check_likelihood(lambda x: P1.log_prob(x, 1e-3)[:3], P1).messages[0]
    assert "NaN or infinity" in check_likelihood(lambda x: P1.log_prob(x, 1e-3) * np.nan, P1).messages[0]


# -- schedules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PROCESSES))
def test_every_process_is_consistent(name):
    report = check_schedule(PROCESSES[name], data_at_zero=name != "ve-song2021")
    assert report.passed, report
    assert max(report.details["fp_residual"].values()) < 1e-7  # measured <= 3e-9: rounding of the differences


@settings(max_examples=15)
@given(processes())
def test_every_valid_schedule_is_consistent(process):
    report = check_schedule(process, data_at_zero=getattr(process, "variant", "exact") == "exact")
    assert report.passed, report


@dataclass(frozen=True)
class DriftOffAlpha(dc.VPSDE):
    """The drift of a VP SDE 1 % stronger than its alpha: f != d log alpha / dt."""

    def _f(self, t, xp):
        return -0.505 * self._beta(t, xp)


def test_a_drift_that_does_not_match_alpha_is_caught():
    report = check_schedule(DriftOffAlpha())
    assert not report.passed
    assert "drift_coef and diffusion_squared do not match alpha and sigma" in report.messages[0], report


def test_schedule_defects():
    grows = dc.AffineProcess(lambda t: 1.0 + 0 * t, lambda t: 0.5 + 0 * t - 0.4 * t)  # sigma decreases: g^2 < 0
    report = check_schedule(grows, data_at_zero=False)
    assert any("g(t)^2" in m for m in report.messages), report
    assert any("log-SNR is not strictly decreasing" in m for m in report.messages), report
    song = check_schedule(dc.VESDE(variant="song2021"))
    assert any("sigma(0) = 0.01" in m for m in song.messages), song
    shifted = check_schedule(dc.MeanRevertingSDE(mu=np.array([0.5, -0.5])))
    assert shifted.passed and "mean shift" in shifted.notes[0]
    with pytest.raises(TypeError, match="process must be an AbstractProcess"):
        check_schedule("vp")


# -- graph scores ----------------------------------------------------------------------------------------
GRAPHS = Problem("graphs")


def test_the_laboratory_score_is_equivariant():
    report = check_graph_score(GRAPHS.graph_score, GRAPHS)
    assert report.passed, report
    assert max(report.details.values()) < 1e-12


def test_the_graph_problem_is_the_laboratory_on_packed_coordinates():
    x = GRAPHS.sample_marginal(6, 0.3, rng=0)
    X, A, mask = GRAPHS.to_graphs(x)
    s_x, s_a = GRAPHS.graph_score(X, A, 0.3, mask)
    packed = dc.graphs.pack(s_x, s_a)[:, dc.graphs.packed_mask(mask, 1)[0] == 1]
    np.testing.assert_allclose(GRAPHS.score(x, 0.3), packed, rtol=1e-10, atol=1e-12)


def test_a_positional_graph_score_is_caught():
    def positional(X, A, t, mask):
        s_x, s_a = GRAPHS.graph_score(X, A, t, mask)
        return s_x + 0.1 * np.arange(X.shape[1])[None, :, None] * mask[:, :, None], s_a

    report = check_graph_score(positional, GRAPHS)
    assert not report.passed
    assert report.messages[0].startswith("s_X(P X, P A P^T) vs P s_X: relative error"), report
    assert "not permutation equivariant" in report.messages[0]


def test_graph_score_output_defects():
    asym = check_graph_score(lambda X, A, t, m: (GRAPHS.graph_score(X, A, t, m)[0], A * np.triu(np.ones(5))), GRAPHS)
    assert any(m.startswith("s_A - s_A^T") for m in asym.messages), asym
    single = check_graph_score(lambda X, A, t, m: X, GRAPHS)
    assert "must return a pair (s_X, s_A)" in single.messages[0]
    with pytest.raises(ValueError, match="needs a graph problem"):
        check_graph_score(GRAPHS.graph_score, "P1")


@pytest.mark.parametrize("T", [1000, 1024])
def test_a_diffusers_table_is_a_consistent_schedule(T):
    """process_from_diffusers interpolates log alphas_cumprod by a monotone cubic (C^1 in t): the kit's
    Fokker-Planck step must not mistake the jumps of its second derivative at the levels for an
    inconsistent drift (with fourth-order differences of step eps^(1/5) min(t, 0.1) it did: 2e-5)."""
    diffusers = pytest.importorskip("diffusers")
    import diffcore.interop as di

    for scheduler in (
        diffusers.DDIMScheduler(num_train_timesteps=T),
        diffusers.DDIMScheduler(num_train_timesteps=T, trained_betas=di.diffusers_betas(dc.VPSDE(), T).tolist()),
    ):
        report = check_schedule(di.process_from_diffusers(scheduler))
        assert report.passed, report
        assert max(report.details["fp_residual"].values()) < 1e-6 / 4  # measured <= 1.5e-7
