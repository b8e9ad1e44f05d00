r"""Early exiting (DeeDiff, Tang et al. 2023): a residual network with an output and an uncertainty head per block.

A :class:`MultiExitMLP` computes ``L`` residual blocks ``h_l = h_{l-1} + B_l(h_{l-1})`` after an
input layer ``h_0 = W_0 [x, e(t)]``; after every block an *exit* ``g_l(h_l)`` predicts the network's
target (``eps``, ``x0``, ``v``, ``score`` or ``velocity``) and an *uncertainty estimation module*
(UEM) ``u_l = sigmoid(w_l . [h_l, e(t)] + b_l)`` predicts how wrong that exit is.  At sampling time
a point leaves the network at the first block whose ``u_l`` is below a threshold
(:func:`early_exit_model`), so easy steps cost fewer blocks.  :func:`early_exit_loss` is the
training loss of DeeDiff: the denoising loss of the last exit, the regression of every ``u_l`` on
the measured error of its exit, and the layer-wise denoising losses weighted by ``1 - u_l``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffcore._parametrization import PREDICTIONS
from diffcore._validation import (
    check_array,
    check_choice,
    check_nonnegative,
    check_positive,
    check_steps,
    check_time,
    check_unshifted,
)
from diffcore.processes import AbstractProcess
from diffcore.training._losses import _bc, _coefficients, _target_coefficients
from diffcore.training._torch import (
    as_tensor,
    batch_times,
    check_finite_tensor,
    check_time_range,
    generator,
    initialise_uniform,
    sinusoidal_features,
    time_frequencies,
    uniform_times,
)

__all__ = ["EarlyExitModel", "ExitTerms", "MultiExitMLP", "early_exit_loss", "early_exit_model", "early_exit_terms"]


class _Block(torch.nn.Module):
    """``h + W_2 SiLU(W_1 SiLU(h) + b_1) + b_2``: a pre-activation residual block of width ``w``."""

    def __init__(self, width: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = torch.nn.utils.skip_init(torch.nn.Linear, width, width, dtype=dtype)
        self.outer = torch.nn.utils.skip_init(torch.nn.Linear, width, width, dtype=dtype)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        silu = torch.nn.functional.silu
        return h + self.outer(silu(self.inner(silu(h))))


class MultiExitMLP(torch.nn.Module):
    r"""A residual MLP field with an exit head and an uncertainty head after every block (DeeDiff).

    .. math:: h_0 = W_0 [x, e(t)] + b_0, \qquad h_l = h_{l-1} + W_{l,2}\, \mathrm{SiLU}(W_{l,1}
              \mathrm{SiLU}(h_{l-1}) + b_{l,1}) + b_{l,2}, \qquad g_l = V_l\, \mathrm{SiLU}(h_l) + c_l,

    .. math:: u_l = \mathrm{sigmoid}(w_l \cdot [h_l, e(t)] + a_l) \in (0, 1), \qquad l = 1, \dots, L,

    with the sinusoidal time embedding ``e(t) = [sin(omega_k t), cos(omega_k t)]`` of
    :class:`MLPField`.  ``g_l`` is exit ``l``'s prediction of type ``prediction`` and ``u_l`` the
    timestep-aware uncertainty estimation module of Tang et al. (2023, sec. 3), which sees the
    block's features and the time.  ``net(x, t)`` is the last exit ``g_L``, so the full network
    plugs into diffcore like any model (through :func:`diffcore.reparametrize` when it does not
    predict the score); :func:`early_exit_model` evaluates only as many blocks as the uncertainty
    heads require.  ``source_blocks`` records, for a network made by :func:`assemble`, which
    blocks of its teacher each block came from (``range(L)`` for a new network).

    Parameters
    ----------
    dim : ``D``, the number of features of one point.
    width, n_blocks : the width ``w`` of every hidden state and the number ``L`` of blocks.
    prediction : what every exit predicts: one of ``"eps"``, ``"x0"``, ``"v"``, ``"score"``, ``"velocity"``.
    n_frequencies, max_frequency : the time embedding.
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``; every
        weight is drawn from it (uniform on ``+-1/sqrt(fan_in)``), so one seed gives one network.
    dtype : parameter dtype (``torch.float32`` by default).

    Calling
    -------
    ``net(x, t)``, ``net.exits(x, t)`` and ``net.features(x, t)`` take ``x`` of shape ``(n, ...)``
    with ``prod(x.shape[1:]) = D`` and ``t`` a float or an ``(n,)`` array.  Torch input gives
    differentiable tensors; NumPy input runs under ``torch.no_grad()`` and returns NumPy arrays of
    ``x``'s dtype.

    Example
    -------
    >>> import numpy as np
    >>> net = MultiExitMLP(2, width=16, n_blocks=3, rng=0)
    >>> predictions, uncertainty = net.exits(np.zeros((5, 2)), 0.5)
    >>> net(np.zeros((5, 2)), 0.5).shape, predictions.shape, uncertainty.shape
    ((5, 2), (3, 5, 2), (3, 5))
    """

    def __init__(
        self,
        dim: int,
        *,
        width: int = 64,
        n_blocks: int = 4,
        prediction: str = "eps",
        n_frequencies: int = 16,
        max_frequency: float = 100.0,
        rng: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dim = check_steps(dim, "dim")
        width, n_blocks = check_steps(width, "width"), check_steps(n_blocks, "n_blocks")
        self.prediction = check_choice("prediction", prediction, PREDICTIONS)
        n_frequencies = check_steps(n_frequencies, "n_frequencies")
        max_frequency = check_positive("max_frequency", max_frequency)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
        self.width = width
        self.options = {"width": width, "prediction": prediction, "n_frequencies": n_frequencies}
        self.options.update(max_frequency=max_frequency, dtype=dtype)
        self.source_blocks: tuple[int, ...] = tuple(range(n_blocks))
        self.register_buffer("frequencies", time_frequencies(n_frequencies, max_frequency, dtype))
        linear = torch.nn.utils.skip_init
        n_embed = 2 * n_frequencies
        self.embed = linear(torch.nn.Linear, self.dim + n_embed, width, dtype=dtype)
        self.blocks = torch.nn.ModuleList(_Block(width, dtype) for _ in range(n_blocks))
        self.heads = torch.nn.ModuleList(linear(torch.nn.Linear, width, self.dim, dtype=dtype) for _ in range(n_blocks))
        self.uems = torch.nn.ModuleList(
            linear(torch.nn.Linear, width + n_embed, 1, dtype=dtype) for _ in range(n_blocks)
        )
        initialise_uniform(self, generator(rng))

    @property
    def n_blocks(self) -> int:
        """``L``, the number of blocks (and of exits)."""
        return len(self.blocks)

    @property
    def n_parameters(self) -> int:
        """The number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def uem_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters of the uncertainty heads ``(w_l, a_l)``: train only these to calibrate a frozen net."""
        return [p for uem in self.uems for p in uem.parameters()]

    # -- the computation, on torch tensors -------------------------------------------------------
    def _inputs(self, x: torch.Tensor, t: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        flat = x.reshape(n, math.prod(x.shape[1:]))
        if flat.shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} features per point; got shape {tuple(x.shape)}")
        w = self.embed.weight
        emb = sinusoidal_features(batch_times(t, n, w), self.frequencies)
        return flat.to(w.dtype), emb

    def _exit(self, k: int, h: torch.Tensor) -> torch.Tensor:
        return self.heads[k](torch.nn.functional.silu(h))

    def _uncertainty(self, k: int, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.uems[k](torch.cat([h, emb], dim=1)))[:, 0]

    def _states(self, x: torch.Tensor, t: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
        flat, emb = self._inputs(x, t)
        h = self.embed(torch.cat([flat, emb], dim=1))
        states = []
        for block in self.blocks:
            h = block(h)
            states.append(h)
        return states, emb

    # -- public calls ----------------------------------------------------------------------------
    def forward(self, x: Any, t: Any) -> Any:
        """The last exit ``g_L(x, t)``, shaped like ``x`` (NumPy in, NumPy out)."""
        return _numpy_io(self, x, t, self._last)

    def exits(self, x: Any, t: Any) -> tuple[Any, Any]:
        """Every exit and its uncertainty: ``(g, u)`` of shapes ``(L, n, ...)`` and ``(L, n)``."""
        return _numpy_io(self, x, t, self._exits)

    def features(self, x: Any, t: Any) -> Any:
        """The hidden states ``h_1, ..., h_L`` after each block, shape ``(L, n, width)``."""
        return _numpy_io(self, x, t, lambda x, t: torch.stack(self._states(x, t)[0]))

    def _last(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        states, _ = self._states(x, t)
        return self._exit(self.n_blocks - 1, states[-1]).reshape(x.shape).to(x.dtype)

    def _exits(self, x: torch.Tensor, t: Any) -> tuple[torch.Tensor, torch.Tensor]:
        states, emb = self._states(x, t)
        g = torch.stack([self._exit(k, h).reshape(x.shape).to(x.dtype) for k, h in enumerate(states)])
        u = torch.stack([self._uncertainty(k, h, emb) for k, h in enumerate(states)]).to(x.dtype)
        return g, u


def _numpy_io(net: MultiExitMLP, x: Any, t: Any, fn: Callable) -> Any:
    """Validate ``(x, t)``; run ``fn`` on tensors; NumPy in (under no_grad), NumPy out."""
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"x must be an array of shape (n, ...); got {type(x).__name__}")
    x = check_array("x", x, finite=False)  # integer and boolean points become float64
    if not hasattr(t, "shape"):
        t = check_time(t)
    if not isinstance(x, np.ndarray):
        return fn(x, t)
    with torch.no_grad():
        w = net.embed.weight
        xt = torch.as_tensor(x, dtype=w.dtype, device=w.device)
        tt = torch.from_numpy(np.asarray(t, dtype=np.float64)) if isinstance(t, np.ndarray) else t
        out = fn(xt, tt)
    if isinstance(out, tuple):
        return tuple(o.cpu().numpy().astype(x.dtype, copy=False) for o in out)
    return out.cpu().numpy().astype(x.dtype, copy=False)


class EarlyExitModel:
    r"""A :class:`MultiExitMLP` evaluated with early exits, counting the blocks it evaluates.

    Point ``i`` of a call leaves at block ``l_i = min{l : u_l(x_i, t_i) < threshold}`` (the last
    block when there is none) and gets the prediction ``g_{l_i}``; only the points still inside
    are carried through the next block, so the work of a call is ``sum_i l_i`` block evaluations.
    The counts accumulate over calls:

    .. math:: \text{compute fraction} = \frac{\sum_{\text{calls}} \sum_i l_i}{L \sum_{\text{calls}} n},

    the average fraction of the ``L`` blocks a point used (the input layer and the heads, the
    same for every depth up to the ``l_i`` head evaluations, are not counted).  Made by
    :func:`early_exit_model`.

    Attributes
    ----------
    net, threshold : the network and the exit threshold.
    exit_counts : int64 ``(L,)``, how many points left at each block over all calls.
    calls : the number of calls with at least one point.
    """

    def __init__(self, net: MultiExitMLP, threshold: float) -> None:
        self.net, self.threshold = net, threshold
        self.exit_counts = np.zeros(net.n_blocks, dtype=np.int64)
        self.calls = 0

    @property
    def prediction(self) -> str:
        """What the model predicts (the network's ``prediction``)."""
        return self.net.prediction

    @property
    def points(self) -> int:
        """The number of points evaluated over all calls."""
        return int(self.exit_counts.sum())

    @property
    def mean_blocks(self) -> float:
        """Blocks evaluated per point, averaged over all calls (NaN before the first call)."""
        depth = np.arange(1, self.net.n_blocks + 1)
        return float(depth @ self.exit_counts / self.points) if self.points else math.nan

    @property
    def compute_fraction(self) -> float:
        """``mean_blocks / L``, in ``[1/L, 1]`` (NaN before the first call)."""
        return self.mean_blocks / self.net.n_blocks

    def reset(self) -> None:
        """Set the counts back to zero."""
        self.exit_counts[:] = 0
        self.calls = 0

    def __call__(self, x: Any, t: Any) -> Any:
        """The early-exit prediction at ``(x, t)``, shaped like ``x`` (NumPy in, NumPy out)."""
        return _numpy_io(self.net, x, t, self._run)

    def _run(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        net, n = self.net, x.shape[0]
        flat, emb = net._inputs(x, t)
        h = net.embed(torch.cat([flat, emb], dim=1))
        out = torch.empty(n, net.dim, dtype=h.dtype, device=h.device)
        active = torch.arange(n, device=h.device)  # the rows of the batch still inside the network
        last = net.n_blocks - 1
        for k, block in enumerate(net.blocks):
            h = block(h)
            if k == last:
                leave = torch.ones(h.shape[0], dtype=torch.bool, device=h.device)
            else:  # NaN uncertainty never exits: a NaN point reaches the last block and stays NaN
                leave = net._uncertainty(k, h, emb) < self.threshold
            if bool(leave.all()):
                out[active] = net._exit(k, h)
                self.exit_counts[k] += h.shape[0]
                break
            if bool(leave.any()):
                out[active[leave]] = net._exit(k, h[leave])
                self.exit_counts[k] += int(leave.sum())
                active, h, emb = active[~leave], h[~leave], emb[~leave]
        self.calls += int(n > 0)
        return out.reshape(x.shape).to(x.dtype)

    def __repr__(self) -> str:
        return f"EarlyExitModel(threshold={self.threshold}, compute_fraction={self.compute_fraction:.3f})"


def early_exit_model(net: MultiExitMLP, threshold: float) -> EarlyExitModel:
    r"""The callable ``(x, t) -> g_{l(x, t)}(x, t)`` that leaves ``net`` at the first confident block (DeeDiff).

    .. math:: l(x, t) = \min\{l \le L : u_l(x, t) < \tau\} \ (\text{or } L), \qquad
              \hat f(x, t) = g_{l(x, t)}(x, t),

    the exit rule of Tang et al. (2023, sec. 3, "inference").  ``threshold = 0`` never exits
    early (``u_l > 0``) and gives the full network's last exit exactly; ``threshold = inf`` leaves
    every point after the first block.  The returned :class:`EarlyExitModel` predicts what ``net``
    predicts (wrap it with :func:`diffcore.reparametrize` to sample with a score) and counts the
    blocks it evaluates: ``.compute_fraction`` after a sampler run is the fraction of the full
    network's block evaluations spent.

    Parameters
    ----------
    net : a :class:`MultiExitMLP` (its uncertainty heads trained, e.g. by :func:`early_exit_loss`).
    threshold : ``tau >= 0``, a real number or ``math.inf``.

    Raises ``TypeError`` for another network or a threshold that is not a real number, and
    ``ValueError`` for a negative or NaN threshold.

    Example
    -------
    >>> import math
    >>> import numpy as np
    >>> net = MultiExitMLP(2, width=16, n_blocks=4, rng=0)
    >>> model = early_exit_model(net, math.inf)
    >>> model(np.zeros((3, 2)), 0.5).shape, model.compute_fraction
    ((3, 2), 0.25)
    """
    if not isinstance(net, MultiExitMLP):
        raise TypeError(f"net must be a MultiExitMLP; got {type(net).__name__}")
    if isinstance(threshold, (int, float, np.floating, np.integer)) and not isinstance(threshold, bool):
        if math.isinf(threshold) and threshold > 0:
            return EarlyExitModel(net, math.inf)
    return EarlyExitModel(net, check_nonnegative("threshold", threshold))


@dataclass(frozen=True, eq=False)
class ExitTerms:
    r"""The terms of DeeDiff's loss on one batch (:func:`early_exit_terms`).

    Attributes
    ----------
    predictions : ``(L, n, ...)`` tensor, every exit's prediction ``g_l``.
    uncertainty : ``(L, n)``, the heads' ``u_l``.
    errors : ``(L, n)``, ``|g_l - y|^2`` summed over the features.
    targets : ``(L, n)``, the uncertainty targets ``tanh(mean_j |g_{l,j} - y_j|)`` (no gradient).
    simple : 0-d, ``L_simple``, the mean of ``errors[-1]``.
    uncertainty_loss : 0-d, ``L_u``, the mean over points of ``sum_l (u_l - targets_l)^2``.
    layerwise : 0-d, ``L_UAL``, the mean over points of ``sum_{l < L} (1 - u_l) errors_l``, the
        weight ``1 - u_l`` held constant (no gradient reaches the heads through it).
    """

    predictions: torch.Tensor
    uncertainty: torch.Tensor
    errors: torch.Tensor
    targets: torch.Tensor
    simple: torch.Tensor
    uncertainty_loss: torch.Tensor
    layerwise: torch.Tensor


def early_exit_terms(net: MultiExitMLP, x_t: Any, t: Any, target: Any) -> ExitTerms:
    r"""DeeDiff's three loss terms for a batch of noisy points ``x_t``, times ``t`` and regression targets ``y``.

    .. math:: L_{simple} = E\,|g_L - y|^2, \qquad
              L_u = E \sum_{l=1}^{L} \big(u_l - \tanh(\overline{|g_l - y|})\big)^2, \qquad
              L_{UAL} = E \sum_{l=1}^{L-1} (1 - u_l)\, |g_l - y|^2,

    (Tang et al. 2023, sec. 3: the pseudo-uncertainty ``tanh`` of the exit's absolute error, its
    regression loss, and the uncertainty-aware layer-wise loss); ``overline{.}`` is the mean over
    the ``D`` features, ``E`` the mean over the batch.  The uncertainty target is held constant, so
    ``L_u`` trains only the heads, and for fixed features its minimiser is
    ``u_l = E[tanh(mean |g_l - y|) | h_l, t]``: the head predicts its exit's expected error.
    The weight ``1 - u_l`` of ``L_UAL`` is held constant too (our choice: otherwise ``L_UAL``
    could be lowered by raising ``u_l``, biasing the heads upwards).

    Parameters
    ----------
    net : a :class:`MultiExitMLP`.
    x_t, target : tensors ``(n, ...)`` of the same shape: the noisy points and ``y``, the value the
        exits should predict (e.g. ``eps`` for an ``eps`` network).
    t : a float or an ``(n,)`` tensor of times.

    Returns an :class:`ExitTerms` of differentiable tensors.

    Raises ``TypeError`` for another network or non-arrays, ``ValueError`` for NaN or infinite
    points or targets, an empty batch, or a target of another shape than ``x_t``.
    """
    if not isinstance(net, MultiExitMLP):
        raise TypeError(f"net must be a MultiExitMLP; got {type(net).__name__}")
    x_t = check_finite_tensor("x_t", as_tensor("x_t", x_t))
    target = check_finite_tensor("target", as_tensor("target", target))
    if x_t.shape != target.shape:
        raise ValueError(f"target must have the shape of x_t {tuple(x_t.shape)}; got {tuple(target.shape)}")
    g, u = net.exits(x_t, t)
    diff = (g - target[None].to(g.dtype)).reshape(g.shape[0], g.shape[1], -1)
    errors = torch.sum(diff**2, dim=2)
    targets = torch.tanh(torch.mean(diff.abs(), dim=2)).detach()
    return ExitTerms(
        predictions=g,
        uncertainty=u,
        errors=errors,
        targets=targets,
        simple=torch.mean(errors[-1]),
        uncertainty_loss=torch.mean(torch.sum((u - targets) ** 2, dim=0)),
        layerwise=torch.mean(torch.sum((1 - u[:-1].detach()) * errors[:-1], dim=0)),
    )


def early_exit_loss(
    net: MultiExitMLP,
    x0: Any,
    process: AbstractProcess,
    rng: Any = None,
    *,
    uncertainty_weight: float = 1.0,
    layer_weight: float = 1.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
) -> torch.Tensor:
    r"""DeeDiff's training loss ``L_simple + lambda L_u + beta L_UAL`` on a batch of data (Tang et al. 2023, sec. 3).

    Draws ``t ~ U[t_min, t_max]`` and ``eps ~ N(0, I)`` per point (the same draws as
    :func:`denoising_loss` for the same seed), forms ``x_t = alpha_t x_0 + sigma_t eps`` and the
    target ``y = a_t x_0 + b_t eps`` of ``net.prediction`` (``eps``: ``y = eps``), and returns

    .. math:: L = L_{simple} + \lambda L_u + \beta L_{UAL}

    with the terms of :func:`early_exit_terms`, ``lambda = uncertainty_weight`` and
    ``beta = layer_weight``.  Minimised jointly: every exit tends to ``E[y | x_t]`` (the last one
    through ``L_simple``, the others through ``L_UAL``) and every head to its exit's expected
    pseudo-uncertainty.

    Parameters
    ----------
    net : a :class:`MultiExitMLP`.
    x0 : data batch ``(n, ...)``, a tensor or NumPy array.
    process : the forward process.
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``.
    uncertainty_weight, layer_weight : ``lambda, beta >= 0``.
    t_min, t_max : the range of ``t``.

    Returns a 0-d tensor, differentiable in the network's parameters.
    """
    if not isinstance(net, MultiExitMLP):
        raise TypeError(f"net must be a MultiExitMLP; got {type(net).__name__}")
    x_t, t, target = _noisy_batch(x0, process, rng, prediction=net.prediction, t_min=t_min, t_max=t_max)
    lam = check_nonnegative("uncertainty_weight", uncertainty_weight)
    beta = check_nonnegative("layer_weight", layer_weight)
    terms = early_exit_terms(net, x_t, t.to(x_t.dtype), target)
    return terms.simple + lam * terms.uncertainty_loss + beta * terms.layerwise


def _noisy_batch(
    x0: Any, process: AbstractProcess, rng: Any, *, prediction: str, t_min: float, t_max: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, t, y)``: the draws of :func:`denoising_loss` (``t`` first, ``eps`` second) and its target."""
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "early_exit_loss and assembly_distillation_loss")
    t_min, t_max = check_time_range(t_min, t_max, open_ends=False)
    x0 = check_finite_tensor("x0", as_tensor("x0", x0))
    gen = generator(rng, x0.device)
    t = uniform_times(x0.shape[0], t_min, t_max, gen, x0)
    eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype, device=gen.device).to(x0.device)
    c = _coefficients(process, t)
    a, b = _target_coefficients(prediction, c)
    target = _bc(a, x0) * x0 + _bc(b, x0) * eps
    if not bool(torch.isfinite(target).all()):
        raise ValueError(f"the {prediction} target is not finite for t in [{t_min}, {t_max}]: choose t_min > 0")
    return _bc(c["alpha"], x0) * x0 + _bc(c["sigma"], x0) * eps, t, target
