r"""Exact reverse-time quantities of the discrete laboratory, by enumeration of the clean sequences.

For a forward process with per-token transition ``P = P_{t|0}`` and a data law ``p_0`` on ``V^L``
sequences, the joint law is :math:`q(x_0, x_t) = p_0(x_0) \prod_l P[x_{0,l}, x_{t,l}]`.  From it:

* the posterior over clean sequences :math:`p(x_0 \mid x_t)` and its per-token marginals (the
  *denoiser* a network learns; Austin et al. 2021, sec. 3.3; Sahoo et al. 2024; Shi et al. 2024);
* the *concrete score*, the ratios :math:`p_t(y) / p_t(x)` for every ``y`` that differs from ``x``
  in one token (Meng et al. 2022; Lou et al. 2024, sec. 3);
* the reverse CTMC rates (Campbell et al. 2022, Prop. 1; Lou et al. 2024, eq. 3):

.. math:: \hat R_t(x \to y) = \beta(t)\, Q[y_l, x_l]\, \frac{p_t(y)}{p_t(x)},
          \qquad y = x \text{ with token } l \text{ changed},

and the same rates from a per-token denoiser (Campbell et al. 2022, eq. 9):

.. math:: \frac{p_t(y)}{p_t(x)} = \sum_{k} p(x_{0,l} = k \mid x)\, \frac{P[k, y_l]}{P[k, x_l]} .

Cost: ``O(n L V^L)`` per call (``O(n L^2 V^L)`` for the scores); every function refuses
``V^L > 100000``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj, is_torch_array

from diffcore._validation import check_scalar_time
from diffcore.discrete._laws import MAX_STATES, TableLaw, as_table, check_enumerable, check_tokens, enumerate_states
from diffcore.discrete._processes import AbstractCTMCDiffusion

__all__ = [
    "ExactDenoiser",
    "concrete_score",
    "concrete_score_from_denoiser",
    "exact_denoiser",
    "exact_posterior_x0",
    "reverse_generator",
    "reverse_rates",
    "reverse_rates_from_denoiser",
]

_BLOCK = 2_000_000  # entries of an (n, V^L) block held at once
_NORM_TOL = 1e-5  # a denoiser's rows sum to 1 up to float32 rounding


def _process(process: Any) -> AbstractCTMCDiffusion:
    if not isinstance(process, AbstractCTMCDiffusion):
        raise TypeError(
            f"process must be a UniformDiffusion, AbsorbingDiffusion or MarkovDiffusion; got {type(process).__name__}"
        )
    return process


class _Setup:
    """Process, table, enumerated clean sequences: what every exact quantity needs."""

    def __init__(self, process: Any, law: Any) -> None:
        self.process = _process(process)
        self.table: TableLaw = as_table(law)
        self.V, self.L, self.S = self.table.vocab_size, self.table.length, self.process.num_states
        if self.V > self.process.vocab_size:
            raise ValueError(
                f"law has vocab_size {self.V}, more than the process's vocab_size {self.process.vocab_size}"
            )
        check_enumerable(self.V, self.L, MAX_STATES)
        self.x0s = enumerate_states(self.V, self.L)
        self.p0 = self.table.probs

    def tokens(self, name: str, x: Any) -> np.ndarray:
        return check_tokens(name, x, self.S, self.L)

    def factors(self, x: np.ndarray, P: np.ndarray) -> list[np.ndarray]:
        """``F_l[i, j] = P[x0_j,l, x_i,l]``, each ``(n, V^L)``."""
        return [P.T[x[:, lv]][:, self.x0s[:, lv]] for lv in range(self.L)]

    def blocks(self, n: int) -> list[slice]:
        step = max(1, _BLOCK // max(1, self.x0s.shape[0] * self.L))
        return [slice(i, min(n, i + step)) for i in range(0, n, step)] or [slice(0, 0)]

    def token_sums(self, w: np.ndarray, lv: int) -> np.ndarray:
        """``sum over x0 with x0_l = k`` of ``w (n, V^L)``: shape ``(n, V)``."""
        n = w.shape[0]
        return w.reshape(n, self.V**lv, self.V, self.V ** (self.L - 1 - lv)).sum(axis=(1, 3))


def _joint(setup: _Setup, x: np.ndarray, t: float) -> np.ndarray:
    """``q(x_0, x_t = x)`` for every clean sequence: shape ``(n, V^L)``."""
    P = setup.process.transition(t)
    out = np.empty((x.shape[0], setup.x0s.shape[0]))
    for b in setup.blocks(x.shape[0]):
        w = np.broadcast_to(setup.p0, (b.stop - b.start, setup.p0.shape[0])).copy()
        for f in setup.factors(x[b], P):
            w *= f
        out[b] = w
    return out


def _refuse_impossible(name: str, x: np.ndarray, p: np.ndarray, t: float) -> None:
    bad = ~(p > 0)
    if np.any(bad):
        i = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"{name}[{i}] = {x[i].tolist()} has probability 0 under q_t at t = {t}")


def exact_posterior_x0(process: Any, law: Any, x_t: Any, t: float) -> np.ndarray:
    r"""The exact posterior over clean sequences, :math:`p(x_0 \mid x_t)`, shape ``(n, V^L)``.

    :math:`p(x_0 \mid x_t) = p_0(x_0) \prod_l P_{t|0}[x_{0,l}, x_{t,l}] / q_t(x_t)`, columns in the
    order of :func:`enumerate_states` ``(V, L)``.  A state ``x_t`` of probability zero is refused.
    """
    setup = _Setup(process, law)
    t = check_scalar_time(t)
    x_t = setup.tokens("x_t", x_t)
    joint = _joint(setup, x_t, t)
    px = joint.sum(axis=1)
    _refuse_impossible("x_t", x_t, px, t)
    return joint / px[:, None]


class ExactDenoiser:
    r"""The exact per-token denoiser :math:`p(x_{0,l} = k \mid x_t)`: call it as ``den(x_t)`` or ``den(x_t, t)``.

    Built by :func:`exact_denoiser`; the enumeration of the clean sequences is done once.
    ``den(x_t, t)`` returns shape ``(n, L, V)``; the time given at construction is used when
    ``t`` is omitted.
    """

    def __init__(self, process: Any, law: Any, t: float | None = None) -> None:
        self._setup = _Setup(process, law)
        self.t = None if t is None else check_scalar_time(t)

    def __call__(self, x_t: Any, t: float | None = None) -> np.ndarray:
        if t is None:
            if self.t is None:
                raise TypeError("t is required: this denoiser was built without a time (exact_denoiser(process, law))")
            t = self.t
        t = check_scalar_time(t)
        s = self._setup
        x_t = s.tokens("x_t", x_t)
        joint = _joint(s, x_t, t)
        px = joint.sum(axis=1)
        _refuse_impossible("x_t", x_t, px, t)
        post = joint / px[:, None]
        return np.stack([s.token_sums(post, lv) for lv in range(s.L)], axis=1) if s.L else post[:, None]


def exact_denoiser(process: Any, law: Any, t: float | None = None) -> ExactDenoiser:
    r"""The exact denoiser :math:`x_t \mapsto p(x_{0,l} = k \mid x_t)`, shape ``(n, L, V)`` per call.

    The marginals, token by token, of :func:`exact_posterior_x0` — the quantity that the D3PM
    ``x_0``-parametrisation and masked-diffusion models (MDLM, MD4) learn by cross-entropy.
    With ``t`` given, the callable takes ``x_t`` alone (``t`` may still be passed to override it);
    without, it is the project's ``f(x, t)``.

    Examples
    --------
    >>> from diffcore.discrete import AbsorbingDiffusion, TableLaw
    >>> den = exact_denoiser(AbsorbingDiffusion(2), TableLaw(np.array([0.25, 0.75]), 2, 1), 0.5)
    >>> den(np.array([[2]])).tolist()  # the mask reveals nothing: the prior
    [[[0.25, 0.75]]]
    """
    return ExactDenoiser(process, law, t)


def _score_ratios(setup: _Setup, x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Ratios ``p_t(y)/p_t(x)`` (n, L, S) with NaN rows where ``p_t(x) = 0``, and ``p_t(x)`` (n,)."""
    P = setup.process.transition(t)
    n = x.shape[0]
    ratios, px = np.full((n, setup.L, setup.S), np.nan), np.zeros(n)
    for b in setup.blocks(n):
        F = setup.factors(x[b], P)
        for lv in range(setup.L):
            w = np.broadcast_to(setup.p0, F[0].shape).copy()
            for m, f in enumerate(F):
                if m != lv:
                    w *= f
            p_y = setup.token_sums(w, lv) @ P[: setup.V]  # (nb, S): p_t of x with token l set to each k
            p_x = p_y[np.arange(p_y.shape[0]), x[b, lv]]
            with np.errstate(divide="ignore", invalid="ignore"):
                r = p_y / p_x[:, None]
            r[np.arange(p_y.shape[0]), x[b, lv]] = 1.0
            r[~(p_x > 0)] = np.nan
            ratios[b, lv] = r
            px[b] = p_x
    return ratios, px


def concrete_score(process: Any, law: Any, x: Any, t: float) -> np.ndarray:
    r"""The concrete score: :math:`p_t(y) / p_t(x)` for every ``y`` equal to ``x`` but at one token.

    Entry ``[i, l, k]`` is the ratio for ``y = x_i`` with token ``l`` set to ``k``; shape
    ``(n, L, S)``; the entry at ``k = x_{i,l}`` is 1.  Exact, by enumeration of the clean
    sequences (Meng et al. 2022, concrete score; Lou et al. 2024, sec. 3, the target of score
    entropy).  A state ``x`` of probability zero is refused.
    """
    setup = _Setup(process, law)
    t = check_scalar_time(t)
    x = setup.tokens("x", x)
    ratios, px = _score_ratios(setup, x, t)
    _refuse_impossible("x", x, px, t)
    return ratios


def _rates(process: AbstractCTMCDiffusion, x: np.ndarray, t: float, ratios: np.ndarray) -> np.ndarray:
    """``beta(t) Q[y_l, x_l] ratio[i, l, y_l]``, diagonal ``-(sum of the others)``."""
    Q_in = process.rate(t) * process.generator.T[x]  # (n, L, S): Q_in[i, l, k] = beta Q[k, x_il]
    with np.errstate(invalid="ignore"):
        rates = np.where(Q_in > 0, Q_in * ratios, 0.0)
    rows, cols = np.indices(x.shape)
    rates[rows, cols, x] = 0.0
    rates[rows, cols, x] = -rates.sum(axis=2)
    return rates


def reverse_rates(process: Any, law: Any, x: Any, t: float) -> np.ndarray:
    r"""The exact reverse CTMC rates :math:`\hat R_t(x \to y) = \beta(t) Q[y_l, x_l]\, p_t(y)/p_t(x)`.

    Shape ``(n, L, S)``: entry ``[i, l, k]`` is the rate of setting token ``l`` of ``x_i`` to ``k``;
    the entry at ``k = x_{i,l}`` is minus the sum of the others along ``k``.  Campbell et al. 2022,
    Prop. 1; Lou et al. 2024, eq. (3).  Integrated backwards from ``q_1``, these rates give back
    ``q_t`` for every ``t`` (tested).
    """
    setup = _Setup(process, law)
    t = check_scalar_time(t)
    x = setup.tokens("x", x)
    ratios, px = _score_ratios(setup, x, t)
    _refuse_impossible("x", x, px, t)
    return _rates(setup.process, x, t, ratios)


def reverse_generator(process: Any, law: Any, t: float, *, max_states: int = 4096) -> np.ndarray:
    r"""The reverse generator over all ``S^L`` sequences, shape ``(S^L, S^L)`` (dense).

    Row ``x`` holds :func:`reverse_rates` from ``x``; rows of states with ``q_t(x) = 0`` are zero
    (never visited).  The reverse-time Kolmogorov equation is ``-d q_t / dt = q_t @ R_hat(t)``.
    Refused when ``S^L > max_states`` (default 4096).
    """
    setup = _Setup(process, law)
    t = check_scalar_time(t)
    size = check_enumerable(setup.S, setup.L, max_states)
    states = enumerate_states(setup.S, setup.L, max_states=max_states)
    ratios, px = _score_ratios(setup, states, t)
    ratios[~(px > 0)] = 0.0
    rates = _rates(setup.process, states, t, ratios)
    out = np.zeros((size, size))
    powers = setup.S ** np.arange(setup.L - 1, -1, -1)
    base = states @ powers
    for lv in range(setup.L):
        for k in range(setup.S):
            target = base + (k - states[:, lv]) * powers[lv]
            out[np.arange(size), target] += rates[:, lv, k]
    return out


def _denoiser_output(process: AbstractCTMCDiffusion, denoiser: Any, x: np.ndarray, t: float) -> np.ndarray:
    n, L, V = x.shape[0], x.shape[1], process.vocab_size
    if callable(denoiser) and not is_array_api_obj(denoiser):
        out = denoiser(x, t)
        what = "denoiser must return"
    else:
        out, what = denoiser, "denoiser must be a callable (x, t) -> probabilities, or an array"
    if not is_array_api_obj(out) or not hasattr(out, "shape") or isinstance(out, (int, float, complex)):
        raise TypeError(f"{what} of shape (n, L, V) = ({n}, {L}, {V}); got {type(out).__name__}")
    if is_torch_array(out):
        raise TypeError(
            f"{what} a NumPy array like the tokens it is given; got {type(out).__name__} "
            "(convert a torch network's output with .detach().cpu().numpy())"
        )
    out = np.asarray(out)
    if out.dtype.kind not in "f":
        raise TypeError(f"{what} real floating probabilities of shape (n, L, V); got dtype {out.dtype}")
    if out.shape != (n, L, V):
        raise ValueError(f"{what} probabilities of shape (n, L, V) = ({n}, {L}, {V}); got {out.shape}")
    out = out.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{what} finite probabilities; got NaN or infinity")
    if np.any(out < 0) or np.any(np.abs(out.sum(axis=2) - 1.0) > _NORM_TOL):
        raise ValueError(f"{what} probabilities (non-negative, summing to 1 over the last axis)")
    return out


def concrete_score_from_denoiser(process: Any, denoiser: Any, x: Any, t: float) -> np.ndarray:
    r"""Ratios :math:`p_t(y)/p_t(x)` from a per-token denoiser, shape ``(n, L, S)``.

    .. math:: \frac{p_t(y)}{p_t(x)} = \sum_{k < V} p(x_{0,l} = k \mid x)\, \frac{P_{t|0}[k, y_l]}{P_{t|0}[k, x_l]}

    exact when the denoiser is (only token ``l`` differs, so the ratio of likelihoods depends on
    ``x_{0,l}`` alone; Campbell et al. 2022, eq. 9).  Terms with ``P[k, x_l] = 0`` are skipped
    (the exact posterior gives them weight zero).  The identity needs every clean token that can
    produce ``y_l`` to be able to produce ``x_l`` too; where it cannot (absorbing noise with ``x_l``
    unmasked: ``p_t(y)`` holds mass that ``p(x_0 | x)`` does not see) the entry is NaN.  The reverse
    rates need only the entries with ``Q[y_l, x_l] > 0``, and those are always determined.
    ``denoiser`` is a callable ``(x, t) -> (n, L, V)`` or that array itself.
    """
    process = _process(process)
    t = check_scalar_time(t)
    x = check_tokens("x", x, process.num_states)
    D = _denoiser_output(process, denoiser, x, t)
    P = process.transition(t)[: process.vocab_size]  # (V, S): clean token -> noisy token
    Px = P[:, x].transpose(1, 2, 0)  # (n, L, V): P[k, x_l]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(Px > 0, D / Px, 0.0)
    ratios = w @ P  # (n, L, S)
    # y_l reachable from a clean token k that cannot give x_l: p_t(y) has mass the denoiser cannot see
    hidden = ((Px <= 0).astype(np.float64) @ (P > 0).astype(np.float64)) > 0
    ratios[hidden] = np.nan
    rows, cols = np.indices(x.shape)
    ratios[rows, cols, x] = 1.0
    return ratios


def reverse_rates_from_denoiser(process: Any, denoiser: Any, x: Any, t: float) -> np.ndarray:
    r"""The reverse rates of :func:`reverse_rates`, with the ratios from a denoiser: shape ``(n, L, S)``.

    :math:`\hat R_t(x \to y) = \beta(t) Q[y_l, x_l] \sum_k p(x_{0,l} = k \mid x) P[k, y_l] / P[k, x_l]`
    (Campbell et al. 2022, eq. 9: the ``x_0``-parametrisation of the reverse rate); equal to the exact
    rates when the denoiser is :func:`exact_denoiser`.  ``denoiser``: a callable ``(x, t) -> (n, L, V)``
    or that array.
    """
    process = _process(process)
    t = check_scalar_time(t)
    x = check_tokens("x", x, process.num_states)
    return _rates(process, x, t, concrete_score_from_denoiser(process, denoiser, x, t))
