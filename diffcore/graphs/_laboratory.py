r"""An analytic graph laboratory: every labelling of a few template graphs, as a Gaussian mixture.

Each distinct labelled graph ``G_c = (X_c, A_c)`` (a node permutation of a template) is one
component ``N(pack(G_c), tau^2 I)`` on the packed coordinates of its present nodes; a
template's weight is split equally over its distinct labellings.  Under the graph system
(:class:`GraphSDE`) the law at time ``t`` is again a mixture, with per-coordinate means
``alpha(t) pack(G_c)`` and variances ``v(t) = alpha(t)^2 tau^2 + sigma(t)^2`` — ``alpha`` and
``sigma`` of the X process on feature coordinates and of the A process on pair coordinates —
so the joint score is exact.  The set of components is closed under node permutations, so
the density is permutation invariant and the score equivariant, by construction.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array, is_scalar_time, namespace, resolve_rng, to_float_list
from diffcore._validation import check_positive, check_size
from diffcore.graphs._graph import _transpose, check_graphs, pack, packed_mask, quantize, unpack
from diffcore.graphs._system import GraphSDE

__all__ = ["GraphLaboratory"]

Array = Any


def _template_arrays(template: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(X (N_k, F), A (N_k, N_k))`` from a pair or a networkx graph (feature: the degree)."""
    if isinstance(template, tuple) and len(template) == 2:
        X, A = (np.asarray(a, dtype=np.float64) for a in template)
    elif hasattr(template, "nodes") and hasattr(template, "edges"):
        import networkx as nx

        A = nx.to_numpy_array(template, nodelist=sorted(template.nodes), dtype=np.float64)
        X = A.sum(axis=1, keepdims=True)
    else:
        raise TypeError(f"a template must be a pair (X, A) or a networkx graph; got {type(template).__name__}")
    if X.ndim != 2 or A.ndim != 2 or A.shape[0] != A.shape[1] or X.shape[0] != A.shape[0]:
        raise ValueError(f"a template needs X (N_k, F) and A (N_k, N_k); got {X.shape} and {A.shape}")
    check_graphs(X[None], A[None])
    if not (np.all(X == np.round(X)) and np.all(np.isin(A, (0.0, 1.0)))):
        raise ValueError(
            "template features must be integers (types, degrees) and A must be 0/1, so that "
            "quantised samples can be classified"
        )
    return X, A


def _labellings(X: np.ndarray, A: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """All distinct ``(P X, P A P^T)`` over permutations ``P`` of the template's nodes."""
    seen, out = set(), []
    for perm in itertools.permutations(range(A.shape[0])):
        p = list(perm)
        Xp, Ap = X[p], A[np.ix_(p, p)]
        key = Xp.tobytes() + Ap.tobytes()
        if key not in seen:
            seen.add(key)
            out.append((Xp, Ap))
    return out


def _pad(X: np.ndarray, A: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    k = A.shape[0]
    Xp, Ap = np.zeros((n_nodes, X.shape[1])), np.zeros((n_nodes, n_nodes))
    Xp[:k], Ap[:k, :k] = X, A
    return Xp, Ap


def _present_first(mask: Array) -> Array:
    """Permutation matrices ``P (n, N, N)`` moving the present nodes to the front, in order."""
    xp = namespace(mask)
    N = mask.shape[1]
    dev = getattr(mask, "device", None)
    ar = xp.arange(N, dtype=mask.dtype, device=dev)
    perm = xp.argsort((1 - mask) * N + ar[None, :], axis=1)
    return xp.astype(perm[:, :, None] == xp.arange(N, device=dev)[None, None, :], mask.dtype)


@dataclass(frozen=True, eq=False)
class GraphLaboratory:
    r"""A finite set of labelled graphs embedded as a Gaussian mixture on packed coordinates.

    Parameters
    ----------
    templates : a sequence of templates, each a pair ``(X (N_k, F), A (N_k, N_k))`` with integer
        features and a 0/1 symmetric adjacency, or a networkx graph (feature: the degree).
    weights : template probabilities (default equal), normalised.
    tau : the std of each component in packed coordinates (on the present nodes).
    n_nodes : ``N``, the padded size (default the largest template).

    A graph on ``k <= N`` nodes is stored with its present nodes first and the mask
    ``[1]*k + [0]*(N-k)``; given a mask, the law is the mixture over the templates with as many
    nodes as the mask has (weights renormalised), placed on the present nodes in every order.

    Example
    -------
    >>> lab = GraphLaboratory.small()
    >>> [int(c) for c in lab.n_labellings], lab.n_nodes, lab.n_features
    ([12, 3, 4, 12, 60], 5, 1)
    """

    templates: Sequence[Any]
    weights: Any = None
    tau: float = 0.1
    n_nodes: int | None = None
    _means: np.ndarray = field(init=False, repr=False)
    _sizes: np.ndarray = field(init=False, repr=False)
    _labels: np.ndarray = field(init=False, repr=False)
    _log_w: np.ndarray = field(init=False, repr=False)
    _keys: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arrays = [_template_arrays(t) for t in self.templates]
        if not arrays:
            raise ValueError("templates must hold at least one graph")
        if len({X.shape[1] for X, _ in arrays}) != 1:
            raise ValueError(
                f"every template must have the same number of features; got {[X.shape[1] for X, _ in arrays]}"
            )
        check_positive("tau", self.tau)
        N = max(A.shape[0] for _, A in arrays) if self.n_nodes is None else int(self.n_nodes)
        if N < max(A.shape[0] for _, A in arrays):
            raise ValueError(f"n_nodes must be >= the largest template ({max(A.shape[0] for _, A in arrays)}); got {N}")
        w = np.full(len(arrays), 1.0 / len(arrays)) if self.weights is None else np.asarray(self.weights, float)
        if w.shape != (len(arrays),) or np.any(w <= 0):
            raise ValueError(f"weights must be {len(arrays)} positive numbers; got {self.weights!r}")
        w = w / w.sum()
        means, sizes, labels, log_w, keys = [], [], [], [], {}
        for k, (X, A) in enumerate(arrays):
            lab = _labellings(X, A)
            for Xl, Al in lab:
                Xp, Ap = _pad(Xl, Al, N)
                mean = pack(Xp[None], Ap[None])[0]
                keys[(A.shape[0], np.round(mean).astype(np.int64).tobytes())] = k
                means.append(mean)
                sizes.append(A.shape[0])
                labels.append(k)
                log_w.append(math.log(w[k] / len(lab)))
        for name, value in (
            ("n_nodes", N),
            ("weights", w),
            ("_means", np.stack(means)),
            ("_sizes", np.array(sizes)),
            ("_labels", np.array(labels)),
            ("_log_w", np.array(log_w)),
            ("_keys", keys),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def small(cls, tau: float = 0.1, weights: Any = None) -> GraphLaboratory:
        """Path P4, cycle C4, star K_{1,3}, triangle with a pendant (paw), path P5; feature: the degree."""

        def graph(n, edges):
            A = np.zeros((n, n))
            for i, j in edges:
                A[i, j] = A[j, i] = 1.0
            return A.sum(axis=1, keepdims=True), A

        return cls(
            templates=(
                graph(4, [(0, 1), (1, 2), (2, 3)]),
                graph(4, [(0, 1), (1, 2), (2, 3), (3, 0)]),
                graph(4, [(0, 1), (0, 2), (0, 3)]),
                graph(4, [(0, 1), (1, 2), (2, 0), (2, 3)]),
                graph(5, [(0, 1), (1, 2), (2, 3), (3, 4)]),
            ),
            weights=weights,
            tau=tau,
        )

    # -- structure -------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """``F``."""
        return (self._means.shape[1] - self.n_nodes * (self.n_nodes - 1) // 2) // self.n_nodes

    @property
    def n_labellings(self) -> np.ndarray:
        """Distinct labellings of each template (``N_k! / |Aut|``), shape ``(K,)``."""
        return np.bincount(self._labels, minlength=len(self.weights))

    @property
    def sizes(self) -> np.ndarray:
        """Node count of each template, shape ``(K,)``."""
        return np.array([self._sizes[self._labels == k][0] for k in range(len(self.weights))])

    def template_probabilities(self, mask: Array) -> np.ndarray:
        """``P(template k | node count of mask)``, shape ``(n, K)`` (NumPy): the weights renormalised per size."""
        counts = np.asarray(_host(mask)).sum(axis=1).round().astype(int)
        same = counts[:, None] == self.sizes[None, :]
        p = same * self.weights[None, :]
        return p / p.sum(axis=1, keepdims=True)

    # -- the exact law at time t ----------------------------------------------------------
    def _logits(self, X, A, t, mask, system):
        """Per-component log densities ``(n, C)``, the centred differences and variances, and ``P``."""
        X, A, m = check_graphs(X, A, mask)
        xp = namespace(X)
        if X.shape[1] != self.n_nodes or X.shape[2] != self.n_features:
            raise ValueError(
                f"graphs must have N={self.n_nodes} nodes and F={self.n_features} features; "
                f"got X of shape {tuple(X.shape)}"
            )
        P = _present_first(m)
        Xc, Ac, mc = P @ X, P @ A @ _transpose(P), (P @ m[:, :, None])[:, :, 0]
        x, cm = pack(Xc, Ac), packed_mask(mc, self.n_features)
        alpha, var = self._coefficients(system, t, x)
        means = as_array(self._means, x)
        # sum_d cm (x - alpha mu_c)^2 / v, expanded into matrix products: no (n, C, D) array
        w = cm / var
        quad = xp.sum(w * x**2, axis=1)[:, None] - 2 * ((w * alpha * x) @ means.T) + (w * alpha**2) @ (means**2).T
        norm = 0.5 * xp.sum(cm * xp.log(2 * math.pi * var), axis=1)
        count = xp.sum(mc, axis=1)
        same = count[:, None] == as_array(self._sizes, x)[None, :]
        if not bool(xp.all(xp.any(same, axis=1))):
            bad = sorted({int(c) for c, ok in zip(to_float_list(count), to_float_list(xp.any(same, axis=1))) if not ok})
            raise ValueError(
                f"every mask must mark as many nodes as some template has ({sorted({int(s) for s in self._sizes})}); "
                f"got graphs with {bad} present nodes"
            )
        log_w = as_array(self._log_w, x)[None, :]
        logits = xp.where(same, log_w - 0.5 * quad - norm[:, None], -math.inf)
        log_norm_w = _logsumexp(xp.where(same, log_w, -math.inf), xp)
        return logits, log_norm_w, (x, alpha, means), var, cm, P

    def _coefficients(self, system: GraphSDE | None, t: Any, x: Array) -> tuple[Array, Array]:
        """``alpha`` and ``v = alpha^2 tau^2 + sigma^2`` per coordinate, shape ``(n or 1, D)``."""
        xp = namespace(x)
        nx_ = self.n_nodes * self.n_features
        is_x = as_array(np.arange(x.shape[1]) < nx_, x)[None, :]
        if system is None:
            if not (is_scalar_time(t) and float(t) == 0.0):
                raise ValueError(f"a time t > 0 needs the system: pass system=GraphSDE(...); got t={t}")
            one = xp.ones_like(is_x)
            return one, one * self.tau**2
        (ax, aa), (sx, sa) = system.alpha(t), system.sigma(t)
        col = (lambda v: v) if is_scalar_time(t) else (lambda v: as_array(v, x)[:, None])
        alpha = col(ax) * is_x + col(aa) * (1 - is_x)
        sigma = col(sx) * is_x + col(sa) * (1 - is_x)
        return alpha, alpha**2 * self.tau**2 + sigma**2

    def log_prob(self, X: Array, A: Array, mask: Array = None, *, t: Any = 0.0, system: GraphSDE | None = None):
        r"""``log p_t`` of the present packed coordinates given the node count; shape ``(n,)``.

        .. math:: \log p_t(x) = \log \sum_c w_c\, N\big(x;\ \alpha(t) \mu_c,\ \mathrm{diag}\,v(t)\big),

        the sum over the components whose size is the mask's node count, ``w_c`` renormalised
        over them.  ``t = 0`` needs no system (then ``v = tau^2``).
        """
        logits, log_norm_w, *_ = self._logits(X, A, t, mask, system)
        return _logsumexp(logits, namespace(logits)) - log_norm_w

    def exact_score(self, system: GraphSDE):
        r"""The exact joint score ``(X, A, t, mask) -> (s_X, s_A)`` of the laboratory under ``system``.

        .. math:: s(x) = -\sum_c r_c(x)\, \frac{x - \alpha(t)\mu_c}{v(t)}, \qquad
                  r_c = \operatorname{softmax}_c\big(\log w_c + \log N(x; \alpha\mu_c, v)\big),

        on the packed coordinates (the upper-triangle convention of :class:`GraphReverseSDE`),
        zero on masked-out nodes; log-sum-exp responsibilities; NumPy or torch.  ``t`` is a
        float or ``(n,)``.
        """
        if not isinstance(system, GraphSDE):
            raise TypeError(f"system must be a GraphSDE; got {type(system).__name__}")

        def score(X, A, t, mask=None):
            logits, _, (x, alpha, means), var, cm, P = self._logits(X, A, t, mask, system)
            xp = namespace(logits)
            r = xp.exp(logits - _logsumexp(logits, xp)[:, None])
            s = -(x - alpha * (r @ means)) / var * cm
            s_x, s_a = unpack(s, self.n_nodes, self.n_features)
            Pt = _transpose(P)
            return Pt @ s_x, Pt @ s_a @ P

        return score

    # -- data ------------------------------------------------------------------------------
    def sample(self, n: int, rng: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw ``n`` graphs at ``t = 0``: a component by weight, plus ``tau`` noise on its present coordinates.

        Returns NumPy ``(X (n, N, F), A (n, N, N), mask (n, N))``; present nodes come first.
        """
        n = check_size(n, "n")
        rng = resolve_rng(rng)
        if not isinstance(rng, np.random.Generator):
            raise TypeError("GraphLaboratory.sample draws with a NumPy generator (or an int seed)")
        comp = rng.choice(len(self._means), size=n, p=np.exp(self._log_w))
        mask = (np.arange(self.n_nodes)[None, :] < self._sizes[comp][:, None]).astype(np.float64)
        cm = packed_mask(mask, self.n_features)
        x = (self._means[comp] + self.tau * rng.standard_normal((n, self._means.shape[1]))) * cm
        X, A = unpack(x, self.n_nodes, self.n_features)
        return X, A, mask

    def classify(self, X: Array, A: Array, mask: Array = None, threshold: float = 0.5) -> np.ndarray:
        """The template index of each graph after quantisation, up to isomorphism; ``-1`` if none matches.

        ``A`` is quantised (:func:`quantize`) and the features rounded to the nearest integer;
        the graph matches template ``k`` when it equals one of ``k``'s labellings on its
        present nodes.  Returns NumPy ``int64 (n,)``.
        """
        X, A, m = (_host(a) for a in check_graphs(X, A, mask))
        P = _present_first(m)
        Xc, Ac, mc = P @ np.round(X), P @ quantize(A, threshold, m) @ _transpose(P), (P @ m[:, :, None])[:, :, 0]
        keys = np.round(pack(Xc, Ac) * packed_mask(mc, self.n_features)).astype(np.int64)
        counts = mc.sum(axis=1).round().astype(int)
        return np.array([self._keys.get((int(c), k.tobytes()), -1) for c, k in zip(counts, keys, strict=True)])


def _logsumexp(v: Array, xp: Any) -> Array:
    top = xp.max(v, axis=1)
    safe = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    return safe + xp.log(xp.sum(xp.exp(v - safe[:, None]), axis=1))


def _host(a: Array) -> np.ndarray:
    return np.asarray(a.detach().cpu()) if hasattr(a, "detach") else np.asarray(a, dtype=np.float64)
