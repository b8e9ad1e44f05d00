r"""Residuals of the Fokker–Planck equation of an affine process, for scores and for log densities.

For ``dx = f(t) x dt + g(t) dW`` in ``d`` dimensions the marginal density obeys

.. math:: \partial_t p = -\nabla\cdot(f(t)\, x\, p) + \tfrac12 g(t)^2 \Delta p .

Dividing by ``p`` and writing ``s = grad log p`` (so ``Delta p / p = div s + |s|^2``) gives the
log-density form, and its gradient the *score* Fokker–Planck equation (Lai et al. 2023, ``score
FPE``; Deveney et al. 2023, sec. 3):

.. math:: \partial_t \log p = \tfrac12 g^2 (\nabla\cdot s + |s|^2) - f\, x\cdot s - d f, \qquad
          \partial_t s = \nabla\big(\tfrac12 g^2 \nabla\cdot s + \tfrac12 g^2 |s|^2
          - f\, x\cdot s - \nabla\cdot(f x)\big),

where ``div(f(t) x) = d f(t)`` is constant in ``x``, so its gradient vanishes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from array_api_compat import is_torch_array

from diffcore._array import namespace
from diffcore._validation import check_choice, check_positive
from diffcore.fokker_planck._autograd import log_density_terms_autograd, score_terms_autograd
from diffcore.fokker_planck._checks import check_field, check_fp_time, check_output, check_process, check_x
from diffcore.fokker_planck._fd import default_steps, partial, second_partial, time_derivative

__all__ = ["METHODS", "FPTerms", "fp_residual", "fp_residual_log_density", "fp_terms"]

Array = Any

#: derivative methods: ``auto`` is ``autograd`` for torch tensors and ``fd`` for NumPy arrays
METHODS = ("auto", "autograd", "fd")
_KINDS = ("score", "log_density")


@dataclass(frozen=True, eq=False)
class FPTerms:
    """The two sides of a Fokker–Planck equation at a batch of points.

    ``lhs`` is the time derivative (``d_t s``, shape ``(n, d)``, or ``d_t log p``, shape ``(n,)``),
    ``rhs`` the spatial side; ``residual = lhs - rhs`` vanishes for an exact field.
    ``method`` is ``"autograd"`` or ``"fd"``.
    """

    lhs: Any
    rhs: Any
    kind: str
    method: str

    @property
    def residual(self) -> Any:
        """``lhs - rhs``, with the shape of ``lhs``."""
        return self.lhs - self.rhs


def fp_terms(
    process: Any,
    field: Callable[[Array, Any], Array],
    x: Array,
    t: Any,
    *,
    kind: str = "score",
    method: str = "auto",
    h: Any = None,
    k: Any = None,
) -> FPTerms:
    r"""Both sides of the score (``kind="score"``) or log-density (``kind="log_density"``) FP equation.

    See :func:`fp_residual` and :func:`fp_residual_log_density` for the equations, the
    parameters and the errors; ``|lhs|`` measures the size against which a residual is small.
    """
    check_process(process)
    check_choice("kind", kind, _KINDS)
    check_choice("method", method, METHODS)
    name = "score" if kind == "score" else "log_prob"
    check_field(name, field)
    x = check_x(x)
    t = check_fp_time(t, x)
    torch_x = is_torch_array(x)
    if method == "auto":
        method = "autograd" if torch_x else "fd"
    if method == "autograd":
        if not torch_x:
            raise TypeError(f"method='autograd' needs x to be a torch tensor; got {type(x).__name__}")
        if h is not None or k is not None:
            raise ValueError(
                f"h and k are finite-difference steps; with method='autograd' they must be None; got h={h}, k={k}"
            )
        fn = score_terms_autograd if kind == "score" else log_density_terms_autograd
        lhs, rhs = fn(process, field, x, t)
    else:
        h, k = _steps(process, t, x, h, k)
        shape = tuple(x.shape) if kind == "score" else (x.shape[0],)
        check_output(f"{name}(x, t)", field(x, t), shape, x)
        fn = _score_terms_fd if kind == "score" else _log_density_terms_fd
        lhs, rhs = fn(process, field, x, t, h, k)
    terms = FPTerms(lhs, rhs, kind, method)
    xp = namespace(lhs)
    if not bool(xp.all(xp.isfinite(lhs))) or not bool(xp.all(xp.isfinite(rhs))):
        raise ValueError(
            f"the {kind} Fokker–Planck terms are not finite at the points given ({method}); the field "
            "overflows near x or t, or the finite-difference steps reach where it is not defined"
        )
    return terms


def fp_residual(
    process: Any,
    score: Callable[[Array, Any], Array],
    x: Array,
    t: Any,
    *,
    method: str = "auto",
    h: Any = None,
    k: Any = None,
) -> Array:
    r"""Per-point residual of the score Fokker–Planck equation of an affine process.

    .. math:: R(x, t) = \partial_t s(x, t) - \nabla_x\Big(\tfrac12 g(t)^2\, \nabla\cdot s
              + \tfrac12 g(t)^2 |s|^2 - f(t)\, x \cdot s - d\, f(t)\Big),

    for the forward SDE ``dx = f(t) x dt + g(t) dW`` (``process.drift_coef``,
    ``process.diffusion_squared``).  The exact score ``s = grad log p_t`` makes ``R = 0``
    (derived from ``d_t p = -div(f x p) + 1/2 g^2 Lap p`` in the module docstring); this is
    the score FP equation of Deveney et al. 2023 (arXiv:2311.15996, sec. 3, whose residual
    bounds ``W_2`` between the ODE and SDE samples) and of Lai et al. 2023 (ICML, sec. 3).
    ``R`` is a vector field; any ``s``, conservative or not, has one.

    Parameters
    ----------
    process : an :class:`~diffcore.processes.AbstractProcess`.
    score : callable ``(x, t) -> (n, d)``, applied row by row (no coupling across the batch);
        its shape is checked once, at ``(x, t)``.
    x : points ``(n, d)``, finite.
    t : a float in ``(0, 1]`` or an ``(n,)`` array of such times (``t = 0`` is singular).
    method : ``"auto"`` (default), ``"autograd"`` or ``"fd"``.  ``autograd`` (torch tensors): exact
        derivatives in ``x`` and ``t`` with the graph kept, so the residual is a differentiable
        training penalty (:func:`diffcore.training.fp_penalty`); the score must be written in
        torch operations in ``x`` and ``t``.  ``fd`` (any backend): fourth-order central
        differences (see below).
    h, k : ``fd`` steps in space and time (floats, or ``(n,)`` arrays for per-point times).
        Defaults ``h = eps^{1/6} sigma(t)`` and ``k = eps^{1/5} min(t, 0.1)``, ``eps`` the machine
        epsilon of ``x``'s dtype: truncation ``O((h/L)^4 + (k/T)^4)`` and round-off
        ``O(eps (L/h)^2 + eps T/k)`` (``L``, ``T`` the scales on which ``s`` varies) balance at
        ~1e-10 of the terms in float64 (~1e-4 in float32).  The time stencil is one-sided
        near ``t = 1`` and must stay in ``(0, 1]`` (``k < t/2``).

    Returns the residual ``(n, d)`` with ``x``'s array type, dtype and device.  Cost: ``d + 1``
    backward passes (autograd) or ``4 d (4 d + 1) + 4`` score calls (fd).

    Raises ``TypeError``/``ValueError`` for a bad process, field, ``x`` or ``t``, a score of the
    wrong shape or with non-finite values, a non-differentiable torch score, or non-finite terms.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian, exact_score
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), np.eye(2) * 0.5)
    >>> x = np.array([[0.3, -1.0], [1.2, 0.4]])
    >>> bool(np.abs(fp_residual(p, exact_score(p, data), x, 0.5)).max() < 1e-7)
    True
    >>> wrong = lambda y, t: 1.1 * exact_score(p, data)(y, t)
    >>> bool(np.abs(fp_residual(p, wrong, x, 0.5)).max() > 0.01)
    True
    """
    return fp_terms(process, score, x, t, kind="score", method=method, h=h, k=k).residual


def fp_residual_log_density(
    process: Any,
    log_prob: Callable[[Array, Any], Array],
    x: Array,
    t: Any,
    *,
    method: str = "auto",
    h: Any = None,
    k: Any = None,
) -> Array:
    r"""Per-point residual of the density Fokker–Planck equation, written for ``log p``.

    .. math:: r(x, t) = \partial_t \log p - \tfrac12 g^2 \big(\Delta \log p + |\nabla \log p|^2\big)
              + f\, x\cdot\nabla\log p + d f
              = \frac{\partial_t p + \nabla\cdot(f x p) - \tfrac12 g^2 \Delta p}{p},

    the FP equation ``d_t p = -div(f x p) + 1/2 g^2 Lap p`` (Song et al. 2021, eq. 47 for a
    scalar diffusion) divided by ``p``, which keeps the residual on the scale of its terms
    where ``p`` is tiny.  ``log_prob`` is a callable ``(x, t) -> (n,)`` and must be normalised at
    every ``t`` (a constant ``c(t)`` added to it leaves a residual ``c'(t)``); for
    ``exact_log_prob`` the residual vanishes.  Parameters, methods, steps and errors as
    :func:`fp_residual` (only one spatial derivative level, so the same default steps err
    less).  Returns ``(n,)``.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VESDE, Gaussian, exact_log_prob
    >>> p, data = VESDE(), Gaussian(np.ones(2), np.eye(2))
    >>> r = fp_residual_log_density(p, exact_log_prob(p, data), np.zeros((3, 2)), 0.3)
    >>> r.shape, bool(np.abs(r).max() < 1e-7)
    ((3,), True)
    """
    return fp_terms(process, log_prob, x, t, kind="log_density", method=method, h=h, k=k).residual


def _steps(process: Any, t: Any, x: Array, h: Any, k: Any) -> tuple[Any, Any]:
    dh, dk = default_steps(process, t, x)
    return (dh if h is None else _step("h", h)), (dk if k is None else _step("k", k))


def _step(name: str, value: Any) -> Any:
    if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
        xp = namespace(value)
        if not bool(xp.all(xp.isfinite(value) & (value > 0))):
            raise ValueError(f"{name} must be finite and > 0 everywhere; got {value}")
        return value
    return check_positive(name, value)


def _coefficients(process: Any, t: Any) -> tuple[Any, Any]:
    """``f(t)``, ``g(t)^2`` as floats or ``(n,)`` arrays."""
    return process.drift_coef(t), process.diffusion_squared(t)


def _score_terms_fd(process: Any, score: Callable, x: Array, t: Any, h: Any, k: Any) -> tuple[Array, Array]:
    xp = namespace(x)
    f, g2 = _coefficients(process, t)
    d = x.shape[1]

    def phi(y: Array) -> Array:
        s = score(y, t)
        div = sum(partial(lambda z, i=i: score(z, t)[:, i], y, i, h) for i in range(d))
        return 0.5 * g2 * (div + xp.sum(s * s, axis=1)) - f * xp.sum(y * s, axis=1)

    rhs = xp.stack([partial(phi, x, j, h) for j in range(d)], axis=1)
    lhs = time_derivative(lambda u: score(x, u), t, k)
    return lhs, rhs


def _log_density_terms_fd(process: Any, log_prob: Callable, x: Array, t: Any, h: Any, k: Any) -> tuple[Array, Array]:
    xp = namespace(x)
    f, g2 = _coefficients(process, t)
    d = x.shape[1]

    def lp(y: Array) -> Array:
        return log_prob(y, t)

    centre = lp(x)
    grad = xp.stack([partial(lp, x, i, h) for i in range(d)], axis=1)
    lap = sum(second_partial(lp, x, i, h, centre) for i in range(d))
    rhs = 0.5 * g2 * (lap + xp.sum(grad * grad, axis=1)) - f * (xp.sum(x * grad, axis=1) + d)
    lhs = time_derivative(lambda u: log_prob(x, u), t, k)
    return lhs, rhs
