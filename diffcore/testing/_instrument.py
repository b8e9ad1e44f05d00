"""The instrumented exact model the kit hands to a sampler: it counts the calls and records the times."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from diffcore._array import is_scalar_time
from diffcore._validation import _real_float_array, describe

__all__ = ["Recorder", "check_sampler_output", "host"]

Array = Any


def host(a: Array) -> np.ndarray:
    """A NumPy float64 copy of an array of any library."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


class Recorder:
    """``score`` behind a counter: every call adds its rows and the times it was evaluated at."""

    def __init__(self, score: Callable[[Array, Any], Array], n: int) -> None:
        self.score, self.n = score, n
        self.calls = 0
        self.rows = 0
        self.times: list[np.ndarray] = []

    def __call__(self, x: Array, t: Any) -> Array:
        self.calls += 1
        self.rows += int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else 0
        self.times.append(np.array([float(t)]) if is_scalar_time(t) else np.unique(host(t)).reshape(-1))
        return self.score(x, t)

    @property
    def nfe(self) -> float:
        """Model evaluations per point: the rows evaluated over the batch size (a call on 2n rows counts 2)."""
        return self.rows / self.n

    @property
    def first_time(self) -> float | None:
        """The time of the first evaluation (the first entry of a vector of times), or ``None``."""
        return float(self.times[0][0]) if self.times else None

    def all_times(self) -> np.ndarray:
        """Every distinct time the model was evaluated at, sorted."""
        return np.unique(np.concatenate(self.times)) if self.times else np.zeros(0)


def check_sampler_output(out: Any, x_init: Array, steps: int) -> np.ndarray:
    """The sampler's output as NumPy float64, after checking it is what the protocol promises.

    ``TypeError`` for another array type than ``x_init``; ``ValueError`` for another shape or for
    NaN or infinity, naming the grid it happened on.
    """
    where = f"on the grid of {steps} steps"
    if type(out) is not type(x_init) or not hasattr(out, "shape"):
        raise TypeError(
            f"sampler must return an array of x_init's type ({describe(x_init)}); got {describe(out)} {where}"
        )
    if not _real_float_array(out):
        raise TypeError(f"sampler must return a real floating array like x_init; got {describe(out)} {where}")
    if tuple(out.shape) != tuple(x_init.shape):
        raise ValueError(f"sampler must return x_init's shape {tuple(x_init.shape)}; got {tuple(out.shape)} {where}")
    y = host(out)
    bad = ~np.all(np.isfinite(y), axis=tuple(range(1, y.ndim)))
    if np.any(bad):
        raise ValueError(
            f"sampler returned NaN or infinity in {int(bad.sum())} of {y.shape[0]} rows {where} "
            f"(first at row {int(np.argmax(bad))}); with the exact score a correct sampler stays finite"
        )
    return y
