"""Metrics between laws and samples (Wasserstein distances through POT) and of sampled paths."""

from diffcore.metrics._paths import PathStraightness, path_straightness
from diffcore.metrics._wasserstein import FloorEstimate, sliced_w2, w2, w2_floor, w2_gaussian

__all__ = ["FloorEstimate", "PathStraightness", "path_straightness", "sliced_w2", "w2", "w2_floor", "w2_gaussian"]
