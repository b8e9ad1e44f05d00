"""Discrete-state diffusion, exact by enumeration: the discrete laboratory.

Token sequences of length ``L`` over ``V`` codes (plus a mask for absorbing noise), exact data laws
on them (:class:`TableLaw`, :class:`MarkovChainLaw`, :class:`FactorizedLaw`), forward processes as
continuous-time Markov chains with per-token generator ``beta(t) Q`` (:class:`UniformDiffusion`,
:class:`AbsorbingDiffusion`, :class:`MarkovDiffusion`; Austin et al. 2021, Campbell et al. 2022),
and the exact reverse quantities — denoiser, concrete score, reverse rates — by enumeration
(Lou et al. 2024; Sahoo et al. 2024; Shi et al. 2024; Ou et al. 2024).

Arrays are NumPy (int64 tokens, float64 probabilities); torch tensors given as tokens are brought
to the host, and results are NumPy.
"""

from diffcore.discrete._exact import (
    ExactDenoiser,
    concrete_score,
    concrete_score_from_denoiser,
    exact_denoiser,
    exact_posterior_x0,
    reverse_generator,
    reverse_rates,
    reverse_rates_from_denoiser,
)
from diffcore.discrete._laws import (
    FactorizedLaw,
    MarkovChainLaw,
    TableLaw,
    check_tokens,
    enumerate_states,
    state_index,
)
from diffcore.discrete._processes import (
    AbsorbingDiffusion,
    AbstractCTMCDiffusion,
    MarkovDiffusion,
    RateSchedule,
    UniformDiffusion,
    constant_schedule,
    geometric_schedule,
    linear_schedule,
    log_linear_schedule,
)

__all__ = [
    "AbsorbingDiffusion",
    "AbstractCTMCDiffusion",
    "ExactDenoiser",
    "FactorizedLaw",
    "MarkovChainLaw",
    "MarkovDiffusion",
    "RateSchedule",
    "TableLaw",
    "UniformDiffusion",
    "check_tokens",
    "concrete_score",
    "concrete_score_from_denoiser",
    "constant_schedule",
    "enumerate_states",
    "exact_denoiser",
    "exact_posterior_x0",
    "geometric_schedule",
    "linear_schedule",
    "log_linear_schedule",
    "reverse_generator",
    "reverse_rates",
    "reverse_rates_from_denoiser",
    "state_index",
]
