r"""Losses that teach a network a flow map: consistency distillation and training, MeanFlow.

A flow-map model is a family ``Phi_theta(x, t, s)`` (build one from a network with
:func:`diffcore.flowmaps.to_flow_map`, which puts the boundary condition ``Phi(x, t, t) = x``
into the parametrisation).  Each loss below is zero, or stationary, at the exact flow map
(:func:`diffcore.flowmaps.exact_flow_map`) of the probability-flow ODE of a process or of the
transport ODE of an interpolant; the tests check it the way the other losses are checked.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from diffcore._validation import (
    check_array,
    check_choice,
    check_finite,
    check_model_output,
    check_real,
    check_scalar_time,
    check_steps,
    check_unshifted,
)
from diffcore.dynamics import ProbabilityFlowODE
from diffcore.flowmaps._checks import total_derivative
from diffcore.interpolants import AbstractInterpolant
from diffcore.processes import AbstractProcess
from diffcore.samplers import GRIDS, get_solver, integrate, time_grid
from diffcore.training._interpolant_losses import _draws, _mean_sq, _path, _sq
from diffcore.training._torch import as_tensor, check_finite_tensor, check_time_range, generator, uniform_times

__all__ = [
    "boot_loss",
    "consistency_distillation_loss",
    "consistency_training_loss",
    "eulerian_distillation_loss",
    "guided_distillation_loss",
    "meanflow_loss",
    "progressive_distillation_loss",
    "sde_teacher",
    "shortcut_loss",
    "solver_teacher",
]

Array = Any
Teacher = Callable[[Any, float, float], Any]


def solver_teacher(process: AbstractProcess, score: Callable, method: str = "heun", **options: Any) -> Teacher:
    r"""One step of a diffcore solver on the probability-flow ODE of ``(process, score)``: ``(x, t, s) -> x_s``.

    The teacher of consistency distillation (Song et al. 2023, eq. 7: ``x_hat_{t_n} = x_{t_{n+1}}
    + (t_n - t_{n+1}) Phi(x_{t_{n+1}}, t_{n+1}; theta)`` with the ODE solver ``Phi``; they use
    Heun).  ``score`` is the exact or a learned score; ``method`` any name of ``diffcore.SOLVERS``
    whose one step from ``t`` to ``s`` needs no history (``euler``, ``heun``, ``rk4``, ``ddim``,
    ``dpm_solver_2``, ...); ``options`` go to the solver.
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    dynamics = ProbabilityFlowODE(process, score)
    solver = get_solver(method, **options)  # an unknown name or option fails here, not at the first step

    def step(x: Any, t: Any, s: Any) -> Any:
        x = check_finite("x", check_array("x", x, ndim=2))
        t, s = check_scalar_time(t, "t"), check_scalar_time(s, "s")
        return integrate(dynamics, x, [t, s], solver).x

    return step


def sde_teacher(
    process: AbstractProcess, score: Callable, eta: float = 1.0, *, substeps: int = 1, rng: Any = None
) -> Teacher:
    r"""A stochastic teacher: ``substeps`` DDIM-``eta`` steps from ``t`` to ``s`` (SCott's teacher).

    Each substep from ``u`` to ``v < u`` is ``x_v = alpha_v x0_hat + (sigma_v^2 - c^2)^{1/2} eps_hat
    + c z`` with ``c = eta sigma_v (1 - alpha_u^2 sigma_v^2 / (alpha_v^2 sigma_u^2))^{1/2}`` (``eta``
    times the standard deviation of ``q(x_v | x_u, x_0)``; for VP ``(sigma_v / sigma_u) (1 -
    alpha_u^2 / alpha_v^2)^{1/2}``), ``x0_hat`` and ``eps_hat`` from the score (Song, Meng and Ermon
    2021, eqs. 12 and 16): ``eta = 0`` is the DDIM (probability-flow) step, ``eta = 1`` the
    ancestral step of the reverse SDE.  Liu et al.
    (2024, SCott, sec. 3) distil with such a teacher, its noise strength controlled by ``eta``.
    Its mean step differs from the ODE step by ``O(eta^2 h)`` per step, so the exact consistency
    map is not a stationary point of the distillation (the per-step gradient at it falls with the
    grid, tests/test_flowmap_training.py), and the fixed point of the whole distillation does not
    tend to the flow map: with ``eta = 1`` the learned map stays at the denoiser ``E[x_0 | x_t]``,
    0.93 from the flow map on the chapter's Gaussian at both 10 and 40 steps (book chapter "Flow
    maps and few-step generation", section "Stochastic teachers").

    ``rng`` draws the noise ``z`` (one generator for the teacher's whole life).
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    if not callable(score):
        raise TypeError(f"score must be a callable (x, t) -> (n, d); got {type(score).__name__}")
    eta = check_real("eta", eta)
    if eta < 0:
        raise ValueError(f"eta must be >= 0; got {eta}")
    substeps = check_steps(substeps, "substeps")
    gen = generator(rng)

    def step(x: Any, t: Any, s: Any) -> Any:
        x = check_finite("x", as_tensor("x", x))
        t, s = check_scalar_time(t, "t"), check_scalar_time(s, "s")
        if not s < t:
            raise ValueError(f"the stochastic teacher steps backwards in time (s < t); got t = {t}, s = {s}")
        for u, v in itertools.pairwise(np.linspace(t, s, substeps + 1)):
            a_u, s_u, a_v, s_v = (
                float(f(w)) for f, w in ((process.alpha, u), (process.sigma, u), (process.alpha, v), (process.sigma, v))
            )
            eps_hat = -s_u * score(x, float(u))
            x0_hat = (x - s_u * eps_hat) / a_u
            c = min(eta * s_v * max(1.0 - (a_u * s_v) ** 2 / (a_v * s_u) ** 2, 0.0) ** 0.5, s_v)  # eta <= 1: no clip
            z = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=gen.device).to(x.device)
            x = a_v * x0_hat + (s_v**2 - c**2) ** 0.5 * eps_hat + c * z
        return x

    return step


def _check_map(name: str, model: Any, args: str = "(x, t, s)") -> Callable:
    """A callable that accepts the positional arguments ``args`` (checked on its signature where it has one)."""
    if not callable(model):
        raise TypeError(f"{name} must be a callable {args} -> (n, d); got {type(model).__name__}")
    try:  # a module is called through forward; its __call__ takes anything
        signature = inspect.signature(model.forward if isinstance(model, torch.nn.Module) else model)
    except (TypeError, ValueError):  # builtins and some extension types have none: trust the call
        return model
    n = args.count(",") + 1
    try:
        signature.bind(*range(n))
    except TypeError:
        raise TypeError(f"{name} must take {n} positional arguments {args}; its signature is {signature}") from None
    return model


def _consistency_pairs(
    x0: Any,
    process: Any,
    rng: Any,
    steps: Any,
    t_min: Any,
    t_max: Any,
    grid: str,
    who: str,
    name: str = "x0",
    skip: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor]:
    """Data, noise, the index ``n`` of each point's pair ``(t_{n+1}, t_n)`` and the grid (increasing)."""
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, who)
    steps = check_steps(steps)
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    if not t_min < t_max:
        raise ValueError(f"{who} needs t_min < t_max; got {t_min} and {t_max}")
    check_choice("grid", grid, GRIDS)
    x0 = check_finite_tensor(name, as_tensor(name, x0))
    gen = generator(rng, x0.device)
    ts = np.sort(np.asarray(time_grid(process, steps, t_min=t_min, t_max=t_max, kind=grid), dtype=np.float64))
    if skip > steps:
        raise ValueError(f"skip must be <= steps = {steps}; got {skip}")
    idx = torch.randint(0, steps - skip + 1, (x0.shape[0],), generator=gen, device=gen.device).to(x0.device)
    eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype, device=gen.device).to(x0.device)
    return x0, eps, idx, ts, torch.as_tensor(ts, dtype=torch.float64, device=x0.device)


def _noised(process: AbstractProcess, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    shape = (x0.shape[0],) + (1,) * (x0.ndim - 1)
    a, s = process.alpha(t).to(x0.dtype).reshape(shape), process.sigma(t).to(x0.dtype).reshape(shape)
    return a * x0 + s * eps


def _consistency_loss(model, target, x_next, t_next, x_prev, t_prev, t_min) -> torch.Tensor:
    pred = check_model_output("model", model(x_next, t_next, t_min), x_next)
    with torch.no_grad():
        goal = check_model_output("target", target(x_prev, t_prev, t_min), x_prev)
    return _mean_sq(pred - goal)


def consistency_distillation_loss(
    model: Callable,
    x0: Any,
    process: AbstractProcess,
    teacher: Teacher,
    rng: Any = None,
    *,
    steps: int = 18,
    skip: int = 1,
    target: Callable | None = None,
    t_min: float = 2e-3,
    t_max: float = 1.0,
    grid: str = "edm",
) -> torch.Tensor:
    r"""Consistency distillation (Song et al. 2023, eq. 7 and algorithm 2), with the squared ``l_2`` metric.

    .. math:: L = E_{n, x_0, \varepsilon}\, \big\| \Phi_\theta(x_{t_{n+1}}, t_{n+1}, t_{min})
              - \Phi_{\theta^-}(\hat x_{t_n}, t_n, t_{min}) \big\|^2, \qquad
              \hat x_{t_n} = \mathrm{teacher}(x_{t_{n+1}}, t_{n+1}, t_n),

    with ``x_{t_{n+1}} = alpha x_0 + sigma eps``, ``n`` uniform on ``0..steps-1`` over the grid
    ``t_min = t_0 < ... < t_steps = t_max`` of kind ``grid`` (``diffcore.samplers.time_grid``; EDM's
    ``rho = 7`` by default, as in the paper) and the target network ``theta^-`` (an EMA copy; by
    default the model itself) under ``torch.no_grad``.  With the exact teacher step
    (:func:`diffcore.flowmaps.exact_flow_map`) the exact flow map gives ``L = 0``; with a
    solver teacher the minimiser is the flow map of the teacher's discrete chain.

    Parameters
    ----------
    model : the flow-map family ``(x, t, s) -> (n, d)`` tensor (``t`` an ``(n,)`` float64 tensor),
        differentiable in its parameters, e.g. ``to_flow_map("consistency", net, process)``.
    x0 : data ``(n, d)``.  process : the forward process.  teacher : ``(x, t, s) -> x_s`` for float
        ``t``, ``s`` (:func:`solver_teacher`, or an exact map).  rng : draws ``n`` then ``eps``.
    steps, t_min, t_max, grid : the discretisation ``N`` and its grid.  target : the EMA model.
    skip : the teacher jumps ``skip`` grid intervals at once, from ``t_{n+skip}`` to ``t_n`` (the
        skipping-step technique of latent consistency models, Luo et al. 2023, sec. 4.3).

    Returns a 0-d tensor (mean over the batch of the squared error summed over features).
    """
    model, teacher = _check_map("model", model), _check_map("teacher", teacher)
    target = model if target is None else _check_map("target", target)
    skip = check_steps(skip, "skip")
    x0, eps, idx, ts, ts_t = _consistency_pairs(
        x0, process, rng, steps, t_min, t_max, grid, "consistency_distillation_loss", skip=skip
    )
    t_next, t_prev = ts_t[idx + skip], ts_t[idx]
    x_next = _noised(process, x0, eps, t_next)
    x_prev = torch.empty_like(x_next)
    with torch.no_grad():
        for n in torch.unique(idx).tolist():  # the teacher steps with scalar times: one call per pair
            rows = idx == n
            x_prev[rows] = check_model_output("teacher", teacher(x_next[rows], ts[n + skip], ts[n]), x_next[rows])
    check_finite_tensor("the teacher's step", x_prev)
    return _consistency_loss(model, target, x_next, t_next, x_prev, t_prev, float(ts[0]))


def consistency_training_loss(
    model: Callable,
    x0: Any,
    process: AbstractProcess,
    rng: Any = None,
    *,
    steps: int = 18,
    target: Callable | None = None,
    t_min: float = 2e-3,
    t_max: float = 1.0,
    grid: str = "edm",
) -> torch.Tensor:
    r"""Consistency training without a teacher (Song et al. 2023, eq. 10 and algorithm 3).

    As :func:`consistency_distillation_loss` with the teacher's step replaced by the same noise
    at the earlier time, ``x_hat_{t_n} = alpha_{t_n} x_0 + sigma_{t_n} eps``: the DDIM step
    from ``t_{n+1}`` to ``t_n`` with the one-sample score ``-eps / sigma``, an unbiased
    estimate of the exact score (their thm. 2: the two losses agree up to ``o(Delta t)``, so the
    exact map is stationary only as ``steps -> inf``).
    """
    model = _check_map("model", model)
    target = model if target is None else _check_map("target", target)
    x0, eps, idx, ts, ts_t = _consistency_pairs(
        x0, process, rng, steps, t_min, t_max, grid, "consistency_training_loss"
    )
    t_next, t_prev = ts_t[idx + 1], ts_t[idx]
    x_next, x_prev = _noised(process, x0, eps, t_next), _noised(process, x0, eps, t_prev)
    return _consistency_loss(model, target, x_next, t_next, x_prev, t_prev, float(ts[0]))


def meanflow_loss(
    model: Callable,
    batch: Any,
    interpolant: AbstractInterpolant,
    rng: Any = None,
    *,
    rho0: Any = None,
    target: Callable | None = None,
    equal_fraction: float = 0.5,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""MeanFlow's identity loss for the average velocity ``u(x, t, s)``, ``Phi(x, t, s) = x + (s - t) u``.

    Differentiating ``(s - t) u(x_t, t, s) = Phi(x_t, t, s) - x_t`` along a trajectory (where
    ``Phi`` is constant) gives the MeanFlow identity ``u = v + (s - t) du/dt`` with
    ``du/dt = d_t u + (grad_x u) v`` (Geng et al. 2025, eqs. 6–8, written for our clock, noise at
    ``t = 0`` and data at ``t = 1``).  The loss regresses on it with the conditional velocity
    ``v_c = dx_t/dt`` of the interpolant and a stopped gradient:

    .. math:: L = E\, \big\| u_\theta(x_t, t, s) - \mathrm{sg}\big(v_c + (s - t)\,
              [\partial_t u_{\theta^-} + (\nabla_x u_{\theta^-}) v_c](x_t, t, s)\big) \big\|^2.

    The target is linear in ``v_c`` and ``E[v_c | x_t] = v``, so the exact average velocity is the
    stationary point.  Times: ``t, s`` uniform on ``[t_min, t_max]`` and sorted so that ``s >= t``;
    a fraction ``equal_fraction`` of the pairs has ``s = t`` (flow matching of ``u(x, t, t) = v``).

    Parameters
    ----------
    model : ``(x, t, s) -> (n, d)`` average velocity, differentiable in ``x``, ``t`` and its parameters.
    batch, interpolant, rho0 : as :func:`flow_matching_loss` (``batch`` the data at ``t = 1``).
    target : the model whose total derivative enters the target (default: ``model``).
    equal_fraction : in ``[0, 1]``.
    """
    model = _check_map("model", model)
    target = model if target is None else _check_map("target", target)
    fraction = check_real("equal_fraction", equal_fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"equal_fraction must lie in [0, 1]; got {equal_fraction}")
    gen = generator(rng)  # one CPU generator for every draw: the ends, z, t (in _draws), then s and the ties
    x0, x1, z, t = _draws(batch, interpolant, gen, rho0, None, t_min, t_max)
    s = uniform_times(x1.shape[0], *check_time_range(t_min, t_max, open_ends=True), gen, x1)
    equal = (torch.rand(x1.shape[0], generator=gen, dtype=torch.float64) < fraction).to(x1.device)
    lo, hi = torch.minimum(t, s), torch.maximum(t, s)
    hi = torch.where(equal, lo, hi)
    x_t, d_i, d_gamma, _ = _path(interpolant, x0, x1, z, lo)
    v_c = d_i + d_gamma * z
    du = total_derivative(target, x_t, lo, hi, v_c, name="target")
    goal = v_c + (hi - lo).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1))) * du
    pred = check_model_output("model", model(x_t, lo, hi), x_t)
    return _mean_sq(pred - goal.detach())


def _ddim(
    process: AbstractProcess, x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """One DDIM step ``t -> s`` from the denoiser's ``x0``: ``alpha_s x0 + (sigma_s / sigma_t)(x - alpha_t x0)``."""
    a_t, s_t, a_s, s_s = (
        _col(f(u), x) for f, u in ((process.alpha, t), (process.sigma, t), (process.alpha, s), (process.sigma, s))
    )
    return a_s * x0 + (s_s / s_t) * (x - a_t * x0)


def _col(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return c.to(x.dtype).reshape((x.shape[0],) + (1,) * (x.ndim - 1))


def progressive_target(
    process: AbstractProcess, teacher: Callable, x: torch.Tensor, t: torch.Tensor, t_mid: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    r"""The ``x_0`` whose one DDIM step from ``t`` to ``s`` lands where the teacher's two DDIM steps land.

    Salimans and Ho (2022, alg. 2): with ``x' = DDIM(x, t -> t_mid)`` and ``x'' = DDIM(x', t_mid -> s)``
    under the teacher's denoiser, the target is ``x_tilde = (x'' - (sigma_s / sigma_t) x) /
    (alpha_s - (sigma_s / sigma_t) alpha_t)``: the student denoiser ``x_tilde`` takes in one step the
    teacher's two.  ``teacher`` is a denoiser ``(x, t) -> E[x_0 | x_t]`` (per-point times);
    ``t``, ``t_mid``, ``s`` are ``(n,)`` float64 tensors with ``t > t_mid > s``.
    """
    mid = _ddim(process, x, teacher(x, t), t, t_mid)
    end = _ddim(process, mid, teacher(mid, t_mid), t_mid, s)
    ratio = _col(process.sigma(s) / process.sigma(t), x)
    return (end - ratio * x) / (_col(process.alpha(s), x) - ratio * _col(process.alpha(t), x))


def progressive_distillation_loss(
    student: Callable,
    x0: Any,
    process: AbstractProcess,
    teacher: Callable,
    rng: Any = None,
    *,
    steps: int = 8,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    grid: str = "uniform",
    guidance: tuple[float, float] | None = None,
) -> torch.Tensor:
    r"""One round of progressive distillation (Salimans and Ho 2022, alg. 2): one student step per two teacher steps.

    .. math:: L = E_{k, x_0, \varepsilon}\, \max(\mathrm{SNR}(t), 1)\,
              \big\| \hat x_\theta(x_t, t) - \tilde x(x_t) \big\|^2, \qquad x_t = \alpha_t x_0 + \sigma_t \varepsilon,

    with ``t = t_{2k}``, ``k`` uniform on ``0..steps-1`` of the decreasing grid ``t_max = t_0 > ... >
    t_{2 steps} = t_min`` of kind ``grid`` and the target ``x_tilde`` of :func:`progressive_target`
    from ``t_{2k}`` through ``t_{2k+1}`` to ``t_{2k+2}`` (the "truncated SNR" weighting of their
    sec. 4).  The loss is zero exactly when the student's ``steps``-step DDIM sampler equals the
    teacher's ``2 steps``-step one on the grid; halving rounds give 1-, 2-, 4-step students.

    Parameters
    ----------
    student, teacher : denoisers ``(x, t) -> (n, d)`` tensors with per-point float64 times ``(n,)``
        (the teacher under ``torch.no_grad``).  x0 : data ``(n, d)``.  rng : draws ``k``, ``eps``, then ``w``.
    guidance : ``(w_min, w_max)`` for stage two of guided distillation (Meng et al. 2023, sec. 4.2):
        ``w`` uniform on it per point, and both denoisers are called ``(x, t, w)`` (the teacher being
        the stage-one student), so that one student halves the steps for every guidance weight.
    """
    args = "(x, t)" if guidance is None else "(x, t, w)"
    student, teacher = _check_map("student", student, args), _check_map("teacher", teacher, args)
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "progressive_distillation_loss")
    steps = check_steps(steps)
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    if not 0.0 < t_min < t_max:
        raise ValueError(f"progressive_distillation_loss needs 0 < t_min < t_max; got {t_min} and {t_max}")
    check_choice("grid", grid, GRIDS)
    x0 = check_finite_tensor("x0", as_tensor("x0", x0))
    gen = generator(rng, x0.device)
    ts = torch.as_tensor(
        np.asarray(time_grid(process, 2 * steps, t_min=t_min, t_max=t_max, kind=grid), dtype=np.float64),
        device=x0.device,
    )
    k = torch.randint(0, steps, (x0.shape[0],), generator=gen, device=gen.device).to(x0.device)
    eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype, device=gen.device).to(x0.device)
    if guidance is not None:
        if not (isinstance(guidance, (tuple, list)) and len(guidance) == 2):
            raise TypeError(f"guidance must be a pair (w_min, w_max) or None; got {guidance!r}")
        w_lo, w_hi = check_real("guidance[0]", guidance[0]), check_real("guidance[1]", guidance[1])
        if not -1.0 <= w_lo <= w_hi:
            raise ValueError(f"guidance weights need -1 <= w_min <= w_max; got ({w_lo}, {w_hi})")
        u = torch.rand(x0.shape[0], generator=gen, dtype=torch.float64, device=gen.device).to(x0.device)
        w = w_lo + (w_hi - w_lo) * u
        student_w, teacher_w = student, teacher
        student = lambda x, t: student_w(x, t, w)  # noqa: E731
        teacher = lambda x, t: teacher_w(x, t, w)  # noqa: E731
    t, t_mid, s = ts[2 * k], ts[2 * k + 1], ts[2 * k + 2]
    x_t = _col(process.alpha(t), x0) * x0 + _col(process.sigma(t), x0) * eps
    with torch.no_grad():
        goal = check_finite_tensor("the teacher's target", progressive_target(process, teacher, x_t, t, t_mid, s))
    weight = torch.clamp(process.alpha(t) ** 2 / process.sigma(t) ** 2, min=1.0).to(x0.dtype)
    pred = check_model_output("student", student(x_t, t), x_t)
    return torch.mean(weight * _sq(pred - goal))


def guided_distillation_loss(
    student: Callable,
    x0: Any,
    process: AbstractProcess,
    conditional: Callable,
    unconditional: Callable,
    rng: Any = None,
    *,
    w_min: float = 0.0,
    w_max: float = 4.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""Stage one of guided distillation (Meng et al. 2023, eq. 6): one student for a range of guidance weights.

    .. math:: L = E_{w, t, x_0, \varepsilon}\, \big\| \hat x_\theta(x_t, t, w) - \big[(1 + w)\, \hat x_c(x_t, t)
              - w\, \hat x(x_t, t)\big] \big\|^2,

    ``w`` uniform on ``[w_min, w_max]``, ``t`` uniform on ``[t_min, t_max]``, ``x_t = alpha x_0 + sigma eps``:
    the student, conditioned on ``w``, regresses on the classifier-free guided denoiser of the
    teacher (:func:`diffcore.conditional.classifier_free_guidance` in ``x_0``-form; the guided
    denoiser and the guided score are the same affine combination).  The target is a deterministic
    function of ``(x_t, t, w)``, so the loss is zero exactly at the guided teacher; stage two
    (progressive distillation of the ``w``-conditioned student) uses
    :func:`progressive_distillation_loss` at each ``w``.

    Parameters
    ----------
    student : ``(x, t, w) -> (n, d)`` with per-point float64 ``t`` and ``w`` of shape ``(n,)``.
    x0 : data ``(n, d)`` of the class the teacher is conditioned on.  conditional, unconditional :
        the teacher's denoisers ``(x, t) -> E[x_0 | x_t (, y)]``.  rng : draws ``w``, ``t``, ``eps``.
    """
    student = _check_map("student", student, "(x, t, w)")
    conditional = _check_map("conditional", conditional, "(x, t)")
    unconditional = _check_map("unconditional", unconditional, "(x, t)")
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "guided_distillation_loss")
    w_lo, w_hi = check_real("w_min", w_min), check_real("w_max", w_max)
    if not -1.0 <= w_lo <= w_hi:
        raise ValueError(f"guidance weights need -1 <= w_min <= w_max; got w_min = {w_lo}, w_max = {w_hi}")
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    x0 = check_finite_tensor("x0", as_tensor("x0", x0))
    gen = generator(rng, x0.device)
    w = w_lo + (w_hi - w_lo) * torch.rand(x0.shape[0], generator=gen, dtype=torch.float64, device=gen.device)
    w = w.to(x0.device)
    t = uniform_times(x0.shape[0], t_min, t_max, gen, x0)
    eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype, device=gen.device).to(x0.device)
    x_t = _col(process.alpha(t), x0) * x0 + _col(process.sigma(t), x0) * eps
    with torch.no_grad():
        cond = check_model_output("conditional", conditional(x_t, t), x_t)
        uncond = check_model_output("unconditional", unconditional(x_t, t), x_t)
        goal = check_finite_tensor("the guided target", (1 + _col(w, x0)) * cond - _col(w, x0) * uncond)
    pred = check_model_output("student", student(x_t, t, w), x_t)
    return _mean_sq(pred - goal)


def eulerian_distillation_loss(
    model: Callable,
    x0: Any,
    process: AbstractProcess,
    velocity: Callable,
    rng: Any = None,
    *,
    s: float | None = None,
    t_min: float = 1e-3,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""Continuous-time distillation by the Eulerian (consistency) equation of the flow map.

    .. math:: L = E_{t, s, x_t}\, \big\| \partial_t \Phi_\theta(x_t, t, s)
              + \nabla_x \Phi_\theta(x_t, t, s)\, v(x_t, t) \big\|^2,

    the squared residual of :func:`diffcore.flowmaps.flow_map_residual` at ``x_t = alpha x_0 +
    sigma eps``, ``t`` uniform on ``[t_min, t_max]`` and ``s`` uniform on ``[t_min, t]`` (or fixed:
    ``s = t_min`` is continuous-time consistency distillation, Song et al. 2023, sec. 6; Lu and
    Song 2025, eq. 6; Boffi et al. 2025, eq. 13 for general ``s``).  A parametrisation with
    ``Phi(x, s, s) = x`` (:func:`diffcore.flowmaps.to_flow_map`) makes the exact map of ``v`` the
    unique zero.  The residual is differentiated exactly (two reverse passes, kept in the graph,
    so the loss costs about three backward passes of the model).

    Parameters
    ----------
    model : the flow map ``(x, t, s) -> (n, d)``, differentiable in ``x``, ``t`` and its parameters.
    velocity : the teacher's ODE velocity ``(x, t) -> (n, d)`` (e.g. ``ProbabilityFlowODE(process,
        score).drift``), evaluated without gradients.  s : a fixed target time, or ``None``.
    """
    model = _check_map("model", model)
    if not callable(velocity):
        raise TypeError(f"velocity must be a callable (x, t) -> (n, d); got {type(velocity).__name__}")
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "eulerian_distillation_loss")
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    fixed = None if s is None else check_scalar_time(s, "s")
    x0 = check_finite_tensor("x0", as_tensor("x0", x0))
    gen = generator(rng, x0.device)
    t = uniform_times(x0.shape[0], t_min, t_max, gen, x0)
    u = uniform_times(x0.shape[0], 0.0, 1.0, gen, x0)
    target = torch.full_like(t, fixed) if fixed is not None else t_min + u * (t - t_min)
    eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype, device=gen.device).to(x0.device)
    x_t = _col(process.alpha(t), x0) * x0 + _col(process.sigma(t), x0) * eps
    with torch.no_grad():
        v = check_finite_tensor("the teacher's velocity", check_model_output("velocity", velocity(x_t, t), x_t))
    r = total_derivative(model, x_t, t, target, v, name="model", create_graph=True)
    return _mean_sq(r)


def boot_loss(
    student: Callable,
    eps: Any,
    process: AbstractProcess,
    teacher: Teacher,
    rng: Any = None,
    *,
    steps: int = 18,
    t_min: float = 2e-3,
    t_max: float = 1.0,
    grid: str = "edm",
    boundary_weight: float = 1.0,
) -> torch.Tensor:
    r"""BOOT: data-free distillation by bootstrapping in signal space (Gu et al. 2023, eqs. 7–9).

    The student ``g_theta(eps, t)`` predicts the *signal* ``y_t = (x_t - sigma_t eps) / alpha_t`` of
    the teacher's ODE trajectory started from ``x_{t_max} = eps``; its output at ``t_min`` is the
    one-step sample ``alpha g + sigma eps``.  No data: the batch is noise.  With ``x_t = alpha_t
    g(eps, t) + sigma_t eps`` and the teacher's step ``x_s = teacher(x_t, t, s)`` between
    consecutive grid times ``s = t_n < t = t_{n+1}``,

    .. math:: L = E_{n, \varepsilon}\, \big\| g_\theta(\varepsilon, s) - \mathrm{sg}\big((x_s - \sigma_s
              \varepsilon) / \alpha_s\big) \big\|^2 + w_b\, E_\varepsilon \big\| g_\theta(\varepsilon, t_{max})
              - (1 - \sigma_{t_{max}}) \varepsilon / \alpha_{t_{max}} \big\|^2,

    the second term the boundary condition ``x_{t_max} = eps``.  A DDIM teacher step is the
    paper's Signal-ODE step ``y_s = r y_t + (1 - r) x0_hat(x_t, t)``, ``r = kappa_s / kappa_t``;
    with the exact step (:func:`diffcore.flowmaps.exact_flow_map`) the exact signal
    ``(Phi(eps, t_max, t) - sigma_t eps) / alpha_t`` is the zero of ``L``.

    Parameters
    ----------
    student : ``(eps, t) -> (n, d)`` with per-point float64 ``t``.  eps : the noise batch ``(n, d)``.
    teacher : ``(x, t, s) -> x_s`` for float times (:func:`solver_teacher`).  steps, t_min, t_max,
    grid : the bootstrapping grid.  boundary_weight : ``w_b >= 0``.
    """
    student, teacher = _check_map("student", student, "(eps, t)"), _check_map("teacher", teacher)
    w_b = check_real("boundary_weight", boundary_weight)
    if w_b < 0:
        raise ValueError(f"boundary_weight must be >= 0; got {w_b}")
    eps, _, idx, ts, ts_t = _consistency_pairs(eps, process, rng, steps, t_min, t_max, grid, "boot_loss", "eps")
    t_next, t_prev = ts_t[idx + 1], ts_t[idx]
    with torch.no_grad():
        y_next = check_model_output("student", student(eps, t_next), eps)
        x_next = _col(process.alpha(t_next), eps) * y_next + _col(process.sigma(t_next), eps) * eps
        x_prev = torch.empty_like(x_next)
        for n in torch.unique(idx).tolist():
            rows = idx == n
            x_prev[rows] = check_model_output("teacher", teacher(x_next[rows], ts[n + 1], ts[n]), x_next[rows])
        check_finite_tensor("the teacher's step", x_prev)
        goal = (x_prev - _col(process.sigma(t_prev), eps) * eps) / _col(process.alpha(t_prev), eps)
    pred = check_model_output("student", student(eps, t_prev), eps)
    loss = _mean_sq(pred - goal)
    if w_b > 0:
        top = torch.full_like(t_next, float(ts[-1]))
        a_T, s_T = process.alpha(top[:1]).to(eps.dtype), process.sigma(top[:1]).to(eps.dtype)
        edge = check_model_output("student", student(eps, top), eps) - (1 - s_T) * eps / a_T
        loss = loss + w_b * _mean_sq(edge)
    return loss


def shortcut_loss(
    model: Callable,
    batch: Any,
    interpolant: AbstractInterpolant,
    rng: Any = None,
    *,
    rho0: Any = None,
    target: Callable | None = None,
    consistency_fraction: float = 0.25,
    doublings: int = 7,
) -> torch.Tensor:
    r"""Shortcut models' loss (Frans et al. 2025, eq. 5): flow matching at step 0, self-consistency at steps ``d > 0``.

    The network ``u(x, t, d)`` is the average velocity over the step ``d``, ``Phi(x, t, t + d) = x +
    d u(x, t, d)`` (``to_flow_map("shortcut", u)``).  A fraction ``1 - consistency_fraction`` of the
    batch regresses ``u(x_t, t, 0)`` on the interpolant's conditional velocity ``v_c = dx_t/dt``;
    the rest enforces the semigroup law on one doubling, with a stopped gradient:

    .. math:: u_\theta(x_t, t, 2d) \approx \mathrm{sg}\big(\tfrac12 [u(x_t, t, d) + u(x', t + d, d)]\big),
              \qquad x' = x_t + d\, u(x_t, t, d),

    ``d = 2^{-k}``, ``k`` uniform on ``1..doublings``, ``t`` uniform on ``[0, 1 - 2d]``.  The exact
    average velocity makes the second term vanish and the first stationary.

    Parameters
    ----------
    model : ``(x, t, d) -> (n, d)``.  batch, interpolant, rho0 : as :func:`flow_matching_loss` (data at ``t = 1``).
    target : the model of the self-consistency target (default ``model``).
    consistency_fraction : in ``[0, 1]``.  doublings : the smallest step is ``2^{-doublings}``.
    """
    model = _check_map("model", model, "(x, t, d)")
    target = model if target is None else _check_map("target", target, "(x, t, d)")
    fraction = check_real("consistency_fraction", consistency_fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"consistency_fraction must lie in [0, 1]; got {consistency_fraction}")
    doublings = check_steps(doublings, "doublings")
    gen = generator(rng)
    x0, x1, z, t = _draws(batch, interpolant, gen, rho0, None, 0.0, 1.0)
    n = x1.shape[0]
    k = torch.randint(1, doublings + 1, (n,), generator=gen).to(x1.device)
    use = (torch.rand(n, generator=gen, dtype=torch.float64) < fraction).to(x1.device)
    d = torch.where(use, 2.0 ** (-k.to(torch.float64)), torch.zeros_like(t))
    t = t * (1 - 2 * d)  # t + 2d <= 1
    x_t, d_i, d_gamma, _ = _path(interpolant, x0, x1, z, t)
    col = d.to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
    with torch.no_grad():
        u1 = check_model_output("target", target(x_t, t, d), x_t)
        u2 = check_model_output("target", target(x_t + col * u1, t + d, d), x_t)
        goal = torch.where(use.reshape(-1, *([1] * (x_t.ndim - 1))), 0.5 * (u1 + u2), d_i + d_gamma * z)
    pred = check_model_output("model", model(x_t, t, 2 * d), x_t)
    return _mean_sq(pred - goal)
