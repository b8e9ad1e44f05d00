"""The predictor–corrector sampler of Song et al. (2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from diffcore._array import namespace
from diffcore._validation import check_nonnegative
from diffcore.dynamics import AbstractReverseDynamics
from diffcore.processes import AbstractLinearSDE
from diffcore.samplers._base import AbstractSolver, Requirements

__all__ = ["PredictorCorrector"]


@dataclass(frozen=True)
class PredictorCorrector(AbstractSolver):
    r"""Langevin corrector steps at ``t_0`` followed by a reverse-diffusion predictor step.

    Corrector (Song et al. 2021, alg. 4 and 5): ``corrector_steps`` Langevin moves
    ``x <- x + e s(x, t_0) + sqrt(2 e) z`` with the signal-to-noise rule
    ``e = 2 (snr ||z|| / ||s(x, t_0)||)^2``, the norms averaged over the batch as in the
    paper's code (a per-sample ratio explodes where ``s`` vanishes), which leave ``p_{t_0}``
    invariant in the small-step limit; the noise goes through ``dynamics.mask_noise``, so
    coordinates without diffusion (absent graph nodes) stay fixed.  Predictor (reverse
    diffusion, alg. 2/3): with the forward transition ``x_{t_0} = a x_{t_1} + b z``,

    .. math:: x_1 = (2 - a) x + b^2 s(x, t_0) + b z.

    ``a`` and ``b`` may be arrays that broadcast against ``x`` (coordinate-wise coefficients,
    as for the packed graph system of :class:`~diffcore.graphs.GraphReverseSDE`).

    On graphs the corrector takes *one* step size ``e`` for the whole packed state ``(X, A)``:
    the norms of ``z`` and ``s`` run over the feature and the pair coordinates together, so the
    component with the larger score sets the step of both.  The PC sampler of GDSS (Jo, Lee and
    Hwang 2022; ``LangevinCorrector`` in ``solver.py`` of harryjo97/GDSS) corrects each component
    separately, ``e_X = 2 alpha (snr ||z_X|| / ||s_X||)^2`` over the node features and
    ``e_A = 2 alpha (snr ||z_A|| / ||s_A||)^2`` over the adjacency (norms per sample, averaged
    over the batch; ``alpha = 1 - beta_i`` of the discrete VP schedule, 1 for VE; the noise scaled
    by ``scale_eps``), both from the same state.  The two rules agree for ``X``-only or
    ``A``-only states and whenever ``||z_X|| / ||s_X|| = ||z_A|| / ||s_A||``.  The per-component
    rule is the corrector of :class:`~diffcore.graphs.S4` (step 1 of its docstring); this class
    keeps the single rule of Song et al. (2021), for which it is the reference on ``R^d``.

    ``order`` is the weak order of the predictor; for ``snr > 0`` the corrector adds a
    bias of order ``snr^2`` that does not vanish as the step count grows (it is an
    unadjusted Langevin step of fixed relative size).
    """

    snr: float = 0.16
    corrector_steps: int = 1

    name: ClassVar[str] = "pc"
    order: ClassVar[int] = 1
    requires: ClassVar[Requirements] = Requirements(
        dynamics=AbstractReverseDynamics, process=AbstractLinearSDE, shift="forbidden", noise="reverse"
    )

    def __post_init__(self) -> None:
        check_nonnegative("snr", self.snr)
        if isinstance(self.corrector_steps, bool) or not isinstance(self.corrector_steps, int):
            raise TypeError(f"corrector_steps must be an int; got {type(self.corrector_steps).__name__}")
        if self.corrector_steps < 0:
            raise ValueError(f"corrector_steps must be >= 0; got {self.corrector_steps}")

    @property
    def affine_step(self) -> bool:  # type: ignore[override]
        """Only without a corrector: its step size depends on norms over the whole batch."""
        return self.snr == 0 or self.corrector_steps == 0

    @property
    def noise_draws(self) -> int:
        return 1 + self.corrector_steps

    @property
    def nfe_per_step(self) -> int:
        return 1 + self.corrector_steps

    def step(self, dynamics, x, t0, t1, noise, state) -> tuple[Any, Any]:
        xp = namespace(x)
        axes = tuple(range(1, x.ndim))
        for k in range(self.corrector_steps):
            grad, z = dynamics.score(x, t0), dynamics.mask_noise(noise[1 + k])
            z_norm = xp.mean(xp.sqrt(xp.sum(z**2, axis=axes)))
            grad_norm = xp.mean(xp.sqrt(xp.sum(grad**2, axis=axes)))
            eps = 2.0 * (self.snr * z_norm / grad_norm) ** 2
            x = x + eps * grad + xp.sqrt(2.0 * eps) * z
        tr = dynamics.process.transition(t1, t0)
        x = (2.0 - tr.scale) * x + tr.std**2 * dynamics.score(x, t0) + tr.std * noise[0]
        return x, state
