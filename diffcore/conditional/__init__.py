"""Conditioning: labelled mixtures and guidance, measurements and exact posteriors (inverse problems).

The laboratory where the conditional answer is known exactly: :class:`LabelledMixture` (class
labels on mixture components: exact ``p_t(x | y)``, ``p_t(y | x)`` and their scores at every
time), :class:`TiltedLaw` (what guidance aims at, exactly samplable), measurements
(:class:`LinearGaussianMeasurement`, :class:`SignMeasurement`) with the exact posterior
(:func:`posterior`, :func:`quadrature_posterior`) and the exact noisy-level likelihood score
(:func:`exact_likelihood_score`) that posterior samplers approximate.
"""

from diffcore.conditional._grid import GridLaw
from diffcore.conditional._guidance import GuidedScore, TiltedLaw, classifier_free_guidance, classifier_guidance
from diffcore.conditional._labelled import (
    LabelledMixture,
    exact_classifier,
    exact_classifier_score,
    exact_conditional_score,
)
from diffcore.conditional._measurements import AbstractMeasurement, LinearGaussianMeasurement, SignMeasurement
from diffcore.conditional._posterior import (
    exact_likelihood_score,
    exact_posterior_covariance,
    posterior,
    quadrature_posterior,
)

__all__ = [
    "AbstractMeasurement",
    "GridLaw",
    "GuidedScore",
    "LabelledMixture",
    "LinearGaussianMeasurement",
    "SignMeasurement",
    "TiltedLaw",
    "classifier_free_guidance",
    "classifier_guidance",
    "exact_classifier",
    "exact_classifier_score",
    "exact_conditional_score",
    "exact_likelihood_score",
    "exact_posterior_covariance",
    "posterior",
    "quadrature_posterior",
]
