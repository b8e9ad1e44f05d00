"""The ODE–SDE gap: W2 between probability-flow ODE and reverse-SDE samples from the same prior points."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffcore._validation import check_array
from diffcore.fokker_planck._checks import check_field, check_process
from diffcore.metrics import w2
from diffcore.samplers import get_solver, sample

__all__ = ["ODESDEGap", "ode_sde_gap"]

Array = Any


@dataclass(frozen=True, eq=False)
class ODESDEGap:
    """Result of :func:`ode_sde_gap`: ``w2`` (a float), the two samples ``x_ode``, ``x_sde`` and the total ``nfe``."""

    w2: float
    x_ode: Any
    x_sde: Any
    nfe: int


def ode_sde_gap(
    process: Any,
    score: Callable[[Array, Any], Array],
    x_init: Array,
    *,
    steps: int,
    sde_steps: int | None = None,
    ode_method: str = "heun",
    sde_method: str = "euler_maruyama",
    t_min: float = 1e-3,
    rng: Any = None,
) -> ODESDEGap:
    r"""``W_2`` between the probability-flow ODE and the reverse SDE driven by one ``score``.

    Both start from the same prior points ``x_init (n, d)`` at ``t = 1`` and run down to
    ``t_min`` with :func:`diffcore.sample`: the ODE ``dx = [f x - g^2 s / 2] dt`` with
    ``ode_method`` in ``steps`` steps, the SDE ``dx = [f x - g^2 s] dt + g dW`` with
    ``sde_method`` in ``sde_steps`` (default ``steps``) steps.  For the exact score both have the
    marginal ``p_{t_min}``, so the distance is at the finite-sample floor of :func:`diffcore.w2`
    plus discretisation error; for an approximate score the two laws differ, by at most a
    time integral of the score Fokker–Planck residual (Deveney et al. 2023, arXiv:2311.15996,
    sec. 4; see :func:`fp_residual_norm`).  Returns an :class:`ODESDEGap`; needs POT.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian, exact_score
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), np.eye(2))
    >>> gap = ode_sde_gap(p, exact_score(p, data), p.prior_sample((64, 2), rng=0), steps=20, rng=1)
    >>> gap.x_ode.shape, gap.nfe
    ((64, 2), 60)
    """
    check_process(process)
    check_field("score", score)
    x_init = check_array("x_init", x_init)
    if x_init.shape[0] < 1:  # W2 between empty samples is undefined
        raise ValueError(f"x_init must hold at least one point; got shape {tuple(x_init.shape)}")
    if get_solver(ode_method).stochastic:
        raise ValueError(f"ode_method must be a deterministic (ODE) method; got {ode_method!r}")
    if not get_solver(sde_method).stochastic:
        raise ValueError(f"sde_method must be a stochastic (SDE) method; got {sde_method!r}")
    sde_steps = steps if sde_steps is None else sde_steps
    ode = sample(process, score, x_init, method=ode_method, steps=steps, t_min=t_min)
    sde = sample(process, score, x_init, method=sde_method, steps=sde_steps, t_min=t_min, rng=rng)
    return ODESDEGap(float(w2(ode.x, sde.x)), ode.x, sde.x, ode.nfe + sde.nfe)
