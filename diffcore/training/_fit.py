"""``fit``: minimise a loss over minibatches with Adam, with a fixed seed, a loss history, an optional
exponential moving average of the weights, a validation hook and a callback that may stop early."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffcore._validation import check_choice, check_positive, check_progress, check_steps, progress_bar
from diffcore.distributions import Gaussian, GaussianMixture
from diffcore.training._torch import as_tensor, check_finite_tensor, generator

__all__ = ["FitResult", "fit"]

_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True, eq=False)
class FitResult:
    """The result of :func:`fit`.

    Attributes
    ----------
    model : the trained model (the same object that was passed in, trained in place).
    losses : the minibatch loss at every step taken, NumPy float64 of shape ``(steps,)``.
    seconds : wall-clock time of the optimisation loop (validation included).
    ema_model : with ``ema=beta``, a separate copy of the model holding the exponential moving
        average of the weights after the last step (use it for sampling and evaluation);
        ``None`` without ``ema``.
    validation_steps : the steps after which ``validate`` ran, int64 ``(m,)`` (empty without it).
    validation : what ``validate`` returned there, float64 ``(m,)``.
    stopped_early : whether the callback stopped training before ``steps``.
    steps : the number of optimisation steps taken (a property).
    """

    model: Any
    losses: np.ndarray
    seconds: float
    ema_model: Any = None
    validation_steps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    validation: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    stopped_early: bool = False

    @property
    def steps(self) -> int:
        """Number of optimisation steps taken."""
        return int(self.losses.shape[0])


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    *,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    schedule: str = "constant",
    rng: Any = None,
    progress: bool | None = None,
    ema: float | None = None,
    callback: Callable[[int, float, torch.nn.Module], bool | None] | None = None,
    validate: Callable[[torch.nn.Module], Any] | None = None,
    validate_every: int | None = None,
) -> FitResult:
    r"""Train ``model`` by Adam (Kingma and Ba 2015) on minibatches: ``theta <- theta - lr * Adam(grad L_batch)``.

    Every step draws a batch, evaluates ``loss_fn(model, batch, rng=generator)`` and takes one
    Adam step.  One ``torch.Generator``, seeded from ``rng``, draws the batches and the noise of
    the loss, so with the same seed and the same initial model the loss history is identical
    on the CPU.  With ``schedule="cosine"`` the learning rate decays as
    ``lr (1 + cos(pi k / steps)) / 2`` (Loshchilov and Hutter 2017).

    Parameters
    ----------
    model : a ``torch.nn.Module`` with parameters, e.g. :class:`MLPField`; trained in place.
    loss_fn : ``loss_fn(model, batch, rng=generator) -> 0-d tensor``; bind the process or
        interpolant with ``functools.partial``, e.g. ``partial(dsm_loss, process=VPSDE())``.
    data : the training data, one of

        * an array ``(N, ...)`` (NumPy or torch): shuffled into batches, a new permutation
          every epoch; ``batch_size <= N``;
        * a tuple of arrays with the same ``N`` (e.g. coupled pairs ``(x0, x1)``): the same
          rows of each;
        * a :class:`~diffcore.Gaussian` or :class:`~diffcore.GaussianMixture`: fresh exact
          samples every step;
        * a callable ``sampler(batch_size, generator) -> batch``.

        Arrays are converted to the model's dtype and device.
    steps, batch_size : number of Adam steps and points per batch (integers >= 1).
    lr : learning rate (> 0).
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``.
    progress : a tqdm bar with the running loss: ``None`` (default) only when stderr is a
        terminal, ``True`` always (needs tqdm; redrawn every 30 s at most when stderr is a log
        file, so logs are not flooded), ``False`` never.
    ema : ``None`` or the decay ``beta`` in ``(0, 1)`` of an exponential moving average of the
        weights (Polyak and Juditsky 1992; the EMA of DDPM, Ho et al. 2020, app. B, uses
        ``beta = 0.9999``): a copy ``bar_theta_0 = theta_0`` of the initial model, and after the
        optimiser step ``k``

        .. math:: \bar\theta_k = \beta\, \bar\theta_{k-1} + (1 - \beta)\, \theta_k ,

        for every floating-point parameter (buffers, e.g. batch-norm statistics, are copied
        from the model).  No bias correction or warm-up: with ``K`` steps the initial weights
        keep the weight ``beta^K``, so choose ``beta`` with ``1 / (1 - beta)`` well below
        ``steps``.  The average is returned as ``FitResult.ema_model``; ``model`` keeps the
        raw weights.
    callback : ``callback(step, loss, model)`` after every step (``step`` from 1, ``loss`` the
        step's minibatch loss as a float, ``model`` the trained model, not the EMA copy).
        Return ``True`` to stop training after this step (``FitResult.stopped_early``); ``None``
        or ``False`` to go on; anything else raises ``TypeError``.
    validate : ``validate(model) -> number`` (a float or a 0-d tensor), run every
        ``validate_every`` steps and after the last step, on the EMA model when ``ema`` is
        set (the weights one would deploy), else on the model; results in
        ``FitResult.validation``.  It runs as written: wrap it in ``torch.no_grad()`` yourself
        if it needs no gradients; the model is not switched between train and eval mode.
    validate_every : steps between validations (integer ``>= 1``); default ``steps // 10``
        (at least 1).  Only with ``validate``.

    Returns a :class:`FitResult` with the model, the loss history, the EMA model and the
    validation history.

    Raises
    ------
    TypeError
        for a model that is not a ``torch.nn.Module``, a loss that is not callable, or
        non-integer ``steps`` / ``batch_size``.
    ValueError
        for non-finite training data (also in a sampled batch; the message names the row), bad
        ``steps``, ``batch_size``, ``lr``, ``schedule``, ``ema`` or ``validate_every``, and a
        ``batch_size`` larger than the data.
    FloatingPointError
        when the loss becomes NaN or infinite; the message gives the step, and the model keeps
        the parameters of the step before.

    Example
    -------
    >>> import functools
    >>> import numpy as np
    >>> from diffcore import VPSDE
    >>> from diffcore.training import MLPField, dsm_loss
    >>> model = MLPField(2, width=16, depth=1, rng=0)
    >>> data = np.random.default_rng(0).standard_normal((256, 2))
    >>> result = fit(model, functools.partial(dsm_loss, process=VPSDE()), data, steps=20, batch_size=64,
    ...              rng=0, progress=False)
    >>> result.losses.shape, result.model is model
    ((20,), True)

    With an EMA of the weights, a validation every 5 steps, and a callback that stops at step 12:

    >>> result = fit(model, functools.partial(dsm_loss, process=VPSDE()), data, steps=20, batch_size=64, rng=0,
    ...              progress=False, ema=0.9, validate=lambda m: 0.0, validate_every=5,
    ...              callback=lambda step, loss, m: step == 12)
    >>> result.steps, result.stopped_early, result.validation_steps.tolist(), result.ema_model is not model
    (12, True, [5, 10, 12], True)
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (model, batch, rng=generator); got {type(loss_fn).__name__}")
    steps, batch_size = check_steps(steps, "steps"), check_steps(batch_size, "batch_size")
    lr = check_positive("lr", lr)
    check_choice("schedule", schedule, _SCHEDULES)
    check_progress(progress)
    ema = _check_ema(ema)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (step, loss, model) -> bool | None; got {type(callback).__name__}")
    validate_every = _check_validation(validate, validate_every, steps)
    dtype, device = params[0].dtype, params[0].device
    gen = generator(rng, device)
    next_batch = _batches(data, batch_size, gen, dtype, device)
    opt = torch.optim.Adam(params, lr=lr)
    decay = None
    if schedule == "cosine":
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    losses = np.empty(steps)
    average = None if ema is None else _EMA(model, ema)
    checked: list[tuple[int, float]] = []
    taken, stopped = 0, False
    start = time.perf_counter()
    with progress_bar(progress, steps, desc="fit") as bar:
        for k in range(steps):
            loss = loss_fn(model, next_batch(), rng=gen)
            value = float(loss.detach())
            if not math.isfinite(value):  # raised before the update: the model keeps its last finite state
                raise FloatingPointError(f"the loss is not finite at step {k + 1} of {steps}: {value}")
            losses[k] = value
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if decay is not None:
                decay.step()
            if average is not None:
                average.update(model)
            taken = k + 1
            bar.update(1)
            if k % 50 == 0 or k == steps - 1:
                bar.set_postfix(loss=f"{np.mean(losses[max(0, k - 49) : k + 1]):.4g}", refresh=False)
            if callback is not None:
                stopped = _stop(callback(taken, value, model))
            if validate is not None and (taken % validate_every == 0 or taken == steps or stopped):
                checked.append((taken, _validation_value(validate(model if average is None else average.model))))
            if stopped:
                break
    return FitResult(
        model,
        losses[:taken],
        time.perf_counter() - start,
        ema_model=None if average is None else average.model,
        validation_steps=np.array([k for k, _ in checked], dtype=np.int64),
        validation=np.array([v for _, v in checked], dtype=np.float64),
        stopped_early=stopped,
    )


class _EMA:
    """A copy of a model whose floating-point parameters follow ``bar = beta bar + (1 - beta) theta``."""

    def __init__(self, model: torch.nn.Module, beta: float) -> None:
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.beta = beta

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for avg, new in zip(self.model.parameters(), model.parameters(), strict=True):
            if avg.dtype.is_floating_point:
                avg.lerp_(new.detach(), 1.0 - self.beta)  # avg + (1 - beta)(new - avg)
            else:
                avg.copy_(new)
        for avg, new in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(new)


def _check_ema(ema: Any) -> float | None:
    if ema is None:
        return None
    beta = check_positive("ema", ema)
    if not beta < 1:
        raise ValueError(f"ema (the decay of the moving average) must lie in (0, 1); got {ema!r}")
    return beta


def _check_validation(validate: Any, validate_every: Any, steps: int) -> int:
    if validate is None:
        if validate_every is not None:
            raise ValueError(f"validate_every={validate_every!r} needs validate=callable(model) -> number")
        return steps
    if not callable(validate):
        raise TypeError(f"validate must be callable (model) -> number; got {type(validate).__name__}")
    return max(1, steps // 10) if validate_every is None else check_steps(validate_every, "validate_every")


def _stop(answer: Any) -> bool:
    """The callback's answer: ``True`` stops, ``None`` or ``False`` goes on."""
    if answer is None or isinstance(answer, (bool, np.bool_)):
        return bool(answer)
    raise TypeError(f"callback must return True (stop), False or None (go on); got {type(answer).__name__}: {answer!r}")


def _validation_value(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(
                f"validate must return a number or a 0-d tensor; got a tensor of shape {tuple(value.shape)}"
            )
        return float(value.detach())
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"validate must return a number or a 0-d tensor; got {type(value).__name__}")
    return float(value)


def _batches(data: Any, batch_size: int, gen: torch.Generator, dtype: Any, device: Any) -> Callable[[], Any]:
    """A function returning the next batch, after validating ``data`` once."""
    if isinstance(data, (Gaussian, GaussianMixture)):
        like = torch.empty(0, dtype=dtype, device=device)
        return lambda: data.sample(batch_size, gen, like=like)
    if callable(data) and not isinstance(data, (np.ndarray, torch.Tensor)):

        def sampled() -> Any:
            batch = data(batch_size, gen)
            for i, part in enumerate(batch if isinstance(batch, tuple) else (batch,)):
                check_finite_tensor("a batch from the data sampler" + (f" (part {i})" if i else ""), part)
            return batch

        return sampled
    parts = data if isinstance(data, tuple) else (data,)
    tensors = tuple(
        check_finite_tensor("training data", as_tensor("data", p, dtype=dtype, device=device)) for p in parts
    )
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"the arrays of a data tuple must have the same length; got {[t.shape[0] for t in tensors]}")
    if batch_size > n:
        raise ValueError(f"batch_size must be <= the number of data points {n}; got {batch_size}")
    order: list[torch.Tensor] = []

    def shuffled() -> Any:
        if not order or order[0].shape[0] < batch_size:
            order[:] = [torch.randperm(n, generator=gen, device=gen.device).to(device)]
        idx, order[0] = order[0][:batch_size], order[0][batch_size:]
        picked = tuple(t[idx] for t in tensors)
        return picked if isinstance(data, tuple) else picked[0]

    return shuffled
