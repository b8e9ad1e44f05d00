"""The named analytic problems of the kit: data laws whose every marginal, score and flow is known exactly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import broadcast_time, namespace
from diffcore._parametrization import reparametrize
from diffcore._validation import (
    check_array,
    check_choice,
    check_scalar_time,
    check_size,
    check_steps,
    check_time_for,
)
from diffcore.distributions import Gaussian, GaussianMixture, exact_denoiser, exact_log_prob, exact_score, marginal
from diffcore.dynamics import ProbabilityFlowODE
from diffcore.graphs import GraphLaboratory, GraphSDE, packed_mask, unpack
from diffcore.processes import VPSDE, AbstractProcess
from diffcore.testing._oracles import reference_ode_solution

__all__ = [
    "PROBLEMS",
    "Problem",
    "anisotropic_mixture",
    "circle_mixture",
    "random_gaussian",
    "skewed_mixture_2d",
]

Array = Any
Data = Gaussian | GaussianMixture


def circle_mixture(k: int = 8, radius: float = 4.0, std: float = 0.3) -> GaussianMixture:
    """P1: ``k`` equally weighted components ``N(m_j, std^2 I)``, ``m_j`` evenly spaced on a circle.

    ``m_j = radius (cos(2 pi j / k), sin(2 pi j / k))``: multimodal, with a score that turns
    sharply between the modes at small ``t``; its law and every marginal are invariant under the
    rotations by ``2 pi / k`` (:func:`~diffcore.testing.symmetrise`).
    """
    ang = 2 * np.pi * np.arange(check_steps(k, "k")) / k
    means = radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    return GaussianMixture(np.full(k, 1.0 / k), means, np.tile(std**2 * np.eye(2), (k, 1, 1)))


def random_gaussian(d: int = 64, seed: int = 0, lo: float = 0.01, hi: float = 4.0) -> Gaussian:
    """P2: ``N(m, Q diag(lam) Q^T)``, ``Q`` a random rotation, ``lam`` log-uniform in ``[lo, hi]``.

    The mean is ``m ~ N(0, I/4)``; everything is drawn from ``numpy.random.default_rng(seed)``.
    The exact score is affine, so every affine sampler step maps a Gaussian law to a Gaussian
    law (:func:`~diffcore.testing.propagate_gaussian_law`); the condition number ``hi / lo``
    (400 by default) makes the probability-flow ODE mildly stiff near ``t = 0``.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((check_steps(d, "d"), d)))
    lam = np.exp(rng.uniform(np.log(lo), np.log(hi), size=d))
    return Gaussian(rng.standard_normal(d) * 0.5, (q * lam) @ q.T)


def skewed_mixture_2d() -> GaussianMixture:
    """A fixed 2-D mixture of three unequal, rotated, full-covariance components.

    Weights ``(0.3, 0.5, 0.2)``, means ``(-1.5, 0.5)``, ``(1, 1)``, ``(0.5, -1.5)``, covariances
    ``R(a) diag(lam) R(a)^T`` with ``(a, lam) = (0.3, (0.5, 0.1))``, ``(1.2, (0.3, 0.05))``,
    ``(2.0, (0.8, 0.2))``: no symmetry at all, overlapping modes of unequal mass.
    """

    def rot(a: float) -> np.ndarray:
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])

    spec = ((0.3, (0.5, 0.1)), (1.2, (0.3, 0.05)), (2.0, (0.8, 0.2)))
    covs = np.stack([rot(a) @ np.diag(lam) @ rot(a).T for a, lam in spec])
    return GaussianMixture([0.3, 0.5, 0.2], [[-1.5, 0.5], [1.0, 1.0], [0.5, -1.5]], covs)


def anisotropic_mixture(d: int = 16, k: int = 3, seed: int = 0) -> GaussianMixture:
    """A ``d``-dimensional mixture of ``k`` components with random anisotropic covariances.

    Component ``j``: weight ``w_j ~ U(0.5, 1)`` (normalised), mean ``1.5 z_j`` with
    ``z_j ~ N(0, I)``, covariance ``Q_j diag(lam_j) Q_j^T`` with a random rotation ``Q_j`` and
    eigenvalues log-uniform in ``[0.05, 1]``; all drawn from ``numpy.random.default_rng(seed)``
    (the 16-D mixture of the likelihood tests).
    """
    rng = np.random.default_rng(seed)
    d, k = check_steps(d, "d"), check_steps(k, "k")
    covs = []
    for _ in range(k):
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        covs.append((q * np.exp(rng.uniform(np.log(0.05), 0.0, d))) @ q.T)
    w = rng.uniform(0.5, 1.0, k)
    return GaussianMixture(w / w.sum(), 1.5 * rng.standard_normal((k, d)), np.stack(covs))


#: the mask of the graph problem: four present nodes out of the laboratory's five
_GRAPH_MASK = np.array([[1.0, 1.0, 1.0, 1.0, 0.0]])


def _graph_data(lab: GraphLaboratory) -> GaussianMixture:
    """The laboratory's law of 4-node graphs on the packed coordinates of the present nodes (``R^10``)."""
    present = packed_mask(_GRAPH_MASK, lab.n_features)[0] == 1
    # the laboratory's components (private fields, read-only): one per labelled graph
    four = lab._sizes == 4
    log_w = lab._log_w[four]
    w = np.exp(log_w - log_w.max())
    means = lab._means[four][:, present]
    dim = int(present.sum())
    return GaussianMixture(w / w.sum(), means, np.tile(lab.tau**2 * np.eye(dim), (len(w), 1, 1)))


@dataclass(frozen=True)
class _Spec:
    description: str
    data: Callable[[], Data]


#: name -> what the problem is and how its data is built
_SPECS: dict[str, _Spec] = {
    "P1": _Spec("2-D mixture of 8 Gaussians (std 0.3) evenly spaced on a circle of radius 4", circle_mixture),
    "P2": _Spec("64-D Gaussian, random rotation, eigenvalues log-uniform in [0.01, 4] (seed 0)", random_gaussian),
    "skewed": _Spec("2-D mixture of 3 unequal, rotated, full-covariance components", skewed_mixture_2d),
    "mixture16": _Spec(
        "16-D mixture of 3 components, random covariances with eigenvalues log-uniform in [0.05, 1] (seed 0)",
        anisotropic_mixture,
    ),
    "graphs": _Spec(
        "the graph laboratory's 4-node graphs (P4, C4, star, paw; every labelling, tau = 0.1) on the 10 "
        "packed coordinates of the present nodes",
        lambda: _graph_data(GraphLaboratory.small()),
    ),
}

#: the names :class:`Problem` knows
PROBLEMS: tuple[str, ...] = tuple(_SPECS)


@dataclass(frozen=True, eq=False)
class Problem:
    r"""A data law with every quantity a sampler or a model is checked against, in closed form.

    ``Problem(name)`` builds a named problem (:data:`PROBLEMS`):

    * ``"P1"`` — 2-D mixture of 8 Gaussians of std 0.3 on a circle of radius 4 (:func:`circle_mixture`);
    * ``"P2"`` — 64-D Gaussian with a random rotation, eigenvalues log-uniform in ``[0.01, 4]``
      (:func:`random_gaussian`): affine score, exact output laws of affine samplers;
    * ``"skewed"`` — 2-D mixture of three unequal rotated components (:func:`skewed_mixture_2d`);
    * ``"mixture16"`` — 16-D anisotropic mixture of 3 components (:func:`anisotropic_mixture`);
    * ``"graphs"`` — the graph laboratory (:class:`~diffcore.graphs.GraphLaboratory.small`): its
      4-node graphs as a 31-component mixture on the 10 packed coordinates of the present nodes;
      :attr:`laboratory`, :attr:`system` and :attr:`graph_score` give the graph view.  Its narrow
      components (``tau = 0.1``) make probability-flow paths switch modes: first-order methods are
      pre-asymptotic below several hundred steps, so it is a problem for score and graph-score
      checks more than for measuring orders.

    ``Problem(name, process=...)`` puts the same data under another forward process (default
    :class:`~diffcore.VPSDE` ``(0.1, 20)``); ``Problem("mine", data=law)`` wraps any
    :class:`~diffcore.Gaussian` or :class:`~diffcore.GaussianMixture`.

    Everything is exact (Song et al. 2021, app. B; the :doc:`score chapter <score>`): with
    ``x_t = alpha(t) x_0 + sigma(t) eps``, the marginal of a mixture is the mixture of
    ``N(alpha m_k, alpha^2 C_k + sigma^2 I)`` (:meth:`marginal`), its log-density
    (:meth:`log_prob`), score (:attr:`score`) and the other parametrisations through the
    converters (:attr:`eps`, :attr:`x0`, :attr:`v`, :attr:`velocity`); :meth:`reference` solves the
    probability-flow ODE ``dx/dt = f x - g^2/2 score`` with DOP853 at ``rtol = atol = 1e-12``.

    Raises ``ValueError`` for an unknown name (listing the names) and ``TypeError`` for a process
    that is not an :class:`~diffcore.AbstractProcess` or data that is not a Gaussian (mixture).

    Example
    -------
    >>> p = Problem("P1")
    >>> p.dim, p.marginal(1e-3).n_components, p.score(p.sample_marginal(3, 0.5, rng=0), 0.5).shape
    (2, 8, (3, 2))
    """

    name: str
    process: AbstractProcess | None = None
    data: Data | None = None
    description: str | None = None
    laboratory: GraphLaboratory | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a problem name (a str); got {type(self.name).__name__}")
        process = VPSDE() if self.process is None else self.process
        if not isinstance(process, AbstractProcess):
            raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
        object.__setattr__(self, "process", process)
        if self.data is None:
            check_choice("problem", self.name, PROBLEMS)
            spec = _SPECS[self.name]
            object.__setattr__(self, "data", spec.data())
            if self.description is None:
                object.__setattr__(self, "description", spec.description)
            if self.name == "graphs":
                object.__setattr__(self, "laboratory", GraphLaboratory.small())
        elif not isinstance(self.data, (Gaussian, GaussianMixture)):
            raise TypeError(f"data must be a Gaussian or a GaussianMixture; got {type(self.data).__name__}")
        if self.description is None:
            object.__setattr__(self, "description", f"{type(self.data).__name__} in {self.data.dim} dimensions")

    # -- the law -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """``d``, the dimension of a point."""
        return self.data.dim

    @property
    def is_gaussian(self) -> bool:
        """Whether the data (hence every marginal) is one Gaussian: the exact score is affine in ``x``."""
        return isinstance(self.data, Gaussian)

    def marginal(self, t: float) -> Data:
        """The exact law of ``x_t`` (:func:`~diffcore.marginal`), a float ``t`` in ``[0, 1]``."""
        return marginal(self.process, self.data, t)

    def log_prob(self, x: Array, t: Any) -> Array:
        """``log p_t(x)``, shape ``(n,)`` (:func:`~diffcore.exact_log_prob`); ``t`` a float or ``(n,)``."""
        return exact_log_prob(self.process, self.data)(x, t)

    def sample_marginal(self, n: int, t: float, rng: Any = None, *, like: Array = None) -> Array:
        """``n`` exact draws of ``x_t``, shape ``(n, d)`` (``like``: the array type, else NumPy float64)."""
        return self.marginal(check_scalar_time(t)).sample(n, rng, like=like)

    def sample_prior(self, n: int, rng: Any = None, *, like: Array = None) -> Array:
        """``n`` draws of the process's prior ``N(0, prior_std^2 I)`` (not the exact law at ``t = 1``)."""
        return self.process.prior_sample((check_size(n, "n"), self.dim), rng, like=like)

    # -- the exact fields --------------------------------------------------------------------
    @property
    def score(self) -> Callable[[Array, Any], Array]:
        """The exact score ``grad log p_t(x)`` (:func:`~diffcore.exact_score`)."""
        return exact_score(self.process, self.data)

    @property
    def x0(self) -> Callable[[Array, Any], Array]:
        """The exact denoiser ``E[x_0 | x_t = x]`` (:func:`~diffcore.exact_denoiser`)."""
        return exact_denoiser(self.process, self.data)

    @property
    def eps(self) -> Callable[[Array, Any], Array]:
        """The exact noise prediction ``E[eps | x_t = x] = -sigma(t) score`` (Ho et al. 2020)."""
        return reparametrize(self.score, self.process, source="score", target="eps")

    @property
    def v(self) -> Callable[[Array, Any], Array]:
        """The exact ``v = alpha eps - sigma x_0`` prediction (Salimans and Ho 2022, eq. 13)."""
        return reparametrize(self.score, self.process, source="score", target="v")

    @property
    def velocity(self) -> Callable[[Array, Any], Array]:
        r"""The exact probability-flow velocity ``u_t(x)`` (Song et al. 2021, eq. 13), finite on all of ``[0, 1]``.

        ``u = f(t) x - g(t)^2/2 score``; for a schedule that reaches pure noise (``alpha(1) = 0``,
        e.g. rectified flow) ``f = alpha'/alpha`` is infinite at ``t = 1`` and the same field is
        taken as ``u = alpha' E[x_0 | x] + sigma' E[eps | x] = alpha' E[x_0 | x] - sigma sigma' score``
        (no division: finite at ``alpha = 0``, and no ``1/alpha`` amplification of a score error near it).
        """
        if not self.reaches_pure_noise:
            return reparametrize(self.score, self.process, source="score", target="velocity")
        return _PureNoiseVelocity(self.process, self.score, self.x0)

    @property
    def reaches_pure_noise(self) -> bool:
        """Whether ``alpha(1) = 0``: the score then cannot give the velocity at ``t = 1`` (``f`` is infinite there)."""
        return float(self.process.alpha(1.0)) == 0.0

    def flow_model(self, velocity: Callable[[Array, Any], Array] | None = None) -> Callable[[Array, Any], Array]:
        """The model the kit integrates and hands to samplers: the exact score, or for a process that reaches
        pure noise the exact velocity (or ``velocity``) reparametrized as a score, from which the
        probability-flow dynamics and :mod:`diffcore.interop`'s samplers take the velocity itself
        (:func:`~diffcore.dynamics.velocity_of`), so that ``t = 1`` needs no ``f``.
        """
        if not self.reaches_pure_noise:
            return self.score
        return reparametrize(self.velocity if velocity is None else velocity, self.process, source="velocity")

    def reference(self, x_init: Array, t_start: float, t_end: float) -> np.ndarray:
        """The probability-flow ODE solution from ``x_init (n, d)`` at ``t_start`` to ``t_end`` (NumPy).

        DOP853 at ``rtol = atol = 1e-12`` (:func:`~diffcore.testing.reference_ode_solution`) on
        :meth:`flow_model`; ``x_init`` is copied to the host in float64.
        """
        x = np.asarray(_host(check_array("x_init", x_init, ndim=2, dim=self.dim)), dtype=np.float64)
        return reference_ode_solution(ProbabilityFlowODE(self.process, self.flow_model()), x, t_start, t_end)

    # -- the graph view (the "graphs" problem only) --------------------------------------------
    @property
    def system(self) -> GraphSDE | None:
        """For ``"graphs"``: the graph system ``GraphSDE(process, process)`` (features and adjacency)."""
        return GraphSDE(self.process, self.process) if self.laboratory is not None else None

    @property
    def graph_score(self) -> Callable | None:
        """For ``"graphs"``: the laboratory's exact joint score ``(X, A, t, mask) -> (s_X, s_A)``."""
        return self.laboratory.exact_score(self.system) if self.laboratory is not None else None

    def to_graphs(self, x: Array) -> tuple[Array, Array, Array]:
        """For ``"graphs"``: points ``(n, 10)`` as padded graphs ``(X (n, 5, 1), A (n, 5, 5), mask (n, 5))``."""
        if self.laboratory is None:
            raise ValueError(f"to_graphs needs the 'graphs' problem; this is {self.name!r}")
        x = check_array("x", x, ndim=2, dim=self.dim)
        present = packed_mask(_GRAPH_MASK, self.laboratory.n_features)[0] == 1
        full = np.zeros((x.shape[0], present.size))
        full[:, present] = _host(x)
        X, A = unpack(full, self.laboratory.n_nodes, self.laboratory.n_features)
        return X, A, np.repeat(_GRAPH_MASK, x.shape[0], axis=0)

    def __repr__(self) -> str:
        return f"Problem({self.name!r}, process={self.process!r})"


@dataclass(frozen=True, eq=False)
class _PureNoiseVelocity:
    """``Problem.velocity`` of a schedule with ``alpha(1) = 0``: ``alpha' E[x_0 | x] - sigma sigma' score``.

    ``f = alpha'/alpha`` blows up towards ``alpha = 0`` and would multiply any error of the score by
    ``1/alpha`` there; this form has no such factor.
    """

    process: AbstractProcess
    score: Callable[[Array, Any], Array]
    x0: Callable[[Array, Any], Array]

    def __call__(self, x: Array, t: Any) -> Array:
        t = check_time_for(t, check_array("x", x, min_ndim=2))
        p = self.process
        u = broadcast_time(p.d_alpha(t), x) * self.x0(x, t) - broadcast_time(p.sigma(t) * p.d_sigma(t), x) * self.score(
            x, t
        )
        if not bool(namespace(u).all(namespace(u).isfinite(u))):
            raise ValueError(
                f"the exact velocity of {type(p).__name__} is not finite at the given times: sigma sigma' is not "
                "finite where sigma'(t) is infinite (sigma ~ sqrt(t) at t = 0); evaluate at t > 0"
            )
        return u


def _host(a: Array) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
