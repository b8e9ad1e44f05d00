"""The hypothesis strategies of the property tests: they live in :mod:`diffcore.testing.strategies` (public API)."""

from diffcore.testing.strategies import (  # noqa: F401 (re-exported to the tests)
    INTERPOLANT_KINDS,
    bridging_processes,
    cloud_pairs,
    finite,
    fp_cases,
    gaussians,
    graph_batches,
    histogram_sets,
    interpolants,
    log_density_tables,
    mixtures,
    mixtures_with_points,
    padded_graph_batches,
    points_near,
    processes,
    simplex_weights,
    skewed_mixture_2d,
    spd_matrices,
    time_grids,
    times,
)
