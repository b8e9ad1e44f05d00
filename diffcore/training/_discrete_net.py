r"""A small torch network for discrete diffusion: an MLP over one-hot token sequences and time."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from diffcore._validation import check_choice, check_positive, check_scalar_time, check_steps
from diffcore.discrete._laws import check_tokens
from diffcore.training._torch import batch_times, generator, initialise_uniform, sinusoidal_features, time_frequencies

__all__ = ["DiscreteDenoiser"]

_OUTPUTS = ("denoiser", "log_score")
_NEG = -1e4  # logit of a token excluded by carry-over: exp(-1e4) = 0 in float32 and float64


class DiscreteDenoiser(torch.nn.Module):
    r"""An MLP over one-hot sequences and time: per-token logits of ``p(x_0 | x_t)`` or log concrete scores.

    .. math:: h_0 = [\mathrm{onehot}(x_t) \in \{0, 1\}^{L S},\ \sin(\omega_k t),\ \cos(\omega_k t)], \qquad
              h_l = \mathrm{SiLU}(W_l h_{l-1} + b_l), \qquad f = W h_{depth} + b \in \mathbb{R}^{L \times C},

    with ``C = V`` (``output="denoiser"``: logits of :math:`p_\theta(x_{0,l} = k \mid x_t)`, the
    ``x_0``-parametrisation of D3PM, Austin et al. 2021, sec. 3.3, and of MDLM / MD4, Sahoo et al.
    2024, Shi et al. 2024) or ``C = S`` (``output="log_score"``: :math:`\log s_\theta(x_t)_{l,k}`,
    the log of the concrete score :math:`p_t(y)/p_t(x_t)` for ``y`` = ``x_t`` with token ``l`` set
    to ``k``, learned by score entropy, Lou et al. 2024).  The time embedding is the sinusoidal one
    of :class:`~diffcore.training.MLPField`.

    Parameters
    ----------
    vocab_size : ``V``, data tokens ``0, ..., V - 1``.
    length : ``L``, tokens per sequence.
    num_states : ``S`` (default ``V``; ``V + 1`` for absorbing noise, whose mask is token ``V``).
    output : ``"denoiser"`` or ``"log_score"``.
    carry_over : with a mask (``num_states = V + 1``) and ``output="denoiser"``, the *carry-over
        unmasking* of MDLM (Sahoo et al. 2024, sec. 3.2.3): at an unmasked position the output is
        the token itself (logit 0 there, ``-1e4`` elsewhere), so the model only predicts masked tokens.
    width, depth, n_frequencies, max_frequency, rng, dtype : as :class:`~diffcore.training.MLPField`.

    Calling
    -------
    ``model(x_t, t)`` with ``x_t`` an integer tensor ``(n, L)`` (codes ``< S``) and ``t`` a float or
    ``(n,)`` tensor: a differentiable tensor ``(n, L, C)`` of the parameters' dtype.
    :meth:`numpy_denoiser` wraps the model as the NumPy callable ``(x (n, L) int, t) -> (n, L, V)``
    probabilities that :mod:`diffcore.discrete` takes.

    Example
    -------
    >>> import numpy as np
    >>> net = DiscreteDenoiser(3, 4, num_states=4, width=16, depth=1, rng=0)
    >>> net.numpy_denoiser()(np.array([[0, 3, 3, 2]]), 0.5).sum(axis=2).round(6).tolist()
    [[1.0, 1.0, 1.0, 1.0]]
    """

    def __init__(
        self,
        vocab_size: int,
        length: int,
        *,
        num_states: int | None = None,
        output: str = "denoiser",
        carry_over: bool = False,
        width: int = 128,
        depth: int = 2,
        n_frequencies: int = 8,
        max_frequency: float = 30.0,
        rng: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.vocab_size, self.length = check_steps(vocab_size, "vocab_size"), check_steps(length, "length")
        self.num_states = self.vocab_size if num_states is None else check_steps(num_states, "num_states")
        if self.num_states < self.vocab_size:
            raise ValueError(f"num_states must be >= vocab_size = {self.vocab_size}; got {self.num_states}")
        self.output = check_choice("output", output, _OUTPUTS)
        if not isinstance(carry_over, bool):
            raise TypeError(f"carry_over must be a bool; got {type(carry_over).__name__}")
        if carry_over and (output != "denoiser" or self.num_states != self.vocab_size + 1):
            raise ValueError(
                "carry_over needs output='denoiser' and a mask token (num_states = vocab_size + 1); "
                f"got output={output!r}, num_states={self.num_states}, vocab_size={self.vocab_size}"
            )
        self.carry_over = carry_over
        width, depth = check_steps(width, "width"), check_steps(depth, "depth")
        n_frequencies = check_steps(n_frequencies, "n_frequencies")
        max_frequency = check_positive("max_frequency", max_frequency)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
        self.register_buffer("frequencies", time_frequencies(n_frequencies, max_frequency, dtype))
        self.out_classes = self.vocab_size if output == "denoiser" else self.num_states
        sizes = [self.length * self.num_states + 2 * n_frequencies] + [width] * depth
        sizes.append(self.length * self.out_classes)
        self.layers = torch.nn.ModuleList(
            torch.nn.utils.skip_init(torch.nn.Linear, m, k, dtype=dtype) for m, k in itertools.pairwise(sizes)
        )
        initialise_uniform(self.layers, generator(rng))

    @property
    def n_parameters(self) -> int:
        """The number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Any, t: Any) -> torch.Tensor:
        """Logits ``(n, L, V)`` (or log scores ``(n, L, S)``) at tokens ``x (n, L)`` and time ``t``."""
        w = self.layers[0].weight
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be an integer torch tensor of shape (n, L); got {type(x).__name__}")
        tokens = torch.as_tensor(check_tokens("x", x, self.num_states, self.length), device=w.device)
        n = tokens.shape[0]
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(np.asarray(t, dtype=np.float64))
        onehot = torch.nn.functional.one_hot(tokens, self.num_states).to(w.dtype).reshape(n, -1)
        h = torch.cat([onehot, sinusoidal_features(batch_times(t, n, w), self.frequencies)], dim=1)
        for layer in self.layers[:-1]:
            h = torch.nn.functional.silu(layer(h))
        out = self.layers[-1](h).reshape(n, self.length, self.out_classes)
        if self.carry_over:
            known = tokens < self.vocab_size
            keep = torch.nn.functional.one_hot(tokens.clamp(max=self.vocab_size - 1), self.vocab_size).bool()
            fixed = torch.where(keep, torch.zeros((), dtype=w.dtype), torch.full((), _NEG, dtype=w.dtype))
            out = torch.where(known[..., None], fixed, out)
        return out

    def numpy_denoiser(self) -> Any:
        """The NumPy callable ``(x (n, L) int, t float) -> (n, L, V)`` float64 probabilities (no gradients).

        The softmax of the logits (``output="denoiser"`` only); the form the exact quantities and
        samplers of :mod:`diffcore.discrete` take (e.g. ``reverse_rates_from_denoiser``).
        """
        if self.output != "denoiser":
            raise ValueError(f"numpy_denoiser needs output='denoiser'; this model has output={self.output!r}")

        def denoiser(x: Any, t: float) -> np.ndarray:
            t = check_scalar_time(t)
            x = check_tokens("x", x, self.num_states, self.length)
            with torch.no_grad():
                logits = self.forward(torch.from_numpy(x), float(t)).to(torch.float64)
            return torch.softmax(logits, dim=2).cpu().numpy()

        return denoiser
