"""Discrete diffusion losses: each is minimised by the exact quantity, the masked ELBO is tight, learning works.

Oracles.
* Minimisers.  Write a model as ``f* + delta h`` (logits or log scores of the exact quantity of
  :mod:`diffcore.discrete`, plus a direction ``h(x_t, t)``).  Each loss is convex in the model
  output per sample (cross-entropy / KL in the logits; ``e^z - a z`` in the log score), so ``f*`` is
  the minimiser iff the directional derivative ``X(h) = dL/d delta`` at 0 has zero mean for every
  ``h``.  With common noise (one seed per chunk) ``X`` is computed by autograd on 12 independent
  chunks; we assert ``|mean X| <= 4.5`` standard errors (Student t(11): two-sided false alarm
  ~1e-3 per check), that ``L(f* +- 0.3 h) > L(f*)`` on the pooled chunks, and, so that the check
  can fail, that the exact quantity of a *wrong* law (a Markov chain with permuted transition rows) gives
  ``|X| > 10`` standard errors for some ``h``.
* Tightness.  For absorbing noise with ``alpha_1 = 0`` the continuous-time bound at the exact
  denoiser equals ``-log p_0(x_0)`` for every sequence (the reverse process is then the time
  reversal, so the path-space gap vanishes); ``masked_diffusion_nelbo`` must reproduce it to 1e-10
  (the integrand is a polynomial in ``t``: Gauss-Legendre is exact), and the Monte Carlo loss must
  agree with its exact mean within 4.5 standard errors.
* Learning (slow): a small model on a Markov-chain language; its exact bound against the exact
  negative log-likelihood of its own ancestral sampler, propagated over all ``S^L`` states.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import diffcore.discrete as dd
from diffcore.training import fit
from diffcore.training._discrete_losses import (
    d3pm_loss,
    masked_diffusion_loss,
    masked_diffusion_nelbo,
    score_entropy_loss,
)
from diffcore.training._discrete_net import DiscreteDenoiser

V, L = 3, 3
INIT = np.array([0.5, 0.3, 0.2])
TRANS = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.4, 0.1, 0.5]])
LAW = dd.MarkovChainLaw(INIT, TRANS, L).table()
WRONG = dd.MarkovChainLaw(INIT, TRANS[[1, 2, 0]], L).table()  # another chain: the rows of TRANS permuted


def _full_integral(t):
    with np.errstate(divide="ignore"):  # B(1) = inf: every token is masked at t = 1
        return -np.log1p(-t)


def _full_rate(t):
    with np.errstate(divide="ignore"):
        return 1.0 / (1.0 - t)


FULL = dd.RateSchedule(_full_rate, _full_integral, "alpha_t = 1 - t")
CHUNKS, CHUNK, Z_MAX = 12, 600, 4.5


def _grouped(fn, x, t):
    """Evaluate a NumPy ``fn(x, t)`` once per distinct time of the batch (times lie on a grid or are fixed)."""
    x, t = x.numpy(), t.numpy()
    out = None
    for s in np.unique(t):
        rows = t == s
        val = fn(x[rows], float(s))
        out = np.empty((x.shape[0], *val.shape[1:])) if out is None else out
        out[rows] = val
    return torch.from_numpy(out)


def _exact_logits(process, law):
    den = dd.exact_denoiser(process, law)
    if isinstance(process, dd.AbsorbingDiffusion):  # p(x_0 | x_t) of masking noise does not depend on t
        return lambda x, t: torch.log(torch.from_numpy(den(x.numpy(), 0.5)).clamp_min(1e-300))
    return lambda x, t: torch.log(_grouped(den, x, t).clamp_min(1e-300))


def _exact_log_scores(process, law):
    return lambda x, t: torch.log(_grouped(lambda a, s: dd.concrete_score(process, law, a, s), x, t).clamp_min(1e-300))


def _directions(classes):
    a = torch.linspace(-1.0, 1.0, 5 * classes, dtype=torch.float64).reshape(5, classes) ** 3
    return {
        "constant": lambda x, t: torch.arange(classes, dtype=torch.float64).expand(*x.shape, classes) - 0.7,
        "token": lambda x, t: torch.nn.functional.one_hot(x, 5).to(torch.float64) @ a,
        "neighbour": lambda x, t: torch.nn.functional.one_hot(torch.roll(x, 1, dims=1), 5).to(torch.float64) @ a,
        "context": lambda x, t: (
            torch.cos(x.sum(dim=1, keepdim=True)[..., None] * 0.9 + torch.arange(classes)) * (0.5 + t[:, None, None])
        ),
    }


def _chunk(k):
    return LAW.sample(CHUNK, rng=100 + k)


def _derivative_stats(loss, base, classes):
    out = {}
    for name, h in _directions(classes).items():
        xs = []
        for k in range(CHUNKS):
            delta = torch.zeros((), dtype=torch.float64, requires_grad=True)
            value = loss(lambda x, t, h=h, d=delta: base(x, t) + d * h(x, t), _chunk(k), k)
            (grad,) = torch.autograd.grad(value, delta)
            xs.append(float(grad))
        out[name] = (np.mean(xs), np.std(xs, ddof=1) / np.sqrt(CHUNKS))
    return out


def _assert_minimiser(loss, exact, wrong, classes):
    for name, (m, se) in _derivative_stats(loss, exact, classes).items():
        assert abs(m) <= Z_MAX * se, f"{name}: derivative {m:.3g} +- {se:.2g} is not zero at the exact quantity"
    z = [abs(m) / se for m, se in _derivative_stats(loss, wrong, classes).values()]
    assert max(z) > 10, f"the exact quantity of a wrong law is not detected: |X| / se = {z}"


D3PM_CASES = {
    "uniform": (dd.UniformDiffusion(V, beta=2.0), {"steps": 4, "hybrid": 0.01}),
    "absorbing": (dd.AbsorbingDiffusion(V, beta=1.5), {"steps": 4, "prior_term": False}),
}


@pytest.mark.parametrize("case", list(D3PM_CASES))
def test_d3pm_loss_is_minimised_by_the_exact_denoiser(case):
    process, kw = D3PM_CASES[case]

    def loss(model, x0, k):
        return d3pm_loss(model, x0, process, rng=k, **kw)

    _assert_minimiser(loss, _exact_logits(process, LAW), _exact_logits(process, WRONG), V)


def test_masked_diffusion_loss_is_minimised_by_the_exact_denoiser():
    process = dd.AbsorbingDiffusion(V, FULL)

    def loss(model, x0, k):
        return masked_diffusion_loss(model, x0, process, rng=k)

    _assert_minimiser(loss, _exact_logits(process, LAW), _exact_logits(process, WRONG), V)


@pytest.mark.parametrize("process", [dd.UniformDiffusion(V, beta=1.0), dd.AbsorbingDiffusion(V, beta=1.0)])
def test_score_entropy_loss_is_minimised_by_the_exact_concrete_score(process):
    def loss(model, x0, k):  # a fixed time: one exact enumeration per chunk
        return score_entropy_loss(model, x0, process, rng=k, t_min=0.4, t_max=0.4)

    S = process.num_states
    _assert_minimiser(loss, _exact_log_scores(process, LAW), _exact_log_scores(process, WRONG), S)


def test_masked_elbo_of_the_exact_denoiser_is_the_exact_log_likelihood():
    law = dd.MarkovChainLaw(INIT, TRANS, 4).table()
    process = dd.AbsorbingDiffusion(V, FULL)
    x0 = dd.enumerate_states(V, 4)
    den = dd.exact_denoiser(process, law)
    nelbo = masked_diffusion_nelbo(den, process, x0, points=4)  # degree L - 1 = 3 polynomial: 4 nodes exact
    np.testing.assert_allclose(nelbo, -law.log_prob(x0), rtol=0, atol=1e-10)
    wrong = masked_diffusion_nelbo(dd.exact_denoiser(process, dd.FactorizedLaw(law.marginals())), process, x0)
    gap = np.sum(law.probs * (wrong + law.log_prob(x0)))  # E_p0[NELBO] - H(p0) >= KL > 0 for a wrong model
    assert gap > 1e-2, gap
    # the Monte Carlo loss is an unbiased estimate of the exact bound's mean
    model = _exact_logits(process, law)
    vals = [float(masked_diffusion_loss(model, law.sample(500, rng=k), process, rng=k)) for k in range(CHUNKS)]
    mean, se = np.mean(vals), np.std(vals, ddof=1) / np.sqrt(CHUNKS)
    entropy = -np.sum(law.probs * np.log(law.probs))
    assert abs(mean - entropy) <= Z_MAX * se, (mean, se, entropy)


def test_d3pm_bound_of_the_exact_denoiser_exceeds_the_entropy():
    """Discrete time with the factorised reverse step: a true bound, ``E L_vb >= H(p_0)``."""
    process = dd.UniformDiffusion(V, beta=4.0)
    model = _exact_logits(process, LAW)
    entropy = -np.sum(LAW.probs * np.log(LAW.probs))
    means = []
    for T in (1, 8):
        vals = [float(d3pm_loss(model, _chunk(k), process, rng=k, steps=T)) for k in range(CHUNKS)]
        means.append((np.mean(vals), np.std(vals, ddof=1) / np.sqrt(CHUNKS)))
    for m, se in means:
        assert m > entropy - Z_MAX * se, (m, se, entropy)


def test_denoiser_net_shapes_carry_over_and_bad_input():
    net = DiscreteDenoiser(V, L, num_states=V + 1, carry_over=True, width=16, depth=1, rng=0)
    x = np.array([[0, 3, 2], [3, 3, 3]])
    p = net.numpy_denoiser()(x, 0.3)
    assert p.shape == (2, L, V)
    np.testing.assert_allclose(p.sum(axis=2), 1.0, atol=1e-12)
    assert p[0, 0, 0] == 1.0 and p[0, 2, 2] == 1.0  # unmasked tokens carried over
    scores = DiscreteDenoiser(V, L, output="log_score", width=8, depth=1, rng=0)(
        torch.zeros((4, L), dtype=torch.long), 0.5
    )
    assert scores.shape == (4, L, V)
    with pytest.raises(ValueError, match="carry_over"):
        DiscreteDenoiser(V, L, carry_over=True)
    with pytest.raises(ValueError, match="token"):
        net(torch.tensor([[0, 4, 1]]), 0.5)
    with pytest.raises(TypeError, match="AbsorbingDiffusion"):
        masked_diffusion_loss(net, x[:1] * 0, dd.UniformDiffusion(V))
    with pytest.raises(ValueError, match="x0"):
        d3pm_loss(net, np.array([[0, 3, 1]]), dd.AbsorbingDiffusion(V), prior_term=False)
    with pytest.raises(ValueError, match="prior term"):
        d3pm_loss(net, np.zeros((2, L), dtype=int), dd.AbsorbingDiffusion(V, beta=1.0))
    with pytest.raises(ValueError, match=r"shape \(n, L, 4\)"):
        score_entropy_loss(net, np.zeros((2, L), dtype=int), dd.AbsorbingDiffusion(V))


# -- learning ------------------------------------------------------------------------------------------
def _sampler_law(denoiser, process, length, steps):
    """The exact law over the ``V^L`` clean sequences of the ``steps``-step ancestral masked sampler.

    From all-mask at ``t = 1`` to ``t = 0`` on a uniform grid: a masked token at ``t`` unmasks by ``s`` with
    probability ``(alpha_s - alpha_t) / (1 - alpha_t)``, to ``k`` with probability ``p_theta(k | x_t)``;
    unmasked tokens stay (MDLM / MD4 ancestral sampling).  Propagated over all ``S^L`` states.
    """
    S, M = process.num_states, process.mask_token
    states = dd.enumerate_states(S, length)
    law = np.zeros(S**length)
    law[-1] = 1.0  # all mask is the last state in lexicographic order
    grid = np.linspace(1.0, 0.0, steps + 1)
    for t, s in itertools.pairwise(grid):
        a_t, a_s = np.exp(-process.integrated_rate(t)), np.exp(-process.integrated_rate(s))
        live = law > 0
        x, p = states[live], law[live]
        probs = denoiser(x, float(t))  # (m, L, V)
        reveal = (a_s - a_t) / (1.0 - a_t)
        kernel = np.zeros((x.shape[0], length, S))
        masked = x == M
        kernel[..., :M] = np.where(masked[..., None], reveal * probs, 0.0)
        kernel[..., M] = np.where(masked, 1.0 - reveal, 0.0)
        rows, cols = np.nonzero(~masked)
        kernel[rows, cols, x[rows, cols]] = 1.0
        joint = p[:, None]
        for lv in range(length):
            joint = (joint[:, :, None] * kernel[:, lv, None, :]).reshape(x.shape[0], -1)
        law = joint.sum(axis=0)
    clean = ~(states == M).any(axis=1)
    return law[clean]


@pytest.mark.slow
def test_trained_masked_model_bound_exceeds_its_exact_likelihood():
    length = 5
    law = dd.MarkovChainLaw(INIT, TRANS, length).table()
    process = dd.AbsorbingDiffusion(V, FULL)
    torch.manual_seed(0)
    net = DiscreteDenoiser(V, length, num_states=V + 1, carry_over=True, width=64, depth=2, rng=0, dtype=torch.float64)
    data = law.sample(4096, rng=0)

    def loss(model, batch, rng=None):
        return masked_diffusion_loss(model, batch.to(torch.long), process, rng=rng)

    fit(
        net, loss, data.astype(np.float64), steps=400, batch_size=256, lr=1e-2, schedule="cosine", rng=0, progress=False
    )
    den = net.numpy_denoiser()
    x0 = dd.enumerate_states(V, length)
    nelbo = masked_diffusion_nelbo(den, process, x0, points=16)
    model_law = _sampler_law(den, process, length, steps=128)  # O(1/steps) from the continuous model
    np.testing.assert_allclose(model_law.sum(), 1.0, atol=1e-12)
    nll = -np.log(model_law)
    entropy = -np.sum(law.probs * np.log(law.probs))
    kl = float(np.sum(law.probs * (np.log(law.probs) - np.log(model_law))))
    bound = float(np.sum(law.probs * nelbo))
    print(f"H(p0) = {entropy:.4f}, E NLL = {entropy + kl:.4f}, E NELBO = {bound:.4f}, KL(p0 || p_model) = {kl:.4f}")
    assert kl < 0.04, kl  # measured 0.023 (400 Adam steps); the untrained net is far off (see report)
    assert bound >= np.sum(law.probs * nll), (bound, np.sum(law.probs * nll))  # measured gap 0.024 nats
