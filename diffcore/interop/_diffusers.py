r"""diffusers-convention models both ways, the final denoising step, and a scheduler as a sampler.

A diffusers model is ``model(x, timestep) -> eps | v | x0`` for the variance-preserving variable
``x = sqrt(abar) x_0 + sqrt(1 - abar) eps`` at the level ``abar = alphas_cumprod[timestep]``
(``prediction_type`` ``"epsilon"``, ``"v_prediction"`` with ``v = sqrt(abar) eps - sqrt(1 - abar) x_0``
(Salimans and Ho 2022, eq. 13), or ``"sample"``).  diffcore's time of timestep ``k`` is
``t = (k + 1)/N`` (:mod:`diffcore.interop._discrete`).
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import is_torch_array

from diffcore._array import as_array, broadcast_time, is_scalar_time, namespace
from diffcore._parametrization import convert
from diffcore._validation import Model, check_array, check_choice, check_steps, check_time_for
from diffcore.interop._common import check_sampler_call, is_empty, like_input, to_torch, torch_generator, torch_module
from diffcore.interop._discrete import DiscreteVP, process_from_diffusers
from diffcore.processes import AbstractProcess

__all__ = [
    "PREDICTION_TYPES",
    "DiffusersModel",
    "DiffusersSampler",
    "DiffusersScore",
    "denoise_from_diffusers",
    "model_for_diffusers",
    "sampler_from_diffusers",
    "score_from_diffusers",
]

Array = Any

#: diffusers' ``prediction_type`` -> diffcore's prediction name (:data:`diffcore.PREDICTIONS`)
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
#: a timestep within this of an integer reaches the model as that integer (int64)
_SNAP = 1e-6


def _prediction_type(prediction_type: Any, scheduler: Any) -> str:
    if prediction_type is None:
        prediction_type = getattr(getattr(scheduler, "config", None), "prediction_type", "epsilon")
    return check_choice("prediction_type", prediction_type, tuple(PREDICTION_TYPES))


def _timestep_arg(x: Array, k: Any) -> Any:
    """The timestep ``k`` (float or array) as a model receives it: integers as int64, tensors for torch ``x``."""
    if is_scalar_time(k):
        near = round(k)
        value = int(near) if abs(k - near) <= _SNAP else float(k)
        if is_torch_array(x):
            torch = torch_module("score_from_diffusers")
            dtype = torch.int64 if isinstance(value, int) else x.dtype
            return torch.tensor(value, dtype=dtype, device=x.device)
        return value
    xp = namespace(k)
    near = xp.round(k)
    return xp.astype(near, xp.int64) if bool(xp.all(xp.abs(k - near) <= _SNAP)) else k


@dataclass(frozen=True, eq=False)
class DiffusersScore:
    r"""A diffusers-convention model as a diffcore score: :func:`score_from_diffusers`."""

    model: Any
    process: DiscreteVP
    prediction_type: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Model.of(self.model, "model"))

    def __call__(self, x: Array, t: Any) -> Array:
        x = check_array("x", x, min_ndim=2, finite=False)
        t = check_time_for(t, x)
        k = t * self.process.num_train_timesteps - 1.0
        out = self.model(x, _timestep_arg(x, k))
        return convert(out, x, t, self.process, source=PREDICTION_TYPES[self.prediction_type], target="score")


def score_from_diffusers(model: Any, scheduler: Any, prediction_type: str | None = None) -> DiffusersScore:
    r"""A diffusers-convention model ``model(x, timestep)`` as a diffcore score ``(x, t) -> grad log p_t(x)``.

    The time ``t`` reaches the model as the timestep ``k = N t - 1`` (fractional between the
    levels; within ``1e-6`` of an integer it is passed as that integer, int64, as diffusers'
    schedulers pass theirs; a 0-d tensor for torch ``x`` and a float ``t``, an ``(n,)`` array for
    an array ``t``).  The output is converted by :func:`diffcore.convert` on the process
    :func:`~diffcore.interop.process_from_diffusers` ``(scheduler)`` (``.process`` of the result),
    whose ``alpha(t_k)^2`` is ``alphas_cumprod[k]`` exactly:

    .. math:: s = -\frac{\varepsilon}{\sigma_t}, \qquad
              s = -\frac{x - \alpha_t x_0}{\sigma_t^2}, \qquad
              s = -\frac{\sigma_t x + \alpha_t v}{\sigma_t}\ (\alpha_t^2 + \sigma_t^2 = 1)

    for ``prediction_type`` ``"epsilon"``, ``"sample"``, ``"v_prediction"`` (default: the
    scheduler's ``config.prediction_type``).  Sample with ``diffcore.sample(score.process, score, ...)``.

    Raises
    ------
    ValueError for an unknown ``prediction_type`` or a scheduler with invalid ``alphas_cumprod``;
    ValueError / TypeError at the call when the model returns another shape or array type than ``x``.
    """
    process = process_from_diffusers(scheduler)
    return DiffusersScore(model, process, _prediction_type(prediction_type, scheduler))


def _time_of_level(process: AbstractProcess, alpha_bar: Any) -> Any:
    """The time of ``process`` with the log-SNR of the level ``alpha_bar`` (a float, or a NumPy array)."""
    lo, hi = process.log_snr(1.0), process.log_snr(0.0)
    ab = np.asarray(alpha_bar, dtype=np.float64)
    with np.errstate(divide="ignore"):
        lam = np.log(ab) - np.log1p(-ab)  # +inf for abar = 1 (sigma = 0): t = 0
    if float(np.min(lam)) < lo - 1e-4:  # float32 levels round the end of a schedule by ~1e-6 in log-SNR
        low = float(np.min(lam))
        raise ValueError(
            f"the noise level abar = {1 / (1 + math.exp(-low))} (log-SNR {low}) lies beyond the end of "
            f"{type(process).__name__} (log_snr(1) = {lo}): build the scheduler with "
            f"trained_betas=diffusers_betas(process), or use process_from_diffusers(scheduler)"
        )
    zero = lam >= hi
    t = np.where(zero, 0.0, process.log_snr_inverse(np.where(zero, lo, np.clip(lam, lo, hi))))
    return float(t) if t.ndim == 0 else t


def _running_sigma(scheduler: Any, timestep: Any) -> float | None:
    """The noise level ``sigma = sqrt((1 - abar)/abar)`` a sigma-based scheduler is at, mid-run; else ``None``."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None or getattr(scheduler, "num_inference_steps", None) is None:
        return None
    index = getattr(scheduler, "step_index", None)
    if index is None:
        finder = getattr(scheduler, "index_for_timestep", None)
        if finder is None:
            return None
        index = finder(timestep)
    return float(sigmas[int(index)])


@dataclass(frozen=True, eq=False)
class DiffusersModel:
    """A diffcore score as a diffusers-convention model: :func:`model_for_diffusers`."""

    score: Any
    process: AbstractProcess
    scheduler: Any
    prediction_type: str
    _table: DiscreteVP = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.process, AbstractProcess):
            raise TypeError(f"process must be an AbstractProcess; got {type(self.process).__name__}")
        object.__setattr__(self, "score", Model.of(self.score, "score"))
        object.__setattr__(self, "_table", process_from_diffusers(self.scheduler))

    def alpha_bar(self, timestep: Any) -> Any:
        """The level ``abar`` asked about: the scheduler's running sigma, else ``alphas_cumprod[timestep]``."""
        sigma = _running_sigma(self.scheduler, timestep)
        if sigma is not None:
            return 1.0 / (1.0 + sigma**2)
        k = timestep.detach().cpu().double().numpy() if hasattr(timestep, "detach") else np.asarray(timestep, float)
        if k.ndim == 0 or np.all(k == k.reshape(-1)[0]):
            k0 = float(k.reshape(-1)[0])
            if k0 == round(k0) and 0 <= k0 < self._table.num_train_timesteps:  # a level: the table itself
                return float(self._table.alphas_cumprod[int(k0)])
            return float(self._table.alpha(self._table.timestep_to_time(k0))) ** 2
        return np.asarray(self._table.alpha(self._table.timestep_to_time(k)), dtype=np.float64) ** 2

    def __call__(self, x: Array, timestep: Any, *args: Any, **kwargs: Any) -> Array:
        x = check_array("x", x, min_ndim=2, finite=False)
        ab = self.alpha_bar(timestep)
        t = _time_of_level(self.process, ab)
        if not is_scalar_time(ab):  # one level per point: (n,) arrays of x's library
            ab, t = as_array(ab, x), as_array(t, x)
        a_d, s_d = broadcast_time(ab**0.5, x), broadcast_time((1 - ab) ** 0.5, x)
        a, s = broadcast_time(self.process.alpha(t), x), broadcast_time(self.process.sigma(t), x)
        x_t = x * (a / a_d)  # the same point in the process's scaling (factor 1 for a VP process)
        score = self.score(x_t, t)
        eps = -s * score
        if self.prediction_type == "epsilon":
            return eps
        x0 = (x_t + (s * s) * score) / a
        return x0 if self.prediction_type == "sample" else a_d * eps - s_d * x0


def model_for_diffusers(
    score: Any, process: AbstractProcess, scheduler: Any, prediction_type: str | None = None
) -> DiffusersModel:
    r"""A diffcore score of ``process`` as a diffusers-convention model ``model(x, timestep) -> eps | v | x0``.

    The noise level is read from the scheduler itself: while a sigma-based scheduler runs
    (``DPMSolverMultistepScheduler``, ``UniPCMultistepScheduler``, ``EulerDiscreteScheduler``, ...:
    after ``set_timesteps``) its current ``sigmas[step_index]``, ``abar = 1/(1 + sigma^2)``;
    otherwise (``DDIMScheduler``, or outside a run) ``alphas_cumprod[timestep]`` (fractional
    timesteps through :class:`~diffcore.interop.DiscreteVP`).  That level is mapped to the time
    ``t`` of ``process`` with the same log-SNR, ``lambda(t) = log(abar / (1 - abar))``
    (``process.log_snr_inverse``), and with ``x_t = x alpha_t / sqrt(abar)`` (the same point in
    the process's scaling; identical for a VP process)

    .. math:: \varepsilon = -\sigma_t s(x_t, t), \quad x_0 = \frac{x_t + \sigma_t^2 s}{\alpha_t},
              \quad v = \sqrt{\bar\alpha}\,\varepsilon - \sqrt{1 - \bar\alpha}\, x_0 .

    With the exact score this is the exact model of *whatever* level the scheduler uses (its
    float32 rounding, Karras or interpolated sigmas included): the scheduler's own algorithm is
    then all that is checked.  Extra arguments of the call (``encoder_hidden_states``, ...) are
    ignored.  ``prediction_type`` defaults to the scheduler's ``config.prediction_type``.

    Raises
    ------
    ValueError when the level lies beyond ``t = 1`` of ``process`` (a scheduler built for another
    schedule: use ``trained_betas=diffusers_betas(process)``), for an unknown ``prediction_type``.
    """
    return DiffusersModel(score, process, scheduler, _prediction_type(prediction_type, scheduler))


def denoise_from_diffusers(model: Any, x: Array, timestep: Any, scheduler: Any, prediction_type: str | None = None):
    r"""The final denoising step with a diffusers model: Tweedie's ``E[x_0 | x_t]`` from one model call.

    ``x0 = (x - sqrt(1 - abar_k) eps) / sqrt(abar_k)`` (or ``sqrt(abar) x - sqrt(1 - abar) v``, or
    the output itself for ``"sample"``) at ``abar_k = alphas_cumprod[timestep]`` (Efron 2011;
    Ho et al. 2020, eq. 15).  This is what a multistep scheduler's last step to ``sigma = 0``
    (``final_sigmas_type="zero"``) returns, and what :func:`diffcore.samplers.denoise` computes with
    a diffcore score; ``x`` is ``(n, ...)``, the result is shaped like ``x``.
    """
    pred = _prediction_type(prediction_type, scheduler)
    process = process_from_diffusers(scheduler)
    x = check_array("x", x, min_ndim=2)
    k = float(timestep.detach().cpu()) if hasattr(timestep, "detach") else float(timestep)
    t = process.timestep_to_time(k)
    out = Model.of(model, "model")(x, _timestep_arg(x, k))
    return convert(out, x, t, process, source=PREDICTION_TYPES[pred], target="x0")


@dataclass(frozen=True, eq=False)
class DiffusersSampler:
    """A diffusers scheduler's loop in the correctness kit's sampler protocol: :func:`sampler_from_diffusers`."""

    scheduler: Any
    process: AbstractProcess
    prediction_type: str | None = None
    step_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.process, AbstractProcess):
            raise TypeError(f"process must be an AbstractProcess; got {type(self.process).__name__}")
        process_from_diffusers(self.scheduler)  # checks alphas_cumprod (and refuses flow sigmas)
        _prediction_type(self.prediction_type, self.scheduler)

    @property
    def name(self) -> str:
        return f"diffusers {type(self.scheduler).__name__}"

    def _fresh(self, steps: int) -> Any:
        s = copy.deepcopy(self.scheduler)
        pred = _prediction_type(self.prediction_type, s)
        if pred != s.config.prediction_type:
            s = type(s).from_config(s.config, prediction_type=pred)
        s.set_timesteps(steps)
        return s

    def _levels(self, s: Any) -> list[float]:
        """The levels ``abar`` the scheduler steps through: one per step start, and the end."""
        table = process_from_diffusers(s).alphas_cumprod
        if getattr(s, "sigmas", None) is not None:
            raw = [float(v) for v in s.sigmas.double()]
            # second-order schedulers (HeunDiscreteScheduler: order 2) list each interior level twice, one per
            # stage; every other scheduler takes one step per pair of consecutive levels, whatever its
            # (rounded) timesteps say: two levels may share a timestep, the model reads the running sigma
            heun = getattr(s, "order", 1) == 2
            sig = [v for i, v in enumerate(raw) if i == 0 or v != raw[i - 1]] if heun else raw
            if len(set(sig)) != len(sig):
                raise ValueError(
                    f"{type(s).__name__} with {len(sig) - 1} steps has a zero-length step: its noise levels {raw} "
                    f"repeat (e.g. timestep_spacing='linspace' ends at timestep 0 and final_sigmas_type='sigma_min' "
                    f"adds the same level again); use timestep_spacing='trailing'"
                )
            return [1.0 / (1.0 + v * v) for v in sig]
        ks = [int(k) for k in s.timesteps]
        jump = s.config.num_train_timesteps // s.num_inference_steps
        for i in range(len(ks) - 1):
            if ks[i] - jump != ks[i + 1]:
                raise ValueError(
                    f"{type(s).__name__} with {len(ks)} steps does not chain: its step from timestep {ks[i]} "
                    f"ends at {ks[i] - jump}, but the next step starts at {ks[i + 1]} "
                    f"(timestep_spacing={s.config.timestep_spacing!r}); choose a number of steps that divides "
                    f"num_train_timesteps = {s.config.num_train_timesteps}"
                )
        prev = ks[-1] - jump
        end = float(table[prev]) if prev >= 0 else float(s.final_alpha_cumprod)
        return [float(table[k]) for k in ks] + [end]

    def time_grid(self, steps: int) -> np.ndarray:
        """The grid of diffcore times this scheduler runs with ``steps`` steps (decreasing; may end at 0)."""
        steps = check_steps(steps)
        ts = np.array([_time_of_level(self.process, ab) for ab in self._levels(self._fresh(steps))])
        if not np.all(np.diff(ts) < 0):
            raise ValueError(
                f"{self.name} with {steps} steps has a zero-length step (a noise level repeats): times {ts.tolist()}; "
                f"for DDIMScheduler use timestep_spacing='trailing' or set_alpha_to_one=True"
            )
        return ts

    def __call__(self, score: Any, x_init: Array, ts: Any, rng: Any = None) -> Array:
        """Run the scheduler from ``x_init`` at ``ts[0]`` with the exact model of ``score``; ``ts`` must be its grid."""
        x_init, ts = check_sampler_call(score, x_init, ts)
        if is_empty(x_init):
            return x_init
        own = self.time_grid(len(ts) - 1)
        if not np.allclose(ts, own, rtol=0.0, atol=1e-12):
            raise ValueError(
                f"{self.name} runs on its own grid; use ts = sampler.time_grid({len(ts) - 1}) = {own.tolist()}, "
                f"got {ts.tolist()}"
            )
        torch = torch_module("sampler_from_diffusers")
        s = self._fresh(len(ts) - 1)
        levels = self._levels(s)
        model = DiffusersModel(score, self.process, s, s.config.prediction_type)
        x = to_torch(x_init, "sampler_from_diffusers")
        first = s.timesteps[0]
        probe = s.scale_model_input(torch.ones(1, dtype=torch.float64), first)
        ve = not bool(torch.all(probe == 1.0))  # Euler, Heun, ...: the state is x / sqrt(abar)
        x = x * (math.sqrt(levels[0]) / self.process.alpha(float(ts[0])))
        if ve:
            x = x / math.sqrt(levels[0])
        options = dict(self.step_options)
        if "generator" in inspect.signature(s.step).parameters:
            options.setdefault("generator", torch_generator(rng, x.device, "sampler_from_diffusers"))
        with torch.no_grad():
            for timestep in s.timesteps:
                out = model(s.scale_model_input(x, timestep), timestep)
                x = s.step(out, timestep, x, **options).prev_sample
        if ve:
            x = x * math.sqrt(levels[-1])
        x = x * (self.process.alpha(float(ts[-1])) / math.sqrt(levels[-1]))
        return like_input(x.to(dtype=to_torch(x_init, "sampler_from_diffusers").dtype), x_init)


def sampler_from_diffusers(
    scheduler: Any, process: AbstractProcess, *, prediction_type: str | None = None, **step_options: Any
) -> DiffusersSampler:
    r"""A diffusers scheduler as a sampler of the correctness kit: ``sampler(score, x_init, ts, rng=None) -> x``.

    Each call deep-copies ``scheduler``, runs ``set_timesteps(len(ts) - 1)`` and its usual loop
    (``scale_model_input``, the model, ``step``) on the model :func:`model_for_diffusers` makes
    from the diffcore ``score`` of ``process``.  States are mapped between diffcore's ``x_t`` and
    the scheduler's variable: ``x_vp = x_t sqrt(abar) / alpha_t`` (the same point for a VP
    process) and, for schedulers that step ``x_vp / sqrt(abar)`` (detected by a non-trivial
    ``scale_model_input``: ``EulerDiscreteScheduler``, ``HeunDiscreteScheduler``), that variable.

    The scheduler chooses its own timesteps: ``sampler.time_grid(steps)`` is the grid of diffcore
    times it runs (``t`` of each level with the same log-SNR), and a call with another ``ts``
    raises.  With ``final_sigmas_type="zero"`` (the default of the multistep schedulers) or
    ``set_alpha_to_one=True`` (DDIM) the last time is 0: the last step jumps to ``sigma = 0``.
    ``rng`` seeds the ``generator`` of stochastic schedulers' ``step``; ``step_options`` go to
    every ``step`` call (e.g. ``eta=1.0`` for DDIM).  NumPy in, NumPy out; torch keeps its dtype
    and device (diffusers computes some steps in float32: ``DPMSolverMultistepScheduler`` and
    ``EulerDiscreteScheduler`` round the state to float32 in every step).

    ``process`` should be the one the scheduler was built from (``trained_betas=diffusers_betas(process)``)
    or ``process_from_diffusers(scheduler)``; ``prediction_type`` (default: the scheduler's) selects
    the model convention the scheduler is run with.
    """
    return DiffusersSampler(scheduler, process, prediction_type, dict(step_options))
