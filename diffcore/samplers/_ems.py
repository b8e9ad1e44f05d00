r"""Empirical model statistics (EMS) of DPM-Solver-v3: the coefficients ``l``, ``s``, ``b`` on a log-SNR grid.

Zheng, Lu, Chen and Zhu (2023), "DPM-Solver-v3: Improved Diffusion ODE Solver with Empirical
Model Statistics" (NeurIPS 2023, arXiv:2310.13268), sec. 3.1–3.2.  Written here relative to the
data prediction ``D(x, lambda) = (x + sigma^2 score) / alpha`` with ``lambda = log(alpha / sigma)``:

.. math::
    F(x, \lambda) = D(x, \lambda) + \frac{l_\lambda}{\alpha_\lambda} \odot x, \qquad
    \frac{d}{d\lambda}\frac{x}{\sigma} = -l_\lambda \odot \frac{x}{\sigma} + e^{\lambda} F(x, \lambda),

(the probability-flow ODE, exactly, for any ``l``) and, per coordinate,

.. math::
    l_\lambda &= -\alpha_\lambda\, \mathbb E_{p_\lambda}\big[\operatorname{diag} \nabla_x D(x_\lambda, \lambda)\big]
        \quad\text{(minimises } \mathbb E \|\nabla_x (\alpha F) - \operatorname{diag}(\cdot)\|_F^2
        \text{; paper eq. 8)}, \\
    (s_\lambda, b_\lambda) &= \arg\min_{s, b} \mathbb E_{p_\lambda}
        \big\| F^{(1)}(x_\lambda, \lambda) - s \odot F(x_\lambda, \lambda) - b \big\|^2
        \quad\text{(paper eq. 9)},

where ``F^(1) = dF/dlambda`` is the total derivative along the ODE (a Jacobian-vector product in
``(x, lambda)`` in the direction ``(dx/dlambda, 1)``).  The paper writes the same equations with the
noise-side quantity ``N = sigma eps`` and ``l^paper = 1 + l`` (``f^paper = -F``, ``b^paper = -b``):
``l = s = b = 0`` here is the data prediction, i.e. DPM-Solver++ (their ``l^paper = 1``).  With
these, ``g(lambda) = e^{-(S_lambda - S_s)} F - int_s^lambda e^{-(S_r - S_s)} b_r dr``
(``S = int s``) has a zero first derivative in least squares, which is what the solver
(:class:`~diffcore.samplers.DPMSolverV3`) approximates by polynomials.

Between the grid values ``l``, ``s``, ``b`` are interpolated by cubic splines in ``lambda`` (``C^2``, so
that ``g`` is smooth enough for the order-3 interpolation; piecewise-linear values put kinks in ``g``
and cost the order, measured); the integrals
the solver needs (``L = int l``, ``S = int s``, ``B = int e^{-S} b``, and the step weights) are
taken exactly for that interpolant (the splines' antiderivatives for ``L``, ``S``; Gauss–Legendre on every
smooth piece, to rounding).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array, namespace, resolve_rng
from diffcore._validation import check_finite, check_size
from diffcore.processes import AbstractProcess

__all__ = ["EmpiricalModelStatistics", "exact_model_statistics", "model_statistics"]

Array = Any

_GAUSS = np.polynomial.legendre.leggauss(8)
#: quadrature pieces are at most this long in lambda (8-point Gauss on e^{tau} times a cubic: error < 1e-16)
_MAX_PIECE = 0.25


def _to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class EmpiricalModelStatistics:
    r"""The empirical model statistics ``l``, ``s``, ``b`` of DPM-Solver-v3 on a grid of ``lambda`` values.

    Parameters
    ----------
    lambdas : array ``(K,)``, ``K >= 2``, strictly increasing: ``lambda = log(alpha / sigma)``
        (half the process's ``log_snr``).  The solver refuses steps outside ``[lambdas[0], lambdas[-1]]``.
    l, s, b : arrays ``(K, *shape)``: one value per grid point and per coordinate of a point
        (``shape`` is the shape of one point, ``(d,)`` for ``(n, d)`` batches).  Conventions of the
        module docstring (relative to the data prediction: zeros give DPM-Solver++).
    l_se, s_se, b_se : optional standard errors of the Monte Carlo estimates, same shapes
        (``None`` where the value is exact).
    source : a short description of how the values were obtained.

    Interpolation is a cubic spline in ``lambda`` (:meth:`at`).  Raises ``ValueError`` when the grid is not
    strictly increasing or has fewer than two points, the arrays are not finite or their shapes
    differ.

    Example
    -------
    >>> import numpy as np
    >>> ems = EmpiricalModelStatistics.zeros(np.linspace(-5.0, 5.0, 3), (2,))
    >>> [a.shape for a in ems.at(0.5)]
    [(2,), (2,), (2,)]
    """

    lambdas: Any
    l: Any  # noqa: E741 (the paper's name)
    s: Any
    b: Any
    l_se: Any = None
    s_se: Any = None
    b_se: Any = None
    source: str = "given"
    _tables: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lam = _to_numpy(self.lambdas)
        if lam.ndim != 1 or lam.shape[0] < 2:
            raise ValueError(f"lambdas must be a 1-D array of at least 2 values; got shape {lam.shape}")
        if not np.all(np.isfinite(lam)):
            raise ValueError("lambdas must be finite")
        if not np.all(np.diff(lam) > 0):
            raise ValueError(f"lambdas must be strictly increasing; got {lam}")
        arrays = {}
        for name in ("l", "s", "b", "l_se", "s_se", "b_se"):
            value = getattr(self, name)
            if value is None:
                arrays[name] = None
                continue
            a = _to_numpy(value)
            if a.ndim < 2 or a.shape[0] != lam.shape[0]:
                raise ValueError(
                    f"{name} must have shape (K, *shape) with K = {lam.shape[0]} grid values; got shape {a.shape}"
                )
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must be finite")
            if arrays.get("l") is not None and a.shape != arrays["l"].shape:
                raise ValueError(f"{name} must have the shape of l, {arrays['l'].shape}; got {a.shape}")
            arrays[name] = a
        object.__setattr__(self, "lambdas", lam)
        for name, a in arrays.items():
            object.__setattr__(self, name, a)
        object.__setattr__(self, "_tables", self._build())

    @classmethod
    def zeros(cls, lambdas: Any, shape: tuple[int, ...]) -> EmpiricalModelStatistics:
        """``l = s = b = 0`` on ``lambdas`` for points of ``shape``: DPM-Solver-v3 is then DPM-Solver++."""
        lam = _to_numpy(lambdas)
        z = np.zeros((lam.shape[0], *shape))
        return cls(lam, z, z, z, source="zeros")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one point."""
        return tuple(self.l.shape[1:])

    @property
    def span(self) -> tuple[float, float]:
        """``(lambdas[0], lambdas[-1])``, the range of ``lambda`` the statistics cover."""
        return float(self.lambdas[0]), float(self.lambdas[-1])

    def at(self, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(l, s, b)`` at ``lam`` (the cubic spline through the grid values), each of shape :attr:`shape`."""
        lam = float(lam)
        self.check_covers(lam, lam)
        out = [self._tables[k](np.array([lam]))[0].reshape(self.shape) for k in ("l", "s", "b")]
        return out[0], out[1], out[2]

    def check_covers(self, lo: float, hi: float, who: str = "the statistics") -> None:
        """Raise ``ValueError`` unless ``[lo, hi]`` lies in :attr:`span` (to 1e-9)."""
        a, b = self.span
        tol = 1e-9 * max(1.0, abs(a), abs(b))
        if min(lo, hi) < a - tol or max(lo, hi) > b + tol:
            raise ValueError(
                f"{who}: the empirical model statistics cover lambda in [{a:.6g}, {b:.6g}]; a step needs "
                f"[{min(lo, hi):.6g}, {max(lo, hi):.6g}] (compute them on a grid covering t_min and the start)"
            )

    # -- exact integrals of the spline interpolant ---------------------------------------

    def _build(self) -> dict:
        from scipy.interpolate import CubicSpline

        flat = {k: getattr(self, k).reshape(self.lambdas.shape[0], -1) for k in ("l", "s", "b")}
        lam = self.lambdas
        tables = {k: CubicSpline(lam, v, axis=0) for k, v in flat.items()}
        tables["L"], tables["S"] = tables["l"].antiderivative(), tables["s"].antiderivative()
        # B(lambda) = int_{lambda_0}^{lambda} e^{-S(r)} b(r) dr, knot by knot (Gauss on each smooth piece)
        pieces = [np.zeros(flat["b"].shape[1])]
        for j in range(lam.shape[0] - 1):
            nodes, weights = _pieces(lam[j], lam[j + 1])
            pieces.append(np.sum(weights[:, None] * np.exp(-tables["S"](nodes)) * tables["b"](nodes), axis=0))
        tables["B"] = np.cumsum(np.stack(pieces), axis=0)
        return tables

    def _index(self, nodes: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.lambdas, nodes, side="right") - 1, 0, self.lambdas.shape[0] - 2)

    def _value(self, table: Any, nodes: np.ndarray) -> np.ndarray:
        """The spline ``table`` at ``nodes`` (M,): (M, D)."""
        return table(nodes)

    def _cum_of(self, tables: dict, key: str, nodes: np.ndarray) -> np.ndarray:
        """``int_{lambda_0}^{node}`` of the spline of ``key`` ("l" or "s"), exactly: (M, D)."""
        return tables["L" if key == "l" else "S"](nodes)

    def _cum_b(self, nodes: np.ndarray) -> np.ndarray:
        """``B(node) = int_{lambda_0}^{node} e^{-S} b``: (M, D)."""
        t = self._tables
        j = self._index(nodes)
        lo = self.lambdas[j]
        x, w = _GAUSS
        half = 0.5 * (nodes - lo)  # (M,): Gauss on [knot below, node], all nodes at once
        sub = (lo[:, None] + half[:, None] * (x + 1)).reshape(-1)  # (M * G,)
        vals = np.exp(-t["S"](sub)) * t["b"](sub)  # (M * G, D)
        part = np.einsum("mg,mgd->md", half[:, None] * w, vals.reshape(nodes.shape[0], w.shape[0], -1))
        return t["B"][j] + part

    def functions(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(l, L, S, B)`` at ``nodes`` (M,), each (M, D): the interpolant and its exact integrals."""
        t = self._tables
        return t["l"](nodes), t["L"](nodes), t["S"](nodes), self._cum_b(nodes)


class _ZeroStatistics:
    """``l = s = b = 0`` for points of any shape (scalars): the coefficients of DPM-Solver++."""

    shape: tuple[int, ...] = ()

    def check_covers(self, lo: float, hi: float, who: str = "") -> None:
        return None

    def functions(self, nodes: np.ndarray) -> tuple[np.ndarray, ...]:
        z = np.zeros((nodes.shape[0], 1))
        return z, z, z, z


ZERO = _ZeroStatistics()


def _pieces(a: float, b: float, knots: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and signed weights for ``int_a^b``, split at ``knots`` and into pieces <= 0.25."""
    lo, hi = min(a, b), max(a, b)
    cuts = [lo]
    if knots is not None:
        cuts += [float(k) for k in knots if lo < k < hi]
    cuts.append(hi)
    x, w = _GAUSS
    nodes, weights = [], []
    for c0, c1 in itertools.pairwise(cuts):
        m = max(1, math.ceil((c1 - c0) / _MAX_PIECE))
        edges = np.linspace(c0, c1, m + 1)
        for e0, e1 in itertools.pairwise(edges):
            nodes.append(e0 + 0.5 * (e1 - e0) * (x + 1))
            weights.append(0.5 * (e1 - e0) * w)
    sign = 1.0 if b >= a else -1.0
    return np.concatenate(nodes), sign * np.concatenate(weights)


def step_coefficients(stats: Any, lam_s: float, lam_t: float, lam_nodes: list[float]) -> dict:
    r"""The coefficients of one DPM-Solver-v3 update ``s -> t`` (module docstring of the solver), per coordinate.

    Returns ``cx`` (D,) with ``x_t = (sigma_t / sigma_s) cx x_s + alpha_t (sum_j w_j g_j + bterm)``,
    ``w`` (J, D) the weights of the Lagrange interpolant through ``lam_nodes`` of ``g``, ``bterm``
    (D,), and ``gscale`` (J, D), ``gshift`` (J, D) with ``g_j = gscale_j F_j - gshift_j``.
    """
    knots = getattr(stats, "lambdas", None)
    nodes, weights = _pieces(lam_s, lam_t, knots)
    ends = np.array([lam_s, lam_t, *lam_nodes])
    _, L_e, S_e, B_e = stats.functions(ends)
    _, L_q, S_q, B_q = stats.functions(nodes)
    L_s, L_t, S_s, B_s = L_e[0], L_e[1], S_e[0], B_e[0]
    kernel = np.exp((nodes - lam_t)[:, None] + (L_q - L_t) + (S_q - S_s)) * weights[:, None]  # (M, D)
    lam_j = np.asarray(lam_nodes, dtype=np.float64)
    basis = np.ones((len(lam_j), nodes.shape[0]))
    for j in range(len(lam_j)):
        for m in range(len(lam_j)):
            if m != j:
                basis[j] *= (nodes - lam_j[m]) / (lam_j[j] - lam_j[m])
    w = basis @ kernel  # (J, D)
    bterm = np.sum(kernel * np.exp(S_s) * (B_q - B_s), axis=0)
    gscale = np.exp(-(S_e[2:] - S_s))
    gshift = np.exp(S_s) * (B_e[2:] - B_s)
    return {"cx": np.exp(-(L_t - L_s)), "w": w, "bterm": bterm, "gscale": gscale, "gshift": gshift, "l_nodes": None}


# -- the statistics of a model -------------------------------------------------------------------


def _lambda_rates(process: AbstractProcess, t: float) -> tuple[float, float, float]:
    """``(alpha, sigma, d log(sigma) / d lambda)`` at ``t``."""
    a, s = float(process.alpha(t)), float(process.sigma(t))
    da, ds = float(process.d_alpha(t)), float(process.d_sigma(t))
    dlam = da / a - ds / s
    return a, s, (ds / s) / dlam


def _time(process: AbstractProcess, lam: float) -> float:
    return float(process.log_snr_inverse(2.0 * lam))


def _check_lambdas(process: Any, lambdas: Any) -> np.ndarray:
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    if getattr(process, "shift", None) is not None:
        raise ValueError(
            f"model statistics assume x_t = alpha x_0 + sigma eps; {type(process).__name__} has a mean shift"
        )
    lam = _to_numpy(lambdas)
    if lam.ndim != 1 or lam.shape[0] < 3:
        raise ValueError(f"lambdas must be a 1-D array of at least 3 values; got shape {lam.shape}")
    if not np.all(np.isfinite(lam)) or not np.all(np.diff(lam) > 0):
        raise ValueError(f"lambdas must be finite and strictly increasing; got {lam}")
    lo, hi = 0.5 * float(process.log_snr(1.0)), 0.5 * float(process.log_snr(0.0))
    if lam[0] < lo or lam[-1] > hi:
        raise ValueError(
            f"lambdas are half log-SNR values log(alpha / sigma) and must lie in [{lo}, {hi}] for "
            f"{type(process).__name__}; got [{lam[0]}, {lam[-1]}]"
        )
    return lam


def _five_point(fn: Any, h: float, room: tuple[float, float] = (math.inf, math.inf)) -> Any:
    """The derivative of ``fn`` at 0 by a 5-point stencil, error ``O(h^4)``.

    Central, ``(-f(2h) + 8 f(h) - 8 f(-h) + f(-2h)) / (12 h)``, when ``fn`` may be evaluated on
    ``[-room[0], room[1]]`` around 0 with ``room >= 2h``; one-sided (``(-25 f_0 + 48 f_1 - 36 f_2 +
    16 f_3 - 3 f_4) / (12 h)``, towards the side with room) at the ends of the process's range.
    """
    if room[0] >= 2 * h and room[1] >= 2 * h:
        return (8 * (fn(h) - fn(-h)) - (fn(2 * h) - fn(-2 * h))) / (12 * h)
    k = h if room[1] >= room[0] else -h
    return (-25 * fn(0.0) + 48 * fn(k) - 36 * fn(2 * k) + 16 * fn(3 * k) - 3 * fn(4 * k)) / (12 * k)


def _room(process: AbstractProcess, lv: float) -> tuple[float, float]:
    """How far ``lambda`` may move down and up from ``lv`` inside the process's range."""
    lo = 0.5 * float(process.log_snr(1.0))
    hi = 0.5 * float(process.log_snr(0.0)) if float(process.sigma(0.0)) > 0 else math.inf
    return lv - lo, hi - lv


def _regress(y: np.ndarray, f: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Per-coordinate least squares ``y ~ s f + b`` over the sample axis 0, with standard errors."""
    fm, ym = f.mean(axis=0), y.mean(axis=0)
    var = ((f - fm) ** 2).mean(axis=0)
    cov = ((f - fm) * (y - ym)).mean(axis=0)
    flat = var <= 1e-24 * np.maximum(1.0, fm**2)
    s = np.where(flat, 0.0, cov / np.where(flat, 1.0, var))
    b = ym - s * fm
    res = ((y - s * f - b) ** 2).mean(axis=0) * n / max(n - 2, 1)
    s_se = np.where(flat, 0.0, np.sqrt(res / (n * np.where(flat, 1.0, var))))
    b_se = np.sqrt(res / n + (fm * s_se) ** 2)
    return s, b, s_se, b_se


def model_statistics(
    process: AbstractProcess,
    score: Any,
    samples: Array,
    lambdas: Any,
    *,
    rng: Any = None,
    delta: float = 1e-3,
) -> EmpiricalModelStatistics:
    r"""Estimate the EMS of a model ``score`` from samples of the data (the paper's procedure, sec. 3.2, app. C).

    For every ``lambda`` of the grid, ``x = alpha x_0 + sigma eps`` with ``x_0`` the ``n`` given
    samples and ``eps`` standard normal (the same ``eps`` and probes at every ``lambda``: common
    random numbers, so the estimates are smooth in ``lambda``):

    * ``l = -alpha mean(v * (J v))``, the Hutchinson estimate of ``-alpha diag(E nabla_x D)`` with one
      Rademacher probe ``v`` per sample;
    * ``F = D + (l / alpha) x`` and ``F^(1) = d/de D(x + e xdot, lambda + e) + (d/dlambda (l/alpha)) x
      + (l / alpha) xdot`` with ``xdot = dx/dlambda = (dlog sigma/dlambda) x + alpha D`` (the ODE);
      ``d(l/alpha)/dlambda`` by second-order differences on the grid (``numpy.gradient``, error
      ``O(dlambda^2)``);
    * ``(s, b)`` by least squares of ``F^(1)`` on ``F``, coordinate by coordinate (``s = 0`` where
      ``F`` does not vary).

    **Jacobian-vector products by 5-point central finite differences**, for NumPy and torch
    alike (no autograd): ``J v`` with the step ``delta * sigma`` in ``x``, the total derivative with
    the step ``delta`` in ``lambda``; the truncation error is ``O(delta^4)`` (``~1e-12`` relative
    at the default) and the rounding error ``~eps_machine / delta`` (``1e-13`` in float64, ``1e-4``
    in float32: evaluate the model in float64 when possible).  Standard errors of the Monte Carlo
    means (``l_se``, and the least-squares ``s_se``, ``b_se``) are returned; they do not include the
    ``O(dlambda^2)`` error of the grid derivative.

    Parameters
    ----------
    process : an :class:`~diffcore.processes.AbstractProcess` without mean shift.
    score : callable ``(x, t) -> array`` like ``x`` (the model).
    samples : array ``(n, *shape)`` of data samples ``x_0`` (NumPy or torch; the model is called
        with arrays of that type).
    lambdas : increasing array ``(K,)``, ``K >= 3``, of ``log(alpha / sigma)`` values; cover the
        range the sampler will use (from ``lambda(1)`` to ``lambda(t_min)``).
    rng : seed or generator for ``eps`` and the probes.
    delta : finite-difference step (relative), in ``(0, 0.1]``.

    Cost: ``K * n`` points through the model 10 times (4 for ``J v``, 1 for ``D``, 4 for ``F^(1)``,
    and ``D`` once more).
    """
    lam = _check_lambdas(process, lambdas)
    check_finite("samples", samples)
    if samples.ndim < 2 or samples.shape[0] < 3:
        raise ValueError(f"samples must have shape (n, *shape) with n >= 3; got {tuple(samples.shape)}")
    delta = float(delta)
    if not 0.0 < delta <= 0.1:
        raise ValueError(f"delta must lie in (0, 0.1]; got {delta}")
    gen = resolve_rng(rng)
    n, shape = int(samples.shape[0]), tuple(samples.shape[1:])
    np_gen = gen if isinstance(gen, np.random.Generator) else np.random.default_rng(int(gen.initial_seed()))
    eps = as_array(np_gen.standard_normal((n, *shape)), samples)
    probe = as_array(np_gen.choice([-1.0, 1.0], size=(n, *shape)), samples)
    xp = namespace(samples)

    def denoise(x, lam_value):
        t = _time(process, lam_value)
        a, s = float(process.alpha(t)), float(process.sigma(t))
        return (x + s**2 * score(x, t)) / a

    k = lam.shape[0]
    l_vals, l_se = np.empty((k, *shape)), np.empty((k, *shape))
    for i, lv in enumerate(lam):
        t = _time(process, lv)
        a, s = float(process.alpha(t)), float(process.sigma(t))
        x = a * samples + s * eps
        jv = _five_point(lambda e, x=x, lv=lv: denoise(x + e * probe, lv), delta * s)
        est = _to_numpy(probe * jv)
        l_vals[i] = -a * est.mean(axis=0)
        l_se[i] = a * est.std(axis=0, ddof=1) / math.sqrt(n)
    alphas = np.array([float(process.alpha(_time(process, lv))) for lv in lam])
    ratio = l_vals / alphas.reshape((-1,) + (1,) * len(shape))  # l / alpha = -E diag(nabla D)
    d_ratio = np.gradient(ratio, lam, axis=0, edge_order=2)
    s_vals, b_vals = np.empty((k, *shape)), np.empty((k, *shape))
    s_se, b_se = np.empty((k, *shape)), np.empty((k, *shape))
    for i, lv in enumerate(lam):
        t = _time(process, lv)
        a, s, dlogs = _lambda_rates(process, t)
        x = a * samples + s * eps
        d0 = denoise(x, lv)
        xdot = dlogs * x + a * d0
        r = as_array(ratio[i], samples)
        f = d0 + r * x
        total = _five_point(lambda e, x=x, xdot=xdot, lv=lv: denoise(x + e * xdot, lv + e), delta, _room(process, lv))
        f1 = total + as_array(d_ratio[i], samples) * x + r * xdot
        s_vals[i], b_vals[i], s_se[i], b_se[i] = _regress(_to_numpy(f1), _to_numpy(f), n)
    del xp
    return EmpiricalModelStatistics(
        lam, l_vals, s_vals, b_vals, l_se, s_se, b_se, source=f"estimated from {n} samples (finite differences)"
    )


def _mixture_terms(weights, means, covs, alpha: float, sigma: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact data prediction ``D(x)`` and the diagonal of its Jacobian for Gaussian-mixture data.

    With ``Sigma_k = alpha^2 C_k + sigma^2 I``, ``A_k = alpha C_k Sigma_k^{-1}``, the component
    posterior means ``mu_k = m_k + A_k (x - alpha m_k)``, scores ``s_k = -Sigma_k^{-1}(x - alpha m_k)``,
    responsibilities ``r_k`` (``nabla r_k = r_k (s_k - sum_j r_j s_j)``):

    .. math:: D = \sum_k r_k \mu_k, \qquad
        \nabla_x D = \sum_k r_k A_k + \sum_k r_k (\mu_k - D)(s_k - \bar s)^T .
    """
    d = means.shape[1]
    eye = np.eye(d)
    logw, mus, scs, diag_a = [], [], [], []
    for wk, mk, ck in zip(weights, means, covs):
        cov = alpha**2 * ck + sigma**2 * eye
        prec = np.linalg.inv(cov)
        ak = alpha * ck @ prec
        diff = x - alpha * mk
        sk = -diff @ prec  # prec symmetric
        _, logdet = np.linalg.slogdet(cov)
        logw.append(math.log(wk) - 0.5 * logdet - 0.5 * np.sum(diff * (diff @ prec), axis=1))
        mus.append(mk + diff @ ak.T)
        scs.append(sk)
        diag_a.append(np.diag(ak))
    logw = np.stack(logw, axis=1)
    r = np.exp(logw - logw.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    mus, scs = np.stack(mus, axis=1), np.stack(scs, axis=1)  # (n, K, d)
    dhat = np.einsum("nk,nkd->nd", r, mus)
    sbar = np.einsum("nk,nkd->nd", r, scs)
    jdiag = r @ np.stack(diag_a) + np.einsum("nk,nkd->nd", r, (mus - dhat[:, None]) * (scs - sbar[:, None]))
    return dhat, jdiag


def exact_model_statistics(
    process: AbstractProcess, data: Any, lambdas: Any, *, n: int = 4000, rng: Any = None, delta: float = 1e-3
) -> EmpiricalModelStatistics:
    r"""The EMS of the exact score of laboratory data (a :class:`~diffcore.Gaussian` or a mixture).

    * **Gaussian** ``N(mu, C)``: exact.  ``D(x) = mu + A (x - alpha mu)``, ``A = alpha C (alpha^2 C +
      sigma^2 I)^{-1}``, so ``l = -alpha diag(A)``; ``F`` and ``F^(1)`` are affine in ``x`` and ``x_lambda ~
      N(alpha mu, alpha^2 C + sigma^2 I)``, so ``s = Cov(F^(1), F) / Var(F)`` and ``b`` are closed forms.
      The ``lambda``-derivatives of the closed-form matrices are taken by a 5-point stencil with
      step ``delta`` (error ``~delta^4``, below 1e-10); ``n`` and ``rng`` are unused.
    * **Gaussian mixture**: Monte Carlo over ``n`` points of the exact marginal (``rng``), with the
      exact data prediction and the exact diagonal of its Jacobian (closed form, no probes); the
      ``lambda``-derivative of ``E diag(nabla D)`` is the mean of the derivative along the ODE (the
      exact flow carries ``p_lambda`` to ``p_lambda'``), and ``F^(1)``, both by a 5-point stencil in
      ``lambda``.  "Exact" here means: no model error and no probe noise; the Monte Carlo
      standard errors ``l_se``, ``s_se``, ``b_se`` (``~1/sqrt(n)``) are returned.

    Parameters: ``process`` (no mean shift), ``data``, ``lambdas`` increasing ``(K,)``, ``K >= 3``.
    Returns arrays of shape ``(K, d)``.
    """
    from diffcore.distributions import Gaussian, GaussianMixture

    lam = _check_lambdas(process, lambdas)
    n = check_size(n, "n")
    if isinstance(data, Gaussian):
        return _gaussian_statistics(process, _to_numpy(data.mean), _to_numpy(data.cov), lam, float(delta))
    if not isinstance(data, GaussianMixture):
        raise TypeError(f"data must be a Gaussian or a GaussianMixture; got {type(data).__name__}")
    weights, means, covs = _to_numpy(data.weights), _to_numpy(data.means), _to_numpy(data.covs)
    gen = resolve_rng(rng)
    gen = gen if isinstance(gen, np.random.Generator) else np.random.default_rng(int(gen.initial_seed()))
    comp = gen.choice(len(weights), size=n, p=weights / weights.sum())
    chol = np.linalg.cholesky(covs)
    x0 = means[comp] + np.einsum("nij,nj->ni", chol[comp], gen.standard_normal((n, means.shape[1])))
    eps = gen.standard_normal(x0.shape)
    k, d = lam.shape[0], means.shape[1]
    out = {key: np.empty((k, d)) for key in ("l", "s", "b", "l_se", "s_se", "b_se")}

    def terms(x, lv):
        t = _time(process, lv)
        return _mixture_terms(weights, means, covs, float(process.alpha(t)), float(process.sigma(t)), x)

    for i, lv in enumerate(lam):
        t = _time(process, lv)
        a, s, dlogs = _lambda_rates(process, t)
        x = a * x0 + s * eps
        d0, jd = terms(x, lv)
        xdot = dlogs * x + a * d0
        ratio = -jd.mean(axis=0)  # l / alpha
        d_ratio = -_five_point(
            lambda e, x=x, xdot=xdot, lv=lv: terms(x + e * xdot, lv + e)[1], delta, _room(process, lv)
        ).mean(axis=0)
        f = d0 + ratio * x
        f1 = (
            _five_point(lambda e, x=x, xdot=xdot, lv=lv: terms(x + e * xdot, lv + e)[0], delta, _room(process, lv))
            + d_ratio * x
        )
        f1 = f1 + ratio * xdot
        out["l"][i], out["l_se"][i] = a * ratio, a * jd.std(axis=0, ddof=1) / math.sqrt(n)
        out["s"][i], out["b"][i], out["s_se"][i], out["b_se"][i] = _regress(f1, f, n)
    return EmpiricalModelStatistics(
        lam,
        out["l"],
        out["s"],
        out["b"],
        out["l_se"],
        out["s_se"],
        out["b_se"],
        source=f"exact score and Jacobian, Monte Carlo over {n} points of the exact marginal",
    )


def _gaussian_statistics(process, mu: np.ndarray, cov: np.ndarray, lam: np.ndarray, delta: float):
    d = mu.shape[0]
    eye = np.eye(d)

    def maps(lv):
        """``(A, P, q)`` with ``D = mu + A (x - alpha mu)`` and ``F = P x + q``."""
        t = _time(process, lv)
        a, s = float(process.alpha(t)), float(process.sigma(t))
        amat = a * cov @ np.linalg.inv(a**2 * cov + s**2 * eye)
        pmat = amat - np.diag(np.diag(amat))
        return amat, pmat, mu - a * amat @ mu

    k = lam.shape[0]
    ls, ss, bs = np.empty((k, d)), np.empty((k, d)), np.empty((k, d))
    for i, lv in enumerate(lam):
        t = _time(process, lv)
        a, s, dlogs = _lambda_rates(process, t)
        amat, pmat, q = maps(lv)
        pdot = _five_point(lambda e, lv=lv: maps(lv + e)[1], delta, _room(process, lv))
        qdot = _five_point(lambda e, lv=lv: maps(lv + e)[2], delta, _room(process, lv))
        vmat, v0 = dlogs * eye + a * amat, a * q  # xdot = V x + v0
        rmat, r0 = pdot + pmat @ vmat, qdot + pmat @ v0  # F^(1) = R x + r0
        mean, sig = a * mu, a**2 * cov + s**2 * eye
        ef, ef1 = pmat @ mean + q, rmat @ mean + r0
        var = np.einsum("ij,jk,ik->i", pmat, sig, pmat)
        cv = np.einsum("ij,jk,ik->i", rmat, sig, pmat)
        flat = var <= 1e-24 * np.maximum(1.0, ef**2)
        ss[i] = np.where(flat, 0.0, cv / np.where(flat, 1.0, var))
        bs[i] = ef1 - ss[i] * ef
        ls[i] = -a * np.diag(amat)
    return EmpiricalModelStatistics(lam, ls, ss, bs, source="closed form (Gaussian data)")
