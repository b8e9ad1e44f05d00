"""Graphs: the system of SDEs on node features and adjacencies (GDSS), its samplers and an analytic
laboratory; statistics and comparisons of sets of graphs (degree, clustering, spectrum; MMD, W2)."""

from diffcore.graphs._graph import (
    check_graphs,
    n_coordinates,
    pack,
    packed_mask,
    quantize,
    symmetric_noise,
    to_networkx,
    unpack,
)
from diffcore.graphs._laboratory import GraphLaboratory
from diffcore.graphs._s4 import S4, linear_half_step
from diffcore.graphs._sample import GRAPH_METHODS, GraphSample, sample_graphs
from diffcore.graphs._stats import (
    KERNELS,
    MMD_CONVENTIONS,
    GraphMMD2,
    GraphMMD2Floor,
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
from diffcore.graphs._system import GraphReverseSDE, GraphSDE, PackedProcess

__all__ = [
    "GRAPH_METHODS",
    "KERNELS",
    "MMD_CONVENTIONS",
    "S4",
    "GraphLaboratory",
    "GraphMMD2",
    "GraphMMD2Floor",
    "GraphReverseSDE",
    "GraphSDE",
    "GraphSample",
    "PackedProcess",
    "check_graphs",
    "clustering_histograms",
    "degree_histograms",
    "graph_mmd2",
    "graph_mmd2_floor",
    "histogram_emd",
    "histogram_kernel",
    "laplacian_spectra",
    "linear_half_step",
    "mmd2",
    "n_coordinates",
    "pack",
    "packed_mask",
    "quantize",
    "sample_graphs",
    "spectrum_histograms",
    "spectrum_w2",
    "symmetric_noise",
    "to_networkx",
    "unpack",
]
