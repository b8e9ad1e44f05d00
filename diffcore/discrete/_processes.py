r"""Forward processes on token sequences: continuous-time Markov chains with generator ``beta(t) Q``.

Each token of a sequence moves independently (given ``x_0``) under the per-token generator
:math:`Q(t) = \beta(t) Q` on ``S`` states: ``Q[i, j] >= 0`` is the rate of the jump ``i -> j``
(``i != j``) and the rows sum to zero.  With :math:`B(t) = \int_0^t \beta`, the generators at two
times commute, so the transition matrix from ``s`` to ``t`` is

.. math:: P_{t|s} = \exp\big((B(t) - B(s))\, Q\big), \qquad P_{t|s}[i, j] = q(x_t = j \mid x_s = i)

(Campbell et al. 2022, sec. 3 and app. C; Austin et al. 2021, sec. 3 for the discrete-time
D3PM).  Closed forms: uniform noise ``Q = 11^T / V - I`` gives
``P = e^{-D} I + (1 - e^{-D}) 11^T / V``; the absorbing (mask) process gives
``P[i, i] = e^{-D}``, ``P[i, mask] = 1 - e^{-D}`` (``D = B(t) - B(s)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
from array_api_compat import is_torch_array

from diffcore._array import resolve_rng, uniform
from diffcore._validation import check_array, check_positive, check_same_namespace, check_scalar_time, check_steps
from diffcore.discrete._laws import MAX_STATES, as_table, check_enumerable, check_tokens

__all__ = [
    "AbsorbingDiffusion",
    "AbstractCTMCDiffusion",
    "MarkovDiffusion",
    "RateSchedule",
    "UniformDiffusion",
    "constant_schedule",
    "geometric_schedule",
    "linear_schedule",
    "log_linear_schedule",
]

_GENERATOR_TOL = 1e-10  # rows of a generator sum to zero up to rounding (relative to its largest rate)


# -- schedules ---------------------------------------------------------------------------------------
class RateSchedule:
    r"""A time-dependent rate ``beta(t) >= 0`` and its integral ``B(t) = int_0^t beta(u) du``.

    Parameters
    ----------
    rate : callable
        ``t -> beta(t)`` (float in, float out; NumPy arrays should work too).
    integral : callable
        ``t -> B(t)`` with ``B(0) = 0``; checked at construction, together with ``beta(1/2) >= 0``.
        That ``B' = beta`` is the caller's promise (the tests check it for the named schedules).
    name : str
        a label for messages and ``repr``.
    """

    def __init__(self, rate: Callable[[Any], Any], integral: Callable[[Any], Any], name: str = "custom") -> None:
        for label, f in (("rate", rate), ("integral", integral)):
            if not callable(f):
                raise TypeError(f"{label} must be a callable t -> float; got {type(f).__name__}")
        b0, r = float(integral(0.0)), float(rate(0.5))
        if not abs(b0) <= 1e-12:
            raise ValueError(f"integral must vanish at t = 0 (B(0) = int_0^0 beta = 0); got B(0) = {b0}")
        if not (math.isfinite(r) and r >= 0):
            raise ValueError(f"rate must be finite and >= 0; got beta(0.5) = {r}")
        self.rate, self.integral, self.name = rate, integral, name

    def __repr__(self) -> str:
        return f"RateSchedule({self.name})"


def constant_schedule(beta: float = 1.0) -> RateSchedule:
    """``beta(t) = beta``, ``B(t) = beta t``."""
    beta = check_positive("beta", beta)
    return RateSchedule(lambda t: beta + 0.0 * t, lambda t: beta * t, f"constant {beta}")


def linear_schedule(beta_min: float = 0.1, beta_max: float = 10.0) -> RateSchedule:
    """``beta(t) = beta_min + t (beta_max - beta_min)``, ``B(t) = beta_min t + t^2 (beta_max - beta_min) / 2``."""
    lo, hi = check_positive("beta_min", beta_min), check_positive("beta_max", beta_max)
    return RateSchedule(
        lambda t: lo + t * (hi - lo), lambda t: lo * t + 0.5 * t * t * (hi - lo), f"linear {lo} -> {hi}"
    )


def log_linear_schedule(eps: float = 1e-3) -> RateSchedule:
    r"""The log-linear schedule of masked diffusion: :math:`B(t) = -\log(1 - (1 - \epsilon) t)`.

    Under the absorbing process a token is masked at ``t`` with probability
    :math:`1 - e^{-B(t)} = (1 - \epsilon) t`, linear in time (Lou et al. 2024, sec. 5; Sahoo et al.
    2024, MDLM; Shi et al. 2024, MD4 use the same linear masking schedule ``alpha_t = 1 - t``).
    ``beta(t) = (1 - eps) / (1 - (1 - eps) t)``; ``eps in (0, 1)`` keeps ``B(1)`` finite.
    """
    eps = check_positive("eps", eps)
    if not eps < 1:
        raise ValueError(f"eps must lie in (0, 1); got {eps}")
    c = 1.0 - eps
    return RateSchedule(lambda t: c / (1.0 - c * t), lambda t: -np.log1p(-c * t), f"log-linear eps={eps}")


def geometric_schedule(sigma_min: float = 1e-3, sigma_max: float = 5.0) -> RateSchedule:
    r"""The geometric schedule of SEDD (Lou et al. 2024, sec. 5): total noise
    :math:`\bar\sigma(t) = \sigma_{\min}^{1-t}\sigma_{\max}^{t}`, here shifted to start at zero:
    :math:`B(t) = \bar\sigma(t) - \sigma_{\min}`, ``beta(t) = sigma_bar(t) log(sigma_max / sigma_min)``.

    SEDD itself integrates from ``sigma_bar(0) = sigma_min``; the shift (of ``sigma_min``) makes
    ``t = 0`` the clean data exactly, as every process here has it.
    """
    lo, hi = check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max)
    if not hi > lo:
        raise ValueError(f"sigma_max must exceed sigma_min = {lo}; got {hi}")
    k = math.log(hi / lo)
    return RateSchedule(lambda t: lo * np.exp(k * t) * k, lambda t: lo * np.expm1(k * t), f"geometric {lo} -> {hi}")


def _schedule(beta: Any) -> RateSchedule:
    if isinstance(beta, RateSchedule):
        return beta
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, (int, float, np.floating, np.integer)):
        raise TypeError(f"beta must be a positive float or a RateSchedule; got {type(beta).__name__}")
    return constant_schedule(beta)


# -- processes ---------------------------------------------------------------------------------------
class AbstractCTMCDiffusion:
    r"""A CTMC forward process on sequences, independent per token, with generator ``beta(t) Q``.

    Attributes
    ----------
    vocab_size : int
        ``V``: data tokens are ``0, ..., V - 1``.
    num_states : int
        ``S``: the per-token state count (``V``, or ``V + 1`` with a mask).
    generator : np.ndarray, shape ``(S, S)``
        ``Q`` (read-only).
    schedule : RateSchedule
        ``beta(t)`` and ``B(t)``.
    """

    vocab_size: int
    num_states: int
    generator: np.ndarray
    schedule: RateSchedule

    # -- rates and transitions ------------------------------------------------------------------
    def rate(self, t: float) -> float:
        """``beta(t)``."""
        return float(self.schedule.rate(check_scalar_time(t)))

    def integrated_rate(self, t: float) -> float:
        r"""``B(t) = int_0^t beta(u) du``."""
        return float(self.schedule.integral(check_scalar_time(t)))

    def rate_matrix(self, t: float) -> np.ndarray:
        """The per-token generator at time ``t``: ``beta(t) Q``, shape ``(S, S)``."""
        return self.rate(t) * self.generator

    def transition(self, t: float, s: float = 0.0) -> np.ndarray:
        r"""``P[i, j] = q(x_t = j | x_s = i) = expm((B(t) - B(s)) Q)``, shape ``(S, S)``, for ``s <= t``.

        Campbell et al. 2022, eq. (4) with commuting generators; rows sum to one.
        """
        t, s = check_scalar_time(t), check_scalar_time(s, "s")
        if s > t:
            raise ValueError(f"s must be <= t (the forward transition runs from s to t); got s = {s}, t = {t}")
        return self._transition(self.integrated_rate(t) - self.integrated_rate(s))

    def _transition(self, delta: float) -> np.ndarray:
        return scipy.linalg.expm(delta * self.generator)

    def sample_transition(self, x_s: Any, s: float, t: float, rng: Any = None) -> np.ndarray:
        """Draw ``x_t ~ q(x_t | x_s)`` token by token: shape ``(n, L)`` int64, from ``x_s (n, L)``."""
        x_s = check_tokens("x_s", x_s, self.num_states)
        P = self.transition(t, s)
        rng = resolve_rng(rng)
        flat = x_s.reshape(-1)
        cdf = np.cumsum(P[flat], axis=1)
        u = uniform(rng, (flat.shape[0], 1)) * cdf[:, -1:]
        return np.minimum((cdf <= u).sum(axis=1), self.num_states - 1).reshape(x_s.shape)

    # -- exact laws -----------------------------------------------------------------------------
    def marginal(self, law: Any, t: float, *, max_states: int = MAX_STATES) -> np.ndarray:
        r"""The exact law of ``x_t`` over all ``S^L`` sequences (lexicographic order), shape ``(S^L,)``.

        :math:`q_t = q_0 (P_{t|0} \otimes \cdots \otimes P_{t|0})`, applied one token axis at a time
        (cost ``L S^{L+1}``).  Refuses ``S^L > max_states`` with a ``ValueError`` naming the size.
        """
        table = as_table(law)
        self._check_law(table)
        L = table.length
        check_enumerable(self.num_states, L, max_states)
        P = self.transition(t)
        q = table.probs_over(self.num_states).reshape((self.num_states,) * L)
        for axis in range(L):
            q = np.moveaxis(np.tensordot(q, P, axes=([axis], [0])), -1, axis)
        return q.reshape(-1)

    def sequence_generator(self, length: int, t: float, *, max_states: int = 4096) -> np.ndarray:
        r"""The generator of the whole sequence at ``t``: the Kronecker sum
        :math:`\sum_l I \otimes \cdots \otimes \beta(t) Q \otimes \cdots \otimes I`, shape ``(S^L, S^L)``.

        So that ``d q_t / dt = q_t @ sequence_generator(L, t)`` (Kolmogorov forward equation).  Dense:
        refused when ``S^L > max_states`` (default 4096).
        """
        length = check_steps(length, "length")
        size = check_enumerable(self.num_states, length, max_states)
        Qt = self.rate_matrix(t)
        out = np.zeros((size, size))
        for lv in range(length):
            left, right = np.eye(self.num_states**lv), np.eye(self.num_states ** (length - 1 - lv))
            out += np.kron(np.kron(left, Qt), right)
        return out

    def prior_probs(self) -> np.ndarray:
        r"""The per-token prior, shape ``(S,)``: the stationary law ``pi Q = 0`` of the generator
        (uniform ``1/V``; the mask for the absorbing process).  At ``t = 1`` the per-token law is
        ``q_0 P_{1|0}``, which equals this prior up to ``e^{-B(1)}``-small terms for the named processes.
        """
        raise NotImplementedError

    def posterior(self, x_t: Any, x_0: Any, s: float, t: float) -> np.ndarray:
        r"""``q(x_s = k | x_t, x_0)`` per token, shape ``(n, L, S)``, for ``0 <= s <= t``.

        .. math:: q(x_s = k \mid x_t, x_0) = \frac{P_{s|0}[x_0, k]\, P_{t|s}[k, x_t]}{P_{t|0}[x_0, x_t]}

        (Austin et al. 2021, eq. 3, in continuous time).  ``x_t`` has codes in ``{0, ..., S-1}``,
        ``x_0`` in the data vocabulary ``{0, ..., V-1}``.  A pair with ``P_{t|0}[x_0, x_t] = 0``
        (impossible under the process) is refused with a ``ValueError`` naming its position.
        """
        s, t = check_scalar_time(s, "s"), check_scalar_time(t)
        if s > t:
            raise ValueError(f"s must be <= t (the posterior of an earlier time); got s = {s}, t = {t}")
        check_same_namespace(x_t=x_t, x_0=x_0)
        x_t = check_tokens("x_t", x_t, self.num_states)
        x_0 = check_tokens("x_0", x_0, self.vocab_size)
        if x_0.shape != x_t.shape:
            raise ValueError(f"x_0 must have the shape of x_t {x_t.shape}; got {x_0.shape}")
        P_s0, P_ts, P_t0 = self.transition(s), self.transition(t, s), self.transition(t)
        num = P_s0[x_0] * P_ts[:, x_t].transpose(1, 2, 0)  # (n, L, S)
        den = P_t0[x_0, x_t]
        if np.any(den <= 0):
            i = tuple(int(v) for v in np.argwhere(den <= 0)[0])
            raise ValueError(
                f"x_t is impossible given x_0 at position {i}: q(x_t = {x_t[i]} | x_0 = {x_0[i]}) = 0 at t = {t}"
            )
        return num / den[..., None]

    def _check_law(self, table: Any) -> None:
        if table.vocab_size > self.num_states:
            raise ValueError(
                f"law has vocab_size {table.vocab_size}, more tokens than the process's {self.num_states} states"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, beta={self.schedule!r})"


class UniformDiffusion(AbstractCTMCDiffusion):
    r"""Uniform noise on ``V`` tokens: ``Q = 11^T / V - I`` (rate ``beta / V`` to each other token).

    ``P_{t|s} = e^{-D} I + (1 - e^{-D}) 11^T / V`` with ``D = B(t) - B(s)`` (exact, since
    ``Q^2 = -Q``); prior uniform.  Austin et al. 2021, sec. 3.1 (uniform D3PM); Campbell et al. 2022.

    Parameters
    ----------
    vocab_size : int
        ``V >= 2``.
    beta : float or RateSchedule
        a constant rate, or a schedule (:func:`log_linear_schedule`, :func:`linear_schedule`, ...).

    Examples
    --------
    >>> UniformDiffusion(2).transition(1.0).round(4).tolist()
    [[0.6839, 0.3161], [0.3161, 0.6839]]
    """

    def __init__(self, vocab_size: int, beta: Any = 1.0) -> None:
        self.vocab_size = self.num_states = _vocab(vocab_size)
        self.schedule = _schedule(beta)
        V = self.vocab_size
        self.generator = np.full((V, V), 1.0 / V) - np.eye(V)
        self.generator.setflags(write=False)

    def _transition(self, delta: float) -> np.ndarray:
        decay = math.exp(-delta)
        return decay * np.eye(self.vocab_size) + (1.0 - decay) / self.vocab_size

    def prior_probs(self) -> np.ndarray:
        return np.full(self.vocab_size, 1.0 / self.vocab_size)


class AbsorbingDiffusion(AbstractCTMCDiffusion):
    r"""The absorbing (masking) process: each data token jumps to the mask ``V`` at rate ``beta(t)``.

    ``Q[i, V] = 1``, ``Q[i, i] = -1`` for ``i < V``; the mask row is zero.  ``P[i, i] = e^{-D}``,
    ``P[i, V] = 1 - e^{-D}``, ``P[V, V] = 1``.  ``S = V + 1``; prior: all mask.  Austin et al. 2021,
    sec. 3.1 (absorbing D3PM); Sahoo et al. 2024 (MDLM); Shi et al. 2024 (MD4); Ou et al. 2024.

    Examples
    --------
    >>> AbsorbingDiffusion(2).transition(1.0).round(4).tolist()
    [[0.3679, 0.0, 0.6321], [0.0, 0.3679, 0.6321], [0.0, 0.0, 1.0]]
    """

    def __init__(self, vocab_size: int, beta: Any = 1.0) -> None:
        self.vocab_size = check_steps(vocab_size, "vocab_size")
        self.num_states = self.vocab_size + 1
        self.mask_token = self.vocab_size
        self.schedule = _schedule(beta)
        Q = np.zeros((self.num_states, self.num_states))
        Q[: self.vocab_size, self.vocab_size] = 1.0
        Q[np.arange(self.vocab_size), np.arange(self.vocab_size)] = -1.0
        Q.setflags(write=False)
        self.generator = Q

    def _transition(self, delta: float) -> np.ndarray:
        decay = math.exp(-delta)
        P = decay * np.eye(self.num_states)
        P[:, self.mask_token] = 1.0 - decay
        P[self.mask_token, self.mask_token] = 1.0
        return P

    def prior_probs(self) -> np.ndarray:
        out = np.zeros(self.num_states)
        out[self.mask_token] = 1.0
        return out


class MarkovDiffusion(AbstractCTMCDiffusion):
    r"""A user's per-token generator ``Q (S, S)``: off-diagonal rates ``>= 0``, rows summing to 0.

    ``P_{t|s} = scipy.linalg.expm((B(t) - B(s)) Q)``.  Campbell et al. 2022, sec. 3.

    Parameters
    ----------
    generator : array, shape ``(S, S)``
        the rates (refused, naming the entry or row, when a rate is negative or a row does not sum
        to zero within ``1e-10`` of the largest rate).
    beta : float or RateSchedule
    vocab_size : int, optional
        the data tokens are ``0, ..., vocab_size - 1`` (default: all ``S`` states); the rest are
        noise-only states (such as a mask).
    """

    def __init__(self, generator: Any, beta: Any = 1.0, *, vocab_size: int | None = None) -> None:
        Q = check_array("generator", generator, ndim=2)
        Q = np.array(Q.detach().cpu().numpy() if is_torch_array(Q) else Q, dtype=np.float64)
        S = Q.shape[0]
        if Q.shape != (S, S) or S < 1:
            raise ValueError(f"generator must be a square (S, S) matrix; got shape {Q.shape}")
        off = Q - np.diag(np.diag(Q))
        if np.any(off < 0):
            i, j = (int(v) for v in np.argwhere(off < 0)[0])
            raise ValueError(f"generator off-diagonal rates must be >= 0; got generator[{i}, {j}] = {Q[i, j]}")
        sums = Q.sum(axis=1)
        scale = max(1.0, float(np.abs(Q).max()))
        if np.any(np.abs(sums) > _GENERATOR_TOL * scale):
            i = int(np.argmax(np.abs(sums)))
            raise ValueError(f"generator rows must sum to 0; row {i} sums to {sums[i]}")
        Q[np.arange(S), np.arange(S)] -= sums  # remove the rounding
        Q.setflags(write=False)
        self.generator, self.num_states = Q, S
        self.vocab_size = S if vocab_size is None else check_steps(vocab_size, "vocab_size")
        if self.vocab_size > S:
            raise ValueError(f"vocab_size must be <= the generator's {S} states; got {self.vocab_size}")
        self.schedule = _schedule(beta)

    def prior_probs(self) -> np.ndarray:
        """The stationary law ``pi Q = 0`` (``ValueError`` when it is not unique)."""
        null = scipy.linalg.null_space(self.generator.T)
        if null.shape[1] != 1:
            raise ValueError(
                f"the generator has {null.shape[1]} stationary laws (not irreducible); prior_probs is undefined"
            )
        pi = np.abs(null[:, 0])
        return pi / pi.sum()


def _vocab(vocab_size: Any) -> int:
    V = check_steps(vocab_size, "vocab_size")
    if V < 2:
        raise ValueError(f"vocab_size must be >= 2 for uniform noise; got {V}")
    return V
