"""A small MLP field ``(x, t) -> array shaped like x`` with a Fourier time embedding."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from diffcore._validation import check_array, check_positive, check_real, check_steps, check_time
from diffcore.training._torch import batch_times, generator, initialise_uniform, sinusoidal_features, time_frequencies

__all__ = ["MLPField", "MLPMap"]


class MLPField(torch.nn.Module):
    r"""A multilayer perceptron ``f_theta(x, t)`` of the shape of ``x``: a learned score, denoiser or velocity.

    .. math:: h_0 = [x,\ \sin(\omega_k t),\ \cos(\omega_k t)]_{k=1}^{K}, \qquad
              h_{l} = \mathrm{SiLU}(W_l h_{l-1} + b_l)\ (l = 1..L), \qquad f = W_{L+1} h_L + b_{L+1},

    with ``K = n_frequencies`` angular frequencies ``omega_k`` spaced geometrically from 1 to
    ``max_frequency`` (the sinusoidal embedding of Vaswani et al. 2017, used for time by Ho et
    al. 2020, app. B, and as random Fourier features by Tancik et al. 2020), ``L = depth`` hidden
    layers of ``width`` units and the SiLU activation (Elfwing et al. 2018).  The defaults
    (``width=128``, ``depth=3``) have 37,762 parameters for ``d = 2`` and ``width=32, depth=2``
    2,242 (``sum (fan_in + 1) fan_out`` over the layers).  ``x`` of shape ``(n, ...)`` is
    flattened to ``(n, D)`` and the output reshaped back.

    Parameters
    ----------
    dim : ``D``, the number of features of one point (``prod(x.shape[1:])``).
    width, depth : hidden units per layer and number of hidden layers.
    n_frequencies, max_frequency : the time embedding.
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``; every
        weight and bias is drawn from it (uniform on ``+-1/sqrt(fan_in)``, PyTorch's default
        law for linear layers), so the same seed gives identical weights, without touching
        torch's global generator.
    dtype : parameter dtype (``torch.float32`` by default).

    Calling
    -------
    ``model(x, t)`` with ``t`` a float or an ``(n,)`` array.  A torch ``x`` gives a differentiable
    tensor of ``x``'s dtype and device (integer or boolean ``x`` is promoted to float64 first;
    complex ``x`` is refused).  A NumPy ``x`` is run under ``torch.no_grad()`` and
    returns a NumPy array of ``x``'s dtype, so the model plugs into diffcore's samplers and,
    through :func:`diffcore.reparametrize`, into any converter (learn ``eps``, sample with the
    score ``-eps / sigma``).

    Example
    -------
    >>> import numpy as np
    >>> model = MLPField(2, width=32, depth=2, rng=0)
    >>> model(np.zeros((5, 2)), 0.5).shape, model.n_parameters
    ((5, 2), 2242)
    """

    def __init__(
        self,
        dim: int,
        *,
        width: int = 128,
        depth: int = 3,
        n_frequencies: int = 16,
        max_frequency: float = 100.0,
        rng: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dim = check_steps(dim, "dim")
        width, depth = check_steps(width, "width"), check_steps(depth, "depth")
        n_frequencies = check_steps(n_frequencies, "n_frequencies")
        max_frequency = check_positive("max_frequency", max_frequency)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
        self.register_buffer("frequencies", time_frequencies(n_frequencies, max_frequency, dtype))
        sizes = [self.dim + 2 * n_frequencies] + [width] * depth + [self.dim]
        self.layers = torch.nn.ModuleList(
            torch.nn.utils.skip_init(torch.nn.Linear, m, k, dtype=dtype) for m, k in itertools.pairwise(sizes)
        )
        initialise_uniform(self.layers, generator(rng))

    @property
    def n_parameters(self) -> int:
        """The number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Any, t: Any) -> Any:
        """``f_theta(x, t)``, shaped like ``x`` (see the class docstring for NumPy input)."""
        if not isinstance(x, (np.ndarray, torch.Tensor)):
            raise TypeError(f"x must be an array of shape (n, ...); got {type(x).__name__}")
        x = check_array("x", x, finite=False)  # integer and boolean points become float64
        if not hasattr(t, "shape"):
            t = check_time(t)  # a float is checked here; arrays of times by batch_times (shape only)
        if isinstance(x, np.ndarray):
            with torch.no_grad():
                w = self.layers[0].weight
                out = self.forward(torch.as_tensor(x, dtype=w.dtype, device=w.device), _numpy_time(t))
            return out.cpu().numpy().astype(x.dtype, copy=False)
        n = x.shape[0]
        flat = x.reshape(n, math.prod(x.shape[1:]))
        if flat.shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} features per point; got shape {tuple(x.shape)}")
        w = self.layers[0].weight
        h = torch.cat([flat.to(w.dtype), sinusoidal_features(batch_times(t, n, w), self.frequencies)], dim=1)
        for layer in self.layers[:-1]:
            h = torch.nn.functional.silu(layer(h))
        return self.layers[-1](h).reshape(x.shape).to(x.dtype)


def _numpy_time(t: Any) -> Any:
    return torch.from_numpy(np.asarray(t, dtype=np.float64)) if isinstance(t, np.ndarray) else t


class MLPMap(MLPField):
    r"""A multilayer perceptron ``f_theta(x, t, s)`` of two times: a learned flow map or average velocity.

    :class:`MLPField` with the sinusoidal embeddings of both times in the input,
    ``h_0 = [x, sin(omega_k t), cos(omega_k t), sin(omega_k s), cos(omega_k s)]``; plug it into
    :func:`diffcore.flowmaps.to_flow_map` (``mean_velocity``, ``ctm``; for ``shortcut`` the second
    time is the step ``d = s - t`` in ``[-1, 1]``, embedded as is).  Same parameters as
    :class:`MLPField`; ``width=32, depth=2`` has 3,266 parameters for ``d = 2``.

    Example
    -------
    >>> import numpy as np
    >>> net = MLPMap(2, width=32, depth=2, rng=0)
    >>> net(np.zeros((5, 2)), 0.5, 0.1).shape, net.n_parameters
    ((5, 2), 3266)
    """

    def __init__(self, dim: int, **options: Any) -> None:
        super().__init__(dim, **options)
        first = self.layers[0]
        n_freq = self.frequencies.shape[0]
        wider = torch.nn.utils.skip_init(
            torch.nn.Linear, first.in_features + 2 * n_freq, first.out_features, dtype=first.weight.dtype
        )
        layers = torch.nn.ModuleList([wider, *list(self.layers)[1:]])
        initialise_uniform(layers, generator(options.get("rng")))
        self.layers = layers

    def forward(self, x: Any, t: Any, s: Any) -> Any:  # type: ignore[override]
        """``f_theta(x, t, s)``, shaped like ``x`` (NumPy in, NumPy out, as :class:`MLPField`)."""
        if not isinstance(x, (np.ndarray, torch.Tensor)):
            raise TypeError(f"x must be an array of shape (n, ...); got {type(x).__name__}")
        x = check_array("x", x, finite=False)
        if not hasattr(t, "shape"):
            t = check_time(t)
        elif t.ndim > 1:
            raise ValueError(f"t must be a float or an array of shape (n,); got shape {tuple(t.shape)}")
        if not hasattr(s, "shape"):  # the second time, or the shortcut's step d = s - t in [-1, 1]
            s = check_real("s", s)
            if not -1.0 <= s <= 1.0:
                raise ValueError(f"s must lie in [-1, 1]; got {s}")
        elif s.ndim > 1:
            raise ValueError(f"s must be a float or an array of shape (n,); got shape {tuple(s.shape)}")
        if isinstance(x, np.ndarray):
            with torch.no_grad():
                w = self.layers[0].weight
                xt = torch.as_tensor(x, dtype=w.dtype, device=w.device)
                out = self.forward(xt, _numpy_time(t), _numpy_time(s))
            return out.cpu().numpy().astype(x.dtype, copy=False)
        n = x.shape[0]
        flat = x.reshape(n, math.prod(x.shape[1:]))
        if flat.shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} features per point; got shape {tuple(x.shape)}")
        w = self.layers[0].weight
        emb = [sinusoidal_features(batch_times(u, n, w, name), self.frequencies) for u, name in ((t, "t"), (s, "s"))]
        h = torch.cat([flat.to(w.dtype), *emb], dim=1)
        for layer in self.layers[:-1]:
            h = torch.nn.functional.silu(layer(h))
        return self.layers[-1](h).reshape(x.shape).to(x.dtype)
