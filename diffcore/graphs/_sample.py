"""Sampling graphs: the reverse system integrated by the one driver, on the packed state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffcore._array import resolve_rng
from diffcore._validation import check_steps
from diffcore.graphs._graph import unpack
from diffcore.graphs._s4 import S4
from diffcore.graphs._system import GraphReverseSDE, GraphSDE
from diffcore.samplers import AbstractSolver, EulerMaruyama, PredictorCorrector, Solution, integrate, time_grid

__all__ = ["GraphSample", "sample_graphs"]

Array = Any

#: the methods :func:`sample_graphs` knows by name
GRAPH_METHODS = ("pc", "s4", "euler_maruyama")


@dataclass(frozen=True, eq=False)
class GraphSample:
    """The result of :func:`sample_graphs`.

    Attributes
    ----------
    X, A : the sampled node features ``(n, N, F)`` and adjacencies ``(n, N, N)`` (symmetric,
        zero diagonal, zero at masked-out nodes; not quantised — see :func:`quantize`).
    mask : the node mask ``(n, N)`` used.
    nfe, ts : score evaluations and the time grid (see :class:`~diffcore.Solution`).
    solution : the driver's :class:`~diffcore.Solution` on the packed state (its ``path``,
        when saved, is packed: ``unpack`` each entry).
    """

    X: Any
    A: Any
    mask: Any
    nfe: int
    ts: Any
    solution: Solution


def _solver(method: Any, snr: float | None) -> AbstractSolver:
    if isinstance(method, AbstractSolver):
        return method
    if method not in GRAPH_METHODS:
        raise ValueError(f"unknown graph sampling method {method!r}; known: {', '.join(GRAPH_METHODS)}")
    if method == "euler_maruyama":
        return EulerMaruyama()
    cls = PredictorCorrector if method == "pc" else S4
    return cls() if snr is None else cls(snr=snr)


def sample_graphs(
    system: GraphSDE,
    score: Callable[..., tuple[Array, Array]],
    mask: Array,
    *,
    n_features: int,
    method: Any = "pc",
    steps: int,
    t_min: float = 1e-3,
    snr: float | None = None,
    rng: Any = None,
    save_path: bool = False,
) -> GraphSample:
    r"""Sample graphs by integrating the reverse system from ``t = 1`` down to ``t_min``.

    Draws ``(X_1, A_1)`` from the prior of each component (symmetric noise for ``A``, zero at
    masked-out nodes), then integrates :class:`GraphReverseSDE` on the packed state with
    ``method``: ``"pc"`` (:class:`~diffcore.PredictorCorrector`: at each grid time a Langevin
    corrector move, then a reverse-diffusion predictor step to the next time, as in the released
    code of Song et al. 2021 and of Jo et al. 2022; their alg. 1 writes the predictor first),
    ``"s4"`` (:class:`S4`, Jo et al. 2022, alg. 2),
    ``"euler_maruyama"``, or a solver object.  ``snr`` sets the corrector's signal-to-noise
    ratio of ``pc``/``s4`` (``None``: the solver's default).

    Parameters
    ----------
    system : :class:`GraphSDE`.
    score : ``(X, A, t, mask) -> (s_X, s_A)``, see :class:`GraphReverseSDE` for the convention.
    mask : node mask ``(n, N)`` (0/1): the batch size and the graph sizes.
    n_features : ``F``.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE
    >>> sde = GraphSDE(VPSDE(), VPSDE())
    >>> standard = lambda X, A, t, m: (-X, -A)  # the score of N(0, I), the prior of VP
    >>> out = sample_graphs(sde, standard, np.ones((2, 3)), n_features=1, steps=5, rng=0)
    >>> out.X.shape, out.A.shape, out.nfe
    ((2, 3, 1), (2, 3, 3), 10)
    """
    steps = check_steps(steps)
    dynamics = GraphReverseSDE(system, score, mask, n_features)
    solver = _solver(method, snr)
    rng = resolve_rng(rng)
    x_init = dynamics.initial_state(rng)
    ts = time_grid(None, steps, t_min=t_min)
    sol = integrate(dynamics, x_init, ts, solver, rng, save_path=save_path)
    X, A = unpack(sol.x, dynamics.n_nodes, n_features)
    return GraphSample(X=X, A=A, mask=dynamics.mask, nfe=sol.nfe, ts=sol.ts, solution=sol)
