r"""The exact flow map ``Phi_{t->s}`` of the probability-flow / interpolant ODE on the laboratory.

For a process, the probability-flow ODE ``dx/dt = f x - (g^2/2) grad log p_t(x)`` (Song et al.
2021, eq. 13); for an interpolant, the transport ODE ``dx/dt = b(t, x)`` (Albergo et al. 2023,
eq. 2.9).  Either carries ``p_t`` to ``p_s``, in both directions of time, and its flow map
``Phi_{t->s}`` is what consistency models, consistency trajectory models, MeanFlow and shortcut
models learn (book chapter "Flow maps and few-step generation").

Gaussian marginals ``N(mu_u, Sigma_u)`` whose covariances commute at all times (every process, and
an interpolant whose two ends have commuting covariances) have the affine flow map

.. math:: \Phi_{t\to s}(x) = \mu_s + \Sigma_s^{1/2} \Sigma_t^{-1/2} (x - \mu_t),

because the velocity is ``mu_u' + (Sigma_u'/2) Sigma_u^{-1} (x - mu_u)`` and so
``Sigma_u^{-1/2} (x_u - mu_u)`` is constant along every trajectory.  Its Jacobian determinant is
``(det Sigma_s / det Sigma_t)^{1/2}``.  Mixtures have no closed form: the map is the adaptive
Dormand-Prince solution at a tight tolerance, with an error estimate from a second solution
100 times tighter; its log-determinant is still exact given the map, by the change of variables
``log |det grad Phi(x)| = log p_t(x) - log p_s(Phi(x))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array, namespace
from diffcore._validation import check_array, check_positive, check_scalar_time
from diffcore.distributions import exact_score, marginal
from diffcore.distributions._mixture import AbstractMixtureLaw
from diffcore.dynamics import InterpolantODE, ProbabilityFlowODE
from diffcore.interpolants import AbstractInterpolant, interpolant_fields
from diffcore.processes import AbstractProcess
from diffcore.samplers import Adaptive, integrate

__all__ = ["FlowMap", "exact_flow_map"]

Array = Any


def _sqrtm(cov: np.ndarray, power: float) -> np.ndarray:
    """``cov^power`` of a symmetric positive-definite matrix (eigendecomposition)."""
    lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
    return (vec * lam**power) @ vec.T


def _commute(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-300) ** 2
    return float(np.abs(a @ b - b @ a).max()) <= 1e-12 * scale


@dataclass(frozen=True, eq=False)
class FlowMap:
    r"""``Phi_{t->s}``: the exact flow map of the laboratory's ODE from time ``t`` to time ``s``.

    Build it with :func:`exact_flow_map`.  Call it on points ``x (n, d)`` (NumPy or torch; the
    result follows ``x``'s array type, dtype and device).

    Attributes
    ----------
    source : the process or interpolant.  t, s : the times (floats in ``[0, 1]``, either order).
    affine : ``True`` when the map is the closed form ``x -> A x + b`` (Gaussian marginals with
        commuting covariances), ``False`` for the adaptive reference.
    matrix, offset : ``A (d, d)`` and ``b (d,)`` of the affine map (NumPy), else ``None``.
    rtol, atol : the reference's tolerances (unused by an affine map).
    """

    source: AbstractProcess | AbstractInterpolant
    t: float
    s: float
    affine: bool
    matrix: np.ndarray | None
    offset: np.ndarray | None
    rtol: float
    atol: float
    _law_t: Any = field(repr=False)
    _law_s: Any = field(repr=False)
    _dynamics: Any = field(repr=False)

    @property
    def dim(self) -> int:
        """Dimension ``d``."""
        return int(self._law_t.dim)

    def _points(self, x: Any) -> Array:
        return check_array("x", x, ndim=2, dim=self.dim)

    def _solve(self, x: Array, rtol: float, atol: float) -> Array:
        return integrate(self._dynamics, x, [self.t, self.s], Adaptive(rtol=rtol, atol=atol)).x

    def __call__(self, x: Any) -> Array:
        """``Phi_{t->s}(x)``, shape ``(n, d)``."""
        x = self._points(x)
        if self.t == self.s or x.shape[0] == 0:
            return x
        if self.affine:
            return x @ as_array(self.matrix.T, x) + as_array(self.offset, x)[None, :]
        return self._solve(x, self.rtol, self.atol)

    def with_error(self, x: Any) -> tuple[Array, float]:
        """``(Phi_{t->s}(x), err)``: ``err`` bounds the map's error (max-norm over the batch).

        For the reference, ``err`` is the largest difference from a second solution with
        tolerances 100 times tighter (whose own error is about 100 times smaller); for an
        affine map it is the float64 rounding of ``A x + b`` (``4 eps (|A| |x| + |b|)``).
        """
        value = self(x)
        x = self._points(x)
        if self.t == self.s or x.shape[0] == 0:
            return value, 0.0
        xp = namespace(x)
        if self.affine:
            host = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
            size = np.abs(host) @ np.abs(self.matrix).T + np.abs(self.offset)[None, :]
            return value, float(4 * np.finfo(np.float64).eps * size.max())
        tight = self._solve(x, self.rtol / 100, self.atol / 100)
        return value, float(xp.max(xp.abs(value - tight)))

    def jacobian(self, x: Any) -> Array:
        """``grad Phi_{t->s}(x)``, shape ``(n, d, d)`` (``[i, j] = d Phi_i / d x_j``); affine maps only."""
        x = self._points(x)
        if not self.affine:
            raise ValueError(
                "jacobian is the closed form of an affine flow map (Gaussian data); for a mixture use "
                "log_det_jacobian, or differentiate the reference numerically"
            )
        xp = namespace(x)
        a = self.matrix if self.t != self.s else np.eye(self.dim)
        return xp.broadcast_to(as_array(a, x)[None], (x.shape[0], self.dim, self.dim))

    def log_det_jacobian(self, x: Any) -> Array:
        r"""``log |det grad Phi_{t->s}(x)|``, shape ``(n,)``.

        Affine: ``(log det Sigma_s - log det Sigma_t) / 2``; reference: the change of variables
        ``log p_t(x) - log p_s(Phi(x))`` with the exact marginal densities (exact given the map).
        """
        x = self._points(x)
        xp = namespace(x)
        if self.t == self.s:
            return xp.zeros((x.shape[0],), dtype=x.dtype)
        if self.affine:
            _, logdet = np.linalg.slogdet(self.matrix)
            return xp.full((x.shape[0],), float(logdet), dtype=x.dtype)
        return self._law_t.log_prob(x) - self._law_s.log_prob(self(x))


class _Marginals:
    """``p_u`` of the source at a float ``u``: a Gaussian mixture, with its velocity field."""

    def __init__(self, source: Any, data: Any) -> None:
        if isinstance(source, AbstractProcess):
            if not isinstance(data, AbstractMixtureLaw):
                raise TypeError(
                    f"data must be a Gaussian or a GaussianMixture (the law at t = 0); got {type(data).__name__}"
                )
            self.law = lambda u: marginal(source, data, u)
            self.dynamics = ProbabilityFlowODE(source, exact_score(source, data))
            self.gaussian = data.as_mixture().n_components == 1
            self.commuting = True  # alpha^2 C + sigma^2 I commute at all times
        elif isinstance(source, AbstractInterpolant):
            if not (isinstance(data, tuple) and len(data) == 2):
                raise TypeError(
                    "for an interpolant, data must be the pair (rho0, rho1) of the laws at t = 0 and t = 1; "
                    f"got {type(data).__name__}"
                )
            fields = interpolant_fields(source, *data)
            self.law = fields.marginal
            self.dynamics = InterpolantODE(fields.velocity)
            ends = [law.as_mixture() for law in data]
            self.gaussian = all(m.n_components == 1 for m in ends)
            self.commuting = self.gaussian and _commute(*(np.asarray(m.covs[0], dtype=np.float64) for m in ends))
        else:
            raise TypeError(f"source must be an AbstractProcess or an AbstractInterpolant; got {type(source).__name__}")


def exact_flow_map(
    source: Any, data: Any, t: Any, s: Any, *, rtol: float = 1e-10, atol: float = 1e-10, reference: bool = False
) -> FlowMap:
    r"""The exact flow map ``Phi_{t->s}`` of the probability-flow (process) or transport (interpolant) ODE.

    ``Phi_{t->s}(x_t)`` is the solution at time ``s`` of the ODE started at ``x_t`` at time ``t``
    (either order: ``s < t`` denoises a process, ``s > t`` noises it).  It satisfies
    ``Phi_{t->t} = id``, the semigroup law ``Phi_{s->u} o Phi_{t->s} = Phi_{t->u}`` and the
    Eulerian (consistency) equation ``d_t Phi + (grad Phi) v = 0``
    (:func:`~diffcore.flowmaps.flow_map_residual`); it pushes ``p_t`` to ``p_s``.

    Closed form for Gaussian marginals with commuting covariances (module docstring):
    ``Phi(x) = mu_s + Sigma_s^{1/2} Sigma_t^{-1/2} (x - mu_t)``, i.e. for a process and data
    ``N(m, C)``, ``Sigma_u = alpha_u^2 C + sigma_u^2 I`` (Song et al. 2021, eq. 13 and app. B;
    Karras et al. 2022, sec. 3).  Otherwise (mixtures, or interpolant ends with non-commuting
    covariances) an adaptive Dormand–Prince 5(4) reference at ``rtol``/``atol``
    (:meth:`FlowMap.with_error` reports its error).

    Parameters
    ----------
    source : an :class:`~diffcore.processes.AbstractProcess` or an
        :class:`~diffcore.interpolants.AbstractInterpolant`.
    data : for a process, the law at ``t = 0`` (a :class:`~diffcore.Gaussian` or
        :class:`~diffcore.GaussianMixture`); for an interpolant, the pair ``(rho0, rho1)``.
    t, s : floats in ``[0, 1]``, the start and end times.
    rtol, atol : positive tolerances of the reference (ignored by the closed form).
    reference : use the adaptive reference even where the closed form exists (to check one
        against the other).

    Returns a :class:`FlowMap` (a callable ``x (n, d) -> (n, d)``, NumPy or torch).

    Example
    -------
    >>> import numpy as np, diffcore as dc
    >>> from diffcore.flowmaps import exact_flow_map
    >>> data = dc.Gaussian(np.array([1.0, -1.0]), np.diag([0.5, 2.0]))
    >>> phi = exact_flow_map(dc.VPSDE(), data, 1.0, 0.0)   # noise -> data in one map
    >>> phi.affine, np.round(np.diag(phi.matrix), 3)
    (True, array([0.707, 1.414]))
    """
    t, s = check_scalar_time(t, "t"), check_scalar_time(s, "s")
    rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
    marg = _Marginals(source, data)
    law_t, law_s = (marg.law(u).as_mixture() for u in (t, s))
    matrix = offset = None
    if not isinstance(reference, bool):
        raise TypeError(f"reference must be a bool; got {type(reference).__name__}")
    if marg.gaussian and marg.commuting and not reference:
        # positive definite: the data covariances are, and every marginal adds to them
        cov_t, cov_s = (np.asarray(law.covs[0], dtype=np.float64) for law in (law_t, law_s))
        matrix = _sqrtm(cov_s, 0.5) @ _sqrtm(cov_t, -0.5)
        mean_t, mean_s = (np.asarray(law.means[0], dtype=np.float64) for law in (law_t, law_s))
        offset = mean_s - matrix @ mean_t
    return FlowMap(source, t, s, matrix is not None, matrix, offset, rtol, atol, law_t, law_s, marg.dynamics)
