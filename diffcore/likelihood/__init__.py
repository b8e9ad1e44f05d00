"""Likelihoods and densities: the probability-flow ODE log-likelihood, the Itô density estimator
and the superposition of models."""

from diffcore.likelihood._bits import BitsPerDim, bits_per_dim, dequantize
from diffcore.likelihood._divergence import divergence
from diffcore.likelihood._gap import TMinGap, t_min_gap
from diffcore.likelihood._ito import ito_log_density
from diffcore.likelihood._ode import AUTO_EXACT_MAX_DIM, HUTCHINSON_PROBES, AugmentedFlow, LogLikelihood, log_likelihood
from diffcore.likelihood._summary import LikelihoodSummary
from diffcore.likelihood._superpose import and_weights, superpose, superposition_weights

__all__: list[str] = [
    "AUTO_EXACT_MAX_DIM",
    "HUTCHINSON_PROBES",
    "AugmentedFlow",
    "BitsPerDim",
    "LikelihoodSummary",
    "LogLikelihood",
    "TMinGap",
    "and_weights",
    "bits_per_dim",
    "dequantize",
    "divergence",
    "ito_log_density",
    "log_likelihood",
    "superpose",
    "superposition_weights",
    "t_min_gap",
]
