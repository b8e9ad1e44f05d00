r"""The static Schrödinger bridge between two samples: entropic optimal transport through POT.

The static bridge between ``mu`` and ``nu`` for the reference ``sigma W`` minimises
``KL(pi | R_01)`` with ``R_01(dx, dy) ∝ mu(dx) exp(-|x - y|^2 / (2 sigma^2)) dy``; multiplied by
``2 sigma^2`` this is entropic optimal transport

.. math:: \min_{\pi \in \Pi(\mu, \nu)} \int |x - y|^2 \, d\pi + 2\sigma^2 \operatorname{KL}(\pi \,|\, \mu \otimes \nu)

(Léonard 2014; Bunne et al. 2023, eq. 3).  POT's ``ot.sinkhorn(a, b, M, reg)`` minimises
``<pi, M> + reg sum_ij pi_ij log pi_ij``; for a plan with the marginals ``a, b``,
``sum pi log pi = KL(pi | a ⊗ b) + const``, so with ``M_ij = |x_i - y_j|^2`` the matching
regularisation is **reg = 2 sigma^2** (the Gibbs kernel ``exp(-M / reg)`` is then the Brownian
transition kernel of variance ``sigma^2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import as_array
from diffcore._validation import check_array, check_positive, check_same_namespace, check_steps

__all__ = ["EntropicCoupling", "entropic_coupling"]


@dataclass(frozen=True, eq=False)
class EntropicCoupling:
    r"""An entropic optimal-transport plan between two samples and its summaries.

    Attributes
    ----------
    plan : ``(n0, n1)`` non-negative, rows summing to ``1 / n0`` and columns to ``1 / n1``.
    cross_cov : ``(d, d)``, ``sum_ij pi_ij (x_i - xbar)(y_j - ybar)^T``, the plug-in estimate of the
        bridge coupling's ``Cov(X_0, X_1)`` (compare :attr:`GaussianSchrodingerBridge.cross_cov`).
    cost : ``sum_ij pi_ij |x_i - y_j|^2``, the transport cost ``E|X_1 - X_0|^2`` under the plan.
    reg : the POT regularisation used, ``2 sigma^2``.
    """

    plan: np.ndarray
    cross_cov: np.ndarray
    cost: float
    reg: float


def entropic_coupling(
    x0: Any, x1: Any, sigma: float, *, max_iter: int = 100_000, tol: float = 1e-9
) -> EntropicCoupling:
    r"""The entropic-OT (static Schrödinger bridge) plan between two samples, by Sinkhorn iterations.

    Solves the problem of the module docstring between the empirical laws of ``x0`` ``(n0, d)``
    and ``x1`` ``(n1, d)`` with ``ot.sinkhorn(..., reg=2 sigma^2)`` (Cuturi 2013), in the log domain
    (``method="sinkhorn_log"``, much slower) when ``max M / reg >= 300``, where the kernel would
    underflow.  As ``n -> infinity`` the plan's summaries converge to those of the population
    bridge (Genevay et al. 2019; Mena and Niles-Weed 2019: ``O(n^{-1/2})`` fluctuations); as
    ``sigma -> 0`` to optimal transport (``ot.emd``).

    Parameters
    ----------
    x0, x1 : the two samples (NumPy, float64 on the host; torch tensors are copied to it).
    sigma : the reference noise level (> 0).
    max_iter, tol : Sinkhorn iterations and the stopping threshold on the marginal violation.

    Returns an :class:`EntropicCoupling`.

    Raises
    ------
    ValueError for bad samples or ``sigma``; RuntimeError when Sinkhorn stops before the
    marginals are met to ``100 tol`` (raise ``max_iter`` or ``sigma``).

    Example
    -------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0]])
    >>> out = entropic_coupling(x, x, sigma=0.5)
    >>> np.round(out.plan * 2, 6).tolist(), out.reg  # diagonal 1 / (1 + exp(-1 / reg)) = 1 / (1 + e^-2)
    ([[0.880797, 0.119203], [0.119203, 0.880797]], 0.5)
    """
    import ot

    check_same_namespace(x0=x0, x1=x1)
    x0, x1 = check_array("x0", x0, ndim=2), check_array("x1", x1, ndim=2)
    if x0.shape[1] != x1.shape[1]:
        raise ValueError(f"x0 and x1 must have the same dimension d; got shapes {tuple(x0.shape)}, {tuple(x1.shape)}")
    for name, x in (("x0", x0), ("x1", x1)):
        if x.shape[0] < 1:
            raise ValueError(f"{name} must hold at least one point; got shape {tuple(x.shape)}")
    sigma = check_positive("sigma", sigma)
    max_iter, tol = check_steps(max_iter, "max_iter"), check_positive("tol", tol)
    a_pts = np.asarray(as_array(x0, np.empty(0)), dtype=np.float64)
    b_pts = np.asarray(as_array(x1, np.empty(0)), dtype=np.float64)
    a, b = ot.unif(a_pts.shape[0]), ot.unif(b_pts.shape[0])
    cost_matrix = ot.dist(a_pts, b_pts)  # squared Euclidean
    reg = 2.0 * sigma**2
    # the Gibbs kernel exp(-M / reg) underflows past M / reg ~ 700: go to the log domain well before
    method = "sinkhorn" if cost_matrix.max() / reg < 300 else "sinkhorn_log"
    plan = ot.sinkhorn(a, b, cost_matrix, reg, method=method, numItermax=max_iter, stopThr=tol, warn=False)
    violation = max(np.abs(plan.sum(axis=1) - a).max(), np.abs(plan.sum(axis=0) - b).max())
    if not np.isfinite(violation) or violation > 100 * tol:
        raise RuntimeError(
            f"Sinkhorn did not meet the marginals (violation {violation:.2e} after max_iter = {max_iter}); "
            "raise max_iter or sigma"
        )
    da, db = a_pts - a @ a_pts, b_pts - b @ b_pts
    cross = da.T @ plan @ db
    return EntropicCoupling(plan, cross, float(np.sum(plan * cost_matrix)), reg)
