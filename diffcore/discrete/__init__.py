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
from diffcore.discrete._posterior import (
    AbstractTokenObservation,
    InpaintingObservation,
    TableObservation,
    TokenChannelObservation,
    anchored_posterior_sample,
    empirical_tv,
    exact_posterior,
    guided_denoiser,
    masked_sample,
    masked_sample_law,
    naive_posterior_sample,
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
from diffcore.discrete._samplers import (
    DISCRETE_SOLVERS,
    DiscreteSolution,
    EulerStep,
    GillespieSampler,
    MaskedUnmasking,
    TauLeaping,
    TweedieStep,
    discrete_sample,
    discrete_sampler_law,
)

__all__ = [
    "DISCRETE_SOLVERS",
    "AbsorbingDiffusion",
    "AbstractCTMCDiffusion",
    "AbstractTokenObservation",
    "DiscreteSolution",
    "EulerStep",
    "ExactDenoiser",
    "FactorizedLaw",
    "GillespieSampler",
    "InpaintingObservation",
    "MarkovChainLaw",
    "MarkovDiffusion",
    "MaskedUnmasking",
    "RateSchedule",
    "TableLaw",
    "TableObservation",
    "TauLeaping",
    "TokenChannelObservation",
    "TweedieStep",
    "UniformDiffusion",
    "anchored_posterior_sample",
    "check_tokens",
    "concrete_score",
    "concrete_score_from_denoiser",
    "constant_schedule",
    "discrete_sample",
    "discrete_sampler_law",
    "empirical_tv",
    "enumerate_states",
    "exact_denoiser",
    "exact_posterior",
    "exact_posterior_x0",
    "geometric_schedule",
    "guided_denoiser",
    "linear_schedule",
    "log_linear_schedule",
    "masked_sample",
    "masked_sample_law",
    "naive_posterior_sample",
    "reverse_generator",
    "reverse_rates",
    "reverse_rates_from_denoiser",
    "state_index",
]
