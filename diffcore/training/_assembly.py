r"""Model assembly and feature inheritance (A-SDM, Zhu et al. 2024) on a residual MLP.

:func:`assemble` keeps a chosen subset of the residual blocks of a :class:`MultiExitMLP` (with
their exit and uncertainty heads and the input layer) and, by default, inherits their weights; the
student is then trained by :func:`assembly_distillation_loss`, which matches the teacher's output
and the hidden features of the blocks the student kept.  In a residual network
``h_l = h_{l-1} + B_l(h_{l-1})`` a removed block is replaced by the identity, so an inherited
student starts as the teacher with some residual updates skipped, not from scratch.

:func:`feature_reuse_model` is A-SDM's training-free *feature inheritance* (the mechanism of
DeepCache, Ma et al. 2024): the residual updates ``B_l`` of chosen blocks are computed at one
sampling step and reused, stale, at the next ``k - 1`` network calls.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np
import torch

from diffcore._validation import check_nonnegative, check_steps
from diffcore.processes import AbstractProcess
from diffcore.training._early_exit import MultiExitMLP, _noisy_batch, _numpy_io

__all__ = ["FeatureReuseModel", "assemble", "assembly_distillation_loss", "feature_reuse_model"]


def assemble(net: MultiExitMLP, keep: Any, *, inherit: bool = True, rng: Any = None) -> MultiExitMLP:
    r"""A student :class:`MultiExitMLP` made of the blocks ``keep`` of ``net`` (A-SDM's model assembly).

    .. math:: h^S_0 = h^T_0, \qquad h^S_j = h^S_{j-1} + B^T_{k_j}(h^S_{j-1}), \qquad
              g^S_j = g^T_{k_j}, \quad u^S_j = u^T_{k_j} \qquad (j = 1, \dots, m),

    for ``keep = (k_1 < ... < k_m)``: the teacher's input layer, the kept blocks in order with
    their exit and uncertainty heads, the other blocks removed (replaced by the identity of the
    residual stream).  With ``inherit=True`` the student's weights are copies of the teacher's
    (weight inheritance, the initialisation of Zhu et al.'s assembled student); with
    ``inherit=False`` the same architecture is drawn at random from ``rng``, the baseline that
    inheritance is measured against.  Keeping every block reproduces the teacher exactly.  The
    student's ``source_blocks`` is ``keep``; :func:`assembly_distillation_loss` pairs features by it.
    The teacher is not modified.

    Parameters
    ----------
    net : the teacher, a :class:`MultiExitMLP`.
    keep : a non-empty sequence of distinct block indices in ``[0, L)``, increasing.
    inherit : copy the teacher's weights (``True``) or draw new ones (``False``).
    rng : the seed of the random weights when ``inherit=False``.

    Raises ``TypeError`` for another network or non-integer indices, ``ValueError`` for an
    empty, unordered, repeated or out-of-range ``keep``.

    Example
    -------
    >>> import numpy as np
    >>> teacher = MultiExitMLP(2, width=16, n_blocks=4, rng=0)
    >>> student = assemble(teacher, [0, 2])
    >>> student.n_blocks, student.source_blocks
    (2, (0, 2))
    """
    if not isinstance(net, MultiExitMLP):
        raise TypeError(f"net must be a MultiExitMLP; got {type(net).__name__}")
    keep = _check_keep(keep, net.n_blocks)
    if not isinstance(inherit, (bool, np.bool_)):
        raise TypeError(f"inherit must be a bool; got {type(inherit).__name__}")
    student = MultiExitMLP(net.dim, n_blocks=len(keep), rng=rng if not inherit else 0, **net.options)
    student.to(net.embed.weight.device)
    if inherit:
        with torch.no_grad():
            student.embed = copy.deepcopy(net.embed)
            for name in ("blocks", "heads", "uems"):
                setattr(student, name, torch.nn.ModuleList(copy.deepcopy(getattr(net, name)[k]) for k in keep))
    student.source_blocks = keep
    return student


def _check_keep(keep: Any, n_blocks: int) -> tuple[int, ...]:
    if isinstance(keep, (str, bytes)) or not hasattr(keep, "__iter__"):
        raise TypeError(f"keep must be a sequence of block indices; got {type(keep).__name__}")
    keep = list(keep)
    for k in keep:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"keep must hold integer block indices; got {k!r}")
    if not keep:
        raise ValueError("keep must name at least one block; got an empty sequence")
    if any(not 0 <= k < n_blocks for k in keep):
        raise ValueError(f"keep must hold block indices in [0, {n_blocks}); got {keep}")
    if any(b <= a for a, b in itertools.pairwise(keep)):
        raise ValueError(f"keep must be strictly increasing (each block once, in order); got {keep}")
    return tuple(int(k) for k in keep)


def assembly_distillation_loss(
    student: MultiExitMLP,
    teacher: MultiExitMLP,
    x0: Any,
    process: AbstractProcess,
    rng: Any = None,
    *,
    output_weight: float = 1.0,
    feature_weight: float = 1.0,
    task_weight: float = 0.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""Output- and feature-level distillation of an assembled student from its teacher.

    .. math:: L = \omega_{out}\, E\,|g^S_m - g^T_L|^2
              + \omega_{feat}\, E \sum_{j=1}^{m} \tfrac{1}{w} |h^S_j - h^T_{k_j}|^2
              + \omega_{task}\, E\,|g^S_m - y|^2 ,

    at ``x_t = alpha_t x_0 + sigma_t eps`` with ``t ~ U[t_min, t_max]`` (the draws of
    :func:`denoising_loss`): the student's last exit matches the teacher's last exit, each kept
    block's hidden state matches the teacher's state after the block it came from
    (``k_j = student.source_blocks[j]``; ``w`` the width), and an optional denoising term matches
    the target ``y`` of the prediction type.  This is the knowledge-distillation objective with
    which A-SDM trains the assembled network (output and feature distillation, Zhu et al.
    2023/2024; the same three terms as BK-SDM's block-removed students).  The teacher runs without
    gradients; ``E`` is the mean over the batch.

    Parameters
    ----------
    student, teacher : :class:`MultiExitMLP` of the same dimension, width and prediction; the
        student's ``source_blocks`` index the teacher's blocks (as :func:`assemble` sets them).
    x0 : data batch ``(n, ...)``.
    process : the forward process.
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``.
    output_weight, feature_weight, task_weight : ``omega >= 0``.
    t_min, t_max : the range of ``t``.

    Returns a 0-d tensor, differentiable in the student's parameters.
    """
    for name, net in (("student", student), ("teacher", teacher)):
        if not isinstance(net, MultiExitMLP):
            raise TypeError(f"{name} must be a MultiExitMLP; got {type(net).__name__}")
    if (student.dim, student.width, student.prediction) != (teacher.dim, teacher.width, teacher.prediction):
        raise ValueError(
            "student and teacher must have the same dim, width and prediction; got "
            f"{(student.dim, student.width, student.prediction)} and {(teacher.dim, teacher.width, teacher.prediction)}"
        )
    if max(student.source_blocks) >= teacher.n_blocks:
        raise ValueError(
            f"the student's source_blocks {student.source_blocks} must index the teacher's {teacher.n_blocks} blocks"
        )
    weights = [
        check_nonnegative(k, v)
        for k, v in (("output_weight", output_weight), ("feature_weight", feature_weight), ("task_weight", task_weight))
    ]
    x_t, t, target = _noisy_batch(x0, process, rng, prediction=student.prediction, t_min=t_min, t_max=t_max)
    t = t.to(x_t.dtype)
    with torch.no_grad():
        states_t, _ = teacher._states(x_t, t)
        out_t = teacher._exit(teacher.n_blocks - 1, states_t[-1])
    states_s, _ = student._states(x_t, t)
    out_s = student._exit(student.n_blocks - 1, states_s[-1])
    flat_target = target.reshape(target.shape[0], -1).to(out_s.dtype)
    output = torch.mean(torch.sum((out_s - out_t) ** 2, dim=1))
    feature = (
        sum(
            torch.mean(torch.sum((h - states_t[k]) ** 2, dim=1))
            for h, k in zip(states_s, student.source_blocks, strict=True)
        )
        / student.width
    )
    task = torch.mean(torch.sum((out_s - flat_target) ** 2, dim=1))
    return (weights[0] * output + weights[1] * feature + weights[2] * task).to(x_t.dtype)


class FeatureReuseModel:
    r"""A :class:`MultiExitMLP` whose chosen blocks reuse their residual update from an earlier call.

    With ``S`` the reused blocks and ``k`` the refresh period, call ``j = 0, 1, 2, ...`` (counted
    since creation or :meth:`reset`) is a *refresh* when ``j % k == 0``: the network runs in full
    and the updates ``r_l = B_l(h_{l-1})``, ``l in S``, are stored.  Every other call is *stale*:

    .. math:: h_l = h_{l-1} + \begin{cases} r_l^{(j_0)} & l \in S \\ B_l(h_{l-1}) & l \notin S \end{cases},
              \qquad \hat f(x, t) = g_L(h_L),

    with ``r_l^{(j_0)}`` the update stored at the last refresh ``j_0`` (computed at that call's
    ``(x, t)``), so a stale call evaluates only the ``L - |S|`` blocks outside ``S``.  A call whose
    batch shape differs from the stored one refreshes.  The work is counted per point:

    .. math:: \text{compute fraction} = \frac{\sum_{\text{calls}} n\,(\text{blocks run})}{L \sum_{\text{calls}} n},

    which for ``N`` calls of one batch size is ``1 - (|S| / L)(1 - ceil(N / k) / N)`` (the input
    layer and the one output head, the same in every call, are not counted).  Made by
    :func:`feature_reuse_model`.

    Attributes
    ----------
    net, reuse_blocks, refresh_every : the network, ``S`` (sorted) and ``k``.
    calls, refreshes : calls with at least one point, and how many of them were refreshes.
    """

    def __init__(self, net: MultiExitMLP, reuse_blocks: tuple[int, ...], refresh_every: int) -> None:
        self.net, self.reuse_blocks, self.refresh_every = net, reuse_blocks, refresh_every
        self._cache: dict[int, torch.Tensor] = {}
        self._shape: tuple[int, ...] | None = None
        self.calls = self.refreshes = 0
        self._points = self._work = 0

    @property
    def prediction(self) -> str:
        """What the model predicts (the network's ``prediction``)."""
        return self.net.prediction

    @property
    def compute_fraction(self) -> float:
        """Block evaluations spent over those of the full network, in ``[1 - |S|/L, 1]`` (NaN before a call)."""
        return self._work / (self.net.n_blocks * self._points) if self._points else math.nan

    def reset(self) -> None:
        """Forget the stored updates and set the counts back to zero (the next call refreshes)."""
        self._cache, self._shape = {}, None
        self.calls = self.refreshes = self._points = self._work = 0

    def __call__(self, x: Any, t: Any) -> Any:
        """The prediction at ``(x, t)``, shaped like ``x`` (NumPy in, NumPy out)."""
        return _numpy_io(self.net, x, t, self._run)

    def _run(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        net, n = self.net, x.shape[0]
        flat, emb = net._inputs(x, t)
        h = net.embed(torch.cat([flat, emb], dim=1))
        refresh = self.calls % self.refresh_every == 0 or self._shape != tuple(h.shape)
        evaluated = 0
        for k, block in enumerate(net.blocks):
            if refresh or k not in self.reuse_blocks:
                update = _residual(block, h)
                evaluated += 1
                if refresh and k in self.reuse_blocks:
                    self._cache[k] = update.detach()
            else:
                update = self._cache[k]
            h = h + update
        if refresh:
            self._shape = tuple(h.shape)
            self.refreshes += int(n > 0)
        self.calls += int(n > 0)
        self._points += n
        self._work += n * evaluated
        return net._exit(net.n_blocks - 1, h).reshape(x.shape).to(x.dtype)

    def __repr__(self) -> str:
        return (
            f"FeatureReuseModel(reuse_blocks={self.reuse_blocks}, refresh_every={self.refresh_every}, "
            f"compute_fraction={self.compute_fraction:.3f})"
        )


def _residual(block: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``B(h) = W_2 SiLU(W_1 SiLU(h) + b_1) + b_2``: the update of a residual block (``block(h) = h + B(h)``)."""
    silu = torch.nn.functional.silu
    return block.outer(silu(block.inner(silu(h))))


def feature_reuse_model(net: MultiExitMLP, reuse_blocks: Any, *, refresh_every: int = 2) -> FeatureReuseModel:
    r"""A-SDM's feature inheritance: reuse the residual updates of ``reuse_blocks`` for ``refresh_every - 1`` calls.

    .. math:: h_l = h_{l-1} + r_l, \qquad r_l = \begin{cases} B_l(h_{l-1}^{(j_0)}) & l \in S,\
              j_0 = k \lfloor j / k \rfloor \\ B_l(h_{l-1}) & \text{otherwise} \end{cases}

    at network call ``j``: the blocks in ``S`` recompute their update every ``k`` calls and add the
    stored, stale update in between, while the other blocks and the output head always run.  This
    is the training-free feature inheritance of Zhu et al. (2024, "A-SDM", sec. 3.3: features of
    the previous time step reused at the block level, refreshed periodically), the same mechanism
    as DeepCache (Ma et al. 2024, which caches a U-Net's high-level features and recomputes the
    shallow branch).  Because consecutive sampler calls are at nearby ``(x, t)`` the stale update
    is close to the fresh one, and the error is first order in the time elapsed since the refresh.
    ``refresh_every = 1`` gives the full network exactly.  The returned :class:`FeatureReuseModel`
    predicts what ``net`` predicts (wrap it with :func:`diffcore.reparametrize` to sample with a
    score) and records ``.compute_fraction``.  It holds state: call :meth:`FeatureReuseModel.reset`
    (or make a new one) before each sampler run.  Stored updates are detached: with torch input no
    gradient flows through a stale update.

    Parameters
    ----------
    net : a :class:`MultiExitMLP`.
    reuse_blocks : a sequence of distinct block indices in ``[0, L)`` (``S``; may be empty).
    refresh_every : ``k >= 1``, the refresh period in network calls (a Heun step makes two calls).

    Raises ``TypeError`` for another network, non-integer indices or a non-integer period, and
    ``ValueError`` for repeated or out-of-range indices or ``refresh_every < 1``.

    Example
    -------
    >>> import numpy as np
    >>> net = MultiExitMLP(2, width=16, n_blocks=4, rng=0)
    >>> model = feature_reuse_model(net, [1, 2], refresh_every=2)
    >>> for t in (0.9, 0.8, 0.7, 0.6):
    ...     _ = model(np.zeros((3, 2)), t)
    >>> model.refreshes, model.compute_fraction  # 2 full calls, 2 with 2 of 4 blocks
    (2, 0.75)
    """
    if not isinstance(net, MultiExitMLP):
        raise TypeError(f"net must be a MultiExitMLP; got {type(net).__name__}")
    if isinstance(reuse_blocks, (str, bytes)) or not hasattr(reuse_blocks, "__iter__"):
        raise TypeError(f"reuse_blocks must be a sequence of block indices; got {type(reuse_blocks).__name__}")
    blocks = list(reuse_blocks)
    for k in blocks:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"reuse_blocks must hold integer block indices; got {k!r}")
    if any(not 0 <= k < net.n_blocks for k in blocks):
        raise ValueError(f"reuse_blocks must hold block indices in [0, {net.n_blocks}); got {blocks}")
    if len(set(blocks)) != len(blocks):
        raise ValueError(f"reuse_blocks must name each block once; got {blocks}")
    period = check_steps(refresh_every, "refresh_every")
    return FeatureReuseModel(net, tuple(sorted(int(k) for k in blocks)), period)
