r"""Bits per dimension of discrete data through explicit uniform dequantisation.

Integer data ``k in {0, ..., n_bins - 1}^d`` is dequantised to ``z = k + u``, ``u ~ U[0, 1)^d``, and
mapped to the model's range by ``y = low + c z`` with ``c = (high - low) / n_bins``.  A model
density ``p_Y`` on ``y`` is a density ``p_Z(z) = p_Y(y) c^d`` on ``z``, and since a unit cube has
volume one, Jensen's inequality gives the bound on the discrete probability

.. math:: \log P(k) = \log \int_{[0,1)^d} p_Z(k + u)\, du \ \ge\ E_u[\log p_Y(y)] + d \log c,

so the reported bits per dimension, an upper bound on ``-log_2 P(k) / d`` on average over ``u``, are

.. math:: \mathrm{bpd} = -\frac{\log p_Y(y) + d \log c}{d \ln 2}
          = -\frac{\log p_Y(y)}{d \ln 2} + \log_2 \frac{n_{bins}}{high - low}

(Theis et al. 2016, sec. 3.1; Ho et al. 2019, sec. 3.1; Song et al. 2021, app. D.2 for data in
``[-1, 1]`` with 256 bins, where the offset is 7 bits).
"""

from __future__ import annotations

import math
from typing import Any

from diffcore._array import as_array, namespace, resolve_rng, uniform
from diffcore._validation import check_array, check_finite, check_steps

__all__ = ["bits_per_dim", "dequantize"]

Array = Any


def _check_range(low: float, high: float) -> tuple[float, float]:
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"need finite low < high; got low={low}, high={high}")
    return low, high


def dequantize(x_int: Array, n_bins: int = 256, rng: Any = None, *, low: float = -1.0, high: float = 1.0) -> Array:
    r"""Uniformly dequantise integer data to the model's range: ``y = low + (high - low) (k + u) / n_bins``.

    ``x_int`` is an array ``(n, ...)`` of integers in ``[0, n_bins)`` (any dtype holding whole
    numbers); ``u ~ U[0, 1)`` independently per entry from ``rng``.  Returns a float array
    (float64 for integer inputs of either library; floating inputs keep their
    dtype) of the same shape, in ``[low, high)``.  Pair with :func:`bits_per_dim` with the same
    ``n_bins``, ``low``, ``high``.

    Example
    -------
    >>> import numpy as np
    >>> y = dequantize(np.array([[0, 255]]), 256, rng=0)
    >>> bool(-1.0 <= y[0, 0] < -1.0 + 2 / 256 and 1.0 - 2 / 256 <= y[0, 1] < 1.0)
    True
    """
    n_bins = check_steps(n_bins, "n_bins")
    low, high = _check_range(low, high)
    if not hasattr(x_int, "shape"):
        raise TypeError(f"x_int must be an array of integers; got {type(x_int).__name__}")
    xp = namespace(x_int)
    k = as_array(x_int, x_int) if not xp.isdtype(x_int.dtype, "real floating") else x_int
    check_finite("x_int", k)
    if not bool(xp.all(k == xp.round(k))) or not bool(xp.all((k >= 0) & (k <= n_bins - 1))):
        raise ValueError(
            f"x_int must hold integers in [0, {n_bins - 1}]; got values in [{float(xp.min(k))}, {float(xp.max(k))}]"
        )
    u = as_array(uniform(resolve_rng(rng), tuple(k.shape)), k)
    return low + (high - low) * (k + u) / n_bins


def bits_per_dim(log_likelihood: Any, dim: int, *, n_bins: int = 256, low: float = -1.0, high: float = 1.0) -> Any:
    r"""``bpd = -(log p_Y(y) + d log c) / (d ln 2)`` with ``c = (high - low) / n_bins``.

    ``log_likelihood`` is ``log p_Y`` at dequantised points (an array ``(n,)``, a float, or a
    :class:`~diffcore.likelihood.LogLikelihood`, whose ``.value`` is used); ``dim`` the number
    ``d`` of dequantised coordinates per point.  Returns the same kind (an array ``(n,)`` or a
    float).  A model uniform on ``[low, high]^d`` scores exactly ``log2(n_bins)``.

    Example
    -------
    >>> d = 3
    >>> round(bits_per_dim(-d * math.log(2.0), d), 12)   # uniform on [-1, 1]^3, 256 bins
    8.0
    """
    dim = check_steps(dim, "dim")
    n_bins = check_steps(n_bins, "n_bins")
    low, high = _check_range(low, high)
    value = getattr(log_likelihood, "value", log_likelihood)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"log_likelihood must be finite; got {value}")
    else:
        value = check_array("log_likelihood", value, min_ndim=0)
    log_c = math.log((high - low) / n_bins)
    return -(value + dim * log_c) / (dim * math.log(2.0))
