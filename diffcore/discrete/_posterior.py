r"""Posterior sampling on token sequences with a masked-diffusion prior, measured against Bayes' rule.

An observation ``y`` of a clean sequence ``x`` has a likelihood :math:`p(y \mid x)`; the target is

.. math:: p(x \mid y) = \frac{p_0(x)\, p(y \mid x)}{\sum_{x'} p_0(x')\, p(y \mid x')},

exact here by enumeration of the ``V^L`` sequences (:func:`exact_posterior`).  Three observation
models: :class:`InpaintingObservation` (some positions seen exactly), :class:`TokenChannelObservation`
(each observed token replaced, with probability ``eps``, by one of the other ``V - 1`` tokens) and
:class:`TableObservation` (any likelihood table ``p(y | x)`` over a finite set of outcomes).

The samplers run the absorbing (masked) process backwards from the all-mask state, unmasking tokens
with values drawn from a *denoiser* ``D_l(k | x_t) = p(x_{0,l} = k | x_t)`` (the prior model, for
instance :func:`~diffcore.discrete.exact_denoiser`), optionally *guided* by the observation
(:func:`guided_denoiser`):

* ``"naive"`` — token-wise likelihood reweighting, the standard derivative-free baseline: each
  token's denoiser marginal is multiplied by the likelihood averaged over the other tokens drawn
  independently from their marginals (the gradient of the likelihood at the *expectation*),

  .. math:: \tilde D_l(k) \propto \sum_{x:\, x_l = k} p(y \mid x) \prod_m D_m(x_m);

  for a token-wise likelihood this is :math:`D_l(k)\, p(y_l \mid k)`, and for inpainting it clamps
  the observed tokens when they are unmasked.  It ignores what the observation says about a token
  *through* the prior's correlations until the correlated tokens are decoded.
* ``"quantized"`` — the *quantized expectation* of anchored posterior sampling (APS, Rout et al.
  2025, sec. 3): the expectation of the one-hot embedding under ``D`` is quantized to its nearest
  code (the arg-max token), and the logits move along the straight-through gradient of the
  log-likelihood at that quantized point,
  :math:`z_l(k) \mathrel{+}= \eta\, \log p(y \mid \hat x_{l \leftarrow k})`, repeated
  ``iterations`` times with step ``eta / iterations``.

and two unmasking orders (:func:`masked_sample`): ``"random"``, the ancestral schedule of masked
diffusion (each masked token is unmasked between ``t`` and ``s`` with probability
:math:`(\alpha_s - \alpha_t)/(1 - \alpha_t)`, :math:`\alpha_t = e^{-B(t)}`; Sahoo et al. 2024,
Shi et al. 2024), and ``"anchored"``, the anchored remasking of APS: predict every masked token,
keep the ``round(L alpha_s) - #unmasked`` most confident ones (the *anchors*, confidence
:math:`\max_k \tilde D_l(k)` under the guided denoiser) and remask the rest.

Simplifications of APS made here (stated in every docstring that uses them): tokens are their own
embedding (one-hot codes, so quantizing the expectation is the arg-max); the measurement acts on
tokens directly (no image decoder), so the "gradient" is the exact coordinate-wise change of the
log-likelihood; a decoded token is never remasked later; the logit update is a fixed number of
steps of size ``eta / iterations``.  For a token-wise likelihood the quantized-expectation update
with ``eta = 1`` *is* the naive reweighting (the log-likelihood is linear in the one-hot codes), so
on such observations APS differs from the baseline through its anchored order alone — which on
this laboratory is where its gain comes from (measured in ``tests/test_discrete_posterior.py``).

:func:`masked_sample_law` gives the exact law of a sampler's output by propagating the law of the
state over all ``S^L`` sequences, step by step; :func:`empirical_tv` measures samples against an
exact law with a standard error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import is_torch_array

from diffcore._array import resolve_rng, uniform
from diffcore._validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_same_namespace,
    check_size,
    check_steps,
)
from diffcore.discrete._exact import _denoiser_output
from diffcore.discrete._laws import (
    TableLaw,
    _normalised,
    _probability_vector,
    _sample_rows,
    as_table,
    check_enumerable,
    check_tokens,
    enumerate_states,
    state_index,
)
from diffcore.discrete._processes import AbsorbingDiffusion

__all__ = [
    "AbstractTokenObservation",
    "InpaintingObservation",
    "TableObservation",
    "TokenChannelObservation",
    "anchored_posterior_sample",
    "empirical_tv",
    "exact_posterior",
    "guided_denoiser",
    "masked_sample",
    "masked_sample_law",
    "naive_posterior_sample",
]

_GUIDANCES = ("none", "naive", "quantized")
_ORDERS = ("random", "anchored")


# -- observation models --------------------------------------------------------------------------------
class AbstractTokenObservation:
    r"""A likelihood :math:`p(y \mid x)` of an observation ``y`` of a sequence ``x`` of ``L`` tokens over ``V``.

    Subclasses give :meth:`likelihood` (the vector :math:`p(y \mid x)` over the ``V^L`` sequences in
    :func:`~diffcore.discrete.enumerate_states` order), :meth:`sample` and, when the likelihood
    factorises over tokens, :meth:`token_factors`.
    """

    vocab_size: int
    length: int

    def likelihood(self, y: Any) -> np.ndarray:
        r""":math:`p(y \mid x)` for every clean sequence ``x``, shape ``(V^L,)``."""
        raise NotImplementedError

    def token_factors(self, y: Any) -> np.ndarray | None:
        r"""Per-token factors ``c[l, k]`` with :math:`p(y \mid x) = \prod_l c[l, x_l]`, shape ``(L, V)``; ``None``
        when the likelihood does not factorise over tokens."""
        return None

    def sample(self, x: Any, rng: Any = None) -> np.ndarray:
        """Draw one observation per sequence of ``x (n, L)``."""
        raise NotImplementedError

    def log_likelihood(self, x: Any, y: Any) -> np.ndarray:
        r""":math:`\log p(y \mid x)` per sequence of ``x (n, L)``, shape ``(n,)`` (``-inf`` where impossible)."""
        x = check_tokens("x", x, self.vocab_size, self.length)
        with np.errstate(divide="ignore"):
            return np.log(self.likelihood(y)[state_index(x, self.vocab_size)])

    def _positions(self, positions: Any) -> np.ndarray:
        pos = np.asarray(positions)
        if pos.ndim != 1 or (pos.size and pos.dtype.kind not in "iu"):
            raise TypeError(f"positions must be a 1-D sequence of integer positions; got {positions!r}")
        pos = pos.astype(np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self.length):
            raise ValueError(
                f"positions must lie in {{0, ..., {self.length - 1}}} (L = {self.length}); got {pos.tolist()}"
            )
        if np.unique(pos).size != pos.size:
            raise ValueError(f"positions must be distinct; got {pos.tolist()}")
        return pos

    def _observed_tokens(self, y: Any) -> np.ndarray:
        """``y`` as the ``(m,)`` tokens seen at :attr:`positions`."""
        if isinstance(y, (bool, int, float, complex)) or not hasattr(y, "shape"):
            raise TypeError(f"y must be an integer array of shape ({self.positions.size},); got {type(y).__name__}")
        y = np.asarray(y)
        if y.shape != self.positions.shape:
            raise ValueError(
                f"y must have shape ({self.positions.size},), one token per observed position; got {y.shape}"
            )
        return check_tokens("y", y[None, :], self.vocab_size)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, length={self.length})"


class InpaintingObservation(AbstractTokenObservation):
    r"""Inpainting: the tokens at ``positions`` are seen exactly, :math:`p(y \mid x) = 1[x_P = y]`.

    ``y`` is the ``(m,)`` array of tokens at the ``m`` observed positions.  Under a masked-diffusion
    prior with the exact denoiser, starting the reverse chain with those tokens unmasked is exact;
    the samplers here start from all-mask and must discover them, which is what separates the naive
    order from the anchored one.

    Examples
    --------
    >>> obs = InpaintingObservation([0], vocab_size=2, length=2)
    >>> obs.likelihood(np.array([1])).tolist()
    [0.0, 0.0, 1.0, 1.0]
    """

    def __init__(self, positions: Any, vocab_size: int, length: int) -> None:
        self.vocab_size, self.length = check_steps(vocab_size, "vocab_size"), check_steps(length, "length")
        self.positions = self._positions(positions)

    def token_factors(self, y: Any) -> np.ndarray:
        y = self._observed_tokens(y)
        c = np.ones((self.length, self.vocab_size))
        c[self.positions] = 0.0
        c[self.positions, y] = 1.0
        return c

    def likelihood(self, y: Any) -> np.ndarray:
        return _product_likelihood(self.token_factors(y))

    def sample(self, x: Any, rng: Any = None) -> np.ndarray:
        """The observed tokens ``x[:, positions]``, shape ``(n, m)`` (no randomness; ``rng`` is unused)."""
        return check_tokens("x", x, self.vocab_size, self.length)[:, self.positions]


class TokenChannelObservation(AbstractTokenObservation):
    r"""A noisy token channel: each token at ``positions`` is seen correctly with probability ``1 - eps``,
    else as one of the other ``V - 1`` tokens uniformly,

    .. math:: p(y \mid x) = \prod_{l \in P} \Big[(1 - \epsilon) 1[y_l = x_l]
              + \frac{\epsilon}{V - 1} 1[y_l \ne x_l]\Big]

    (the ``q``-ary symmetric channel).  ``eps = (V - 1)/V`` makes ``y`` independent of ``x``.
    ``positions`` defaults to every position.
    """

    def __init__(self, vocab_size: int, length: int, eps: float, positions: Any = None) -> None:
        self.vocab_size, self.length = check_steps(vocab_size, "vocab_size"), check_steps(length, "length")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 for a token channel; got {self.vocab_size}")
        eps = check_nonnegative("eps", eps)
        if not eps <= 1:
            raise ValueError(f"eps must lie in [0, 1] (a flip probability); got {eps}")
        self.eps = eps
        self.positions = self._positions(np.arange(self.length) if positions is None else positions)

    def token_factors(self, y: Any) -> np.ndarray:
        y = self._observed_tokens(y)
        c = np.ones((self.length, self.vocab_size))
        c[self.positions] = self.eps / (self.vocab_size - 1)
        c[self.positions, y] = 1.0 - self.eps
        return c

    def likelihood(self, y: Any) -> np.ndarray:
        return _product_likelihood(self.token_factors(y))

    def sample(self, x: Any, rng: Any = None) -> np.ndarray:
        """The observed tokens after the channel, shape ``(n, m)``."""
        x = check_tokens("x", x, self.vocab_size, self.length)[:, self.positions]
        rng = resolve_rng(rng)
        flip = uniform(rng, x.shape) < self.eps
        shift = 1 + np.minimum((uniform(rng, x.shape) * (self.vocab_size - 1)).astype(np.int64), self.vocab_size - 2)
        return np.where(flip, (x + shift) % self.vocab_size, x)


class TableObservation(AbstractTokenObservation):
    r"""A general likelihood table: ``likelihood[index(x), y] = p(y | x)`` over ``M`` outcomes.

    Parameters
    ----------
    likelihood : array, shape ``(V^L, M)``
        each row a probability vector over the outcomes ``y in {0, ..., M - 1}``.
    vocab_size, length : int
        ``V`` and ``L``.

    ``y`` is an integer outcome.  No token factorisation is assumed (e.g. ``y`` a noisy count of a
    token, or a parity: non-linear measurements).
    """

    def __init__(self, likelihood: Any, vocab_size: int, length: int) -> None:
        self.vocab_size, self.length = check_steps(vocab_size, "vocab_size"), check_steps(length, "length")
        size = check_enumerable(self.vocab_size, self.length)
        if isinstance(likelihood, (bool, int, float, complex)) or not hasattr(likelihood, "shape"):
            raise TypeError(f"likelihood must be an array of shape ({size}, M); got {type(likelihood).__name__}")
        if is_torch_array(likelihood):
            likelihood = likelihood.detach().cpu().numpy()
        table = np.asarray(likelihood)
        if table.dtype.kind not in "iuf":
            raise TypeError(f"likelihood must hold real probabilities; got dtype {table.dtype}")
        table = table.astype(np.float64)
        if table.ndim != 2 or table.shape[0] != size or table.shape[1] < 1:
            raise ValueError(f"likelihood must have shape (V^L, M) = ({size}, M); got {table.shape}")
        self.table = _normalised("likelihood", table, axis=1)
        self.table.setflags(write=False)
        self.num_outcomes = table.shape[1]

    def _outcome(self, y: Any) -> int:
        if isinstance(y, (bool, np.bool_)) or not isinstance(y, (int, np.integer)):
            raise TypeError(f"y must be an int outcome in {{0, ..., {self.num_outcomes - 1}}}; got {type(y).__name__}")
        if not 0 <= y < self.num_outcomes:
            raise ValueError(f"y must lie in {{0, ..., {self.num_outcomes - 1}}}; got {y}")
        return int(y)

    def likelihood(self, y: Any) -> np.ndarray:
        return self.table[:, self._outcome(y)]

    def sample(self, x: Any, rng: Any = None) -> np.ndarray:
        """One outcome per sequence, shape ``(n,)``."""
        x = check_tokens("x", x, self.vocab_size, self.length)
        return _sample_rows(resolve_rng(rng), self.table[state_index(x, self.vocab_size)])


def _product_likelihood(c: np.ndarray) -> np.ndarray:
    out = np.ones(1)
    for row in c:
        out = np.outer(out, row).reshape(-1)
    return out


def _observation(observation: Any) -> AbstractTokenObservation:
    if not isinstance(observation, AbstractTokenObservation):
        raise TypeError(
            "observation must be an InpaintingObservation, TokenChannelObservation or TableObservation; "
            f"got {type(observation).__name__}"
        )
    return observation


# -- exact posterior ------------------------------------------------------------------------------------
def exact_posterior(law: Any, observation: Any, y: Any) -> TableLaw:
    r"""The exact posterior :math:`p(x \mid y) \propto p_0(x)\, p(y \mid x)` by enumeration, as a :class:`TableLaw`.

    Bayes' rule over the ``V^L`` sequences.  ``ValueError`` when ``y`` has probability zero under
    the prior (the posterior is undefined) or when law and observation disagree on ``V`` or ``L``.

    Examples
    --------
    >>> from diffcore.discrete import TableLaw
    >>> prior = TableLaw(np.array([0.4, 0.1, 0.1, 0.4]), vocab_size=2, length=2)
    >>> exact_posterior(prior, InpaintingObservation([0], 2, 2), np.array([1])).probs.tolist()
    [0.0, 0.0, 0.2, 0.8]
    """
    table, obs = as_table(law), _observation(observation)
    _check_match(table.vocab_size, table.length, obs)
    joint = table.probs * obs.likelihood(y)
    evidence = joint.sum()
    if not evidence > 0:
        raise ValueError(f"y = {np.asarray(y).tolist()} has probability zero under the prior: p(y) = 0, no posterior")
    return TableLaw(joint / evidence, table.vocab_size, table.length)


def _check_match(vocab_size: int, length: int, obs: AbstractTokenObservation) -> None:
    if (obs.vocab_size, obs.length) != (vocab_size, length):
        raise ValueError(
            f"observation is for V = {obs.vocab_size}, L = {obs.length}; "
            f"the law/process has V = {vocab_size}, L = {length}"
        )


# -- guidance ---------------------------------------------------------------------------------------------
class _GuidedDenoiser:
    """See :func:`guided_denoiser`."""

    def __init__(
        self, denoiser: Any, observation: AbstractTokenObservation, y: Any, guidance: str, eta: float, iterations: int
    ):
        self.denoiser, self.observation, self.guidance = denoiser, observation, guidance
        self.eta, self.iterations = eta, iterations
        V, L = observation.vocab_size, observation.length
        self.factors = observation.token_factors(y)
        self.lik = observation.likelihood(y)
        self.powers = V ** np.arange(L - 1, -1, -1, dtype=np.int64)
        if not np.any(self.lik > 0):
            raise ValueError(f"y = {np.asarray(y).tolist()} is impossible for every sequence: p(y | x) = 0 everywhere")

    def __call__(self, x: Any, t: float) -> np.ndarray:
        V, L = self.observation.vocab_size, self.observation.length
        x = check_tokens("x_t", x, V + 1, L)
        D = self.denoiser(x, t)
        if not isinstance(D, np.ndarray) or D.shape != (x.shape[0], L, V):
            raise ValueError(
                f"the prior denoiser must return a NumPy array of shape (n, L, V) = ({x.shape[0]}, {L}, {V})"
            )
        masked = x == V
        if self.guidance != "none" and self.factors is not None:
            seen = self.factors[np.arange(L)[None, :], np.minimum(x, V - 1)]
            bad = ~masked & ~(seen > 0)
            if np.any(bad):
                i, lv = (int(v) for v in np.argwhere(bad)[0])
                raise ValueError(f"the observation is impossible given x_t[{i}]: decoded token {lv} contradicts y")
        if self.guidance == "none":
            out = D
        elif self.guidance == "naive":
            out = self._naive(D, x, masked)
        else:
            out = self._quantized(D, x, masked)
        return out

    def _naive(self, D: np.ndarray, x: np.ndarray, masked: np.ndarray) -> np.ndarray:
        V, L = self.observation.vocab_size, self.observation.length
        # decoded tokens are fixed: their factor is a point mass
        D = np.where(masked[..., None], D, np.eye(V)[np.minimum(x, V - 1)])
        if self.factors is not None:
            tilt = D * self.factors[None]
        else:  # mean-field marginals of p(y | x) prod_m D_m(x_m), by enumeration of the V^L sequences
            states = enumerate_states(V, L)
            w = self.lik[None, :] * np.prod(D[:, np.arange(L)[:, None], states.T], axis=1)  # (n, V^L)
            tilt = np.stack([w.reshape(-1, V**lv, V, V ** (L - 1 - lv)).sum(axis=(1, 3)) for lv in range(L)], axis=1)
        return _normalise_rows(tilt, D, masked)

    def _quantized(self, D: np.ndarray, x: np.ndarray, masked: np.ndarray) -> np.ndarray:
        V = self.observation.vocab_size
        with np.errstate(divide="ignore"):
            z = np.log(D)
            log_lik = np.log(self.lik)
            log_fac = None if self.factors is None else np.log(self.factors)
        step = self.eta / self.iterations
        for _ in range(self.iterations):
            if log_fac is not None:  # log p(y|x) = sum_l log c[l, x_l]: linear in the one-hot codes
                g = np.broadcast_to(log_fac, z.shape)
            else:
                x_hat = np.where(masked, np.argmax(z, axis=2), x)  # the quantized expectation
                base = x_hat @ self.powers
                idx = (
                    base[:, None, None] + (np.arange(V)[None, None, :] - x_hat[:, :, None]) * self.powers[None, :, None]
                )
                g = log_lik[idx]  # (n, L, V): log p(y | x_hat with token l set to k)
                g = np.where(np.isfinite(g).any(axis=2, keepdims=True), g, 0.0)  # no signal at all: leave unguided
            with np.errstate(invalid="ignore"):
                z = z + step * g
        z = np.where(np.isnan(z), -np.inf, z)
        top = z.max(axis=2, keepdims=True)
        p = np.where(np.isfinite(top), np.exp(z - np.where(np.isfinite(top), top, 0.0)), 0.0)
        return _normalise_rows(p, D, masked)


def _normalise_rows(tilt: np.ndarray, D: np.ndarray, masked: np.ndarray) -> np.ndarray:
    total = tilt.sum(axis=2, keepdims=True)
    bad = (total[..., 0] <= 0) & masked
    if np.any(bad):
        i, lv = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"the observation is impossible given x_t[{i}] (guided weights vanish at token {lv})")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, tilt / total, D)
    return out


def guided_denoiser(
    denoiser: Any, observation: Any, y: Any, *, guidance: str = "naive", eta: float = 1.0, iterations: int = 1
):
    r"""A denoiser guided by an observation: a callable ``(x_t, t) -> (n, L, V)`` for :func:`masked_sample`.

    ``denoiser`` is the prior model ``(x_t, t) -> p(x_{0,l} = k | x_t)`` on absorbing-process states
    (mask = ``V``).  Guidance, applied at masked positions (decoded ones keep a point mass):

    * ``"none"``: the prior denoiser itself;
    * ``"naive"``: token-wise likelihood reweighting
      :math:`\tilde D_l(k) \propto \sum_{x: x_l = k} p(y|x) \prod_m D_m(x_m)` — for a token-wise
      likelihood, :math:`D_l(k)\, c_l(k)` (the standard derivative-free baseline);
    * ``"quantized"``: the quantized expectation of APS (Rout et al. 2025, sec. 3.1), adapted:
      ``iterations`` updates :math:`z_l(k) \mathrel{+}= (\eta/N) \log p(y \mid \hat x_{l\leftarrow k})`
      of the logits :math:`z = \log D`, with :math:`\hat x` the arg-max tokens (the one-hot
      expectation quantized to the nearest code; decoded tokens kept).  Token-wise likelihoods make
      the update independent of :math:`\hat x` and equal to ``"naive"`` when ``eta = 1``.  A token
      whose likelihood vanishes for every ``k`` at :math:`\hat x` is left unguided.

    ``ValueError`` (when called) if the guided weights of a masked token vanish: ``y`` is
    impossible given the decoded tokens.
    """
    obs = _observation(observation)
    guidance = check_choice("guidance", guidance, _GUIDANCES)
    if not callable(denoiser):
        raise TypeError(f"denoiser must be a callable (x_t, t) -> (n, L, V); got {type(denoiser).__name__}")
    eta = check_positive("eta", eta)
    iterations = check_steps(iterations, "iterations")
    return _GuidedDenoiser(denoiser, obs, y, guidance, eta, iterations)


# -- samplers ---------------------------------------------------------------------------------------------
def _absorbing(process: Any) -> AbsorbingDiffusion:
    if not isinstance(process, AbsorbingDiffusion):
        raise TypeError(f"process must be an AbsorbingDiffusion (masked diffusion); got {type(process).__name__}")
    return process


def _schedule(process: AbsorbingDiffusion, steps: int) -> tuple[np.ndarray, np.ndarray]:
    ts = np.linspace(1.0, 0.0, steps + 1)
    alpha = np.array([math.exp(-process.integrated_rate(float(t))) for t in ts])
    alpha[-1] = 1.0
    return ts, alpha


def _call(process: AbsorbingDiffusion, denoiser: Any, x: np.ndarray, t: float) -> np.ndarray:
    return _denoiser_output(process, denoiser, x, t)


def _unmask_sets(order: str, x: np.ndarray, D: np.ndarray, r: float, target: int, u: np.ndarray | None) -> np.ndarray:
    """Which masked tokens are decoded this step: ``(n, L)`` bool (``u`` uniforms for the random order)."""
    mask = D.shape[2]
    masked = x == mask
    if order == "random":
        return masked & (u < r)
    conf = np.where(masked, D.max(axis=2), -np.inf)
    rank = np.argsort(np.argsort(-conf, axis=1, kind="stable"), axis=1, kind="stable")
    new = np.clip(target - (~masked).sum(axis=1), 0, masked.sum(axis=1))
    return masked & (rank < new[:, None])


def masked_sample(
    process: Any, denoiser: Any, n: int, length: int, *, steps: int, order: str = "random", rng: Any = None
) -> np.ndarray:
    r"""Sample the absorbing process backwards from all-mask at ``t = 1`` to ``t = 0``: shape ``(n, L)``, int64.

    Grid ``t_k = 1 - k/steps``; :math:`\alpha_t = e^{-B(t)}` (the unmasked fraction; set to 1 at
    ``t = 0``).  From ``t`` to ``s``, tokens are decoded with values drawn from ``denoiser(x_t, t)``:

    * ``order="random"``: each masked token independently with probability
      :math:`(\alpha_s - \alpha_t)/(1 - \alpha_t)` — the ancestral sampler of masked diffusion
      (Austin et al. 2021, eq. 3; Sahoo et al. 2024; Shi et al. 2024), exact for the exact denoiser
      in the limit of small steps (several tokens decoded in one step are drawn independently);
    * ``order="anchored"``: the ``round(L alpha_s) - #decoded`` masked tokens of highest confidence
      :math:`\max_k D_l(k \mid x_t)` (ties: lower position first) — the anchored remasking of APS
      (Rout et al. 2025, sec. 3.2: predict all, keep the anchors, remask the rest); decoded tokens
      are not remasked later.  With one token per step and the exact (posterior) denoiser this is
      exact for any order, by the chain rule.

    Starting from all-mask at ``t = 1`` is exact when :math:`\alpha_1 = 0`; with a constant rate it
    is the usual approximation.  ``denoiser``: a callable ``(x_t, t) -> (n, L, V)`` (e.g.
    :func:`~diffcore.discrete.exact_denoiser` or :func:`guided_denoiser`).
    """
    process = _absorbing(process)
    n, length, steps = check_size(n, "n"), check_steps(length, "length"), check_steps(steps, "steps")
    order = check_choice("order", order, _ORDERS)
    rng = resolve_rng(rng)
    ts, alpha = _schedule(process, steps)
    mask = process.mask_token
    x = np.full((n, length), mask, dtype=np.int64)
    for k in range(steps):
        if n == 0:
            break
        D = _call(process, denoiser, x, float(ts[k]))
        r = (alpha[k + 1] - alpha[k]) / (1.0 - alpha[k]) if alpha[k] < 1 else 1.0
        u = uniform(rng, x.shape) if order == "random" else None
        target = length if k == steps - 1 else round(length * alpha[k + 1])
        decode = _unmask_sets(order, x, D, r, target, u)
        if np.any(decode):
            values = _sample_rows(rng, D[decode])
            x[decode] = values
        if not np.all(np.isfinite(D)):
            raise ValueError(f"non-finite denoiser output at step {k}, t = {ts[k]}")
    return x


def masked_sample_law(process: Any, denoiser: Any, length: int, *, steps: int, order: str = "random") -> np.ndarray:
    r"""The exact law of :func:`masked_sample`'s output over the ``V^L`` clean sequences, shape ``(V^L,)``.

    The law of the state is propagated over all ``S^L`` sequences (``S = V + 1``): from a state
    ``x`` the next state is a product over tokens — unchanged if decoded, else
    :math:`(1 - r)\,\delta_{\mathrm{mask}} + r\, D_l(\cdot \mid x)` (random order) or
    :math:`D_l(\cdot \mid x)` on the anchors (anchored order).  Cost ``O(steps · S^{2L})``;
    ``S^L <= 4096`` is required.  No Monte Carlo: TV numbers from this law are exact.
    """
    process = _absorbing(process)
    length, steps = check_steps(length, "length"), check_steps(steps, "steps")
    order = check_choice("order", order, _ORDERS)
    S, V, mask = process.num_states, process.vocab_size, process.mask_token
    check_enumerable(S, length, 4096)
    states = enumerate_states(S, length)
    ts, alpha = _schedule(process, steps)
    probs = np.zeros(S**length)
    probs[-1] = 1.0  # all-mask is the last state in lexicographic order
    eye = np.eye(S)
    for k in range(steps):
        live = np.flatnonzero(probs > 0)
        x = states[live]
        D = _call(process, denoiser, x, float(ts[k]))
        r = (alpha[k + 1] - alpha[k]) / (1.0 - alpha[k]) if alpha[k] < 1 else 1.0
        Dm = np.concatenate([D, np.zeros((*D.shape[:2], 1))], axis=2)  # (m, L, S): no mass on the mask
        masked = x == mask
        if order == "random":
            v = np.where(masked[..., None], (1.0 - r) * eye[mask] + r * Dm, eye[x])
        else:
            target = length if k == steps - 1 else round(length * alpha[k + 1])
            decode = _unmask_sets(order, x, D, r, target, None)
            v = np.where(decode[..., None], Dm, eye[x])
        rows = v[:, 0]
        for lv in range(1, length):
            rows = (rows[:, :, None] * v[:, lv, None, :]).reshape(rows.shape[0], -1)
        probs = probs[live] @ rows
    clean = state_index(enumerate_states(V, length), S)
    return probs[clean]


# -- convenience: the two posterior samplers --------------------------------------------------------------
def naive_posterior_sample(
    process: Any, denoiser: Any, observation: Any, y: Any, n: int, *, steps: int, rng: Any = None
) -> np.ndarray:
    """The baseline: token-wise likelihood reweighting (:func:`guided_denoiser`, ``"naive"``) with the
    ancestral random unmasking order of masked diffusion.  Shape ``(n, L)``."""
    obs = _observation(observation)
    _check_match(_absorbing(process).vocab_size, obs.length, obs)
    den = guided_denoiser(denoiser, obs, y, guidance="naive")
    return masked_sample(process, den, n, obs.length, steps=steps, order="random", rng=rng)


def anchored_posterior_sample(
    process: Any,
    denoiser: Any,
    observation: Any,
    y: Any,
    n: int,
    *,
    steps: int,
    eta: float = 1.0,
    iterations: int = 1,
    rng: Any = None,
) -> np.ndarray:
    """Anchored posterior sampling (APS, Rout et al. 2025), adapted to the laboratory: the quantized
    expectation guidance (:func:`guided_denoiser`, ``"quantized"``) with anchored remasking
    (:func:`masked_sample`, ``order="anchored"``).  Shape ``(n, L)``.  Simplifications: see the module
    docstring (one-hot codes, no decoder, no later remasking of decoded tokens)."""
    obs = _observation(observation)
    _check_match(_absorbing(process).vocab_size, obs.length, obs)
    den = guided_denoiser(denoiser, obs, y, guidance="quantized", eta=eta, iterations=iterations)
    return masked_sample(process, den, n, obs.length, steps=steps, order="anchored", rng=rng)


# -- measurement ------------------------------------------------------------------------------------------
def empirical_tv(samples: Any, probs: Any, vocab_size: int) -> tuple[float, float]:
    r"""Total variation between the empirical law of ``samples (n, L)`` and an exact law ``probs (V^L,)``,
    with a standard error: ``(tv, se)``.

    :math:`\widehat{TV} = \tfrac12 \sum_x |\hat p(x) - q(x)|`; the standard error is the delta-method
    one, :math:`\tfrac12 \sqrt{(\sum_x s_x^2 \hat p(x) - (\sum_x s_x \hat p(x))^2)/n}` with
    :math:`s_x = \mathrm{sign}(\hat p(x) - q(x))`.  The plug-in estimate is biased upwards by
    about :math:`\tfrac12\sum_x \sqrt{2 q(x)/(\pi n)}` when the laws agree; compare it with an exact
    TV only up to that floor.
    """
    check_same_namespace(samples=samples, probs=probs)
    probs = _probability_vector("probs", probs)
    vocab_size = check_steps(vocab_size, "vocab_size")
    length = 1
    while vocab_size > 1 and vocab_size**length < probs.shape[0]:
        length += 1
    if vocab_size**length != probs.shape[0]:
        raise ValueError(f"probs has {probs.shape[0]} entries, not a power V^L of vocab_size = {vocab_size}")
    x = check_tokens("samples", samples, vocab_size, length)
    if x.shape[0] == 0:
        raise ValueError("samples must hold at least one sequence to estimate a TV distance")
    p_hat = np.bincount(state_index(x, vocab_size), minlength=probs.shape[0]) / x.shape[0]
    diff = p_hat - probs
    s = np.sign(diff)
    tv = 0.5 * float(np.abs(diff).sum())
    var = max(float(s**2 @ p_hat - (s @ p_hat) ** 2), 0.0) / x.shape[0]
    return tv, 0.5 * math.sqrt(var)
