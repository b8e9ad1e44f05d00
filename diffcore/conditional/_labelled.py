"""Gaussian mixtures whose components carry class labels: exact conditional laws at every time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import namespace
from diffcore.distributions import ExactField, GaussianMixture
from diffcore.distributions._components import logsumexp, softmax
from diffcore.distributions._mixture import AbstractMixtureLaw
from diffcore.processes import AbstractProcess

__all__ = [
    "LabelledMixture",
    "check_labels",
    "exact_classifier",
    "exact_classifier_score",
    "exact_conditional_score",
]

Array = Any


@dataclass(frozen=True, eq=False)
class LabelledMixture(AbstractMixtureLaw):
    r"""A Gaussian mixture ``p(x) = sum_k w_k N(x; m_k, C_k)`` whose component ``k`` has class ``c_k``.

    The joint law of ``(x, y)`` is ``p(x, y) = sum_{k: c_k = y} w_k N(x; m_k, C_k)``, so that the
    class prior is ``p(y) = sum_{k: c_k = y} w_k``, the class-conditional law ``p(x | y)`` is the
    mixture of the components of class ``y`` with renormalised weights, and the classifier is

    .. math:: p(y \mid x) = \frac{\sum_{k: c_k = y} w_k N_k(x)}{\sum_k w_k N_k(x)}.

    Under a process every component is pushed separately, so the same formulas hold at every
    time ``t`` with ``N_k`` replaced by ``N(alpha m_k, alpha^2 C_k + sigma^2 I)``: see
    :func:`exact_conditional_score`, :func:`exact_classifier`, :func:`exact_classifier_score`
    (book chapter "Guidance", eq. ``guidance-classifier``).

    Parameters
    ----------
    weights, means, covs : as for :class:`~diffcore.GaussianMixture` (``(K,)``, ``(K, d)``, ``(K, d, d)``).
    labels : ``K`` non-negative integers; the classes are the distinct values, in increasing order.

    Example
    -------
    >>> import numpy as np
    >>> lab = LabelledMixture([0.25, 0.25, 0.5], [[-2.0], [0.0], [2.0]], np.ones((3, 1, 1)), [0, 0, 1])
    >>> lab.classes, [round(float(p), 2) for p in lab.class_probs]
    ((0, 1), [0.5, 0.5])
    """

    weights: Any
    means: Any
    covs: Any
    labels: Any
    mixture: GaussianMixture = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mixture = GaussianMixture(self.weights, self.means, self.covs)
        labels = _integer_labels(self.labels, mixture.n_components)
        object.__setattr__(self, "mixture", mixture)
        object.__setattr__(self, "weights", mixture.weights)
        object.__setattr__(self, "means", mixture.means)
        object.__setattr__(self, "covs", mixture.covs)
        object.__setattr__(self, "labels", labels)

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the points."""
        return self.mixture.dim

    def as_mixture(self) -> GaussianMixture:
        """The law of ``x`` (labels dropped): what :func:`~diffcore.marginal` and :func:`~diffcore.exact_score` use."""
        return self.mixture

    @property
    def classes(self) -> tuple[int, ...]:
        """The class labels, in increasing order."""
        return tuple(int(c) for c in np.unique(self.labels))

    @property
    def class_probs(self) -> Array:
        """``p(y)`` for every class of :attr:`classes`, shape ``(C,)`` (the means' array type)."""
        xp = namespace(self.weights)
        return xp.stack([xp.sum(self.weights[self._members(c)]) for c in self.classes])

    def _members(self, y: int) -> Array:
        return np.flatnonzero(self.labels == y)

    def conditional(self, y: int) -> GaussianMixture:
        """``p(x | y)``: the components of class ``y`` with weights ``w_k / p(y)``."""
        y = check_labels(self, y)
        if not isinstance(y, int):
            raise ValueError("conditional needs one class label (an int); got an array")
        idx = self._members(y)
        w = self.weights[idx]
        return GaussianMixture(w / namespace(w).sum(w), self.means[idx], self.covs[idx])

    def sample(self, n: int, rng: Any = None, *, like: Array = None) -> Array:
        """Draw ``n`` points from ``p(x)``, shape ``(n, d)`` (the labels are not returned)."""
        return self.mixture.sample(n, rng, like=like)

    def sample_labelled(self, n: int, rng: Any = None) -> tuple[np.ndarray, Array]:
        """Draw ``n`` pairs ``(y, x) ~ p(y) p(x | y)``: labels ``(n,)`` (NumPy ints) and points ``(n, d)``.

        Points of each class are drawn from :meth:`conditional`, in class order, from one ``rng``.
        """
        from diffcore._array import resolve_rng, uniform

        rng = resolve_rng(rng)
        probs = np.asarray([float(p) for p in self.class_probs])
        ys = np.asarray(self.classes)[np.minimum(np.searchsorted(np.cumsum(probs), uniform(rng, (n,))), len(probs) - 1)]
        xp = namespace(self.means)
        order, parts = [], []
        for c in self.classes:
            idx = np.flatnonzero(ys == c)
            if idx.size:
                order.append(idx)
                parts.append(self.conditional(c).sample(int(idx.size), rng))
        if not parts:
            return ys, xp.zeros((0, self.dim), dtype=self.means.dtype)
        inverse = np.argsort(np.concatenate(order))  # row j of the class-ordered draws goes to point order[j]
        x = xp.concat(parts, axis=0)
        return ys, xp.take(x, xp.asarray(inverse, device=getattr(x, "device", None)), axis=0)


def _integer_labels(labels: Any, k: int) -> np.ndarray:
    try:
        arr = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    except (TypeError, ValueError) as err:
        raise TypeError(f"labels must be a sequence of {k} integers; got {type(labels).__name__}") from err
    if arr.shape != (k,):
        raise ValueError(f"labels must have shape (K,) = ({k},); got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
            raise TypeError(f"labels must be integers; got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise ValueError(f"labels must be >= 0; got {arr.tolist()}")
    return arr


def check_labels(data: LabelledMixture, y: Any) -> int | np.ndarray:
    """``y`` as an ``int`` or a NumPy ``(n,)`` integer array, every value one of ``data.classes``."""
    if not isinstance(data, LabelledMixture):
        raise TypeError(f"data must be a LabelledMixture; got {type(data).__name__}")
    if isinstance(y, bool):
        raise TypeError("y must be an integer class label or an array of them; got a bool")
    arr = np.asarray(y.cpu() if hasattr(y, "cpu") else y)
    scalar = isinstance(y, (int, np.integer)) or (arr.ndim == 0 and np.issubdtype(arr.dtype, np.integer))
    if not scalar and (arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(
            f"y must be an int or a 1-D integer array of labels; got {type(y).__name__} of shape {arr.shape}"
        )
    bad = sorted(set(np.atleast_1d(arr).tolist()) - set(data.classes))
    if bad:
        raise ValueError(f"labels must be among the classes {list(data.classes)}; got {bad}")
    return int(arr) if scalar else arr.astype(np.int64)


def _class_mask(data: LabelledMixture, y: int | np.ndarray, like: Array) -> Array:
    """Boolean ``(1 or n, K)``: component ``k`` has label ``y`` (per sample when ``y`` is an array)."""
    xp = namespace(like)
    mask = (data.labels[None, :] == np.reshape(y, (-1, 1))) if not isinstance(y, int) else (data.labels == y)[None]
    return xp.asarray(mask, device=like.device if hasattr(like, "device") else None)


def _masked_responsibilities(log_joint: Array, mask: Array) -> Array:
    xp = namespace(log_joint)
    if mask.shape[0] not in (1, log_joint.shape[0]):
        raise ValueError(f"y must hold one label per point: {mask.shape[0]} labels for {log_joint.shape[0]} points")
    return softmax(xp.where(mask, log_joint, xp.asarray(-xp.inf, dtype=log_joint.dtype)), axis=1)


@dataclass(frozen=True, eq=False)
class _LabelledField:
    process: AbstractProcess
    data: LabelledMixture
    y: Any = None

    def __post_init__(self) -> None:
        if self.y is not None:
            object.__setattr__(self, "y", check_labels(self.data, self.y))
        else:
            check_labels(self.data, self.data.classes[0])
        object.__setattr__(self, "_field", ExactField(self.process, self.data.mixture))

    def _terms(self, x: Array, t: Any) -> Any:
        return self._field.terms(x, t)


class ConditionalScore(_LabelledField):
    r"""``grad_x log p_t(x | y)``: the score of the class-``y`` components only; ``(n, d)``.

    .. math:: \nabla \log p_t(x \mid y) = -\sum_{k: c_k = y} r^y_k(x) V_k^{-1}(x - \alpha m_k),
              \qquad r^y_k \propto w_k N(x; \alpha m_k, V_k) \text{ over } c_k = y.

    ``y`` is one label or ``(n,)`` labels (one per point).
    """

    def __call__(self, x: Array, t: Any) -> Array:
        terms = self._terms(x, t)
        resp = _masked_responsibilities(terms.log_joint, _class_mask(self.data, self.y, terms.log_joint))
        return terms.comps.score_from_terms(resp, terms.proj, terms.var)


class ClassifierScore(_LabelledField):
    r"""``grad_x log p_t(y | x) = grad log p_t(x | y) - grad log p_t(x)``; ``(n, d)``.

    Computed in one pass as ``-sum_k (r^y_k - r_k) V_k^{-1} (x - alpha m_k)`` (no cancellation
    between two separately rounded scores).
    """

    def __call__(self, x: Array, t: Any) -> Array:
        terms = self._terms(x, t)
        cond = _masked_responsibilities(terms.log_joint, _class_mask(self.data, self.y, terms.log_joint))
        return terms.comps.score_from_terms(cond - softmax(terms.log_joint, axis=1), terms.proj, terms.var)


class Classifier(_LabelledField):
    r"""``log p_t(c | x)`` for every class ``c`` of ``data.classes``: shape ``(n, C)``.

    ``log sum_{k: c_k = c} w_k N_k - log sum_k w_k N_k`` by log-sum-exp, so that tiny class
    probabilities keep their logarithm instead of underflowing.
    """

    def __call__(self, x: Array, t: Any) -> Array:
        log_joint = self._terms(x, t).log_joint
        xp = namespace(log_joint)
        total = logsumexp(log_joint, axis=1)
        cols = [logsumexp(log_joint[:, self.data._members(c)], axis=1) for c in self.data.classes]
        return xp.stack(cols, axis=1) - total[:, None]


def exact_conditional_score(process: AbstractProcess, data: LabelledMixture, y: Any) -> ConditionalScore:
    """The exact conditional score ``grad log p_t(x | y)`` as a callable ``(x, t) -> (n, d)``."""
    return ConditionalScore(process, data, y)


def exact_classifier_score(process: AbstractProcess, data: LabelledMixture, y: Any) -> ClassifierScore:
    """The exact classifier gradient ``grad log p_t(y | x)`` as a callable ``(x, t) -> (n, d)``."""
    return ClassifierScore(process, data, y)


def exact_classifier(process: AbstractProcess, data: LabelledMixture) -> Classifier:
    """The exact noisy classifier ``log p_t(c | x)`` as a callable ``(x, t) -> (n, C)`` (classes in order)."""
    return Classifier(process, data)
