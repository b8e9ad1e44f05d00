"""Exact derivatives of torch fields by autograd (torch is imported only when a torch tensor arrives)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffcore._array import as_array, is_scalar_time
from diffcore.fokker_planck._checks import check_output

__all__ = ["log_density_terms_autograd", "score_terms_autograd"]

Array = Any


def _leaves(x: Array, t: Any) -> tuple[Any, Any]:
    """``x`` and ``t`` (an ``(n,)`` tensor in ``x``'s dtype) as fresh leaves that require grad."""
    import torch

    if is_scalar_time(t):
        tt = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
    else:
        tt = as_array(t, x).detach().clone()
    return x.detach().clone().requires_grad_(True), tt.requires_grad_(True)


def _call(name: str, field: Callable, x: Any, t: Any, shape: tuple[int, ...]) -> Any:
    try:
        out = field(x, t)
    except RuntimeError as err:  # e.g. a NumPy function applied to a tensor that requires grad
        raise TypeError(
            f"{name} could not be evaluated on torch tensors that require grad (autograd needs a field "
            f"written in torch operations, in x and in t); use method='fd' for finite differences: {err}"
        ) from err
    check_output(f"{name}(x, t)", out, shape, x)
    if not out.requires_grad:
        raise TypeError(f"{name}(x, t) is not differentiable by torch autograd (its output has no grad_fn)")
    return out


def _grad(out: Any, inputs: tuple[Any, ...]) -> list[Any]:
    """``d out.sum() / d inputs`` with the graph kept (so the result is differentiable); unused inputs give zeros."""
    import torch

    grads = torch.autograd.grad(out.sum(), inputs, create_graph=True, allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for g, i in zip(grads, inputs)]


def _coefficients(process: Any, t: Any) -> tuple[Any, Any]:
    td = t.detach()
    return process.drift_coef(td), process.diffusion_squared(td)


def score_terms_autograd(process: Any, score: Callable, x: Array, t: Any) -> tuple[Array, Array]:
    """``(d_t s, grad(1/2 g^2 div s + 1/2 g^2 |s|^2 - f x . s))`` at ``x (n, d)``, exactly, differentiable."""
    import torch

    with torch.enable_grad():
        xg, tg = _leaves(x, t)
        s = _call("score", score, xg, tg, tuple(x.shape))
        f, g2 = _coefficients(process, tg)
        div, d_t = 0.0, []
        for i in range(x.shape[1]):
            gx, gt = _grad(s[:, i], (xg, tg))
            div = div + gx[:, i]
            d_t.append(gt)
        phi = 0.5 * g2 * (div + torch.sum(s * s, dim=1)) - f * torch.sum(xg * s, dim=1)
        (rhs,) = _grad(phi, (xg,))
    return torch.stack(d_t, dim=1), rhs


def log_density_terms_autograd(process: Any, log_prob: Callable, x: Array, t: Any) -> tuple[Array, Array]:
    """``(d_t log p, 1/2 g^2 (lap log p + |grad log p|^2) - f x . grad log p - d f)`` at ``x (n, d)``."""
    import torch

    with torch.enable_grad():
        xg, tg = _leaves(x, t)
        lp = _call("log_prob", log_prob, xg, tg, (x.shape[0],))
        f, g2 = _coefficients(process, tg)
        grad, d_t = _grad(lp, (xg, tg))
        lap = sum(_grad(grad[:, i], (xg,))[0][:, i] for i in range(x.shape[1]))
        rhs = 0.5 * g2 * (lap + torch.sum(grad * grad, dim=1)) - f * (torch.sum(xg * grad, dim=1) + x.shape[1])
    return d_t, rhs
