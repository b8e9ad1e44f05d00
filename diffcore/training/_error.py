"""``field_error``: the relative L2 distance of a learned field from an exact one, time by time."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import resolve_rng
from diffcore._validation import Model, check_scalar_time, check_steps
from diffcore.distributions import Gaussian, GaussianMixture, marginal
from diffcore.interpolants import AbstractInterpolant, InterpolantFields, interpolant_fields
from diffcore.processes import AbstractProcess

__all__ = ["FieldError", "field_error"]

DEFAULT_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True, eq=False)
class FieldError:
    """The result of :func:`field_error`; arrays of shape ``(len(times),)``, NumPy float64.

    Attributes
    ----------
    times : the times ``t``.
    relative : ``sqrt(E|f - f*|^2 / E|f*|^2)`` under ``x ~ p_t``.
    relative_stderr : its Monte Carlo standard error (delta method).
    absolute : ``sqrt(E|f - f*|^2)``.
    reference : ``sqrt(E|f*|^2)``, the size of the exact field.
    n : points per time.
    """

    times: np.ndarray
    relative: np.ndarray
    relative_stderr: np.ndarray
    absolute: np.ndarray
    reference: np.ndarray
    n: int

    @property
    def overall(self) -> float:
        """``sqrt(sum_t E|f - f*|^2 / sum_t E|f*|^2)``: the relative error over all the times together.

        Unlike ``relative``, it stays meaningful at a time where the exact field nearly
        vanishes (e.g. the linear flow-matching path from ``N(0, I)`` to wider data, whose
        marginal variance is stationary at some ``t``).
        """
        return float(np.sqrt(np.sum(self.absolute**2) / np.sum(self.reference**2)))


def field_error(
    learned: Callable,
    exact: Callable,
    law: Any,
    data: Any = None,
    *,
    times: Sequence[float] = DEFAULT_TIMES,
    n: int = 4096,
    rng: Any = None,
) -> FieldError:
    r"""Relative L2 error of a learned field against the exact one, weighted by the exact marginal ``p_t``.

    .. math:: e(t) = \Big(\frac{E_{x \sim p_t} \|f(x, t) - f^*(x, t)\|^2}{E_{x \sim p_t} \|f^*(x, t)\|^2}\Big)^{1/2},

    estimated with ``n`` exact draws of ``x_t`` at each ``t`` (the same draws for numerator and
    denominator; standard error by the delta method).  This is the ``L^2(p_t)`` error that
    bounds the distance of generated samples (Chen et al. 2023, thm. 2; Albergo et al. 2023,
    prop. 2.19), normalised by the size of the field.

    Parameters
    ----------
    learned, exact : callables ``(x, t) -> (n, d)``, called with a NumPy float64 ``x`` of shape
        ``(n, d)`` and a float ``t`` (an :class:`MLPField` takes NumPy input directly; wrap an
        ``eps`` model with :func:`diffcore.reparametrize` to compare scores).
    law : where ``x_t`` comes from: a process with ``data`` (a Gaussian or a mixture; ``x_t``
        from :func:`diffcore.marginal`), an interpolant with ``data = (rho0, rho1)`` or an
        :class:`~diffcore.InterpolantFields` (``x_t`` from its ``marginal(t)``), or any callable
        ``t -> law`` whose result has ``sample(n, rng)``.
    times : the times, each in ``[0, 1]``.
    n : points per time; rng : the seed or generator of the draws.

    Returns a :class:`FieldError`; raises ``ValueError`` when a field returns the wrong shape
    or the learned field is not finite, ``TypeError`` for a law it cannot sample.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian, exact_score
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), np.eye(2))
    >>> score = exact_score(p, data)
    >>> err = field_error(lambda x, t: 1.1 * score(x, t), score, p, data, times=[0.5], n=100, rng=0)
    >>> err.relative.round(12)
    array([0.1])
    """
    marginal_at = _marginals(law, data)
    n = check_steps(n, "n")
    ts = [check_scalar_time(t, "times") for t in times]
    if not ts:
        raise ValueError("times must hold at least one time")
    rng = resolve_rng(rng)
    learned = Model.of(learned, "learned")
    rows = [_one_time(learned, exact, marginal_at(t).sample(n, rng), t) for t in ts]
    rel, se, ab, ref = (np.array(col, dtype=np.float64) for col in zip(*rows))
    return FieldError(np.array(ts), rel, se, ab, ref, n)


def _marginals(law: Any, data: Any) -> Callable[[float], Any]:
    if isinstance(law, AbstractProcess):
        if not isinstance(data, (Gaussian, GaussianMixture)):
            raise TypeError(f"with a process, data must be a Gaussian or a GaussianMixture; got {type(data).__name__}")
        return lambda t: marginal(law, data, t)
    if isinstance(law, AbstractInterpolant):
        if not (isinstance(data, tuple) and len(data) == 2):
            raise TypeError(f"with an interpolant, data must be the pair (rho0, rho1); got {type(data).__name__}")
        return interpolant_fields(law, *data).marginal
    if isinstance(law, InterpolantFields):
        law = law.marginal
    elif data is not None:
        raise TypeError(
            f"data is only used with a process or an interpolant; got law {type(law).__name__} "
            f"and data {type(data).__name__}"
        )
    if not callable(law):
        raise TypeError(f"law must be a process (with data) or a callable t -> law; got {type(law).__name__}")
    return law


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _one_time(learned: Callable, exact: Callable, x: np.ndarray, t: float) -> tuple[float, float, float, float]:
    x = _numpy(x)
    f, f_star = _numpy(learned(x, t)), _numpy(exact(x, t))
    if f.shape != x.shape or f_star.shape != x.shape:
        raise ValueError(f"fields must return arrays shaped like x {x.shape}; got {f.shape} and {f_star.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"the learned field is not finite at t = {t}")
    a = np.sum((f - f_star).reshape(len(x), -1) ** 2, axis=1)
    b = np.sum(f_star.reshape(len(x), -1) ** 2, axis=1)
    ratio = a.mean() / b.mean()
    # delta method: Var(mean a / mean b) ~ Var(a - ratio b) / (n mean(b)^2); d sqrt(r) = dr / (2 sqrt r)
    se_ratio = np.std(a - ratio * b, ddof=1) / (math.sqrt(len(x)) * b.mean())
    rel = math.sqrt(ratio)
    return rel, se_ratio / (2 * rel) if rel > 0 else 0.0, math.sqrt(a.mean()), math.sqrt(b.mean())
