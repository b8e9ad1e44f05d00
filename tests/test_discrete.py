"""The discrete laboratory against exact answers: transitions, marginals, posteriors, reverse rates.

Every oracle here is independent of the code it checks: closed forms against ``scipy.linalg.expm``,
per-token formulas against the whole-sequence generator (a Kronecker sum over all ``S^L`` states),
Bayes by enumeration, and the reverse-time Kolmogorov equation integrated with ``solve_ivp``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.stats

import diffcore.discrete as dd

V, L = 3, 3


def _law(seed: int = 0, V: int = V, L: int = L) -> dd.TableLaw:
    """A fixed law of full support over V^L sequences (a Dirichlet draw, used only as a test law)."""
    p = np.random.default_rng(seed).dirichlet(np.ones(V**L))
    return dd.TableLaw(p, V, L)


def _generator(S: int = 4, seed: int = 1) -> np.ndarray:
    Q = np.random.default_rng(seed).uniform(0.2, 1.5, (S, S))
    np.fill_diagonal(Q, 0.0)
    np.fill_diagonal(Q, -Q.sum(axis=1))
    return Q


SCHEDULES = {
    "constant": 1.5,
    "linear": dd.linear_schedule(0.2, 4.0),
    "log-linear": dd.log_linear_schedule(1e-3),
    "geometric": dd.geometric_schedule(1e-2, 3.0),
}
PROCESSES = {
    f"{kind}-{name}": make(beta)
    for name, beta in SCHEDULES.items()
    for kind, make in (
        ("uniform", lambda b: dd.UniformDiffusion(V, beta=b)),
        ("absorbing", lambda b: dd.AbsorbingDiffusion(V, beta=b)),
        ("markov", lambda b: dd.MarkovDiffusion(_generator(V), beta=b)),
    )
}


# -- transitions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [k for k in PROCESSES if not k.startswith("markov")])
def test_closed_forms_equal_the_matrix_exponential(name):
    """Uniform and absorbing closed forms vs expm((B(t) - B(s)) Q): agreement to rounding (1e-12)."""
    proc = PROCESSES[name]
    for s, t in [(0.0, 0.0), (0.0, 0.3), (0.2, 0.7), (0.5, 1.0), (0.0, 1.0)]:
        delta = proc.integrated_rate(t) - proc.integrated_rate(s)
        np.testing.assert_allclose(proc.transition(t, s), scipy.linalg.expm(delta * proc.generator), atol=1e-12)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_chapman_kolmogorov_and_stochastic_rows(name):
    """P(s -> t) P(t -> u) = P(s -> u) (time-dependent rates included); rows are laws."""
    proc = PROCESSES[name]
    for s, t, u in [(0.0, 0.3, 0.8), (0.1, 0.5, 1.0), (0.4, 0.4, 0.9)]:
        np.testing.assert_allclose(proc.transition(t, s) @ proc.transition(u, t), proc.transition(u, s), atol=1e-12)
        P = proc.transition(u, s)
        assert np.all(P >= -1e-15)
        np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(proc.transition(0.6, 0.6), np.eye(proc.num_states), atol=1e-14)


@pytest.mark.parametrize("name", ["linear", "log-linear", "geometric"])
def test_schedule_integral_is_the_integral_of_the_rate(name):
    """B(t) - B(s) = int_s^t beta by quadrature (1e-10), and transition(t, s) uses exactly that integral:
    a process that used beta(t) (t - s) instead fails this test."""
    proc = dd.MarkovDiffusion(_generator(V), beta=SCHEDULES[name])
    for s, t in [(0.0, 0.5), (0.3, 0.9), (0.0, 1.0)]:
        integral, _ = scipy.integrate.quad(proc.rate, s, t, epsabs=1e-13, epsrel=1e-13)
        assert proc.integrated_rate(t) - proc.integrated_rate(s) == pytest.approx(integral, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(proc.transition(t, s), scipy.linalg.expm(integral * proc.generator), atol=1e-10)


# -- exact marginals -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["uniform", "absorbing", "markov"])
def test_kolmogorov_forward_residual_of_the_exact_marginals(kind):
    """d q_t / dt = q_t G(t) (G the whole-sequence generator) by central differences: the residual is
    the O(h^2) truncation error, shrinking 4x when h halves (ratio in [3.5, 4.5]), and small."""
    proc = PROCESSES[f"{kind}-linear"]
    law, t = _law(), 0.4
    G = proc.sequence_generator(L, t)
    q = proc.marginal(law, t)
    np.testing.assert_allclose(q.sum(), 1.0, atol=1e-12)
    residuals = []
    for h in (2e-2, 1e-2, 5e-3):
        dq = (proc.marginal(law, t + h) - proc.marginal(law, t - h)) / (2 * h)
        residuals.append(np.abs(dq - q @ G).max())
    ratios = np.array(residuals[:-1]) / np.array(residuals[1:])
    assert np.all((ratios > 3.5) & (ratios < 4.5)), (residuals, ratios)
    assert residuals[-1] < 1e-3 * np.abs(q @ G).max(), residuals


def _sequence_transition(proc, t: float, s: float = 0.0) -> np.ndarray:
    """The whole-sequence transition, expm of the Kronecker-sum generator (constant rates only)."""
    G = proc.sequence_generator(L, 0.5) / proc.rate(0.5)
    return scipy.linalg.expm((proc.integrated_rate(t) - proc.integrated_rate(s)) * G)


@pytest.mark.parametrize("kind", ["uniform", "absorbing", "markov"])
def test_marginal_equals_the_whole_sequence_transition(kind):
    proc, law = PROCESSES[f"{kind}-constant"], _law()
    for t in (0.0, 0.3, 1.0):
        q_ref = law.probs_over(proc.num_states) @ _sequence_transition(proc, t)
        np.testing.assert_allclose(proc.marginal(law, t), q_ref, atol=1e-13)


@pytest.mark.parametrize("kind", ["uniform", "absorbing", "markov"])
def test_posterior_is_bayes_by_enumeration(kind):
    """q(x_s | x_t, x_0) per token = the token marginal of q(x_s | x_0) q(x_t | x_s) / q(x_t | x_0) over
    whole sequences (from the Kronecker-sum generator), for every (x_0, x_t) pair of positive probability."""
    proc = PROCESSES[f"{kind}-constant"]
    S = proc.num_states
    s, t = 0.3, 0.8
    T_s0, T_ts, T_t0 = (_sequence_transition(proc, b, a) for a, b in [(0.0, s), (s, t), (0.0, t)])
    states = dd.enumerate_states(S, L)
    x0 = dd.enumerate_states(V, L)
    i0 = dd.state_index(x0, S)
    pairs = [(a, b) for a in range(len(x0)) for b in range(len(states)) if T_t0[i0[a], b] > 1e-300]
    A, B = np.array(pairs).T
    got = proc.posterior(states[B], x0[A], s, t)
    joint = T_s0[i0[A]] * T_ts[:, B].T / T_t0[i0[A], B][:, None]  # (pairs, S^L) over x_s
    for lv in range(L):
        ref = np.stack([joint[:, states[:, lv] == k].sum(axis=1) for k in range(S)], axis=1)
        np.testing.assert_allclose(got[:, lv], ref, atol=1e-12)


# -- exact reverse quantities ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["uniform", "absorbing", "markov"])
def test_denoiser_and_concrete_score_by_brute_force(kind):
    """p(x_0 | x_t) = p_0(x_0) q(x_t | x_0) / q_t(x_t) and p_t(y)/p_t(x) from the whole-sequence law."""
    proc, law, t = PROCESSES[f"{kind}-constant"], _law(), 0.6
    S = proc.num_states
    states = dd.enumerate_states(S, L)
    T = _sequence_transition(proc, t)
    i0 = dd.state_index(dd.enumerate_states(V, L), S)
    q_t = law.probs_over(S) @ T
    x = states[q_t > 0]
    post_ref = law.probs[:, None] * T[i0][:, q_t > 0] / q_t[q_t > 0]
    np.testing.assert_allclose(dd.exact_posterior_x0(proc, law, x, t), post_ref.T, atol=1e-12)
    den = dd.exact_denoiser(proc, law, t)(x)
    x0 = dd.enumerate_states(V, L)
    for lv in range(L):
        ref = np.stack([post_ref[x0[:, lv] == k].sum(axis=0) for k in range(V)], axis=1)
        np.testing.assert_allclose(den[:, lv], ref, atol=1e-12)
    score = dd.concrete_score(proc, law, x, t)
    ix = dd.state_index(x, S)
    powers = S ** np.arange(L - 1, -1, -1)
    for lv in range(L):
        for k in range(S):
            iy = ix + (k - x[:, lv]) * powers[lv]
            np.testing.assert_allclose(score[:, lv, k], q_t[iy] / q_t[ix], rtol=1e-11)


@pytest.mark.parametrize("name", ["uniform-linear", "absorbing-log-linear", "markov-geometric"])
def test_reverse_rates_from_the_exact_denoiser_are_the_exact_rates(name):
    proc, law = PROCESSES[name], _law(2)
    x = dd.enumerate_states(proc.num_states, L)
    for t in (0.05, 0.5, 0.95):
        den = dd.exact_denoiser(proc, law)
        exact = dd.reverse_rates(proc, law, x, t)
        np.testing.assert_allclose(dd.reverse_rates_from_denoiser(proc, den, x, t), exact, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(exact.sum(axis=2), 0.0, atol=1e-10)
        # the ratios a denoiser determines: all of them, except (absorbing) from an unmasked token
        from_den, score = dd.concrete_score_from_denoiser(proc, den(x, t), x, t), dd.concrete_score(proc, law, x, t)
        hidden = np.isnan(from_den)
        expect_hidden = np.zeros_like(hidden)
        if isinstance(proc, dd.AbsorbingDiffusion):
            expect_hidden = (x[..., None] < V) & (np.arange(V + 1) != x[..., None])
        np.testing.assert_array_equal(hidden, expect_hidden)
        np.testing.assert_allclose(from_den[~hidden], score[~hidden], rtol=1e-10)


@pytest.mark.parametrize("name", ["uniform-linear", "absorbing-log-linear", "markov-constant"])
def test_reverse_generator_satisfies_the_reverse_kolmogorov_identity(name):
    """q_t R_hat(t) = -q_t G(t) exactly (time reversal of a CTMC), at several times."""
    proc, law = PROCESSES[name], _law(3)
    for t in (0.1, 0.5, 0.9):
        q = proc.marginal(law, t)
        R = dd.reverse_generator(proc, law, t)
        np.testing.assert_allclose(R.sum(axis=1), 0.0, atol=1e-9)
        np.testing.assert_allclose(q @ R, -q @ proc.sequence_generator(L, t), atol=1e-12)


@pytest.mark.parametrize(("name", "t_end"), [("uniform-linear", 0.0), ("absorbing-log-linear", 0.02)])
def test_reverse_rates_carry_q1_back_to_q0(name, t_end):
    """Integrate -d q / dt = q R_hat(t) from q_1 down to t_end with solve_ivp (rtol 1e-10): q_t at
    t = 0.5 and t_end agree with the forward marginals to 1e-6 (no Monte Carlo).  For absorbing noise
    the unmasking rates grow like 1/t near 0, so it stops at 0.02."""
    proc, law = PROCESSES[name], _law(4, V, 2)

    def rhs(t, q):
        return -q @ dd.reverse_generator(proc, law, t)

    sol = scipy.integrate.solve_ivp(
        rhs, (1.0, t_end), proc.marginal(law, 1.0), method="DOP853", rtol=1e-10, atol=1e-13, t_eval=[0.5, t_end]
    )
    assert sol.success, sol.message
    for j, t in enumerate([0.5, t_end]):
        np.testing.assert_allclose(sol.y[:, j], proc.marginal(law, t), atol=1e-6)
    if t_end == 0.0:
        np.testing.assert_allclose(sol.y[:, -1], law.probs_over(proc.num_states), atol=1e-6)


# -- laws and sampling ------------------------------------------------------------------------------------
def test_state_indexing_round_trips():
    states = dd.enumerate_states(4, 3)
    np.testing.assert_array_equal(dd.state_index(states, 4), np.arange(64))
    assert states.dtype == np.int64 and states.shape == (64, 3)


def test_markov_and_factorized_laws_have_consistent_tables():
    T = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    chain = dd.MarkovChainLaw(np.array([0.5, 0.3, 0.2]), T, 4)
    table = chain.table()
    np.testing.assert_allclose(table.probs.sum(), 1.0, atol=1e-14)
    np.testing.assert_allclose(table.marginals(), chain.marginals(), atol=1e-14)
    x = dd.enumerate_states(3, 4)
    np.testing.assert_allclose(table.log_prob(x), chain.log_prob(x), atol=1e-13)
    m = np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]])
    fact = dd.FactorizedLaw(m)
    np.testing.assert_allclose(fact.table().marginals(), m, atol=1e-14)


@pytest.mark.parametrize("which", ["table", "chain", "factorized", "transition"])
def test_samplers_of_laws_and_transitions_pass_chi_square(which):
    """Sample frequencies vs exact probabilities: chi-square p-value > 1e-4 (a false alarm 1 in 10^4)."""
    n = 20_000
    if which == "transition":
        proc = dd.AbsorbingDiffusion(2, beta=dd.log_linear_schedule())
        x_s = np.zeros((n, 2), dtype=np.int64)
        x = proc.sample_transition(x_s, 0.2, 0.6, rng=1)
        P = proc.transition(0.6, 0.2)[0]
        expected = n * np.outer(P, P).reshape(-1)
        S = 3
    else:
        law = {
            "table": _law(5, 2, 3),
            "chain": dd.MarkovChainLaw(np.array([0.6, 0.4]), np.array([[0.9, 0.1], [0.3, 0.7]]), 3),
            "factorized": dd.FactorizedLaw(np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])),
        }[which]
        x = law.sample(n, rng=2)
        expected = n * law.table().probs
        S = 2
    counts = np.bincount(dd.state_index(x, S), minlength=expected.shape[0])
    keep = expected > 0
    assert counts[~keep].sum() == 0
    assert scipy.stats.chisquare(counts[keep], expected[keep]).pvalue > 1e-4


def test_prior_probs():
    np.testing.assert_allclose(dd.UniformDiffusion(4).prior_probs(), 0.25)
    np.testing.assert_array_equal(dd.AbsorbingDiffusion(3).prior_probs(), [0, 0, 0, 1])
    proc = dd.MarkovDiffusion(_generator(4))
    pi = proc.prior_probs()
    np.testing.assert_allclose(pi @ proc.generator, 0.0, atol=1e-12)
    np.testing.assert_allclose(pi @ proc.transition(1.0), pi, atol=1e-12)  # stationary under the flow


# -- bad input ---------------------------------------------------------------------------------------------
BAD = [
    (
        lambda: dd.UniformDiffusion(3).sample_transition(np.array([[0, 3]]), 0.0, 0.5),
        ValueError,
        r"token 3 .*\{0, \.\.\., 2\}",
    ),
    (
        lambda: dd.AbsorbingDiffusion(3).posterior(np.array([[0, 1]]), np.array([[3, 0]]), 0.2, 0.5),
        ValueError,
        r"x_0 holds token 3",
    ),
    (lambda: dd.concrete_score(dd.UniformDiffusion(V), _law(), np.array([[0, -1, 0]]), 0.5), ValueError, "token -1"),
    (lambda: dd.concrete_score(dd.UniformDiffusion(V), _law(), np.array([[0, 1]]), 0.5), ValueError, r"L = 3"),
    (lambda: dd.concrete_score(dd.UniformDiffusion(V), _law(), np.array([[0, 1.5, 0]]), 0.5), ValueError, "integer"),
    (lambda: dd.concrete_score(dd.UniformDiffusion(V), _law(), np.array([[0, np.nan, 0]]), 0.5), ValueError, "finite"),
    (lambda: dd.concrete_score(dd.UniformDiffusion(V), _law(), [[0, 1, 0]], 0.5), TypeError, "x must be"),
    (lambda: dd.concrete_score(dd.UniformDiffusion(V), _law(), np.array([[0, 1, 0j]]), 0.5), TypeError, "complex"),
    (lambda: dd.MarkovDiffusion(np.array([[-1.0, 1.0], [-0.5, 0.5]])), ValueError, r"generator\[1, 0\] = -0\.5"),
    (lambda: dd.MarkovDiffusion(np.array([[-1.0, 1.0], [0.5, -0.4]])), ValueError, "row 1 sums to"),
    (lambda: dd.MarkovDiffusion(np.ones((2, 3))), ValueError, "square"),
    (lambda: dd.MarkovDiffusion(np.array([[np.nan, 1.0], [0.5, -0.5]])), ValueError, "finite"),
    (lambda: dd.enumerate_states(10, 6), ValueError, r"too large to enumerate: S\^L = 10\^6 = 1000000"),
    (lambda: dd.TableLaw(np.ones(11**5) / 11**5, 11, 5), ValueError, "161051"),
    (lambda: dd.UniformDiffusion(10).marginal(dd.FactorizedLaw(np.full((6, 10), 0.1)), 0.5), ValueError, "1000000"),
    (lambda: dd.TableLaw(np.array([0.5, 0.6]), 2, 1), ValueError, "sum to 1"),
    (lambda: dd.TableLaw(np.array([0.5, np.inf]), 2, 1), ValueError, "finite"),
    (lambda: dd.TableLaw(np.array([1.5, -0.5]), 2, 1), ValueError, "non-negative"),
    (lambda: dd.TableLaw(np.array([0.5, 0.5, 0.0]), 2, 1), ValueError, r"shape \(2,\)"),
    (lambda: dd.MarkovChainLaw(np.array([0.5, 0.5]), np.array([[0.5, 0.5], [0.2, 0.7]]), 3), ValueError, r"row 1"),
    (lambda: dd.FactorizedLaw(np.array([0.5, 0.5])), ValueError, "marginals"),
    (lambda: dd.UniformDiffusion(3).transition(0.2, 0.5), ValueError, "s must be <= t"),
    (lambda: dd.UniformDiffusion(3, beta=-1.0), ValueError, "beta must be > 0"),
    (lambda: dd.UniformDiffusion(3).transition(1.5), ValueError, r"\[0, 1\]"),
    (lambda: dd.RateSchedule(lambda t: 1.0, lambda t: 1.0 + t), ValueError, "B\\(0\\)"),
    (
        lambda: dd.reverse_rates_from_denoiser(
            dd.UniformDiffusion(2), lambda x, t: np.ones((1, 1, 2)), np.array([[0, 1]]), 0.5
        ),
        ValueError,
        "denoiser must return",
    ),
    (
        lambda: dd.reverse_rates_from_denoiser(
            dd.UniformDiffusion(2), lambda x, t: np.full((1, 2, 2), 0.7), np.array([[0, 1]]), 0.5
        ),
        ValueError,
        "summing to 1",
    ),
    (
        lambda: dd.exact_denoiser(dd.AbsorbingDiffusion(2), _law(0, 2, 2))(np.array([[0, 1]])),
        TypeError,
        "t is required",
    ),
]


@pytest.mark.parametrize(("thunk", "exc", "pattern"), BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_input_is_refused_with_a_clear_message(thunk, exc, pattern):
    with pytest.raises(exc, match=pattern):
        thunk()


def test_impossible_states_are_refused_and_empty_batches_pass():
    law = dd.TableLaw(np.array([1.0, 0.0, 0.0, 0.0]), 2, 2)  # all mass on (0, 0)
    proc = dd.AbsorbingDiffusion(2)
    with pytest.raises(ValueError, match=r"x\[0\] = \[1, 2\] has probability 0"):
        dd.reverse_rates(proc, law, np.array([[1, 2]]), 0.5)
    with pytest.raises(ValueError, match="x_t is impossible given x_0"):
        proc.posterior(np.array([[1, 2]]), np.array([[0, 0]]), 0.2, 0.5)
    empty = np.zeros((0, 2), dtype=np.int64)
    assert dd.reverse_rates(proc, law, empty, 0.5).shape == (0, 2, 3)
    assert dd.exact_denoiser(proc, law, 0.5)(empty).shape == (0, 2, 2)
    assert proc.posterior(empty, empty, 0.2, 0.5).shape == (0, 2, 3)
    assert math.isclose(float(law.sample(0, rng=0).shape[0]), 0.0)
