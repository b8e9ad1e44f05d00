r"""iPNDM: Adams–Bashforth on the noise prediction in the variable ``rho = sigma / alpha``.

Zhang and Chen (2023), "Fast Sampling of Diffusion Models with Exponential Integrator", ICLR
2023, sec. 4 and app. (iPNDM: the linear multistep part of PNDM, Liu et al. 2022, moved into the
exponential-integrator variables, with a lower-order warm start).  With ``y = x / alpha`` and
``rho = sigma / alpha = e^{-lambda}`` the probability-flow ODE of an affine process is

.. math:: \frac{dy}{d\rho} = \hat\varepsilon(x, t), \qquad x = \alpha y,

(the DDIM form: ``g^2 / (2 sigma alpha) = d rho / dt``, Song et al. 2021, eq. 14).  Step ``i``
(1-based) from ``rho_{i-1}`` to ``rho_i`` integrates the interpolant of the ``k = min(i, 4)``
latest noise predictions ``eps_{i-1}, eps_{i-2}, ...`` exactly:

.. math:: x_i = \frac{\alpha_i}{\alpha_{i-1}} x_{i-1}
          + \Big(\sigma_i - \frac{\alpha_i}{\alpha_{i-1}} \sigma_{i-1}\Big) \sum_{j=0}^{k-1} b_j\, \varepsilon_{i-1-j}

(``sigma_i - alpha_i sigma_{i-1} / alpha_{i-1} = alpha_i (rho_i - rho_{i-1})``; with ``k = 1``
this is DDIM exactly).  ``ipndm`` uses the equal-step Adams–Bashforth weights ``b``: ``(1)``,
``(3, -1)/2``, ``(23, -16, 5)/12``, ``(55, -59, 37, -9)/24``, whatever the grid.

Orders (pathwise error against DOP853, t from 1 to 1e-3, the problems of the order test in
``tests/test_samplers.py``).  On a grid that is not uniform in ``rho`` the equal-step weights of
``ipndm`` differ from the exact ones by ``O(Delta s)`` where ``rho = g(s)``; the
``O(Delta s^2)`` term of the local error cancels for every weight set that sums to 1 with first
moment ``-1/2``, but the ``O(Delta s^3)`` term ``~ g'' f'`` does not, so ``ipndm`` is second
order on every smooth grid that is not uniform in ``rho`` (measured: 2.00 on P2-vp on the edm and
log-SNR grids).  The warm start caps it at order 2 as well: step 1 (DDIM) has local error
``O(h^2)`` times ``d^2 y / d rho^2 ~ C / rho^3`` at the noisy end (``C`` the data covariance).

Not shipped, measured: the variable-step Adams–Bashforth weights in ``rho`` (Hairer, Nørsett and
Wanner, *Solving ODEs I*, sec. III.5) remove the first cap but not the second.  Under VP
(``rho(1) ~ 150``) that version shows order 4 (slopes 3.78, 3.88 on 100–800 steps, P1-vp, P2-vp),
under VE (``rho(1) = 10``) the warm start makes it 2.0 asymptotically (800–6400 steps; 3.24 on
100–800), so no single order can be declared; and at 5–20 steps it is worse than ``ipndm`` (RMS
error at 10 steps 0.16 against 0.060 on P1, 0.74 against 0.24 on P2, log-SNR grid): polynomial
extrapolation in ``rho``, which changes by a factor ``e^h ~ 7`` per step at 5 steps, is poor.
"""

from __future__ import annotations

from typing import Any, ClassVar

from diffcore.samplers._exponential import ExponentialSolver

__all__ = ["IPNDM"]

#: the equal-step Adams–Bashforth weights of orders 1–4, newest value first
AB_WEIGHTS: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    2: (3.0 / 2.0, -1.0 / 2.0),
    3: (23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0),
    4: (55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0),
}


class IPNDM(ExponentialSolver):
    r"""iPNDM (Zhang and Chen 2023, sec. 4): equal-step Adams–Bashforth of order ``min(i, 4)`` in ``rho``.

    One evaluation per step; ``x`` of shape ``(n, ...)``.  The update is in the module
    docstring, with the fixed weights ``(55, -59, 37, -9)/24`` from step 4 on (steps 1–3: DDIM,
    AB2, AB3).  These weights assume equal steps in ``rho``, which no grid of :data:`~diffcore.GRIDS`
    has; the mismatch leaves a local error ``O(h^3)``, so the global order is **2**, declared on
    the ``"edm"`` grid (the polynomial noise-level schedule of Karras et al. 2022, eq. 5, on which
    the iPNDM papers run it; Zhang and Chen 2023, app.; Zhou et al. 2024, AMED).  Measured
    pathwise slopes on the edm grid (P1-vp, P2-vp; 32–256 | 100–800 steps): 3.01, 2.05 | 1.86, 2.01
    (on P1 a fourth-order term dominates up to ~128 steps; local slopes 2.9, 4.2, 1.5, 1.7, 1.9 from
    32 to 800 steps); P1-ve 1.60 on 100–800, 2.00 on 800–6400.  Log-SNR grid: 2.64, 2.03 | 1.73,
    2.00; uniform: 2.14, 1.92 | 1.72, 1.67.  At 5–20 steps its errors are smallest on the log-SNR
    grid (P1, P2 at 10 steps: 0.060, 0.24 RMS against 0.059, 0.30 on the edm grid).
    """

    name: ClassVar[str] = "ipndm"
    order: ClassVar[int] = 2
    grid: ClassVar[str] = "edm"
    #: the highest Adams–Bashforth order used (the paper's iPNDM: 4)
    max_order: ClassVar[int] = 4

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        p = dynamics.process
        a0, s0, _ = self._coefficients(p, t0)
        a1, s1, _ = self._coefficients(p, t1)
        eps0 = self._eps(dynamics, x, t0, s0)
        history = (eps0, *(state or ()))[: self.max_order]  # the latest noise predictions, newest first
        weights = AB_WEIGHTS[len(history)]
        ratio = a1 / a0
        drift = weights[0] * eps0
        for b, e in zip(weights[1:], history[1:]):
            drift = drift + b * e
        return ratio * x + (s1 - ratio * s0) * drift, history

