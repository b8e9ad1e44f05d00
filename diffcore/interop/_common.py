"""Shared pieces of the adapters: torch on demand, NumPy <-> torch, generators, the sampler protocol's checks."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_torch_array

from diffcore._array import resolve_rng
from diffcore._validation import check_array, check_grid

Array = Any


def torch_module(who: str) -> Any:
    """``torch``, imported on demand, with a clear message when it is missing."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is installed wherever the adapters are tested
        raise ImportError(f"{who} needs torch: pip install 'diffcore[torch,interop]'") from e
    return torch


def to_torch(x: Array, who: str) -> Any:
    """``x`` as a torch tensor (NumPy arrays become CPU tensors of their dtype; tensors pass as they are)."""
    torch = torch_module(who)
    return x if is_torch_array(x) else torch.from_numpy(np.ascontiguousarray(x))


def like_input(out: Any, x_init: Array) -> Array:
    """``out`` (a torch tensor) in ``x_init``'s array type: NumPy in, NumPy out."""
    if is_torch_array(x_init):
        return out
    return out.detach().cpu().numpy().astype(x_init.dtype, copy=False)


def torch_generator(rng: Any, device: Any, who: str) -> Any:
    """A ``torch.Generator`` on ``device`` from the ``rng`` keyword (a torch generator is used as it is).

    An int seed or a NumPy generator seeds a new torch generator (from one draw of the NumPy
    generator), so the same ``rng`` gives the same numbers; ``None`` seeds it from fresh entropy.
    """
    torch = torch_module(who)
    rng = resolve_rng(rng)
    if isinstance(rng, torch.Generator):
        return rng
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(0, 2**63 - 1)))
    return gen


def check_sampler_call(score: Any, x_init: Array, ts: Any) -> tuple[Array, np.ndarray]:
    """The checks of the sampler protocol: a callable score, finite ``(n, ...)`` points, a decreasing grid."""
    if not callable(score):
        raise TypeError(f"score must be callable (x, t) -> array; got {type(score).__name__}")
    x_init = check_array("x_init", x_init, min_ndim=2)
    grid = np.asarray(check_grid(ts, -1, "the sampler"), dtype=np.float64)
    return x_init, grid


def is_empty(x: Array) -> bool:
    """No points: the samplers return the empty batch as it is, without running the library."""
    return x.shape[0] == 0
