r"""Superposition of diffusion models with the Itô density estimator: OR, AND and averaging.

``M`` models share one forward process; model ``i`` has score ``s_i`` of marginals ``q^i_t``.
One reverse-SDE path is driven by the weighted score ``sum_i kappa_i s_i``,

.. math:: dy = \big(-f y + g^2 \textstyle\sum_i \kappa_i(y, \tau)\, s_i(y, t)\big) d\tau + g\, dW,

and every ``log q^i_t(y)`` is tracked along it by the Itô estimator (valid for any path, see
:mod:`diffcore.likelihood._ito`).  The weights (Skreta et al. 2025, sec. 4, "SuperDiff"):

* ``"or"``: ``kappa = softmax(T log q^i_t(y) + log w_i)``.  With ``T = 1``
  ``sum_i kappa_i s_i = grad log sum_i w_i q^i_t`` exactly, so the path samples the mixture
  ``sum_i w_i q^i`` of the models' laws (same forward process, so the mixture's marginals are
  the mixtures of the marginals).
* ``"and"``: ``kappa`` solves, each step, the ``M`` linear equations "``sum kappa = 1`` and the
  updated estimates ``l_i + Δl_i(kappa)`` all equal" (the increments ``Δl_i`` of the estimates
  are linear in ``kappa`` through the increment ``Δy``), so the samples end where the models'
  densities agree.  This equalises the *totals* ``l_i``, where the reference code equalises the
  *increments* ``Δl_i``; see below.
* ``"average"``: ``kappa = 1/M``, the naive baseline (the score of the normalised geometric mean
  of the marginals, which is not the marginal of anything).

Relation to the reference code of SuperDiff (github.com/necludov/super-diffusion).  Its AND rule
(``select_kappa`` in ``notebooks/superposition_edu.ipynb``; the ``"and"`` branch of
``applications/images/clip_eval.py``; ``kappa_AND`` in ``applications/proteins/superdiff/
composition.py``) is written for ``M = 2`` and picks ``kappa`` so that the two *increments* of
one step agree, ``Δl_1(kappa) = Δl_2(kappa)``; the current values ``l_1``, ``l_2`` do not enter,
and both start from the same value (the prior log density in the notebook, the constant 1 in
``clip_eval.py``).  Here ``kappa`` makes the *totals* agree, ``l_1 + Δl_1 = l_2 + Δl_2``.

* They coincide when the start values are equal (``log_prob_init=None``: every model starts from
  ``process.prior_log_prob``) and every step's system is solved exactly: then ``l_1 = l_2``
  before each step and the two conditions are the same equation, for ``M = 2`` the same
  ``kappa`` per sample.
* They differ when the start values differ (``log_prob_init`` per model): the reference keeps the
  initial gap ``l_1 - l_2`` for ever, ours closes it in the first step (with a large ``kappa``)
  and then keeps the estimates equal — the AND target is the set where the densities themselves
  agree, ``q^1_t(y) = q^2_t(y)``, not where their changes along the path agree.  They also
  differ after a step whose system is degenerate or ill-conditioned (nearly equal scores, where
  :func:`and_weights` returns the least-squares solution): the gap it leaves, and any rounding,
  is fed back and corrected at the next step here, but carried along and accumulated by the
  increment rule.  Ours solves any ``M``.
* Two features of the reference are not reproduced: the image and protein scripts add a bias
  ``lift`` to the numerator of ``kappa`` (0 in ``clip_eval.py``; ``logp`` times a normalised
  ``log sigma_t`` in the protein code), which shifts the target difference of the increments by
  a constant per step; and ``kappa_AND`` of the protein code sums numerator and denominator over
  the batch, so one ``kappa`` is shared by all samples, where here (and in the other two
  scripts) every sample has its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from diffcore._array import as_array, device_of, namespace
from diffcore._validation import (
    check_array,
    check_choice,
    check_nonnegative,
    check_positive,
    check_progress,
    check_same_namespace,
)
from diffcore.distributions._components import logsumexp, softmax
from diffcore.likelihood._divergence import check_batch_size
from diffcore.likelihood._ito import as_score, check_x_init, grid_for, run, start_values
from diffcore.processes import AbstractProcess
from diffcore.samplers import EulerMaruyama, Solution

__all__ = ["and_weights", "superpose", "superposition_weights"]

Array = Any
MODES = ("or", "and", "average")


def _check_log_densities(log_densities: Any) -> Array:
    log_densities = check_array("log_densities", log_densities, ndim=2, shape="(n, M)")
    if log_densities.shape[1] < 1:
        raise ValueError(f"log_densities must have shape (n, M) with M >= 1; got {tuple(log_densities.shape)}")
    return log_densities


def _check_weights(weights: Any, m: int, like: Array) -> Array:
    xp = namespace(like)
    if weights is None:
        return xp.full((m,), 1.0 / m, dtype=like.dtype)
    w = as_array(weights, like)
    if w.ndim != 1 or w.shape[0] != m:
        raise ValueError(f"weights must have shape (M,) = ({m},); got {tuple(w.shape)}")
    if not bool(xp.all(w > 0)) or abs(float(xp.sum(w)) - 1.0) > 1e-6:
        raise ValueError(f"weights must be positive and sum to 1; got {[float(v) for v in w]}")
    return w


def superposition_weights(
    log_densities: Array, mode: str = "or", *, weights: Any = None, temperature: float = 1.0
) -> Array:
    r"""The OR or averaging weights ``kappa`` of :func:`superpose`, shape ``(n, M)``.

    ``"or"``: ``kappa_i = exp(T l_i + log w_i) / sum_j exp(T l_j + log w_j)`` for log densities
    ``l`` ``(n, M)`` (Skreta et al. 2025, sec. 4, the OR weights with temperature ``T`` and bias
    ``log w``); ``"average"``: ``kappa_i = 1/M``.  Rows sum to one and are unchanged by adding a
    constant to all log densities of a row.  (AND weights depend on the scores: :func:`and_weights`.)

    Example
    -------
    >>> import numpy as np
    >>> superposition_weights(np.log([[1.0, 3.0]]))
    array([[0.25, 0.75]])
    """
    log_densities = _check_log_densities(log_densities)
    check_choice("mode", mode, ("or", "average"))
    temperature = check_nonnegative("temperature", temperature)
    xp = namespace(log_densities)
    w = _check_weights(weights, log_densities.shape[1], log_densities)
    if mode == "average":
        return xp.ones_like(log_densities) / log_densities.shape[1]
    return softmax(temperature * log_densities + xp.log(w)[None, :], axis=1)


def and_weights(scores: Array, offsets: Array, scale: float) -> Array:
    r"""Weights ``kappa`` ``(n, M)`` that make ``offsets_i + scale sum_j kappa_j <s_i, s_j>`` equal over ``i``.

    With ``sum_j kappa_j = 1`` these are ``M`` linear equations per sample (the AND rule of
    Skreta et al. 2025, sec. 4, solved exactly for any ``M``): ``scores`` ``(n, M, D)``,
    ``offsets`` ``(n, M)`` (the parts of the estimated ``log q^i`` after the step that do not
    depend on ``kappa``), ``scale = h g^2 > 0``.  Each equation is normalised and the system
    solved by the pseudo-inverse, so a degenerate one (equal scores; ``M - 1 > D``) gives the
    least-squares solution of smallest norm instead of infinities; for ``M = 2``,
    ``kappa_2 = (c_1 - c_2 - scale <s_2 - s_1, s_1>) / (scale |s_1 - s_2|^2)``.

    :func:`superpose` passes the *totals*, ``offsets_i = l_i + (the kappa-free part of the
    increment Δl_i)``, so that the estimates after the step agree.  The SuperDiff reference code
    in effect leaves out the current ``l_i`` (offsets = the kappa-free increments), which
    equalises the increments instead; both give the same ``kappa`` when the ``l_i`` are already
    equal (see the module notes for when they are not).

    The weights are not constrained to be non-negative: the equations fix only their sum, and
    where the models' densities agree beyond the scores' convex hull some ``kappa_j < 0`` (an
    affine, not a convex, combination of the scores), as in the reference code.

    Raises ``TypeError``/``ValueError`` for arrays of the wrong shape, kind or library, NaN, or
    ``scale <= 0``; an empty batch (``n = 0``) gives ``(0, M)``.
    """
    xp = check_same_namespace(scores=scores, offsets=offsets)
    scores = check_array("scores", scores, ndim=3, shape="(n, M, D)")
    offsets = check_array("offsets", offsets, ndim=2, shape="(n, M)")
    if offsets.shape != scores.shape[:2]:
        raise ValueError(f"offsets must have shape (n, M) = {tuple(scores.shape[:2])}; got {tuple(offsets.shape)}")
    if offsets.dtype != scores.dtype:
        offsets = as_array(offsets, scores)
    scale = check_positive("scale", scale)
    if scores.shape[0] == 0:
        return xp.zeros(tuple(offsets.shape), dtype=scores.dtype, device=device_of(scores))
    return _solve_and(scores, offsets, scale)


def _solve_and(scores: Array, offsets: Array, scale: float) -> Array:
    """The linear solve of :func:`and_weights`, without the checks (called at every step of :func:`superpose`)."""
    xp = namespace(scores)
    n, m = offsets.shape
    gram = scale * (scores @ xp.permute_dims(scores, (0, 2, 1)))  # (n, M, M)
    rows = gram[:, 1:, :] - gram[:, :1, :]
    rhs = offsets[:, :1] - offsets[:, 1:]
    norm = xp.sqrt(xp.sum(rows**2, axis=2))
    norm = xp.where(norm > 0, norm, xp.ones_like(norm))
    ones = xp.ones((n, 1, m), dtype=offsets.dtype, device=offsets.device)
    a = xp.concat([rows / norm[:, :, None], ones], axis=1)
    b = xp.concat([rhs / norm, xp.ones((n, 1), dtype=offsets.dtype, device=offsets.device)], axis=1)
    return (xp.linalg.pinv(a) @ b[:, :, None])[:, :, 0]


def _or_mixer(weights: Array, temperature: float) -> Callable:
    def mix(ell, s_flat, y_flat, dy0, f, g2, h):
        return superposition_weights(ell, "or", weights=weights, temperature=temperature)

    return mix


def _and_mixer(ell, s_flat, y_flat, dy0, f, g2, h):
    xp = namespace(ell)
    dim = y_flat.shape[1]
    proj_y = xp.sum(s_flat * y_flat[:, None, :], axis=2)
    offsets = ell + h * (dim * f + f * proj_y - 0.5 * g2 * xp.sum(s_flat**2, axis=2))
    offsets = offsets + xp.sum(s_flat * dy0[:, None, :], axis=2)
    return _solve_and(s_flat, offsets, h * g2)


def _average_mixer(ell, s_flat, y_flat, dy0, f, g2, h):
    return namespace(ell).ones_like(ell) / ell.shape[1]


def _models(process: AbstractProcess, scores: Any, prediction: Any) -> list[Callable]:
    if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence):
        raise TypeError(f"scores must be a list of callables (x, t) -> array; got {type(scores).__name__}")
    if len(scores) == 0:
        raise ValueError("scores must hold at least one model; got an empty list")
    preds = [prediction] * len(scores) if isinstance(prediction, str) else list(prediction)
    if len(preds) != len(scores):
        raise ValueError(f"prediction must be a name or one per model ({len(scores)}); got {len(preds)}")
    return [as_score(process, s, p, f"scores[{i}]") for i, (s, p) in enumerate(zip(scores, preds))]


def superpose(
    process: AbstractProcess,
    scores: Sequence[Callable[[Array, Any], Array]],
    x_init: Array,
    *,
    mode: str = "or",
    steps: int,
    t_min: float = 1e-3,
    rng: Any = None,
    weights: Any = None,
    temperature: float = 1.0,
    prediction: Any = "score",
    log_prob_init: Sequence[Any] | None = None,
    t_max: float = 1.0,
    grid: str = "uniform",
    prior_control: bool = True,
    save_path: bool = False,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> Solution:
    r"""Sample a superposition of ``M`` diffusion models (OR, AND or averaging) with Itô log densities.

    Euler–Maruyama on ``dy = (-f y + g^2 sum_i kappa_i s_i) dtau + g dW`` from ``t_max`` to
    ``t_min``; at each step the weights ``kappa`` come from the current Itô estimates
    ``l_i ~ log q^i_t(y)`` (module notes; Skreta et al. 2025, sec. 4): ``"or"`` samples the
    mixture ``sum_i w_i q^i`` (:func:`superposition_weights`), ``"and"`` keeps the ``l_i`` equal
    (:func:`and_weights`), ``"average"`` uses ``kappa = 1/M``.  ``M`` score evaluations per step.

    Two properties of AND to know.  Its weights cancel the noise along ``s_1 - s_2``, so the
    path's diffusion is no longer ``g^2 I`` as the Itô formula assumes: the estimates carry a
    bias of ``1/2 g^2 e^T (H_1 - H_2) e`` per unit time (``H_i`` the Hessians of ``log q^i``) that
    a finer grid does not remove.  And ``kappa`` is not bounded: where the scores nearly agree the
    linear system is ill-conditioned, ``kappa`` is large and a few paths are thrown far out, so
    judge AND samples by robust statistics (quantiles), not by moments.

    Our AND equalises the *totals* ``l_i`` after every step; the SuperDiff reference code
    equalises the *increments* ``Δl_i`` of each step.  With equal start values (the default
    ``log_prob_init=None``) the two rules choose the same ``kappa``; with unequal start values
    the reference keeps the initial gap, ours closes it at the first step; and after a
    degenerate step ours corrects the remaining gap where the reference carries it along
    (module notes).

    Parameters
    ----------
    process : the forward process shared by the models.
    scores : a non-empty list of callables ``(x, t) -> (n, ...)``; ``prediction`` names what they
        predict (one name, or one per model), converted to scores by :func:`diffcore.reparametrize`.
    x_init : ``(n, ...)`` prior draws at ``t_max``.
    mode : ``"or"``, ``"and"`` or ``"average"``.
    steps, t_min, t_max, grid, rng, prior_control, save_path, batch_size, progress : as for
        :func:`ito_log_density`.
    weights : OR mixture weights ``(M,)`` (default uniform); temperature : OR temperature ``T``.
    log_prob_init : ``None`` (the prior's log density for every model) or one start value per model
        (an ``(n,)`` array or a callable of ``x_init``).

    Returns
    -------
    :class:`~diffcore.Solution`: ``x`` the samples; ``model_log_densities`` ``(n, M)`` the estimates
    of every ``log q^i_{t_min}(x)``; ``log_density`` ``(n,)``: for ``"or"`` the mixture's
    ``log sum_i w_i q^i`` (its density when ``T = 1``), otherwise the mean of the ``M`` estimates
    (for ``"and"`` they are equal); ``log_density_path`` that quantity at every grid time when
    ``save_path``.

    Raises
    ------
    TypeError, ValueError
        for bad models, mode, weights, grid, or a model output of the wrong shape (named).
    FloatingPointError
        when the state or an estimate stops being finite (with the step and the times).

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian, exact_score
    >>> p = VPSDE()
    >>> models = [exact_score(p, Gaussian(np.full(2, c), np.eye(2))) for c in (-2.0, 2.0)]
    >>> sol = superpose(p, models, p.prior_sample((5, 2), rng=0), mode="or", steps=20, rng=1)
    >>> sol.x.shape, sol.model_log_densities.shape, sol.nfe
    ((5, 2), (5, 2), 40)
    """
    check_choice("mode", mode, MODES)
    x_init = check_x_init(x_init)
    ts = grid_for(process, steps, t_min, t_max, grid)
    models = _models(process, scores, prediction)
    m = len(models)
    w = _check_weights(weights, m, as_array(0.0, x_init)[None])
    temperature = check_nonnegative("temperature", temperature)
    if log_prob_init is None:
        log_prob_init = [None] * m
    if isinstance(log_prob_init, (str, bytes)) or not isinstance(log_prob_init, Sequence) or len(log_prob_init) != m:
        raise ValueError(f"log_prob_init must be None or a list of one start value per model ({m})")
    xp = namespace(x_init)
    ell0 = xp.stack([start_values(process, x_init, v, f"log_prob_init[{i}]") for i, v in enumerate(log_prob_init)], 1)
    mix = {"or": _or_mixer(w, temperature), "and": _and_mixer, "average": _average_mixer}[mode]
    batch_size = check_batch_size(batch_size)
    check_progress(progress)
    out = run(
        process, models, x_init, ts, rng, ell0, mix, prior_control=prior_control, save_path=save_path,
        batch_size=batch_size, progress=progress, desc=f"superpose ({mode})",
    )  # fmt: skip

    def combine(ell: Array) -> Array:
        if mode == "or":
            return logsumexp(ell + xp.log(w), axis=ell.ndim - 1)
        return xp.mean(ell, axis=ell.ndim - 1)

    return Solution(
        x=out.x,
        ts=ts,
        nfe=out.nfe,
        solver=EulerMaruyama(),
        path=out.path,
        log_density=combine(out.log_densities),
        log_density_path=None if out.log_path is None else combine(out.log_path),
        model_log_densities=out.log_densities,
    )
