"""Heat-diffusion geometry: exact heat kernels, Varadhan's formula and the heat-geodesic embedding.

Oracles: the two exact series of the circle against each other; the heat equation by finite
differences; total mass one by spectrally accurate quadrature; Varadhan's limit with its leading
correction derived from the Minakshisundaram–Pleijel expansion (rates measured by regression of
log error on log t); the cycle graph against the circle (rate in the mesh measured); Chebyshev
against the exact kernel within the proved bound; the Swiss roll's exact geodesics.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from numpy.polynomial.legendre import leggauss
from scipy import stats

import diffcore.geometry as g
from diffcore.geometry._embedding import _classical_mds, _stress


def _slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _on_meridian(angles: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(angles), np.zeros_like(angles), np.cos(angles)], axis=1)


NORTH = np.array([[0.0, 0.0, 1.0]])


# -- circle --------------------------------------------------------------------------------------
@pytest.mark.parametrize("radius", [1.0, 2.0])
@pytest.mark.parametrize("t", [0.02, 0.3, 1.0, 5.0])
def test_circle_image_series_equals_fourier_series(t, radius):
    theta, phi = np.linspace(-4.0, 4.0, 17), np.array([0.0, 1.0, -2.5, 3.1])
    images = g.heat_kernel_circle(theta, phi, t, radius=radius, method="images")
    fourier = g.heat_kernel_circle(theta, phi, t, radius=radius, method="fourier")
    # both are exact to rounding (truncated below e^-40 of the first term): 1e-12 leaves 50 ulp of h ~ 1
    np.testing.assert_allclose(images, fourier, rtol=0, atol=1e-12)


@pytest.mark.parametrize("radius", [1.0, 2.0])
def test_circle_kernel_solves_the_heat_equation(radius):
    """dh/dt = d^2h/ds^2 with s = r theta, by central differences (error O(dt^2 + ds^2) ~ 1e-6)."""
    t, dt, dth = 0.2, 1e-3, 1e-3
    theta = np.linspace(-3.0, 3.0, 25)

    def h(tt, th):
        return g.heat_kernel_circle(th, np.array([0.3]), tt, radius=radius)[:, 0]

    h_t = (h(t + dt, theta) - h(t - dt, theta)) / (2 * dt)
    h_ss = (h(t, theta + dth) - 2 * h(t, theta) + h(t, theta - dth)) / (dth * radius) ** 2
    # truncation ~ (dt^2 h_ttt + ds^2 h_ssss)/6 ~ 1e-6 * |h''''| relative; 1e-4 of the scale is safe,
    # and a kernel with the wrong r-scaling (e^{-m^2 t} for r = 2) is off by O(1)
    assert np.abs(h_t - h_ss).max() < 1e-4 * np.abs(h_t).max()


@pytest.mark.parametrize("t", [0.01, 0.5, 3.0])
def test_circle_kernel_integrates_to_one(t):
    # the trapezoidal rule on a periodic grid is spectrally accurate: 2000 nodes resolve e^{-s^2/4t} for t >= 0.01
    r = 1.5
    phi = np.linspace(0.0, 2 * math.pi, 2000, endpoint=False)
    h = g.heat_kernel_circle(np.array([0.7]), phi, t, radius=r)[0]
    assert abs(h.sum() * (2 * math.pi / len(phi)) * r - 1.0) < 1e-12
    assert h.min() > 0


# -- sphere --------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.01, 0.1, 1.0])
def test_sphere_kernel_integrates_to_one(t):
    """Gauss–Legendre in cos(theta) (exact for polynomials of degree < 800; h has degree ~ sqrt(40/t) <= 65)."""
    c, w = leggauss(400)
    h = g.heat_kernel_sphere(NORTH, _on_meridian(np.arccos(c)), t)[0]
    # rounding: 400 terms of size <= 1 / (4 pi t) = 8 at t = 0.01 -> a few 1e-13
    assert abs(2 * math.pi * (h * w).sum() - 1.0) < 1e-11


def test_sphere_kernel_solves_the_heat_equation():
    """dh/dt = (1/sin th) d/dth (sin th dh/dth), by central differences in t and in the polar angle."""
    t, dt, dth = 0.1, 1e-3, 1e-3
    th = np.linspace(0.3, 2.8, 15)

    def h(tt, a):
        return g.heat_kernel_sphere(NORTH, _on_meridian(a), tt)[0]

    h_t = (h(t + dt, th) - h(t - dt, th)) / (2 * dt)
    h_th = (h(t, th + dth) - h(t, th - dth)) / (2 * dth)
    h_thth = (h(t, th + dth) - 2 * h(t, th) + h(t, th - dth)) / dth**2
    lap = h_thth + h_th * np.cos(th) / np.sin(th)
    # O(1e-6) relative truncation; the flat Laplacian (no cot term) misses by O(1)
    assert np.abs(h_t - lap).max() < 1e-4 * np.abs(h_t).max()


@pytest.mark.parametrize("t", [0.1, 0.3, 2.0])
def test_sphere_kernel_is_positive_and_tends_to_uniform(t):
    """Positive as long as the antipodal value e^{-pi^2/4t} / (4 pi t) stays above the series' rounding,
    ~1e-16 / (4 pi t): t > pi^2 / (4 * 30) ~ 0.08 (at t = 0.05 the antipode reads -5e-17)."""
    h = g.heat_kernel_sphere(NORTH, _on_meridian(np.linspace(0.0, math.pi, 201)), t)[0]
    assert h.min() > 0
    # e^{-2t} is the slowest mode (l = 1): |h - 1/4pi| <= sum_l (2l+1)/4pi e^{-l(l+1)t}
    bound = sum((2 * k + 1) / (4 * math.pi) * math.exp(-k * (k + 1) * t) for k in range(1, 400))
    assert np.abs(h - 1 / (4 * math.pi)).max() <= bound * (1 + 1e-12)


def test_geodesic_distances_are_exact():
    theta = np.array([0.0, 1.0, 6.0, -3.0])
    d = g.geodesic_distance_circle(theta, theta, radius=2.0)
    np.testing.assert_allclose(d[0], 2.0 * np.array([0.0, 1.0, 2 * math.pi - 6.0, 3.0]), atol=1e-14)
    a = np.array([0.0, 0.3, 1.0, math.pi - 1e-9])
    np.testing.assert_allclose(g.geodesic_distance_sphere(NORTH, _on_meridian(a))[0], a, atol=1e-14)


# -- Varadhan ------------------------------------------------------------------------------------
def test_varadhan_on_the_circle_has_exactly_the_prefactor_error():
    """On the circle (n = 1, u_0 = 1) the images beyond the nearest are exponentially small, so
    -4t log h_t - d^2 = 2 t log(4 pi t) + O(e^{-c/t}): the raw error is O(t log t), and the corrected
    distance (dim=1) is exact to rounding."""
    d = np.array([0.3, 1.0, 2.0])
    for t in [0.05, 0.02, 0.01, 0.005, 0.002]:
        h = g.heat_kernel_circle(np.zeros(1), d, t)
        raw = g.varadhan_distance(h, t)[0] ** 2 - d**2
        np.testing.assert_allclose(raw, 2 * t * math.log(4 * math.pi * t), rtol=0, atol=1e-12)
        np.testing.assert_allclose(g.varadhan_distance(h, t, dim=1)[0], d, rtol=0, atol=1e-10)
        # the volume term removes the same prefactor from the data alone: h_t(x, x) = (4 pi t)^{-1/2}
        hh = g.heat_kernel_circle(np.concatenate([[0.0], d]), np.concatenate([[0.0], d]), t)
        np.testing.assert_allclose(g.varadhan_distance(hh, t, sigma=1.0)[0, 1:], d, rtol=0, atol=1e-10)


def test_varadhan_on_the_sphere_converges_at_the_derived_rates():
    """S^2: h_t = (4 pi t)^{-1} e^{-d^2/4t} (d / sin d)^{1/2} (1 + O(t)), hence
    -4t log h_t - d^2 = 4t log(4 pi t) - 2t log(d / sin d) + O(t^2).
    Measured slopes of log error on log t (t from 0.1 to 0.0125, d <= 1 so d^2/4t <= 20 keeps the
    Legendre series accurate): prefactor removed (dim=2) 1.13, u_0 removed as well 2.00; the raw
    error changes sign near t = 1/4pi and stays O(t log t)."""
    d = np.array([0.4, 0.7, 1.0])
    ts = np.array([0.1, 0.07, 0.05, 0.035, 0.025, 0.018, 0.0125])
    err_dim, err_u0, err_vol = [], [], []
    for t in ts:
        pts = _on_meridian(np.concatenate([[0.0], d]))
        h = g.heat_kernel_sphere(pts, pts, t)
        e_dim = g.varadhan_distance(h[:1, 1:], t, dim=2)[0] ** 2 - d**2
        err_dim.append(np.abs(e_dim).max())
        err_u0.append(np.abs(e_dim + 2 * t * np.log(d / np.sin(d))).max())
        # HeatGeo's volume term with the kernel's own diagonal: h_t(x,x) = (4 pi t)^{-1}(1 + t/3 + ...)
        err_vol.append(np.abs(g.varadhan_distance(h, t, sigma=1.0)[0, 1:] ** 2 - d**2).max())
    assert 0.9 < _slope(ts, err_dim) < 1.35  # O(t); measured 1.13 (the O(t^2) term bends it up)
    assert 1.85 < _slope(ts, err_u0) < 2.15  # O(t^2); measured 2.00
    assert 0.9 < _slope(ts, err_vol) < 1.35  # O(t), like dim=2
    # the O(t) constant is the derived one: e / t -> -2 log(d / sin d)
    t = ts[-1]
    h = g.heat_kernel_sphere(NORTH, _on_meridian(d), t)
    lead = (g.varadhan_distance(h, t, dim=2)[0] ** 2 - d**2) / t
    np.testing.assert_allclose(lead, -2 * np.log(d / np.sin(d)), rtol=0, atol=0.02)  # O(t) = 0.0125 * O(1)


def test_cycle_graph_heat_distance_approximates_the_circle():
    """A cycle of N nodes, spacing h = 2 pi / N, unit weights, combinatorial L: L ~ -h^2 Delta, so
    exp(-tau L) at tau = t / h^2 is the circle at time t (H_ij ~ h h_t).  At fixed t the graph error
    in d^2 is O(h^2 d^4 / t^2) (Bessel vs Gaussian); measured slope 2.00 (errors 1.2e-2 ... 1.9e-4)."""
    t, errs, spacings = 0.1, [], []
    for n in [50, 100, 200, 400]:
        h = 2 * math.pi / n
        w = np.roll(np.eye(n), 1, axis=1)
        w = w + w.T
        theta = np.arange(n) * h
        heat = g.heat_kernel_graph(w, t / h**2)
        near = (theta > 0) & (theta < 1.2)
        d = g.varadhan_distance(heat, t, sigma=1.0)[0, near]
        errs.append(np.abs(d**2 - theta[near] ** 2).max())
        spacings.append(h)
        # the Euclidean normalisation needs the density: H / h
        d_dim = g.varadhan_distance(heat[:1] / h, t, dim=1)[0, near]
        assert np.abs(d_dim**2 - theta[near] ** 2).max() < 2 * errs[-1]
    assert 1.8 < _slope(spacings, errs) < 2.2
    assert errs[-1] < 3e-4


# -- graph heat kernels --------------------------------------------------------------------------
def _random_weights(n: int = 30) -> np.ndarray:
    w = np.abs(np.sin(np.arange(n * n).reshape(n, n) * 0.37))  # deterministic, dense, non-negative
    w = 0.5 * (w + w.T)
    np.fill_diagonal(w, 0.0)
    return w


@pytest.mark.parametrize("laplacian", ["combinatorial", "normalized"])
def test_graph_kernel_exact_matches_expm_and_is_a_semigroup(laplacian):
    w = _random_weights()
    lap = g.graph_laplacian(w, laplacian)
    h1, h2 = g.heat_kernel_graph(w, 0.3, laplacian=laplacian), g.heat_kernel_graph(w, 0.5, laplacian=laplacian)
    np.testing.assert_allclose(h1, scipy.linalg.expm(-0.3 * lap), rtol=0, atol=1e-13)
    np.testing.assert_allclose(h1 @ h2, g.heat_kernel_graph(w, 0.8, laplacian=laplacian), rtol=0, atol=1e-13)
    if laplacian == "combinatorial":  # L 1 = 0: heat is conserved
        np.testing.assert_allclose(h1.sum(1), 1.0, rtol=0, atol=1e-13)


@pytest.mark.parametrize("laplacian", ["combinatorial", "normalized"])
def test_chebyshev_error_is_within_its_bound(laplacian):
    w = _random_weights()
    t = 2.0 if laplacian == "normalized" else 0.1
    lambda_max = 2.0 if laplacian == "normalized" else 2 * w.sum(1).max()
    exact = g.heat_kernel_graph(w, t, laplacian=laplacian)
    bounds = []
    for order in [2, 4, 8, 16, 32]:
        approx = g.heat_kernel_graph(w, t, laplacian=laplacian, method="chebyshev", order=order)
        bound = g.chebyshev_error_bound(t, order, lambda_max)
        assert np.linalg.norm(exact - approx, 2) <= bound + 1e-14
        bounds.append(bound)
    assert bounds[-1] < 1e-13  # super-geometric decay once K > t lambda_max / 2
    assert all(b1 > b2 for b1, b2 in itertools.pairwise(bounds))


# -- the embedding -------------------------------------------------------------------------------
def test_heat_geodesic_embedding_recovers_swiss_roll_geodesics():
    """A 40 x 8 grid on the Swiss roll (geodesics exact: the roll unrolls isometrically to a
    rectangle), knn 8, normalized Laplacian, tau 50, volume term sigma = 1.  Measured:
    Spearman(heat-geodesic, true geodesic) 0.977 and Pearson 0.937, against 0.35 / 0.25 for the
    Euclidean distances (which short-cut between the layers); the 2-D embedding's pairwise distances
    have Pearson 0.92 with the true geodesics; stress-1 0.071 (classical MDS alone: larger)."""
    x, unrolled = g.swiss_roll(40, 8)
    res = g.heat_geodesic_embedding(x, 50.0, knn=8)
    iu = np.triu_indices(len(x), 1)
    geo = np.hypot(*(unrolled[:, None, :] - unrolled[None, :, :]).transpose(2, 0, 1))[iu]
    euc = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)[iu]
    heat = res.distances[iu]
    assert stats.spearmanr(heat, geo)[0] > 0.95
    assert stats.pearsonr(heat, geo)[0] > 0.9
    assert stats.spearmanr(euc, geo)[0] < 0.5
    emb = np.linalg.norm(res.embedding[:, None, :] - res.embedding[None, :, :], axis=-1)[iu]
    assert stats.pearsonr(emb, geo)[0] > 0.88
    assert res.stress < 0.1
    # SMACOF never increases the stress of its classical-MDS start
    assert res.stress <= _stress(_classical_mds(res.distances, 2), res.distances) + 1e-12
    assert res.embedding.shape == (320, 2) and np.allclose(res.weights, res.weights.T)


def test_chebyshev_embedding_distances_agree_with_exact():
    x, _ = g.swiss_roll(20, 5)
    exact = g.heat_geodesic_embedding(x, 5.0, knn=6, mds_iterations=0)
    cheb = g.heat_geodesic_embedding(x, 5.0, knn=6, method="chebyshev", order=40, mds_iterations=0)
    # bound(t=5, K=40, lambda_max=2) ~ 1e-22 < every kept entry: the same distances to rounding in log
    np.testing.assert_allclose(cheb.distances, exact.distances, rtol=1e-6, atol=1e-6)


# -- bad input -----------------------------------------------------------------------------------
_A = np.array([0.1, 0.5])
_P = _on_meridian(np.array([0.2, 0.9]))
_W = _random_weights(5)
_BAD = [
    (lambda: g.heat_kernel_circle(_A, _A, 0.0), ValueError, "t must be > 0"),
    (lambda: g.heat_kernel_circle(_A, _A, 0.1, radius=-1.0), ValueError, "radius must be > 0"),
    (lambda: g.heat_kernel_circle(_A, _A, 0.1, method="chebyshev"), ValueError, "unknown method"),
    (lambda: g.heat_kernel_circle(_A[:, None], _A, 0.1), ValueError, r"theta must have shape \(n,\)"),
    (lambda: g.heat_kernel_circle(np.array([np.nan]), _A, 0.1), ValueError, "theta must be finite"),
    (lambda: g.heat_kernel_circle([0.1], _A, 0.1), TypeError, "theta must be an array"),
    (lambda: g.heat_kernel_circle(torch.zeros(2), torch.zeros(2), 0.1), TypeError, "NumPy-only"),
    (lambda: g.heat_kernel_circle(_A, torch.zeros(2), 0.1), TypeError, "one library"),
    (lambda: g.heat_kernel_sphere(2 * _P, _P, 0.1), ValueError, "x must lie on the unit sphere"),
    (lambda: g.heat_kernel_sphere(_P, _P[:, :2], 0.1), ValueError, r"y must have shape \(n, 3\)"),
    (lambda: g.heat_kernel_sphere(_P, _P, -1.0), ValueError, "t must be > 0"),
    (lambda: g.geodesic_distance_sphere(_P, 1.1 * _P), ValueError, "y must lie on the unit sphere"),
    (lambda: g.heat_kernel_graph(_W - 0.5, 1.0), ValueError, "weights must be non-negative"),
    (lambda: g.heat_kernel_graph(np.triu(_W), 1.0), ValueError, "weights must be symmetric"),
    (lambda: g.heat_kernel_graph(_W[:, :3], 1.0), ValueError, "weights must be a square"),
    (lambda: g.heat_kernel_graph(np.zeros((2, 2)), 1.0, laplacian="normalized"), ValueError, "isolated"),
    (lambda: g.heat_kernel_graph(_W, 1.0, laplacian="random"), ValueError, "unknown laplacian"),
    (lambda: g.heat_kernel_graph(_W, 1.0, method="chebyshev", order=0), ValueError, "order must be >= 1"),
    (lambda: g.chebyshev_error_bound(1.0, 2.5), TypeError, "order must be an int"),
    (lambda: g.varadhan_distance(-np.ones((2, 2)), 0.1), ValueError, "h must be non-negative"),
    (lambda: g.varadhan_distance(np.ones((2, 3)), 0.1, sigma=0.5), ValueError, "h must be square"),
    (lambda: g.varadhan_distance(np.ones((2, 2)), 0.1, sigma=1.5), ValueError, r"sigma must lie in \[0, 1\]"),
    (lambda: g.varadhan_distance(np.ones((2, 2)), 0.1, dim=1, sigma=1.0), ValueError, "give one"),
    (lambda: g.varadhan_distance(np.ones((2, 2)), 0.1, dim=0), ValueError, "dim must be >= 1"),
    (lambda: g.heat_geodesic_embedding(np.ones((3, 2)), 1.0, knn=3), ValueError, r"at least 4 points \(knn \+ 1\)"),
    (lambda: g.heat_geodesic_embedding(np.ones((5, 2)), 1.0, knn=2), ValueError, "no scale"),
    (lambda: g.heat_geodesic_embedding(_P, 1.0, n_components=3, knn=1), ValueError, "n_components must be <="),
    (lambda: g.heat_geodesic_embedding(_P, 1.0, knn=1, mds_iterations=-1), ValueError, "mds_iterations"),
    (lambda: g.swiss_roll(1, 3), ValueError, "n_along must be >= 2"),
]


@pytest.mark.parametrize(("call", "exc", "match"), _BAD, ids=[m for _, _, m in _BAD])
def test_bad_input_raises_naming_the_rule(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
