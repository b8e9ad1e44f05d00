r"""Adapters between diffcore's conventions and those of diffusers, k-diffusion and flow_matching.

diffcore's one convention (DESIGN.md): time ``t`` in ``[0, 1]``, data at ``t = 0``, prior at
``t = 1``, ``x_t = alpha(t) x_0 + sigma(t) eps``, models ``f(x, t) -> array shaped like x``.
Other libraries' conventions enter only through these tested converters:

* **diffusers** -- discrete timesteps ``k = 0..N-1`` with levels ``alphas_cumprod[k]``, models
  ``model(x, k) -> eps | v | sample``, schedulers: :func:`process_from_diffusers` (the process
  through the levels, ``t_k = (k + 1)/N``), :func:`timestep_to_time`, :func:`time_to_timestep`,
  :func:`diffusers_betas` (the other way: a scheduler for a diffcore process),
  :func:`score_from_diffusers`, :func:`model_for_diffusers`, :func:`denoise_from_diffusers`,
  :func:`sampler_from_diffusers`.
* **k-diffusion / EDM** -- ``x_ve = x / alpha``, ``sigma_ve = sigma / alpha``, a denoiser
  ``D(x_ve, sigma_ve)``, samplers ``sample_*(model, x, sigmas)``: :func:`score_from_kdiffusion`,
  :func:`denoiser_for_kdiffusion`, :func:`sampler_from_kdiffusion`, :func:`import_kdiffusion_sampling`.
* **flow_matching** -- noise at ``s = 0``, data at ``s = 1``, a velocity ``u(x, s)``, ``ODESolver``:
  :func:`velocity_from_flow_matching`, :func:`velocity_for_flow_matching`,
  :func:`sampler_from_flow_matching`, :func:`flow_log_likelihood`.

The ``sampler_from_*`` functions return objects in the sampler protocol of the correctness kit
(:mod:`diffcore.testing`): ``sampler(score, x_init, ts, rng=None) -> x`` with a diffcore score,
``x_init`` of shape ``(n, d)`` at ``ts[0]`` and a decreasing grid ``ts`` (``ts[-1]`` may be 0 for
a final denoising jump); NumPy in, NumPy out.  A diffusers scheduler chooses its own timesteps:
its sampler has ``time_grid(steps)``.

Where the libraries' algorithms coincide with diffcore's (same numbers up to rounding; tested in
``tests/test_interop.py``): diffusers' ``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
solver_order=2, solver_type="midpoint")`` is ``dpm_solver_pp_2m`` on ``sampler.time_grid(steps)``
(with ``lower_order_final`` the last step is first order: ``DPMSolverPP2M(first_order_below=...)``;
with ``final_sigmas_type="zero"`` the last step is Tweedie's denoiser at the last positive time);
``DDIMScheduler`` (``eta = 0``) and ``EulerDiscreteScheduler`` are ``ddim``; ``HeunDiscreteScheduler``
is ``edm_heun``; k-diffusion's ``sample_euler`` is ``ddim``, ``sample_heun`` is ``edm_heun`` and
``sample_dpmpp_2m`` is ``dpm_solver_pp_2m`` on any grid; flow_matching's ``ODESolver`` with
``"euler"`` / ``"heun2"`` / ``"midpoint"`` / ``"rk4"`` on ``1 - ts`` is ``euler`` / ``heun`` / ``midpoint`` /
``rk4_38`` (torchdiffeq's ``rk4`` is Kutta's 3/8 rule).
diffusers rounds to float32 (its tables, and the state in every step of the DPM-Solver and Euler schedulers), so those
agree to float32 rounding only.  ``import diffcore`` imports none of torch, diffusers,
k-diffusion or flow_matching: a function imports what it needs when called
(``pip install 'diffcore[interop]'``).
"""

from diffcore.interop._diffusers import (
    PREDICTION_TYPES,
    DiffusersModel,
    DiffusersSampler,
    DiffusersScore,
    denoise_from_diffusers,
    model_for_diffusers,
    sampler_from_diffusers,
    score_from_diffusers,
)
from diffcore.interop._discrete import (
    DiscreteVP,
    diffusers_betas,
    process_from_diffusers,
    time_to_timestep,
    timestep_to_time,
)
from diffcore.interop._flow_matching import (
    FlowMatchingSampler,
    FlowMatchingVelocity,
    FromFlowMatching,
    flow_log_likelihood,
    sampler_from_flow_matching,
    velocity_for_flow_matching,
    velocity_from_flow_matching,
)
from diffcore.interop._kdiffusion import (
    KDiffusionDenoiser,
    KDiffusionSampler,
    KDiffusionScore,
    denoiser_for_kdiffusion,
    import_kdiffusion_sampling,
    sampler_from_kdiffusion,
    score_from_kdiffusion,
)

__all__ = [
    "PREDICTION_TYPES",
    "DiffusersModel",
    "DiffusersSampler",
    "DiffusersScore",
    "DiscreteVP",
    "FlowMatchingSampler",
    "FlowMatchingVelocity",
    "FromFlowMatching",
    "KDiffusionDenoiser",
    "KDiffusionSampler",
    "KDiffusionScore",
    "denoise_from_diffusers",
    "denoiser_for_kdiffusion",
    "diffusers_betas",
    "flow_log_likelihood",
    "import_kdiffusion_sampling",
    "model_for_diffusers",
    "process_from_diffusers",
    "sampler_from_diffusers",
    "sampler_from_flow_matching",
    "sampler_from_kdiffusion",
    "score_from_diffusers",
    "score_from_kdiffusion",
    "time_to_timestep",
    "timestep_to_time",
    "velocity_for_flow_matching",
    "velocity_from_flow_matching",
]
