"""Wasserstein-2: exact (POT emd), closed form between Gaussians, sliced, and the finite-sample floor.

Round-off floor used below.  POT builds the squared-distance matrix as
``|x|^2 + |y|^2 - 2 x.y``, whose absolute error is a few ``eps max|x|^2`` (``~1e-14`` for points
in ``[-5, 5]^3``); the square root of the optimal cost turns an error ``delta`` of ``W_2^2``
into ``sqrt(delta) ~ 1e-7`` on ``W_2`` when ``W_2`` is near zero.  The same holds for the trace
cancellation in the Gaussian formula.  So distances that are zero or equal in exact arithmetic
are compared with ``ATOL = 1e-6`` (and ``RTOL = 1e-9`` relative), far below any real error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import diffcore as dc
from tests.strategies import cloud_pairs, finite, gaussians, simplex_weights, spd_matrices

ATOL, RTOL = 1e-6, 1e-9
few = settings(max_examples=25)


def close(a, b, atol: float = ATOL, rtol: float = RTOL) -> bool:
    return abs(float(a) - float(b)) <= atol + rtol * abs(float(b))


# -- exact w2 between samples ----------------------------------------------------------------


@few
@given(cloud_pairs())
def test_w2_symmetric(pair):
    x, y = pair
    assert close(dc.w2(x, y), dc.w2(y, x))


@few
@given(cloud_pairs(), st.data())
def test_w2_symmetric_with_weights(pair, data):
    x, y = pair
    a, b = data.draw(simplex_weights(x.shape[0])), data.draw(simplex_weights(y.shape[0]))
    assert close(dc.w2(x, y, a, b), dc.w2(y, x, b, a))


@few
@given(cloud_pairs())
def test_w2_zero_on_identical_samples(pair):
    x, _ = pair
    assert float(dc.w2(x, x.copy())) <= ATOL


@few
@given(cloud_pairs(), st.data())
def test_w2_of_a_shift_is_its_length(pair, data):
    # for Y = X' + a with X' ~ mu independent of the coupling, E|X - Y|^2 = E|X - X'|^2 + |a|^2
    # (the cross term vanishes: X and X' have the same mean), minimised by X' = X: W2 = |a|,
    # whatever the weights of mu
    x, _ = pair
    shift = data.draw(arrays(np.float64, (x.shape[1],), elements=finite))
    weights = data.draw(simplex_weights(x.shape[0]))
    expected = float(np.linalg.norm(shift))
    assert close(dc.w2(x, x + shift), expected)
    assert close(dc.w2(x, x + shift, weights, weights), expected)


@few
@given(cloud_pairs())
def test_w2_duplicated_points_with_halved_weights(pair):
    x, y = pair
    doubled = np.concatenate([x, x])
    half = np.full(doubled.shape[0], 0.5 / x.shape[0])
    assert close(dc.w2(doubled, y, a=half), dc.w2(x, y))
    uniform = np.full(x.shape[0], 1.0 / x.shape[0])
    assert close(dc.w2(x, y, a=uniform), dc.w2(x, y))


@few
@given(cloud_pairs(dim=1, equal_size=True))
def test_w2_in_1d_is_the_sorted_matching(pair):
    # in 1-D the monotone (sorted) matching is optimal: W2^2 = mean((x_(i) - y_(i))^2)
    x, y = pair
    expected = math.sqrt(np.mean((np.sort(x[:, 0]) - np.sort(y[:, 0])) ** 2))
    assert close(dc.w2(x, y), expected)


@few
@given(cloud_pairs(n_max=1))
def test_w2_between_two_diracs_is_their_distance(pair):
    x, y = pair
    assert close(dc.w2(x, y), np.linalg.norm(x[0] - y[0]))


def test_w2_known_value():
    # {0, 1} against {3}: every unit of mass moves to 3, W2^2 = (9 + 4) / 2
    x, y = np.array([[0.0], [1.0]]), np.array([[3.0]])
    assert close(dc.w2(x, y), math.sqrt(6.5))
    # weights (1/4, 3/4): W2^2 = 9/4 + 4 * 3/4
    assert close(dc.w2(x, y, a=np.array([0.25, 0.75])), math.sqrt(5.25))


# -- sliced w2 -------------------------------------------------------------------------------


@few
@given(cloud_pairs(), st.integers(0, 2**16))
def test_sliced_w2_at_most_w2(pair, seed):
    # a unit projection is 1-Lipschitz, so W2(theta#mu, theta#nu) <= W2(mu, nu) for every theta;
    # the mean of the squares over the drawn directions is then <= W2^2: exact, no MC slack
    x, y = pair
    assert float(dc.sliced_w2(x, y, n_projections=8, rng=seed)) <= float(dc.w2(x, y)) * (1 + RTOL) + ATOL


@few
@given(cloud_pairs(dim=1), st.integers(0, 2**16))
def test_sliced_w2_equals_w2_in_1d(pair, seed):
    # in 1-D every unit direction is +1 or -1, and W2 is invariant under x -> -x
    x, y = pair
    assert close(dc.sliced_w2(x, y, n_projections=3, rng=seed), dc.w2(x, y))


def test_sliced_w2_same_seed_same_value():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 3)), rng.standard_normal((25, 3))
    assert float(dc.sliced_w2(x, y, rng=5)) == float(dc.sliced_w2(x, y, rng=5))
    assert float(dc.sliced_w2(x, y, rng=5)) != float(dc.sliced_w2(x, y, rng=6))


def test_sliced_w2_of_isotropic_shift():
    # X vs X + a: direction theta gives exactly W2 = |theta.a|.  For theta uniform on the sphere
    # (theta.a)^2 = |a|^2 u with u ~ Beta(1/2, (d-1)/2): mean |a|^2 / d and variance
    # |a|^4 2 (d-1) / (d^2 (d+2)).  The mean over 4096 directions is within 5 standard errors.
    rng = np.random.default_rng(1)
    d, a = 3, np.array([1.0, -2.0, 0.5])
    x = rng.standard_normal((50, d))
    got = float(dc.sliced_w2(x, x + a, n_projections=4096, rng=2)) ** 2
    expected = float(a @ a) / d
    var_of_proj = float(a @ a) ** 2 * 2 * (d - 1) / (d**2 * (d + 2))
    assert abs(got - expected) <= 5 * math.sqrt(var_of_proj / 4096)


# -- w2 between Gaussians --------------------------------------------------------------------


@few
@given(gaussians())
def test_w2_gaussian_zero_for_identical_laws(g):
    assert float(dc.w2_gaussian(g.mean, g.cov, g.mean, g.cov)) <= ATOL


@few
@given(finite, st.floats(0.05, 3.0), finite, st.floats(0.05, 3.0))
def test_w2_gaussian_1d_closed_form(m1, s1, m2, s2):
    got = dc.w2_gaussian(np.array([m1]), np.array([[s1**2]]), np.array([m2]), np.array([[s2**2]]))
    assert close(got, math.hypot(m1 - m2, s1 - s2))


@few
@given(st.integers(1, 4).flatmap(lambda d: st.tuples(spd_matrices(d), spd_matrices(d), gaussians(d))), st.data())
def test_w2_gaussian_commuting_covariances(mats, data):
    # C1 = Q L1 Q^T, C2 = Q L2 Q^T commute: W2^2 = |m1 - m2|^2 + sum (sqrt l1 - sqrt l2)^2
    rot_src, _, g = mats
    d = g.dim
    _, q = np.linalg.eigh(rot_src)
    l1 = np.asarray(data.draw(st.lists(st.floats(0.05, 4.0), min_size=d, max_size=d)))
    l2 = np.asarray(data.draw(st.lists(st.floats(0.05, 4.0), min_size=d, max_size=d)))
    m2 = data.draw(arrays(np.float64, (d,), elements=finite))
    c1, c2 = (q * l1) @ q.T, (q * l2) @ q.T
    expected = math.sqrt(float(np.sum((g.mean - m2) ** 2) + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)))
    assert close(dc.w2_gaussian(g.mean, c1, m2, c2), expected)


@few
@given(st.integers(1, 4).flatmap(lambda d: st.tuples(gaussians(d), gaussians(d), gaussians(d))))
def test_w2_gaussian_symmetric_and_triangle(laws):
    g1, g2, g3 = laws

    def w(a, b):
        return float(dc.w2_gaussian(a.mean, a.cov, b.mean, b.cov))

    assert close(w(g1, g2), w(g2, g1))
    assert w(g1, g3) <= w(g1, g2) + w(g2, g3) + ATOL


@few
@given(gaussians(), st.data())
def test_w2_gaussian_of_a_shift_is_its_length(g, data):
    shift = data.draw(arrays(np.float64, (g.dim,), elements=finite))
    assert close(dc.w2_gaussian(g.mean + shift, g.cov, g.mean, g.cov), np.linalg.norm(shift))


@pytest.mark.parametrize("delta", [1e-9, 1e-6, 1e-3])
def test_w2_gaussian_resolves_tiny_distances_in_64d(delta):
    # C2 = (1 + delta)^2 C1 commutes with C1: W2 = delta sqrt(tr C1) exactly.  The trace formula
    # tr C1 + tr C2 - 2 tr(...) cancels to ~1e-7 absolute here and could not see delta = 1e-9;
    # the Procrustes residual keeps a relative accuracy of ~1e-6 even there (measured ~1e-7).
    from tests.conftest import random_gaussian

    g = random_gaussian(64)
    got = float(dc.w2_gaussian(g.mean, g.cov, g.mean, (1 + delta) ** 2 * g.cov))
    assert got == pytest.approx(delta * math.sqrt(np.trace(g.cov)), rel=1e-5)
    assert float(dc.w2_gaussian(g.mean, g.cov, g.mean, g.cov)) < 1e-12


def test_w2_gaussian_known_value():
    # N(0, I) vs N(0, 4 I) in 2-D: W2^2 = 2 (2 - 1)^2
    got = dc.w2_gaussian(np.zeros(2), np.eye(2), np.zeros(2), 4 * np.eye(2))
    assert close(got, math.sqrt(2.0))


# -- the finite-sample floor, and w2 between samples against the closed form -------------------

C1 = np.array([[1.0, 0.5], [0.5, 2.0]])
_ROT = np.array([[math.cos(1.0), -math.sin(1.0)], [math.sin(1.0), math.cos(1.0)]])
MU = dc.Gaussian(np.zeros(2), C1)
NU = dc.Gaussian(np.array([2.0, -1.0]), _ROT @ C1 @ _ROT.T)  # a rigid motion of MU: same floor


@pytest.fixture(scope="module")
def floor_2000() -> dc.FloorEstimate:
    return dc.w2_floor(MU, 2000, repeats=4, rng=10)


@pytest.mark.slow
def test_w2_between_samples_matches_closed_form(floor_2000):
    """|w2(x, y) - W2(mu, nu)| <= 2 * RMS floor, with n = 2000 samples of two 2-D Gaussians.

    Triangle inequality: ``|W2(mu_n, nu_n) - W2(mu, nu)| <= W2(mu_n, mu) + W2(nu_n, nu)``.
    ``W2^2`` is convex in each argument and ``mu = E[mu_n']`` for an independent copy
    ``mu_n'``, so ``E W2(mu_n, mu) <= (E W2^2(mu_n, mu_n'))^{1/2}``: the RMS of the floor.  NU is
    a rotation and translation of MU, so it has the same floor.  The right-hand side is thus at
    most 2 RMS floors in expectation (typically ~1.4: each term is ~RMS/sqrt(2)), and each term
    fluctuates by ~10% at n = 2000, so the bound fails only when the metric is wrong.
    """
    x, y = MU.sample(2000, rng=1), NU.sample(2000, rng=2)
    exact = float(dc.w2_gaussian(MU.mean, MU.cov, NU.mean, NU.cov))
    rms_floor = math.sqrt(np.mean(np.square(floor_2000.values)))
    assert exact > 10 * rms_floor  # the check is informative: the distance is far above the floor
    assert abs(float(dc.w2(x, y)) - exact) <= 2 * rms_floor


@pytest.mark.slow
def test_w2_floor_decreases_with_n(floor_2000):
    small = dc.w2_floor(MU, 250, repeats=8, rng=11)
    gap = small.mean - floor_2000.mean
    assert gap > 5 * math.hypot(small.stderr, floor_2000.stderr), (small, floor_2000)


def test_w2_floor_statistics():
    law = dc.Gaussian(np.zeros(2), np.eye(2))
    est = dc.w2_floor(law, 40, repeats=6, rng=3)
    assert len(est.values) == 6
    assert all(v > 0 for v in est.values)
    assert est.mean == pytest.approx(np.mean(est.values), rel=1e-12)
    assert est.stderr == pytest.approx(np.std(est.values, ddof=1) / math.sqrt(6), rel=1e-12)
    again = dc.w2_floor(law, 40, repeats=6, rng=3)
    assert again.values == est.values  # the same seed gives the same numbers
    one = dc.w2_floor(law, 40, repeats=1, rng=3)
    assert len(one.values) == 1 and math.isnan(one.stderr)


def test_w2_floor_accepts_a_mixture_and_a_torch_generator():
    import torch
    law = dc.GaussianMixture(np.array([0.5, 0.5]), np.array([[-2.0, 0.0], [2.0, 0.0]]), np.tile(np.eye(2), (2, 1, 1)))
    est = dc.w2_floor(law, 30, repeats=3, rng=torch.Generator().manual_seed(0))
    assert len(est.values) == 3 and est.mean > 0 and est.stderr >= 0
