"""Graph statistics and their MMD / W2 comparisons: closed forms on known graphs, agreement with
networkx and POT, estimator identities, masks, and the behaviour of the estimators on random graphs."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import ot
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import histogram_sets, padded_graph_batches

import diffcore as dc
from diffcore.graphs import (
    KERNELS,
    MMD_CONVENTIONS,
    clustering_histograms,
    degree_histograms,
    graph_mmd2,
    graph_mmd2_floor,
    histogram_emd,
    histogram_kernel,
    laplacian_spectra,
    mmd2,
    spectrum_histograms,
    spectrum_w2,
)


def adjacency(graph: nx.Graph) -> np.ndarray:
    return nx.to_numpy_array(graph, weight=None)


def erdos_renyi(n: int, nodes: int, p: float, rng) -> np.ndarray:
    """``n`` independent G(nodes, p) adjacencies ``(n, nodes, nodes)``."""
    upper = np.triu(rng.random((n, nodes, nodes)) < p, 1).astype(np.float64)
    return upper + np.swapaxes(upper, 1, 2)


# ---------------------------------------------------------------- statistics on known graphs


@pytest.mark.parametrize("n", [3, 5, 8])
def test_complete_graph(n):
    a = adjacency(nx.complete_graph(n))[None]
    assert np.array_equal(degree_histograms(a)[0], np.eye(n)[n - 1])  # every degree is n - 1
    assert np.array_equal(clustering_histograms(a)[0], np.eye(100)[99])  # every coefficient is 1
    expected = np.array([0.0] + [n / (n - 1)] * (n - 1))
    np.testing.assert_allclose(laplacian_spectra(a)[0], expected, atol=1e-12)


@pytest.mark.parametrize("n", [4, 7, 10])
def test_cycle(n):
    a = adjacency(nx.cycle_graph(n))[None]
    assert np.array_equal(degree_histograms(a)[0], np.eye(n)[2])
    assert np.array_equal(clustering_histograms(a)[0], np.eye(100)[0])  # no triangles (n >= 4)
    # L = I - A / 2 is circulant: eigenvalues 1 - cos(2 pi k / n)
    expected = np.sort(1.0 - np.cos(2 * np.pi * np.arange(n) / n))
    np.testing.assert_allclose(laplacian_spectra(a)[0], expected, atol=1e-12)


def test_spectrum_counts_components_and_isolated_nodes():
    """Zero has the multiplicity of the connected components; isolated nodes count as components."""
    g = nx.disjoint_union(nx.path_graph(3), nx.complete_graph(4))
    g.add_nodes_from([100, 101])  # two isolated nodes
    eig = laplacian_spectra([g])[0]
    assert np.sum(np.abs(eig) < 1e-12) == 4
    assert np.all((eig >= 0) & (eig <= 2))
    assert spectrum_histograms([g])[0].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(eig[-1], 2.0, atol=1e-12)  # the path is bipartite


#: graphs whose normalised-Laplacian eigenvalues sit on edges of the 200 bins of width 0.01:
#: name -> (graph, exact eigenvalues).  Bipartite, so 2 is an eigenvalue; 1 for the 4-cycle,
#: the star and K_{2,3} (Chung 1997, ex. 1.1 and 1.2), 1 - cos(2 pi k / 6) for the 6-cycle.
EDGE_SPECTRA = {
    "4-cycle": (nx.cycle_graph(4), [0.0, 1.0, 1.0, 2.0]),
    "star K_{1,4}": (nx.star_graph(4), [0.0, 1.0, 1.0, 1.0, 2.0]),
    "K_{2,3}": (nx.complete_bipartite_graph(2, 3), [0.0, 1.0, 1.0, 1.0, 2.0]),
    "6-cycle": (nx.cycle_graph(6), [0.0, 0.5, 0.5, 1.5, 1.5, 2.0]),
}


@pytest.mark.parametrize("name", list(EDGE_SPECTRA))
def test_spectrum_histogram_is_invariant_to_node_order_on_bin_edges(name):
    """Eigenvalues on a bin edge count in the bin that starts there (2 in the last), for every node order.

    The computed eigenvalue 1 is 1 +- 1e-16, on either side of the edge 1.0 depending on the node
    order; binned as is, the 4-cycle puts one of its two 1s in bin 99, and K_{2,3} and the 6-cycle
    change their histogram under relabelling.
    """
    graph, eigenvalues = EDGE_SPECTRA[name]
    a = adjacency(graph)
    n = a.shape[0]
    counts = np.zeros(200)
    for lam in eigenvalues:  # bin [k/100, (k+1)/100) holds lam = k/100 exactly; 2 is in the last, closed bin
        counts[min(round(100 * lam), 199)] += 1
    expected = counts / n
    rng = np.random.default_rng(0)
    perms = [rng.permutation(n) for _ in range(60)] + [np.arange(n)]
    relabelled = np.stack([a[np.ix_(p, p)] for p in perms])
    hist = spectrum_histograms(relabelled)
    assert np.array_equal(hist, np.broadcast_to(expected, hist.shape)), np.unique(hist, axis=0).nonzero()
    assert hist[0, 100] == pytest.approx(eigenvalues.count(1.0) / n) and hist[0, 199] == pytest.approx(1 / n)


def test_statistics_agree_with_networkx():
    rng = np.random.default_rng(3)
    graphs = [nx.gnp_random_graph(int(rng.integers(2, 15)), 0.4, seed=int(rng.integers(1 << 30))) for _ in range(12)]
    deg, clu, spe = degree_histograms(graphs), clustering_histograms(graphs), laplacian_spectra(graphs)
    width = max(g.number_of_nodes() for g in graphs)
    for i, g in enumerate(graphs):
        n = g.number_of_nodes()
        ref_deg = np.zeros(width)
        counts = nx.degree_histogram(g)
        ref_deg[: len(counts)] = counts
        assert np.array_equal(deg[i], ref_deg / n)
        ref_clu = np.histogram(list(nx.clustering(g).values()), bins=100, range=(0.0, 1.0))[0] / n
        assert np.array_equal(clu[i], ref_clu)
        ref_spe = np.linalg.eigvalsh(nx.normalized_laplacian_matrix(g, weight=None).toarray())
        np.testing.assert_allclose(spe[i], np.clip(ref_spe, 0, 2), atol=1e-10)


def test_input_forms_agree():
    """An adjacency array, a list of arrays and a list of networkx graphs are the same set of graphs."""
    a = erdos_renyi(4, 9, 0.4, np.random.default_rng(0))
    graphs = [nx.from_numpy_array(g) for g in a]
    for stat in (degree_histograms, clustering_histograms, spectrum_histograms):
        assert np.array_equal(stat(a), stat(list(a)))
        assert np.array_equal(stat(a), stat(graphs))


def test_torch_input_matches_numpy(backend):
    a = erdos_renyi(3, 8, 0.5, np.random.default_rng(1))
    mask = np.ones((3, 8), dtype=bool)
    mask[1, 5:] = False
    for stat in (degree_histograms, clustering_histograms, spectrum_histograms):
        assert np.array_equal(stat(backend(a), backend(mask)), stat(a, mask))


@given(padded_graph_batches())
def test_masked_nodes_are_ignored(case):
    graphs, a, mask = case
    for stat in (degree_histograms, clustering_histograms, spectrum_histograms):
        padded, plain = stat(a, mask), stat(graphs)
        width = min(padded.shape[1], plain.shape[1])  # degree histograms: padded width N >= max N_i
        assert np.array_equal(padded[:, :width], plain[:, :width])
        assert not padded[:, width:].any() and not plain[:, width:].any()


# ---------------------------------------------------------------- EMD, kernels and the MMD estimator


@pytest.mark.parametrize("bin_width", [1.0, 0.01, 0.37])
def test_histogram_emd_is_pot_wasserstein_1d(bin_width):
    """EMD = w sum_k |P_k - Q_k| is the 1-Wasserstein distance between the laws on the bin centres."""
    rng = np.random.default_rng(5)
    hs = [rng.integers(0, 4, size=int(rng.integers(1, 12))).astype(float) for _ in range(8)]
    for h in hs:
        h[-1] += 1.0  # a positive sum
    emd = histogram_emd(hs, hs, bin_width=bin_width)
    for i, j in itertools.product(range(len(hs)), repeat=2):
        size = max(len(hs[i]), len(hs[j]))
        p, q = (np.pad(h, (0, size - len(h))) for h in (hs[i], hs[j]))
        z = bin_width * np.arange(size)
        ref = ot.wasserstein_1d(z, z, p / p.sum(), q / q.sum(), p=1)
        ref_emd = ot.emd2_1d(z, z, p / p.sum(), q / q.sum(), metric="euclidean")
        assert emd[i, j] == pytest.approx(ref, rel=1e-12, abs=1e-14)
        assert emd[i, j] == pytest.approx(ref_emd, rel=1e-12, abs=1e-14)


@given(histogram_sets(), st.sampled_from(KERNELS), st.floats(0.05, 5.0))
def test_kernel_values_lie_in_unit_interval_and_are_symmetric(sets, kernel, sigma):
    x, y = sets
    k_xy = histogram_kernel(x, y, kernel=kernel, sigma=sigma)
    assert np.all((k_xy >= 0) & (k_xy <= 1))  # 0 by underflow when d >~ 39 sigma
    np.testing.assert_array_equal(k_xy, histogram_kernel(y, x, kernel=kernel, sigma=sigma).T)
    np.testing.assert_allclose(np.diag(histogram_kernel(x, x, kernel=kernel, sigma=sigma)), 1.0, rtol=0, atol=0)


@given(histogram_sets(), st.sampled_from(KERNELS), st.booleans())
def test_mmd2_is_symmetric(sets, kernel, unbiased):
    x, y = sets
    if unbiased and min(len(x), len(y)) < 2:
        return
    assert mmd2(x, y, kernel=kernel, unbiased=unbiased) == pytest.approx(
        mmd2(y, x, kernel=kernel, unbiased=unbiased), abs=1e-14
    )


@given(histogram_sets(), st.floats(0.05, 5.0))
def test_biased_mmd2_with_a_positive_definite_kernel_is_nonnegative(sets, sigma):
    """For the Gaussian RBF kernel the biased estimate is ||mean phi(x) - mean phi(y)||^2 >= 0."""
    x, y = sets
    assert mmd2(x, y, kernel="gaussian", sigma=sigma) >= -1e-14


@given(histogram_sets(), st.sampled_from(KERNELS))
def test_mmd2_of_a_set_with_itself(sets, kernel):
    """Biased: exactly 0.  Unbiased: 2 (mean_{i != j} K_ij - 1) / n, since K_ii = 1 is left out of one term only."""
    x, _ = sets
    assert mmd2(x, x, kernel=kernel) == 0.0
    if len(x) >= 2:
        k = histogram_kernel(x, x, kernel=kernel)
        n = len(x)
        off = (k.sum() - n) / (n * (n - 1))
        assert mmd2(x, x, kernel=kernel, unbiased=True) == pytest.approx(2 * (off - 1) / n, abs=1e-14)


def test_counts_pmfs_and_zero_padding_give_the_same_mmd():
    counts = [np.array([1.0, 3.0]), np.array([2.0, 0.0, 2.0])]
    pmfs = np.array([[0.25, 0.75, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0]])
    other = [np.array([0.0, 1.0, 1.0, 1.0])]
    for kernel in KERNELS:
        assert mmd2(counts, other, kernel=kernel) == pytest.approx(mmd2(pmfs, other, kernel=kernel), abs=1e-15)


@pytest.mark.parametrize("kernel", ["gaussian_emd", "gaussian_tv"])
def test_emd_and_tv_kernels_are_not_positive_definite(kernel):
    """O'Bray et al. (2022): the Gaussian-EMD and Gaussian-TV kernels are indefinite.  The six pmfs on
    three bins with entries in {0, 1/2, 1} give a Gram matrix with a negative eigenvalue at sigma = 1
    (-0.053 for TV, -0.159 for EMD: far beyond rounding), where the Gaussian RBF kernel stays PSD."""
    pmfs = [np.array(c) / 2 for c in itertools.product(range(3), repeat=3) if sum(c) == 2]
    assert np.linalg.eigvalsh(histogram_kernel(pmfs, pmfs, kernel=kernel)).min() < -0.05
    assert np.linalg.eigvalsh(histogram_kernel(pmfs, pmfs, kernel="gaussian")).min() > -1e-12


# ---------------------------------------------------------------- MMD between sets of random graphs

SETS, GRAPHS, NODES = 16, 16, 12


def _er_sampler(p: float):
    return lambda n, rng: erdos_renyi(n, NODES, p, rng)


@pytest.mark.parametrize("convention", list(MMD_CONVENTIONS))
def test_unbiased_mmd2_is_zero_on_average_for_one_law(convention):
    """Two independent sets of G(12, 0.3): the U-statistic has expectation exactly 0, so its mean
    over 16 repeats lies within 4 standard errors of 0 (a false alarm has probability ~1e-4)."""
    floor = graph_mmd2_floor(_er_sampler(0.3), GRAPHS, repeats=SETS, rng=11, convention=convention, unbiased=True)
    for stat in ("degree", "clustering", "spectrum"):
        mean, se = getattr(floor.mean, stat), getattr(floor.stderr, stat)
        assert se > 0
        assert abs(mean) < 4 * se, (stat, mean, se)


@pytest.mark.parametrize("convention", list(MMD_CONVENTIONS))
def test_mmd2_separates_sparse_from_dense_graphs(convention):
    """G(12, 0.3) vs G(12, 0.6): the biased MMD exceeds the data-vs-data floor by > 10 of its
    standard errors on every statistic, and the unbiased one is clearly positive.  (Except GRAN's
    clustering setting, which saturates at this graph size: see the next test.)"""
    floor = graph_mmd2_floor(_er_sampler(0.3), GRAPHS, repeats=SETS, rng=12, convention=convention)
    rng = np.random.default_rng(13)
    x, y = erdos_renyi(GRAPHS, NODES, 0.3, rng), erdos_renyi(GRAPHS, NODES, 0.6, rng)
    far, far_u = graph_mmd2(x, y, convention=convention), graph_mmd2(x, y, convention=convention, unbiased=True)
    for stat in ("degree", "clustering", "spectrum") if convention == "gdss" else ("degree", "spectrum"):
        mean, se = getattr(floor.mean, stat), getattr(floor.stderr, stat)
        assert getattr(far, stat) > mean + 10 * se, (stat, getattr(far, stat), mean, se)
        assert getattr(far_u, stat) > 10 * se


def test_tv_kernel_saturates_on_the_clustering_of_small_graphs():
    """O'Bray et al.'s pitfall of the kernel width, measured: the clustering histograms of G(12, p)
    graphs barely overlap (TV near 1), so at GRAN's sigma = 0.1 the mean off-diagonal kernel values
    are small (measured ~7e-3 within a law, ~1e-8 across) and the biased MMD^2
    = 1/n + 1/m + (1 - 1/n) m_xx + (1 - 1/m) m_yy - 2 m_xy is 2/n up to 2 max(m): it cannot tell
    p = 0.3 from p = 0.6, while the same setting's degree MMD does (previous test)."""
    rng = np.random.default_rng(20)
    x, y = erdos_renyi(GRAPHS, NODES, 0.3, rng), erdos_renyi(GRAPHS, NODES, 0.6, rng)
    hx, hy = clustering_histograms(x), clustering_histograms(y)
    means = [histogram_kernel(a, b, kernel="gaussian_tv", sigma=0.1) for a, b in ((hx, hx), (hy, hy), (hx, hy))]
    off = [(k.sum() - np.trace(k)) / (GRAPHS * (GRAPHS - 1)) for k in means[:2]] + [means[2].mean()]
    assert max(off) < 0.05, off
    assert abs(graph_mmd2(x, y, convention="gran").clustering - 2 / GRAPHS) <= 2 * max(off)


def test_floor_from_a_reference_set_with_masks():
    """A finite reference set is resampled with replacement; masks travel with it."""
    rng = np.random.default_rng(14)
    a = erdos_renyi(10, NODES, 0.4, rng)
    mask = np.ones((10, NODES), dtype=bool)
    mask[::2, 9:] = False
    floor = graph_mmd2_floor(a, 12, mask=mask, repeats=4, rng=15)
    assert len(floor.values) == 4
    assert all(v.degree >= 0 and v.clustering >= -1e-15 and v.spectrum >= -1e-15 for v in floor.values)
    # a sampler returning (A, mask) is accepted as well
    pair = graph_mmd2_floor(lambda n, r: (a[:n], mask[:n]), 10, repeats=2, rng=0)
    assert pair.mean.degree == 0.0  # the two draws are the same 10 graphs


def test_graph_mmd2_equals_mmd2_of_the_histograms():
    rng = np.random.default_rng(16)
    x, y = erdos_renyi(6, 9, 0.3, rng), erdos_renyi(5, 7, 0.5, rng)
    got = graph_mmd2(x, list(y), convention="gdss")
    assert got.degree == mmd2(degree_histograms(x), degree_histograms(y), kernel="gaussian_emd", sigma=1.0)
    assert got.clustering == mmd2(
        clustering_histograms(x), clustering_histograms(y), kernel="gaussian_emd", sigma=0.1, bin_width=0.01
    )
    assert got.spectrum == mmd2(spectrum_histograms(x), spectrum_histograms(y), kernel="gaussian_emd", sigma=1.0)


# ---------------------------------------------------------------- W2 between spectra


def test_spectrum_w2_closed_form():
    """K_n has spectrum {0, n/(n-1) x (n-1)}; the empty graph only 0: W2^2 = (n-1)/n (n/(n-1))^2 = n/(n-1)."""
    n = 6
    complete = [nx.complete_graph(n)] * 3
    empty = [nx.empty_graph(n)] * 2
    assert spectrum_w2(complete, empty) == pytest.approx(math.sqrt(n / (n - 1)), rel=1e-12)
    assert spectrum_w2(complete, complete) == pytest.approx(0.0, abs=1e-12)


def test_spectrum_w2_agrees_with_w2_on_equal_sizes():
    """With graphs of one size every eigenvalue weighs the same, so the 1-D W2 is ``dc.w2`` on the pooled spectra."""
    rng = np.random.default_rng(17)
    x, y = erdos_renyi(7, 8, 0.3, rng), erdos_renyi(5, 8, 0.6, rng)
    u, v = np.concatenate(laplacian_spectra(x)), np.concatenate(laplacian_spectra(y))
    assert spectrum_w2(x, y) == pytest.approx(float(dc.w2(u[:, None], v[:, None])), rel=1e-9)
    assert spectrum_w2(x, y) == pytest.approx(spectrum_w2(y, x), rel=1e-12)


def test_spectrum_w2_weighs_graphs_equally():
    """Pooled law (1/n) sum_i (1/N_i) sum_j delta: a K_2 (spectrum {0, 2}) and a K_1 ({0}) pool to
    {0: 3/4, 2: 1/4}, at W2 = sqrt(4/4) = 1 from the point mass at 0."""
    assert spectrum_w2([nx.complete_graph(2), nx.complete_graph(1)], [nx.empty_graph(3)]) == pytest.approx(1.0)


# ---------------------------------------------------------------- bad input


def test_bad_graphs_are_refused_with_the_rule():
    a = erdos_renyi(2, 5, 0.5, np.random.default_rng(0))
    asym = a.copy()
    asym[1, 0, 3], asym[1, 3, 0] = 1.0, 0.0
    with pytest.raises(ValueError, match=r"symmetric .* index \(1, 0, 3\)"):
        degree_histograms(asym)
    loop = a.copy()
    loop[0, 2, 2] = 1.0
    with pytest.raises(ValueError, match=r"zero diagonal .* \(0, 2\)"):
        degree_histograms(loop)
    with pytest.raises(ValueError, match=r"0/1 entries .* 0\.5"):
        degree_histograms(0.5 * a)
    with pytest.raises(ValueError, match=r"shape \(n, N, N\).*\(5, 5\)"):
        degree_histograms(a[0])
    with pytest.raises(ValueError, match=r"mask of graphs must have shape \(n, N\) = \(2, 5\); got \(2, 4\)"):
        degree_histograms(a, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"0/1 \(or bool\) entries; got 2"):
        degree_histograms(a, np.full((2, 5), 2.0))
    with pytest.raises(ValueError, match=r"at least one node; graphs graph 1 has none"):
        degree_histograms(a, np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="at least one graph; got none"):
        degree_histograms([])
    with pytest.raises(ValueError, match="undirected"):
        degree_histograms([nx.DiGraph([(0, 1)])])
    with pytest.raises(ValueError, match="mask applies to an adjacency array"):
        degree_histograms([nx.path_graph(3)], np.ones((1, 3)))
    with pytest.raises(TypeError, match="networkx graph or an"):
        degree_histograms(["not a graph"])
    with pytest.raises(ValueError, match="graphs_2 must have shape"):
        graph_mmd2(a, np.zeros((0, 5, 5)))


def test_bad_histograms_and_settings_are_refused():
    x = [np.array([1.0, 2.0]), np.array([0.0, 1.0])]
    with pytest.raises(ValueError, match=r"sigma must be > 0; got 0\.0"):
        mmd2(x, x, sigma=0.0)
    with pytest.raises(ValueError, match=r"sigma must be > 0; got -1"):
        histogram_kernel(x, x, sigma=-1)
    with pytest.raises(ValueError, match=r"bin_width must be > 0"):
        histogram_emd(x, x, bin_width=0.0)
    with pytest.raises(ValueError, match="unknown kernel 'emd'; known: gaussian, gaussian_emd, gaussian_tv"):
        mmd2(x, x, kernel="emd")
    with pytest.raises(ValueError, match="samples_2 must hold at least one histogram"):
        mmd2(x, [])
    with pytest.raises(ValueError, match=r"positive sum; samples_1\[1\] sums to 0"):
        mmd2([np.ones(2), np.zeros(3)], x)
    with pytest.raises(ValueError, match="non-negative counts; got minimum -1"):
        mmd2(x, [np.array([2.0, -1.0])])
    with pytest.raises(ValueError, match="must be finite"):
        mmd2(x, [np.array([np.nan, 1.0])])
    with pytest.raises(ValueError, match="unbiased estimate needs at least 2 histograms in samples_2; got 1"):
        mmd2(x, x[:1], unbiased=True)
    with pytest.raises(TypeError, match="unbiased must be a bool"):
        mmd2(x, x, unbiased=1)
    with pytest.raises(ValueError, match="unknown convention 'graphrnn'"):
        graph_mmd2([nx.path_graph(3)], [nx.path_graph(3)], convention="graphrnn")
    with pytest.raises(ValueError, match="repeats must be >= 2"):
        graph_mmd2_floor([nx.path_graph(3)], 2, repeats=1)


@settings(max_examples=10)
@given(st.integers(2, 30))
def test_degree_histograms_sum_to_one(n):
    g = nx.gnp_random_graph(n, 0.3, seed=n)
    for stat in (degree_histograms, clustering_histograms, spectrum_histograms):
        assert stat([g])[0].sum() == pytest.approx(1.0, abs=1e-12)
