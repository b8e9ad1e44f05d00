"""Metrics between laws and samples: Wasserstein distances through POT."""

from diffcore.metrics._wasserstein import FloorEstimate, sliced_w2, w2, w2_floor, w2_gaussian

__all__ = ["FloorEstimate", "sliced_w2", "w2", "w2_floor", "w2_gaussian"]
