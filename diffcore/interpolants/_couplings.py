"""Couplings of ``(x_0, x_1)`` minibatches: independent and minibatch optimal transport."""

from __future__ import annotations

from typing import Any

from diffcore._array import as_array, namespace, resolve_rng, uniform
from diffcore._validation import check_array, check_same_namespace

__all__ = ["independent_coupling", "minibatch_ot_coupling"]

Array = Any


def _check_pair(x0: Any, x1: Any) -> tuple[Array, Array]:
    """Two finite real minibatches ``(n, d)`` of one shape and one array library (integers promoted)."""
    check_same_namespace(x0=x0, x1=x1)
    x0, x1 = check_array("x0", x0, ndim=2), check_array("x1", x1, ndim=2)
    if tuple(x0.shape) != tuple(x1.shape):
        raise ValueError(f"x0 and x1 must have the same shape (n, d); got {tuple(x0.shape)} and {tuple(x1.shape)}")
    return x0, x1


def independent_coupling(x0: Array, x1: Array, rng: Any = None) -> tuple[Array, Array]:
    """Pair independent minibatches at random: ``(x0, x1[perm])`` with a uniform random permutation.

    Independent draws are already an independent coupling; the shuffle makes that hold even
    when the rows of ``x1`` were ordered (e.g. sorted by mixture component).
    """
    x0, x1 = _check_pair(x0, x1)
    import numpy as np

    perm = np.argsort(uniform(resolve_rng(rng), (x1.shape[0],)))
    xp = namespace(x1)
    return x0, xp.take(x1, as_array(perm, x1, dtype=xp.int64), axis=0)


def minibatch_ot_coupling(x0: Array, x1: Array, rng: Any = None) -> tuple[Array, Array]:
    r"""Pair a minibatch by exact optimal transport: ``(x0, x1[sigma])`` with

    .. math:: \sigma = \arg\min_{\text{permutations}} \sum_i \|x_{0,i} - x_{1,\sigma(i)}\|^2,

    solved by POT's network simplex (``ot.emd``; for equal uniform weights an optimal plan is a
    permutation).  This is the minibatch OT coupling of OT-conditional flow matching
    (Tong et al. 2024, alg. 3; Pooladian et al. 2023), whose conditional paths cross less and
    give straighter learned flows.  ``rng`` breaks ties (rows of the plan with several
    maximal entries) at random.
    """
    import numpy as np
    import ot

    x0, x1 = _check_pair(x0, x1)
    if x0.shape[0] == 0:  # an empty minibatch is its own coupling
        return x0, x1
    plan = ot.emd(ot.unif(x0.shape[0]), ot.unif(x1.shape[0]), ot.dist(_host(x0), _host(x1)), numItermax=10_000_000)
    jitter = 1e-12 * uniform(resolve_rng(rng), plan.shape)
    perm = np.argmax(plan + jitter, axis=1)
    if len(np.unique(perm)) != len(perm):
        raise RuntimeError("minibatch OT plan is not a permutation; this should not happen for equal uniform weights")
    xp = namespace(x1)
    return x0, xp.take(x1, as_array(perm, x1, dtype=xp.int64), axis=0)


def _host(a: Array) -> Any:
    import numpy as np

    return np.asarray(as_array(a, np.empty(0)), dtype=np.float64)
