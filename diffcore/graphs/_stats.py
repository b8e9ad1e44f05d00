r"""Graph statistics (degree, clustering, Laplacian spectrum) and their comparisons between sets of graphs.

A set of graphs is given as

* an adjacency array ``A`` of shape ``(n, N, N)`` (NumPy or torch, any device) with 0/1 entries,
  symmetric, with a zero diagonal, and an optional node mask ``(n, N)`` of 0/1 (or bool) entries:
  graph ``i`` is the subgraph of ``A[i]`` on the nodes with ``mask[i] == 1``; edges to padded
  nodes are ignored; or
* a sequence of networkx graphs (undirected, without self-loops; edge weights are ignored) or of
  ``(N_i, N_i)`` adjacency arrays, of any sizes.

Every graph needs at least one node.  Statistics are computed on the host in float64 and
returned as NumPy arrays, one row per graph:

* degree histogram: ``h_k = #{i : d_i = k} / N`` for ``k = 0, ..., N_max - 1`` (``N_max`` the
  largest graph of the set), the degree pmf (``networkx.degree_histogram`` divided by ``N``);
* clustering histogram: the local clustering coefficients
  ``c_i = 2 T_i / (d_i (d_i - 1)) = (A^3)_{ii} / (d_i (d_i - 1))`` (0 when ``d_i < 2``;
  ``T_i`` the triangles through ``i``; Watts and Strogatz 1998, as ``networkx.clustering``)
  binned on ``[0, 1]`` (100 bins, right edge in the last bin), divided by ``N``;
* spectrum histogram: the eigenvalues of the normalised Laplacian
  ``L = D^{-1/2} (D - A) D^{-1/2}`` (with ``d^{-1/2} := 0`` for isolated nodes, so they contribute
  the eigenvalue 0, as ``networkx.normalized_laplacian_matrix``; Chung 1997), which lie in
  ``[0, 2]``, binned on ``[0, 2]`` (200 bins, right edge in the last bin), divided by ``N``;
  eigenvalues within rounding of a bin edge are counted in the bin that starts at that edge,
  so the histogram does not depend on the order of the nodes (see :func:`spectrum_histograms`).

These are the statistics of You et al. (2018, GraphRNN) and Liao et al. (2019, GRAN), compared
between sets by the MMD of :mod:`diffcore.graphs._mmd` as in Jo et al. (2022, GDSS).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import resolve_rng, uniform
from diffcore._validation import check_array, check_choice, check_steps
from diffcore.graphs._mmd import KERNELS, _host, histogram_emd, histogram_kernel, mmd2

__all__ = [  # with the histogram MMD of _mmd, re-exported here so that the package imports one module
    "KERNELS",
    "MMD_CONVENTIONS",
    "GraphMMD2",
    "GraphMMD2Floor",
    "clustering_histograms",
    "degree_histograms",
    "graph_mmd2",
    "graph_mmd2_floor",
    "histogram_emd",
    "histogram_kernel",
    "laplacian_spectra",
    "mmd2",
    "spectrum_histograms",
    "spectrum_w2",
]

#: kernel settings of the standard trio, per convention: ``"gdss"`` reproduces the evaluation code
#: of GraphRNN (degree, clustering) and GDSS (spectrum: Gaussian-EMD with distances in bin
#: indices, ``bin_width = 1``); ``"gran"`` uses the Gaussian-TV kernel throughout, as GRAN does.
MMD_CONVENTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "gdss": {
        "degree": {"kernel": "gaussian_emd", "sigma": 1.0, "bin_width": 1.0},
        "clustering": {"kernel": "gaussian_emd", "sigma": 0.1, "bin_width": 0.01},
        "spectrum": {"kernel": "gaussian_emd", "sigma": 1.0, "bin_width": 1.0},
    },
    "gran": {
        "degree": {"kernel": "gaussian_tv", "sigma": 1.0},
        "clustering": {"kernel": "gaussian_tv", "sigma": 0.1},
        "spectrum": {"kernel": "gaussian_tv", "sigma": 1.0},
    },
}


def _check_adjacency(name: str, a: np.ndarray) -> None:
    """0/1 entries, symmetric, zero diagonal; ``a`` is ``(..., N, N)``."""
    if not np.all((a == 0) | (a == 1)):
        bad = a[(a != 0) & (a != 1)].flat[0]
        raise ValueError(f"{name} must hold 0/1 entries (an unweighted graph); got the entry {float(bad)!r}")
    asym = np.argwhere(a != np.swapaxes(a, -1, -2))
    if asym.size:
        where = ", ".join(str(int(i)) for i in asym[0])
        raise ValueError(f"{name} must be symmetric (A = A^T, an undirected graph); it differs at index ({where})")
    loops = np.argwhere(np.diagonal(a, axis1=-2, axis2=-1) != 0)
    if loops.size:
        where = ", ".join(str(int(i)) for i in loops[0])
        raise ValueError(f"{name} must have a zero diagonal (no self-loops); got a nonzero diagonal at ({where})")


def _from_array(name: str, graphs: Any, mask: Any) -> list[np.ndarray]:
    a = check_array(name, _host(graphs), min_ndim=0)
    if a.ndim != 3 or a.shape[1] != a.shape[2] or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, N, N) with n >= 1; got shape {a.shape}")
    _check_adjacency(name, a)
    if mask is None:
        keep = np.ones(a.shape[:2], dtype=bool)
    else:
        keep = _host(mask)
        if keep.shape != a.shape[:2]:
            raise ValueError(f"the mask of {name} must have shape (n, N) = {a.shape[:2]}; got {keep.shape}")
        if not np.all((keep == 0) | (keep == 1)):
            raise ValueError(
                f"the mask of {name} must hold 0/1 (or bool) entries; got {float(keep[(keep != 0) & (keep != 1)][0])!r}"
            )
        keep = keep.astype(bool)
    return [np.asarray(a[i][np.ix_(k, k)], dtype=np.float64) for i, k in enumerate(keep)]


def _from_sequence(name: str, graphs: Sequence) -> list[np.ndarray]:
    out = []
    for i, g in enumerate(graphs):
        if hasattr(g, "shape"):
            a = check_array(f"{name}[{i}]", _host(g), min_ndim=0)
            if a.ndim != 2 or a.shape[0] != a.shape[1]:
                raise ValueError(f"{name}[{i}] must be a square adjacency array (N, N); got shape {a.shape}")
        else:
            import networkx as nx

            if not isinstance(g, nx.Graph):
                raise TypeError(f"{name}[{i}] must be a networkx graph or an (N, N) array; got {type(g).__name__}")
            if g.is_directed():
                raise ValueError(f"{name}[{i}] must be an undirected graph; got a {type(g).__name__}")
            a = nx.to_numpy_array(g, weight=None)
        _check_adjacency(f"{name}[{i}]", a)
        out.append(np.asarray(a, dtype=np.float64))
    return out


def _adjacencies(graphs: Any, mask: Any = None, name: str = "graphs") -> list[np.ndarray]:
    """The present-node adjacency matrices (float64 NumPy) of a set of graphs, validated."""
    if hasattr(graphs, "shape"):
        out = _from_array(name, graphs, mask)
    elif isinstance(graphs, Sequence) and not isinstance(graphs, (str, bytes)):
        if mask is not None:
            raise ValueError(f"a mask applies to an adjacency array (n, N, N) only; {name} is a sequence of graphs")
        out = _from_sequence(name, graphs)
    else:
        raise TypeError(f"{name} must be an array (n, N, N) or a sequence of graphs; got {type(graphs).__name__}")
    if not out:
        raise ValueError(f"{name} must hold at least one graph; got none")
    for i, a in enumerate(out):
        if a.shape[0] == 0:
            raise ValueError(f"every graph needs at least one node; {name} graph {i} has none (mask all zero?)")
    return out


def _degrees(a: np.ndarray) -> np.ndarray:
    return np.rint(a.sum(axis=1)).astype(np.int64)


def _clustering(a: np.ndarray) -> np.ndarray:
    d = a.sum(axis=1)
    two_t = np.sum((a @ a) * a, axis=1)  # (A^3)_ii = 2 T_i
    denom = np.where(d >= 2, d * (d - 1), 1.0)
    return np.where(d >= 2, two_t / denom, 0.0)


def _spectrum(a: np.ndarray) -> np.ndarray:
    d = a.sum(axis=1)
    inv_sqrt = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    lap = np.diag((d > 0).astype(np.float64)) - inv_sqrt[:, None] * a * inv_sqrt[None, :]
    return np.clip(np.linalg.eigvalsh(lap), 0.0, 2.0)


def degree_histograms(graphs: Any, mask: Any = None) -> np.ndarray:
    """Degree pmfs ``(n, N_max)``: ``h[i, k] = #{nodes of degree k in graph i} / N_i`` (see the module docstring).

    >>> degree_histograms(np.ones((1, 3, 3)) - np.eye(3))  # the triangle: every node has degree 2
    array([[0., 0., 1.]])
    """
    adj = _adjacencies(graphs, mask)
    width = max(a.shape[0] for a in adj)
    return np.stack([np.bincount(_degrees(a), minlength=width) / a.shape[0] for a in adj])


def clustering_histograms(graphs: Any, mask: Any = None, *, bins: int = 100) -> np.ndarray:
    """Histograms ``(n, bins)`` of the local clustering coefficients on ``[0, 1]``, divided by ``N_i``.

    ``c_i = (A^3)_ii / (d_i (d_i - 1))`` (0 if ``d_i < 2``), as ``networkx.clustering``; 100 bins
    as in GraphRNN's evaluation (You et al. 2018).
    """
    bins = check_steps(bins, "bins")
    adj = _adjacencies(graphs, mask)
    return np.stack([np.histogram(_clustering(a), bins=bins, range=(0.0, 1.0))[0] / a.shape[0] for a in adj])


def laplacian_spectra(graphs: Any, mask: Any = None) -> list[np.ndarray]:
    r"""Ascending eigenvalues ``(N_i,)`` of each graph's normalised Laplacian ``L = D^{-1/2} (D - A) D^{-1/2}``.

    Isolated nodes give the eigenvalue 0; all eigenvalues lie in ``[0, 2]`` (rounding is clipped);
    the multiplicity of 0 is the number of connected components (Chung 1997, lemma 1.7).

    >>> laplacian_spectra(np.ones((1, 3, 3)) - np.eye(3))[0].round(12)  # K_3: {0, 3/2, 3/2}
    array([0. , 1.5, 1.5])
    """
    return [_spectrum(a) for a in _adjacencies(graphs, mask)]


def spectrum_histograms(graphs: Any, mask: Any = None, *, bins: int = 200) -> np.ndarray:
    r"""Histograms ``(n, bins)`` of the normalised-Laplacian eigenvalues on ``[0, 2]``, divided by ``N_i``.

    Bin ``k`` is ``[2k/B, 2(k+1)/B)`` for ``B = bins`` (200 by default, as in GRAN and GDSS:
    Liao et al. 2019; Jo et al. 2022), the last one closed: ``[2 - 2/B, 2]``.  The eigenvalues
    are those of :func:`laplacian_spectra` (clipped to ``[0, 2]``), and an eigenvalue within
    ``1e-9`` of a bin edge is moved onto that edge before binning.

    Why: many small graphs have eigenvalues exactly on an edge — ``1`` (stars, complete
    bipartite graphs, cycles of length divisible by 4), ``1/2`` and ``3/2`` (the path on four
    nodes, the 6-cycle, the triangle) — and the eigensolver returns such an eigenvalue as
    ``1 +- 1e-16``, on either side of the edge depending on the order of the nodes.  Without the
    snap the histogram of one graph changed under relabelling (``K_{2,3}``, the 6-cycle), or
    split a multiple eigenvalue over two bins (the 4-cycle's double ``1`` over bins 99 and 100).
    With it, isomorphic graphs get identical histograms, ``1`` lands in bin ``B/2`` and ``2`` in
    the last bin.

    Relation to the evaluation code of GDSS (``evaluation/stats.py::spectral_worker`` of
    harryjo97/GDSS): it bins ``scipy.linalg.eigvalsh`` of the normalised
    Laplacian with ``np.histogram(eigs, bins=200, range=(-1e-5, 2))`` and divides by the number of
    eigenvalues *counted*.  Its shift by ``-1e-5`` moves the edges off ``0`` and ``1`` (edge
    ``k`` is at ``-1e-5 + k (2 + 1e-5)/200``), so its bins differ from ours only within ``1e-5``
    below each edge.  But its range ends at ``2`` unclipped: the eigenvalue ``2`` of every bipartite
    component is computed as ``2 +- 4e-16`` and is *dropped* when it rounds above ``2`` — which
    again depends on the node order — and the remaining counts are renormalised to sum to one.
    Here every eigenvalue is counted (rows sum to one exactly) and ``2`` is kept, in the last bin.

    >>> import numpy as np
    >>> c4 = np.roll(np.eye(4), 1, axis=1) + np.roll(np.eye(4), -1, axis=1)  # the 4-cycle: {0, 1, 1, 2}
    >>> h = spectrum_histograms(c4[None])[0]
    >>> h[[0, 99, 100, 199]].tolist()
    [0.25, 0.0, 0.5, 0.25]
    """
    bins = check_steps(bins, "bins")
    edges = np.linspace(0.0, 2.0, bins + 1)
    # LAPACK's symmetric eigensolvers are backward stable: the computed eigenvalues are those of
    # L + E with ||E||_2 <= p(N) eps ||L||_2, ||L||_2 <= 2, p(N) = O(N) (Weyl's inequality bounds the
    # eigenvalue error by ||E||_2); forming L with 1/sqrt(d) adds a few eps per entry.  That is
    # <= 4.4e-11 for N <= 1e5 (measured ~1e-15 on small graphs), so 1e-9 catches every eigenvalue
    # that lies on an edge, while moving an eigenvalue by at most 1e-7 of a 200-bin width (capped
    # at a quarter bin for very fine binnings).
    tol = min(1e-9, 0.25 * (edges[1] - edges[0]))
    out = []
    for e in laplacian_spectra(graphs, mask):
        nearest = edges[np.rint(e * (bins / 2.0)).astype(np.int64)]
        snapped = np.where(np.abs(e - nearest) <= tol, nearest, e)
        out.append(np.histogram(snapped, bins=edges)[0] / e.shape[0])
    return np.stack(out)


@dataclass(frozen=True)
class GraphMMD2:
    """Squared MMDs (see :func:`graph_mmd2`) between the degree, clustering and spectrum histograms of two sets."""

    degree: float
    clustering: float
    spectrum: float


def _mmd2_trio(adj_1: list, adj_2: list, convention: str, unbiased: bool) -> GraphMMD2:
    conv = MMD_CONVENTIONS[check_choice("convention", convention, tuple(MMD_CONVENTIONS))]
    values = {}
    for stat, fn in (
        ("degree", degree_histograms),
        ("clustering", clustering_histograms),
        ("spectrum", spectrum_histograms),
    ):
        values[stat] = mmd2(fn(adj_1), fn(adj_2), unbiased=unbiased, **conv[stat])
    return GraphMMD2(**values)


def graph_mmd2(
    graphs_1: Any,
    graphs_2: Any,
    *,
    mask_1: Any = None,
    mask_2: Any = None,
    convention: str = "gdss",
    unbiased: bool = False,
) -> GraphMMD2:
    r"""The standard trio of graph-generation metrics: squared MMDs of degree, clustering and spectrum histograms.

    ``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)`` over the per-graph histograms of the two sets
    (:func:`mmd2`; biased V-statistic unless ``unbiased=True``), with the kernels of
    ``MMD_CONVENTIONS[convention]``:

    * ``"gdss"`` (default): Gaussian-EMD kernels, ``sigma = 1`` on degrees (EMD in degree units),
      ``sigma = 0.1`` on clustering coefficients (EMD in units of the coefficient, 100 bins), and
      ``sigma = 1`` on the 200-bin spectrum with the EMD in bin indices, as the evaluation code of
      GraphRNN (You et al. 2018, sec. 4.3) and GDSS (Jo et al. 2022, sec. 4.1) computes them;
    * ``"gran"``: Gaussian-TV kernels with the same ``sigma`` (Liao et al. 2019).

    Neither kernel is positive definite (O'Bray et al. 2022): values are comparable only at equal
    settings, and should be read against the data-vs-data floor (:func:`graph_mmd2_floor`).
    ``graphs_1``, ``graphs_2``: sets of graphs (see the module docstring), with optional masks.
    """
    return _mmd2_trio(
        _adjacencies(graphs_1, mask_1, "graphs_1"), _adjacencies(graphs_2, mask_2, "graphs_2"), convention, unbiased
    )


def spectrum_w2(graphs_1: Any, graphs_2: Any, *, mask_1: Any = None, mask_2: Any = None) -> float:
    r"""``W_2`` between the pooled normalised-Laplacian spectra of two sets of graphs (exact, 1-D, POT).

    Each set defines the law ``mu = (1/n) sum_i (1/N_i) sum_j delta_{lambda_ij}`` of the eigenvalue
    of a uniformly chosen eigenpair of a uniformly chosen graph (every graph weighs the same);
    ``W_2(mu, nu)^2 = int_0^1 |F_mu^{-1}(u) - F_nu^{-1}(u)|^2 du`` is solved by sorting
    (``ot.wasserstein_1d``).  Unlike the histogram MMDs it needs no bins and no kernel width,
    and it is a metric, in units of eigenvalues (``<= 2``).  Returns a Python float.
    """
    import ot

    pooled = []
    for name, graphs, mask in (("graphs_1", graphs_1, mask_1), ("graphs_2", graphs_2, mask_2)):
        spectra = [_spectrum(a) for a in _adjacencies(graphs, mask, name)]
        weights = np.concatenate([np.full(e.shape[0], 1.0 / (len(spectra) * e.shape[0])) for e in spectra])
        pooled.append((np.concatenate(spectra), weights))
    (u, wu), (v, wv) = pooled
    return math.sqrt(max(float(ot.wasserstein_1d(u, v, wu, wv, p=2)), 0.0))


@dataclass(frozen=True)
class GraphMMD2Floor:
    """Mean and standard error of :func:`graph_mmd2` between two independent ``n``-sets of one law (per statistic)."""

    mean: GraphMMD2
    stderr: GraphMMD2
    values: tuple[GraphMMD2, ...]


def _draw(sample: Any, mask: Any, n: int, rng: Any) -> list[np.ndarray]:
    if callable(sample):
        out = sample(n, rng)
        if isinstance(out, tuple) and len(out) == 2 and hasattr(out[0], "shape") and out[0].ndim == 3:
            return _adjacencies(out[0], out[1], "sample(n, rng)")
        return _adjacencies(out, None, "sample(n, rng)")
    reference = _adjacencies(sample, mask, "sample")
    idx = np.floor(uniform(rng, (n,)) * len(reference)).astype(np.int64)
    return [reference[i] for i in idx]


def graph_mmd2_floor(
    sample: Callable[[int, Any], Any] | Any,
    n: int,
    *,
    mask: Any = None,
    repeats: int = 5,
    rng: Any = None,
    convention: str = "gdss",
    unbiased: bool = False,
) -> GraphMMD2Floor:
    """The data-vs-data floor of :func:`graph_mmd2` for sets of ``n`` graphs (the analogue of ``w2_floor``).

    ``sample`` is either a callable ``sample(n, rng)`` returning ``n`` graphs (an adjacency array,
    a pair ``(A, mask)`` or a sequence of graphs), or a reference set of graphs (with its
    ``mask``) from which ``n`` graphs are drawn uniformly with replacement.  Draws ``repeats``
    pairs of independent sets and returns the mean of :func:`graph_mmd2` between them and its
    standard error ``sd / sqrt(repeats)``, per statistic.  A model is at the floor when its MMD to
    fresh data lies within the spread of this estimate.
    """
    n = check_steps(n, "n")
    repeats = check_steps(repeats, "repeats")
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2 to estimate a standard error; got {repeats}")
    rng = resolve_rng(rng)
    values = tuple(
        _mmd2_trio(_draw(sample, mask, n, rng), _draw(sample, mask, n, rng), convention, unbiased)
        for _ in range(repeats)
    )
    table = np.array([[v.degree, v.clustering, v.spectrum] for v in values])
    mean = GraphMMD2(*(float(x) for x in table.mean(axis=0)))
    stderr = GraphMMD2(*(float(x) for x in table.std(axis=0, ddof=1) / math.sqrt(repeats)))
    return GraphMMD2Floor(mean, stderr, values)
