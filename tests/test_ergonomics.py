"""Everyday ergonomics: progress bars, batched likelihoods, the divergence default, dataset-level
summaries, bits per dimension with their errors, and ``fit`` with EMA, callbacks and validation.

Oracles: batched results equal the unbatched ones (points never interact); the EMA equals its
closed-form recursion; summaries and bits per dimension are checked against closed-form
Gaussian expectations within standard errors they report; progress bars against what a log file
receives.
"""

from __future__ import annotations

import copy
import functools
import io
import math
import sys
import time

import numpy as np
import pytest
import torch

import diffcore as dc
from diffcore._validation import LOG_REFRESH_SECONDS, progress_bar
from diffcore.likelihood import AUTO_EXACT_MAX_DIM, HUTCHINSON_PROBES
from diffcore.samplers import AbstractSolver
from diffcore.training import MLPField, denoising_loss, dsm_loss, fit

T_MIN = 1e-3


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _gaussian(d: int, seed: int = 0) -> dc.Gaussian:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return dc.Gaussian(0.3 * rng.standard_normal(d), (q * rng.uniform(0.2, 1.0, d)) @ q.T)


def _plain(field):
    """The exact field as a plain callable: no closed-form divergence (central differences / autograd)."""
    return lambda x, t: field(x, t)


# -- progress bars ----------------------------------------------------------------------------------
def test_progress_default_follows_the_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress_bar(None, 5, desc="x") as bar:
        bar.update(5)
    assert sys.stderr.getvalue() == ""  # a log file: no bar
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with progress_bar(None, 5, desc="x") as bar:
        bar.update(5)
    assert "5/5" in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with progress_bar(False, 5, desc="x") as bar:
        bar.update(5)
    assert sys.stderr.getvalue() == ""


def test_a_forced_bar_does_not_flood_a_log(monkeypatch):
    # 400 steps with progress=True while stderr is a file: the bar is drawn at the start and at the
    # end (redraws at most every LOG_REFRESH_SECONDS = 30 s, far longer than this run), not per step
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    p, data = dc.VPSDE(), _gaussian(2)
    field = dc.exact_score(p, data)

    def slow(x, t):  # 200 steps of 3 ms: 0.6 s, which a terminal's 0.1 s refresh would redraw ~6 times
        time.sleep(0.003)
        return field(x, t)

    sol = dc.sample(p, slow, p.prior_sample((8, 2), rng=0), method="euler", steps=200, progress=True)
    text = log.getvalue()
    assert sol.nfe == 200 and "200/200" in text
    assert text.count("\r") <= 3, text
    with progress_bar(True, 1, desc="x") as bar:
        assert bar.mininterval == LOG_REFRESH_SECONDS >= 10


@pytest.mark.parametrize(
    "call",
    [
        lambda p, s, x, progress: dc.sample(p, s, x, method="heun", steps=7, progress=progress),
        lambda p, s, x, progress: dc.integrate(
            dc.ProbabilityFlowODE(p, s), x, [1.0, 0.5, 0.1], "rk4", progress=progress
        ),
        lambda p, s, x, progress: dc.log_likelihood(p, s, x, steps=6, progress=progress),
        lambda p, s, x, progress: dc.log_likelihood(
            p, s, x, method="scipy_rk45", rtol=1e-4, atol=1e-4, progress=progress
        ),
        lambda p, s, x, progress: dc.ito_log_density(p, s, x, steps=6, rng=0, progress=progress),
        lambda p, s, x, progress: dc.superpose(p, [s, s], x, steps=6, rng=0, progress=progress),
    ],
    ids=["sample", "integrate", "log_likelihood", "log_likelihood-scipy", "ito_log_density", "superpose"],
)
def test_every_long_loop_takes_progress(call, monkeypatch):
    p, data = dc.VPSDE(), _gaussian(2)
    score, x = dc.exact_score(p, data), data.sample(4, rng=0)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    plain = call(p, score, x, False)
    assert terminal.getvalue() == ""
    shown = call(p, score, x, None)
    out = terminal.getvalue()
    assert "100%" in out, out  # the bar ran to its end
    a = getattr(plain, "x", getattr(plain, "value", None))
    b = getattr(shown, "x", getattr(shown, "value", None))
    np.testing.assert_array_equal(a, b)  # a bar changes nothing
    with pytest.raises(TypeError, match=r"progress must be None .* True or False; got 'yes'"):
        call(p, score, x, "yes")


def test_progress_true_without_tqdm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    with pytest.raises(ImportError, match=r"progress=True needs tqdm; install it with `pip install tqdm`"):
        progress_bar(True, 3, desc="x")
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with progress_bar(None, 3, desc="x") as bar:  # the default degrades to no bar
        bar.update(3)
    assert sys.stderr.getvalue() == ""


def test_empty_batch_still_checks_progress():
    p = dc.VPSDE()
    with pytest.raises(TypeError, match="progress must be"):
        dc.integrate(dc.ProbabilityFlowODE(p, lambda x, t: -x), np.zeros((0, 2)), [1.0, 0.5], "euler", progress=1)


# -- the divergence default ---------------------------------------------------------------------------
def test_auto_divergence_is_exact_where_cheap_and_hutchinson_above():
    p = dc.VPSDE()
    big = _gaussian(AUTO_EXACT_MAX_DIM + 1)
    small = _gaussian(AUTO_EXACT_MAX_DIM)
    closed = dc.log_likelihood(p, dc.exact_score(p, big), big.sample(3, rng=0), steps=2)
    assert (closed.divergence, closed.probes) == ("exact", 1)  # closed form at any D
    low = dc.log_likelihood(p, _plain(dc.exact_score(p, small)), small.sample(3, rng=0), steps=2)
    assert (low.divergence, low.probes, low.probe_integrals) == ("exact", 1, None)
    high = dc.log_likelihood(p, _plain(dc.exact_score(p, big)), big.sample(3, rng=0), steps=2, rng=0)
    assert (high.divergence, high.probes) == ("hutchinson", HUTCHINSON_PROBES)
    assert high.probe_integrals.shape == (HUTCHINSON_PROBES, 3) and np.all(high.stderr > 0)
    same = dc.log_likelihood(
        p, _plain(dc.exact_score(p, big)), big.sample(3, rng=0), steps=2, rng=0, divergence="hutchinson"
    )
    np.testing.assert_array_equal(high.value, same.value)  # "auto" is exactly the stated Hutchinson
    eight = dc.log_likelihood(p, _plain(dc.exact_score(p, big)), big.sample(3, rng=0), steps=2, rng=0, probes=8)
    assert eight.probes == 8
    net = MLPField(32, width=8, depth=1, rng=0, dtype=torch.float64)
    torch_auto = dc.log_likelihood(p, net, torch.zeros((2, 32), dtype=torch.float64), steps=2, rng=0)
    assert (torch_auto.divergence, torch_auto.probes) == ("hutchinson", HUTCHINSON_PROBES)


def test_auto_hutchinson_on_a_network_is_unbiased():
    # 600 copies of one point of a 20-D network: "auto" takes Hutchinson (4 probes each); the copies
    # share the trajectory, so their mean estimates the exact-divergence run: within 4 standard errors
    d, r = 20, 600
    net = MLPField(d, width=16, depth=2, rng=1, dtype=torch.float64)
    point = torch.as_tensor(np.random.default_rng(2).standard_normal((1, d)))
    kw = dict(steps=3, method="euler", t_min=0.1)
    with torch.no_grad():
        exact = dc.log_likelihood(dc.VPSDE(), net, point, divergence="exact", **kw).value[0]
        auto = dc.log_likelihood(dc.VPSDE(), net, point.repeat(r, 1), rng=3, **kw)
    assert auto.divergence == "hutchinson"
    v = auto.value.numpy()
    se = v.std(ddof=1) / math.sqrt(r)
    assert se > 0 and abs(v.mean() - float(exact)) < 4 * se


# -- batch_size: equal to the unbatched result ----------------------------------------------------------
class _Recorder:
    """A score that records the largest batch it was called with."""

    def __init__(self, field):
        self.field, self.largest = field, 0

    def __call__(self, x, t):
        self.largest = max(self.largest, x.shape[0])
        return self.field(x, t)


@pytest.mark.parametrize(
    ("method", "divergence", "probes"),
    [("rk4", "exact", None), ("rk4", "hutchinson", 3), ("adaptive", "exact", None), ("scipy_rk45", "hutchinson", 2)],
)
def test_batched_log_likelihood_equals_the_unbatched_one(method, divergence, probes):
    p, data = dc.VPSDE(), _gaussian(3, seed=4)
    x = data.sample(11, rng=5)
    field = dc.exact_score(p, data)
    kw = dict(method=method, divergence=divergence, probes=probes, rng=6, steps=8, rtol=1e-6, atol=1e-6)
    whole = dc.log_likelihood(p, _plain(field), x, **kw)
    rec = _Recorder(field)
    parts = dc.log_likelihood(p, rec, x, batch_size=4, **kw)
    # points never interact: the same numbers to rounding (central differences of one row do not
    # depend on the other rows), the same NFE, and the score never saw more than one chunk
    np.testing.assert_allclose(parts.value, whole.value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(parts.stderr, whole.stderr, rtol=1e-10, atol=1e-12)
    assert parts.nfe == whole.nfe
    m = 3 if divergence == "exact" else probes  # central differences: 1 + 2m shifted copies of a chunk
    assert rec.largest == (1 + 2 * m) * 4


def test_batched_autograd_and_closed_form_equal_unbatched():
    p, data = dc.VPSDE(), _gaussian(3, seed=4)
    x = data.sample(9, rng=5)
    field = dc.exact_score(p, data)
    for score, xs in ((field, x), (_plain(field), torch.as_tensor(x))):
        for div in ("exact", "hutchinson"):
            whole = dc.log_likelihood(p, score, xs, divergence=div, rng=1, steps=5)
            parts = dc.log_likelihood(p, score, xs, divergence=div, rng=1, steps=5, batch_size=2)
            np.testing.assert_allclose(np.asarray(parts.value), np.asarray(whole.value), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        dc.divergence(_plain(field), x, 0.3, batch_size=2), dc.divergence(_plain(field), x, 0.3), rtol=1e-12
    )


def test_batched_ito_and_superpose_equal_unbatched():
    p, data = dc.VPSDE(), _gaussian(2, seed=7)
    score = dc.exact_score(p, data)
    x = p.prior_sample((7, 2), rng=0)
    whole = dc.ito_log_density(p, score, x, steps=12, rng=3)
    rec = _Recorder(score)
    parts = dc.ito_log_density(p, rec, x, steps=12, rng=3, batch_size=3)
    np.testing.assert_allclose(parts.x, whole.x, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(parts.log_density, whole.log_density, rtol=1e-13, atol=1e-13)
    assert rec.largest == 3 and parts.nfe == whole.nfe
    other = dc.exact_score(p, _gaussian(2, seed=8))
    s_whole = dc.superpose(p, [score, other], x, mode="and", steps=12, rng=3)
    s_parts = dc.superpose(p, [score, other], x, mode="and", steps=12, rng=3, batch_size=2)
    np.testing.assert_allclose(s_parts.model_log_densities, s_whole.model_log_densities, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_bad_batch_size_is_named(bad):
    p, data = dc.VPSDE(), _gaussian(2)
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        dc.log_likelihood(p, dc.exact_score(p, data), data.sample(2, rng=0), steps=2, batch_size=bad)
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        dc.ito_log_density(p, dc.exact_score(p, data), data.sample(2, rng=0), steps=2, batch_size=bad)


# -- summaries ----------------------------------------------------------------------------------------
def _expected_log_density(process, data: dc.Gaussian, t: float) -> float:
    """``E_{x ~ p_0}[log p_t(x)]`` in closed form for Gaussian data: ``-(tr(C_t^-1 C_0) + logdet(2 pi C_t)) / 2``."""
    pt = dc.marginal(process, data, t)
    c0, ct = np.asarray(data.cov), np.asarray(pt.cov)
    dm = np.asarray(pt.mean) - np.asarray(data.mean)
    inv = np.linalg.inv(ct)
    return -0.5 * (np.trace(inv @ c0) + dm @ inv @ dm + np.linalg.slogdet(2 * np.pi * ct)[1])


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_summary_mean_covers_the_expected_log_likelihood(divergence):
    # 400 data points, exact score and exact prior law: the summary's mean must lie within 4 of its
    # own standard errors of E[log p_{t_min}(x)] (closed form); the rk4 error (< 1e-6 nats) is
    # negligible against that standard error (~0.1 nats)
    p, data = dc.VPSDE(), _gaussian(6, seed=1)
    x = data.sample(400, rng=2)
    res = dc.log_likelihood(
        p, dc.exact_score(p, data), x, steps=40, divergence=divergence, probes=None if divergence == "exact" else 4,
        rng=3, prior_log_prob=dc.marginal(p, data, 1.0).log_prob,
    )  # fmt: skip
    s = res.summary()
    assert s.n == 400 and s.unit == "nats" and "±" in str(s)
    assert abs(s.mean - _expected_log_density(p, data, T_MIN)) < 4 * s.stderr
    assert (s.estimator_stderr == 0) == (divergence == "exact")


def test_estimator_stderr_is_the_spread_over_probe_draws():
    # the same 40 points, 300 times over with fresh probes (one call: each copy draws its own): the
    # spread of the 300 means is the Hutchinson part of the error, which each summary's
    # estimator_stderr estimates; ratio 1 within 20 % (the sample std of 300 means has ~4 % error)
    p, data = dc.VPSDE(), dc.GaussianMixture(
        np.array([0.5, 0.5]), np.array([[1.0] * 8, [-1.0] * 8]), np.stack([0.3 * np.eye(8), np.eye(8)])
    )
    n, reps = 40, 300
    x = data.sample(n, rng=0)
    res = dc.log_likelihood(
        p, dc.exact_score(p, data), np.tile(x, (reps, 1)), divergence="hutchinson", probes=4, rng=1, steps=8
    )
    values, stderrs = res.value.reshape(reps, n), res.stderr.reshape(reps, n)
    reported = np.sqrt(np.mean(np.sum(stderrs**2, axis=1))) / n
    measured = np.std(values.mean(axis=1), ddof=1)
    assert abs(measured / reported - 1) < 0.2, (measured, reported)
    one = dc.LogLikelihood(values[0], stderrs[0], 0, None, None, None, x, T_MIN, "hutchinson", "rk4", 4).summary()
    assert abs(one.estimator_stderr - math.sqrt(np.sum(stderrs[0] ** 2)) / n) < 1e-15
    assert one.estimator_stderr < one.stderr  # for these points the data spread dominates


def test_summary_of_one_point_and_of_none():
    p, data = dc.VPSDE(), _gaussian(2)
    one = dc.log_likelihood(p, dc.exact_score(p, data), data.sample(1, rng=0), steps=2).summary()
    assert one.n == 1 and math.isnan(one.stderr) and math.isnan(one.std)
    with pytest.raises(ValueError, match="at least one point"):
        dc.log_likelihood(p, dc.exact_score(p, data), np.zeros((0, 2)), steps=2).summary()


# -- bits per dimension --------------------------------------------------------------------------------
def test_bits_per_dim_keeps_the_standard_error():
    p, data = dc.VPSDE(), _gaussian(4, seed=2)
    x = data.sample(50, rng=0)
    ll = dc.log_likelihood(p, dc.exact_score(p, data), x, divergence="hutchinson", probes=4, rng=1, steps=10)
    bpd = dc.bits_per_dim(ll)  # dim from the points; continuous: no offset
    scale = 1 / (4 * math.log(2))
    assert isinstance(bpd, dc.BitsPerDim) and bpd.dim == 4 and bpd.offset == 0.0 and bpd.n_bins is None
    np.testing.assert_allclose(bpd.value, -scale * ll.value, rtol=1e-14)
    np.testing.assert_allclose(bpd.stderr, scale * ll.stderr, rtol=1e-14)
    s, sl = bpd.summary(), ll.summary()
    assert s.unit == "bits/dim" and abs(s.mean + scale * sl.mean) < 1e-12
    assert abs(s.stderr - scale * sl.stderr) < 1e-14 and abs(s.estimator_stderr - scale * sl.estimator_stderr) < 1e-14
    q = dc.bits_per_dim(ll, n_bins=256, low=0.0, high=1.0)
    np.testing.assert_allclose(q.value, bpd.value + 8.0, rtol=1e-14)
    assert abs(q.summary().stderr - s.stderr) < 1e-14  # an offset moves the mean, not its error


def test_dim_is_read_from_points_of_any_shape():
    p = dc.VPSDE()
    x = np.random.default_rng(0).standard_normal((3, 2, 2))
    ll = dc.log_likelihood(p, lambda y, t: -y, x, steps=2)
    assert dc.bits_per_dim(ll).dim == 4


def test_continuous_data_get_no_invented_bits():
    # N(0, I) data in 3-D: E[-log p] / (d ln 2) = log2(2 pi e) / 2 = 2.047 bits per dimension, not
    # the 9.047 an unstated 8-bit [-1, 1] quantisation would report; within 4 standard errors
    d, n = 3, 4000
    law = dc.Gaussian(np.zeros(d), np.eye(d))
    bpd = dc.bits_per_dim(law.log_prob(law.sample(n, rng=0)), d)
    assert abs(bpd.mean() - 0.5 * math.log2(2 * math.pi * math.e)) < 4 * bpd.std(ddof=1) / math.sqrt(n)


def test_bits_per_dim_keeps_arrays_and_floats():
    assert isinstance(dc.bits_per_dim(-2.0, 2), float)
    t = dc.bits_per_dim(torch.tensor([-1.0, -2.0], dtype=torch.float64), 1)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), [1 / math.log(2), 2 / math.log(2)], rtol=1e-14)


def test_quantisation_must_be_stated_in_full():
    with pytest.raises(ValueError, match=r"n_bins=256 needs the range of the dequantised data, low= and high="):
        dc.bits_per_dim(np.zeros(2), 2, n_bins=256)
    with pytest.raises(ValueError, match=r"n_bins=256 needs .* got low=-1.0, high=None"):
        dc.bits_per_dim(np.zeros(2), 2, n_bins=256, low=-1.0)
    with pytest.raises(ValueError, match="low and high describe quantised data and need n_bins"):
        dc.bits_per_dim(np.zeros(2), 2, low=-1.0, high=1.0)
    with pytest.raises(TypeError, match=r"dim .* is required unless log_likelihood is a LogLikelihood"):
        dc.bits_per_dim(np.zeros(2))


# -- fit: EMA, callback, validation ------------------------------------------------------------------------
class _Tiny(torch.nn.Module):
    """``f(x, t) = W x + b`` with a buffer that counts the forward calls (copied, not averaged, by the EMA)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.lin = torch.nn.Linear(2, 2, dtype=torch.float64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(2, 2, generator=gen, dtype=torch.float64))
            self.lin.bias.zero_()
        self.register_buffer("calls", torch.zeros((), dtype=torch.float64))

    def forward(self, x, t):
        self.calls += 1
        return self.lin(x)


_DATA = np.random.default_rng(0).standard_normal((64, 2))
_LOSS = functools.partial(denoising_loss, process=dc.VPSDE())


def test_ema_is_the_closed_form_recursion():
    # bar_K = beta^K theta_0 + (1 - beta) sum_k beta^(K - k) theta_k, with theta_k the weights after
    # step k (recorded by the callback); rounding only
    beta, steps = 0.8, 15
    model = _Tiny()
    thetas = [copy.deepcopy(dict(model.named_parameters()))]

    def record(step, loss, m):
        thetas.append({k: v.detach().clone() for k, v in m.named_parameters()})

    result = fit(model, _LOSS, _DATA, steps=steps, batch_size=16, lr=0.05, rng=0, progress=False, ema=beta,
                 callback=record)  # fmt: skip
    assert result.ema_model is not model and len(thetas) == steps + 1
    for name, avg in result.ema_model.named_parameters():
        closed = beta**steps * thetas[0][name].detach() + (1 - beta) * sum(
            beta ** (steps - k) * thetas[k][name] for k in range(1, steps + 1)
        )
        torch.testing.assert_close(avg, closed, rtol=1e-12, atol=1e-14)
        assert not torch.equal(avg, dict(model.named_parameters())[name])  # the model keeps raw weights
        assert not avg.requires_grad
    assert float(result.ema_model.calls) == float(model.calls) >= steps  # buffers copied, not averaged


def test_callback_sees_every_step_and_can_stop():
    seen = []

    def stop_at_seven(step, loss, m):
        seen.append((step, loss, m))
        return step == 7

    model = MLPField(2, width=8, depth=1, rng=0)
    result = fit(model, _LOSS, _DATA, steps=20, batch_size=16, rng=0, progress=False, callback=stop_at_seven)
    assert result.steps == 7 and result.stopped_early and result.losses.shape == (7,)
    assert [s for s, _, _ in seen] == list(range(1, 8)) and all(m is model for _, _, m in seen)
    np.testing.assert_array_equal([v for _, v, _ in seen], result.losses)
    full = fit(MLPField(2, width=8, depth=1, rng=0), _LOSS, _DATA, steps=7, batch_size=16, rng=0, progress=False)
    np.testing.assert_array_equal(full.losses, result.losses)  # stopping changes nothing before it
    assert not full.stopped_early


def test_validation_runs_on_the_ema_model_at_its_steps():
    models = []

    def validate(m):
        models.append(m)
        return torch.tensor(float(len(models)))

    model = MLPField(2, width=8, depth=1, rng=0)
    result = fit(model, _LOSS, _DATA, steps=10, batch_size=16, rng=0, progress=False, ema=0.5, validate=validate,
                 validate_every=3)  # fmt: skip
    assert result.validation_steps.tolist() == [3, 6, 9, 10] and result.validation.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert all(m is result.ema_model for m in models)
    plain = fit(model, _LOSS, _DATA, steps=10, batch_size=16, rng=0, progress=False, validate=lambda m: 1.5)
    assert plain.validation_steps.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # default: steps // 10
    assert plain.ema_model is None


@pytest.mark.parametrize(
    ("kwargs", "error", "rule"),
    [
        (dict(ema=1.0), ValueError, r"ema .* must lie in \(0, 1\); got 1.0"),
        (dict(ema=0.0), ValueError, "ema must be > 0"),
        (dict(ema=math.nan), ValueError, "ema"),
        (dict(callback=3), TypeError, "callback must be callable"),
        (dict(callback=lambda s, v, m: "stop"), TypeError, "callback must return True .* got str"),
        (dict(validate="loss"), TypeError, "validate must be callable"),
        (dict(validate=lambda m: "x"), TypeError, "validate must return a number"),
        (dict(validate=lambda m: torch.ones(2)), TypeError, r"a tensor of shape \(2,\)"),
        (dict(validate_every=2), ValueError, "validate_every=2 needs validate"),
        (dict(validate=lambda m: 0.0, validate_every=0), ValueError, "validate_every must be >= 1"),
        (dict(progress="on"), TypeError, "progress must be None"),
    ],
)
def test_fit_rejects_bad_hooks(kwargs, error, rule):
    kwargs = {"progress": False, **kwargs}
    with pytest.raises(error, match=rule):
        fit(MLPField(2, width=4, depth=1, rng=0), _LOSS, _DATA, steps=2, batch_size=8, rng=0, **kwargs)


def test_fit_progress_redraws_rarely_in_a_log(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    fit(MLPField(2, width=4, depth=1, rng=0), functools.partial(dsm_loss, process=dc.VPSDE()), _DATA, steps=200,
        batch_size=8, rng=0, progress=True)  # fmt: skip
    assert "200/200" in log.getvalue() and log.getvalue().count("\r") <= 3


# -- the solver contract is documented in full ----------------------------------------------------------
def test_abstract_solver_documents_everything_a_custom_solver_sets():
    doc = AbstractSolver.__doc__
    public = [k for k in vars(AbstractSolver) if not k.startswith("_")] + list(AbstractSolver.__annotations__)
    for name in {*public, "state", "noise"}:
        assert f"{name} :" in doc or f"``{name}``" in doc, name
    assert "step(dynamics, x, t0, t1, noise, state) -> (x_next, state_next)" in doc
