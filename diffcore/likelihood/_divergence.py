r"""Divergences of score fields: closed form, autograd and central differences.

Every routine takes a score ``s(x, t)`` on points ``x`` of shape ``(n, d)`` and a scalar time and
returns ``(s(x, t), div)``, where ``div`` is either the exact divergence ``tr(ds/dx)`` (shape
``(n, 1)``) or, for probes ``eps`` of shape ``(P, n, d)``, the Hutchinson quadratic forms
``eps_j^T (ds/dx) eps_j`` (shape ``(n, P)``), plus the number of score evaluations it spent,
counted in batches of ``n`` points.

Three ways, chosen by :func:`divergence_kind`:

* ``"closed_form"`` for an :class:`~diffcore.ExactField` score of Gaussian-mixture data.  With
  responsibilities ``r_k``, component scores ``s_k = -V_k^{-1}(x - alpha m_k)`` and
  ``s = sum_k r_k s_k``, the product rule and ``grad r_k = r_k (s_k - s)`` give

  .. math:: \nabla\cdot s = \sum_k r_k\big(-\operatorname{tr} V_k^{-1} + |s_k|^2\big) - |s|^2,
            \qquad
            \epsilon^\top \frac{\partial s}{\partial x}\epsilon
            = \sum_k r_k\big(-\epsilon^\top V_k^{-1}\epsilon + (s_k\cdot\epsilon)((s_k - s)\cdot\epsilon)\big).

* ``"autograd"`` for torch tensors: ``d`` backward passes for the trace, one vector-Jacobian
  product per probe for Hutchinson.  Points must not interact (row ``i`` of ``s`` depends on
  row ``i`` of ``x`` only), which holds for every per-sample model.
* ``"finite_difference"`` for other NumPy callables: central differences with step ``h``,
  error ``O(h^2 |d^3 s|) + O(eps |s| / h)``; the ``2d`` (exact) or ``2P`` (Hutchinson)
  shifted copies of the batch go to the score in one call.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import is_torch_array

from diffcore._array import namespace
from diffcore._validation import Model, check_array, check_positive, check_scalar_time, check_steps
from diffcore.distributions import ExactField
from diffcore.distributions._components import component_terms, softmax

__all__ = ["check_batch_size", "divergence", "divergence_kind", "evaluate", "field_divergence", "field_quadratic"]

Array = Any


def check_batch_size(batch_size: Any) -> int | None:
    """``None`` (all points in one call) or an integer ``>= 1``: the most points per call of a model."""
    return None if batch_size is None else check_steps(batch_size, "batch_size")


def divergence_kind(score: Any, x: Array) -> str:
    """How the divergence of ``score`` at ``x`` is taken: ``closed_form``, ``autograd`` or ``finite_difference``."""
    if isinstance(score, ExactField) and score.kind == "score":
        return "closed_form"
    if is_torch_array(x):
        return "autograd"
    return "finite_difference"


# -- closed form for exact mixture scores -------------------------------------------------------
def _mixture_parts(field: ExactField, x: Array, t: float) -> tuple[Any, ...]:
    """Responsibilities ``(n, K)``, component scores ``(n, K, d)``, score ``(n, d)``, variances, eigvecs."""
    xp = namespace(x)
    data = field.data.as_mixture() if hasattr(field.data, "as_mixture") else field.data
    comps = data._components.like(x)
    a, sig = field.process.alpha(t), field.process.sigma(t)
    log_joint, proj, var = component_terms(x, comps, a, sig**2)
    resp = softmax(log_joint, axis=1)
    scaled = proj / var  # (n, K, d) in each component's eigenbasis
    s_k = -xp.permute_dims(xp.permute_dims(scaled, (1, 0, 2)) @ xp.permute_dims(comps.eigvecs, (0, 2, 1)), (1, 0, 2))
    s = xp.sum(resp[:, :, None] * s_k, axis=1)
    return resp, s_k, s, scaled, var, comps.eigvecs


def field_divergence(field: ExactField, x: Array, t: float) -> tuple[Array, Array]:
    r"""``(s, div s)`` of an exact mixture score in closed form; ``div`` has shape ``(n,)``."""
    xp = namespace(x)
    resp, _, s, scaled, var, _ = _mixture_parts(field, x, t)
    per_k = -xp.sum(1.0 / var, axis=2) + xp.sum(scaled**2, axis=2)  # |s_k|^2 = |p_k / v_k|^2 (U_k orthogonal)
    return s, xp.sum(resp * per_k, axis=1) - xp.sum(s**2, axis=1)


def field_quadratic(field: ExactField, x: Array, t: float, eps: Array) -> tuple[Array, Array]:
    r"""``(s, eps_j^T (ds/dx) eps_j)`` of an exact mixture score in closed form; ``eps (P, n, d)``, out ``(n, P)``."""
    xp = namespace(x)
    resp, s_k, s, _, var, eigvecs = _mixture_parts(field, x, t)
    out = []
    for e in eps:  # e: (n, d)
        e_proj = xp.permute_dims(e[None, :, :] @ eigvecs, (1, 0, 2))  # (n, K, d): U_k^T e
        inv_quad = xp.sum(e_proj**2 / var, axis=2)  # e^T V_k^{-1} e
        sk_e = xp.sum(s_k * e[:, None, :], axis=2)
        s_e = xp.sum(s * e, axis=1)
        out.append(xp.sum(resp * (-inv_quad + sk_e * (sk_e - s_e[:, None])), axis=1))
    return s, xp.stack(out, axis=1)


# -- torch autograd ----------------------------------------------------------------------------
def _autograd(score: Any, x: Array, t: float, eps: Array | None) -> tuple[Array, Array]:
    import torch  # x is a torch tensor

    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        s = score(y, t)
        if not s.requires_grad:  # a field that does not depend on x (or is detached): zero Jacobian
            m = 1 if eps is None else eps.shape[0]
            return s.detach(), torch.zeros((x.shape[0], m), dtype=x.dtype, device=x.device)
        if eps is None:
            cols = []
            for i in range(x.shape[1]):
                (g,) = torch.autograd.grad(s[:, i].sum(), y, retain_graph=True, allow_unused=True)
                cols.append(torch.zeros_like(y[:, i]) if g is None else g[:, i])
            out = torch.stack(cols, dim=1).sum(dim=1, keepdim=True)
        else:
            quads = []
            for e in eps:
                (g,) = torch.autograd.grad((s * e).sum(), y, retain_graph=True, allow_unused=True)
                quads.append(torch.zeros_like(y[:, 0]) if g is None else (g * e).sum(dim=1))
            out = torch.stack(quads, dim=1)
    return s.detach(), out.detach()


# -- central differences -----------------------------------------------------------------------
def _finite_difference(score: Any, x: Array, t: float, eps: Array | None, h: float) -> tuple[Array, Array, int]:
    xp = namespace(x)
    n, d = x.shape
    if eps is None:
        dirs = xp.eye(d, dtype=x.dtype)[:, None, :] * xp.ones_like(x)[None]  # (d, n, d)
    else:
        dirs = eps
    m = dirs.shape[0]
    shifted = xp.concat([x[None], x[None] + h * dirs, x[None] - h * dirs], axis=0)  # (1 + 2m, n, d)
    out = score(xp.reshape(shifted, ((1 + 2 * m) * n, d)), t)
    out = xp.reshape(out, (1 + 2 * m, n, d))
    jvp = (out[1 : 1 + m] - out[1 + m :]) / (2 * h)  # (m, n, d): J dir
    quad = xp.permute_dims(xp.sum(jvp * dirs, axis=2), (1, 0))  # (n, m)
    if eps is None:
        quad = xp.sum(quad, axis=1, keepdims=True)
    return out[0], quad, 1 + 2 * m


def evaluate(
    score: Any, kind: str, x: Array, t: float, eps: Array | None, h: float, batch_size: int | None = None
) -> tuple[Array, Array, int]:
    """``(s, div, cost)``: ``div`` is ``(n, 1)`` (exact) or ``(n, P)`` (quadratic forms of the probes ``eps``).

    With ``batch_size`` the points go to the score in consecutive chunks of at most that many
    (the probes sliced with them), so memory is bounded by one chunk's evaluation (and autograd
    graph); the numbers are those of one call, since points do not interact.  ``cost`` stays in
    batches of ``n`` points.
    """
    n = x.shape[0]
    if batch_size is None or n <= batch_size:
        return _evaluate(score, kind, x, t, eps, h)
    xp = namespace(x)
    parts = [
        _evaluate(score, kind, x[i : i + batch_size], t, None if eps is None else eps[:, i : i + batch_size], h)
        for i in range(0, n, batch_size)
    ]
    return xp.concat([p[0] for p in parts], axis=0), xp.concat([p[1] for p in parts], axis=0), parts[0][2]


def _evaluate(score: Any, kind: str, x: Array, t: float, eps: Array | None, h: float) -> tuple[Array, Array, int]:
    if kind == "closed_form":
        if eps is None:
            s, div = field_divergence(score, x, t)
            return s, div[:, None], 1
        s, quad = field_quadratic(score, x, t, eps)
        return s, quad, 1
    if kind == "autograd":
        s, out = _autograd(score, x, t, eps)
        return s, out, 1
    return _finite_difference(score, x, t, eps, h)


def divergence(score: Any, x: Array, t: float, *, fd_step: float = 1e-4, batch_size: int | None = None) -> Array:
    r"""The exact divergence ``div_x s(x, t) = tr(ds/dx)`` of a field ``(n, d) -> (n, d)``; shape ``(n,)``.

    In closed form for :class:`~diffcore.ExactField` scores of Gaussian mixtures
    (``sum_k r_k (-tr V_k^{-1} + |s_k|^2) - |s|^2``, see the module notes), by ``d`` backward
    passes of torch autograd for torch tensors, and by central differences with step
    ``fd_step`` (``2d`` shifted batches in one call; error ``O(fd_step^2)``) for other NumPy
    callables.  ``t`` is a float.  ``batch_size``: at most this many points per call of the score
    (bounds the memory of the ``d`` backward passes or ``2d`` shifted copies; same result).
    Chapter "Likelihoods and densities" derives the closed form.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VESDE, Gaussian, exact_score
    >>> p = VESDE()
    >>> s = exact_score(p, Gaussian(np.zeros(3), np.eye(3)))   # s = -x / (1 + sigma^2)
    >>> bool(np.allclose(divergence(s, np.ones((2, 3)), 0.0), -3.0))
    True
    """
    model = Model.of(score, "score")
    x = check_array("x", x, ndim=2, finite=False)
    t = check_scalar_time(t)
    check_positive("fd_step", fd_step)
    batch_size = check_batch_size(batch_size)
    kind = divergence_kind(score, x)
    _, div, _ = evaluate(score if kind == "closed_form" else model, kind, x, t, None, fd_step, batch_size)
    return namespace(x).reshape(div, (x.shape[0],))
