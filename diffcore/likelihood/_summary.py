r"""Dataset-level summaries of per-point log-likelihoods: a mean and what its standard error covers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LikelihoodSummary", "summarize"]


@dataclass(frozen=True)
class LikelihoodSummary:
    r"""The mean of per-point estimates ``v_i`` (log-likelihoods in nats, or bits per dimension) and its errors.

    With ``n`` points drawn independently from the data and, per point, an estimate
    ``v_i = L(x_i) + e_i`` whose Monte Carlo error ``e_i`` (Hutchinson probes; zero for an exact
    divergence) has mean zero and standard error ``se_i`` given ``x_i``:

    .. math:: \bar v = \frac1n \sum_i v_i, \qquad
              \mathrm{stderr} = \frac{s_v}{\sqrt n}, \qquad
              \mathrm{estimator\_stderr} = \frac1n \Big(\sum_i se_i^2\Big)^{1/2},

    with ``s_v`` the sample standard deviation of the ``v_i`` (``std``).

    Attributes
    ----------
    n : the number of points.
    mean : ``v_bar``.
    stderr : the standard error of ``v_bar`` as an estimate of the data expectation
        ``E_{x ~ data}[L(x)]`` (what a paper's test-set bits/dim estimates).  It covers the
        choice of the ``n`` points *and* the estimator's own noise: the ``v_i`` are independent
        and their spread already contains ``Var(e_i)``, so adding ``estimator_stderr`` to it
        would count that noise twice.  NaN for ``n = 1``.
    std : ``s_v``, the between-point spread (NaN for ``n = 1``).
    estimator_stderr : the standard error of ``v_bar`` as an estimate of ``(1/n) sum_i L(x_i)``
        for *these* points: the Hutchinson part alone (0 for an exact divergence; NaN where a
        point's ``se_i`` is NaN, as with one probe).  It says whether more probes would change
        the number; ``stderr`` says whether more data would.
    unit : ``"nats"`` for a :class:`~diffcore.likelihood.LogLikelihood`, ``"bits/dim"`` for
        :class:`~diffcore.likelihood.BitsPerDim`.

    Neither error includes the ODE solver's discretisation error, the mismatch between the
    prior and ``p_1``, or the gap between ``log p_{t_min}`` and ``log p_0``
    (:func:`~diffcore.likelihood.t_min_gap`): check those by refining ``steps``, with the exact
    prior law, and against ``t_min``.
    """

    n: int
    mean: float
    stderr: float
    std: float
    estimator_stderr: float
    unit: str

    def __str__(self) -> str:
        return (
            f"{self.mean:.6g} ± {self.stderr:.2g} {self.unit} (mean over {self.n} points ± standard error; "
            f"the estimator's share: {self.estimator_stderr:.2g})"
        )


def host(a: Any) -> np.ndarray:
    """A float64 NumPy copy of an array of either library (on any device)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu()
    return np.asarray(a, dtype=np.float64)


def summarize(values: Any, stderrs: Any, unit: str) -> LikelihoodSummary:
    """:class:`LikelihoodSummary` of per-point ``values`` ``(n,)`` with Monte Carlo errors ``stderrs`` ``(n,)``."""
    v, se = host(values).reshape(-1), host(stderrs).reshape(-1)
    n = v.size
    if n == 0:
        raise ValueError("a summary needs at least one point; got an empty batch")
    std = float(np.std(v, ddof=1)) if n > 1 else math.nan
    return LikelihoodSummary(
        n=n,
        mean=float(np.mean(v)),
        stderr=std / math.sqrt(n),
        std=std,
        estimator_stderr=float(np.sqrt(np.sum(se**2))) / n,
        unit=unit,
    )
