"""Graph batches: validation, packing into flat coordinates, symmetric noise, quantisation.

A batch of ``n`` graphs on (at most) ``N`` nodes is a triple ``(X, A, mask)``: node features
``X (n, N, F)``, a symmetric adjacency ``A (n, N, N)`` with zero diagonal, and a node mask
``mask (n, N)`` of 0/1 (``None``: every node present).  Its *coordinates* are the entries of
``X`` and the strict upper triangle of ``A``; :func:`pack` lays them out as one flat state
``(n, N F + N (N - 1) / 2)`` so that the generic samplers run unchanged on graphs, and i.i.d.
noise on the packed upper triangle *is* symmetric noise on ``A`` (Jo, Lee and Hwang 2022, sec. 3).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diffcore._array import as_array, namespace, normal, resolve_rng
from diffcore._validation import check_array, check_real, check_same_namespace, check_size, check_steps

__all__ = [
    "check_graphs",
    "n_coordinates",
    "node_pair_mask",
    "pack",
    "packed_mask",
    "quantize",
    "symmetric_noise",
    "to_networkx",
    "unpack",
]

Array = Any


def n_coordinates(n_nodes: int, n_features: int) -> int:
    """``D = N F + N (N - 1) / 2``: the packed coordinates of a graph on ``N >= 1`` nodes with ``F >= 0`` features."""
    n_nodes, n_features = check_steps(n_nodes, "n_nodes"), check_size(n_features, "n_features")
    return n_nodes * n_features + n_nodes * (n_nodes - 1) // 2


def _upper(n_nodes: int, like: Array) -> tuple[Array, Array]:
    iu, ju = np.triu_indices(n_nodes, k=1)
    xp = namespace(like)
    dev = getattr(like, "device", None) if not isinstance(like, np.ndarray) else None
    if dev is None:
        return iu, ju
    return xp.asarray(iu, device=dev), xp.asarray(ju, device=dev)


def _transpose(a: Array) -> Array:
    return namespace(a).permute_dims(a, (0, 2, 1))


def node_pair_mask(mask: Array) -> Array:
    """``m_i m_j`` with zero diagonal: which entries of ``A`` belong to present node pairs; ``(n, N, N)``."""
    xp = namespace(mask)
    pairs = mask[:, :, None] * mask[:, None, :]
    eye = xp.eye(mask.shape[1], dtype=pairs.dtype, device=getattr(mask, "device", None))
    return pairs * (1 - eye)


def pack(X: Array, A: Array) -> Array:
    r"""Flatten a graph batch into its coordinates: ``[vec(X), (A_ij)_{i<j}]``, shape ``(n, N F + N(N-1)/2)``.

    The node features come first in row-major order, then the strict upper triangle of ``A``
    row by row (the order of ``numpy.triu_indices(N, 1)``).  ``A``'s lower triangle and
    diagonal are not read: :func:`unpack` restores them by symmetry, so ``unpack(pack(X, A))``
    returns ``(X, A)`` for every valid graph batch.

    Example
    -------
    >>> import numpy as np
    >>> A = np.array([[[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, 0.0]]])
    >>> pack(np.zeros((1, 3, 1)), A)[0, 3:].tolist()
    [1.0, 0.0, 2.0]
    """
    X, A = _check_pair(X, A)
    xp = namespace(X)
    n, N = A.shape[0], A.shape[1]
    iu, ju = _upper(N, A)
    return xp.concat([xp.reshape(X, (n, N * X.shape[2])), A[:, iu, ju]], axis=1)


def unpack(z: Array, n_nodes: int, n_features: int) -> tuple[Array, Array]:
    """Inverse of :func:`pack`: ``(n, D) -> (X (n, N, F), A (n, N, N))`` with ``A`` mirrored, zero diagonal."""
    z = check_array("z", z, ndim=2, finite=False)
    xp = namespace(z)
    n, N, F = z.shape[0], n_nodes, n_features
    if z.shape[1] != n_coordinates(N, F):
        raise ValueError(
            f"a packed graph state on N={N} nodes with F={F} features has shape (n, {n_coordinates(N, F)}); "
            f"got {tuple(z.shape)}"
        )
    X = xp.reshape(z[:, : N * F], (n, N, F))
    iu, ju = _upper(N, z)
    upper = xp.zeros((n, N, N), dtype=z.dtype, device=getattr(z, "device", None))
    upper[:, iu, ju] = z[:, N * F :]
    return X, upper + _transpose(upper)


def packed_mask(mask: Array, n_features: int) -> Array:
    """The 0/1 mask of the packed coordinates ``(n, D)``: features of present nodes, pairs of present nodes."""
    n_features = check_size(n_features, "n_features")
    xp = namespace(mask)
    n, N = mask.shape
    feats = xp.reshape(xp.broadcast_to(mask[:, :, None], (n, N, n_features)), (n, N * n_features))
    iu, ju = _upper(N, mask)
    pairs = mask[:, iu] * mask[:, ju]
    return xp.concat([feats, pairs], axis=1)


def symmetric_noise(shape: tuple[int, int, int], rng: Any = None, *, mask: Array = None, like: Array = None) -> Array:
    r"""Symmetric Gaussian noise for adjacencies: ``Z_ij = Z_ji ~ N(0, 1)`` i.i.d. for ``i < j``, ``Z_ii = 0``.

    Shape ``(n, N, N)``; entries touching a masked-out node are zero.  This is the noise of the
    adjacency diffusion of Jo, Lee and Hwang (2022, sec. 3.1 and app. C): one standard normal
    per unordered node pair, mirrored — exactly :func:`unpack` of i.i.d. packed noise.
    ``like`` gives the array type, dtype and device (NumPy float64 when omitted, or a torch
    tensor on the generator's device for a ``torch.Generator``).

    Example
    -------
    >>> import numpy as np
    >>> Z = symmetric_noise((2, 4, 4), rng=0)
    >>> bool(np.all(Z == Z.transpose(0, 2, 1))), float(np.abs(np.diagonal(Z, axis1=1, axis2=2)).max())
    (True, 0.0)
    """
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"shape must be (n, N, N); got {tuple(shape)}")
    n, N = int(shape[0]), int(shape[1])
    rng = resolve_rng(rng)
    like = _default_like(rng, like)
    z = normal(rng, (n, N * (N - 1) // 2), like)
    _, Z = unpack(z, N, 0)
    if mask is not None:
        Z = Z * node_pair_mask(_mask_like(mask, Z, n, N))
    return Z


def _default_like(rng: Any, like: Array) -> Array:
    if like is not None:
        return like
    if isinstance(rng, np.random.Generator):
        return np.empty(0)
    import torch  # a torch.Generator was given

    return torch.empty(0, device=rng.device)


def _mask_like(mask: Array, like: Array, n: int, N: int) -> Array:
    m = as_array(mask, like)
    if tuple(m.shape) != (n, N):
        raise ValueError(f"mask must have shape (n, N) = ({n}, {N}); got {tuple(m.shape)}")
    return m


def _check_pair(X: Any, A: Any) -> tuple[Array, Array]:
    """``X (n, N, F)`` and ``A (n, N, N)`` as real arrays of one library (integer and boolean promoted)."""
    check_same_namespace(X=X, A=A)
    X = check_array("X", X, ndim=3, finite=False, shape="(n, N, F)")
    A = check_array("A", A, ndim=3, finite=False, shape="(n, N, N)")
    if X.dtype != A.dtype:
        A = as_array(A, X)
    return X, A


def check_graphs(X: Array, A: Array, mask: Array = None, *, rtol: float | None = None) -> tuple[Array, Array, Array]:
    r"""Validate a graph batch and return ``(X, A, mask)`` with ``mask`` as a float 0/1 array.

    Rules (each violation raises with the rule and the value found):

    * ``X`` is ``(n, N, F)`` and ``A`` is ``(n, N, N)`` with the same ``n`` and ``N``; both finite;
    * ``A`` is symmetric and has a zero diagonal, up to ``tol = rtol * max(1, max|A|)`` with
      ``rtol = 100 * eps(dtype)`` unless given (about ``2e-14`` in float64, ``1e-5`` in float32);
    * ``mask`` is ``(n, N)`` of 0/1 (bool or numeric; ``None`` means every node present), and the
      features of masked-out nodes and the rows and columns of ``A`` at masked-out nodes are zero
      (same tolerance).

    Returned ``mask`` has ``X``'s array type, dtype and device.
    """
    X, A = _check_pair(X, A)
    xp = namespace(X, A)
    n, N = A.shape[0], A.shape[1]
    if A.shape[2] != N:
        raise ValueError(f"A must be square, (n, N, N); got shape {tuple(A.shape)}")
    if X.shape[0] != n:
        raise ValueError(f"X and A must have the same batch size; got {X.shape[0]} and {n}")
    if X.shape[1] != N:
        raise ValueError(f"X and A must have the same number of nodes N; got {X.shape[1]} and {N}")
    for name, arr in (("X", X), ("A", A)):
        if math.prod(arr.shape) and not bool(xp.all(xp.isfinite(arr))):
            raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    if rtol is None:
        rtol = 100 * float(np.finfo(np.float32 if "32" in str(A.dtype) else np.float64).eps)
    tol = rtol * max(1.0, float(xp.max(xp.abs(A))) if n and N else 1.0)
    asym = float(xp.max(xp.abs(A - _transpose(A)))) if n and N else 0.0
    if asym > tol:
        raise ValueError(f"A must be symmetric (|A - A^T| <= {tol:.3g}); got max |A_ij - A_ji| = {asym:.3g}")
    diag = float(xp.max(xp.abs(xp.linalg.diagonal(A)))) if n and N else 0.0
    if diag > tol:
        raise ValueError(f"A must have a zero diagonal (|A_ii| <= {tol:.3g}); got max |A_ii| = {diag:.3g}")
    if mask is None:
        return X, A, xp.ones((n, N), dtype=X.dtype, device=getattr(X, "device", None))
    if not hasattr(mask, "shape"):
        raise TypeError(f"mask must be an array of shape (n, N); got {type(mask).__name__}")
    if tuple(mask.shape) != (n, N):
        raise ValueError(f"mask must have shape (n, N) = ({n}, {N}); got {tuple(mask.shape)}")
    m = as_array(mask, X)
    if not bool(xp.all((m == 0) | (m == 1))):
        raise ValueError("mask must hold only 0 and 1 (or False and True)")
    if n and N:
        off_x = float(xp.max(xp.abs(X * (1 - m)[:, :, None]))) if X.shape[2] else 0.0
        if off_x > tol:
            raise ValueError(f"features of masked-out nodes must be zero; got max |X| = {off_x:.3g} there")
        off_a = float(xp.max(xp.abs(A * (1 - node_pair_mask(m)))))
        if off_a > tol:
            raise ValueError(f"rows and columns of A at masked-out nodes must be zero; got max |A| = {off_a:.3g} there")
    return X, A, m


def quantize(A: Array, threshold: float = 0.5, mask: Array = None) -> Array:
    r"""Round a sampled adjacency to a simple graph: ``Q_ij = 1[(A_ij + A_ji)/2 > threshold]``.

    ``Q`` is symmetric with zero diagonal, zero at masked-out nodes, with ``A``'s array type,
    dtype and device; ``(n, N, N) -> (n, N, N)``.  The 0.5 threshold is the rounding used
    after sampling by Jo, Lee and Hwang (2022, app. C.2).

    Example
    -------
    >>> import numpy as np
    >>> quantize(np.array([[[0.0, 0.7], [0.7, 0.0]]]))[0].tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    A = check_array("A", A, ndim=3, shape="(n, N, N)")
    threshold = check_real("threshold", threshold)
    xp = namespace(A)
    sym = 0.5 * (A + _transpose(A))
    q = xp.astype(sym > threshold, A.dtype)
    m = xp.ones(A.shape[:2], dtype=A.dtype, device=getattr(A, "device", None)) if mask is None else as_array(mask, A)
    return q * node_pair_mask(m)


def to_networkx(X: Array, A: Array, mask: Array = None) -> list:
    """A list of ``networkx.Graph`` objects, one per graph of the batch (networkx is imported lazily).

    Node ``i`` (present nodes only, keeping their indices) carries the attribute ``x`` (its
    feature vector as a NumPy array); an edge ``(i, j)`` is present where ``A_ij != 0`` and
    carries ``weight = A_ij``.  Quantise first (:func:`quantize`) for simple graphs.
    """
    import networkx as nx

    X, A, m = (np.asarray(a.detach().cpu() if hasattr(a, "detach") else a) for a in check_graphs(X, A, mask))
    graphs = []
    for b in range(A.shape[0]):
        g = nx.Graph()
        nodes = [i for i in range(A.shape[1]) if m[b, i]]
        g.add_nodes_from((i, {"x": X[b, i].copy()}) for i in nodes)
        g.add_edges_from(
            (i, j, {"weight": float(A[b, i, j])}) for i in nodes for j in nodes if i < j and A[b, i, j] != 0
        )
        graphs.append(g)
    return graphs
