r"""The Levenberg–Marquardt–Langevin corrector: Langevin preconditioned by the damped Hessian.

Wang, Yin, Qian et al. (2025), "Unleashing High-Quality Image Generation in Diffusion Sampling
Using Second-Order Levenberg–Marquardt–Langevin" (ICCV 2025), sec. 3.  A Langevin move at a fixed
noise level ``t`` with the preconditioner ``P = (H + lambda I)^{-1}``, ``H = -nabla^2 log p_t``:

.. math::
    x' = x + \epsilon\, P\, \nabla \log p_t(x) + \sqrt{2 \epsilon}\, P^{1/2} z, \qquad z \sim N(0, I).

``lambda > 0`` is the Levenberg–Marquardt damping: ``lambda -> 0`` is Newton–Langevin
(``P = H^{-1}``, steps in the target's own metric), ``lambda -> infinity`` plain Langevin with step
``epsilon / lambda``.  Where ``H`` has negative eigenvalues (between the modes of a mixture) they
are clipped at ``0`` so ``P`` stays positive definite with ``P <= I / lambda``.

``H`` comes from (a) a callable ``hessian(x, t)`` of ``nabla^2 log p_t`` (the laboratory:
:func:`exact_log_density_hessian`), or (b) the paper's training-free rank-one estimate from the
model output itself, ``H ~ s s^T`` with ``s = nabla log p_t(x)`` (the Fisher identity
``E[-nabla^2 log p] = E[s s^T]`` applied pointwise; the released scheduler does this with the
noise prediction ``eps = -sigma s``), which Sherman–Morrison inverts in ``O(d)``:

.. math::
    P g = \frac{1}{\lambda}\Big(g - \frac{s\, (s \cdot g)}{\lambda + |s|^2}\Big), \qquad
    P^{1/2} z = \frac{1}{\sqrt\lambda}\big(z - a\, s\, (s \cdot z)\big), \quad
    a = \frac{1 - \sqrt{\lambda / (\lambda + |s|^2)}}{|s|^2}.

Stationary law on a Gaussian target ``N(m, S)`` with the exact Hessian (``P`` constant, the move
affine): the covariance ``C`` solves ``C = M C M^T + 2 epsilon P`` with ``M = I - epsilon P S^{-1}``;
``P`` and ``S`` commute, so ``C = S (I - (epsilon / 2) Q)^{-1}`` with ``Q = (I + lambda S)^{-1}``,
which tends to ``S`` as ``epsilon -> 0`` (the bias of the unadjusted move).  With a
state-dependent ``P`` the move omits the divergence term ``epsilon nabla . P`` of the exact
preconditioned diffusion, as the paper does: a further ``O(epsilon)`` bias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from diffcore._array import namespace
from diffcore._validation import check_positive
from diffcore.distributions import Gaussian, GaussianMixture, marginal
from diffcore.dynamics import AbstractReverseDynamics
from diffcore.processes import AbstractLinearSDE
from diffcore.samplers._base import AbstractSolver, Requirements

__all__ = ["LMLPredictorCorrector", "exact_log_density_hessian", "lml_langevin_step"]

Array = Any


def lml_langevin_step(
    x: Array, grad: Array, noise: Array, *, step_size: float, damping: float, hessian: Array | None = None
) -> Array:
    r"""One Levenberg–Marquardt–Langevin move ``x + eps P grad + sqrt(2 eps) P^{1/2} z`` (module docstring).

    Parameters
    ----------
    x, grad, noise : arrays ``(n, d)``: the state, ``nabla log p_t(x)`` and a standard normal draw.
    step_size : ``epsilon > 0``.
    damping : ``lambda > 0``.
    hessian : ``None`` for the rank-one estimate ``-nabla^2 log p ~ grad grad^T`` (Wang et al.
        2025, sec. 3), or an array ``(n, d, d)`` of ``nabla^2 log p_t(x)`` (its symmetric part
        is used, negative curvature of ``-hessian`` clipped at 0).

    Returns the new state ``(n, d)``.

    Example
    -------
    With a huge damping the move is plain Langevin with step ``epsilon / lambda``:

    >>> import numpy as np
    >>> x, g, z = np.ones((1, 2)), np.array([[1.0, -2.0]]), np.zeros((1, 2))
    >>> step = lml_langevin_step(x, g, z, step_size=1.0, damping=1e8) - x
    >>> bool(np.allclose(step, 1e-8 * g, rtol=1e-6))
    True
    """
    eps, lam = check_positive("step_size", step_size), check_positive("damping", damping)
    xp = namespace(x, grad, noise)
    if x.ndim != 2 or grad.shape != x.shape or noise.shape != x.shape:
        raise ValueError(f"x, grad and noise must share one shape (n, d); got {x.shape}, {grad.shape}, {noise.shape}")
    if hessian is None:
        sq = xp.sum(grad * grad, axis=1, keepdims=True)
        p_grad = grad / (lam + sq)  # P s = s / (lambda + |s|^2) for the rank-one H = s s^T
        safe = xp.where(sq > 0, sq, xp.ones_like(sq))
        a = xp.where(sq > 0, (1 - xp.sqrt(lam / (lam + sq))) / safe, xp.zeros_like(sq))
        root_z = (noise - a * grad * xp.sum(grad * noise, axis=1, keepdims=True)) / lam**0.5
        return x + eps * p_grad + (2 * eps) ** 0.5 * root_z
    n, d = x.shape
    if tuple(hessian.shape) != (n, d, d):
        raise ValueError(f"hessian(x, t) must have shape (n, d, d) = {(n, d, d)}; got {tuple(hessian.shape)}")
    neg = -(hessian + xp.permute_dims(hessian, (0, 2, 1))) / 2
    w, v = xp.linalg.eigh(neg)
    inv = 1 / (xp.clip(w, 0.0, None) + lam)  # (n, d): eigenvalues of P
    vt = xp.permute_dims(v, (0, 2, 1))
    p_grad = xp.sum(v * (inv * xp.sum(vt * grad[:, None, :], axis=2))[:, None, :], axis=2)
    root_z = xp.sum(v * (xp.sqrt(inv) * xp.sum(vt * noise[:, None, :], axis=2))[:, None, :], axis=2)
    return x + eps * p_grad + (2 * eps) ** 0.5 * root_z


@dataclass(frozen=True)
class LMLPredictorCorrector(AbstractSolver):
    r"""Levenberg–Marquardt–Langevin corrector steps at ``t_0``, then the reverse-diffusion predictor.

    The predictor–corrector sampler of :class:`~diffcore.PredictorCorrector` (Song et al. 2021,
    alg. 5) with its Langevin corrector replaced by ``corrector_steps`` moves of
    :func:`lml_langevin_step` (Wang et al. 2025, sec. 3 and their alg. with a DDIM/DPM predictor):

    .. math::
        x \leftarrow x + \epsilon P s(x, t_0) + \sqrt{2\epsilon} P^{1/2} z, \qquad
        x_1 = (2 - a) x + b^2 s(x, t_0) + b z,

    with ``P = (H + lambda I)^{-1}``, ``H`` from ``hessian`` or the rank-one estimate ``s s^T``,
    and ``x_{t_0} = a x_{t_1} + b z`` the forward transition.  ``step_size`` ``epsilon`` is fixed
    (no signal-to-noise rule): with ``lambda`` small against ``H`` the preconditioner carries the
    scale of ``p_t`` (``P ~ Cov``), so ``epsilon`` is dimensionless.  Each step costs
    ``1 + corrector_steps`` score evaluations (calls of ``hessian`` are not counted as NFE).

    Parameters
    ----------
    step_size : ``epsilon > 0`` (default 0.1).
    damping : ``lambda > 0`` (default 1.0).
    corrector_steps : int ``>= 0`` (default 1).
    hessian : ``None`` (default) or a callable ``(x, t) -> nabla^2 log p_t(x)`` of shape
        ``(n, d, d)`` for states ``(n, d)``, e.g. :func:`exact_log_density_hessian`.

    ``order`` is the weak order of the predictor, 1; the unadjusted corrector adds a bias that
    does not vanish with the number of steps (``O(epsilon)`` at fixed ``epsilon``).  The step is
    affine in ``(x, noise)`` on Gaussian data when the exact (constant) Hessian is given:
    ``affine_step`` is then ``True`` and :func:`~diffcore.testing.propagate_gaussian_law` applies.
    """

    step_size: float = 0.1
    damping: float = 1.0
    corrector_steps: int = 1
    hessian: Callable[[Any, float], Any] | None = None

    name: ClassVar[str] = "pc_lml"
    order: ClassVar[int] = 1
    requires: ClassVar[Requirements] = Requirements(
        dynamics=AbstractReverseDynamics, process=AbstractLinearSDE, shift="forbidden", noise="reverse"
    )

    def __post_init__(self) -> None:
        check_positive("step_size", self.step_size)
        check_positive("damping", self.damping)
        if isinstance(self.corrector_steps, bool) or not isinstance(self.corrector_steps, int):
            raise TypeError(f"corrector_steps must be an int; got {type(self.corrector_steps).__name__}")
        if self.corrector_steps < 0:
            raise ValueError(f"corrector_steps must be >= 0; got {self.corrector_steps}")
        if self.hessian is not None and not callable(self.hessian):
            raise TypeError(
                f"hessian must be None or a callable (x, t) -> (n, d, d); got {type(self.hessian).__name__}"
            )

    @property
    def affine_step(self) -> bool:  # type: ignore[override]
        """Affine on Gaussian data only with a given Hessian (the rank-one estimate depends on ``x``)."""
        return self.hessian is not None or self.corrector_steps == 0

    @property
    def noise_draws(self) -> int:
        return 1 + self.corrector_steps

    @property
    def nfe_per_step(self) -> int:
        return 1 + self.corrector_steps

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        for k in range(self.corrector_steps):
            hess = None if self.hessian is None else self.hessian(x, t0)
            x = lml_langevin_step(
                x,
                dynamics.score(x, t0),
                noise[1 + k],
                step_size=self.step_size,
                damping=self.damping,
                hessian=hess,
            )
        tr = dynamics.process.transition(t1, t0)
        x = (2.0 - tr.scale) * x + tr.std**2 * dynamics.score(x, t0) + tr.std * noise[0]
        return x, state


def exact_log_density_hessian(process: Any, data: Gaussian | GaussianMixture) -> Callable[[Any, float], np.ndarray]:
    r"""The exact ``nabla^2 log p_t(x)`` of Gaussian or mixture data under ``process``: ``(x, t) -> (n, d, d)``.

    For the marginal mixture ``p_t = sum_k pi_k N(mu_k, Sigma_k)`` (:func:`~diffcore.marginal`),
    with responsibilities ``w_k(x)``, component scores ``s_k = -Sigma_k^{-1} (x - mu_k)`` and
    ``s = sum_k w_k s_k``:

    .. math::
        \nabla^2 \log p_t(x) = \sum_k w_k(x) \big(s_k s_k^T - \Sigma_k^{-1}\big) - s s^T ,

    (for one Gaussian ``-Sigma^{-1}``).  NumPy, float64; ``x`` ``(n, d)``, ``t`` a float.  The
    laboratory's Hessian for :class:`LMLPredictorCorrector` (``hessian=...``).
    """
    if not isinstance(data, (Gaussian, GaussianMixture)):
        raise TypeError(f"data must be a Gaussian or a GaussianMixture; got {type(data).__name__}")

    def hessian(x: Any, t: float) -> np.ndarray:
        law = marginal(process, data, float(t))
        x = np.asarray(x, dtype=np.float64)
        if isinstance(law, Gaussian):
            prec = np.linalg.inv(np.asarray(law.cov, dtype=np.float64))
            return np.broadcast_to(-prec, (x.shape[0], *prec.shape)).copy()
        means = np.asarray(law.means, dtype=np.float64)
        precs = np.linalg.inv(np.asarray(law.covs, dtype=np.float64))  # (K, d, d)
        diff = x[:, None, :] - means[None]  # (n, K, d)
        s_k = -np.einsum("kij,nkj->nki", precs, diff)
        _, logdet = np.linalg.slogdet(precs)
        logits = np.log(np.asarray(law.weights, dtype=np.float64)) + 0.5 * logdet - 0.5 * np.sum(-s_k * diff, axis=2)
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        s = np.einsum("nk,nki->ni", w, s_k)
        second = np.einsum("nk,nki,nkj->nij", w, s_k, s_k) - np.einsum("nk,kij->nij", w, precs)
        return second - s[:, :, None] * s[:, None, :]

    return hessian
