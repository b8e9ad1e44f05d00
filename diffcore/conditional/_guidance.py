"""Classifier and classifier-free guidance as score callables, and the tilted law they aim at."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array, is_scalar_time, namespace, resolve_rng, uniform
from diffcore._validation import check_points, check_real, check_scalar_time, check_size
from diffcore.conditional._grid import GridLaw, default_box
from diffcore.conditional._labelled import LabelledMixture, _class_mask, _masked_responsibilities, check_labels
from diffcore.distributions._components import component_terms, logsumexp, softmax

__all__ = ["GuidedScore", "TiltedLaw", "classifier_free_guidance", "classifier_guidance"]

Array = Any
Field = Callable[[Array, Any], Array]


def _interval(interval: Any) -> tuple[float, float] | None:
    if interval is None:
        return None
    try:
        lo, hi = interval
    except (TypeError, ValueError) as err:
        raise TypeError(f"interval must be a pair (t_lo, t_hi) or None; got {interval!r}") from err
    lo, hi = check_scalar_time(lo, "interval[0]"), check_scalar_time(hi, "interval[1]")
    if lo > hi:
        raise ValueError(f"interval must have t_lo <= t_hi; got ({lo}, {hi})")
    return lo, hi


@dataclass(frozen=True, eq=False)
class GuidedScore:
    r"""``s(x, t) = base(x, t) + w(t) * direction(x, t)``, with ``w(t) = weight`` inside ``interval``.

    The one mechanism behind both guidances (see :func:`classifier_free_guidance` and
    :func:`classifier_guidance`); outside the interval ``w(t) = outside`` (the plain
    conditional score).  ``t`` may be a float or an ``(n,)`` array (then ``w`` is per point).
    A callable ``(x, t) -> (n, d)`` for every sampler of :func:`diffcore.sample`.
    """

    base: Field
    direction: Field
    weight: float
    outside: float
    interval: tuple[float, float] | None = None

    def weight_at(self, t: Any, like: Array) -> Any:
        """``w(t)``: a float for a float ``t``, an ``(n, 1)`` array for an ``(n,)`` array."""
        if self.interval is None:
            return self.weight
        lo, hi = self.interval
        if is_scalar_time(t):
            return self.weight if lo <= float(t) <= hi else self.outside
        xp = namespace(like)
        t = as_array(t, like)
        inside = (t >= lo) & (t <= hi)
        w_in, w_out = (
            xp.asarray(v, dtype=like.dtype, device=getattr(like, "device", None)) for v in (self.weight, self.outside)
        )
        return xp.reshape(xp.where(inside, w_in, w_out), (-1, 1))  # in x's dtype (a float64 w would promote)

    def __call__(self, x: Array, t: Any) -> Array:
        return self.base(x, t) + self.weight_at(t, x) * self.direction(x, t)


@dataclass(frozen=True, eq=False)
class _Difference:
    a: Field
    b: Field

    def __call__(self, x: Array, t: Any) -> Array:
        return self.a(x, t) - self.b(x, t)


def classifier_free_guidance(
    conditional: Field, unconditional: Field, w: float, *, interval: Any = None
) -> GuidedScore:
    r"""Classifier-free guidance: ``(1 + w) s(x | y) - w s(x)`` (Ho and Salimans 2022, eq. 6).

    ``w = 0`` is the conditional score, ``w = -1`` the unconditional one; ``w > 0`` sharpens.
    At ``t = 0`` it is the score of the tilted law ``p(x) p(y | x)^{1 + w}``
    (:class:`TiltedLaw` with ``gamma = 1 + w``), but at ``t > 0`` it is *not* the score of the
    noised tilted law, so the sampled law differs from the tilted one (Chidambaram et al. 2024;
    Bradley and Nakkiran 2024; measured in the book chapter "Guidance").

    Parameters
    ----------
    conditional, unconditional : score callables ``(x, t) -> (n, d)``.
    w : guidance weight, ``>= -1`` (``gamma = 1 + w`` must be a non-negative power).
    interval : ``(t_lo, t_hi)`` to guide only there and use the conditional score elsewhere
        (the guidance interval of Kynkäänniemi et al. 2024); ``None`` guides at every ``t``.

    Evaluates both scores at every call (2 network evaluations per NFE for a learned model).
    """
    w = check_real("w", w)
    if w < -1:
        raise ValueError(f"w must be >= -1 (the tilt exponent gamma = 1 + w must be >= 0); got {w}")
    return GuidedScore(conditional, _Difference(conditional, unconditional), w, 0.0, _interval(interval))


def classifier_guidance(score: Field, classifier_score: Field, scale: float, *, interval: Any = None) -> GuidedScore:
    r"""Classifier guidance: ``s(x) + scale * grad log p_t(y | x)`` (Dhariwal and Nichol 2021, alg. 1).

    ``scale = 1`` is the conditional score (Bayes); ``scale = gamma`` equals classifier-free
    guidance with ``w = gamma - 1`` when both use the exact fields.  ``scale`` must be ``>= 0``
    (a negative scale pushes away from the class: not guidance).  Outside ``interval`` the scale is 1.
    """
    scale = check_real("scale", scale)
    if scale < 0:
        raise ValueError(f"scale must be >= 0; got {scale}")
    return GuidedScore(score, classifier_score, scale, 1.0, _interval(interval))


@dataclass(frozen=True, eq=False)
class TiltedLaw:
    r"""The tilted law ``p_gamma(x | y) ∝ p(x) p(y | x)^gamma`` of a :class:`LabelledMixture`.

    Equivalently ``p(x | y) p(y | x)^{gamma - 1}`` up to a constant: ``gamma = 1`` is the
    conditional law, ``gamma = 0`` the unconditional one, ``gamma > 1`` the law classifier-free
    guidance with ``w = gamma - 1`` is meant to sample (book chapter "Guidance", eq. ``guidance-tilted``).
    It is not a Gaussian mixture, but it is exactly samplable in any dimension by rejection,
    because ``p(y | x) <= 1``: propose from ``p(x | y)`` and accept with ``p(y | x)^{gamma - 1}``
    (``gamma >= 1``), or from ``p(x)`` with ``p(y | x)^gamma`` (``gamma < 1``).

    Parameters
    ----------
    data : the :class:`LabelledMixture`.
    y : one class label.
    gamma : the tilt exponent, ``>= 0``.
    """

    data: LabelledMixture
    y: int
    gamma: float
    _proposal: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        y = check_labels(self.data, self.y)
        if not isinstance(y, int):
            raise ValueError("TiltedLaw needs one class label (an int); got an array")
        gamma = check_real("gamma", self.gamma)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0; got {gamma}")
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "_proposal", self.data.conditional(y) if gamma >= 1 else self.data.mixture)

    def _log_joint(self, x: Array) -> Array:
        x = check_points(x, self.data.dim)
        comps = self.data.mixture._components.like(x)
        return component_terms(x, comps, 1.0, 0.0)[0]

    def log_classifier(self, x: Array) -> Array:
        """``log p(y | x)`` at time 0, shape ``(n,)``."""
        lj = self._log_joint(x)
        return logsumexp(lj[:, self.data._members(self.y)], axis=1) - logsumexp(lj, axis=1)

    def log_prob_unnormalised(self, x: Array) -> Array:
        """``log p(x) + gamma log p(y | x)``, shape ``(n,)``."""
        lj = self._log_joint(x)
        total = logsumexp(lj, axis=1)
        return total + self.gamma * (logsumexp(lj[:, self.data._members(self.y)], axis=1) - total)

    def score(self, x: Array) -> Array:
        """``gamma grad log p(x | y) + (1 - gamma) grad log p(x)``, shape ``(n, d)``."""
        x = check_points(x, self.data.dim)
        comps = self.data.mixture._components.like(x)
        lj, proj, var = component_terms(x, comps, 1.0, 0.0)
        cond = _masked_responsibilities(lj, _class_mask(self.data, self.y, lj))
        resp = self.gamma * cond + (1 - self.gamma) * softmax(lj, axis=1)
        return comps.score_from_terms(resp, proj, var)

    def sample(self, n: int, rng: Any = None, *, max_proposals: int = 10**7) -> Array:
        """``n`` exact draws by rejection, shape ``(n, d)``, the means' array type.

        Raises ``RuntimeError`` when more than ``max_proposals`` proposals were needed (the
        acceptance rate, ``Z_gamma / p(y)`` for ``gamma >= 1`` and ``Z_gamma`` below, with
        ``Z_gamma = int p(x) p(y | x)^gamma dx``, is then below about ``n / max_proposals``).
        """
        n = check_size(n, "n")
        rng = resolve_rng(rng)
        power = self.gamma - 1 if self.gamma >= 1 else self.gamma
        kept, have, used = [], 0, 0
        batch = max(2 * n, 1024)
        while have < n:
            if used >= max_proposals:
                raise RuntimeError(f"TiltedLaw.sample: {used} proposals gave only {have} of {n} draws")
            x = self._proposal.sample(batch, rng)
            log_u = np.log(uniform(rng, (batch,)))
            accept = log_u < np.asarray(as_array(power * self.log_classifier(x), np.zeros(1)))
            idx = np.flatnonzero(accept)
            if idx.size:
                kept.append(namespace(x).take(x, namespace(x).asarray(idx, device=getattr(x, "device", None)), axis=0))
                have += int(idx.size)
            used += batch
        xp = namespace(kept[0]) if kept else namespace(self.data.means)
        return xp.concat(kept, axis=0)[:n] if kept else self.data.means[:0]

    def grid(self, resolution: int = 601, *, lower: Any = None, upper: Any = None) -> GridLaw:
        """The law tabulated by quadrature in 1-D or 2-D (its normaliser, moments, density)."""
        if self.data.dim not in (1, 2):
            raise ValueError(f"TiltedLaw.grid works in d = 1 or 2; got d = {self.data.dim}")
        means = np.asarray(as_array(self.data.means, np.zeros(1)))
        covs = np.asarray(as_array(self.data.covs, np.zeros(1)))
        lo, hi = default_box(means, covs)
        host = TiltedLaw(
            LabelledMixture(np.asarray(as_array(self.data.weights, np.zeros(1))), means, covs, self.data.labels),
            self.y,
            self.gamma,
        )
        return GridLaw(
            host.log_prob_unnormalised, lo if lower is None else lower, hi if upper is None else upper, resolution
        )
