r"""Learning the joint score ``(s_X, s_A)`` of a graph SDE system: an equivariant net and its DSM loss.

The forward system of Jo, Lee and Hwang (2022, GDSS) diffuses node features ``X`` and the
symmetric adjacency ``A`` independently, ``X_t = alpha_X X_0 + sigma_X eps_X`` and
``A_t = alpha_A A_0 + sigma_A eps_A`` with ``eps_A`` symmetric noise (upper triangle mirrored,
zero diagonal).  :class:`GraphScoreNet` is a small permutation-equivariant network for the two
scores and :func:`graph_dsm_loss` the denoising score matching loss whose minimiser is the exact
joint score, checked against :class:`diffcore.graphs.GraphLaboratory` in
``tests/test_graph_training.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from diffcore._array import resolve_rng
from diffcore._validation import (
    Model,
    check_array,
    check_choice,
    check_positive,
    check_same_namespace,
    check_scalar_time,
    check_steps,
)
from diffcore.graphs import GraphSDE, check_graphs
from diffcore.graphs._system import check_joint_output
from diffcore.training._error import DEFAULT_TIMES, FieldError
from diffcore.training._torch import (
    as_tensor,
    batch_times,
    check_finite_tensor,
    check_time_range,
    generator,
    initialise_uniform,
    sinusoidal_features,
    time_frequencies,
    uniform_times,
)

__all__ = ["GRAPH_WEIGHTINGS", "GraphScoreNet", "graph_dsm_loss", "graph_score_error"]

#: names of the weightings accepted by :func:`graph_dsm_loss`
GRAPH_WEIGHTINGS = ("sigma2", "none")
#: bound of :class:`GraphScoreNet`'s noise prediction (a 10-sigma noise value)
EPS_MAX = 10.0


class GraphScoreNet(torch.nn.Module):
    r"""A permutation-equivariant network for the joint score ``(s_X, s_A)(X, A, t)`` of a graph system.

    With ``m`` the node mask, ``M_ij = m_i m_j [i != j]`` the pair mask and the inputs scaled
    to unit size, ``x = X / sqrt(alpha_X^2 + sigma_X^2)``, ``a = A / sqrt(alpha_A^2 + sigma_A^2)``
    (the ``c_in`` of Karras et al. 2022 for data of unit scale; 1 for VP processes), the net is

    .. math::
        h^0_i &= W_0 [x_i,\ \textstyle\sum_j a_{ij},\ (\sum_j a_{ij}^2)^{1/2},\ \log \sum_j m_j] + \tau(t), \\
        h^{l+1}_i &= m_i \big(h^l_i + \mathrm{MLP}_l[h^l_i,\ \textstyle\sum_j a_{ij} V_l h^l_j,\
                     \bar h^l,\ \tau(t)]\big), \qquad \bar h^l = \frac{\sum_j m_j h^l_j}{\sum_j m_j}, \\
        \hat\varepsilon_X(i) &= c(\mathrm{MLP}_X[h_i,\ \tau(t)]), \qquad
        \hat\varepsilon_A(ij) = M_{ij}\, c(\mathrm{MLP}_A[h_i + h_j,\ h_i \odot h_j,\ a_{ij},\
                     \rho((a^2)_{ij}),\ \tau(t)]),

    with ``tau`` a sinusoidal time embedding followed by a linear map (Vaswani et al. 2017; Ho et
    al. 2020, app. B), SiLU activations, ``rho(u) = u / (1 + |u|)^{1/2}`` (Lipschitz, growing like
    ``|u|^{1/2}``) and the soft clip ``c(e) = 10 tanh(e / 10)`` (``EPS_MAX = 10``).  Every input
    grows at most linearly in ``A`` and the predicted noise is bounded: the samplers visit states
    far in the tails of ``p_t`` (a 7-sigma entry among the ~10^4 of a batch at large ``t``),
    where an unbounded net extrapolates to scores large enough to make a Langevin corrector
    diverge (seen with quadratic inputs and an unclipped head: ``pc`` overflowed at ``t = 0.87``).

    Every operation is a per-node map, a masked sum over nodes, or a per-pair map of symmetric
    arguments, so for any permutation matrix ``P``

    .. math:: \mathrm{net}(P X, P A P^\top, t, P m) = (P s_X,\ P s_A P^\top),

    ``s_A`` is symmetric with zero diagonal by construction, and rows of absent nodes are zero
    (checked to round-off in ``tests/test_graph_training.py``).  The message passing weighted by
    the continuous ``a_ij`` is a graph convolution (Kipf and Welling 2017) as in GDSS's
    ``ScoreNetworkX``/``ScoreNetworkA`` (Jo et al. 2022, sec. 3.3), written smaller here.

    Parametrisation.  The heads predict the noise, and the scores are
    ``s_X = -eps_X_hat / sigma_X(t)``, ``s_A = -eps_A_hat / sigma_A(t)`` (Ho et al. 2020;
    the conversion of :func:`diffcore.reparametrize`): the noise is of unit size at every ``t``,
    while the score grows like ``1 / sigma`` near the data, so this trains far better than a
    raw score output; with the default ``sigma2`` weighting the loss of
    :func:`graph_dsm_loss` is then the plain ``eps`` regression.

    Parameters
    ----------
    system : the forward graph system (:class:`diffcore.graphs.GraphSDE`), whose two processes
        give ``alpha`` and ``sigma`` of each component.
    n_features : ``F``, node features per node.
    width, depth : hidden size of node embeddings and number of message-passing layers.
    n_frequencies, max_frequency : the time embedding (angular frequencies geometric from 1).
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator`` for the
        weights (uniform on ``+-1/sqrt(fan_in)``); the same seed gives the same net.
    dtype : parameter dtype (``torch.float32`` by default).

    Calling
    -------
    ``net(X, A, t, mask=None) -> (s_X, s_A)`` with ``X`` ``(n, N, F)``, ``A`` ``(n, N, N)``,
    ``t`` a float or ``(n,)`` and ``mask`` ``(n, N)`` of 0/1 (``None``: every node present).
    Torch inputs give differentiable tensors of ``X``'s dtype; NumPy inputs run under
    ``torch.no_grad()`` and return NumPy arrays, so the net is a score callable for
    :func:`diffcore.graphs.sample_graphs`.

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE
    >>> from diffcore.graphs import GraphSDE
    >>> net = GraphScoreNet(GraphSDE(VPSDE(), VPSDE()), 1, width=16, depth=1, rng=0)
    >>> mask = np.array([[1.0, 1.0, 1.0, 0.0]])
    >>> s_x, s_a = net(np.zeros((1, 4, 1)), np.zeros((1, 4, 4)), 0.5, mask)
    >>> s_x.shape, bool(np.all(s_a == s_a.transpose(0, 2, 1))), float(abs(s_a[0, 3]).max())
    ((1, 4, 1), True, 0.0)
    """

    def __init__(
        self,
        system: Any,
        n_features: int,
        *,
        width: int = 64,
        depth: int = 3,
        n_frequencies: int = 8,
        max_frequency: float = 50.0,
        rng: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.system = _check_system(system)
        self.n_features = check_steps(n_features, "n_features")
        width, depth = check_steps(width, "width"), check_steps(depth, "depth")
        n_frequencies = check_steps(n_frequencies, "n_frequencies")
        max_frequency = check_positive("max_frequency", max_frequency)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
        self.register_buffer("frequencies", time_frequencies(n_frequencies, max_frequency, dtype))
        self.width, self.depth = width, depth

        def linear(m: int, k: int, bias: bool = True) -> torch.nn.Linear:
            return torch.nn.utils.skip_init(torch.nn.Linear, m, k, bias=bias, dtype=dtype)

        self.time = linear(2 * n_frequencies, width)
        self.embed = linear(self.n_features + 3, width)
        self.message = torch.nn.ModuleList(linear(width, width, bias=False) for _ in range(depth))
        self.update = torch.nn.ModuleList(
            torch.nn.Sequential(linear(4 * width, width), torch.nn.SiLU(), linear(width, width)) for _ in range(depth)
        )
        self.node_head = torch.nn.Sequential(linear(2 * width, width), torch.nn.SiLU(), linear(width, self.n_features))
        self.edge_head = torch.nn.Sequential(linear(3 * width + 2, width), torch.nn.SiLU(), linear(width, 1))
        initialise_uniform(self, generator(rng))

    @property
    def n_parameters(self) -> int:
        """The number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, X: Any, A: Any, t: Any, mask: Any = None) -> tuple[Any, Any]:
        """``(s_X, s_A)`` at ``(X, A, t)`` for the nodes in ``mask`` (see the class docstring)."""
        check_same_namespace(X=X, A=A)
        X = check_array("X", X, ndim=3, finite=False, shape="(n, N, F)")  # integer graphs become float64
        A = check_array("A", A, ndim=3, finite=False, shape="(n, N, N)")
        if isinstance(X, np.ndarray):
            with torch.no_grad():
                like = self.time.weight
                tensors = [_from_numpy(v, like) for v in (X, A, mask)]
                s_x, s_a = self.forward(tensors[0], tensors[1], _from_numpy(t, None), tensors[2])
            return s_x.cpu().numpy().astype(X.dtype, copy=False), s_a.cpu().numpy().astype(X.dtype, copy=False)
        eps_x, eps_a, sigma_x, sigma_a = self._noise(X, A, t, mask)
        s_x = -eps_x / sigma_x[:, None, None]
        s_a = -eps_a / sigma_a[:, None, None]
        return s_x.to(X.dtype), s_a.to(X.dtype)

    def _noise(self, X: Any, A: Any, t: Any, mask: Any) -> tuple[torch.Tensor, ...]:
        """The predicted noises ``(eps_X_hat, eps_A_hat)`` and ``(sigma_X, sigma_A)`` in the parameters' dtype."""
        X, A, m = self._check_inputs(X, A, mask)
        n, N = m.shape
        w = self.time.weight
        t = batch_times(t, n, w)
        (alpha_x, sigma_x), (alpha_a, sigma_a) = _coefficients(self.system, t.to(torch.float64))
        c_x = (alpha_x**2 + sigma_x**2).rsqrt().to(w.dtype)
        c_a = (alpha_a**2 + sigma_a**2).rsqrt().to(w.dtype)
        pair = m[:, :, None] * m[:, None, :] * (1.0 - torch.eye(N, dtype=w.dtype, device=w.device))
        x = X * c_x[:, None, None] * m[..., None]
        a = A * c_a[:, None, None] * pair
        a2 = a @ a
        a2 = a2 * (1.0 + a2.abs()).rsqrt() * pair  # rho: linear near 0, of the size of a for large a
        tau = self.time(sinusoidal_features(t, self.frequencies))[:, None, :].expand(n, N, -1)
        count = m.sum(-1).clamp(min=1.0)[:, None, None]
        norm = (a * a).sum(-1, keepdim=True).sqrt()
        node = [x, a.sum(-1, keepdim=True), norm, torch.log(count).expand(n, N, 1)]
        h = (self.embed(torch.cat(node, dim=-1)) + tau) * m[..., None]
        for message, update in zip(self.message, self.update):
            mean = (h.sum(1, keepdim=True) / count).expand(n, N, -1)
            h = (h + update(torch.cat([h, a @ message(h), mean, tau], dim=-1))) * m[..., None]
        eps_x = _soft_clip(self.node_head(torch.cat([h, tau], dim=-1))) * m[..., None]
        hi, hj = h[:, :, None, :], h[:, None, :, :]
        edge = torch.cat(
            [hi + hj, hi * hj, tau[:, :, None, :].expand(n, N, N, -1), a[..., None], a2[..., None]], dim=-1
        )
        eps_a = _soft_clip(self.edge_head(edge)[..., 0]) * pair
        return eps_x, eps_a, sigma_x.to(w.dtype), sigma_a.to(w.dtype)

    def _check_inputs(self, X: Any, A: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w = self.time.weight
        for name, v in (("X", X), ("A", A)):
            if not isinstance(v, torch.Tensor) or not v.is_floating_point():
                raise TypeError(f"{name} must be a floating NumPy array or torch tensor; got {type(v).__name__}")
        if X.ndim != 3 or X.shape[2] != self.n_features:
            raise ValueError(f"X must have shape (n, N, F={self.n_features}); got {tuple(X.shape)}")
        n, N = X.shape[:2]
        if tuple(A.shape) != (n, N, N):
            raise ValueError(f"A must have shape (n, N, N) = ({n}, {N}, {N}) to match X; got {tuple(A.shape)}")
        if mask is None:
            m = torch.ones((n, N), dtype=w.dtype, device=w.device)
        elif not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (n, N):
            shape = tuple(mask.shape) if hasattr(mask, "shape") else type(mask).__name__
            raise ValueError(f"mask must have shape (n, N) = ({n}, {N}); got {shape}")
        else:
            m = mask.to(dtype=w.dtype, device=w.device)
        return X.to(w.dtype), A.to(w.dtype), m


def graph_dsm_loss(
    model: Callable,
    X0: Any,
    A0: Any,
    mask: Any,
    system: Any,
    rng: Any = None,
    *,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    weighting: str = "sigma2",
) -> torch.Tensor:
    r"""Denoising score matching for a joint graph score ``(s_X, s_A)`` (Jo et al. 2022, eq. 7–8).

    .. math:: L = E_t\, E_{X_0, A_0, \varepsilon}\Big[ w_X \sum_{i \in m,\,f}
                  \big(s_X(i, f) + \varepsilon_X(i, f) / \sigma_X\big)^2
                  + w_A \sum_{i < j,\ i, j \in m} \big(s_A(i, j) + \varepsilon_A(i, j) / \sigma_A\big)^2 \Big],

    with ``(X_t, A_t)`` drawn from the exact marginal of ``system`` with symmetric noise
    ``eps_A``, ``t ~ U[t_min, t_max]`` (one per graph), the model evaluated at
    ``(X_t, A_t, t, mask)`` and the conditional scores ``-eps / sigma`` of each component as
    targets (Vincent 2011).  Only present coordinates count: node features of present nodes
    and each unordered pair of present nodes **once** (the upper triangle, the coordinates of
    the symmetric subspace on which ``A`` lives; summing the full mirrored matrix would count
    every pair twice, which only rescales the ``A`` term by 2 and leaves the minimiser
    unchanged, but the value here is the one whose minimum is the conditional variance per
    coordinate).  The minimiser is the exact joint score ``grad log p_t`` in those coordinates,
    e.g. :meth:`diffcore.graphs.GraphLaboratory.score`.  Sums are per graph; the mean is over
    the batch.

    Weightings: ``"sigma2"`` (default; ``w = sigma^2`` of each component, Song et al. 2021,
    eq. 7, so the terms are ``|sigma s + eps|^2``) or ``"none"`` (``w = 1``, the raw score error).

    Parameters
    ----------
    model : callable ``(X_t, A_t, t, mask) -> (s_X, s_A)``, differentiable (e.g. :class:`GraphScoreNet`).
    X0, A0, mask : a data batch ``(n, N, F)``, ``(n, N, N)``, ``(n, N)`` (tensors or NumPy arrays;
        ``mask`` of 0/1, ``None`` for all nodes present).
    system : the forward graph system (:class:`diffcore.graphs.GraphSDE`).
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``; draws
        ``t`` first and the noises second, independently of the model, so the same seed gives
        the same ``(X_t, A_t)`` for every model compared.
    t_min, t_max : ``0 < t_min <= t_max <= 1`` keeps ``sigma > 0``.

    Returns a 0-d tensor of ``X0``'s dtype, differentiable in the model's parameters.
    Raises ``ValueError`` for bad shapes, times or weighting and for a model output of the
    wrong shape or not finite.

    Example: a zero score leaves ``sum eps^2`` over ``F k + k (k - 1) / 2`` coordinates per graph
    (here ``k = 3``, ``F = 1``: 6), so the loss is near 6.

    >>> import numpy as np
    >>> from diffcore import VPSDE
    >>> from diffcore.graphs import GraphSDE
    >>> zero = lambda X, A, t, m: (0 * X, 0 * A)
    >>> X0, A0 = np.zeros((4000, 3, 1)), np.zeros((4000, 3, 3))
    >>> loss = graph_dsm_loss(zero, X0, A0, None, GraphSDE(VPSDE(), VPSDE()), rng=0)
    >>> bool(abs(float(loss) - 6.0) < 0.25)  # standard error sqrt(2 * 6 / 4000) = 0.055
    True
    """
    system = _check_system(system)
    check_choice("weighting", weighting, GRAPH_WEIGHTINGS)
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    if t_min <= 0.0:
        raise ValueError(f"t_min must be > 0 so that sigma(t) > 0; got {t_min}")
    check_same_namespace(X0=X0, A0=A0)
    X0 = check_finite_tensor("X0", as_tensor("X0", X0))
    A0 = check_finite_tensor("A0", as_tensor("A0", A0, dtype=X0.dtype, device=X0.device))
    if mask is not None:
        mask = as_tensor("mask", mask, dtype=X0.dtype, device=X0.device)
    X0, A0, mask = check_graphs(X0, A0, mask)
    n = X0.shape[0]
    gen = generator(rng, X0.device)
    t = uniform_times(n, t_min, t_max, gen, X0)
    X_t, A_t, eps_x, eps_a = _marginal(system, X0, A0, t, gen, mask)
    s_x, s_a = Model.of(model, "model", check=check_joint_output)(X_t, A_t, t.to(X0.dtype), mask)
    (_, sigma_x), (_, sigma_a) = _coefficients(system, t)
    sigma_x, sigma_a = sigma_x.to(X0.dtype)[:, None, None], sigma_a.to(X0.dtype)[:, None, None]
    if weighting == "sigma2":
        r_x, r_a = sigma_x * s_x + eps_x, sigma_a * s_a + eps_a
    else:
        r_x, r_a = s_x + eps_x / sigma_x, s_a + eps_a / sigma_a
    upper = torch.triu(mask[:, :, None] * mask[:, None, :], diagonal=1)
    per_graph = (r_x**2 * mask[..., None]).sum(dim=(1, 2)) + (r_a**2 * upper).sum(dim=(1, 2))
    if not bool(torch.isfinite(per_graph.detach()).all()):
        raise ValueError(f"the model's scores are not finite for t in [{t_min}, {t_max}]")
    return per_graph.mean()


def graph_score_error(
    learned: Callable,
    exact: Callable,
    sample: Callable,
    system: Any,
    *,
    times: Sequence[float] = DEFAULT_TIMES,
    n: int = 2048,
    rng: Any = None,
) -> FieldError:
    r"""Relative L2 error of a learned joint score against the exact one, under the exact marginal ``p_t``.

    .. math:: e(t) = \Big(\frac{E\, \|s_X - s_X^*\|^2 + \sum_{i<j} (s_A - s_A^*)_{ij}^2}
                               {E\, \|s_X^*\|^2 + \sum_{i<j} (s^*_A)_{ij}^2}\Big)^{1/2},

    the :func:`field_error` of a graph score on the coordinates of the symmetric subspace
    (features of present nodes, each unordered pair of present nodes once, as in
    :func:`graph_dsm_loss`), with ``n`` draws ``(X_t, A_t)`` of ``system.sample_marginal`` from
    fresh data ``sample(n, rng) -> (X_0, A_0, mask)`` (e.g. :meth:`GraphLaboratory.sample`) at
    each ``t``; both fields get the same NumPy float64 draws.  Returns a :class:`FieldError`.
    """
    system = _check_system(system)
    n = check_steps(n, "n")
    learned_model = Model.of(learned, "learned", check=check_joint_output)
    ts = [check_scalar_time(t, "times") for t in times]
    if not ts:
        raise ValueError("times must hold at least one time")
    rng = resolve_rng(rng)
    rows = []
    for t in ts:
        X0, A0, mask = sample(n, rng)
        X_t, A_t, _, _ = system.sample_marginal(X0, A0, t, rng, mask=mask)
        rows.append(_error_at(learned_model, exact, X_t, A_t, t, mask))
    rel, se, ab, ref = (np.array(col, dtype=np.float64) for col in zip(*rows))
    return FieldError(np.array(ts), rel, se, ab, ref, n)


def _error_at(learned: Callable, exact: Callable, X_t: Any, A_t: Any, t: float, mask: Any) -> tuple[float, ...]:
    """``(relative, its standard error, absolute, reference)`` at one time, as in :func:`field_error`."""
    (s_x, s_a), (e_x, e_a) = ([_host(v) for v in f(X_t, A_t, t, mask)] for f in (learned, exact))
    if s_x.shape != X_t.shape or s_a.shape != A_t.shape:
        raise ValueError(f"the scores must have shapes {X_t.shape} and {A_t.shape}; got {s_x.shape} and {s_a.shape}")
    if not (np.all(np.isfinite(s_x)) and np.all(np.isfinite(s_a))):
        raise ValueError(f"the learned score is not finite at t = {t}")
    upper = np.triu(mask[:, :, None] * mask[:, None, :], k=1)
    a = ((s_x - e_x) ** 2 * mask[..., None]).sum(axis=(1, 2)) + ((s_a - e_a) ** 2 * upper).sum(axis=(1, 2))
    b = (e_x**2 * mask[..., None]).sum(axis=(1, 2)) + (e_a**2 * upper).sum(axis=(1, 2))
    ratio = a.mean() / b.mean()
    se_ratio = np.std(a - ratio * b, ddof=1) / (math.sqrt(len(a)) * b.mean())  # delta method, as in field_error
    rel = math.sqrt(ratio)
    return rel, se_ratio / (2 * rel) if rel > 0 else 0.0, math.sqrt(a.mean()), math.sqrt(b.mean())


def _host(v: Any) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float64)


def _check_system(system: Any) -> Any:
    if not isinstance(system, GraphSDE):
        raise TypeError(f"system must be a diffcore.graphs.GraphSDE; got {type(system).__name__}")
    return system


def _coefficients(system: Any, t: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """``((alpha_X, sigma_X), (alpha_A, sigma_A))`` at the float64 times ``t``."""
    (alpha_x, alpha_a), (sigma_x, sigma_a) = system.alpha(t), system.sigma(t)
    return (alpha_x, sigma_x), (alpha_a, sigma_a)


def _marginal(system: Any, X0: Any, A0: Any, t: Any, gen: Any, mask: Any) -> tuple[torch.Tensor, ...]:
    """``X_t, A_t`` from the exact marginal of ``system`` and the noises ``eps_X``, ``eps_A`` used."""
    return system.sample_marginal(X0, A0, t, gen, mask=mask)


def _soft_clip(eps: torch.Tensor) -> torch.Tensor:
    """``EPS_MAX tanh(eps / EPS_MAX)``: the identity to 1 % for ``|eps| < 1.7``, bounded by ``EPS_MAX``."""
    return EPS_MAX * torch.tanh(eps / EPS_MAX)


def _from_numpy(v: Any, like: torch.Tensor | None) -> Any:
    if not isinstance(v, np.ndarray):
        return v
    if like is None:
        return torch.from_numpy(np.asarray(v, dtype=np.float64))
    return torch.tensor(v, dtype=like.dtype, device=like.device)  # a copy: sampler masks may be read-only views
