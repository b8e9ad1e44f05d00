"""Heat-diffusion geometry: heat kernels, Varadhan's formula and the heat-geodesic embedding.

Exact heat kernels on the circle (image and Fourier series), the unit sphere ``S^2`` (Legendre
series) and weighted graphs (``exp(-t L)`` exactly or by Chebyshev polynomials, with an error
bound); exact geodesic distances on the circle and the sphere; Varadhan's heat-geodesic distance
``sqrt(-4 t log h_t)`` with the Euclidean or volume normalisation; and the heat-geodesic embedding
of Huguet et al. (2023) on a Swiss roll with known geodesics.  Convention: ``du/dt = Delta u``.
NumPy only.
"""

from diffcore.geometry._distances import geodesic_distance_circle, geodesic_distance_sphere, varadhan_distance
from diffcore.geometry._embedding import HeatGeodesicEmbedding, heat_geodesic_embedding, swiss_roll
from diffcore.geometry._kernels import (
    chebyshev_error_bound,
    graph_laplacian,
    heat_kernel_circle,
    heat_kernel_graph,
    heat_kernel_sphere,
)

__all__ = [
    "HeatGeodesicEmbedding",
    "chebyshev_error_bound",
    "geodesic_distance_circle",
    "geodesic_distance_sphere",
    "graph_laplacian",
    "heat_geodesic_embedding",
    "heat_kernel_circle",
    "heat_kernel_graph",
    "heat_kernel_sphere",
    "swiss_roll",
    "varadhan_distance",
]
