"""How straight are the paths of a flow: length ratio and the rectified-flow straightness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import as_array
from diffcore._validation import check_array, check_grid

__all__ = ["PathStraightness", "path_straightness"]


@dataclass(frozen=True)
class PathStraightness:
    """``length_ratio``: mean of path length / chord length (1 for straight paths);
    ``deviation``: the straightness ``S`` of Liu et al. (2023), 0 for straight paths."""

    length_ratio: float
    deviation: float


def path_straightness(path: Any, ts: Any) -> PathStraightness:
    r"""Straightness of sampled trajectories ``path`` of shape ``(steps + 1, n, d)`` on the grid ``ts``.

    * length ratio ``E_i [ sum_k |x_{k+1,i} - x_{k,i}| / |x_{K,i} - x_{0,i}| ] >= 1``;
    * deviation ``S = E_i sum_k |(x_{K,i} - x_{0,i}) / T - (x_{k+1,i} - x_{k,i}) / h_k|^2 h_k / T``,
      the discretised ``int_0^1 E |(x_1 - x_0) - dx_t/dt|^2 dt`` of Liu et al. (2023, eq. 6) with
      time normalised to the span ``T`` of the grid.

    Both vanish in the sense above exactly when every trajectory is a straight line traversed at
    constant speed.  Use ``Solution.path`` and ``Solution.ts`` of :func:`~diffcore.integrate`
    with ``save_path=True``.  ``ts`` must be a strictly monotone grid in ``[0, 1]`` and ``path``
    finite (``ValueError``); an empty batch (``n = 0``) has no straightness (``ValueError``).
    """
    path = check_array("path", path, ndim=3, shape="(len(ts), n, d)")
    x = np.asarray(as_array(path, np.empty(0)), dtype=np.float64)
    grid = np.asarray(check_grid(ts))
    if x.shape[0] != grid.shape[0] or x.shape[1] < 1:
        raise ValueError(
            f"path must have shape (len(ts), n, d) with n >= 1; got {x.shape} and {grid.shape[0]} times"
        )
    steps = np.diff(x, axis=0)  # (K, n, d)
    h = np.abs(np.diff(grid))[:, None]  # (K, 1)
    span = float(np.sum(h))
    chord = x[-1] - x[0]
    chord_len = np.linalg.norm(chord, axis=1)
    if np.any(chord_len == 0):
        raise ValueError("a trajectory ends where it starts; its length ratio is undefined")
    ratio = np.mean(np.sum(np.linalg.norm(steps, axis=2), axis=0) / chord_len)
    speed = steps / h[:, :, None]
    dev = np.sum(np.sum((chord[None] / span - speed) ** 2, axis=2) * h, axis=0) / span
    return PathStraightness(float(ratio), float(np.mean(dev)))
