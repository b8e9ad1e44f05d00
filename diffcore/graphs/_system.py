"""The forward system of SDEs on graphs and its reverse-time dynamics on the packed state."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from diffcore._array import as_array, broadcast_time, namespace, normal, resolve_rng
from diffcore._validation import Model, check_batch, check_model_output, check_nonnegative
from diffcore.dynamics import AbstractReverseDynamics
from diffcore.graphs._graph import (
    _default_like,
    _mask_like,
    check_graphs,
    n_coordinates,
    pack,
    packed_mask,
    symmetric_noise,
    unpack,
)
from diffcore.processes import AbstractLinearSDE, AbstractProcess, Transition

__all__ = ["GraphReverseSDE", "GraphSDE"]

Array = Any


@dataclass(frozen=True)
class GraphSDE:
    r"""The system of SDEs of Jo, Lee and Hwang (2022, eq. 3) with independent linear components.

    .. math:: dX = f_X(t) X\,dt + g_X(t)\,dW^X, \qquad dA = f_A(t) A\,dt + g_A(t)\,dW^A,

    where ``W^A`` is a symmetric Brownian motion: one standard Brownian motion per unordered node
    pair, mirrored, zero on the diagonal.  Each component is one of the project's processes, so
    given ``(X_0, A_0)`` the marginal is exact and factorises:
    ``X_t = alpha_X X_0 + sigma_X eps_X`` and ``A_t = alpha_A A_0 + sigma_A eps_A`` with ``eps_A``
    from :func:`symmetric_noise`.  On the packed coordinates (see :func:`pack`) the system is one
    linear SDE with *coordinate-wise* coefficients: ``f_X`` on the feature coordinates and
    ``f_A`` on the pair coordinates (likewise ``g^2``, ``alpha``, ``sigma``).  Masked-out
    nodes have neither drift nor noise and stay exactly zero.

    Every coefficient method returns the pair ``(value for X, value for A)``.
    """

    x_process: AbstractProcess
    a_process: AbstractProcess

    def __post_init__(self) -> None:
        for name in ("x_process", "a_process"):
            p = getattr(self, name)
            if not isinstance(p, AbstractProcess):
                raise TypeError(f"{name} must be an AbstractProcess; got {type(p).__name__}")

    def alpha(self, t: Any) -> tuple[Any, Any]:
        """``(alpha_X(t), alpha_A(t))``."""
        return self.x_process.alpha(t), self.a_process.alpha(t)

    def sigma(self, t: Any) -> tuple[Any, Any]:
        """``(sigma_X(t), sigma_A(t))``."""
        return self.x_process.sigma(t), self.a_process.sigma(t)

    def drift_coef(self, t: Any) -> tuple[Any, Any]:
        """``(f_X(t), f_A(t))``."""
        return self.x_process.drift_coef(t), self.a_process.drift_coef(t)

    def diffusion_squared(self, t: Any) -> tuple[Any, Any]:
        """``(g_X(t)^2, g_A(t)^2)``."""
        return self.x_process.diffusion_squared(t), self.a_process.diffusion_squared(t)

    def transition(self, s: Any, t: Any) -> tuple[Transition, Transition]:
        """The exact transitions ``x_t | x_s`` of both components (``s <= t``)."""
        return self.x_process.transition(s, t), self.a_process.transition(s, t)

    def _perturb(self, X, A, mask, coefs, rng):
        """``(scale_X X + std_X eps_X, scale_A A + std_A eps_A, eps_X, eps_A)`` with masked noise."""
        X, A, m = check_graphs(X, A, mask)
        rng = resolve_rng(rng)
        (sx, bx), (sa, ba) = coefs
        eps_x = normal(rng, tuple(X.shape), X) * m[:, :, None]
        eps_a = symmetric_noise(tuple(A.shape), rng, mask=m, like=A)
        X_t = broadcast_time(sx, X) * X + broadcast_time(bx, X) * eps_x
        A_t = broadcast_time(sa, A) * A + broadcast_time(ba, A) * eps_a
        return X_t, A_t, eps_x, eps_a

    def sample_transition(self, X_s, A_s, s: Any, t: Any, rng: Any = None, mask: Array = None):
        """Draw ``(X_t, A_t)`` given ``(X_s, A_s)``; returns ``(X_t, A_t, eps_X, eps_A)``.

        ``X_t = a_X X_s + b_X eps_X`` and ``A_t = a_A A_s + b_A eps_A`` with the exact transition
        coefficients of each process (:meth:`AbstractProcess.transition`), ``eps_X`` Gaussian on
        present nodes and ``eps_A`` symmetric; shapes ``(n, N, F)`` and ``(n, N, N)``.
        """
        tx, ta = self.transition(s, t)
        return self._perturb(X_s, A_s, mask, ((tx.scale, tx.std), (ta.scale, ta.std)), rng)

    def sample_marginal(self, X0, A0, t: Any, rng: Any = None, mask: Array = None):
        r"""Draw ``(X_t, A_t)`` given the data ``(X_0, A_0)``; returns ``(X_t, A_t, eps_X, eps_A)``.

        .. math:: X_t = \alpha_X(t) X_0 + \sigma_X(t)\,\epsilon_X, \qquad
                  A_t = \alpha_A(t) A_0 + \sigma_A(t)\,\epsilon_A,

        the perturbation kernels of Jo, Lee and Hwang (2022, eq. 7 and app. C) with ``eps_A``
        symmetric (:func:`symmetric_noise`) and both noises zero at masked-out nodes.  ``t`` is
        a float or an array ``(n,)``.  The noises are returned for denoising score matching.
        """
        (ax, aa), (sx, sa) = self.alpha(t), self.sigma(t)
        return self._perturb(X0, A0, mask, ((ax, sx), (aa, sa)), rng)

    def prior_sample(
        self, n: int, n_nodes: int, n_features: int, rng: Any = None, mask: Array = None, *, like: Array = None
    ) -> tuple[Array, Array]:
        """Draw ``(X_1, A_1)`` from the priors: ``N(0, prior_std_X^2)`` features, symmetric ``N(0, prior_std_A^2)`` A.

        Shapes ``(n, N, F)`` and ``(n, N, N)``; masked-out nodes are zero.  Array type from
        ``like``, else from ``mask``, else NumPy float64 (or torch for a ``torch.Generator``).
        """
        rng = resolve_rng(rng)
        like = _default_like(rng, like if like is not None else (None if mask is None else as_array(mask, mask)))
        m = None if mask is None else _mask_like(mask, like, n, n_nodes)
        X = self.x_process.prior_std * normal(rng, (n, n_nodes, n_features), like)
        if m is not None:
            X = X * m[:, :, None]
        A = self.a_process.prior_std * symmetric_noise((n, n_nodes, n_nodes), rng, mask=m, like=like)
        return X, A

    def prior_log_prob(self, X: Array, A: Array, mask: Array = None) -> Array:
        """``log`` prior density of the present coordinates (features and node pairs); shape ``(n,)``."""
        X, A, m = check_graphs(X, A, mask)
        xp = namespace(X)
        z = pack(X, A)
        cm = packed_mask(m, X.shape[2])
        std = self.packed(m, X.shape[2])._coords(self.x_process.prior_std, self.a_process.prior_std)
        return -0.5 * xp.sum(cm * ((z / std) ** 2 + xp.log(2 * math.pi * std**2)), axis=1)

    def packed(self, mask: Array, n_features: int) -> PackedProcess:
        """The system on the packed coordinates of graphs with node mask ``mask (n or 1, N)``."""
        return PackedProcess(self, mask, n_features)


class PackedProcess(AbstractLinearSDE):
    r"""The forward system as one linear SDE on packed graph coordinates, with coordinate-wise coefficients.

    ``drift_coef(t)``, ``diffusion_squared(t)``, ``diffusion(t)`` and ``transition(s, t)``
    take float times and return arrays of shape ``(n or 1, D)`` (``D`` = :func:`n_coordinates`)
    that broadcast against a packed state: the X process's value on the feature coordinates,
    the A process's on the pair coordinates, and zero diffusion (and zero transition noise)
    on the coordinates of masked-out nodes.  This is what the generic solvers see as
    ``dynamics.process``: an :class:`~diffcore.processes.AbstractLinearSDE` without a shift,
    whose coefficients are coordinate-wise, so the solvers that declare the scalar schedule of an
    :class:`~diffcore.processes.AbstractProcess` (``ancestral``, ``ddim``, the exponential
    integrators) are refused by the driver, naming the ones that apply.
    """

    def __init__(self, system: GraphSDE, mask: Array, n_features: int) -> None:
        self.system, self.n_features = system, n_features
        xp = namespace(mask)
        self._xp = xp
        self.mask = mask
        self.coord_mask = packed_mask(mask, n_features)
        n_nodes = mask.shape[1]
        self._n_x, self._n_a = n_nodes * n_features, n_nodes * (n_nodes - 1) // 2

    def _coords(self, value_x: float, value_a: float) -> Array:
        xp, cm = self._xp, self.coord_mask
        dev = getattr(cm, "device", None)
        row = xp.concat(
            [
                xp.full((self._n_x,), float(value_x), dtype=cm.dtype, device=dev),
                xp.full((self._n_a,), float(value_a), dtype=cm.dtype, device=dev),
            ]
        )
        return row[None, :]

    @property
    def blocks(self) -> tuple[Array, Array]:
        """0/1 rows ``(1, D)`` selecting the feature coordinates and the pair coordinates."""
        return self._coords(1.0, 0.0), self._coords(0.0, 1.0)

    def drift_coef(self, t: float) -> Array:
        """``f(t)`` per coordinate, ``(1, D)``."""
        return self._coords(*self.system.drift_coef(t))

    def drift(self, x: Array, t: float) -> Array:
        """``f(t) x`` coordinate-wise for a packed state ``x (n, D)``."""
        x = check_batch("x", x)
        return self.drift_coef(t) * x

    def diffusion_squared(self, t: float) -> Array:
        """``g(t)^2`` per coordinate, zero on masked-out coordinates; ``(n or 1, D)``."""
        return self._coords(*self.system.diffusion_squared(t)) * self.coord_mask

    def diffusion(self, t: float) -> Array:
        """``g(t)`` per coordinate, zero on masked-out coordinates; ``(n or 1, D)``."""
        gx, ga = self.system.diffusion_squared(t)
        return self._coords(math.sqrt(gx), math.sqrt(ga)) * self.coord_mask

    def transition(self, s: float, t: float) -> Transition:
        """Coordinate-wise exact transition ``x_t = scale * x_s + std * z``; ``std`` is 0 on masked-out coordinates."""
        tx, ta = self.system.transition(s, t)
        return Transition(s, t, self._coords(tx.scale, ta.scale), self._coords(tx.std, ta.std) * self.coord_mask)


def check_joint_output(name: str, out: Any, X: Array, A: Array, *args: Any) -> tuple[Array, Array]:
    """A joint model's output ``(s_X, s_A)``: each part as :func:`~diffcore._validation.check_model_output` demands."""
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"{name} must return a pair (s_X, s_A); got {type(out).__name__}")
    return (
        check_model_output(name, out[0], X, what="s_X", input_name="X"),
        check_model_output(name, out[1], A, what="s_A", input_name="A"),
    )


@dataclass(frozen=True, eq=False)
class GraphReverseSDE(AbstractReverseDynamics):
    r"""The reverse-time system of Jo, Lee and Hwang (2022, eq. 4) on the packed graph state.

    .. math:: dX = [f_X X - \tfrac{1+\eta^2}{2} g_X^2 s_X(X, A, t)]\,dt + \eta g_X\,d\bar W^X, \quad
              dA = [f_A A - \tfrac{1+\eta^2}{2} g_A^2 s_A(X, A, t)]\,dt + \eta g_A\,d\bar W^A,

    written as one SDE on :func:`pack`'s coordinates ``(n, D)``, so that :func:`~diffcore.integrate`
    and the generic stochastic solvers (``euler_maruyama``, ``pc``) and :class:`S4` run on it.

    Parameters
    ----------
    system : the forward :class:`GraphSDE`.
    joint_score : ``score(X, A, t, mask) -> (s_X, s_A)`` with shapes ``(n, N, F)`` and
        ``(n, N, N)``.  Convention: ``s_X = grad_X log p_t`` and, for ``i < j``,
        ``s_A[i, j] = d log p_t / d a_ij`` where ``p_t`` is the density of the *upper-triangle
        coordinates* ``(a_ij)_{i<j}`` (one variable per node pair), mirrored to ``s_A[j, i]``;
        the diagonal is ignored.  (Differentiating a density written in the full matrix ``A``
        with ``A_ij`` and ``A_ji`` as separate variables gives half of this.)  Only the upper
        triangle and the present nodes are read.  Every call is one NFE.
    mask : node mask ``(n, N)`` or ``(1, N)`` (shared by the batch), 0/1; sets the array type,
        dtype and device of the coefficients.
    n_features : ``F``.
    noise_scale : ``eta``; 1 for the reverse SDE.
    """

    system: GraphSDE
    joint_score: Callable[..., tuple[Array, Array]]
    mask: Array
    n_features: int
    noise_scale: float = 1.0
    process: PackedProcess = field(init=False, repr=False)

    models: ClassVar[tuple[str, ...]] = ("joint_score",)

    def __post_init__(self) -> None:
        if not isinstance(self.system, GraphSDE):
            raise TypeError(f"system must be a GraphSDE; got {type(self.system).__name__}")
        if not callable(self.joint_score):
            raise TypeError(
                f"score must be callable (X, A, t, mask) -> (s_X, s_A); got {type(self.joint_score).__name__}"
            )
        object.__setattr__(self, "joint_score", Model.of(self.joint_score, "score", check=check_joint_output))
        if not hasattr(self.mask, "shape") or self.mask.ndim != 2:
            raise ValueError(
                f"mask must be an array of shape (n, N) or (1, N); got {getattr(self.mask, 'shape', self.mask)}"
            )
        if isinstance(self.n_features, bool) or not isinstance(self.n_features, int) or self.n_features < 0:
            raise ValueError(f"n_features must be an int >= 0; got {self.n_features!r}")
        check_nonnegative("noise_scale", self.noise_scale)
        m = as_array(self.mask, self.mask)
        if not bool(namespace(m).all((m == 0) | (m == 1))):
            raise ValueError("mask must hold only 0 and 1 (or False and True)")
        object.__setattr__(self, "mask", m)
        object.__setattr__(self, "process", self.system.packed(m, self.n_features))

    @property
    def n_nodes(self) -> int:
        """``N``."""
        return self.mask.shape[1]

    def _check_state(self, x: Array) -> Array:
        x = check_batch("x", x)
        D = n_coordinates(self.n_nodes, self.n_features)
        if x.ndim != 2 or x.shape[1] != D or self.mask.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"x, the packed state, must have shape (n, {D}) with n = {self.mask.shape[0]} (or any n for a "
                f"(1, N) mask); got {tuple(x.shape)}"
            )
        return x

    def score(self, x: Array, t: Any) -> Array:
        """The joint score on packed coordinates ``(n, D)``, zero on masked-out coordinates (one NFE)."""
        x = self._check_state(x)
        X, A = unpack(x, self.n_nodes, self.n_features)
        xp = namespace(x)
        mask = xp.broadcast_to(self.mask, (x.shape[0], self.n_nodes))
        s_x, s_a = self.joint_score(X, A, t, mask)
        return pack(s_x, s_a) * self.process.coord_mask

    def drift(self, x: Array, t: Any) -> Array:
        """``f(t) x - (1 + eta^2)/2 g(t)^2 s(x, t)`` coordinate-wise (one NFE)."""
        g2 = self.process.diffusion_squared(t)
        return self.process.drift(x, t) - (0.5 * (1.0 + self.noise_scale**2)) * g2 * self.score(x, t)

    def diffusion(self, t: Any) -> Any:
        """``eta g(t)`` per coordinate, zero on masked-out coordinates; ``(n or 1, D)``."""
        return self.noise_scale * self.process.diffusion(t)

    @property
    def blocks(self) -> tuple[Array, Array]:
        """0/1 rows ``(1, D)`` selecting the feature coordinates and the pair coordinates."""
        return self.process.blocks

    def mask_noise(self, noise: Array) -> Array:
        """Zero the noise on masked-out coordinates (their law is a point mass at zero)."""
        return noise * self.process.coord_mask

    def initial_state(self, rng: Any = None, n: int | None = None) -> Array:
        """A packed draw from the prior at ``t = 1``; ``n`` defaults to the mask's batch size."""
        n = self.mask.shape[0] if n is None else n
        mask = namespace(self.mask).broadcast_to(self.mask, (n, self.n_nodes))
        X, A = self.system.prior_sample(n, self.n_nodes, self.n_features, rng, mask=mask, like=self.mask)
        return pack(X, A)
