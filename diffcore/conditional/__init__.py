"""Conditioning: labelled mixtures and guidance, measurements and exact posteriors (inverse problems).

The laboratory where the conditional answer is known exactly: :class:`LabelledMixture` (class
labels on mixture components: exact ``p_t(x | y)``, ``p_t(y | x)`` and their scores at every
time), :class:`TiltedLaw` (what guidance aims at, exactly samplable), measurements
(:class:`LinearGaussianMeasurement`, :class:`SignMeasurement`) with the exact posterior
(:func:`posterior`, :func:`quadrature_posterior`) and the exact noisy-level likelihood score
(:func:`exact_likelihood_score`) that posterior samplers approximate; and the posterior
samplers themselves, each measured against that truth in the book chapter "Inverse problems":
the exact oracle, DPS, Pi-GDM, second-order Tweedie, RED-diff, the twisted diffusion sampler,
the ensemble sampler, FlowChef, null-text inversion and a 3-D slices toy; and
:func:`posterior_report`, which measures any sampler's output against the exact posterior
with standard errors; and the optimal boundary condition of a conditional probability-flow ODE
(:func:`conditional_flow_map`, :func:`optimal_boundary` in closed form, :func:`boundary_search`
as in Ma et al. 2024).
"""

from diffcore.conditional._boundary import (
    BoundaryOptimum,
    BoundarySearch,
    ConditionalFlowMap,
    boundary_search,
    conditional_flow_map,
    optimal_boundary,
)
from diffcore.conditional._flowchef import flowchef
from diffcore.conditional._grid import GridLaw
from diffcore.conditional._guidance import GuidedScore, TiltedLaw, classifier_free_guidance, classifier_guidance
from diffcore.conditional._guided_posterior import (
    DenoiserCovariance,
    PosteriorScore,
    TweedieLikelihoodScore,
    denoiser_covariance,
    dps,
    exact_posterior_sampler,
    pigdm,
    posterior_score,
    second_order_tweedie,
)
from diffcore.conditional._labelled import (
    LabelledMixture,
    exact_classifier,
    exact_classifier_score,
    exact_conditional_score,
)
from diffcore.conditional._measurements import AbstractMeasurement, LinearGaussianMeasurement, SignMeasurement
from diffcore.conditional._metrics import PosteriorReference, PosteriorReport, posterior_reference, posterior_report
from diffcore.conditional._null_text import NullTextInversion, ddim_pivot, null_text_inversion, null_text_sample
from diffcore.conditional._particles import ParticleRun, ensemble_run, ensemble_sampler
from diffcore.conditional._posterior import (
    exact_likelihood_score,
    exact_posterior_covariance,
    posterior,
    quadrature_posterior,
)
from diffcore.conditional._red_diff import red_diff
from diffcore.conditional._slices import slice_posterior, slice_posterior_sampling, slice_prior, slice_score
from diffcore.conditional._twisted import twisted_diffusion_run, twisted_diffusion_sampler

__all__ = [
    "AbstractMeasurement",
    "BoundaryOptimum",
    "BoundarySearch",
    "ConditionalFlowMap",
    "DenoiserCovariance",
    "GridLaw",
    "GuidedScore",
    "LabelledMixture",
    "LinearGaussianMeasurement",
    "NullTextInversion",
    "ParticleRun",
    "PosteriorReference",
    "PosteriorReport",
    "PosteriorScore",
    "SignMeasurement",
    "TiltedLaw",
    "TweedieLikelihoodScore",
    "boundary_search",
    "classifier_free_guidance",
    "classifier_guidance",
    "conditional_flow_map",
    "ddim_pivot",
    "denoiser_covariance",
    "dps",
    "ensemble_run",
    "ensemble_sampler",
    "exact_classifier",
    "exact_classifier_score",
    "exact_conditional_score",
    "exact_likelihood_score",
    "exact_posterior_covariance",
    "exact_posterior_sampler",
    "flowchef",
    "null_text_inversion",
    "null_text_sample",
    "optimal_boundary",
    "pigdm",
    "posterior",
    "posterior_reference",
    "posterior_report",
    "posterior_score",
    "quadrature_posterior",
    "red_diff",
    "second_order_tweedie",
    "slice_posterior",
    "slice_posterior_sampling",
    "slice_prior",
    "slice_score",
    "twisted_diffusion_run",
    "twisted_diffusion_sampler",
]
