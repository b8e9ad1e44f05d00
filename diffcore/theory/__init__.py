"""Theory you can measure: the score-error KL bound, exact output laws and statistical rates.

Exact computations behind the book chapter "Theory you can measure" (``book/theory.md``):
the law of the reverse SDE driven by an affine score, propagated exactly through the moment
equations of a linear SDE (:func:`reverse_sde_law`); both sides of the bound
``KL(p_0 || phat_0) <= KL(p_1 || pi) + 1/2 int g^2 E|s_theta - s|^2 dt`` (:func:`score_error_bound`)
and the KL between the path laws on a time grid (:func:`grid_path_kl`); the exact score of the
smoothed empirical measure, the score a network converges to when it fits its training set
perfectly (:class:`EmpiricalScore`, :func:`empirical_marginal`); and the exact 1-D Wasserstein
distance between Gaussian mixtures (:func:`w2_1d`).
"""

from diffcore.theory._bound import ScoreErrorBound, grid_path_kl, reverse_sde_law, score_error_bound
from diffcore.theory._empirical import EmpiricalScore, empirical_marginal, nearest_distance, w2_1d
from diffcore.theory._gaussian import gaussian_kl

__all__ = [
    "EmpiricalScore",
    "ScoreErrorBound",
    "empirical_marginal",
    "gaussian_kl",
    "grid_path_kl",
    "nearest_distance",
    "reverse_sde_law",
    "score_error_bound",
    "w2_1d",
]
