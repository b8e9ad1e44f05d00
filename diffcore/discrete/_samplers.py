r"""Samplers of the reverse CTMC on token sequences, with declared orders and exact output laws.

The reverse of a forward process with per-token generator ``beta(t) Q`` is a CTMC that changes one
token at a time at rates :math:`\hat R_t(x \to y)` (Campbell et al. 2022, Prop. 1; Lou et al.
2024, eq. 3; :func:`~diffcore.discrete.reverse_rates`).  A model gives it in one of two forms,
declared by ``prediction``:

* ``"rates"``: ``model(x, t) -> (n, L, S)``, the reverse rates from ``x`` (entry ``[i, l, k]`` the
  rate of setting token ``l`` to ``k``; the diagonal is ignored and recomputed);
* ``"denoiser"``: ``model(x, t) -> (n, L, V)``, the per-token posterior :math:`p(x_{0,l}=k \mid x_t)`
  (what D3PM / MDLM / MD4 networks learn), turned into rates by
  :func:`~diffcore.discrete.reverse_rates_from_denoiser` where a method needs rates.

Every method but ``"gillespie"`` is a Markov chain on the grid ``1 = t_0 > ... > t_K = t_min`` whose
step from ``t`` to ``s`` updates the tokens *independently given the current sequence*: a per-token
kernel ``K[i, l, k] = P(x_s^l = k | x_t = x_i)``.  The law of the output is therefore exactly
computable by pushing a probability vector over the ``S^L`` sequences through the Kronecker-product
kernels (:func:`discrete_sampler_law`): orders are measured without Monte Carlo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from diffcore._array import resolve_rng, uniform
from diffcore._validation import check_choice, check_positive, check_scalar_time, check_steps
from diffcore.discrete._exact import reverse_rates_from_denoiser
from diffcore.discrete._laws import _probability_vector, check_enumerable, check_tokens, enumerate_states
from diffcore.discrete._processes import AbsorbingDiffusion, AbstractCTMCDiffusion

__all__ = [
    "DISCRETE_SOLVERS",
    "DiscreteSolution",
    "EulerStep",
    "GillespieSampler",
    "MaskedUnmasking",
    "TauLeaping",
    "TweedieStep",
    "discrete_sample",
    "discrete_sampler_law",
]

_PREDICTIONS = ("rates", "denoiser")
_NEG_TOL = 1e-12  # a rate below -1e-12 (times the largest rate) is a sign error, not rounding


# -- the model, evaluated and checked ----------------------------------------------------------------
class _Model:
    """Calls the user's model, checks its output, converts between rates and denoiser, counts calls."""

    def __init__(self, process: AbstractCTMCDiffusion, model: Any, prediction: str) -> None:
        if not callable(model):
            raise TypeError(f"model must be a callable (x, t) -> array; got {type(model).__name__}")
        self.process, self.model, self.prediction = process, model, check_choice("prediction", prediction, _PREDICTIONS)
        self.nfe = 0

    def _call(self, x: np.ndarray, t: float, step: int, width: int, what: str) -> np.ndarray:
        self.nfe += 1
        out = self.model(x, t)
        if not hasattr(out, "shape") or not hasattr(out, "dtype"):
            raise TypeError(f"model must return an array of {what} of shape (n, L, {width}); got {type(out).__name__}")
        if type(out).__module__.startswith("torch"):
            raise TypeError(
                f"model must return a NumPy array like the tokens it is given; got {type(out).__name__} "
                "(convert a torch network's output with .detach().cpu().numpy())"
            )
        out = np.asarray(out)
        if out.dtype.kind not in "f":
            raise TypeError(f"model must return real floating {what}; got dtype {out.dtype}")
        if out.shape != (x.shape[0], x.shape[1], width):
            raise ValueError(
                f"model must return {what} of shape (n, L, {width}) = {(*x.shape, width)}; got {out.shape}"
            )
        out = out.astype(np.float64)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"model returned non-finite {what} at step {step} (t = {t}): NaN or infinity")
        return out

    def rates(self, x: np.ndarray, t: float, step: int) -> np.ndarray:
        """Off-diagonal reverse rates ``(n, L, S)`` (zero at the current token), all ``>= 0``."""
        S = self.process.num_states
        if self.prediction == "denoiser":
            D = self._call(x, t, step, self.process.vocab_size, "denoiser probabilities")
            R = reverse_rates_from_denoiser(self.process, D, x, t)
        else:
            R = self._call(x, t, step, S, "reverse rates")
        rows, cols = np.indices(x.shape)
        R[rows, cols, x] = 0.0
        scale = max(1.0, float(np.max(np.abs(R), initial=0.0)))
        if np.any(R < -_NEG_TOL * scale):
            i = tuple(int(v) for v in np.argwhere(R < -_NEG_TOL * scale)[0])
            raise ValueError(f"reverse rates must be >= 0 off the diagonal; got {R[i]} at {i}, step {step} (t = {t})")
        return np.maximum(R, 0.0)

    def denoiser(self, x: np.ndarray, t: float, step: int) -> np.ndarray:
        """Per-token denoiser ``(n, L, V)``; from rates only for the absorbing process (see ``MaskedUnmasking``)."""
        V = self.process.vocab_size
        if self.prediction == "denoiser":
            D = self._call(x, t, step, V, "denoiser probabilities")
            if np.any(D < 0) or np.any(np.abs(D.sum(axis=2) - 1.0) > 1e-5):
                raise ValueError(
                    f"denoiser probabilities must be >= 0 and sum to 1 over the last axis (step {step}, t = {t})"
                )
            return D
        R = self.rates(x, t, step)[..., :V]  # absorbing: R[mask -> k] = beta e^{-B}/(1-e^{-B}) p(x_0^l = k | x)
        D = np.zeros_like(R)
        rows, cols = np.nonzero(x < V)
        D[rows, cols, x[rows, cols]] = 1.0
        masked = x == V
        total = R.sum(axis=2)
        if np.any(masked & ~(total > 0)):
            i = tuple(int(v) for v in np.argwhere(masked & ~(total > 0))[0])
            raise ValueError(f"reverse rates out of the mask at {i} are all zero at step {step} (t = {t})")
        D[masked] = R[masked] / total[masked][:, None]
        return D


# -- solvers -----------------------------------------------------------------------------------------------
class _FactorisedSolver:
    """A step ``t -> s`` that updates tokens independently given ``x_t``: a per-token kernel ``(n, L, S)``."""

    name: ClassVar[str]
    order: ClassVar[int | None]
    exact: ClassVar[bool] = False

    def kernel(self, model: _Model, x: np.ndarray, t: float, s: float, step: int, last: bool) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _with_diagonal(off: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Put ``1 - (sum of the off-diagonal probabilities)`` at the current token."""
    rows, cols = np.indices(x.shape)
    off[rows, cols, x] = 0.0
    off[rows, cols, x] = 1.0 - off.sum(axis=2)
    return off


class EulerStep(_FactorisedSolver):
    r"""The Euler step of the reverse CTMC, per token: :math:`K = \delta_{x} + h \hat R_t(x, \cdot)`.

    First order in the rates (Campbell et al. 2022, sec. 4.1; the D3PM-style discretisation of the
    reverse generator), ``h = t - s``, rates frozen at the start ``t`` of the step.  When
    :math:`h \sum_{y \ne x} \hat R > 1` the stay probability would be negative: it is clipped to 0
    and the row renormalised (exact law of what is simulated).  Declared global order 1 in ``h``
    (measured in TV and KL against :math:`q_{t_{\min}}`).
    """

    name = "euler"
    order = 1

    def kernel(self, model: _Model, x: np.ndarray, t: float, s: float, step: int, last: bool) -> np.ndarray:
        K = (t - s) * model.rates(x, t, step)
        rows, cols = np.indices(x.shape)
        stay = 1.0 - K.sum(axis=2)
        K[rows, cols, x] = np.maximum(stay, 0.0)
        return K / K.sum(axis=2, keepdims=True)


class TauLeaping(_FactorisedSolver):
    r"""τ-leaping (Campbell et al. 2022, sec. 4.1, Alg. 1) with at most one jump per token per step.

    Rates frozen at ``t`` over the step; each token proposes Poisson numbers of jumps
    :math:`N_y \sim \mathrm{Poisson}(h \hat R_t(x \to y))`.  On a categorical token two or more
    jumps have no meaning; as in Campbell et al. (categorical case) the token then stays.  So the
    per-token kernel, computed exactly, is

    .. math:: K(y) = h \hat R_y\, e^{-h\lambda} \;(y \ne x), \qquad K(x) = 1 - h\lambda e^{-h\lambda},

    :math:`\lambda = \sum_{y \ne x} \hat R_y`: no jump, or exactly one.  Never negative; declared
    global order 1 in ``h``.
    """

    name = "tau_leaping"
    order = 1

    def kernel(self, model: _Model, x: np.ndarray, t: float, s: float, step: int, last: bool) -> np.ndarray:
        h = t - s
        R = model.rates(x, t, step)
        lam = R.sum(axis=2, keepdims=True)
        return _with_diagonal(h * R * np.exp(-h * lam), x)


class TweedieStep(_FactorisedSolver):
    r"""The analytic ("Tweedie") τ-leaping step: the exact one-token posterior, applied to each token.

    From a denoiser :math:`D_l(j) = p(x_{0,l} = j \mid x_t)` (Austin et al. 2021, eq. 4, the
    ``x_0``-parametrisation; for absorbing noise the MDLM / MD4 step):

    .. math:: K_l(k) = \sum_j D_l(j)\, \frac{P_{s|0}[j, k]\, P_{t|s}[k, x_{t,l}]}{P_{t|0}[j, x_{t,l}]} .

    From rates, with the concrete score :math:`r_y = \hat R_y / (\beta(t) Q[y, x_l])` (``r_{x_l} = 1``),
    Lou et al. 2024 (SEDD, Tweedie τ-leaping, eq. 19):
    :math:`K_l(k) \propto P_{t|s}[k, x_l]\, (r\, P_{t|s}^{-1})_k`, clipped at 0 — the same kernel when
    the scores are exact and every ``Q[y, x_l] > 0`` where ratios matter (uniform; absorbing).

    Per token this is the exact law of :math:`x_{s,l}` given :math:`x_t`; the step is exact for
    ``L = 1`` at any ``h``, and for ``L > 1`` its only error is drawing tokens independently
    (the factorisation), ``O(h^2)`` per step: declared global order 1.
    """

    name = "tweedie"
    order = 1

    def kernel(self, model: _Model, x: np.ndarray, t: float, s: float, step: int, last: bool) -> np.ndarray:
        proc = model.process
        V = proc.vocab_size
        P_ts = proc.transition(t, s)
        if model.prediction == "denoiser":
            D = model.denoiser(x, t, step)
            P_s0, P_t0 = proc.transition(s)[:V], proc.transition(t)[:V]
            den = P_t0[:, x].transpose(1, 2, 0)  # (n, L, V): P_{t|0}[j, x_l]
            with np.errstate(divide="ignore", invalid="ignore"):
                w = np.where(den > 0, D / den, 0.0)
            K = (w @ P_s0) * P_ts[:, x].transpose(1, 2, 0)  # (n, L, S)
        else:
            R = model.rates(x, t, step)
            Q_in = proc.rate(t) * proc.generator.T[x]  # beta Q[y, x_l]
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(Q_in > 0, R / Q_in, 0.0)
            rows, cols = np.indices(x.shape)
            r[rows, cols, x] = 1.0
            inv = proc._transition(-(proc.integrated_rate(t) - proc.integrated_rate(s)))
            K = np.maximum(r @ inv, 0.0) * P_ts[:, x].transpose(1, 2, 0)
        total = K.sum(axis=2, keepdims=True)
        if np.any(~(total > 0)):
            i = tuple(int(v) for v in np.argwhere(~(total[..., 0] > 0))[0])
            raise ValueError(
                f"the tweedie step has no mass at token {i}, step {step} (t = {t}): the model is inconsistent"
            )
        return K / total


class MaskedUnmasking(_FactorisedSolver):
    r"""The masked-diffusion sampler: unmask the most confident masked tokens (MaskGIT; MDLM/LLaDA top-k).

    For an :class:`~diffcore.discrete.AbsorbingDiffusion`.  On the step ``t -> s`` a sequence with
    ``m`` masked tokens keeps :math:`\min(m, \lfloor L\,(1 - e^{-B(s)})/(1 - e^{-B(1)}) \rfloor)` of
    them masked (the expected mask count of an all-mask start, floored so that no step of a run with
    ``steps >= L`` unmasks two tokens; all are unmasked on the last step); it unmasks
    the others in decreasing order of confidence :math:`\max_k D_l(k)` (ties: the lower position),
    each drawn from its denoiser marginal :math:`D_l` (Chang et al. 2022; Sahoo et al. 2024; Nie et
    al. 2025).  Positions are chosen deterministically given ``x_t``, so the kernel is per token.

    A heuristic with no order in ``h`` (``order = None``): with the exact denoiser, a run that never
    unmasks two tokens at once samples :math:`p_0` exactly (chain rule in an adaptive order); its
    error is the factorisation of the tokens unmasked together.  With ``prediction="rates"``
    the denoiser at a masked token is the normalised rate out of the mask (exact for absorbing noise).
    """

    name = "masked"
    order = None

    def kernel(self, model: _Model, x: np.ndarray, t: float, s: float, step: int, last: bool) -> np.ndarray:
        proc = model.process
        V = proc.vocab_size
        D = model.denoiser(x, t, step)
        masked = x == V
        m = masked.sum(axis=1)
        if last:
            keep = np.zeros_like(m)
        else:
            frac = (1.0 - math.exp(-proc.integrated_rate(s))) / (1.0 - math.exp(-proc.integrated_rate(1.0)))
            keep = np.minimum(m, math.floor(x.shape[1] * frac + 1e-9))
        conf = np.where(masked, D.max(axis=2), -np.inf)
        order = np.argsort(-conf, axis=1, kind="stable")  # most confident first, ties by position
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(x.shape[1])[None, :].repeat(x.shape[0], 0), axis=1)
        chosen = masked & (rank < (m - keep)[:, None])
        K = np.zeros((*x.shape, proc.num_states))
        rows, cols = np.indices(x.shape)
        K[rows, cols, x] = 1.0
        K[chosen] = 0.0
        K[chosen, :V] = D[chosen]
        return K


class GillespieSampler:
    r"""Exact simulation of the reverse CTMC with time-dependent rates, by uniformisation (thinning).

    Each sequence runs its own Poisson clock of rate :math:`\Lambda_i` backwards from ``t`` on each grid
    interval ``[s, t]``; at a tick ``u`` it jumps with probability :math:`\lambda_i(u)/\Lambda_i`
    (:math:`\lambda_i` its total exit rate) to a single-token change ``y`` drawn with probability
    :math:`\hat R_u(x_i \to y)/\lambda_i(u)` (Gillespie 1977; Lewis and Shedler 1979 thinning).
    :math:`\Lambda_i` is ``safety`` times the largest exit rate of the current state at ``t``,
    ``(t + s)/2`` and ``s`` (re-probed from the time of each jump).  The path law is exactly the
    CTMC's when :math:`\Lambda_i \ge \lambda_i(u)` at every tick; every tick checks it, and a
    violation raises ``ValueError`` (more ``steps`` give tighter intervals).  Clocks are independent
    (a clock shared by the batch would correlate the samples), so the model is called on one
    sequence per tick: cost ``O(n)`` calls per unit of rate.  No order: ``steps`` only sets the
    intervals of the bound; ``nfe`` counts the calls (ticks and probes).
    """

    name = "gillespie"
    order = None
    exact = True

    def __init__(self, safety: float = 2.0) -> None:
        self.safety = check_positive("safety", safety)
        if self.safety < 1:
            raise ValueError(f"safety must be >= 1 (a bound below the largest rate is no bound); got {self.safety}")

    def run(self, model: _Model, x: np.ndarray, ts: np.ndarray, rng: Any) -> np.ndarray:
        x = x.copy()
        n = x.shape[0]
        for step in range(len(ts) - 1):
            t, s = float(ts[step]), float(ts[step + 1])
            if n == 0:
                break
            probes = [model.rates(x, u, step).sum(axis=(1, 2)) for u in (t, 0.5 * (t + s), s)]
            bounds = self.safety * np.maximum(np.max(probes, axis=0), 1e-300)
            for i in range(n):  # independent clocks: one sample at a time (the model takes one t)
                x[i] = self._interval(model, x[i : i + 1], t, s, float(bounds[i]), step, rng)
        return x

    def _interval(
        self, model: _Model, x: np.ndarray, t: float, s: float, bound: float, step: int, rng: Any
    ) -> np.ndarray:
        """Thinning for one sequence ``x (1, L)`` from ``t`` down to ``s``."""
        L, S = x.shape[1], model.process.num_states
        u = t
        while True:
            u -= -math.log1p(-float(uniform(rng, (1,))[0])) / bound
            if u <= s:
                return x[0]
            R = model.rates(x, u, step).reshape(L * S)
            lam = float(R.sum())
            if lam > bound:
                raise ValueError(
                    f"gillespie: the exit rate {lam:.6g} exceeds the thinning bound {bound:.6g} at step {step} "
                    f"(t = {u}); use more steps or a larger safety"
                )
            if float(uniform(rng, (1,))[0]) * bound < lam:
                cdf = np.cumsum(R)
                pick = min(int((cdf <= float(uniform(rng, (1,))[0]) * cdf[-1]).sum()), L * S - 1)
                x = x.copy()
                x[0, pick // S] = pick % S
                probes = [model.rates(x, v, step).sum() for v in (u, 0.5 * (u + s), s)]
                bound = self.safety * max(max(probes), 1e-300)  # the new state's bound, from the jump time on

    def __repr__(self) -> str:
        return f"GillespieSampler(safety={self.safety})"


DISCRETE_SOLVERS: dict[str, type] = {
    "euler": EulerStep,
    "tau_leaping": TauLeaping,
    "tweedie": TweedieStep,
    "gillespie": GillespieSampler,
    "masked": MaskedUnmasking,
}


# -- drivers --------------------------------------------------------------------------------------------
@dataclass
class DiscreteSolution:
    """The result of :func:`discrete_sample`.

    Attributes
    ----------
    x : the final sequences, int64 ``(n, L)``.
    ts : the grid ``1 = t_0 > ... > t_K = t_min``, float64 ``(steps + 1,)``.
    nfe : the number of (batch) model calls.
    solver : the solver object used.
    """

    x: np.ndarray
    ts: np.ndarray
    nfe: int
    solver: Any


def _setup(process: Any, model: Any, method: Any, steps: Any, t_min: Any, prediction: Any) -> tuple:
    if not isinstance(process, AbstractCTMCDiffusion):
        raise TypeError(
            f"process must be a UniformDiffusion, AbsorbingDiffusion or MarkovDiffusion; got {type(process).__name__}"
        )
    method = check_choice("method", method, tuple(DISCRETE_SOLVERS))
    steps = check_steps(steps)
    t_min = check_scalar_time(t_min, "t_min")
    if not t_min < 1.0:
        raise ValueError(f"t_min must be < 1 (the sampler runs from t = 1 down to t_min); got {t_min}")
    if method == "gillespie" and not t_min > 0:
        raise ValueError("t_min must be > 0 for gillespie: the reverse rates may diverge at t = 0; got 0.0")
    if method == "masked" and not isinstance(process, AbsorbingDiffusion):
        raise ValueError(f"method 'masked' needs an AbsorbingDiffusion; got {type(process).__name__}")
    wrapped = _Model(process, model, prediction)
    ts = np.linspace(1.0, t_min, steps + 1)
    return method, wrapped, ts


def _draw(rng: Any, K: np.ndarray) -> np.ndarray:
    """One token per row of the per-token kernel ``K (n, L, S)``."""
    n, L, S = K.shape
    flat = K.reshape(n * L, S)
    cdf = np.cumsum(flat, axis=1)
    u = uniform(rng, (n * L, 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), S - 1).reshape(n, L)


def discrete_sample(
    process: Any,
    model: Any,
    x_init: Any,
    *,
    method: str,
    steps: int,
    t_min: float = 1e-3,
    prediction: str = "denoiser",
    rng: Any = None,
    safety: float = 2.0,
) -> DiscreteSolution:
    r"""Sample the reverse CTMC of ``process`` from ``x_init`` at ``t = 1`` down to ``t_min``.

    Parameters
    ----------
    process : UniformDiffusion, AbsorbingDiffusion or MarkovDiffusion
    model : callable ``(x, t) -> array``
        ``x`` int64 ``(n, L)``, ``t`` a float.  With ``prediction="denoiser"`` (default) it returns
        :math:`p(x_{0,l} = k \mid x_t)`, shape ``(n, L, V)`` (e.g. :func:`~diffcore.discrete.exact_denoiser`);
        with ``prediction="rates"`` the reverse rates ``(n, L, S)`` (e.g. ``lambda x, t:
        reverse_rates(process, law, x, t)``).
    x_init : int array ``(n, L)``
        states at ``t = 1`` (codes ``< S``): draws of the prior, e.g. all masks.
    method : ``"euler"`` | ``"tau_leaping"`` | ``"tweedie"`` | ``"gillespie"`` | ``"masked"``
        see :data:`DISCRETE_SOLVERS` and each class for the step and its declared ``order``.
    steps : int
        ``K``: the uniform grid :math:`t_k = 1 - k (1 - t_{\min})/K`, ``h = (1 - t_min)/K``.
    t_min : float in ``[0, 1)``
        the final time (``> 0`` for ``"gillespie"``); the output approximates :math:`q_{t_{\min}}`.
    prediction : ``"denoiser"`` | ``"rates"``
    rng : None, int or Generator
    safety : float ``>= 1``
        ``"gillespie"`` only: the uniformisation bound is ``safety`` times the probed exit rate.

    Returns
    -------
    DiscreteSolution with ``x`` int64 ``(n, L)``, ``ts``, ``nfe``, ``solver``.

    Raises
    ------
    ValueError
        unknown method or prediction, tokens outside the alphabet, ``t_min`` outside ``[0, 1)``,
        model outputs of the wrong shape, non-finite (naming the step and time) or negative rates,
        ``"masked"`` on a non-absorbing process, a violated Gillespie bound.
    """
    method, wrapped, ts = _setup(process, model, method, steps, t_min, prediction)
    x = check_tokens("x_init", x_init, process.num_states)
    rng = resolve_rng(rng)
    if method == "gillespie":
        solver = GillespieSampler(safety)
        x = solver.run(wrapped, x, ts, rng)
        return DiscreteSolution(x, ts, wrapped.nfe, solver)
    solver = DISCRETE_SOLVERS[method]()
    for step in range(len(ts) - 1):
        if x.shape[0] == 0:
            break
        K = solver.kernel(wrapped, x, float(ts[step]), float(ts[step + 1]), step, step == len(ts) - 2)
        x = _draw(rng, K)
    return DiscreteSolution(x, ts, wrapped.nfe, solver)


def discrete_sampler_law(
    process: Any,
    model: Any,
    p_init: Any,
    *,
    method: str,
    steps: int,
    t_min: float = 1e-3,
    prediction: str = "denoiser",
    max_states: int = 4096,
) -> np.ndarray:
    r"""The exact law of :func:`discrete_sample`'s output, over all ``S^L`` sequences: shape ``(S^L,)``.

    For the per-token (factorised) methods ``"euler"``, ``"tau_leaping"``, ``"tweedie"``, ``"masked"``
    the step ``t -> s`` has the transition matrix
    :math:`T[x, y] = \prod_l K_l(x)[y_l]` (a product of per-token kernels given ``x``), so

    .. math:: p_{k+1} = p_k\, T_k, \qquad p_0 = p_{\mathrm{init}},

    computed exactly (the model is called on the sequences of positive mass only).  ``p_init``:
    the law of ``x_init`` over the ``S^L`` sequences in :func:`~diffcore.discrete.enumerate_states`
    order (e.g. ``process.marginal(law, 1.0)``).  ``"gillespie"`` is refused: its law is the CTMC's
    (the solution of the reverse Kolmogorov equation), tested by a chi-square test instead.
    Refused when ``S^L > max_states`` (default 4096; the matrix ``T`` is dense).
    """
    method, wrapped, ts = _setup(process, model, method, steps, t_min, prediction)
    if method == "gillespie":
        raise ValueError("discrete_sampler_law covers the per-token methods; gillespie simulates the CTMC exactly")
    p = _probability_vector("p_init", p_init)
    S = process.num_states
    if p.ndim != 1 or p.shape[0] < S:
        raise ValueError(f"p_init must be a probability vector of shape (S^L,) with S = {S}; got shape {p.shape}")
    L = max(1, round(math.log(p.shape[0]) / math.log(S)))
    size = check_enumerable(S, L, check_steps(max_states, "max_states"))
    if size != p.shape[0]:
        raise ValueError(f"p_init must have S^L entries (S = {S}); got {p.shape[0]}")
    states = enumerate_states(S, L, max_states=max_states)
    solver = DISCRETE_SOLVERS[method]()
    for step in range(len(ts) - 1):
        live = np.nonzero(p > 0)[0]
        K = solver.kernel(wrapped, states[live], float(ts[step]), float(ts[step + 1]), step, step == len(ts) - 2)
        T = K[:, 0, :]
        for lv in range(1, L):
            T = (T[:, :, None] * K[:, lv, None, :]).reshape(live.shape[0], -1)
        p = p[live] @ T
    return p
