r"""What every flow map must satisfy, as residuals one can evaluate on a learned map.

A family ``Phi(x, t, s)`` is the flow map of the velocity ``v`` exactly when ``Phi(x, t, t) = x``
and either of two equivalent equations holds (Boffi, Albergo and Vanden-Eijnden 2025, prop. 2.2;
Kim et al. 2024, sec. 3; Geng et al. 2025, eq. 6 for the average velocity):

- the semigroup law ``Phi(Phi(x, t, s), s, u) = Phi(x, t, u)``;
- the Eulerian (consistency) equation ``d_t Phi(x, t, s) + grad_x Phi(x, t, s) v(x, t) = 0``:
  moving the start point along its own trajectory does not move the end point.

Consistency distillation is the discrete form of the second (Song et al. 2023, eq. 7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffcore._validation import check_array, check_choice, check_model_output, check_positive, check_scalar_time

__all__ = ["flow_map_residual", "semigroup_residual"]

Array = Any
FlowMapFamily = Callable[[Array, Any, Any], Array]


def _family(flow_map: Any) -> FlowMapFamily:
    if not callable(flow_map):
        raise TypeError(f"flow_map must be a callable (x, t, s) -> (n, d); got {type(flow_map).__name__}")
    return flow_map


def total_derivative(
    fn: Callable, x: Any, t: Any, s: Any, v: Any, *, name: str = "flow_map", create_graph: bool = False
) -> Any:
    """``d/de fn(x + e v, t + e, s)`` at ``e = 0`` for torch tensors (``t`` an ``(n,)`` tensor).

    Two reverse passes, no forward mode: ``g(u) = <u, d fn / de>`` is linear in ``u`` and its
    gradient in ``u`` is the derivative.  ``create_graph=True`` keeps it differentiable in the
    parameters of ``fn`` (a loss on it); otherwise the result is detached.
    """
    import torch

    e = torch.zeros((), dtype=torch.float64, device=x.device, requires_grad=True)
    with torch.enable_grad():
        out = check_model_output(name, fn(x.detach() + e.to(x.dtype) * v.detach(), t + e, s), x)
        if not out.requires_grad:  # the output does not depend on (x, t)
            return torch.zeros_like(x)
        u = torch.zeros_like(out, requires_grad=True)
        (g,) = torch.autograd.grad(out, e, grad_outputs=u, create_graph=True)
        (d,) = torch.autograd.grad(g, u, create_graph=create_graph)
    return d if create_graph else d.detach()


def flow_map_residual(
    flow_map: FlowMapFamily,
    velocity: Callable[[Array, Any], Array],
    x: Any,
    t: Any,
    s: Any,
    *,
    method: str = "auto",
    fd_step: float = 1e-4,
) -> Array:
    r"""The Eulerian residual ``r = d_t Phi(x, t, s) + grad_x Phi(x, t, s) v(x, t)``, shape ``(n, d)``.

    ``r`` is the derivative of ``h -> Phi(x + h v(x, t), t + h, s)`` at ``h = 0``: zero for the
    exact flow map of ``v`` (the consistency condition; module docstring).  ``"autograd"``
    computes it exactly as the derivative along ``(v, 1)`` by two reverse-mode passes (``t`` enters
    as an ``(n,)`` tensor, so ``flow_map`` must accept per-point times and be differentiable in
    ``x`` and ``t``; points must not interact); ``"fd"`` as the central difference along the same
    direction with step ``fd_step`` (error ``O(fd_step^2)``, any array library).

    Parameters
    ----------
    flow_map : ``(x (n, d), t, s) -> (n, d)``, e.g. ``lambda x, t, s: exact_flow_map(p, data, t, s)(x)``
        or a network.
    velocity : ``(x, t) -> (n, d)``, the ODE's velocity (the probability-flow drift of a process:
        ``ProbabilityFlowODE(process, score).drift``).
    x : ``(n, d)`` start points.  t, s : floats in ``[0, 1]``.
    method : ``"auto"`` (autograd for torch tensors, else fd), ``"autograd"`` or ``"fd"``.
    fd_step : the difference step ``h``; needs ``h <= t <= 1 - h``.
    """
    fm = _family(flow_map)
    if not callable(velocity):
        raise TypeError(f"velocity must be a callable (x, t) -> (n, d); got {type(velocity).__name__}")
    x = check_array("x", x, ndim=2)
    t, s = check_scalar_time(t, "t"), check_scalar_time(s, "s")
    method = check_choice("method", method, ("auto", "autograd", "fd"))
    is_torch = type(x).__module__.startswith("torch")
    if method == "auto":
        method = "autograd" if is_torch else "fd"
    v = check_model_output("velocity", velocity(x, t), x)
    if method == "autograd":
        if not is_torch:
            raise TypeError(f"method='autograd' needs x as a torch tensor; got {type(x).__name__}")
        import torch

        times = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
        return total_derivative(fm, x, times, s, v)
    h = check_positive("fd_step", fd_step)
    if not h <= t <= 1.0 - h:
        raise ValueError(f"the central difference needs fd_step <= t <= 1 - fd_step; got t = {t}, fd_step = {h}")
    plus = check_model_output("flow_map", fm(x + h * v, t + h, s), x)
    minus = check_model_output("flow_map", fm(x - h * v, t - h, s), x)
    return (plus - minus) / (2 * h)


def semigroup_residual(flow_map: FlowMapFamily, x: Any, t: Any, s: Any, u: Any) -> Array:
    r"""``Phi(Phi(x, t, s), s, u) - Phi(x, t, u)``, shape ``(n, d)``: zero for an exact flow map.

    With ``s = t`` or ``s = u`` it checks the boundary condition ``Phi(x, t, t) = x`` as well.
    """
    fm = _family(flow_map)
    x = check_array("x", x, ndim=2)
    t, s, u = (check_scalar_time(a, name) for a, name in ((t, "t"), (s, "s"), (u, "u")))
    mid = check_model_output("flow_map", fm(x, t, s), x)
    two = check_model_output("flow_map", fm(mid, s, u), x)
    one = check_model_output("flow_map", fm(x, t, u), x)
    return two - one
