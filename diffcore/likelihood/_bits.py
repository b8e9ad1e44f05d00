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
``[-1, 1]`` with 256 bins, where the offset is 7 bits).  Continuous data has no bins and no
offset: :func:`bits_per_dim` adds one only when the quantisation is stated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from diffcore._array import as_array, namespace, resolve_rng, uniform
from diffcore._validation import check_array, check_finite, check_steps
from diffcore.likelihood._ode import LogLikelihood
from diffcore.likelihood._summary import LikelihoodSummary, summarize

__all__ = ["BitsPerDim", "bits_per_dim", "dequantize"]

Array = Any


def _check_range(low: float, high: float) -> tuple[float, float]:
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"need finite low < high; got low={low}, high={high}")
    return low, high


def dequantize(x_int: Array, n_bins: int, rng: Any = None, *, low: float = -1.0, high: float = 1.0) -> Array:
    r"""Uniformly dequantise integer data to the model's range: ``y = low + (high - low) (k + u) / n_bins``.

    ``x_int`` is an array ``(n, ...)`` of integers in ``[0, n_bins)`` (any dtype holding whole
    numbers); ``n_bins`` has no default (256 for 8-bit data: say so, since 4-bit data would fit
    in it silently); ``u ~ U[0, 1)`` independently per entry from ``rng``; the model's range
    ``[low, high)`` defaults to ``[-1, 1)``.  Returns a float array
    (float64 for integer inputs of either library; floating inputs keep their
    dtype) of the same shape, in ``[low, high)``.  Pair with :func:`bits_per_dim` with the same
    ``n_bins``, ``low``, ``high``, all three stated there.

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


@dataclass(frozen=True, eq=False)
class BitsPerDim:
    r"""Bits per dimension of each point, with their Monte Carlo errors: what :func:`bits_per_dim` returns for a
    :class:`~diffcore.likelihood.LogLikelihood`.

    ``bpd_i = -log p(x_i) / (D ln 2) + offset``, an affine map of the log-likelihood, so every
    error maps through the factor ``1 / (D ln 2)``.

    Attributes
    ----------
    value : ``(n,)`` bits per dimension of each point.
    stderr : ``(n,)`` the Monte Carlo (Hutchinson) standard error of each ``value``: the
        log-likelihood's ``stderr / (D ln 2)`` (0 for the exact divergence, NaN for one probe).
    dim : ``D``.
    n_bins, low, high : the stated quantisation (``None`` for continuous data).
    offset : ``log2(n_bins / (high - low))``, the bits added for the dequantisation; 0 for
        continuous data.

    :meth:`summary` gives the dataset-level mean and standard error in bits/dim.
    """

    value: Any
    stderr: Any
    dim: int
    n_bins: int | None
    low: float | None
    high: float | None
    offset: float

    def summary(self) -> LikelihoodSummary:
        """The mean over the points and its standard errors, in bits/dim (see :class:`LikelihoodSummary`)."""
        return summarize(self.value, self.stderr, "bits/dim")


def bits_per_dim(
    log_likelihood: Any,
    dim: int | None = None,
    *,
    n_bins: int | None = None,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    r"""Bits per dimension: ``-log p(x) / (D ln 2)``, plus ``log2(n_bins / (high - low))`` for dequantised data.

    Continuous data (the default, ``n_bins=None``): ``bpd = -log p(x) / (D ln 2)``, the code
    length of the density in bits per coordinate; no offset is added.

    Quantised data (``n_bins`` given, and then ``low`` and ``high`` too: nothing is assumed):
    integers ``k in {0, ..., n_bins - 1}^D`` dequantised to ``y = low + c (k + u)``,
    ``c = (high - low) / n_bins`` (:func:`dequantize` with the same three numbers), where

    .. math:: \mathrm{bpd} = -rac{\log p_Y(y) + D \log c}{D \ln 2}
              = -rac{\log p_Y(y)}{D \ln 2} + \log_2 rac{n_{bins}}{high - low}

    bounds the discrete code length ``-log2 P(k) / D`` from above, on average over ``u``
    (module notes).  8-bit images on ``[-1, 1]`` are ``n_bins=256, low=-1, high=1`` (an offset
    of 7 bits); on ``[0, 1]`` the offset is 8 bits.  Stating the range is required because the
    offset depends on it: on continuous data it would add bits that are not there.

    Parameters
    ----------
    log_likelihood : ``log p`` per point: a :class:`~diffcore.likelihood.LogLikelihood`, an
        array ``(n,)`` (NumPy or torch) or a float.
    dim : ``D``, the number of coordinates per point; for a ``LogLikelihood`` it defaults to
        the size of one point (``x_end.shape[1:]``).
    n_bins, low, high : the quantisation: all three, or none (continuous data).

    Returns
    -------
    For a ``LogLikelihood``: a :class:`BitsPerDim` (per-point ``value`` and ``stderr``, and
    ``.summary()`` for the mean ± standard error).  For an array: the array of bits per dimension;
    for a float: a float.

    Raises
    ------
    TypeError, ValueError
        for a missing ``dim``, ``n_bins`` without ``low`` and ``high`` (or the range without
        ``n_bins``), ``low >= high``, or non-finite log-likelihoods.

    Example
    -------
    >>> d = 3
    >>> round(bits_per_dim(-d * math.log(2.0), d, n_bins=256, low=-1.0, high=1.0), 12)  # uniform on [-1, 1]^3
    8.0
    >>> round(bits_per_dim(-d * 0.5 * math.log(2 * math.pi * math.e), d), 6)  # N(0, I) in nats -> bits
    2.047096
    """
    is_result = isinstance(log_likelihood, LogLikelihood)
    if dim is None:
        if not is_result:
            raise TypeError(
                "dim (the number of coordinates per point) is required unless log_likelihood is a LogLikelihood"
            )
        dim = math.prod(log_likelihood.x_end.shape[1:])
    dim = check_steps(dim, "dim")
    offset = _offset(n_bins, low, high)
    scale = 1.0 / (dim * math.log(2.0))
    if is_result:
        return BitsPerDim(
            value=offset - scale * log_likelihood.value,
            stderr=scale * log_likelihood.stderr,
            dim=dim,
            n_bins=n_bins,
            low=None if low is None else float(low),
            high=None if high is None else float(high),
            offset=offset,
        )
    value = log_likelihood
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"log_likelihood must be finite; got {value}")
    else:
        value = check_array("log_likelihood", value, min_ndim=0)
    return offset - scale * value


def _offset(n_bins: Any, low: Any, high: Any) -> float:
    """``log2(n_bins / (high - low))`` for stated quantisation, 0 for continuous data."""
    if n_bins is None:
        if low is not None or high is not None:
            raise ValueError(
                f"low and high describe quantised data and need n_bins; got low={low}, high={high} without n_bins "
                "(for continuous data pass none of the three)"
            )
        return 0.0
    n_bins = check_steps(n_bins, "n_bins")
    if low is None or high is None:
        raise ValueError(
            f"n_bins={n_bins} needs the range of the dequantised data, low= and high= (e.g. low=-1.0, high=1.0 "
            f"for data scaled to [-1, 1], dequantize's default); got low={low}, high={high}"
        )
    low, high = _check_range(low, high)
    return math.log2(n_bins / (high - low))
