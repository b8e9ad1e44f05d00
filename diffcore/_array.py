"""The array layer: one code path for NumPy and PyTorch.

Every numerical routine of diffcore obtains its namespace with :func:`namespace`
(``array_api_compat.array_namespace``), creates new arrays on the input's device and
dtype, and draws randomness through :func:`resolve_rng` / :func:`normal`.  Neither
torch nor POT is imported here: torch is only touched when the caller hands us a
torch object, which means it is already imported.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_torch_array

__all__ = [
    "as_array",
    "broadcast_time",
    "device_of",
    "flatten_batch",
    "is_scalar_time",
    "namespace",
    "normal",
    "resolve_rng",
    "to_float_list",
    "uniform",
]

Array = Any


def namespace(*arrays: Array) -> Any:
    """Return the array-API namespace shared by ``arrays`` (Python scalars are ignored)."""
    arrays = tuple(a for a in arrays if not isinstance(a, (int, float)))
    if not arrays:
        return array_namespace(np.empty(0))
    return array_namespace(*arrays)


def device_of(x: Array) -> Any:
    """Device of ``x`` (``"cpu"`` for NumPy arrays)."""
    return device(x)


def is_scalar_time(t: Any) -> bool:
    """True when ``t`` is a Python (or NumPy 0-d) real number rather than a batch of times."""
    return isinstance(t, (int, float, np.floating, np.integer))


def as_array(value: Array, like: Array, *, dtype: Any = None) -> Array:
    """Convert ``value`` to an array of ``like``'s type, device and (unless given) dtype.

    Floating ``like`` arrays keep their dtype; integer or boolean ones promote to the
    namespace's default float (float64 for NumPy).  Works across libraries: NumPy values
    become torch tensors for a torch ``like`` and torch tensors come to the host for a
    NumPy ``like``.
    """
    xp = namespace(like)
    if dtype is None:
        dtype = like.dtype if xp.isdtype(like.dtype, "real floating") else xp.float64
    if is_torch_array(like):
        import torch  # already imported: ``like`` is a torch tensor

        return torch.as_tensor(value, dtype=dtype, device=like.device)
    if is_torch_array(value):
        value = value.detach().cpu().numpy()
    return xp.asarray(value, dtype=dtype, device=device(like))


def flatten_batch(x: Array) -> Array:
    """``x (n, ...)`` as ``(n, D)`` with ``D`` the product of the trailing axes; also for ``n = 0``.

    (``reshape(x, (n, -1))`` cannot infer ``D`` from an empty batch.)
    """
    return namespace(x).reshape(x, (x.shape[0], math.prod(x.shape[1:])))


def broadcast_time(t: Any, x: Array) -> Any:
    """Shape a time against a batch ``x`` of shape ``(n, ...)``.

    A scalar ``t`` is returned as a Python float (it broadcasts by itself); a time
    array of shape ``(n,)`` is reshaped to ``(n, 1, ..., 1)`` with ``x.ndim`` axes so
    that ``coef(t) * x`` works per sample.  Any other shape is rejected.
    """
    if is_scalar_time(t):
        return float(t)
    if getattr(t, "ndim", None) == 0:
        return t
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"t must be a float or an array of shape (n,) = ({x.shape[0]},) matching the batch; "
            f"got shape {tuple(t.shape)}"
        )
    xp = namespace(t)
    return xp.reshape(t, (t.shape[0],) + (1,) * (x.ndim - 1))


def resolve_rng(rng: Any = None) -> Any:
    """Turn the ``rng`` keyword into a generator.

    Accepts ``None`` (fresh OS entropy), an ``int`` seed, a ``numpy.random.Generator``
    or a ``torch.Generator``; returns a NumPy ``Generator`` or the torch generator.
    """
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(rng, torch.Generator):
        return rng
    raise TypeError(
        "rng must be None, an int seed, a numpy.random.Generator or a torch.Generator; "
        f"got {type(rng).__name__}"
    )


def normal(rng: Any, shape: tuple[int, ...], like: Array) -> Array:
    """Standard normal draws of ``shape`` with ``like``'s array type, dtype and device.

    ``rng`` must already be resolved (see :func:`resolve_rng`).  A torch generator draws
    on its own device and the result is moved to ``like``'s; a NumPy generator draws in
    float64 and the result is converted.
    """
    if isinstance(rng, np.random.Generator):
        return as_array(rng.standard_normal(shape), like)
    import torch  # rng is a torch.Generator, so torch is imported

    z = torch.randn(shape, generator=rng, dtype=torch.float64, device=rng.device)
    if is_torch_array(like):
        return z.to(dtype=like.dtype, device=like.device)
    return as_array(z.cpu().numpy(), like)


def uniform(rng: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform draws on [0, 1) as a float64 NumPy array, from a resolved NumPy or torch generator."""
    if isinstance(rng, np.random.Generator):
        return rng.random(shape)
    import torch  # rng is a torch.Generator

    return torch.rand(shape, generator=rng, dtype=torch.float64, device=rng.device).cpu().numpy()


def to_float_list(ts: Array) -> list[float]:
    """Host copy of a 1-D time grid as Python floats (one transfer, before any loop)."""
    if is_torch_array(ts):
        ts = ts.detach().cpu().numpy()
    return [float(v) for v in np.asarray(ts, dtype=np.float64).reshape(-1)]
