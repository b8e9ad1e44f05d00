"""Discrete samplers against exact laws: declared orders measured without Monte Carlo, Gillespie by chi-square.

The per-token samplers are Markov chains on the grid whose step kernel is a product over tokens,
so the law of their output is computed exactly by :func:`discrete_sampler_law` (pushing a vector
over the ``S^L`` sequences); the oracle is the exact marginal ``q_{t_min}`` of the forward process.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import diffcore.discrete as dd
from diffcore.discrete._samplers import DISCRETE_SOLVERS, discrete_sample, discrete_sampler_law

V, L = 3, 3
T_MIN = 0.05


def _law(V: int = V, L: int = L, seed: int = 0) -> dd.TableLaw:
    """A fixed full-support test law (a Dirichlet draw)."""
    return dd.TableLaw(np.random.default_rng(seed).dirichlet(np.ones(V**L)), V, L)


PROCESSES = {
    "uniform": dd.UniformDiffusion(V, beta=2.0),
    "absorbing": dd.AbsorbingDiffusion(V, beta=dd.log_linear_schedule(1e-3)),
}


def _tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def _models(proc, law):
    return {"denoiser": dd.exact_denoiser(proc, law), "rates": lambda x, t: dd.reverse_rates(proc, law, x, t)}


# -- declared orders, exact laws --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["euler", "tau_leaping", "tweedie"])
@pytest.mark.parametrize("name", list(PROCESSES))
def test_declared_order_in_tv_and_kl(name, method):
    """Slope of log TV(law_K, q_tmin) vs log h over K = 16, 64, 256 equals the declared order within 0.15,
    and of log KL(q_tmin || law_K) within 0.5 of twice it (KL is quadratic in a small perturbation).
    Tolerance: the error is C h + O(h^2); on K = 8..64 the measured local slopes are 0.91-1.01 (TV)
    and 1.5-1.94 (KL), so 0.15 / 0.5 admit the O(h) pre-asymptotic drift but not order 0 or 2.
    Planted: rates scaled by 1.1 leave a floor (TV 0.010 -> 0.012 from K = 64 to 256): slope ~ 0, caught."""
    proc, law = PROCESSES[name], _law()
    q1, qt = proc.marginal(law, 1.0), proc.marginal(law, T_MIN)
    den = dd.exact_denoiser(proc, law)
    Ks = np.array([16, 64, 256])
    laws = [discrete_sampler_law(proc, den, q1, method=method, steps=int(K), t_min=T_MIN) for K in Ks]
    tv = np.array([_tv(p, qt) for p in laws])
    kl = np.array([_kl(qt, p) for p in laws])
    order = DISCRETE_SOLVERS[method].order
    tv_slope = -np.polyfit(np.log(Ks), np.log(tv), 1)[0]
    kl_slope = -np.polyfit(np.log(Ks), np.log(kl), 1)[0]
    assert abs(tv_slope - order) < 0.15, (tv, tv_slope)
    assert abs(kl_slope - 2 * order) < 0.5, (kl, kl_slope)
    for p in laws:  # laws, exactly
        assert np.all(p >= -1e-15) and abs(p.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("method", ["euler", "tau_leaping", "tweedie", "masked"])
def test_rates_and_denoiser_predictions_give_the_same_law(method):
    """The exact denoiser and the exact rates are two parametrisations of one reverse chain: the laws of
    every per-token sampler agree to rounding (1e-12), through two different code paths."""
    proc, law = PROCESSES["absorbing"], _law()
    q1 = proc.marginal(law, 1.0)
    m = _models(proc, law)
    a, b = (discrete_sampler_law(proc, m[k], q1, method=method, steps=5, t_min=T_MIN, prediction=k) for k in m)
    np.testing.assert_allclose(a, b, atol=1e-12)
    proc = PROCESSES["uniform"]
    if method != "masked":
        q1, m = proc.marginal(law, 1.0), _models(proc, law)
        a, b = (discrete_sampler_law(proc, m[k], q1, method=method, steps=5, t_min=T_MIN, prediction=k) for k in m)
        np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_tweedie_is_exact_for_one_token_and_errs_only_by_factorisation(name):
    """L = 1: the analytic step is the exact transition p(x_s | x_t), so any grid gives q_0 to 1e-12.
    L = 3 with a factorised law (independent tokens): also exact, since the per-token posteriors are the
    joint's factors. L = 3 with a correlated law: error > 1e-3 (the factorisation error, vanishing with h)."""
    proc = PROCESSES[name]
    for law in (_law(V, 1), dd.FactorizedLaw(np.random.default_rng(3).dirichlet(np.ones(V), size=L))):
        q1, q0 = proc.marginal(law, 1.0), proc.marginal(law, 0.0)
        for K in (1, 2, 5):
            p = discrete_sampler_law(proc, dd.exact_denoiser(proc, law), q1, method="tweedie", steps=K, t_min=0.0)
            assert _tv(p, q0) < 1e-12
    law = _law()
    q1, q0 = proc.marginal(law, 1.0), proc.marginal(law, 0.0)
    errs = [_tv(discrete_sampler_law(proc, dd.exact_denoiser(proc, law), q1, method="tweedie", steps=K, t_min=0.0), q0)
            for K in (2, 8)]  # fmt: skip
    assert errs[0] > errs[1] > 1e-3


def test_masked_sampler_is_exact_once_it_unmasks_one_token_per_step():
    """With the exact denoiser, unmasking one token at a time in any state-dependent order is the chain
    rule: TV(law, p_0) < 1e-12 for steps >= L; with steps < L tokens are drawn jointly from their
    marginals and the error is > 1e-2 (no order in h: a heuristic)."""
    proc, law = PROCESSES["absorbing"], _law()
    q1, q0 = proc.marginal(law, 1.0), proc.marginal(law, 0.0)
    den = dd.exact_denoiser(proc, law)
    tv = {K: _tv(discrete_sampler_law(proc, den, q1, method="masked", steps=K, t_min=0.0), q0) for K in (1, 2, 3, 8)}
    assert tv[1] > tv[2] > 1e-2 and tv[3] < 1e-12 and tv[8] < 1e-12, tv


@pytest.mark.parametrize("method", ["euler", "tau_leaping", "tweedie", "masked"])
def test_samples_follow_the_computed_law(method):
    """discrete_sample's histogram vs discrete_sampler_law by chi-square (n = 4000 i.i.d. draws; p > 1e-4,
    a false alarm once in 10^4 runs per test): the law the tests measure is the law the sampler draws."""
    proc, law = PROCESSES["absorbing"], _law(V, 2)
    S = proc.num_states
    q1 = proc.marginal(law, 1.0)
    den = dd.exact_denoiser(proc, law)
    p = discrete_sampler_law(proc, den, q1, method=method, steps=3, t_min=T_MIN)
    rng = np.random.default_rng(5)
    x0 = dd.enumerate_states(S, 2)[rng.choice(S**2, size=4000, p=q1)]
    x = discrete_sample(proc, den, x0, method=method, steps=3, t_min=T_MIN, rng=rng).x
    counts = np.bincount(dd.state_index(x, S), minlength=S**2)
    live = p > 1e-12
    assert counts[~live].sum() == 0
    assert scipy.stats.chisquare(counts[live], 4000 * p[live] / p[live].sum()).pvalue > 1e-4


# -- Gillespie -----------------------------------------------------------------------------------------
def _fast_rates(proc, law, scale=1.0):
    """Exact reverse rates for L = 2 from q_t = P^T p_0 P (an S x S table), written here independently
    of diffcore.discrete.reverse_rates: R(x -> y) = beta(t) Q[y_l, x_l] q_t(y) / q_t(x)."""
    S = proc.num_states
    p0 = law.table().probs_over(S).reshape(S, S)
    QT = proc.generator.T

    def rates(x, t):
        P = proc.transition(t)
        q = P.T @ p0 @ P
        a, b = x[:, 0], x[:, 1]
        qx = q[a, b][:, None]
        out = np.stack([QT[a] * q[:, b].T / qx, QT[b] * q[a] / qx], axis=1) * (scale * proc.rate(t))
        out[np.arange(x.shape[0])[:, None], [0, 1], x] = 0.0
        return out

    return rates


@pytest.mark.parametrize("name", list(PROCESSES))
def test_gillespie_samples_q_tmin_exactly(name):
    """n = 1500 independent runs of the exact CTMC; Pearson chi-square against q_tmin with expected counts
    >= 5 pooled. Under exactness p ~ U(0, 1): asserting p > 1e-3 errs once in 1000 runs (seeded, so a fixed
    pass/fail). Power (planted): rates scaled by 1.3 give p < 1e-3 for both processes; a scale of 1.1 (a TV
    of ~0.01 at t_min) is below what n = 1500 can resolve — the exact-law tests above carry that check;
    a clock shared by the batch (correlated samples) gave p ~ 1e-95."""
    proc, law = PROCESSES[name], _law(V, 2)
    S, n = proc.num_states, 1500
    q1, qt = proc.marginal(law, 1.0), proc.marginal(law, T_MIN)
    rng = np.random.default_rng(11)
    x0 = dd.enumerate_states(S, 2)[rng.choice(S**2, size=n, p=q1)]
    sol = discrete_sample(proc, _fast_rates(proc, law), x0, method="gillespie", steps=4, t_min=T_MIN,
                          prediction="rates", rng=rng)  # fmt: skip
    counts = np.bincount(dd.state_index(sol.x, S), minlength=S**2)
    big = n * qt >= 5
    obs, exp = counts[big], n * qt[big]
    if not big.all():
        obs, exp = np.append(obs, counts[~big].sum()), np.append(exp, n * qt[~big].sum())
    assert scipy.stats.chisquare(obs, exp).pvalue > 1e-3


# -- bad input ---------------------------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_rule():
    proc, law = PROCESSES["absorbing"], _law(V, 2)
    den = dd.exact_denoiser(proc, law)
    x = np.full((3, 2), V)
    with pytest.raises(ValueError, match="unknown method"):
        discrete_sample(proc, den, x, method="rk4", steps=2)
    with pytest.raises(ValueError, match="unknown prediction"):
        discrete_sample(proc, den, x, method="euler", steps=2, prediction="score")
    with pytest.raises(ValueError, match="outside the alphabet"):
        discrete_sample(proc, den, x + 1, method="euler", steps=2)
    with pytest.raises(ValueError, match="needs an AbsorbingDiffusion"):
        discrete_sample(PROCESSES["uniform"], den, x - 1, method="masked", steps=2)
    with pytest.raises(ValueError, match="t_min must be > 0 for gillespie"):
        discrete_sample(proc, den, x, method="gillespie", steps=2, t_min=0.0)
    with pytest.raises(ValueError, match="t_min must be < 1"):
        discrete_sample(proc, den, x, method="euler", steps=2, t_min=1.0)
    with pytest.raises(TypeError, match="steps must be an int"):
        discrete_sample(proc, den, x, method="euler", steps=2.0)
    with pytest.raises(TypeError, match="model must be a callable"):
        discrete_sample(proc, np.zeros((3, 2, 3)), x, method="euler", steps=2)
    with pytest.raises(ValueError, match=r"non-finite .* at step 0 \(t = 1.0\)"):
        discrete_sample(proc, lambda x, t: np.full((*x.shape, V), np.nan), x, method="tweedie", steps=2)
    with pytest.raises(ValueError, match="shape"):
        discrete_sample(proc, lambda x, t: np.ones((*x.shape, V + 1)) / 4, x, method="tweedie", steps=2)
    neg = lambda x, t: -np.ones((*x.shape, V + 1))  # noqa: E731
    with pytest.raises(ValueError, match=">= 0 off the diagonal"):
        discrete_sample(proc, neg, x, method="euler", steps=2, prediction="rates")
    with pytest.raises(ValueError, match="p_init must have S"):
        discrete_sampler_law(proc, den, np.ones(15) / 15, method="euler", steps=2)
    with pytest.raises(ValueError, match="gillespie"):
        discrete_sampler_law(proc, den, proc.marginal(law, 1.0), method="gillespie", steps=2)


def test_gillespie_refuses_a_violated_bound():
    """A rate spike between the probe times is caught at a tick, with the step and time named."""
    proc = dd.AbsorbingDiffusion(2)

    def spiky(x, t):
        R = np.zeros((*x.shape, 3))
        R[..., 0] = np.where(x == 2, 2000.0 if 0.6 < t < 0.7 else 1.0, 0.0)
        return R

    with pytest.raises(ValueError, match=r"exceeds the thinning bound .* step 0"):
        discrete_sample(proc, spiky, np.full((50, 1), 2), method="gillespie", steps=1, t_min=0.5,
                        prediction="rates", rng=0)  # fmt: skip


def test_empty_batch_and_solution_fields():
    proc, law = PROCESSES["absorbing"], _law(V, 2)
    den = dd.exact_denoiser(proc, law)
    sol = discrete_sample(proc, den, np.zeros((0, 2), dtype=int), method="euler", steps=3)
    assert sol.x.shape == (0, 2) and sol.ts.shape == (4,) and sol.nfe == 0
    sol = discrete_sample(proc, den, np.full((4, 2), V), method="tweedie", steps=3, rng=0)
    assert sol.x.shape == (4, 2) and sol.nfe == 3 and sol.ts[0] == 1.0 and sol.ts[-1] == pytest.approx(1e-3)
