"""``fit``: minimise a loss over minibatches with Adam, with a fixed seed and a loss history."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffcore._validation import check_choice, check_positive, check_steps
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
    losses : the minibatch loss at every step, NumPy float64 of shape ``(steps,)``.
    seconds : wall-clock time of the optimisation loop.
    steps : the number of optimisation steps (a property).
    """

    model: Any
    losses: np.ndarray
    seconds: float

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
    progress: bool = True,
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
    progress : show a tqdm progress bar with the running loss.

    Returns a :class:`FitResult` with the model and the loss history.

    Raises
    ------
    TypeError
        for a model that is not a ``torch.nn.Module``, a loss that is not callable, or
        non-integer ``steps`` / ``batch_size``.
    ValueError
        for non-finite training data (also in a sampled batch; the message names the row), bad
        ``steps``, ``batch_size``, ``lr`` or ``schedule``, and a ``batch_size`` larger than the data.
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
    dtype, device = params[0].dtype, params[0].device
    gen = generator(rng, device)
    next_batch = _batches(data, batch_size, gen, dtype, device)
    opt = torch.optim.Adam(params, lr=lr)
    decay = None
    if schedule == "cosine":
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    losses = np.empty(steps)
    bar = _progress(steps, progress)
    start = time.perf_counter()
    try:
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
            if bar is not None:
                bar.update(1)
                if k % 50 == 0 or k == steps - 1:
                    bar.set_postfix(loss=f"{np.mean(losses[max(0, k - 49) : k + 1]):.4g}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return FitResult(model, losses, time.perf_counter() - start)


def _progress(steps: int, show: bool) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc="fit", unit="step")


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
