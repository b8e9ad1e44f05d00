r"""The correctness kit: check your own sampler, score model, likelihood or schedule against exact answers.

diffcore knows the exact answer on analytic problems — Gaussian and Gaussian-mixture data under any
forward process have closed-form marginals, scores, log-densities and probability-flow solutions —
so code written elsewhere can be run on them with the exact model and judged by what it should
have produced, not by how good its samples look.

The sampler protocol
--------------------
A sampler is a callable ``sampler(score, x_init, ts, rng=None) -> x``: it integrates from
``ts[0]`` down to ``ts[-1]`` (a decreasing float64 grid; ``ts[-1]`` may be 0) with ``score`` a
diffcore-convention score ``(x, t) -> grad log p_t(x)`` (``t = 0`` data, ``t = 1`` noise; ``t`` a
float or an ``(n,)`` array), from ``x_init`` ``(n, d)`` at ``ts[0]``, and returns an array of
``x_init``'s type and shape.  A sampler that picks its own times (a diffusers scheduler) also has
``sampler.time_grid(steps) -> ts``.  Other conventions (eps models, timesteps 0..999, flow matching
with data at ``t = 1``) come in through :mod:`diffcore.interop`; a one-step function through
:func:`solver_from_step`; any diffcore method through :func:`sampler_from_solver`.

What to call
------------
* :func:`check_sampler` — pathwise error against the DOP853 reference from the same ``x_init``,
  measured vs declared order, error per NFE against diffcore's methods of that order, the times
  the model is evaluated at (off-by-one, dropped last step) and an endpoint probe; ``kind="sde"``:
  the output law against the exact marginal of a Gaussian problem.
* :func:`check_score_model`, :func:`check_likelihood`, :func:`check_schedule`,
  :func:`check_graph_score` — a score's relative ``L^2(p_t)`` error and array contract, a
  log-density estimator's error (with its standard errors), a schedule's self-consistency (the
  Fokker–Planck residual, a decreasing log-SNR), a graph score's permutation equivariance.
* :class:`Problem` — the named problems (``"P1"``, ``"P2"``, ``"skewed"``, ``"mixture16"``,
  ``"graphs"``) with their process, exact fields, marginals and reference flow.

Every check returns a :class:`CheckReport` (:class:`SamplerReport` for samplers): ``.passed``, the
symptoms in ``.messages``, observations in ``.notes``, the numbers in ``.details``;
``assert report.passed, report`` prints all of it.  :mod:`diffcore.testing.strategies` has the
hypothesis strategies of diffcore's own property tests; the pytest plugin (installed with diffcore)
gives the fixture ``diffcore_problem``.  The oracles underneath — :func:`reference_ode_solution`,
:func:`propagate_gaussian_law`, :func:`fit_order`, :func:`symmetrise` — are public too.

Example
-------
>>> import diffcore as dc
>>> from diffcore.testing import check_sampler, sampler_from_solver
>>> def off_by_one(score, x, ts, rng=None):  # Euler with the model called at the next grid time
...     p = dc.VPSDE()
...     for t0, t1 in zip(ts[:-1], ts[1:]):
...         x = x + (t1 - t0) * (p.drift_coef(t1) * x - 0.5 * p.diffusion_squared(t1) * score(x, t1))
...     return x
>>> report = check_sampler(off_by_one, "P1", declared_order=1)
>>> report.passed, "off by one" in report.messages[0]
(False, True)
"""

from diffcore.testing._check_models import check_graph_score, check_likelihood, check_schedule, check_score_model
from diffcore.testing._check_sampler import check_sampler
from diffcore.testing._oracles import fit_order, propagate_gaussian_law, reference_ode_solution
from diffcore.testing._problems import (
    PROBLEMS,
    Problem,
    anisotropic_mixture,
    circle_mixture,
    random_gaussian,
    skewed_mixture_2d,
)
from diffcore.testing._protocol import SolverSampler, sampler_from_solver, solver_from_step
from diffcore.testing._report import CheckReport, SamplerReport
from diffcore.testing._symmetry import Symmetrised, rotations, symmetrise

__all__ = [
    "PROBLEMS",
    "CheckReport",
    "Problem",
    "SamplerReport",
    "SolverSampler",
    "Symmetrised",
    "anisotropic_mixture",
    "check_graph_score",
    "check_likelihood",
    "check_sampler",
    "check_schedule",
    "check_score_model",
    "circle_mixture",
    "fit_order",
    "propagate_gaussian_law",
    "random_gaussian",
    "reference_ode_solution",
    "rotations",
    "sampler_from_solver",
    "skewed_mixture_2d",
    "solver_from_step",
    "symmetrise",
]
