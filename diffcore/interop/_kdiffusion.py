r"""k-diffusion / EDM denoisers both ways, and k-diffusion's samplers in the correctness kit's protocol.

k-diffusion (Karras et al. 2022; Crowson's ``k_diffusion``) works in the variance-exploding variable
``x_ve = x_0 + sigma_ve eps`` with a denoiser ``D(x_ve, sigma_ve) ~ E[x_0 | x_ve]``.  Every affine
process ``x_t = alpha_t x_0 + sigma_t eps`` is that in disguise (Karras et al. 2022, sec. 4):

.. math:: x_{ve} = x_t / \alpha_t, \qquad \sigma_{ve} = \sigma_t / \alpha_t = e^{-\lambda(t)/2},

so a denoiser and a score are the same model: ``D = E[x_0 | x_t] = (x_t + sigma_t^2 s(x_t, t)) / alpha_t``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcore._array import as_array, broadcast_time, namespace
from diffcore._parametrization import convert
from diffcore._validation import Model, check_array, check_time_for
from diffcore.interop._common import check_sampler_call, is_empty, like_input, to_torch, torch_generator, torch_module
from diffcore.processes import AbstractProcess

__all__ = [
    "KDiffusionDenoiser",
    "KDiffusionSampler",
    "KDiffusionScore",
    "denoiser_for_kdiffusion",
    "import_kdiffusion_sampling",
    "sampler_from_kdiffusion",
    "score_from_kdiffusion",
]

Array = Any

#: the private package name under which k-diffusion's sampling module is loaded when ``k_diffusion`` cannot be
_PACKAGE = "_diffcore_k_diffusion"


@functools.cache
def import_kdiffusion_sampling() -> types.ModuleType:
    """The real ``k_diffusion.sampling`` module of the installed k-diffusion package.

    Why this function: ``import k_diffusion`` runs its ``__init__``, which imports the training
    and image modules (``augmentation`` needs scikit-image, ``evaluation`` needs ``clip`` and
    torchvision, ...), and k-diffusion declares torchvision, wandb, kornia, clip-anytorch and more
    as requirements; PyPI's torchvision does not import beside diffcore's pinned CPU torch.  The
    sampling module itself needs only torch, scipy, torchdiffeq, torchsde, tqdm and
    ``k_diffusion.utils`` (which imports PIL, safetensors and ``torchvision.transforms.functional``
    at the top, but whose functions that sampling uses do not touch torchvision).  So diffcore's
    ``interop`` extra installs ``k-diffusion`` with ``pip install --no-deps``, and this function:

    1. returns ``k_diffusion.sampling`` from a plain import when that works;
    2. otherwise loads the installed files ``k_diffusion/utils.py`` and ``k_diffusion/sampling.py``
       (unchanged) as the private package ``_diffcore_k_diffusion``, without running
       ``k_diffusion/__init__``.  Only these two modules are loaded: the samplers
       (``sample_euler``, ``sample_heun``, ``sample_dpmpp_2m``, ...) and noise schedules work, the
       rest of k-diffusion (models, training, image I/O) is not available this way.  If torchvision
       cannot be imported, ``torchvision.transforms.functional`` is replaced, for the duration of
       the load only, by a stand-in whose two functions (``to_tensor``, ``to_pil_image``: image
       conversions that sampling never calls) raise ``ImportError``.

    Raises ``ImportError`` when k-diffusion is not installed.  The module is loaded once and cached.
    """
    try:
        return importlib.import_module("k_diffusion.sampling")
    except Exception:  # any failure of k_diffusion/__init__ (missing or broken extras)
        pass
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed: pip install --no-deps k-diffusion==0.1.1.post1")
    package = types.ModuleType(_PACKAGE)
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = _PACKAGE
    sys.modules[_PACKAGE] = package
    with _torchvision_functional():
        importlib.import_module(f"{_PACKAGE}.utils")
        return importlib.import_module(f"{_PACKAGE}.sampling")


class _torchvision_functional:
    """A stand-in ``torchvision.transforms.functional`` while k-diffusion's utils load, if torchvision won't import."""

    NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")

    def __enter__(self) -> None:
        self.saved: dict[str, Any] = {}
        try:
            importlib.import_module("torchvision.transforms.functional")
            return
        except Exception:  # missing, or built against another torch
            pass
        for name in self.NAMES:
            self.saved[name] = sys.modules.get(name)
            sys.modules[name] = types.ModuleType(name)

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise ImportError("torchvision is not available: k-diffusion's image conversions cannot be used")

        functional = sys.modules[self.NAMES[2]]
        functional.to_tensor = functional.to_pil_image = unavailable
        sys.modules[self.NAMES[1]].functional = functional
        sys.modules[self.NAMES[0]].transforms = sys.modules[self.NAMES[1]]

    def __exit__(self, *exc: Any) -> None:
        for name, module in self.saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:  # pragma: no cover - a failed import leaves nothing behind
                sys.modules[name] = module


def _levels(process: AbstractProcess, t: Any) -> tuple[Any, Any]:
    """``(alpha_t, sigma_ve = sigma_t / alpha_t)``; raises where ``alpha_t = 0``."""
    a = process.alpha(t)
    zero = a == 0 if isinstance(a, float) else bool(namespace(a).any(a == 0))
    if zero:
        raise ValueError(f"the variance-exploding variable x / alpha(t) needs alpha(t) > 0; alpha = 0 at t = {t}")
    return a, process.sigma(t) / a


@dataclass(frozen=True, eq=False)
class KDiffusionScore:
    """A k-diffusion denoiser as a diffcore score: :func:`score_from_kdiffusion`."""

    denoiser: Any
    process: AbstractProcess

    def __post_init__(self) -> None:
        if not isinstance(self.process, AbstractProcess):
            raise TypeError(f"process must be an AbstractProcess; got {type(self.process).__name__}")
        object.__setattr__(self, "denoiser", Model.of(self.denoiser, "denoiser"))

    def __call__(self, x: Array, t: Any) -> Array:
        x = check_array("x", x, min_ndim=2, finite=False)
        t = check_time_for(t, x)
        a, n = _levels(self.process, t)
        sigma = as_array(np.full(x.shape[0], n) if isinstance(n, float) else n, x)  # (n,): k-diffusion's s_in
        x0 = self.denoiser(x / broadcast_time(a, x), sigma)
        return convert(x0, x, t, self.process, source="x0", target="score")


def score_from_kdiffusion(denoiser: Any, process: AbstractProcess) -> KDiffusionScore:
    r"""A k-diffusion / EDM denoiser ``D(x_ve, sigma_ve)`` as a diffcore score of ``process``.

    .. math:: s(x, t) = -\frac{x - \alpha_t D(x/\alpha_t,\ \sigma_t/\alpha_t)}{\sigma_t^2}

    (Karras et al. 2022, eq. 3 and sec. 4; Tweedie's formula).  ``sigma_ve`` reaches the denoiser
    as an ``(n,)`` array of ``x``'s library, dtype and device, as k-diffusion's samplers pass it
    (``sigma * s_in``).  Needs ``alpha_t > 0`` and ``sigma_t > 0`` at the times it is called.
    """
    return KDiffusionScore(denoiser, process)


@dataclass(frozen=True, eq=False)
class KDiffusionDenoiser:
    """A diffcore score as a k-diffusion denoiser: :func:`denoiser_for_kdiffusion`."""

    score: Any
    process: AbstractProcess
    _lam_range: tuple[float, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.process, AbstractProcess):
            raise TypeError(f"process must be an AbstractProcess; got {type(self.process).__name__}")
        object.__setattr__(self, "score", Model.of(self.score, "score"))
        object.__setattr__(self, "_lam_range", (self.process.log_snr(1.0), self.process.log_snr(0.0)))

    def time_of(self, sigma: float) -> float:
        """The time with ``sigma_t / alpha_t = sigma``: ``lambda(t) = -2 log sigma`` (0 for ``sigma = 0``)."""
        lo, hi = self._lam_range
        if sigma == 0:
            return 0.0
        lam = -2.0 * math.log(sigma)
        if lam < lo - 1e-9 * max(1.0, abs(lo)):
            raise ValueError(
                f"sigma = {sigma} lies beyond the end of {type(self.process).__name__}: its largest noise level "
                f"is sigma_ve(1) = {math.exp(-lo / 2)}"
            )
        return 0.0 if lam >= hi else float(self.process.log_snr_inverse(min(max(lam, lo), hi)))

    def __call__(self, x: Array, sigma: Any, **extra: Any) -> Array:
        x = check_array("x", x, min_ndim=2, finite=False)
        levels = np.atleast_1d(np.asarray(sigma.detach().cpu() if hasattr(sigma, "detach") else sigma, float))
        if levels.size not in (1, x.shape[0]):
            raise ValueError(f"sigma must be a number or an array of shape (n,) = ({x.shape[0]},); got {levels.shape}")
        if x.shape[0] == 0:
            return x
        if np.all(levels == levels[0]):
            t: Any = self.time_of(float(levels[0]))
        else:
            t = as_array(np.array([self.time_of(float(v)) for v in levels]), x)
        a = broadcast_time(self.process.alpha(t), x)
        x_t = x * a
        return convert(self.score(x_t, t), x_t, t, self.process, source="score", target="x0")


def denoiser_for_kdiffusion(score: Any, process: AbstractProcess) -> KDiffusionDenoiser:
    r"""A diffcore score of ``process`` as a k-diffusion / EDM denoiser ``D(x_ve, sigma_ve, **extra) -> x0``.

    With ``t`` the time of ``process`` whose ``sigma_t / alpha_t`` is ``sigma_ve``
    (``lambda(t) = -2 log sigma_ve``; ``t = 0`` for ``sigma_ve = 0``) and ``x_t = alpha_t x_ve``:

    .. math:: D(x_{ve}, \sigma_{ve}) = \frac{x_t + \sigma_t^2\, s(x_t, t)}{\alpha_t}

    (Tweedie's formula; Karras et al. 2022, eq. 3).  ``sigma_ve`` is a number or an ``(n,)`` array
    (k-diffusion passes ``sigma * s_in``); per-point levels become an ``(n,)`` time array.  Extra
    keywords (k-diffusion's ``extra_args``) are ignored.
    """
    return KDiffusionDenoiser(score, process)


@dataclass(frozen=True, eq=False)
class KDiffusionSampler:
    """A k-diffusion sampling function in the correctness kit's sampler protocol: :func:`sampler_from_kdiffusion`."""

    sample_fn: Any
    process: AbstractProcess
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not callable(self.sample_fn):
            raise TypeError(f"sample_fn must be a k-diffusion sampler (model, x, sigmas, ...); got {self.sample_fn!r}")
        if not isinstance(self.process, AbstractProcess):
            raise TypeError(f"process must be an AbstractProcess; got {type(self.process).__name__}")

    @property
    def name(self) -> str:
        return f"k-diffusion {getattr(self.sample_fn, '__name__', 'sampler')}"

    def __call__(self, score: Any, x_init: Array, ts: Any, rng: Any = None) -> Array:
        """Run ``sample_fn`` from ``x_init`` at ``ts[0]`` on ``sigmas = sigma(ts) / alpha(ts)``; ``x`` at ``ts[-1]``."""
        x_init, ts = check_sampler_call(score, x_init, ts)
        if is_empty(x_init):
            return x_init
        torch = torch_module("sampler_from_kdiffusion")
        x = to_torch(x_init, "sampler_from_kdiffusion")
        a0, _ = _levels(self.process, float(ts[0]))
        sigmas = torch.tensor([_levels(self.process, float(t))[1] if t > 0 else 0.0 for t in ts], dtype=x.dtype)
        model = denoiser_for_kdiffusion(score, self.process)
        gen = torch_generator(rng, "cpu", "sampler_from_kdiffusion")
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # k-diffusion draws from torch's global generator
            torch.manual_seed(int(torch.randint(0, 2**62, (), generator=gen)))
            out = self.sample_fn(model, x / a0, sigmas.to(x.device), disable=True, **self.options)
        a1 = self.process.alpha(float(ts[-1]))
        return like_input(out * a1, x_init)


def sampler_from_kdiffusion(sample_fn: Any, process: AbstractProcess, **options: Any) -> KDiffusionSampler:
    r"""A k-diffusion sampler (``sample_euler``, ``sample_heun``, ``sample_dpmpp_2m``, ...) as a sampler of the kit.

    ``sampler(score, x_init, ts, rng=None) -> x`` calls ``sample_fn(denoiser, x_init / alpha(ts[0]),
    sigmas, disable=True, **options)`` with ``sigmas = sigma(ts) / alpha(ts)`` (the noise levels of
    the grid, ``0`` where ``ts`` ends at ``t = 0``: k-diffusion's grids end with ``sigma = 0``, and
    its Heun sampler takes an Euler step there, its DPM-Solver++(2M) a first-order step) and the
    :func:`denoiser_for_kdiffusion` of ``score``, and returns ``alpha(ts[-1])`` times its result.
    k-diffusion's samplers run on the grid they are given, so no ``time_grid`` is needed.

    Randomness: k-diffusion draws its noise from torch's global generator (``torch.randn_like``;
    its Euler and Heun samplers draw even when ``s_churn = 0``); the call runs inside
    ``torch.random.fork_rng`` seeded from ``rng``, so the global state is left as it was and the same
    ``rng`` gives the same result.  Obtain ``sample_fn`` from :func:`import_kdiffusion_sampling`.
    """
    return KDiffusionSampler(sample_fn, process, dict(options))
