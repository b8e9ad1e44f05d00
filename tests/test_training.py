"""diffcore.training: every loss is minimised by the exact field, and learning reaches it.

Oracles.
* Losses.  For Gaussian data (2-D, non-diagonal covariance) every loss is a quadratic functional
  of the field, ``L(f* + delta h) = L(f*) + 2 delta X(h) + delta^2 Q(h)`` with the cross term
  ``X(h) = E[w (f* - y) . h]`` and ``Q(h) = E[w |h|^2] > 0``.  Evaluated with common noise (the
  same seed for every field compared) the expansion holds exactly for the Monte Carlo estimate,
  so ``X = (L+ - L-) / (4 delta)`` and ``Q = (L+ + L- - 2 L0) / (2 delta^2)`` need no small
  ``delta``.  ``f*`` is the minimiser iff ``X(h) = 0`` for every direction ``h``: we assert
  ``|X| <= 4.5`` standard errors over 16 independent chunks (Student t with 15 degrees of
  freedom: two-sided false-alarm rate 4e-4 per check), that ``L(f* +- delta h) > L(f*)``, and, so
  that the check can fail, that a wrong field (the exact field of data with a shifted mean) has
  ``|X| > 10`` standard errors for some ``h``.
* Irreducible values.  At a fixed time the minimum of each loss is a closed form of the
  Gaussian posterior (derived in each helper below); the Monte Carlo value at the exact field
  must match it within 4.5 standard errors (same 16-chunk estimate).
* field_error: ``f = (1 + c) f*`` has relative error exactly ``|c|`` under any law.
* Learning (slow): the headline numbers of issue 3, on the 2-D 8-component mixture P1.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch

import diffcore as dc
from diffcore.training import (
    WEIGHTINGS,
    MLPField,
    denoising_loss,
    dsm_loss,
    field_error,
    fit,
    flow_matching_loss,
    interpolant_denoiser_loss,
    interpolant_score_loss,
    interpolant_velocity_loss,
)
from tests.conftest import PROCESSES, circle_mixture

MEAN_A, COV_A = np.array([1.0, -0.5]), np.array([[1.0, 0.6], [0.6, 0.5]])
MEAN_B, COV_B = np.array([-2.0, 1.0]), np.array([[0.3, -0.2], [-0.2, 0.6]])
DATA = dc.Gaussian(MEAN_A, COV_A)
CHUNKS, CHUNK = 16, 2_000  # Monte Carlo: 16 independent chunks of 2,000 points
Z_MAX = 4.5  # standard errors; t(15) two-sided tail 4e-4
F64 = torch.float64


def _t(a):
    return torch.as_tensor(np.asarray(a), dtype=F64)


def _chunk_stats(values):
    v = np.asarray(values, dtype=np.float64)
    return v.mean(), v.std(ddof=1) / np.sqrt(len(v))


def _directions():
    """Perturbation fields h(x, t): constant, linear in x, and nonlinear and time dependent."""
    a = _t([[0.3, -1.0], [0.5, 0.2]])
    return {
        "constant": lambda x, t: torch.ones_like(x) * _t([1.0, -2.0]),
        "linear": lambda x, t: x @ a.T,
        "nonlinear": lambda x, t: torch.sin(x) * (0.5 + t[:, None]),
    }


class _Replay:
    """The exact field, evaluated once per chunk: later calls with the same inputs replay its outputs.

    Every loss draws its noise from the seed alone, so the evaluations at ``f*`` and
    ``f* +- delta h`` in one chunk see the same ``(x_t, t)``, call after call (checked)."""

    def __init__(self, field):
        self.field, self.calls, self.i = field, [], None

    def __call__(self, x, t):
        if self.i is None:
            self.calls.append((x, self.field(x, t)))
            return self.calls[-1][1]
        x_seen, out = self.calls[self.i]
        assert torch.equal(x, x_seen), "the loss did not reuse its noise"
        self.i += 1
        return out

    def replay(self):
        self.i = 0


def _quadratic_terms(loss_at, field, delta=0.1):
    """Per direction: chunk statistics of the cross term X(h), and means of Q(h), L(f*), L(f* +- delta h)."""
    stats = {name: ([], [], [], [], []) for name in _directions()}
    for k in range(CHUNKS):
        exact = _Replay(field)
        l0 = loss_at(exact, k)
        for name, h in _directions().items():
            values = {}
            for sign in (1.0, -1.0):
                exact.replay()
                values[sign] = loss_at(lambda x, t, e=exact, h=h, s=sign: e(x, t) + s * delta * h(x, t), k)
            lp, lm = values[1.0], values[-1.0]
            cross, curvature = (lp - lm) / (4 * delta), (lp + lm - 2 * l0) / (2 * delta**2)
            for acc, v in zip(stats[name], (cross, curvature, l0, lp, lm)):
                acc.append(v)
    return {
        name: (_chunk_stats(xs), np.mean(qs), np.mean(l0s), np.mean(lps), np.mean(lms))
        for name, (xs, qs, l0s, lps, lms) in stats.items()
    }


def _assert_minimiser(loss_at, exact, wrong):
    for name, ((x_mean, x_se), q, l0, lp, lm) in _quadratic_terms(loss_at, exact).items():
        assert abs(x_mean) <= Z_MAX * x_se, f"{name}: gradient {x_mean:.3g} +- {x_se:.2g} is not zero"
        assert q > 0 and lp > l0 and lm > l0, (name, q, l0, lp, lm)
    z_wrong = [abs(xm) / xse for (xm, xse), *_ in _quadratic_terms(loss_at, wrong).values()]
    assert max(z_wrong) > 10, f"a wrong field is not detected: |X| / se = {z_wrong}"


# -- diffusion losses ---------------------------------------------------------------------------------
#: target y = a x_0 + b eps of each prediction type (Ho et al. 2020; Salimans and Ho 2022; Vincent 2011)
TARGETS = {
    "eps": lambda p, t: (0.0, 1.0),
    "x0": lambda p, t: (1.0, 0.0),
    "v": lambda p, t: (-p.sigma(t), p.alpha(t)),
    "score": lambda p, t: (0.0, -1.0 / p.sigma(t)),
    "velocity": lambda p, t: (p.d_alpha(t), p.d_sigma(t)),
}


def _weight(process, prediction, weighting, t):
    """w(t) of each named weighting; ``elbo`` from a finite-difference derivative of ``log_snr``."""
    alpha, sigma = process.alpha(t), process.sigma(t)
    snr = alpha**2 / sigma**2
    if weighting == "elbo":  # -lambda'/2 on |eps error|^2; |y error|^2 = (b - a sigma/alpha)^2 |eps error|^2
        h = 1e-5
        d_log_snr = (process.log_snr(t + h) - process.log_snr(t - h)) / (2 * h)
        a, b = TARGETS[prediction](process, t)
        return -0.5 * d_log_snr / (b - a * sigma / alpha) ** 2
    return {"none": 1.0, "sigma2": sigma**2, "snr": snr, "snr+1": snr + 1.0}[weighting]


def _min_denoising_loss(process, prediction, weighting, t):
    r"""``w (a - b alpha/sigma)^2 tr Cov(x_0 | x_t)``: with ``eps = (x_t - alpha x_0)/sigma`` the
    target is ``(a - b alpha/sigma) x_0 + (b/sigma) x_t``, and for ``x_0 ~ N(m, C)`` the Gaussian
    posterior has ``Cov(x_0 | x_t) = C - alpha^2 C V^{-1} C``, ``V = alpha^2 C + sigma^2 I``."""
    alpha, sigma = process.alpha(t), process.sigma(t)
    v = alpha**2 * COV_A + sigma**2 * np.eye(2)
    post = COV_A - alpha**2 * COV_A @ np.linalg.solve(v, COV_A)
    a, b = TARGETS[prediction](process, t)
    return _weight(process, prediction, weighting, t) * (a - b * alpha / sigma) ** 2 * np.trace(post)


def _exact(process, data, prediction):
    score = dc.exact_score(process, data)
    return lambda x, t: dc.convert(score(x, t), x, t, process, source="score", target=prediction)


@functools.cache
def _data_chunk(k):
    """Chunk ``k`` of the data, drawn once: every loss and field evaluated on chunk ``k`` sees these points."""
    return DATA.sample(CHUNK, rng=1000 + k, like=torch.empty(0, dtype=F64))


def _denoising_loss_at(process, prediction, weighting, t_min=1e-3, t_max=1.0):
    def loss_at(field, k):
        x0 = _data_chunk(k)
        kw = {"prediction": prediction, "weighting": weighting, "t_min": t_min, "t_max": t_max}
        return float(denoising_loss(field, x0, process, rng=k, **kw))

    return loss_at


CASES = [(p, "none") for p in TARGETS] + [("eps", w) for w in WEIGHTINGS if w != "none"]
CASES += [("x0", "snr"), ("v", "elbo"), ("score", "elbo")]


@pytest.mark.parametrize(("prediction", "weighting"), CASES)
def test_denoising_loss_is_minimised_by_the_exact_field(prediction, weighting):
    process = dc.VPSDE()
    shifted = dc.Gaussian(MEAN_A + 0.5, COV_A)
    # t in [0.05, 1]: the snr and elbo weightings grow like 1 / t at t = 0 and would drown the cross term
    _assert_minimiser(
        _denoising_loss_at(process, prediction, weighting, t_min=0.05),
        _exact(process, DATA, prediction),
        _exact(process, shifted, prediction),
    )


@pytest.mark.parametrize("process_name", ["vp", "ve"])
@pytest.mark.parametrize(("prediction", "weighting"), CASES)
@pytest.mark.parametrize("t", [0.05, 0.6])
def test_denoising_loss_at_the_exact_field_is_the_irreducible_constant(process_name, prediction, weighting, t):
    process = PROCESSES[process_name]
    loss_at = _denoising_loss_at(process, prediction, weighting, t_min=t, t_max=t)
    mean, se = _chunk_stats([loss_at(_exact(process, DATA, prediction), k) for k in range(CHUNKS)])
    expected = _min_denoising_loss(process, prediction, weighting, t)
    assert abs(mean - expected) <= Z_MAX * se, f"MC {mean:.5g} +- {se:.2g} vs closed form {expected:.5g}"


def test_dsm_loss_is_the_score_loss_with_sigma_squared_weighting_and_equals_the_eps_loss():
    """``sigma^2 |s + eps/sigma|^2 = |sigma s + eps|^2``: DSM of ``s`` is the eps loss of ``-sigma s``."""
    process = dc.VPSDE()
    x0 = DATA.sample(2000, rng=0, like=torch.empty(0, dtype=F64))
    score = dc.exact_score(process, shifted := dc.Gaussian(MEAN_A + 0.3, COV_A))
    eps = _exact(process, shifted, "eps")
    dsm = float(dsm_loss(score, x0, process, rng=5))
    assert dsm == pytest.approx(float(denoising_loss(eps, x0, process, rng=5)), rel=1e-12)
    assert dsm == pytest.approx(
        float(denoising_loss(score, x0, process, rng=5, prediction="score", weighting="sigma2")), rel=1e-14
    )


def test_weightings_reproduce_the_papers_identities():
    """For one field seen in three parametrisations (same seed, same noise), exactly:
    the x0 loss with SNR weighting is the eps loss (Kingma et al. 2021, sec. 5); in a VP process the
    x0 loss with SNR + 1 weighting is the v loss (Salimans and Ho 2022, sec. 4); and the ELBO
    weighting of a score model is Song et al.'s likelihood weighting g(t)^2 / 2 (2021b, thm. 1)."""
    process = dc.VPSDE()
    x0 = DATA.sample(2000, rng=0, like=torch.empty(0, dtype=F64))
    shifted = dc.Gaussian(MEAN_A + 0.3, COV_A)
    fields = {p: _exact(process, shifted, p) for p in ("eps", "x0", "v", "score")}

    def loss(prediction, weighting):
        return float(denoising_loss(fields[prediction], x0, process, rng=3, prediction=prediction, weighting=weighting))

    assert loss("x0", "snr") == pytest.approx(loss("eps", "none"), rel=1e-10)
    assert loss("x0", "snr+1") == pytest.approx(loss("v", "none"), rel=1e-10)
    assert loss("score", "elbo") == pytest.approx(loss("score", lambda t: process.diffusion_squared(t) / 2), rel=1e-10)


def test_denoising_loss_is_differentiable_and_keeps_the_batch_dtype():
    model = MLPField(2, width=16, depth=1, rng=0)
    loss = denoising_loss(model, DATA.sample(64, rng=0).astype(np.float32), dc.VPSDE(), rng=1, prediction="v")
    assert loss.dtype == torch.float32 and loss.ndim == 0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# -- interpolant losses ---------------------------------------------------------------------------------
GAUSS_A, GAUSS_B = dc.Gaussian(MEAN_A, COV_A), dc.Gaussian(MEAN_B, COV_B)
STANDARD = dc.Gaussian(np.zeros(2), np.eye(2))
#: name -> (interpolant, rho0, rho1)
INTERPOLANTS = {
    "linear": (dc.LinearInterpolant(1.0), GAUSS_A, GAUSS_B),
    "trigonometric": (dc.TrigonometricInterpolant(0.5), GAUSS_A, GAUSS_B),
    "encoder-decoder": (dc.EncoderDecoderInterpolant(), GAUSS_A, GAUSS_B),
    "mirror": (dc.MirrorInterpolant(1.0), GAUSS_A, GAUSS_A),
    "one-sided": (dc.OneSidedInterpolant("linear"), STANDARD, GAUSS_B),
}
#: loss name -> (loss function with its options, the exact field it learns)
INTERPOLANT_LOSSES = {
    "flow-matching": (flow_matching_loss, "velocity"),
    "b": (interpolant_velocity_loss, "velocity"),
    "b-antithetic": (functools.partial(interpolant_velocity_loss, antithetic=True), "velocity"),
    "s": (interpolant_score_loss, "score"),
    "s-antithetic": (functools.partial(interpolant_score_loss, antithetic=True), "score"),
    "s-gamma2": (functools.partial(interpolant_score_loss, weighting="gamma2"), "score"),
    "eta": (interpolant_denoiser_loss, "denoiser"),
    "eta-antithetic": (functools.partial(interpolant_denoiser_loss, antithetic=True), "denoiser"),
}
INTERPOLANT_CASES = [
    (i, loss) for i in INTERPOLANTS for loss in INTERPOLANT_LOSSES if not (i == "one-sided" and loss[0] in "se")
]


@functools.cache
def _interpolant_chunk(name, k):
    """Chunk ``k`` of the end points of interpolant ``name``, drawn once (``x1``, or ``(x0, x1)``)."""
    _, rho0, rho1 = INTERPOLANTS[name]
    like = torch.empty(0, dtype=F64)
    x1 = rho1.sample(CHUNK, rng=2000 + k, like=like)
    return x1 if name == "mirror" else (rho0.sample(CHUNK, rng=3000 + k, like=like), x1)


def _interpolant_loss_at(name, loss_name, t_min=0.0, t_max=1.0):
    interpolant, _, _ = INTERPOLANTS[name]
    loss_fn = INTERPOLANT_LOSSES[loss_name][0]

    def loss_at(field, k):
        batch = _interpolant_chunk(name, k)
        return float(loss_fn(field, batch, interpolant, rng=k, t_min=t_min, t_max=t_max))

    return loss_at


def _moments(name, t):
    r"""Joint Gaussian moments at ``t``: ``V = Cov(x_t)``, ``W = Cov(dx_t/dt, x_t)``, ``Vy = Cov(dx_t/dt)``,
    ``mu_y = E dx_t/dt`` and ``gamma``, from the independent sources ``x_0``, ``x_1``, ``z`` (one
    source ``x`` with coefficient ``c_0 + c_1`` for the mirror interpolant)."""
    it, rho0, rho1 = INTERPOLANTS[name]
    c0, c1, g, d0, d1, dg = (getattr(it, f)(t) for f in ("coef0", "coef1", "gamma", "d_coef0", "d_coef1", "d_gamma"))
    if name == "mirror":
        sources = [(c0 + c1, d0 + d1, rho0.mean, rho0.cov)]
    else:
        sources = [(c0, d0, rho0.mean, rho0.cov), (c1, d1, rho1.mean, rho1.cov)]
    eye = np.eye(2)
    v = sum(c**2 * cov for c, _, _, cov in sources) + g**2 * eye
    w = sum(c * d * cov for c, d, _, cov in sources) + g * dg * eye
    vy = sum(d**2 * cov for _, d, _, cov in sources) + dg**2 * eye
    mu_y = sum(d * m for _, d, m, _ in sources)
    return v, w, vy, mu_y, g


def _min_interpolant_loss(name, loss_name, t):
    r"""Values at the minimiser: flow matching ``tr Cov(dx_t/dt | x_t) = tr(Vy - W V^{-1} W)``;
    ``L_b = -E|b|^2 = -(|mu_y|^2 + tr(W V^{-1} W))``; ``L_s = -E|s|^2 = -tr V^{-1}`` (times
    ``gamma^2`` with that weighting); ``L_eta = -E|eta|^2 = -gamma^2 tr V^{-1}``."""
    v, w, vy, mu_y, g = _moments(name, t)
    v_inv = np.linalg.inv(v)
    kind = loss_name.split("-")[0]
    if kind == "flow":
        return np.trace(vy - w @ v_inv @ w)
    if kind == "b":
        return -(mu_y @ mu_y + np.trace(w @ v_inv @ w))
    if loss_name == "s-gamma2" or kind == "eta":
        return -(g**2) * np.trace(v_inv)
    return -np.trace(v_inv)


def _interpolant_field(name, kind, shift=0.0):
    it, rho0, rho1 = INTERPOLANTS[name]
    rho1 = dc.Gaussian(rho1.mean + shift, rho1.cov)
    rho0 = rho1 if name == "mirror" else rho0
    return getattr(dc.interpolant_fields(it, rho0, rho1), kind)


@pytest.mark.parametrize(("name", "loss_name"), INTERPOLANT_CASES)
def test_interpolant_loss_is_minimised_by_the_exact_field(name, loss_name):
    kind = INTERPOLANT_LOSSES[loss_name][1]
    # t in [0.05, 0.95]: the plain L_s and L_b have variance ~ 1 / gamma^2 at the ends
    _assert_minimiser(
        _interpolant_loss_at(name, loss_name, t_min=0.05, t_max=0.95),
        _interpolant_field(name, kind),
        _interpolant_field(name, kind, shift=1.5),
    )


@pytest.mark.parametrize(("name", "loss_name"), INTERPOLANT_CASES)
@pytest.mark.parametrize("t", [0.1, 0.55])
def test_interpolant_loss_at_the_exact_field_is_the_irreducible_constant(name, loss_name, t):
    loss_at = _interpolant_loss_at(name, loss_name, t_min=t, t_max=t)
    kind = INTERPOLANT_LOSSES[loss_name][1]
    mean, se = _chunk_stats([loss_at(_interpolant_field(name, kind), k) for k in range(CHUNKS)])
    expected = _min_interpolant_loss(name, loss_name, t)
    assert abs(mean - expected) <= Z_MAX * se, f"MC {mean:.5g} +- {se:.2g} vs closed form {expected:.5g}"


@pytest.mark.parametrize(("loss_name", "kind"), [("s", "score"), ("b", "velocity")])
def test_antithetic_estimator_removes_the_end_point_variance(loss_name, kind):
    """Near ``t = 0`` (gamma = 0.03) the plain integrands carry ``z / gamma`` (L_s) and ``gamma' z``
    (L_b), of size ~30; the antithetic pair cancels them to first order.  Measured chunk spread
    ratios are ~0.02 (L_s) and ~0.04 (L_b); we ask for < 0.2, and the same mean within 4.5 se."""
    field = _interpolant_field("linear", kind)
    plain = [_interpolant_loss_at("linear", loss_name, 1e-3, 1e-3)(field, k) for k in range(CHUNKS)]
    anti = [_interpolant_loss_at("linear", loss_name + "-antithetic", 1e-3, 1e-3)(field, k) for k in range(CHUNKS)]
    (m_p, se_p), (m_a, se_a) = _chunk_stats(plain), _chunk_stats(anti)
    assert se_a < 0.2 * se_p, (se_a, se_p)
    assert abs(m_p - m_a) <= Z_MAX * np.hypot(se_p, se_a)


def test_one_array_batch_draws_x0_from_rho0():
    """With one array ``x1`` the loss draws ``x0 ~ rho0`` (default N(0, I)); its value at the exact
    one-sided velocity matches the closed form of the pair version."""
    it = dc.OneSidedInterpolant("linear")
    field = _interpolant_field("one-sided", "velocity")
    like = torch.empty(0, dtype=F64)
    for rho0 in (None, STANDARD):
        vals = [
            float(
                flow_matching_loss(
                    field, GAUSS_B.sample(CHUNK, rng=k, like=like), it, rng=k, rho0=rho0, t_min=0.3, t_max=0.3
                )
            )
            for k in range(CHUNKS)
        ]
        mean, se = _chunk_stats(vals)
        assert abs(mean - _min_interpolant_loss("one-sided", "flow-matching", 0.3)) <= Z_MAX * se


def test_coupling_is_applied_to_each_batch():
    """A coupling that pairs every x1 with itself makes the one-sided linear target x1 - x0 vanish
    and x_t = x1, so the zero field has loss exactly 0; the minibatch-OT coupling runs on tensors."""
    it = dc.OneSidedInterpolant("linear")
    x1 = torch.as_tensor(GAUSS_B.sample(64, rng=0))
    seen = []

    def self_pairing(x0, x1, rng):
        seen.append((x0.shape, isinstance(rng, torch.Generator)))
        return x1, x1

    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    assert float(flow_matching_loss(zero, x1, it, rng=0, coupling=self_pairing)) == 0.0
    assert seen == [((64, 2), True)]
    assert float(flow_matching_loss(zero, x1, it, rng=0)) > 1.0
    loss = flow_matching_loss(zero, x1, it, rng=0, coupling=dc.minibatch_ot_coupling)
    assert torch.isfinite(loss)


# -- MLPField ----------------------------------------------------------------------------------------
def test_mlp_initialisation_is_deterministic_and_leaves_the_global_generator_alone():
    state = torch.get_rng_state()
    a, b = MLPField(2, rng=7), MLPField(2, rng=torch.Generator().manual_seed(7))
    c = MLPField(2, rng=8)
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
    bound = 1 / np.sqrt(a.layers[0].in_features)  # PyTorch's default law: uniform on +-1/sqrt(fan_in)
    w = a.layers[0].weight.detach()
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound


@pytest.mark.parametrize(("width", "depth"), [(32, 2), (64, 2), (128, 3), (128, 4), (192, 4)])
def test_mlp_parameter_count(width, depth):
    """sum over layers of (fan_in + 1) fan_out, with 2 + 2 K inputs; the sizes span ~2k to ~100k."""
    model = MLPField(2, width=width, depth=depth, rng=0)
    sizes = [2 + 2 * 16] + [width] * depth + [2]
    assert model.n_parameters == sum((m + 1) * k for m, k in itertools.pairwise(sizes))
    assert 2_000 <= model.n_parameters <= 120_000


def test_mlp_shapes_backends_and_numpy_round_trip():
    model = MLPField(6, width=16, depth=2, rng=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out = model(x, 0.3)
    assert isinstance(out, np.ndarray) and out.shape == x.shape and out.dtype == np.float64
    xt = torch.as_tensor(x, dtype=torch.float32).requires_grad_()
    out_t = model(xt, torch.full((5,), 0.3))
    assert out_t.shape == x.shape and out_t.dtype == torch.float32 and out_t.requires_grad
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(model(x, np.full(5, 0.3)), out, rtol=1e-6)  # NumPy times
    times = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    per_sample = model(x, times)
    for i, t in enumerate(times):  # per-sample times = one call per time
        np.testing.assert_allclose(per_sample[i], model(x[i : i + 1], float(t))[0], rtol=1e-6)
    with torch.no_grad():  # float64 parameters on request; float64 torch input stays float64
        model64 = MLPField(6, width=16, depth=2, rng=0, dtype=torch.float64)
        assert model64(torch.as_tensor(x), 0.3).dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "x", "t", "error"),
    [
        ({}, np.zeros((3, 3)), 0.5, ValueError),  # wrong feature count
        ({}, np.zeros((3, 2)), np.zeros(4), ValueError),  # times of the wrong length
        ({}, np.zeros((3, 2)), "0.5", TypeError),
        ({}, [[0.0, 0.0]], 0.5, TypeError),
    ],
)
def test_mlp_bad_calls(kwargs, x, t, error):
    with pytest.raises(error):
        MLPField(2, width=8, depth=1, rng=0, **kwargs)(x, t)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"width": 0}, ValueError),
        ({"depth": 1.5}, TypeError),
        ({"dtype": torch.int32}, TypeError),
        ({"rng": "x"}, TypeError),
    ],
)
def test_mlp_bad_construction(kwargs, error):
    with pytest.raises(error):
        MLPField(2, **kwargs)


# -- fit ---------------------------------------------------------------------------------------------------
def _small_fit(seed, data=None, **kwargs):
    model = MLPField(2, width=16, depth=1, rng=0)
    loss = functools.partial(denoising_loss, process=dc.VPSDE())
    data = DATA.sample(1000, rng=0) if data is None else data
    return fit(model, loss, data, steps=kwargs.pop("steps", 30), batch_size=64, rng=seed, progress=False, **kwargs)


def test_fit_is_deterministic_for_a_seed():
    a, b, c = _small_fit(3), _small_fit(3), _small_fit(4)
    np.testing.assert_array_equal(a.losses, b.losses)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert not np.array_equal(a.losses, c.losses)
    assert a.losses.shape == (30,) and a.steps == 30 and a.seconds > 0


@pytest.mark.parametrize(
    "data",
    [
        DATA,  # fresh exact samples
        (DATA.sample(500, rng=1), DATA.sample(500, rng=2)),  # a tuple: the loss gets a tuple
        lambda n, gen: torch.randn(n, 2, generator=gen, dtype=torch.float64),  # a sampler
    ],
    ids=["law", "tuple", "sampler"],
)
def test_fit_data_kinds(data):
    def loss(model, batch, rng):
        if isinstance(batch, tuple):
            assert len(batch) == 2 and batch[0].shape == batch[1].shape == (64, 2)
            batch = batch[0]
        assert batch.dtype == torch.float32 or callable(data)
        return denoising_loss(model, batch, dc.VPSDE(), rng=rng)

    result = fit(MLPField(2, width=8, depth=1, rng=0), loss, data, steps=5, batch_size=64, rng=0, progress=False)
    assert np.all(np.isfinite(result.losses))


def test_fit_progress_bar_can_be_turned_off(capsys):
    _small_fit(0, steps=3)
    assert capsys.readouterr().err == ""
    model = MLPField(2, width=8, depth=1, rng=0)
    loss = functools.partial(denoising_loss, process=dc.VPSDE())
    fit(model, loss, DATA, steps=3, batch_size=8, rng=0)  # default: a bar only when stderr is a terminal
    assert capsys.readouterr().err == ""
    fit(model, loss, DATA, steps=3, batch_size=8, rng=0, progress=True)
    assert "fit" in capsys.readouterr().err  # tqdm writes its bar to stderr


def test_fit_learns_a_gaussian_eps_field():
    """The whole pipeline in ~1 s: an eps model on 2-D Gaussian data reaches < 10 % relative score
    error at t in {0.1, 0.5, 0.9} after 1000 steps (measured 0.066, 0.022, 0.014; at initialisation
    the error is ~1, since the untrained net's eps is unrelated to the field)."""
    process = dc.VPSDE()
    model = MLPField(2, width=64, depth=2, rng=0)
    loss = functools.partial(denoising_loss, process=process)
    before = field_error(
        dc.reparametrize(model, process, source="eps"),
        dc.exact_score(process, DATA),
        process,
        DATA,
        times=[0.5],
        n=2000,
        rng=2,
    )
    result = fit(
        model,
        loss,
        DATA.sample(20_000, rng=0),
        steps=1000,
        batch_size=256,
        lr=3e-3,
        schedule="cosine",
        rng=1,
        progress=False,
    )
    score = dc.reparametrize(model, process, source="eps", target="score")
    err = field_error(score, dc.exact_score(process, DATA), process, DATA, times=[0.1, 0.5, 0.9], n=4096, rng=2)
    assert before.relative[0] > 0.5
    assert np.all(err.relative < 0.10), err.relative
    assert result.losses[-100:].mean() < result.losses[:100].mean()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "steps must be >= 1"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": 5000}, ValueError, "batch_size must be <= the number of data points"),
        ({"lr": 0.0}, ValueError, "lr must be > 0"),
        ({"lr": float("nan")}, ValueError, "lr must be finite"),
        ({"schedule": "linear"}, ValueError, "unknown schedule"),
    ],
)
def test_fit_rejects_bad_settings(kwargs, error, match):
    settings = {"steps": 3, "batch_size": 8, "lr": 1e-3, "rng": 0, "progress": False} | kwargs
    model = MLPField(2, width=8, depth=1, rng=0)
    with pytest.raises(error, match=match):
        fit(model, functools.partial(denoising_loss, process=dc.VPSDE()), DATA.sample(1000, rng=0), **settings)


def test_fit_rejects_nan_training_data():
    data = DATA.sample(100, rng=0)
    data[17, 1] = np.nan
    with pytest.raises(ValueError, match=r"training data must be finite.*row 17"):
        _small_fit(0, data=data)
    with pytest.raises(ValueError, match="must be finite"):
        _small_fit(0, data=lambda n, gen: torch.full((n, 2), float("nan")))
    with pytest.raises(ValueError, match="same length"):
        _small_fit(0, data=(DATA.sample(100, rng=0), DATA.sample(99, rng=0)))


def test_fit_reports_a_diverging_loss():
    model = MLPField(2, width=8, depth=1, rng=0)
    with pytest.raises(FloatingPointError, match="step 1 of 3"):
        fit(model, lambda m, b, rng: m(b, 0.5).sum() * float("inf"), DATA, steps=3, batch_size=8, rng=0, progress=False)


# -- field_error -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [0.0, 0.1, -0.3])
def test_field_error_of_a_scaled_field_is_the_scale(c):
    process = dc.VPSDE()
    exact = dc.exact_score(process, DATA)
    err = field_error(lambda x, t: (1 + c) * exact(x, t), exact, process, DATA, times=[0.1, 0.7], n=500, rng=0)
    np.testing.assert_allclose(err.relative, abs(c), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(err.absolute, abs(c) * err.reference, rtol=1e-12)
    assert err.overall == pytest.approx(abs(c), abs=1e-15)
    assert err.times.tolist() == [0.1, 0.7] and err.n == 500


def test_field_error_for_interpolants_and_laws():
    """The three ways to name the law of x_t agree (same seed, same draws)."""
    it, rho0, rho1 = INTERPOLANTS["linear"]
    fields = dc.interpolant_fields(it, rho0, rho1)
    learned = lambda x, t: 0.8 * fields.velocity(x, t)  # noqa: E731
    by_fields = field_error(learned, fields.velocity, fields, n=300, rng=1)
    by_pair = field_error(learned, fields.velocity, it, (rho0, rho1), n=300, rng=1)
    by_callable = field_error(learned, fields.velocity, fields.marginal, n=300, rng=1)
    np.testing.assert_allclose(by_fields.relative, 0.2, rtol=1e-12)
    np.testing.assert_array_equal(by_fields.absolute, by_pair.absolute)
    np.testing.assert_array_equal(by_fields.absolute, by_callable.absolute)


def test_field_error_stderr_covers_the_monte_carlo_spread():
    """Over 20 seeds the relative error of a perturbed field scatters like its reported stderr
    (ratio of empirical spread to mean stderr in [0.5, 2]: a chi distribution with 19 dof stays in
    [0.65, 1.35] with probability > 0.99)."""
    process = dc.VPSDE()
    exact = dc.exact_score(process, DATA)
    learned = lambda x, t: exact(x, t) + 0.3 * np.sin(x)  # noqa: E731
    runs = [field_error(learned, exact, process, DATA, times=[0.3], n=400, rng=s) for s in range(20)]
    rel = np.array([r.relative[0] for r in runs])
    se = np.mean([r.relative_stderr[0] for r in runs])
    assert 0.5 < rel.std(ddof=1) / se < 2.0


def test_field_error_bad_input():
    process = dc.VPSDE()
    exact = dc.exact_score(process, DATA)
    with pytest.raises(TypeError, match="data must be a Gaussian"):
        field_error(exact, exact, process)
    rule = r"learned must return an array shaped like its input x \(10, 2\); got \(10, 1\)"
    with pytest.raises(ValueError, match=rule):
        field_error(lambda x, t: x[:, :1], exact, process, DATA, n=10)
    with pytest.raises(ValueError, match="not finite"):
        field_error(lambda x, t: x * np.nan, exact, process, DATA, n=10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        field_error(exact, exact, process, DATA, times=[1.5], n=10)


# -- bad input to the losses ---------------------------------------------------------------------------------
X = DATA.sample(8, rng=0)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: denoising_loss(lambda x, t: x, X, "vp"), TypeError, "AbstractProcess"),
        (lambda: denoising_loss(lambda x, t: x, X, dc.VPSDE(), prediction="noise"), ValueError, "unknown prediction"),
        (lambda: denoising_loss(lambda x, t: x, X, dc.VPSDE(), weighting="snr2"), ValueError, "unknown weighting"),
        (lambda: denoising_loss(lambda x, t: x, X, dc.VPSDE(), t_min=0.5, t_max=0.2), ValueError, "t_min <= t_max"),
        (lambda: dsm_loss(lambda x, t: x, X, dc.VPSDE(), t_min=0.0, t_max=0.0), ValueError, "t_min > 0"),
        (lambda: denoising_loss(lambda x, t: x, X * np.nan, dc.VPSDE()), ValueError, "x0 must be finite"),
        (lambda: flow_matching_loss(lambda x, t: x, (X, X * np.nan), dc.LinearInterpolant()), ValueError, "x1 must be"),
        (lambda: denoising_loss(lambda x, t: x, X, dc.VPSDE(), weighting=lambda t: t[:3]), ValueError, "weighting"),
        (lambda: denoising_loss(lambda x, t: x, X.astype(complex), dc.VPSDE()), TypeError, "must be real"),
        (lambda: flow_matching_loss(lambda x, t: x, X, dc.VPSDE()), TypeError, "AbstractInterpolant"),
        (
            lambda: interpolant_score_loss(lambda x, t: x, X, dc.OneSidedInterpolant()),
            ValueError,
            "needs gamma",
        ),
        (
            lambda: interpolant_denoiser_loss(lambda x, t: x, X, dc.LinearInterpolant(0.0)),
            ValueError,
            "needs gamma",
        ),
        (lambda: flow_matching_loss(lambda x, t: x, (X, X), dc.MirrorInterpolant()), ValueError, "one array"),
        (lambda: flow_matching_loss(lambda x, t: x, (X, X[:4]), dc.LinearInterpolant()), ValueError, "same shape"),
        (lambda: flow_matching_loss(lambda x, t: x, (X, X, X), dc.LinearInterpolant()), ValueError, "pair"),
        (
            lambda: flow_matching_loss(lambda x, t: x, X, dc.LinearInterpolant(), t_min=1.0, t_max=1.0),
            ValueError,
            "strictly inside",
        ),
        (lambda: flow_matching_loss(lambda x, t: x, X, dc.LinearInterpolant(), rho0="normal"), TypeError, "rho0"),
        (
            lambda: flow_matching_loss(
                lambda x, t: x, X, dc.LinearInterpolant(), rho0=dc.Gaussian(np.zeros(3), np.eye(3))
            ),
            ValueError,
            "match rho0",
        ),
        (
            lambda: interpolant_score_loss(lambda x, t: x, X, dc.LinearInterpolant(), weighting="gamma"),
            ValueError,
            "unknown weighting",
        ),
        (lambda: denoising_loss(lambda x, t: x, X, dc.VPSDE(), rng="seed"), TypeError, "rng must be"),
    ],
)
def test_losses_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- the headline: learning on P1 within 60 s of CPU training (slow) -------------------------------------------
N_SAMPLES = 4000


@pytest.fixture
def one_thread():
    """Train with one torch thread (the budget is stated for it); restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def p1_floor() -> dc.FloorEstimate:
    """W2 between two independent 4000-point samples of P1: 0.39 +- 0.03 (sd of one value ~0.08)."""
    return dc.w2_floor(circle_mixture(), N_SAMPLES, repeats=3, rng=2024)


def _check_samples(x, target, floor, seed):
    """W2 to fresh exact samples within 2x the floor, and every component holding 1/8 of the points.

    Plain (not symmetrised) 4000-point samples: a learned net is not rotation-equivariant, so
    rotated copies of its output would not be its output.  The floor of one W2 value has mean
    ~0.39 and sd ~0.08 (test_sampling_accuracy.py), so 2x the floor mean is > 4 sd above it for
    an exact sampler.  The component shares check the mode weights directly, which W2 between
    plain samples resolves poorly: binomial sd sqrt(1/8 * 7/8 / 4000) = 0.0052, and [0.1, 0.15]
    is 4.8 sd on either side (false alarm < 1e-5 over the 8 components)."""
    w = float(dc.w2(x, target.sample(N_SAMPLES, rng=seed)))
    shares = np.bincount(target.responsibilities(x).argmax(axis=1), minlength=8) / len(x)
    assert w <= 2 * floor.mean, f"w2 {w:.3f} vs floor {floor.mean:.3f} +- {floor.stderr:.3f}"
    assert np.all((shares > 0.10) & (shares < 0.15)), shares
    return w, shares


@pytest.mark.slow
def test_learned_score_by_dsm_reaches_the_exact_score_and_the_w2_floor(one_thread, p1_floor):
    """Issue 3: VP-SDE on P1, an eps model trained by DSM (the eps loss is DSM with lambda = sigma^2)
    and converted to a score: relative score error < 10 % at t in {0.1, 0.3, 0.5, 0.7, 0.9}.

    Budget: 10,000 Adam steps of 512 points with cosine decay, 54k-parameter MLP, one torch
    thread: measured 37 s of training on the development machine (the 60 s budget of the issue;
    wall time is printed, not asserted, since timing belongs in benchmarks/).  Measured errors
    0.073, 0.051, 0.013, 0.009, 0.009 (standard errors 0.002 at t = 0.1, < 0.001 elsewhere).  The
    hardest time is t = 0.1, whose error sits between the components, where the field switches
    sharply and training samples are rare; over seeds it was 0.078-0.088 after 8000 steps and
    0.071-0.074 after 11,000.  Heun, 100 steps, from the prior to t = 1e-3 then lands at the W2
    floor.  The floor is P1's; the target is the marginal at t = 1e-3, within W2 ~3e-4 of P1
    (radius 4 alpha, std 0.3002): negligible next to a floor of ~0.4."""
    process, data = dc.VPSDE(), circle_mixture()
    model = MLPField(2, width=128, depth=4, rng=0)
    loss = functools.partial(denoising_loss, process=process, prediction="eps")
    result = fit(model, loss, data, steps=10_000, batch_size=512, lr=2e-3, schedule="cosine", rng=1, progress=False)
    score = dc.reparametrize(model, process, source="eps", target="score")
    err = field_error(
        score, dc.exact_score(process, data), process, data, times=[0.1, 0.3, 0.5, 0.7, 0.9], n=20_000, rng=2
    )
    x = dc.sample(process, score, process.prior_sample((N_SAMPLES, 2), rng=3), method="heun", steps=100).x
    w, shares = _check_samples(x, dc.marginal(process, data, 1e-3), p1_floor, seed=4)
    print(
        f"\nDSM: {result.seconds:.1f} s, {model.n_parameters} params, relative errors {np.round(err.relative, 4)} "
        f"(se {np.round(err.relative_stderr, 4)}), w2 {w:.3f} vs floor {p1_floor.mean:.3f}, "
        f"shares {np.round(shares, 3)}"
    )
    assert np.all(err.relative < 0.10), err.relative


@pytest.mark.slow
def test_learned_velocity_by_flow_matching_reaches_the_exact_velocity_and_the_w2_floor(one_thread, p1_floor):
    """Issue 3: conditional flow matching on the one-sided linear interpolant (rectified flow) from
    N(0, I) at t = 0 to P1 at t = 1: relative velocity error < 10 % within 60 s.

    Where the relative error is measured.  The marginal variance of this path per axis is
    ``(1 - t)^2 + 8.09 t^2`` (P1 has variance 8.09 per axis), stationary at ``t = 1/9.09 = 0.11``:
    there the exact velocity nearly vanishes (``E|b|^2 = 0.024`` at t = 0.1 against 1.7 at t = 0.2
    and 14-17 at t >= 0.5), and the ratio ``E|b - b*|^2 / E|b*|^2`` divides by almost nothing
    (measured 0.69 at t = 0.1 with an absolute error of 0.11, the same as at the other times).
    So we assert the per-time relative error on t in {0.2, 0.3, 0.5, 0.7, 0.9} and the
    relative error over all of t in {0.1, 0.2, ..., 0.9} together (``FieldError.overall``).

    Budget: 5000 Adam steps of 512 with cosine decay, 54k-parameter MLP, one torch thread:
    measured 18 s of training; relative errors 0.066 (t = 0.2), <= 0.041 at t in [0.3, 0.9],
    0.033 over all times.  The learned ODE (heun, 100 steps, 0 -> 1) lands at the W2 floor."""
    rho0, rho1 = dc.Gaussian(np.zeros(2), np.eye(2)), circle_mixture()
    interpolant = dc.OneSidedInterpolant("linear")
    fields = dc.interpolant_fields(interpolant, rho0, rho1)
    model = MLPField(2, width=128, depth=4, rng=0)
    loss = functools.partial(flow_matching_loss, interpolant=interpolant)
    result = fit(model, loss, rho1, steps=5000, batch_size=512, lr=2e-3, schedule="cosine", rng=1, progress=False)
    times = np.round(np.linspace(0.1, 0.9, 9), 2)
    err = field_error(model, fields.velocity, fields, times=times, n=8192, rng=2)
    x = dc.integrate(dc.InterpolantODE(model), rho0.sample(N_SAMPLES, rng=3), np.linspace(0.0, 1.0, 101), "heun").x
    w, shares = _check_samples(x, rho1, p1_floor, seed=4)
    per_time = dict(zip(times.tolist(), np.round(err.relative, 4).tolist()))
    print(
        f"\nFM: {result.seconds:.1f} s, relative errors {per_time}, "
        f"overall {err.overall:.4f}, absolute {np.round(err.absolute, 3)}, w2 {w:.3f} vs floor {p1_floor.mean:.3f}, "
        f"shares {np.round(shares, 3)}"
    )
    assert np.all(err.relative[times >= 0.2] < 0.10), err.relative
    assert err.overall < 0.10
