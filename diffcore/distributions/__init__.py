"""Analytic data (Gaussians, Gaussian mixtures) and their exact laws under every process."""

from diffcore.distributions._marginal import ExactField, exact_denoiser, exact_log_prob, exact_score, marginal
from diffcore.distributions._mixture import Gaussian, GaussianMixture

__all__ = ["ExactField", "Gaussian", "GaussianMixture", "exact_denoiser", "exact_log_prob", "exact_score", "marginal"]
