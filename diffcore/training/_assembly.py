r"""Model assembly (A-SDM, Zhu et al. 2023/2024): a shallower student made of a teacher's blocks, then distilled.

:func:`assemble` keeps a chosen subset of the residual blocks of a :class:`MultiExitMLP` (with
their exit and uncertainty heads and the input layer) and, by default, inherits their weights; the
student is then trained by :func:`assembly_distillation_loss`, which matches the teacher's output
and the hidden features of the blocks the student kept.  In a residual network
``h_l = h_{l-1} + B_l(h_{l-1})`` a removed block is replaced by the identity, so an inherited
student starts as the teacher with some residual updates skipped, not from scratch.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import numpy as np
import torch

from diffcore._validation import check_nonnegative
from diffcore.processes import AbstractProcess
from diffcore.training._early_exit import MultiExitMLP, _noisy_batch

__all__ = ["assemble", "assembly_distillation_loss"]


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
