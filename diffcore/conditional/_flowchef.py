r"""FlowChef: gradient-free steering of a rectified-flow (or probability-flow) velocity field (Patel et al. 2024)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from diffcore._array import as_array, resolve_rng
from diffcore._validation import Model, check_array, check_finite, check_positive, check_steps
from diffcore.conditional._measurements import AbstractMeasurement, check_observation
from diffcore.interpolants import AbstractInterpolant, process_from_interpolant, reverse_time
from diffcore.processes import AbstractProcess
from diffcore.samplers import Solution, time_grid

__all__ = ["flowchef"]

Array = Any
_KINDS = ("score", "velocity")


def _clock(process: Any, model: Callable, prediction: str) -> tuple[AbstractProcess, Callable, str]:
    """The diffusion-clock process and model: an interpolant's velocity is time-reversed, ``-b(x, 1 - t)``."""
    if isinstance(process, AbstractInterpolant):
        if prediction != "velocity":
            raise ValueError("with an interpolant, model must be its velocity: pass prediction='velocity'")
        return process_from_interpolant(process), reverse_time(model, "velocity"), prediction
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess or an AbstractInterpolant; got {type(process).__name__}")
    if prediction not in _KINDS:
        raise ValueError(f"prediction must be one of {_KINDS}; got {prediction!r}")
    return process, model, prediction


def _velocity_and_x0(process: AbstractProcess, model: Callable, kind: str, x: Array, t: float) -> tuple[Array, Array]:
    """One model call: the ODE velocity ``v = dx/dt`` and the one-step data prediction ``x0hat``."""
    a, s, da, ds = process.alpha(t), process.sigma(t), process.d_alpha(t), process.d_sigma(t)
    out = model(x, t)
    if kind == "score":  # Tweedie, then v = alpha' x0hat + sigma' epshat (the probability-flow drift)
        x0 = (x + s**2 * out) / a
        return da * x0 + ds * (-s * out), x0
    return out, (ds * x - s * out) / (a * ds - s * da)  # solve x = a x0 + s eps, v = a' x0 + s' eps


def flowchef(
    process: Any,
    score: Callable[[Array, Any], Array],
    measurement: AbstractMeasurement,
    y: Array,
    x_init: Array,
    *,
    steps: int | None = None,
    nfe: int | None = None,
    rng: Any = None,
    prediction: str = "score",
    step_size: float | Callable[[float], float] | None = None,
    inner_steps: int = 1,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> Solution:
    r"""FlowChef: steer the Euler integration of a flow ODE with the measurement gradient at ``x0hat``.

    At each Euler step ``t_k -> t_{k+1}`` (decreasing, diffusion clock: data at ``t = 0``) one
    model call gives the velocity ``v_k`` and the one-step prediction of the data end
    ``x0hat = x - t v`` (rectified flow; in general ``x0hat = (sigma' x - sigma v) /
    (alpha sigma' - sigma alpha')``), then ``inner_steps`` times

    .. math:: \delta = s(t_k)\, \nabla_{x}\log p(y \mid x)\big|_{x = \hat x_0},\qquad
              x \leftarrow x + \delta,\qquad \hat x_0 \leftarrow \hat x_0 + c_k \delta,

    with ``c_k = d x0hat / d x`` at fixed ``v`` (1 for rectified flow): "gradient skipping",
    the Jacobian of the model and of the solver is replaced by the identity, so there is no
    backpropagation through the model (Patel et al. 2024, sec. 3, and the authors' inverse-problem
    script).  Then the Euler step ``x <- x + (t_{k+1} - t_k) v_k`` reuses the velocity computed
    before steering (one model call per step).  As in the authors' code there is no steering on
    the last step.

    Parameters
    ----------
    process : an :class:`~diffcore.AbstractProcess` (``score`` is then a score, or with
        ``prediction="velocity"`` the diffusion-clock velocity ``dx/dt``; the rectified flow is
        ``AffineProcess(lambda t: 1 - t, lambda t: t)`` with ``v = eps - x_0``), or a one-sided
        :class:`~diffcore.AbstractInterpolant` (``gamma = 0``, Gaussian at ``t = 0``, data at
        ``t = 1``: the flow-matching clock) with ``prediction="velocity"`` and ``score`` its velocity
        ``b(x, t)`` (e.g. :func:`~diffcore.interpolant_fields` ``(...).velocity``); it is converted to
        the diffusion clock by :func:`~diffcore.process_from_interpolant` and :func:`~diffcore.reverse_time`.
    score : the model callable ``(x, t) -> (n, d)``: a score, or a velocity (see ``process``).
    measurement, y : any :class:`AbstractMeasurement` and its observation ``(m,)``: only
        ``measurement.likelihood_score`` is used, so nonlinear measurements are fine.
    x_init : ``(n, d)`` draws of the noise end (``process.prior_sample`` or ``N(0, I)`` for rectified flow).
    steps, nfe : exactly one; ``nfe == steps`` (one model call per Euler step).
    rng : unused (FlowChef is deterministic), accepted for the common signature.
    step_size : ``s > 0`` or a callable ``t -> s``; ``None``: ``noise_std^2`` (for a linear-Gaussian
        measurement with orthonormal rows of ``H`` one step puts ``H x0hat`` exactly on ``y``: the
        "hard" steering of the authors' inpainting runs, whose ``s = 500`` on a mean-squared loss is
        the same order).  Stability of the quadratic case needs ``s ||H||^2 / noise_std^2 < 2``.
    inner_steps : steering iterations per Euler step (1 for pixel-space models in the paper).
    t_min, t_max : the uniform grid ``t_max -> t_min`` (``t_min = 0`` is allowed when ``alpha(0) > 0``).

    Returns
    -------
    :class:`~diffcore.Solution` with ``x (n, d)``, ``ts``, ``nfe`` and ``solver=None``.  The samples are
    *not* the posterior: the steering is deterministic and carries no weights (book chapter "Inverse
    problems"; measured in ``tests/test_inverse_misc.py``).

    References
    ----------
    M. Patel, S. Wen, D. N. Metaxas, Y. Yang, "Steering Rectified Flow Models in the Vector Field for
    Controlled Image Generation", arXiv:2412.00100 (2024); ICCV 2025 ("FlowChef").
    """
    proc, model, kind = _clock(process, Model.of(score, "score"), prediction)
    resolve_rng(rng)  # validated for the common signature; FlowChef draws nothing
    if not isinstance(measurement, AbstractMeasurement):
        raise TypeError(f"measurement must be an AbstractMeasurement; got {type(measurement).__name__}")
    x = check_finite("x_init", check_array("x_init", x_init, ndim=2, dim=measurement.dim))
    y = as_array(check_observation(measurement, y), x)  # the observation is a parameter: x_init's library
    if (steps is None) == (nfe is None):
        raise ValueError(f"give exactly one of steps and nfe; got steps={steps!r}, nfe={nfe!r}")
    n_steps = check_steps(steps if nfe is None else nfe, "steps" if nfe is None else "nfe")
    inner_steps = check_steps(inner_steps, "inner_steps")
    if step_size is None:
        step_size = measurement.noise_std**2
    if callable(step_size):
        schedule = step_size
    else:
        constant = check_positive("step_size", step_size)

        def schedule(t: float) -> float:
            return constant

    ts = time_grid(proc, n_steps, t_min=t_min, t_max=t_max, kind="uniform")
    if kind == "score" and not proc.alpha(float(ts[0])) > 0:
        raise ValueError(f"a score model needs alpha(t_max) > 0 (Tweedie divides by it); got t_max = {t_max}")
    for k in range(n_steps):
        t, t_next = float(ts[k]), float(ts[k + 1])
        v, x0hat = _velocity_and_x0(proc, model, kind, x, t)
        if k < n_steps - 1:
            a, s, da, ds = proc.alpha(t), proc.sigma(t), proc.d_alpha(t), proc.d_sigma(t)
            gain = ds / (a * ds - s * da)  # d x0hat / d x at fixed v: 1 for rectified flow
            for _ in range(inner_steps):
                delta = schedule(t) * measurement.likelihood_score(x0hat, y)
                x, x0hat = x + delta, x0hat + gain * delta
        x = x + (t_next - t) * v
    check_finite("the FlowChef state", x)
    return Solution(x=x, ts=np.asarray(ts, dtype=np.float64), nfe=n_steps, solver=None)
