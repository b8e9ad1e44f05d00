"""Converters between eps, x0, v, score and velocity: round trips, agreement with the exact
fields, endpoint guards and per-sample times."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from strategies import skewed_mixture_2d

import diffcore as dc

EPS = np.finfo(np.float64).eps
PAIRS = list(itertools.permutations(dc.PREDICTIONS, 2))
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def is_song2021(process) -> bool:
    return isinstance(process, dc.VESDE) and process.variant == "song2021"


def pair_matrix(process, t, kind):
    """The row ``[c_x0, c_eps]`` with ``prediction = c_x0 x_0 + c_eps eps`` (score: -eps/sigma).

    Written from the definitions in the module docstring, independently of the converters.
    """
    a, s = process.alpha(t), process.sigma(t)
    return {
        "x0": [1.0, 0.0],
        "eps": [0.0, 1.0],
        "v": [-s, a],
        "score": [0.0, -1.0 / s],
        "velocity": [process.d_alpha(t), process.d_sigma(t)],
    }[kind]


def conversion_condition(process, t, source, target):
    """cond of (x, source) -> (x0, eps) times cond of (x0, eps) -> (x, target): the factor by
    which relative rounding errors can grow in a round trip through ``target``."""
    a, s = process.alpha(t), process.sigma(t)
    conds = [np.linalg.cond(np.array([[a, s], pair_matrix(process, t, k)])) for k in (source, target)]
    return conds[0] * conds[1]


# -- round trips -------------------------------------------------------------------------------


@fixture_ok
@given(
    t=st.floats(0.02, 0.98),
    pair=st.sampled_from(PAIRS),
    x=arrays(np.float64, (3, 2), elements=st.floats(-5, 5)),
    value=arrays(np.float64, (3, 2), elements=st.floats(-5, 5)),
)
def test_round_trip(process, t, pair, x, value):
    # A round trip source -> target -> source is the identity up to rounding, amplified at most by
    # the condition numbers of the two linear maps through (x0, eps): 64 eps cond (|x| + |value|),
    # in the scale of the source (measured <= 1 eps cond).
    source, target = pair
    there = dc.convert(value, x, t, process, source=source, target=target)
    back = dc.convert(there, x, t, process, source=target, target=source)
    kappa = conversion_condition(process, t, source, target)
    scale = np.abs(value).max() + np.abs(x).max() * max(1.0, np.abs(pair_matrix(process, t, source)).max())
    assert np.all(np.abs(back - value) <= 64 * EPS * kappa * scale + 1e-300)


@fixture_ok
@given(t=st.floats(0.02, 0.98), x0=arrays(np.float64, (4, 2), elements=st.floats(-5, 5)))
def test_conversions_agree_with_the_definitions(process, t, x0):
    # build (x, prediction) from a known pair (x0, eps) and check every converter output
    eps = np.flip(x0, axis=0) * 0.7 + 0.1
    a, s = process.alpha(t), process.sigma(t)
    x = a * x0 + s * eps
    truth = {k: pair_matrix(process, t, k)[0] * x0 + pair_matrix(process, t, k)[1] * eps for k in dc.PREDICTIONS}
    for source, target in PAIRS:
        out = dc.convert(truth[source], x, t, process, source=source, target=target)
        kappa = conversion_condition(process, t, source, target)
        scale = np.abs(truth[target]).max() + np.abs(x0).max() + np.abs(eps).max()
        assert np.all(np.abs(out - truth[target]) <= 64 * EPS * kappa * scale), (source, target)


# -- agreement with the exact fields -----------------------------------------------------------


@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 0.95])
def test_converted_exact_score_is_exact_denoiser_and_flow_drift(process, t):
    gm = skewed_mixture_2d()
    law = dc.marginal(process, gm, t)
    x = law.sample(64, rng=np.random.default_rng(4))
    score = dc.exact_score(process, gm)
    denoiser = dc.exact_denoiser(process, gm)
    s, d = score(x, t), denoiser(x, t)
    a, sig = process.alpha(t), process.sigma(t)
    # x0 = (x + sigma^2 s)/alpha: rounding a few eps of |x| + sigma^2 |s|, divided by alpha
    x0 = dc.convert(s, x, t, process, source="score", target="x0")
    tol = 64 * EPS * (np.abs(x) + sig**2 * np.abs(s) + a * np.abs(d)).max() / a
    assert np.max(np.abs(x0 - d)) <= tol
    # velocity from the score is the probability-flow drift f x - g^2/2 s (same formula: ~eps)
    ode = dc.ProbabilityFlowODE(process, score)
    drift = ode.drift(x, t)
    u = dc.convert(s, x, t, process, source="score", target="velocity")
    size = np.abs(process.drift_coef(t) * x) + np.abs(process.diffusion_squared(t) * s)
    assert np.all(np.abs(u - drift) <= 16 * EPS * size)
    # velocity from the denoiser, alpha' x0 + sigma' eps, is the same field by a different
    # formula: equal because f = alpha'/alpha and g^2 = 2 sigma sigma' - 2 f sigma^2.  Rounding:
    # a few eps of each term, with eps = (x - alpha x0)/sigma amplifying by |sigma'| / sigma.
    u_x0 = dc.convert(d, x, t, process, source="x0", target="velocity")
    ds = process.d_sigma(t)
    size = size + np.abs(process.d_alpha(t) * d) + abs(ds) * (np.abs(x) + a * np.abs(d)) / sig
    assert np.all(np.abs(u_x0 - drift) <= 64 * EPS * size), np.max(np.abs(u_x0 - drift) / size) / EPS


def test_reparametrize_eps_model_is_a_score():
    gm = skewed_mixture_2d()
    p = dc.VPSDE()
    score = dc.exact_score(p, gm)

    def eps_model(x, t):  # the exact noise prediction, eps = -sigma score
        sig = p.sigma(t)
        return -(sig if np.ndim(sig) == 0 else sig[:, None]) * score(x, t)

    wrapped = dc.reparametrize(eps_model, p, source="eps")
    assert callable(wrapped)
    x = gm.sample(16, rng=np.random.default_rng(2))
    for t in (0.1, 0.6, np.linspace(0.1, 0.9, 16)):
        np.testing.assert_allclose(wrapped(x, t), score(x, t), rtol=1e-12, atol=1e-12)
    x0 = dc.reparametrize(eps_model, p, source="eps", target="x0")(x, 0.4)
    np.testing.assert_allclose(x0, dc.exact_denoiser(p, gm)(x, 0.4), rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="model must be callable"):
        dc.reparametrize("eps", p, source="eps")
    with pytest.raises(ValueError, match="unknown source"):
        dc.reparametrize(eps_model, p, source="noise")


# -- endpoint guards ---------------------------------------------------------------------------


def test_division_by_vanishing_sigma_raises(process):
    x, value = np.ones((2, 2)), np.full((2, 2), 0.5)
    if is_song2021(process):  # sigma(0) = sigma_min > 0: nothing to guard
        assert np.all(np.isfinite(dc.convert(value, x, 0.0, process, source="x0", target="score")))
        return
    for target in ("score", "eps"):
        with pytest.raises(ValueError, match=r"sigma\(t\)") as info:
            dc.convert(value, x, 0.0, process, source="x0", target=target)
        assert "x0 -> " + target in str(info.value) and "t = 0.0" in str(info.value)
    with pytest.raises(ValueError, match=r"sigma\(t\)"):
        dc.convert(value, x, np.array([0.0, 0.5]), process, source="x0", target="score")
    # and the conversions that need no division by sigma still work at t = 0
    np.testing.assert_array_equal(dc.convert(value, x, 0.0, process, source="eps", target="x0"), x)


def test_division_by_vanishing_alpha_raises():
    x, value = np.ones((2, 2)), np.full((2, 2), 0.5)
    cosine = dc.CosineVPSDE(end=1.0)
    rectified = dc.AffineProcess(lambda t: 1 - t, lambda t: t)  # alpha(1) = 0 as well
    for p in (cosine, rectified):
        assert p.alpha(1.0) == 0.0
        for source in ("eps", "score"):
            with pytest.raises(ValueError, match=r"alpha\(t\)") as info:
                dc.convert(value, x, 1.0, p, source=source, target="x0")
            assert f"{source} -> x0" in str(info.value) and "t = 1.0" in str(info.value)
        with pytest.raises(ValueError, match=r"alpha\(t\)"):
            dc.convert(value, x, np.array([0.5, 1.0]), p, source="eps", target="x0")
        # no division by alpha: fine at t = 1 (sigma = 1 there)
        np.testing.assert_allclose(dc.convert(value, x, 1.0, p, source="eps", target="score"), -value, rtol=1e-15)
        np.testing.assert_allclose(dc.convert(value, x, 1.0, p, source="x0", target="v"), -value, rtol=1e-15)


def test_score_velocity_at_time_zero_for_vp():
    # u = f x - g^2/2 s needs no division by alpha or sigma: fine at t = 0, where g^2 = beta_min
    p = dc.VPSDE()
    rng = np.random.default_rng(0)
    x, s = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    u = dc.convert(s, x, 0.0, p, source="score", target="velocity")
    np.testing.assert_allclose(u, -0.5 * p.beta_min * x - 0.5 * p.beta_min * s, rtol=1e-15)
    back = dc.convert(u, x, 0.0, p, source="velocity", target="score")
    np.testing.assert_allclose(back, s, rtol=1e-13, atol=1e-14)
    # velocity from x0 needs sigma'(0), infinite for sigma ~ sqrt(t): refused
    with pytest.raises(ValueError, match=r"sigma'\(t\)"):
        dc.convert(s, x, 0.0, p, source="x0", target="velocity")


# -- per-sample times and validation -----------------------------------------------------------


@fixture_ok
@given(pair=st.sampled_from(PAIRS))
def test_per_sample_times_agree_row_by_row(process, pair):
    source, target = pair
    rng = np.random.default_rng(3)
    n = 6
    t = np.linspace(0.05, 0.95, n)
    x, value = rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
    batch = dc.convert(value, x, t, process, source=source, target=target)
    rows = np.concatenate(
        [
            dc.convert(value[i : i + 1], x[i : i + 1], float(t[i]), process, source=source, target=target)
            for i in range(n)
        ]
    )
    # the same formulas evaluated per row: agreement to rounding (a few ulp of the row's scale)
    np.testing.assert_allclose(batch, rows, rtol=1e-12, atol=1e-12 * np.abs(rows).max())


def test_unknown_names_and_bad_times_raise():
    p = dc.VPSDE()
    x = np.ones((2, 2))
    with pytest.raises(ValueError, match="unknown target"):
        dc.convert(x, x, 0.5, p, source="eps", target="noise")
    with pytest.raises(ValueError, match="unknown source"):
        dc.convert(x, x, 0.5, p, source="b", target="eps")
    with pytest.raises(ValueError, match="shape"):
        dc.convert(x, x, np.array([0.1, 0.2, 0.3]), p, source="eps", target="x0")
    np.testing.assert_array_equal(dc.convert(x, x, 0.5, p, source="eps", target="eps"), x)
