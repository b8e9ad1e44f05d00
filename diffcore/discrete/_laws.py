r"""State spaces of token sequences and exact data laws on them.

A state is a sequence ``x = (x_1, ..., x_L)`` of integer codes in ``{0, ..., S - 1}``; a batch is an
``(n, L)`` integer array.  The ``S^L`` sequences are numbered lexicographically,

.. math:: \mathrm{index}(x) = \sum_{l=1}^{L} x_l\, S^{L - l},

so that :func:`enumerate_states` lists them in that order.  Data live on the first ``V`` codes;
an absorbing process adds the mask ``V`` (``S = V + 1``, Austin et al. 2021, sec. 3).

Three laws: :class:`TableLaw` (an explicit table over all ``V^L`` sequences, up to ~10^5),
:class:`MarkovChainLaw` (a homogeneous chain) and :class:`FactorizedLaw` (independent tokens); the
last two give a table by :meth:`table` when ``V^L`` is small enough to enumerate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj, is_torch_array

from diffcore._array import resolve_rng, uniform
from diffcore._validation import check_array, check_same_namespace, check_size, check_steps

__all__ = [
    "FactorizedLaw",
    "MarkovChainLaw",
    "TableLaw",
    "check_enumerable",
    "check_tokens",
    "enumerate_states",
    "state_index",
]

MAX_STATES = 100_000
_SUM_TOL = 1e-9  # a law's total mass may differ from 1 by rounding only


# -- validation --------------------------------------------------------------------------------------
def check_tokens(name: str, x: Any, num_states: int, length: int | None = None) -> np.ndarray:
    """A batch of token sequences ``(n, L)`` with codes in ``{0, ..., num_states - 1}``, as int64 NumPy.

    Integer and boolean arrays pass; float arrays pass when every entry is a whole number (a
    NaN, an infinity or ``2.5`` is refused with a ``ValueError``); complex arrays and non-arrays
    (lists, scalars) are refused with a ``TypeError``.  Torch tensors come to the host.  An empty
    batch ``(0, L)`` is valid.

    Raises
    ------
    TypeError
        ``x`` is not a real array.
    ValueError
        wrong number of axes, wrong length ``L``, a non-integral or non-finite value, or a token
        outside the alphabet (the message names the first bad value and its position).
    """
    if not is_array_api_obj(x) or isinstance(x, (int, float, complex, bool)) or not hasattr(x, "shape"):
        raise TypeError(f"{name} must be an integer array of shape (n, L); got {type(x).__name__}")
    if is_torch_array(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind == "c":
        raise TypeError(f"{name} must hold integer token codes; got complex dtype {x.dtype}")
    if x.dtype.kind not in "iubf":
        raise TypeError(f"{name} must hold integer token codes; got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, L); got {x.shape}")
    if length is not None and x.shape[1] != length:
        raise ValueError(f"{name} must have shape (n, L) with L = {length}; got {x.shape}")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            raise ValueError(f"{name} must be finite; it contains {x[bad][0]} at {_where(bad)}")
        bad = x != np.round(x)
        if bad.any():
            raise ValueError(f"{name} must hold integer token codes; got {x[bad][0]} at {_where(bad)}")
    out = x.astype(np.int64)
    bad = (out < 0) | (out >= num_states)
    if bad.any():
        raise ValueError(
            f"{name} holds token {out[bad][0]} at {_where(bad)}, outside the alphabet {{0, ..., {num_states - 1}}}"
        )
    return out


def _where(mask: np.ndarray) -> str:
    i = tuple(int(v) for v in np.argwhere(mask)[0])
    return f"position {i}"


def check_enumerable(num_states: int, length: int, max_states: int = MAX_STATES) -> int:
    """``S^L`` when it is at most ``max_states``; else ``ValueError`` naming ``S``, ``L`` and ``S^L``."""
    size = num_states**length  # a Python int: no overflow
    if size > max_states:
        raise ValueError(
            f"state space too large to enumerate: S^L = {num_states}^{length} = {size} > max_states = {max_states} "
            "(use a smaller vocabulary or length, or raise max_states if the memory allows)"
        )
    return int(size)


def _probability_vector(name: str, p: Any, size: int | None = None) -> np.ndarray:
    """A finite, non-negative 1-D probability vector summing to 1 (within rounding), as float64."""
    p = check_array(name, p, ndim=1, finite=False)
    if is_torch_array(p):
        p = p.detach().cpu().numpy()
    p = np.asarray(p, dtype=np.float64)
    if size is not None and p.shape[0] != size:
        raise ValueError(f"{name} must have shape ({size},); got {p.shape}")
    return _normalised(name, p, axis=None)


def _normalised(name: str, p: np.ndarray, axis: int | None) -> np.ndarray:
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    if np.any(p < 0):
        raise ValueError(f"{name} must be non-negative; got {p[p < 0][0]} at {_where(p < 0)}")
    total = p.sum(axis=axis, keepdims=axis is not None)
    off = np.abs(total - 1.0) > _SUM_TOL
    if np.any(off):
        which = "" if axis is None else f" (row {int(np.argwhere(off.reshape(-1))[0, 0])})"
        raise ValueError(f"{name} must sum to 1{which}; got sum {np.asarray(total)[off][0]!r}")
    return p / total


# -- state spaces -------------------------------------------------------------------------------------
def enumerate_states(num_states: int, length: int, *, max_states: int = MAX_STATES) -> np.ndarray:
    r"""All ``S^L`` sequences of length ``L`` over ``{0, ..., S - 1}``, in lexicographic order.

    Row ``i`` is the sequence with :func:`state_index` ``i``: its digits in base ``S``,
    most significant first.

    Parameters
    ----------
    num_states : int
        ``S >= 1``, the per-token state count (``V``, or ``V + 1`` with a mask).
    length : int
        ``L >= 1``.
    max_states : int
        refuse (``ValueError``, naming ``S``, ``L`` and ``S^L``) when ``S^L`` exceeds it.

    Returns
    -------
    np.ndarray, int64, shape ``(S^L, L)``

    Examples
    --------
    >>> enumerate_states(2, 2).tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    """
    num_states, length = check_steps(num_states, "num_states"), check_steps(length, "length")
    size = check_enumerable(num_states, length, check_steps(max_states, "max_states"))
    idx = np.arange(size, dtype=np.int64)
    powers = num_states ** np.arange(length - 1, -1, -1, dtype=np.int64)
    return (idx[:, None] // powers[None, :]) % num_states


def state_index(x: Any, num_states: int) -> np.ndarray:
    r"""Lexicographic index :math:`\sum_l x_l S^{L-l}` of each sequence of a batch ``x (n, L)``: shape ``(n,)``.

    Examples
    --------
    >>> state_index(np.array([[1, 0], [1, 1]]), 2).tolist()
    [2, 3]
    """
    num_states = check_steps(num_states, "num_states")
    x = check_tokens("x", x, num_states)
    if num_states ** x.shape[1] > 2**62:
        raise ValueError(f"state space too large to index: S^L = {num_states}^{x.shape[1]} exceeds int64")
    powers = num_states ** np.arange(x.shape[1] - 1, -1, -1, dtype=np.int64)
    return x @ powers


def _sample_categorical(rng: Any, probs: np.ndarray, n: int) -> np.ndarray:
    """``n`` draws of an index from the probability vector ``probs`` (inverse CDF)."""
    cdf = np.cumsum(probs)
    u = uniform(rng, (n,)) * cdf[-1]
    return np.minimum(np.searchsorted(cdf, u, side="right"), probs.shape[0] - 1)


def _sample_rows(rng: Any, rows: np.ndarray) -> np.ndarray:
    """One draw per row of ``rows (n, K)`` (each a probability vector)."""
    cdf = np.cumsum(rows, axis=1)
    u = uniform(rng, (rows.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), rows.shape[1] - 1)


# -- laws -----------------------------------------------------------------------------------------------
class TableLaw:
    r"""An explicit law over all ``V^L`` sequences: ``p(x) = probs[index(x)]``.

    Parameters
    ----------
    probs : array, shape ``(V^L,)``
        finite, non-negative, summing to 1 (within ``1e-9``; then renormalised), indexed by
        :func:`state_index`.
    vocab_size : int
        ``V``.
    length : int
        ``L``.

    Examples
    --------
    >>> law = TableLaw(np.array([0.5, 0.0, 0.0, 0.5]), vocab_size=2, length=2)
    >>> law.log_prob(np.array([[1, 1]])).round(4).tolist()
    [-0.6931]
    """

    def __init__(self, probs: Any, vocab_size: int, length: int) -> None:
        self.vocab_size = check_steps(vocab_size, "vocab_size")
        self.length = check_steps(length, "length")
        size = check_enumerable(self.vocab_size, self.length)
        self.probs = _probability_vector("probs", probs, size)
        self.probs.setflags(write=False)

    @property
    def num_sequences(self) -> int:
        """``V^L``."""
        return self.probs.shape[0]

    def table(self) -> TableLaw:
        """This law (every law has a table; here it is itself)."""
        return self

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` independent sequences, shape ``(n, L)``, int64."""
        n, rng = check_size(n, "n"), resolve_rng(rng)
        return enumerate_states(self.vocab_size, self.length)[_sample_categorical(rng, self.probs, n)]

    def log_prob(self, x: Any) -> np.ndarray:
        """``log p(x)`` per sequence, shape ``(n,)`` (``-inf`` off the support)."""
        x = check_tokens("x", x, self.vocab_size, self.length)
        with np.errstate(divide="ignore"):
            return np.log(self.probs[state_index(x, self.vocab_size)])

    def marginals(self) -> np.ndarray:
        """Per-token marginals ``p(x_l = k)``, shape ``(L, V)``."""
        tensor = self.probs.reshape((self.vocab_size,) * self.length)
        axes = set(range(self.length))
        return np.stack([tensor.sum(axis=tuple(axes - {lv})) for lv in range(self.length)])

    def probs_over(self, num_states: int) -> np.ndarray:
        r"""The same law over the ``S^L`` sequences of an alphabet of ``S >= V`` codes, shape ``(S^L,)``.

        Zero on every sequence holding a code ``>= V`` (the mask of an absorbing process).
        """
        num_states = check_steps(num_states, "num_states")
        if num_states < self.vocab_size:
            raise ValueError(f"num_states must be >= vocab_size = {self.vocab_size}; got {num_states}")
        check_enumerable(num_states, self.length)
        out = np.zeros(num_states**self.length)
        idx = state_index(enumerate_states(self.vocab_size, self.length), num_states)
        out[idx] = self.probs
        return out


class MarkovChainLaw:
    r"""A homogeneous Markov chain of ``L`` tokens: :math:`p(x) = \pi_0(x_1)\prod_{l\ge 2} T[x_{l-1}, x_l]`.

    Parameters
    ----------
    initial : array, shape ``(V,)``
        law of the first token.
    transition : array, shape ``(V, V)``
        row-stochastic: ``transition[i, j] = p(x_{l+1} = j | x_l = i)``.
    length : int
        ``L``.
    """

    def __init__(self, initial: Any, transition: Any, length: int) -> None:
        check_same_namespace(initial=initial, transition=transition)
        self.initial = _probability_vector("initial", initial)
        self.vocab_size = self.initial.shape[0]
        self.length = check_steps(length, "length")
        T = check_array("transition", transition, ndim=2, finite=False)
        T = np.asarray(T.detach().cpu().numpy() if is_torch_array(T) else T, dtype=np.float64)
        if T.shape != (self.vocab_size, self.vocab_size):
            raise ValueError(f"transition must have shape ({self.vocab_size}, {self.vocab_size}); got {T.shape}")
        self.transition = _normalised("transition", T, axis=1)
        for a in (self.initial, self.transition):
            a.setflags(write=False)

    def table(self, *, max_states: int = MAX_STATES) -> TableLaw:
        """The explicit :class:`TableLaw` (refused when ``V^L > max_states``)."""
        states = enumerate_states(self.vocab_size, self.length, max_states=max_states)
        return _TrustedTable(np.exp(self._log_prob(states)), self.vocab_size, self.length)

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` independent sequences, shape ``(n, L)``, int64 (ancestral sampling)."""
        n, rng = check_size(n, "n"), resolve_rng(rng)
        x = np.empty((n, self.length), dtype=np.int64)
        x[:, 0] = _sample_categorical(rng, self.initial, n)
        for lv in range(1, self.length):
            x[:, lv] = _sample_rows(rng, self.transition[x[:, lv - 1]])
        return x

    def log_prob(self, x: Any) -> np.ndarray:
        """``log p(x)`` per sequence, shape ``(n,)``."""
        return self._log_prob(check_tokens("x", x, self.vocab_size, self.length))

    def _log_prob(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            out = np.log(self.initial[x[:, 0]])
            for lv in range(1, self.length):
                out = out + np.log(self.transition[x[:, lv - 1], x[:, lv]])
        return out

    def marginals(self) -> np.ndarray:
        """Per-token marginals ``p(x_l = k)``, shape ``(L, V)``."""
        rows = [self.initial]
        for _ in range(1, self.length):
            rows.append(rows[-1] @ self.transition)
        return np.stack(rows)


class FactorizedLaw:
    r"""Independent tokens: :math:`p(x) = \prod_l m_l(x_l)`.

    Parameters
    ----------
    marginals : array, shape ``(L, V)``
        each row a probability vector.
    """

    def __init__(self, marginals: Any) -> None:
        m = check_array("marginals", marginals, ndim=2, finite=False)
        m = np.asarray(m.detach().cpu().numpy() if is_torch_array(m) else m, dtype=np.float64)
        if m.shape[0] < 1 or m.shape[1] < 1:
            raise ValueError(f"marginals must have shape (L, V) with L, V >= 1; got {m.shape}")
        self._marginals = _normalised("marginals", m, axis=1)
        self._marginals.setflags(write=False)
        self.length, self.vocab_size = m.shape

    def marginals(self) -> np.ndarray:
        """Per-token marginals, shape ``(L, V)``."""
        return self._marginals

    def table(self, *, max_states: int = MAX_STATES) -> TableLaw:
        """The explicit :class:`TableLaw` (refused when ``V^L > max_states``)."""
        states = enumerate_states(self.vocab_size, self.length, max_states=max_states)
        return _TrustedTable(np.exp(self._log_prob(states)), self.vocab_size, self.length)

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` independent sequences, shape ``(n, L)``, int64."""
        n, rng = check_size(n, "n"), resolve_rng(rng)
        cols = [_sample_categorical(rng, self._marginals[lv], n) for lv in range(self.length)]
        return np.stack(cols, axis=1) if cols else np.empty((n, 0), dtype=np.int64)

    def log_prob(self, x: Any) -> np.ndarray:
        """``log p(x)`` per sequence, shape ``(n,)``."""
        return self._log_prob(check_tokens("x", x, self.vocab_size, self.length))

    def _log_prob(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            logs = np.log(self._marginals)
        return sum((logs[lv, x[:, lv]] for lv in range(self.length)), np.zeros(x.shape[0]))


class _TrustedTable(TableLaw):
    """A :class:`TableLaw` built from a vector that is a law by construction (sums to 1 up to rounding)."""

    def __init__(self, probs: np.ndarray, vocab_size: int, length: int) -> None:
        self.vocab_size, self.length = vocab_size, length
        self.probs = probs / probs.sum()
        self.probs.setflags(write=False)


def as_table(law: Any) -> TableLaw:
    """The :class:`TableLaw` of a law (one of the three above, or anything with ``.table()``)."""
    table = getattr(law, "table", None)
    if not callable(table):
        raise TypeError(
            "law must be a TableLaw, MarkovChainLaw or FactorizedLaw (anything with .table()); "
            f"got {type(law).__name__}"
        )
    out = table()
    if not isinstance(out, TableLaw):
        raise TypeError(f"law.table() must return a TableLaw; got {type(out).__name__}")
    return out
