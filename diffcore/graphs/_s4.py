r"""The S4 solver of Jo, Lee and Hwang (2022): Langevin correction, then a symmetric splitting step.

The reverse system ``dG = [f G - g^2 s(G, t)] dt + g dW`` (``dt < 0``) is split into its linear
part ``F: dG = f G dt + g dW`` — solved exactly, it is Gaussian — and its score part
``S: dG = -g^2 s dt``, and a step is ``F(h/2) o S(h) o F(h/2)`` after one Langevin corrector move
(Jo, Lee and Hwang 2022, sec. 3.3 and app. B, "Symmetric Splitting for the System of SDEs").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from diffcore._array import namespace
from diffcore._validation import check_array, check_nonnegative, check_scalar_time
from diffcore.graphs._system import GraphReverseSDE
from diffcore.processes import AbstractLinearSDE
from diffcore.samplers import AbstractSolver, Requirements

__all__ = ["S4", "linear_half_step"]

Array = Any


def linear_half_step(process: Any, x: Array, t0: float, t1: float, noise: Array) -> Array:
    r"""Exact step of the linear part ``dx = f(t) x dt + g(t) d\bar W`` of a reverse SDE, from ``t0`` down to ``t1``.

    With the forward transition ``x_{t0} = a x_{t1} + b z`` (``a = alpha(t0)/alpha(t1)``,
    ``b^2 = sigma(t0)^2 - a^2 sigma(t1)^2``), the linear SDE run backwards in time has the
    Gaussian transition

    .. math:: x_{t_1} \mid x_{t_0} \sim N\big(x_{t_0} / a,\ (b / a)^2 I\big):

    the mean solves ``dm/dt = f m`` and the variance ``dV/dt = 2 f V - g^2`` from ``V(t0) = 0``
    (integrate ``exp(-2 int_{t1}^u f) g(u)^2`` over ``[t1, t0]``).  Returned: ``x / a + (b / a) noise``,
    shape of ``x``.  ``process`` is an :class:`~diffcore.processes.AbstractProcess` (scalar
    coefficients) or the packed graph system ``GraphReverseSDE.process`` (coordinate-wise).

    The reference code of Jo et al. uses the same mean with std ``b`` instead of ``b / a`` for
    the VP process (equal for VE, where ``a = 1``); the difference is ``O(h^2)`` per step.

    Example
    -------
    >>> from diffcore import VESDE
    >>> round(float(linear_half_step(VESDE(0.01, 1.0), 2.0, 1.0, 0.0, 1.0)), 6)  # x + sigma(1) z
    2.99995
    """
    t0, t1 = check_scalar_time(t0, "t0"), check_scalar_time(t1, "t1")
    if not t1 < t0:
        raise ValueError(f"the reverse half-step runs backwards in time: t1 < t0; got t0={t0}, t1={t1}")
    if not isinstance(x, (int, float)):  # a number, or an array of any shape (e.g. a packed state)
        x = check_array("x", x, min_ndim=0, finite=False)
    tr = process.transition(t1, t0)
    return x / tr.scale + (tr.std / tr.scale) * noise


@dataclass(frozen=True)
class S4(AbstractSolver):
    r"""The S4 solver (Jo, Lee and Hwang 2022, alg. 2 in app. B) on the packed graph system.

    One step from ``t_0`` to ``t_1 = t_0 - h`` with one score evaluation ``S = s(G, t_0)``:

    1. *Correction* (Langevin, per component ``c`` in {X, A}): with ``z ~ N(0, I)`` on the
       present coordinates and ``e_c = 2 (snr ||z_c|| / ||S_c||)^2`` (norms over the component's
       coordinates, averaged over the batch, as in the reference code),
       ``G' = G + e S + sqrt(2 e) scale_eps z``.  Skipped when ``snr = 0``.
    2. *Half-step* of the linear part from ``t_0`` to ``t_0 - h/2``, exact (:func:`linear_half_step`).
    3. *Score step* ``G''' = G'' + h g(t_0)^2 S`` (the score part ``dG = -g^2 s dt`` over ``dt = -h``,
       with the score computed once, at the start of the step).
    4. *Half-step* of the linear part from ``t_0 - h/2`` to ``t_1``, exact.

    Reading of the paper: the score of step 3 is the one computed before the correction, at
    ``(G, t_0)`` — the algorithm evaluates the score networks once per step and the reference
    code does the same; the VP step-size factor ``alpha_i = 1 - beta_i`` of the corrector's
    discrete schedule (``>= 0.98``) is left out, as in :class:`~diffcore.PredictorCorrector`.
    The half-steps are the exact Gaussian transition (see :func:`linear_half_step`).

    ``order = 1`` is the weak order of the splitting (``snr = 0``); for ``snr > 0`` the
    corrector adds an ``O(snr^2)`` bias that does not vanish as the steps shrink.
    """

    snr: float = 0.1
    scale_eps: float = 1.0

    name: ClassVar[str] = "s4"
    order: ClassVar[int] = 1
    requires: ClassVar[Requirements] = Requirements(
        dynamics=GraphReverseSDE, process=AbstractLinearSDE, shift="forbidden", noise="reverse"
    )

    def __post_init__(self) -> None:
        check_nonnegative("snr", self.snr)
        check_nonnegative("scale_eps", self.scale_eps)

    @property
    def affine_step(self) -> bool:  # type: ignore[override]
        """Only without a corrector (``snr = 0``): its step size depends on norms over the whole batch."""
        return self.snr == 0

    @property
    def noise_draws(self) -> int:
        return 3

    @property
    def nfe_per_step(self) -> int:
        return 1

    def _correct(self, dynamics, x, grad, z):
        xp = namespace(x)
        eps = 0.0
        for block in dynamics.blocks:
            z_norm = xp.mean(xp.sqrt(xp.sum((z * block) ** 2, axis=1)))
            grad_norm = xp.mean(xp.sqrt(xp.sum((grad * block) ** 2, axis=1)))
            # a block without present coordinates (single-node graphs have no pairs) takes no step
            positive = grad_norm > 0
            ratio = self.snr * z_norm / xp.where(positive, grad_norm, xp.ones_like(grad_norm))
            eps = eps + block * xp.where(positive, 2.0 * ratio**2, xp.zeros_like(ratio))
        return x + eps * grad + self.scale_eps * xp.sqrt(2.0 * eps) * z

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        h = t0 - t1
        t_mid = t0 - 0.5 * h
        grad = dynamics.score(x, t0)
        if self.snr > 0:
            x = self._correct(dynamics, x, grad, dynamics.mask_noise(noise[0]))
        p = dynamics.process
        x = linear_half_step(p, x, t0, t_mid, noise[1])
        x = x + h * p.diffusion_squared(t0) * grad
        return linear_half_step(p, x, t_mid, t1, noise[2]), state
