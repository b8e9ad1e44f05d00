"""Torch plumbing shared by the training modules: generators, tensors, times."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from diffcore._validation import check_array

__all__ = [
    "as_tensor",
    "batch_times",
    "check_finite_tensor",
    "check_time_range",
    "generator",
    "initialise_uniform",
    "sinusoidal_features",
    "time_frequencies",
    "uniform_times",
]


def generator(rng: Any = None, device: Any = "cpu") -> torch.Generator:
    """Turn the ``rng`` keyword into a ``torch.Generator`` on ``device``.

    ``None`` seeds from OS entropy, an ``int`` is the seed, a ``numpy.random.Generator``
    gives a seed drawn from it, and a ``torch.Generator`` is returned unchanged.
    """
    if isinstance(rng, torch.Generator):
        return rng
    if rng is None:
        seed = int(np.random.default_rng().integers(2**62))
    elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        seed = int(rng)
    elif isinstance(rng, np.random.Generator):
        seed = int(rng.integers(2**62))
    else:
        raise TypeError(
            f"rng must be None, an int seed, a numpy.random.Generator or a torch.Generator; got {type(rng).__name__}"
        )
    return torch.Generator(device=device).manual_seed(seed)


def as_tensor(name: str, x: Any, *, dtype: Any = None, device: Any = None) -> torch.Tensor:
    """``x`` (a NumPy array or a tensor, shape ``(n, ...)``, ``n >= 1``) as a floating tensor.

    Integer and boolean data are promoted to float64 (``dtype`` then converts); complex is refused.
    """
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be a NumPy array or a torch tensor of shape (n, ...); got {type(x).__name__}")
    x = check_array(name, x, finite=False)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, ...) with n >= 1; got {tuple(x.shape)}")
    return x.to(dtype=dtype or x.dtype, device=device or x.device)


def check_finite_tensor(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` naming the rule and the first bad row when ``x`` has NaN or infinity."""
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        row = int(torch.nonzero(~finite)[0, 0])
        raise ValueError(f"{name} must be finite; it contains NaN or infinity (first in row {row})")
    return x


def uniform_times(n: int, t_min: float, t_max: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """``n`` times uniform on ``[t_min, t_max]`` in float64 on ``like``'s device (``t_min = t_max``: fixed).

    Float64 keeps ``t`` away from the exact ends of ``(0, 1)``, where interpolant fields divide
    by ``gamma(t) = 0``; a float32 draw would round ``1 - 1e-9`` to ``1``.
    """
    u = torch.rand(n, generator=gen, dtype=torch.float64, device=gen.device).to(like.device)
    return t_min + (t_max - t_min) * u


def check_time_range(t_min: Any, t_max: Any, *, open_ends: bool) -> tuple[float, float]:
    """``0 <= t_min <= t_max <= 1`` (``t_min = t_max`` means a fixed time)."""
    for name, v in (("t_min", t_min), ("t_max", t_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name} must be a real number; got {type(v).__name__}")
    t_min, t_max = float(t_min), float(t_max)
    if not 0.0 <= t_min <= t_max <= 1.0:
        raise ValueError(f"times must satisfy 0 <= t_min <= t_max <= 1; got t_min={t_min}, t_max={t_max}")
    if open_ends and t_min == t_max and t_min in (0.0, 1.0):
        raise ValueError(f"a fixed time must lie strictly inside (0, 1), where the fields are defined; got {t_min}")
    return t_min, t_max


def batch_times(t: Any, n: int, like: torch.Tensor, name: str = "t") -> torch.Tensor:
    """A float or an ``(n,)`` (or 0-d) tensor ``t`` as an ``(n,)`` tensor of ``like``'s dtype and device."""
    if isinstance(t, (int, float, np.floating, np.integer)) and not isinstance(t, bool):
        return torch.full((n,), float(t), dtype=like.dtype, device=like.device)
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a float or an array of shape (n,); got {type(t).__name__}")
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"{name} must be a float or an array of shape (n,) = ({n},); got shape {tuple(t.shape)}")
    return t.to(dtype=like.dtype, device=like.device)


def time_frequencies(n_frequencies: int, max_frequency: float, dtype: torch.dtype) -> torch.Tensor:
    """``K`` angular frequencies spaced geometrically from 1 to ``max_frequency`` (the time embedding)."""
    return torch.logspace(0.0, math.log10(max_frequency), n_frequencies, dtype=torch.float64).to(dtype)


def sinusoidal_features(t: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """``[sin(omega_k t), cos(omega_k t)]``, shape ``(n, 2K)``, for times ``(n,)`` (Vaswani et al. 2017)."""
    angle = t[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


def initialise_uniform(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Draw every linear layer's weights and biases uniform on ``+-1/sqrt(fan_in)`` from ``gen``, in order."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                params = itertools.chain([layer.weight], [] if layer.bias is None else [layer.bias])
                for p in params:
                    p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64).mul_(2 * bound).sub_(bound))
