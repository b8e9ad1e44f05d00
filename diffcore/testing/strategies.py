"""Hypothesis strategies for property tests of diffusion code: bounded, meaningful inputs.

Every strategy draws values a careful test would choose by hand, only more of them: covariances
with eigenvalues in a stated range (no near-singular matrices that make a property fail for the
wrong reason), mixtures whose components have such covariances, processes of every kind with
valid parameters, points where a law has its mass, time grids, graph batches with masks.  Use
them with ``hypothesis.given``; a deterministic profile (``derandomize=True``, no database,
no deadline) makes a CI run reproducible::

    from hypothesis import given, settings
    from diffcore.testing.strategies import mixtures_with_points, processes

    @settings(max_examples=20)
    @given(processes(), mixtures_with_points(dim=2))
    def test_my_score(process, case):
        data, x = case
        ...

This module imports ``hypothesis`` (install it with ``pip install hypothesis``); the rest of
:mod:`diffcore.testing` does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays
except ImportError as err:  # pragma: no cover - hypothesis is in the dev install
    raise ImportError("diffcore.testing.strategies needs hypothesis: pip install hypothesis") from err

from diffcore.distributions import Gaussian, GaussianMixture, marginal
from diffcore.interpolants import (
    AbstractInterpolant,
    EncoderDecoderInterpolant,
    LinearInterpolant,
    MirrorInterpolant,
    OneSidedInterpolant,
    TrigonometricInterpolant,
)
from diffcore.processes import VESDE, VPSDE, AbstractProcess, CosineVPSDE, SubVPSDE
from diffcore.testing._problems import skewed_mixture_2d

__all__ = [
    "INTERPOLANT_KINDS",
    "bridging_processes",
    "cloud_pairs",
    "finite",
    "fp_cases",
    "gaussians",
    "graph_batches",
    "histogram_sets",
    "interpolants",
    "log_density_tables",
    "mixtures",
    "mixtures_with_points",
    "padded_graph_batches",
    "points_near",
    "processes",
    "simplex_weights",
    "skewed_mixture_2d",
    "spd_matrices",
    "time_grids",
    "times",
]

#: finite floats in [-5, 5]: entries of means, points and raw matrices
finite = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False, allow_infinity=False)

#: times in [1e-4, 1]: away from the singular t = 0 of most scores
times = st.floats(min_value=1e-4, max_value=1.0)


@st.composite
def spd_matrices(draw: Any, dim: int, min_eig: float = 0.05, max_eig: float = 4.0) -> np.ndarray:
    """Symmetric positive definite ``(dim, dim)`` matrices ``Q diag(lam) Q^T``, ``lam`` in ``[min_eig, max_eig]``.

    ``Q`` is the orthogonal factor of a random matrix shifted by ``6 I`` (so every draw is well
    conditioned as a rotation); the condition number is at most ``max_eig / min_eig`` (80).
    """
    raw = draw(arrays(np.float64, (dim, dim), elements=finite))
    q, _ = np.linalg.qr(raw + 6.0 * np.eye(dim))
    lam = np.asarray(draw(st.lists(st.floats(min_eig, max_eig), min_size=dim, max_size=dim)))
    return (q * lam) @ q.T


@st.composite
def gaussians(draw: Any, dim: int | None = None) -> Gaussian:
    """A :class:`~diffcore.Gaussian` in ``dim`` (default 1 to 4) dimensions.

    Mean in ``[-5, 5]^d``, covariance from :func:`spd_matrices`.
    """
    d = dim or draw(st.integers(1, 4))
    mean = draw(arrays(np.float64, (d,), elements=finite))
    return Gaussian(mean, draw(spd_matrices(d)))


@st.composite
def mixtures(draw: Any, dim: int | None = None, max_components: int = 4) -> GaussianMixture:
    """A :class:`~diffcore.GaussianMixture` of 1 to ``max_components`` components in ``dim`` (default 1 to 3) dims.

    Weights with ratios at most 10, means in ``[-5, 5]^d``, :func:`spd_matrices` covariances.
    """
    d = dim or draw(st.integers(1, 3))
    k = draw(st.integers(1, max_components))
    raw = np.asarray(draw(st.lists(st.floats(0.1, 1.0), min_size=k, max_size=k)))
    means = draw(arrays(np.float64, (k, d), elements=finite))
    covs = np.stack([draw(spd_matrices(d)) for _ in range(k)])
    return GaussianMixture(raw / raw.sum(), means, covs)


@st.composite
def processes(draw: Any) -> AbstractProcess:
    """A valid forward process of every kind: VP and sub-VP (``0.01 <= beta_min <= beta_max <= 30``),
    cosine (``s`` in ``[1e-3, 0.05]``, ``end`` in ``[0.5, 0.999]``) and VE in both variants
    (``sigma_min`` in ``[1e-3, 0.5]``, ``sigma_max`` in ``[2 sigma_min, 100]``)."""
    kind = draw(st.sampled_from(["vp", "subvp", "cosine", "ve", "ve-song2021"]))
    if kind in ("vp", "subvp"):
        bmin = draw(st.floats(0.01, 1.0))
        bmax = draw(st.floats(bmin, 30.0))
        return (VPSDE if kind == "vp" else SubVPSDE)(bmin, bmax)
    if kind == "cosine":
        return CosineVPSDE(s=draw(st.floats(1e-3, 0.05)), end=draw(st.floats(0.5, 0.999)))
    smin = draw(st.floats(1e-3, 0.5))
    smax = draw(st.floats(smin * 2, 100.0))
    return VESDE(smin, smax, variant="exact" if kind == "ve" else "song2021")


@st.composite
def time_grids(draw: Any, max_steps: int = 20, t_min: float = 1e-3, t_max: float = 1.0) -> np.ndarray:
    """A strictly decreasing grid ``t_max = t_0 > ... > t_N = t_min`` of 1 to ``max_steps`` steps, float64.

    Interior times are uniform draws, sorted, at least ``1e-6`` apart: the grids a sampler must
    accept besides the uniform, log-SNR and EDM ones.
    """
    k = draw(st.integers(0, max_steps - 1))
    inner = draw(st.lists(st.floats(t_min, t_max), min_size=k, max_size=k, unique=True))
    ts = np.unique(np.concatenate([[t_min, t_max], inner]))[::-1]
    keep = np.concatenate([[True], -np.diff(ts) >= 1e-6])
    ts = ts[keep]
    ts[-1] = t_min
    return ts if ts.size >= 2 else np.array([t_max, t_min])


@st.composite
def cloud_pairs(draw: Any, n_max: int = 10, dim: int | None = None, equal_size: bool = False) -> tuple:
    """Two point clouds ``(n, d)`` and ``(m, d)`` of one dimension, sizes in ``[1, n_max]`` (small: emd stays fast)."""
    d = dim or draw(st.integers(1, 3))
    n = draw(st.integers(1, n_max))
    m = n if equal_size else draw(st.integers(1, n_max))
    x = draw(arrays(np.float64, (n, d), elements=finite))
    y = draw(arrays(np.float64, (m, d), elements=finite))
    return x, y


@st.composite
def simplex_weights(draw: Any, n: int) -> np.ndarray:
    """Positive weights ``(n,)`` summing to 1, each at least ``0.1 / n``-ish (ratios bounded by 10)."""
    raw = np.asarray(draw(st.lists(st.floats(0.1, 1.0), min_size=n, max_size=n)))
    return raw / raw.sum()


@st.composite
def points_near(draw: Any, law: Gaussian | GaussianMixture, n: int = 4, spread: float = 3.0) -> np.ndarray:
    """``n`` points ``(n, d)`` of the form ``m_k + C_k^{1/2} z``, ``|z_i| <= spread``: where ``law`` has its mass."""
    mix = law.as_mixture() if isinstance(law, Gaussian) else law
    ks = draw(st.lists(st.integers(0, mix.n_components - 1), min_size=n, max_size=n))
    z = draw(arrays(np.float64, (n, mix.dim), elements=st.floats(-spread, spread)))
    roots = np.linalg.cholesky(np.asarray(mix.covs))
    return np.stack([np.asarray(mix.means)[k] + roots[k] @ z[i] for i, k in enumerate(ks)])


#: the built-in interpolant kinds that :func:`interpolants` draws from
INTERPOLANT_KINDS = (
    "linear",
    "trigonometric",
    "encoder-decoder",
    "one-sided-linear",
    "one-sided-trigonometric",
    "mirror",
)


@st.composite
def interpolants(draw: Any) -> AbstractInterpolant:
    """Every built-in interpolant kind (:data:`INTERPOLANT_KINDS`).

    ``gamma_scale`` in [0, 4] where it has one (> 0 for the mirror).
    """
    kind = draw(st.sampled_from(INTERPOLANT_KINDS))
    if kind == "encoder-decoder":
        return EncoderDecoderInterpolant()
    if kind.startswith("one-sided-"):
        return OneSidedInterpolant(kind.removeprefix("one-sided-"))
    if kind == "mirror":
        return MirrorInterpolant(draw(st.floats(1e-3, 4.0)))
    cls = LinearInterpolant if kind == "linear" else TrigonometricInterpolant
    return cls(draw(st.one_of(st.just(0.0), st.floats(0.0, 4.0))))


@st.composite
def bridging_processes(draw: Any) -> tuple[AbstractProcess, float]:
    """A process whose reversed path is an interpolant, with the ``atol`` its ends need.

    The cosine schedule with ``end = 1`` has ``alpha(1) = 0`` and ``sigma(1) = 1`` (to rounding);
    a linear-beta VP schedule stops at ``alpha(1) = exp(-beta_max/4 - beta_min/2) > 0``.
    """
    if draw(st.booleans()):
        return CosineVPSDE(s=draw(st.floats(1e-3, 0.05)), end=1.0), 1e-12
    bmin = draw(st.floats(0.01, 1.0))
    p = VPSDE(bmin, draw(st.floats(10.0, 30.0)))
    return p, 2.0 * max(p.alpha(1.0), 1.0 - p.sigma(1.0))


@st.composite
def mixtures_with_points(draw: Any, dim: int | None = None, n: int = 3) -> tuple[GaussianMixture, np.ndarray]:
    """A mixture (:func:`mixtures`) and ``n`` points near its mass (:func:`points_near`), for field identities."""
    mix = draw(mixtures(dim=dim))
    return mix, draw(points_near(mix, n=n))


@st.composite
def log_density_tables(draw: Any, max_models: int = 5, max_rows: int = 4) -> np.ndarray:
    """Finite log densities ``(n, M)`` of ``M`` models at ``n`` points, spread over ~100 nats."""
    m = draw(st.integers(1, max_models))
    n = draw(st.integers(1, max_rows))
    return draw(arrays(np.float64, (n, m), elements=st.floats(-60.0, 40.0)))


@st.composite
def fp_cases(draw: Any, max_dim: int = 3) -> tuple:
    """A score Fokker–Planck test case ``(process, mixture, t, x)``: a process of every kind, a
    mixture in 1 to ``max_dim`` dimensions, a time in [0.01, 1] and 4 points ``(4, d)`` where the
    marginal at ``t`` has its mass."""
    process = draw(processes())
    data = draw(mixtures(dim=draw(st.integers(1, max_dim))))
    t = draw(st.floats(0.01, 1.0))
    return process, data, t, draw(points_near(marginal(process, data, t), n=4))


@st.composite
def histogram_sets(draw: Any, max_size: int = 5, max_bins: int = 8) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two sets of 1 to ``max_size`` non-negative count histograms of lengths 1 to ``max_bins``
    (ragged, each with a positive sum), for the histogram MMD."""

    def one() -> np.ndarray:
        bins = draw(st.integers(1, max_bins))
        h = draw(arrays(np.float64, (bins,), elements=st.integers(0, 5).map(float)))
        h[draw(st.integers(0, bins - 1))] += 1.0
        return h

    n, m = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    return [one() for _ in range(n)], [one() for _ in range(m)]


@st.composite
def padded_graph_batches(draw: Any, max_graphs: int = 3, max_nodes: int = 7, max_pad: int = 3) -> tuple:
    """Graphs placed inside a padded batch: ``(graphs, A, mask)`` with ``graphs`` a list of 0/1
    symmetric ``(N_i, N_i)`` adjacencies (``N_i >= 1``), ``A`` ``(n, N, N)`` holding graph ``i`` on
    the nodes where ``mask[i] == 1`` (at random, not only leading, positions) and random edges
    touching the padded nodes, which every statistic must ignore."""
    n = draw(st.integers(1, max_graphs))
    sizes = [draw(st.integers(1, max_nodes)) for _ in range(n)]
    total = max(sizes) + draw(st.integers(0, max_pad))

    def symmetric(k: int) -> np.ndarray:
        upper = np.triu(draw(arrays(np.float64, (k, k), elements=st.sampled_from([0.0, 1.0]))), 1)
        return upper + upper.T

    graphs, adj, mask = [], np.zeros((n, total, total)), np.zeros((n, total), dtype=bool)
    for i, k in enumerate(sizes):
        g = symmetric(k)
        nodes = np.sort(draw(st.permutations(range(total)))[:k])
        junk = symmetric(total)
        junk[np.ix_(nodes, nodes)] = g
        graphs.append(g)
        adj[i], mask[i, nodes] = junk, True
    return graphs, adj, mask


@st.composite
def graph_batches(draw: Any, n_max: int = 4, nodes_max: int = 6, features_max: int = 3) -> tuple:
    """A valid graph batch ``(X (n, N, F), A (n, N, N), mask (n, N))``: real symmetric ``A`` with zero
    diagonal and a random node mask (possibly empty), entries at masked-out nodes zero."""
    n, N, F = draw(st.integers(1, n_max)), draw(st.integers(1, nodes_max)), draw(st.integers(1, features_max))
    mask = draw(arrays(np.float64, (n, N), elements=st.sampled_from([0.0, 1.0])))
    X = draw(arrays(np.float64, (n, N, F), elements=finite)) * mask[:, :, None]
    upper = np.triu(draw(arrays(np.float64, (n, N, N), elements=finite)), k=1)
    A = (upper + upper.transpose(0, 2, 1)) * mask[:, :, None] * mask[:, None, :]
    return X, A, mask
