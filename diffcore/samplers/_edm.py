r"""The EDM samplers of Karras et al. (2022): Heun in noise-level time, and its stochastic "churn" variant.

Any affine process ``x_t = alpha_t x_0 + sigma_t eps`` is the VE process of Karras et al. in
disguise: with the scaled state ``y = x / alpha`` and the noise level ``n = sigma / alpha``
(``= e^{-lambda/2}``, ``lambda`` the log-SNR), ``y = x_0 + n eps``, and the probability-flow
ODE becomes (Karras et al. 2022, eq. 4 with ``s = 1``; Song et al. 2021, eq. 13)

.. math:: \frac{dy}{dn} = -n \nabla_y \log p(y; n) = -\sigma_t \nabla_x \log p_t(x)
          = \hat\varepsilon(x, t),

because ``p_y(y) = alpha^d p_t(alpha y)`` gives ``grad_y log p_y = alpha grad_x log p_t``.  The
EDM steps below are Heun's method for this ODE in the variables ``(n, y)``, mapped back by
``x = alpha y``; their Euler half-step is exactly DDIM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from diffcore._validation import check_nonnegative, check_positive
from diffcore.dynamics import AbstractReverseDynamics
from diffcore.processes import AbstractProcess
from diffcore.samplers._base import SCALAR_ODE, AbstractSolver, Requirements

__all__ = ["EDMHeun", "EDMStochastic"]


def _levels(process: Any, t: float, name: str) -> tuple[float, float]:
    """``(alpha_t, n_t = sigma_t / alpha_t)``; raise where ``alpha_t = 0``."""
    a = process.alpha(t)
    if a == 0:
        raise ValueError(f"{name} divides by alpha({t}) = 0; start below the end of the schedule")
    return a, process.sigma(t) / a


def _heun(dynamics: Any, x: Any, t0: float, t1: float, a0: float, n0: float, name: str) -> Any:
    """One Heun step in ``(n, y)`` from ``(t0, x)`` to ``t1``; Euler when ``sigma(t1) = 0``."""
    a1, n1 = _levels(dynamics.process, t1, name)
    sigma1 = dynamics.process.sigma(t1)
    y0 = x / a0
    d0 = -(n0 * a0) * dynamics.score(x, t0)  # eps_hat = -sigma s(x, t)
    y_euler = y0 + (n1 - n0) * d0
    if sigma1 == 0:  # alg. 1, line 9: the second evaluation at n = 0 would divide 0 by 0
        return a1 * y_euler
    d1 = -sigma1 * dynamics.score(a1 * y_euler, t1)
    return a1 * (y0 + (0.5 * (n1 - n0)) * (d0 + d1))


class EDMHeun(AbstractSolver):
    r"""The deterministic EDM sampler (Karras et al. 2022, alg. 1) on any affine process.

    With ``y = x / alpha``, ``n = sigma / alpha`` and ``d(x, t) = -sigma_t s(x, t)``:

    .. math:: y' = y_0 + (n_1 - n_0)\, d(x_0, t_0), \qquad
              x_1 = \alpha_1\Big(y_0 + \frac{n_1 - n_0}{2}\big(d(x_0, t_0) + d(\alpha_1 y', t_1)\big)\Big).

    Heun's method (explicit trapezoid) for ``dy/dn = d``; global order 2 on any grid that is
    smooth in ``n``: the EDM grid the paper pairs it with (eq. 5, ``rho = 7``: pass
    ``grid="edm"`` to :func:`~diffcore.sample`), the uniform grid (measured order 2.0 on the
    test problems with either) or the log-SNR grid.  When ``sigma(t_1) = 0`` (sampling all the
    way to ``t = 0``) the step is the Euler step alone, as in line 9 of alg. 1, and costs one
    evaluation instead of two; the driver's ``nfe`` counts that honestly.  ``sample`` stops at
    ``t_min > 0``, where every step is a Heun step.
    """

    name: ClassVar[str] = "edm_heun"
    order: ClassVar[int] = 2
    requires: ClassVar[Requirements] = SCALAR_ODE
    grid: ClassVar[str] = "edm"

    @property
    def nfe_per_step(self) -> int:
        return 2


    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        a0, n0 = _levels(dynamics.process, t0, self.name)
        return _heun(dynamics, x, t0, t1, a0, n0, self.name), state


@dataclass(frozen=True)
class EDMStochastic(AbstractSolver):
    r"""The stochastic EDM sampler (Karras et al. 2022, alg. 2) on any affine process.

    Each step first "churns": it raises the noise level of the state from ``n_0`` to
    ``n_hat = (1 + gamma) n_0`` by adding fresh noise, then takes the Heun step of
    :class:`EDMHeun` from ``n_hat`` down to ``n_1``:

    .. math:: \hat y = y_0 + S_\mathrm{noise}\sqrt{\hat n^2 - n_0^2}\; z, \qquad z \sim N(0, I),

    with ``gamma = min(churn |t_1 - t_0|, sqrt(2) - 1)`` when ``s_tmin <= n_0 <= s_tmax`` and
    ``gamma = 0`` otherwise.  Karras et al. set ``gamma = S_churn / N`` for ``N`` steps on
    their grid; a solver step does not know ``N``, so here ``churn`` is a rate per unit of
    ``t``: on the uniform grid over ``[t_min, 1]`` it is ``S_churn / N`` up to the factor
    ``1 - t_min``, and for every grid the total churn stays bounded as the steps are refined,
    so the sampler converges.  ``n_hat`` is capped at ``n(1)`` (the process ends at ``t = 1``),
    so the first step from ``t = 1`` does not churn; the time of ``n_hat`` is
    ``log_snr_inverse(-2 log n_hat)``.

    Parameters
    ----------
    churn : ``S_churn`` as a rate per unit time, ``>= 0``; ``0`` gives :class:`EDMHeun` exactly.
    s_tmin, s_tmax : the band of noise levels ``n = sigma / alpha`` in which to churn.
    s_noise : ``S_noise``, the factor on the added noise; ``1`` keeps the marginals exact.

    ``order`` is the weak order 2 for ``s_noise = 1``: the added noise carries the law of ``y``
    exactly from level ``n_0`` to ``n_hat`` (for ``y = x_0 + n eps`` adding independent noise
    of variance ``n_hat^2 - n_0^2`` gives ``y = x_0 + n_hat eps'``), and the Heun map from
    ``n_hat`` to ``n_1`` (a step of size ``O(h)``) is a second-order approximation of the flow,
    so each step errs in law by ``O(h^3)``.  With ``s_noise != 1`` (the paper uses up to 1.007
    to offset imperfect denoisers) each step adds a bias of order ``gamma (s_noise^2 - 1)``,
    which does not vanish as the steps are refined.  Needs a decreasing grid.  The step keeps no
    state (so :func:`~diffcore.testing.propagate_gaussian_law` applies); on a grid that ends at
    ``sigma = 0`` its last step is Euler's, one evaluation, and ``Solution.nfe`` (the driver's
    count of the score's calls) says so.
    """

    churn: float = 10.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    name: ClassVar[str] = "edm_stochastic"
    order: ClassVar[int] = 2
    #: any reverse dynamics: the step uses only the process and the score, and adds its own noise
    requires: ClassVar[Requirements] = Requirements(
        dynamics=AbstractReverseDynamics, process=AbstractProcess, shift="forbidden", noise="any"
    )
    grid: ClassVar[str] = "edm"

    def __post_init__(self) -> None:
        check_nonnegative("churn", self.churn)
        check_nonnegative("s_tmin", self.s_tmin)
        if not isinstance(self.s_tmax, (int, float)) or isinstance(self.s_tmax, bool) or not self.s_tmax >= self.s_tmin:
            raise ValueError(f"s_tmax must be a number >= s_tmin = {self.s_tmin}; got {self.s_tmax!r}")
        check_positive("s_noise", self.s_noise)

    @property
    def nfe_per_step(self) -> int:
        return 2

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        if not t1 < t0:
            raise ValueError(f"{self.name} samples from noise to data: the grid must decrease; got {t0} -> {t1}")
        p = dynamics.process
        a0, n0 = _levels(p, t0, self.name)
        gamma = min(self.churn * (t0 - t1), math.sqrt(2.0) - 1.0) if self.s_tmin <= n0 <= self.s_tmax else 0.0
        n_top = math.exp(-0.5 * p.log_snr(1.0))
        n_hat = min(n0 * (1.0 + gamma), n_top)
        if n_hat > n0:
            t_hat = 1.0 if n_hat == n_top else float(p.log_snr_inverse(-2.0 * math.log(n_hat)))
            a_hat = p.alpha(t_hat)
            x = a_hat * (x / a0 + (self.s_noise * math.sqrt(n_hat**2 - n0**2)) * noise[0])
            t0, a0, n0 = t_hat, a_hat, p.sigma(t_hat) / a_hat
        return _heun(dynamics, x, t0, t1, a0, n0, self.name), None
