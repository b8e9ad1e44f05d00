"""Contracts at the boundary: the public API walked with malformed inputs, table-driven.

Every public callable of ``diffcore``, ``diffcore.training``, ``diffcore.testing``,
``diffcore.graphs`` and ``diffcore.interop`` has a :class:`Row` in :data:`ROWS`: a call with valid
arguments and the *kind* of each argument it checks (points, a model, a time, a count, ...).
:data:`VARIANTS` lists, for each kind, the malformed values a careless or unlucky user passes and what must happen:

* a ``TypeError``/``ValueError`` whose message names the argument (``naming``), or
* a correct result for a valid edge case: integer or boolean points give what the same points
  as floats give (``same``); an empty batch gives an empty result (``empty``); NaN in a row of a
  per-point function gives NaN in exactly that row and the other rows unchanged (``rows``).

A new public function gets the same treatment by adding one row; :func:`test_every_public_name_is_covered`
fails until it has one (or an entry in :data:`EXEMPT` that says why it takes no input to check).
The rules themselves are written once, in ``diffcore/_validation.py``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

import networkx as nx
import numpy as np
import pytest
import torch

import diffcore as dc
import diffcore.bridges as dbr
import diffcore.conditional as dcc
import diffcore.discrete as dd
import diffcore.flowmaps as dfm
import diffcore.geometry as dgeo
import diffcore.graphs as dg
import diffcore.interop as di
import diffcore.testing as dt
import diffcore.theory as dct
import diffcore.training as dtr

# -- the problem every row works on ---------------------------------------------------------------
VP = dc.VPSDE()
MR = dc.MeanRevertingSDE(mu=np.array([0.5, -0.5]))
GM = dc.GaussianMixture(
    np.array([0.4, 0.6]), np.array([[-1.0, 0.0], [1.0, 0.5]]), np.stack([np.eye(2), 0.5 * np.eye(2)])
)
G2 = dc.Gaussian(np.array([0.5, -0.5]), np.array([[1.0, 0.3], [0.3, 0.8]]))
SCORE = dc.exact_score(VP, GM)
RF = dc.AffineProcess(lambda t: 1 - t, lambda t: t)  # the rectified-flow path: alpha(1) = 0
MR_SCORE = dc.exact_score(MR, GM)
X = np.array([[0.3, -1.2], [1.5, 0.4], [-0.7, 0.9], [2.0, -0.2], [-1.1, -0.6]])
LINEAR = dc.LinearInterpolant()
FIELDS = dc.interpolant_fields(LINEAR, dc.Gaussian(np.zeros(2), np.eye(2)), GM)
SYSTEM = dg.GraphSDE(dc.VPSDE(), dc.VPSDE())
LAB = dg.GraphLaboratory.small()
GX, _GA, GMASK = LAB.sample(3, rng=0)
GA = dg.quantize(_GA, 0.5, GMASK)  # 0/1 adjacencies: what the graph statistics take
GSCORE = LAB.exact_score(SYSTEM)


def _tensor(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


TX = _tensor(X)
LAB_TEMPLATES = [
    (np.full((3, 1), 1.0), np.ones((3, 3)) - np.eye(3)),
    (np.full((3, 1), -1.0), np.diag([1.0, 1.0], 1) + np.diag([1.0, 1.0], -1)),
]


def _lab_graphs(k: int, rng: Any) -> Any:
    _, A, mask = LAB.sample(k, rng)
    return dg.quantize(A, 0.5, mask), mask


def _dsm(model: Any, batch: Any, rng: Any = None) -> Any:
    return dtr.dsm_loss(model, batch, VP, rng)


torch.manual_seed(0)
NET = dtr.MLPField(2, width=8, depth=1, rng=0, dtype=torch.float64)
GNET = dtr.GraphScoreNet(SYSTEM, LAB.n_features, width=8, depth=1, rng=0, dtype=torch.float64)


# -- rows ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Row:
    """One public callable: how to call it with valid arguments, and the kind of each checked argument.

    ``call(**args)`` makes the call; ``kinds`` maps argument names to a key of :data:`VARIANTS`;
    ``names`` maps an argument to the word its error messages use when that is not the argument's
    own name (e.g. the second score of ``superpose`` is ``scores[1]``).  ``out`` picks the per-point
    output of a result (first axis = the points), ``None`` when the result is not per point.
    ``nan`` and ``empty`` say what NaN in a row, and a batch of no points, must give:
    ``"rows"``/``"empty"`` (a correct result) or ``"error"`` (a ``ValueError`` naming the argument).
    """

    name: str
    call: Callable[..., Any]
    args: dict[str, Any]
    kinds: dict[str, str]
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    out: Callable[[Any], Any] | None = lambda r: r
    nan: str = "error"
    empty: str = "empty"

    @property
    def id(self) -> str:
        return self.name.removeprefix("diffcore.")


def _x(r: Any) -> Any:
    return r.x


def _value(r: Any) -> Any:
    return r.value


ROWS: list[Row] = []


def row(name: str, call: Callable, args: dict, kinds: dict, **kw: Any) -> None:
    ROWS.append(Row(name, call, args, kinds, **kw))


# samplers: one row per solver, on a process that meets its declared requirements
for _method, _cls in dc.SOLVERS.items():
    _shifted = _cls.requires.shift == "required"
    row(
        f"diffcore.sample[{_method}]",
        lambda x_init, score, t_min, steps, rng, _m=_method, _p=(MR if _shifted else VP): dc.sample(
            _p, score, x_init, method=_m, steps=steps, t_min=t_min, rng=rng
        ),
        {"x_init": X, "score": MR_SCORE if _shifted else SCORE, "t_min": 1e-2, "steps": 3, "rng": 0},
        {"x_init": "points", "score": "model", "t_min": "time", "steps": "count", "rng": "rng"},
        out=_x,
    )
row(
    "diffcore.sample[adaptive]",
    lambda x_init, score, rtol: dc.sample(VP, score, x_init, method="adaptive", steps=2, rtol=rtol, atol=1e-4),
    {"x_init": X, "score": SCORE, "rtol": 1e-4},
    {"x_init": "points", "score": "model", "rtol": "positive"},
    out=_x,
)
row(
    "diffcore.integrate",
    lambda dynamics, x_init, ts, solver, rng: dc.integrate(dynamics, x_init, ts, solver, rng),
    {"dynamics": dc.ReverseSDE(VP, SCORE), "x_init": X, "ts": [1.0, 0.5, 0.1], "solver": "euler_maruyama", "rng": 1},
    {"x_init": "points", "ts": "grid", "solver": "choice", "rng": "rng"},
    names={"solver": "method"},
    out=_x,
)
row(
    "diffcore.invert",
    lambda x0, score, steps, method: dc.invert(VP, score, x0, method=method, steps=steps),
    {"x0": X, "score": SCORE, "steps": 3, "method": "ddim"},
    {"x0": "points", "score": "model", "steps": "count", "method": "choice"},
    out=lambda r: r.x,
)
row(
    "diffcore.Requirements",
    lambda shift, noise: dc.Requirements(dynamics=dc.AbstractReverseDynamics, shift=shift, noise=noise),
    {"shift": "forbidden", "noise": "none"},
    {"shift": "choice", "noise": "choice"},
    out=None,
)
row("diffcore.get_solver", lambda method: dc.get_solver(method), {"method": "heun"}, {"method": "choice"}, out=None)
for _cls, _param, _kind in ((dc.Adaptive, "rtol", "positive"), (dc.PredictorCorrector, "snr", "nonnegative")):
    row(f"diffcore.{_cls.__name__}", lambda _c=_cls, **kw: _c(**kw), {_param: 0.1}, {_param: _kind}, out=None)

# dynamics
for _dyn in (dc.ReverseSDE, dc.ProbabilityFlowODE):
    row(
        f"diffcore.{_dyn.__name__}",
        lambda x, t, score, _d=_dyn: _d(VP, score).drift(x, t),
        {"x": X, "t": 0.5, "score": SCORE},
        {"x": "points", "t": "time", "score": "model"},
        nan="rows",
    )
row(
    "diffcore.ForwardSDE",
    lambda x, t: dc.ForwardSDE(VP).drift(x, t),
    {"x": X, "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
row(
    "diffcore.InterpolantODE",
    lambda x, t, velocity: dc.InterpolantODE(velocity).drift(x, t),
    {"x": X, "t": 0.5, "velocity": FIELDS.velocity},
    {"x": "points", "t": "time", "velocity": "model"},
    nan="rows",
)
row(
    "diffcore.InterpolantSDE",
    lambda x, t, velocity, score, eps: dc.InterpolantSDE(velocity, score, eps=eps).drift(x, t),
    {"x": X, "t": 0.5, "velocity": FIELDS.velocity, "score": FIELDS.score, "eps": 0.5},
    {"x": "points", "t": "time", "velocity": "model", "score": "model", "eps": "nonnegative"},
    nan="rows",
)

# processes
for _proc in (
    VP,
    dc.SubVPSDE(),
    dc.VESDE(),
    dc.CosineVPSDE(),
    MR,
    dc.AffineProcess(lambda t: 1 - t, lambda t: t),
    dc.ResidualDiffusion(y=np.array([0.5, -0.5])),
    dc.ResShift(y=np.array([0.5, -0.5])),
):
    _pn = f"diffcore.{type(_proc).__name__}"
    row(f"{_pn}.alpha", lambda t, _p=_proc: _p.alpha(t), {"t": 0.5}, {"t": "time"}, out=None)
    row(f"{_pn}.diffusion", lambda t, _p=_proc: _p.diffusion(t), {"t": 0.5}, {"t": "time"}, out=None)
    row(
        f"{_pn}.drift",
        lambda x, t, _p=_proc: _p.drift(x, t),
        {"x": X, "t": 0.5},
        {"x": "points", "t": "time"},
        nan="rows",
    )
    row(f"{_pn}.prior_log_prob", lambda x, _p=_proc: _p.prior_log_prob(x), {"x": X}, {"x": "points"}, nan="rows")
    row(
        f"{_pn}.sample_transition",
        lambda x_s, s, t, rng, _p=_proc: _p.sample_transition(x_s, s, t, rng),
        {"x_s": X, "s": 0.2, "t": 0.6, "rng": 0},
        {"x_s": "points", "s": "time", "t": "time", "rng": "rng"},
    )
    row(f"{_pn}.prior_sample", lambda rng, _p=_proc: _p.prior_sample((4, 2), rng), {"rng": 0}, {"rng": "rng"})

# analytic data, marginals and exact fields
for _law in (GM, G2):
    _ln = f"diffcore.{type(_law).__name__}"
    row(f"{_ln}.log_prob", lambda x, _l=_law: _l.log_prob(x), {"x": X}, {"x": "points"}, nan="rows")
    row(f"{_ln}.score", lambda x, _l=_law: _l.score(x), {"x": X}, {"x": "points"}, nan="rows")
    row(
        f"{_ln}.affine",
        lambda alpha, sigma, _l=_law: _l.affine(alpha, sigma),
        {"alpha": 0.5, "sigma": 0.3},
        {"alpha": "real", "sigma": "real"},
        out=None,
    )
    row(f"{_ln}.sample", lambda n, rng, _l=_law: _l.sample(n, rng), {"n": 4, "rng": 0}, {"n": "size", "rng": "rng"})
row(
    "diffcore.GaussianMixture.__init__",
    lambda weights, means, covs: dc.GaussianMixture(weights, means, covs).log_prob(X),
    {"weights": GM.weights, "means": GM.means, "covs": GM.covs},
    {"weights": "array", "means": "array", "covs": "array"},
    out=None,
)
row(
    "diffcore.Gaussian.__init__",
    lambda mean, cov: dc.Gaussian(mean, cov).log_prob(X),
    {"mean": G2.mean, "cov": G2.cov},
    {"mean": "array", "cov": "array"},
    out=None,
)
row("diffcore.marginal", lambda t: dc.marginal(VP, GM, t), {"t": 0.5}, {"t": "time"}, out=None)
for _fn in (dc.exact_score, dc.exact_denoiser, dc.exact_log_prob):
    row(
        f"diffcore.{_fn.__name__}",
        lambda x, t, _f=_fn: _f(VP, GM)(x, t),
        {"x": X, "t": 0.5},
        {"x": "points", "t": "time"},
        nan="rows",
    )
row(
    "diffcore.ExactField",
    lambda x, kind: dc.ExactField(VP, GM, kind)(x, 0.5),
    {"x": X, "kind": "score"},
    {"x": "points", "kind": "choice"},
    nan="rows",
)

# conditioning: labelled mixtures, guidance, measurements, exact posteriors
LM = dcc.LabelledMixture(GM.weights, GM.means, GM.covs, [0, 1])
INPAINT = dcc.LinearGaussianMeasurement.inpainting(2, [0], noise_std=0.2)
SIGN = dcc.SignMeasurement(np.array([[1.0, 0.5]]), noise_std=0.3)
Y1 = np.array([0.4])
row(
    "diffcore.conditional.LabelledMixture",
    lambda weights, means, covs: dcc.LabelledMixture(weights, means, covs, [0, 1]).mixture.log_prob(X),
    {"weights": GM.weights, "means": GM.means, "covs": GM.covs},
    {"weights": "array", "means": "array", "covs": "array"},
    out=None,
)
row(
    "diffcore.conditional.LabelledMixture.sample",
    lambda n, rng: LM.sample(n, rng),
    {"n": 4, "rng": 0},
    {"n": "size", "rng": "rng"},
)
for _fn in (dcc.exact_conditional_score, dcc.exact_classifier_score):
    row(
        f"diffcore.conditional.{_fn.__name__}",
        lambda x, t, _f=_fn: _f(VP, LM, 1)(x, t),
        {"x": X, "t": 0.5},
        {"x": "points", "t": "time"},
        nan="rows",
    )
row(
    "diffcore.conditional.exact_classifier",
    lambda x, t: dcc.exact_classifier(VP, LM)(x, t),
    {"x": X, "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
for _guide in (dcc.classifier_free_guidance, dcc.classifier_guidance):
    row(
        f"diffcore.conditional.{_guide.__name__}",
        lambda x, t, weight, _g=_guide: _g(dcc.exact_conditional_score(VP, LM, 1), SCORE, weight, interval=(0.2, 0.8))(
            x, t
        ),
        {"x": X, "t": 0.5, "weight": 2.0},
        {"x": "points", "t": "time", "weight": "real" if _guide is dcc.classifier_free_guidance else "nonnegative"},
        names={"weight": "w" if _guide is dcc.classifier_free_guidance else "scale"},
        nan="rows",
    )
row(
    "diffcore.conditional.TiltedLaw",
    lambda gamma, n, rng: dcc.TiltedLaw(LM, 1, gamma).sample(n, rng),
    {"gamma": 2.0, "n": 4, "rng": 0},
    {"gamma": "nonnegative", "n": "size", "rng": "rng"},
)
for _meth in ("log_prob_unnormalised", "score", "log_classifier"):
    row(
        f"diffcore.conditional.TiltedLaw.{_meth}",
        lambda x, _m=_meth: getattr(dcc.TiltedLaw(LM, 1, 2.0), _m)(x),
        {"x": X},
        {"x": "points"},
        nan="rows",
    )
for _meas, _y in ((INPAINT, Y1), (SIGN, np.array([1.0]))):
    _mcls = type(_meas)
    _mn = f"diffcore.conditional.{_mcls.__name__}"
    row(
        _mn,
        lambda H, noise_std, _c=_mcls: _c(H, noise_std).H,
        {"H": _meas.H, "noise_std": 0.2},
        {"H": "array", "noise_std": "positive"},
        out=None,
    )
    for _meth in ("log_likelihood", "likelihood_score"):
        row(
            f"{_mn}.{_meth}",
            lambda x, y, _m=_meth, _s=_meas: getattr(_s, _m)(x, y),
            {"x": X, "y": _y},
            {"x": "points", "y": "array"},
            nan="rows",
        )
    row(
        f"{_mn}.sample",
        lambda x, rng, _s=_meas: _s.sample(x, rng),
        {"x": X, "rng": 0},
        {"x": "points", "rng": "rng"},
        nan="rows",
    )
row(
    "diffcore.conditional.posterior",
    lambda y: dcc.posterior(LM, INPAINT, y).mixture.log_prob(X),
    {"y": Y1},
    {"y": "array"},
    out=None,
)
row(
    "diffcore.conditional.quadrature_posterior",
    lambda y, resolution: dcc.quadrature_posterior(GM, SIGN, y, resolution=resolution).mean,
    {"y": np.array([1.0]), "resolution": 41},
    {"y": "array", "resolution": "count"},
    out=None,
)
row(
    "diffcore.conditional.GridLaw",
    lambda resolution, n, rng: dcc.GridLaw(GM.log_prob, [-4.0, -4.0], [4.0, 4.0], resolution).sample(n, rng),
    {"resolution": 41, "n": 4, "rng": 0},
    {"resolution": "count", "n": "size", "rng": "rng"},
)
row(
    "diffcore.conditional.exact_likelihood_score",
    lambda x, t: dcc.exact_likelihood_score(VP, LM, INPAINT, Y1)(x, t),
    {"x": X, "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
row(  # the observation is a parameter of the field (converted to x's library at each call, like the prior's means)
    "diffcore.conditional.exact_likelihood_score[y]",
    lambda y: dcc.exact_likelihood_score(VP, LM, INPAINT, y).log_likelihood(X, 0.5),
    {"y": Y1},
    {"y": "array"},
    out=None,
)
row(
    "diffcore.conditional.exact_posterior_covariance",
    lambda x, t: dcc.exact_posterior_covariance(VP, LM)(x, t),
    {"x": X, "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)

_POST_REF = dcc.posterior_reference(dcc.posterior(LM, INPAINT, Y1), n_threshold=200, rng=0)
row(
    "diffcore.conditional.posterior_reference",
    lambda n_threshold, floor_repeats, rng: (
        dcc.posterior_reference(
            dcc.posterior(LM, INPAINT, Y1), n=8, n_threshold=n_threshold, floor_repeats=floor_repeats, rng=rng
        ).log_thresholds
    ),
    {"n_threshold": 200, "floor_repeats": 2, "rng": 0},
    {"n_threshold": "count", "floor_repeats": "count", "rng": "rng"},
    out=None,
)
row(
    "diffcore.conditional.posterior_report",
    lambda samples, rng: dcc.posterior_report(samples, _POST_REF, rng=rng).mean_error,
    {"samples": X, "rng": 0},
    {"samples": "points", "rng": "rng"},
    out=None,
    empty="error",
)
# optimal boundary conditions of a conditional probability-flow ODE
_BC_PHI = dcc.conditional_flow_map(dc.CosineVPSDE(end=1.0), G2, INPAINT)
_BC_Y = X[:, :1]
row(
    "diffcore.conditional.conditional_flow_map",
    lambda t, s, rtol: dcc.conditional_flow_map(VP, G2, INPAINT, t=t, s=s, rtol=rtol).matrix,
    {"t": 1.0, "s": 0.0, "rtol": 1e-8},
    {"t": "time", "s": "time", "rtol": "positive"},
    out=None,
)
for _ref in (False, True):
    _bc_map = dcc.conditional_flow_map(VP, G2, INPAINT, reference=_ref, rtol=1e-6, atol=1e-6)
    row(
        f"diffcore.conditional.ConditionalFlowMap[reference={_ref}]",
        lambda z, y, _m=_bc_map: _m(z, y),
        {"z": X, "y": Y1},
        {"z": "points", "y": "array"},
    )
row("diffcore.conditional.ConditionalFlowMap.offset", lambda y: _BC_PHI.offset(y), {"y": _BC_Y}, {"y": "points"})
row(
    "diffcore.conditional.ConditionalFlowMap.expected_mse",
    lambda z: _BC_PHI.expected_mse(z),
    {"z": np.array([0.3, -0.2])},
    {"z": "array"},
    out=None,
)
row(
    "diffcore.conditional.optimal_boundary",
    lambda x0, y: dcc.optimal_boundary(_BC_PHI, pairs=(x0, y)).z,
    {"x0": X, "y": _BC_Y},
    {"x0": "points", "y": "points"},
    out=None,
    empty="error",
)
row(
    "diffcore.conditional.boundary_search",
    lambda phi, x0, y, candidates, rng: dcc.boundary_search(phi, x0, y, candidates, rng=rng).losses,
    {"phi": _BC_PHI, "x0": X, "y": _BC_Y, "candidates": 4, "rng": 0},
    {"phi": "model", "x0": "points", "y": "points", "candidates": "count", "rng": "rng"},
    out=None,
    empty="error",
)

# theory: the score-error bound and the empirical score
_TH_DATA = dc.Gaussian(np.array([1.0, -0.5]), np.array([[1.0, 0.3], [0.3, 0.5]]))
_TH_SCORE = dc.exact_score(VP, _TH_DATA)
row(
    "diffcore.theory.gaussian_kl",
    lambda mean0, cov0, mean1, cov1: dct.gaussian_kl(mean0, cov0, mean1, cov1),
    {"mean0": G2.mean, "cov0": G2.cov, "mean1": np.zeros(2), "cov1": np.eye(2)},
    {"mean0": "array", "cov0": "array", "mean1": "array", "cov1": "array"},
    out=None,
)
row(
    "diffcore.theory.reverse_sde_law",
    lambda t_min, rtol: dct.reverse_sde_law(VP, _TH_SCORE, dc.marginal(VP, _TH_DATA, 1.0), t_min=t_min, rtol=rtol).cov,
    {"t_min": 0.5, "rtol": 1e-8},
    {"t_min": "time", "rtol": "positive"},
    out=None,
)
row(
    "diffcore.theory.score_error_bound",
    lambda t_min, rtol: dct.score_error_bound(VP, _TH_DATA, _TH_SCORE, t_min=t_min, rtol=rtol).kl,
    {"t_min": 0.5, "rtol": 1e-8},
    {"t_min": "time", "rtol": "positive"},
    out=None,
)
row(
    "diffcore.theory.grid_path_kl",
    lambda ts: dct.grid_path_kl(VP, _TH_DATA, _TH_SCORE, ts),
    {"ts": [1.0, 0.5, 0.1]},
    {"ts": "grid"},
    out=None,
)
row(
    "diffcore.theory.EmpiricalScore",
    lambda x, points: dct.EmpiricalScore(VP, points)(x, 0.5),
    {"x": X, "points": X},
    {"x": "points", "points": "points"},
    out=None,
    empty="error",
)
row(
    "diffcore.theory.empirical_marginal",
    lambda points, t: dct.empirical_marginal(VP, points, t).means,
    {"points": X, "t": 0.5},
    {"points": "points", "t": "time"},
    out=None,
    empty="error",
)
row(
    "diffcore.theory.nearest_distance",
    lambda x, points: dct.nearest_distance(x, points),
    {"x": X, "points": X},
    {"x": "points", "points": "points"},
    out=None,
    empty="error",
)

# geometry: heat kernels, Varadhan's formula, the heat-geodesic embedding (NumPy only)

_ANG = np.array([0.1, 1.0, 2.5, -1.2, 3.0])
_SPH = np.array([[0.0, 0.0, 1.0], [np.sin(0.5), 0.0, np.cos(0.5)], [0.0, 1.0, 0.0]])
_GW = np.abs(np.sin(np.arange(25.0).reshape(5, 5) * 0.37))
_GW = 0.5 * (_GW + _GW.T)
for _m in ("images", "fourier"):
    row(
        f"diffcore.geometry.heat_kernel_circle[{_m}]",
        lambda theta, phi, t, radius, _m=_m: dgeo.heat_kernel_circle(theta, phi, t, radius=radius, method=_m),
        {"theta": _ANG, "phi": _ANG[:3], "t": 0.3, "radius": 1.5},
        {"theta": "points", "phi": "points", "t": "positive", "radius": "positive"},
    )
row(
    "diffcore.geometry.geodesic_distance_circle",
    lambda theta, phi, radius: dgeo.geodesic_distance_circle(theta, phi, radius=radius),
    {"theta": _ANG, "phi": _ANG[:3], "radius": 1.5},
    {"theta": "points", "phi": "points", "radius": "positive"},
)
row(
    "diffcore.geometry.heat_kernel_sphere",
    dgeo.heat_kernel_sphere,
    {"x": _SPH, "y": _SPH[:2], "t": 0.2},
    {"x": "array", "y": "array", "t": "positive"},
)
row(
    "diffcore.geometry.geodesic_distance_sphere",
    dgeo.geodesic_distance_sphere,
    {"x": _SPH, "y": _SPH[:2]},
    {"x": "array", "y": "array"},
)
row(
    "diffcore.geometry.graph_laplacian",
    dgeo.graph_laplacian,
    {"weights": _GW, "kind": "normalized"},
    {"weights": "array", "kind": "choice"},
)
row(
    "diffcore.geometry.heat_kernel_graph",
    lambda weights, t, laplacian, method, order: dgeo.heat_kernel_graph(
        weights, t, laplacian=laplacian, method=method, order=order
    ),
    {"weights": _GW, "t": 0.7, "laplacian": "combinatorial", "method": "chebyshev", "order": 8},
    {"weights": "array", "t": "positive", "laplacian": "choice", "method": "choice", "order": "count"},
)
row(
    "diffcore.geometry.chebyshev_error_bound",
    dgeo.chebyshev_error_bound,
    {"t": 0.7, "order": 8, "lambda_max": 2.0},
    {"t": "positive", "order": "count", "lambda_max": "positive"},
    out=None,
)
row(
    "diffcore.geometry.varadhan_distance[sigma]",
    lambda h, t, sigma: dgeo.varadhan_distance(h, t, sigma=sigma),
    {"h": dgeo.heat_kernel_graph(_GW, 0.7), "t": 0.7, "sigma": 0.5},
    {"h": "array", "t": "positive", "sigma": "nonnegative"},
)
row(
    "diffcore.geometry.varadhan_distance[dim]",
    lambda h, t, dim: dgeo.varadhan_distance(h, t, dim=dim),
    {"h": dgeo.heat_kernel_circle(_ANG, _ANG, 0.1), "t": 0.1, "dim": 1},
    {"h": "array", "t": "positive", "dim": "count"},
)
row(
    "diffcore.geometry.heat_geodesic_embedding",
    lambda x, t, n_components, knn, order, sigma, mds_iterations, method: dgeo.heat_geodesic_embedding(
        x, t, n_components, knn=knn, order=order, sigma=sigma, mds_iterations=mds_iterations, method=method
    ),
    {"x": X, "t": 2.0, "n_components": 2, "knn": 2, "order": 16, "sigma": 1.0, "mds_iterations": 5, "method": "exact"},
    {
        "x": "points",
        "t": "positive",
        "n_components": "count",
        "knn": "count",
        "order": "count",
        "sigma": "nonnegative",
        "mds_iterations": "size",
        "method": "choice",
    },
    out=lambda r: r.embedding,
    empty="error",
)
row(
    "diffcore.geometry.swiss_roll",
    lambda n_along, n_across, width: dgeo.swiss_roll(n_along, n_across, width=width)[0],
    {"n_along": 4, "n_across": 3, "width": 2.0},
    {"n_along": "count", "n_across": "count", "width": "positive"},
    out=None,
)

# training: early exiting (DeeDiff) and model assembly (A-SDM)
EENET = dtr.MultiExitMLP(2, width=8, n_blocks=2, rng=0, dtype=torch.float64)
row(
    "diffcore.training.MultiExitMLP",
    lambda x, t: EENET(x, t),
    {"x": X, "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
row(
    "diffcore.training.MultiExitMLP.__init__",
    lambda dim, width, n_blocks, prediction: dtr.MultiExitMLP(
        dim, width=width, n_blocks=n_blocks, prediction=prediction
    ),
    {"dim": 2, "width": 4, "n_blocks": 2, "prediction": "eps"},
    {"dim": "count", "width": "count", "n_blocks": "count", "prediction": "choice"},
    out=None,
)
# threshold 0: the batch is never split, so a NaN row cannot change the other rows
row(
    "diffcore.training.early_exit_model",
    lambda x, t: dtr.early_exit_model(EENET, 0.0)(x, t),
    {"x": X, "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
row(
    "diffcore.training.early_exit_loss",
    lambda x0, t_min, rng, uncertainty_weight: dtr.early_exit_loss(
        EENET, x0, VP, rng, t_min=t_min, uncertainty_weight=uncertainty_weight
    ),
    {"x0": X, "t_min": 1e-2, "rng": 0, "uncertainty_weight": 1.0},
    {"x0": "points", "t_min": "time", "rng": "rng", "uncertainty_weight": "nonnegative"},
    out=None,
    empty="error",
)
row(
    "diffcore.training.early_exit_terms",
    lambda x_t, t: dtr.early_exit_terms(EENET, x_t, t, TX),
    {"x_t": TX, "t": 0.5},
    {"x_t": "points", "t": "time"},
    out=None,
    empty="error",
)
row(
    "diffcore.training.assemble",
    lambda rng: dtr.assemble(EENET, [1], inherit=False, rng=rng),
    {"rng": 0},
    {"rng": "rng"},
    out=None,
)
# a fresh model per call; the second call reuses stale updates of block 0 (only a NaN row's own cache is NaN)
row(
    "diffcore.training.feature_reuse_model",
    lambda x, t: (lambda m: (m(x, t), m(x, t))[1])(dtr.feature_reuse_model(EENET, [0], refresh_every=2)),
    {"x": X, "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
row(
    "diffcore.training.assembly_distillation_loss",
    lambda x0, t_min, rng, feature_weight: dtr.assembly_distillation_loss(
        dtr.assemble(EENET, [1]), EENET, x0, VP, rng, t_min=t_min, feature_weight=feature_weight
    ),
    {"x0": X, "t_min": 1e-2, "rng": 0, "feature_weight": 1.0},
    {"x0": "points", "t_min": "time", "rng": "rng", "feature_weight": "nonnegative"},
    out=None,
    empty="error",
)

# bridges: exact IPF / IMF iterations, the entropic coupling of samples, learned bridge matching
_XB = X + 1.0
for _fn in (dbr.gaussian_ipf, dbr.gaussian_imf):
    row(
        f"diffcore.bridges.{_fn.__name__}",
        lambda sigma, iterations, _f=_fn: (
            _f(np.zeros(2), np.eye(2), np.ones(2), 2 * np.eye(2), sigma, iterations).errors
        ),
        {"sigma": 1.0, "iterations": 2},
        {"sigma": "positive", "iterations": "size"},
        out=None,
    )
row(
    "diffcore.bridges.BridgeIterations.measured_rate",
    lambda floor: dbr.gaussian_ipf(np.zeros(2), np.eye(2), np.ones(2), 2 * np.eye(2), 0.5, 12).measured_rate(floor),
    {"floor": 1e-9},
    {"floor": "positive"},
    out=None,
)
row(
    "diffcore.bridges.entropic_coupling",
    lambda x0, x1, sigma: dbr.entropic_coupling(x0, x1, sigma).plan,
    {"x0": X, "x1": _XB, "sigma": 1.0},
    {"x0": "points", "x1": "points", "sigma": "positive"},
    out=None,
    empty="error",
)
row(
    "diffcore.training.bridge_matching_loss",
    lambda model, sigma, rng: dtr.bridge_matching_loss(model, (TX, TX + 1), sigma, rng),
    {"model": NET, "sigma": 1.0, "rng": 0},
    {"sigma": "positive", "rng": "rng"},
    out=None,
)
row(
    "diffcore.training.simulate_bridge",
    lambda x0, sigma, steps, rng: dtr.simulate_bridge(lambda x, t: -x, x0, sigma, steps=steps, rng=rng),
    {"x0": X, "sigma": 1.0, "steps": 3, "rng": 0},
    {"x0": "points", "sigma": "positive", "steps": "count", "rng": "rng"},
)
row(
    "diffcore.training.bridge_matching",
    lambda sigma, iterations: (
        dtr.bridge_matching(
            X, _XB, sigma, iterations=iterations, steps=2, batch_size=2, width=4, depth=1, sde_steps=2, rng=0
        ).cross_covs
    ),
    {"sigma": 1.0, "iterations": 1},
    {"sigma": "positive", "iterations": "count"},
    out=None,
)

# discrete: the CTMC laboratory (laws over sequences, forward processes, exact reverse quantities)
DLAW = dd.TableLaw(np.full(9, 1 / 9), 3, 2)
DTOK = np.array([[0, 1], [2, 2], [1, 0]])
DMASKED = np.array([[0, 3], [3, 3], [1, 0]])
DABS = dd.AbsorbingDiffusion(3)
row(
    "diffcore.discrete.enumerate_states",
    lambda num_states, length: dd.enumerate_states(num_states, length),
    {"num_states": 3, "length": 2},
    {"num_states": "count", "length": "count"},
    out=None,
)
row(
    "diffcore.discrete.state_index",
    lambda x, num_states: dd.state_index(x, num_states),
    {"x": DTOK, "num_states": 3},
    {"x": "array", "num_states": "count"},
)
row("diffcore.discrete.check_tokens", lambda x: dd.check_tokens("x", x, 3), {"x": DTOK}, {"x": "array"})
row(
    "diffcore.discrete.TableLaw",
    lambda probs, vocab_size: dd.TableLaw(probs, vocab_size, 2).probs,
    {"probs": np.full(9, 1 / 9), "vocab_size": 3},
    {"probs": "array", "vocab_size": "count"},
    out=None,
)
row(
    "diffcore.discrete.TableLaw.sample",
    lambda n, rng: DLAW.sample(n, rng),
    {"n": 4, "rng": 0},
    {"n": "size", "rng": "rng"},
    out=None,
)
row("diffcore.discrete.TableLaw.log_prob", lambda x: DLAW.log_prob(x), {"x": DTOK}, {"x": "array"})
row(
    "diffcore.discrete.MarkovChainLaw",
    lambda initial, transition, length: dd.MarkovChainLaw(initial, transition, length).table().probs,
    {"initial": np.array([0.5, 0.5]), "transition": np.array([[0.9, 0.1], [0.2, 0.8]]), "length": 3},
    {"initial": "array", "transition": "array", "length": "count"},
    out=None,
)
row(
    "diffcore.discrete.FactorizedLaw",
    lambda marginals: dd.FactorizedLaw(marginals).table().probs,
    {"marginals": np.array([[0.2, 0.8], [0.5, 0.5]])},
    {"marginals": "array"},
    out=None,
)
for _cls in (dd.UniformDiffusion, dd.AbsorbingDiffusion):
    row(
        f"diffcore.discrete.{_cls.__name__}",
        lambda vocab_size, beta, t, _c=_cls: _c(vocab_size, beta).transition(t),
        {"vocab_size": 3, "beta": 1.5, "t": 0.5},
        {"vocab_size": "count", "beta": "positive", "t": "time"},
        out=None,
    )
row(
    "diffcore.discrete.MarkovDiffusion",
    lambda generator, beta: dd.MarkovDiffusion(generator, beta).transition(0.5),
    {"generator": np.array([[-1.0, 1.0], [0.5, -0.5]]), "beta": 2.0},
    {"generator": "array", "beta": "positive"},
    out=None,
)
row(
    "diffcore.discrete.AbstractCTMCDiffusion.transition",
    lambda t, s: DABS.transition(t, s),
    {"t": 0.7, "s": 0.2},
    {"t": "time", "s": "time"},
    out=None,
)
row(
    "diffcore.discrete.AbstractCTMCDiffusion.sample_transition",
    lambda x_s, s, t, rng: DABS.sample_transition(x_s, s, t, rng),
    {"x_s": DTOK, "s": 0.2, "t": 0.7, "rng": 0},
    {"x_s": "array", "s": "time", "t": "time", "rng": "rng"},
)
row(
    "diffcore.discrete.AbstractCTMCDiffusion.marginal",
    lambda t: DABS.marginal(DLAW, t),
    {"t": 0.5},
    {"t": "time"},
    out=None,
)
row(
    "diffcore.discrete.AbstractCTMCDiffusion.posterior",
    lambda x_t, x_0, s, t: DABS.posterior(x_t, x_0, s, t),
    {"x_t": DMASKED, "x_0": DTOK, "s": 0.3, "t": 0.6},
    {"x_t": "array", "x_0": "array", "s": "time", "t": "time"},
)
row(
    "diffcore.discrete.RateSchedule",
    lambda rate: dd.RateSchedule(rate, lambda t: t).integral(0.5),
    {"rate": lambda t: 1.0},
    {},
    out=None,
)
for _fn, _kw in (
    (dd.linear_schedule, {"beta_min": 0.1, "beta_max": 5.0}),
    (dd.log_linear_schedule, {"eps": 1e-3}),
    (dd.geometric_schedule, {"sigma_min": 1e-3, "sigma_max": 5.0}),
    (dd.constant_schedule, {"beta": 1.0}),
):
    row(
        f"diffcore.discrete.{_fn.__name__}",
        lambda _f=_fn, **kw: _f(**kw).integral(0.5),
        _kw,
        dict.fromkeys(_kw, "positive"),
        out=None,
    )
row(
    "diffcore.discrete.exact_posterior_x0",
    lambda x_t, t: dd.exact_posterior_x0(DABS, DLAW, x_t, t),
    {"x_t": DMASKED, "t": 0.5},
    {"x_t": "array", "t": "time"},
)
for _fn in (dd.concrete_score, dd.reverse_rates):
    row(
        f"diffcore.discrete.{_fn.__name__}",
        lambda x, t, _f=_fn: _f(DABS, DLAW, x, t),
        {"x": DMASKED, "t": 0.5},
        {"x": "array", "t": "time"},
    )
row(
    "diffcore.discrete.exact_denoiser[ExactDenoiser]",
    lambda x_t, t: dd.exact_denoiser(DABS, DLAW)(x_t, t),
    {"x_t": DMASKED, "t": 0.5},
    {"x_t": "array", "t": "time"},
)
row(
    "diffcore.discrete.reverse_generator",
    lambda t: dd.reverse_generator(DABS, DLAW, t),
    {"t": 0.5},
    {"t": "time"},
    out=None,
)
for _fn in (dd.concrete_score_from_denoiser, dd.reverse_rates_from_denoiser):
    row(
        f"diffcore.discrete.{_fn.__name__}",
        lambda x, t, denoiser, _f=_fn: _f(DABS, denoiser, x, t),
        {"x": DMASKED, "t": 0.5, "denoiser": dd.exact_denoiser(DABS, DLAW)},
        {"x": "array", "t": "time", "denoiser": "model"},
    )

# discrete: posterior sampling with a masked-diffusion prior (diffcore/discrete/_posterior.py)
DP_LAW = dd.MarkovChainLaw(np.array([0.5, 0.3, 0.2]), np.full((3, 3), 1 / 3), 2)
DP_DEN = dd.exact_denoiser(DABS, DP_LAW)
DP_OBS = dd.TokenChannelObservation(3, 2, 0.2)
DP_Y = np.array([2, 0])
row(
    "diffcore.discrete.InpaintingObservation",
    lambda y: dd.InpaintingObservation([1], 3, 2).likelihood(y),
    {"y": np.array([1])},
    {"y": "array"},
    out=None,
)
row(
    "diffcore.discrete.TokenChannelObservation",
    lambda vocab_size, eps, y: dd.TokenChannelObservation(vocab_size, 2, eps).likelihood(y),
    {"vocab_size": 3, "eps": 0.2, "y": DP_Y},
    {"vocab_size": "count", "eps": "nonnegative", "y": "array"},
    out=None,
)
row(
    "diffcore.discrete.AbstractTokenObservation.sample",
    lambda x, rng: DP_OBS.sample(x, rng),
    {"x": DTOK, "rng": 0},
    {"x": "array", "rng": "rng"},
)
row(
    "diffcore.discrete.AbstractTokenObservation.log_likelihood",
    lambda x: DP_OBS.log_likelihood(x, DP_Y),
    {"x": DTOK},
    {"x": "array"},
)
row(
    "diffcore.discrete.TableObservation",
    lambda likelihood: dd.TableObservation(likelihood, 3, 2).likelihood(1),
    {"likelihood": np.full((9, 2), 0.5)},
    {"likelihood": "array"},
    out=None,
)
row(
    "diffcore.discrete.exact_posterior",
    lambda y: dd.exact_posterior(DP_LAW, DP_OBS, y).probs,
    {"y": DP_Y},
    {"y": "array"},
    out=None,
)
row(
    "diffcore.discrete.guided_denoiser",
    lambda x_t, guidance, eta, iterations: dd.guided_denoiser(
        DP_DEN, DP_OBS, DP_Y, guidance=guidance, eta=eta, iterations=iterations
    )(x_t, 0.5),
    {"x_t": DMASKED, "guidance": "quantized", "eta": 1.0, "iterations": 2},
    {"x_t": "array", "guidance": "choice", "eta": "positive", "iterations": "count"},
)
row(
    "diffcore.discrete.masked_sample",
    lambda n, length, steps, order, rng: dd.masked_sample(DABS, DP_DEN, n, length, steps=steps, order=order, rng=rng),
    {"n": 4, "length": 2, "steps": 2, "order": "anchored", "rng": 0},
    {"n": "size", "length": "count", "steps": "count", "order": "choice", "rng": "rng"},
    out=None,
)
row(
    "diffcore.discrete.masked_sample_law",
    lambda length, steps, order: dd.masked_sample_law(DABS, DP_DEN, length, steps=steps, order=order),
    {"length": 2, "steps": 2, "order": "random"},
    {"length": "count", "steps": "count", "order": "choice"},
    out=None,
)
for _f in (dd.naive_posterior_sample, dd.anchored_posterior_sample):
    row(
        f"diffcore.discrete.{_f.__name__}",
        lambda y, n, steps, rng, _f=_f: _f(DABS, DP_DEN, DP_OBS, y, n, steps=steps, rng=rng),
        {"y": DP_Y, "n": 4, "steps": 2, "rng": 0},
        {"y": "array", "n": "size", "steps": "count", "rng": "rng"},
        out=None,
    )
row(
    "diffcore.discrete.empirical_tv",
    lambda samples, probs: dd.empirical_tv(samples, probs, 3)[0],
    {"samples": DTOK, "probs": np.full(9, 1 / 9)},
    {"samples": "array", "probs": "array"},
    out=None,
)

# discrete samplers (diffcore/discrete/_samplers.py)
DS_DEN = dd.exact_denoiser(DABS, DLAW)
for _method in dd.DISCRETE_SOLVERS:
    row(
        f"diffcore.discrete.discrete_sample[{_method}]",
        lambda x_init, model, steps, t_min, rng, _m=_method: dd.discrete_sample(
            DABS, model, x_init, method=_m, steps=steps, t_min=t_min, rng=rng
        ),
        {"x_init": DMASKED, "model": DS_DEN, "steps": 2, "t_min": 0.1, "rng": 0},
        {"x_init": "array", "model": "model", "steps": "count", "t_min": "time", "rng": "rng"},
        out=_x,
    )
row(
    "diffcore.discrete.discrete_sampler_law",
    lambda p_init, model, steps, method: dd.discrete_sampler_law(DABS, model, p_init, method=method, steps=steps),
    {"p_init": DABS.marginal(DLAW, 1.0), "model": DS_DEN, "steps": 2, "method": "euler"},
    {"p_init": "array", "model": "model", "steps": "count", "method": "choice"},
    out=None,
)
row(
    "diffcore.discrete.GillespieSampler",
    lambda safety: dd.GillespieSampler(safety),
    {"safety": 2.0},
    {"safety": "positive"},
    out=None,
)

# training: discrete diffusion losses (D3PM, masked diffusion, score entropy) and a small denoiser
DPROC, DUNI = dd.AbsorbingDiffusion(3), dd.UniformDiffusion(3)
DNET = dtr.DiscreteDenoiser(3, 2, num_states=4, width=8, depth=1, rng=0, dtype=torch.float64)
DSNET = dtr.DiscreteDenoiser(3, 2, output="log_score", width=8, depth=1, rng=0, dtype=torch.float64)
DX0 = np.array([[0, 1], [2, 0]])
row(
    "diffcore.training.d3pm_loss",
    lambda steps, t_max, rng, hybrid: dtr.d3pm_loss(DNET, DX0, DUNI, rng, steps=steps, t_max=t_max, hybrid=hybrid),
    {"steps": 3, "t_max": 1.0, "rng": 0, "hybrid": 0.01},
    {"steps": "count", "t_max": "time", "rng": "rng", "hybrid": "nonnegative"},
    out=None,
)
row(
    "diffcore.training.masked_diffusion_loss",
    lambda t_min, rng: dtr.masked_diffusion_loss(DNET, DX0, DPROC, rng, t_min=t_min),
    {"t_min": 0.0, "rng": 0},
    {"t_min": "time", "rng": "rng"},
    out=None,
)
row(
    "diffcore.training.score_entropy_loss",
    lambda t_min, rng: dtr.score_entropy_loss(DSNET, DX0, DUNI, rng, t_min=t_min),
    {"t_min": 1e-3, "rng": 0},
    {"t_min": "time", "rng": "rng"},
    out=None,
)
row(
    "diffcore.training.masked_diffusion_nelbo",
    lambda points, t_max: dtr.masked_diffusion_nelbo(DNET.numpy_denoiser(), DPROC, DX0, points=points, t_max=t_max),
    {"points": 4, "t_max": 1.0},
    {"points": "count", "t_max": "time"},
)
row(
    "diffcore.training.DiscreteDenoiser.__init__",
    lambda vocab_size, length, width, output: dtr.DiscreteDenoiser(vocab_size, length, width=width, output=output),
    {"vocab_size": 3, "length": 2, "width": 4, "output": "denoiser"},
    {"vocab_size": "count", "length": "count", "width": "count", "output": "choice"},
    out=None,
)

# bridges
_SB = dbr.GaussianSchrodingerBridge(np.zeros(2), np.eye(2), np.ones(2), 2 * np.eye(2), 1.0)
row(
    "diffcore.bridges.GaussianSchrodingerBridge",
    lambda sigma: dbr.GaussianSchrodingerBridge(np.zeros(2), np.eye(2), np.ones(2), 2 * np.eye(2), sigma).cross_cov,
    {"sigma": 1.0},
    {"sigma": "positive"},
    out=None,
)
for _meth in ("drift", "velocity"):
    row(
        f"diffcore.bridges.GaussianSchrodingerBridge.{_meth}",
        lambda x, t, _m=_meth: getattr(_SB, _m)(x, t),
        {"x": X, "t": 0.5},
        {"x": "points", "t": "time"},
    )
row(
    "diffcore.bridges.GaussianSchrodingerBridge.marginal",
    lambda t: _SB.marginal(t).mean,
    {"t": 0.5},
    {"t": "time"},
    out=None,
)

# flow maps: the exact map (closed form and reference) and the two residuals
_FM_GAUSS = dc.Gaussian(np.array([0.5, -0.5]), np.array([[0.6, 0.2], [0.2, 0.3]]))
for _ref in (False, True):
    row(
        f"diffcore.flowmaps.exact_flow_map[{'reference' if _ref else 'affine'}]",
        lambda x, t, s, rtol, _r=_ref: dfm.exact_flow_map(VP, GM if _r else _FM_GAUSS, t, s, rtol=rtol)(x),
        {"x": X, "t": 0.9, "s": 0.1, "rtol": 1e-8},
        {"x": "points", "t": "time", "s": "time", "rtol": "positive"},
    )
for _meth in ("log_det_jacobian", "jacobian"):
    row(
        f"diffcore.flowmaps.FlowMap.{_meth}",
        lambda x, _m=_meth: getattr(dfm.exact_flow_map(VP, _FM_GAUSS, 0.9, 0.1), _m)(x),
        {"x": X},
        {"x": "points"},
    )
_FM = lambda x, t, s: dfm.exact_flow_map(VP, _FM_GAUSS, t, s)(x)  # noqa: E731
_FM_V = dc.ProbabilityFlowODE(VP, dc.exact_score(VP, _FM_GAUSS)).drift
row(
    "diffcore.flowmaps.flow_map_residual",
    lambda x, t, s, fd_step: dfm.flow_map_residual(_FM, _FM_V, x, t, s, method="fd", fd_step=fd_step),
    {"x": X, "t": 0.5, "s": 0.1, "fd_step": 1e-4},
    {"x": "points", "t": "time", "s": "time", "fd_step": "positive"},
)
row(
    "diffcore.flowmaps.semigroup_residual",
    lambda x, t, s, u: dfm.semigroup_residual(_FM, x, t, s, u),
    {"x": X, "t": 0.9, "s": 0.5, "u": 0.1},
    {"x": "points", "t": "time", "s": "time", "u": "time"},
)
row(
    "diffcore.flowmaps.flow_map_sample",
    lambda x_init, ts: dfm.flow_map_sample(_FM, x_init, ts),
    {"x_init": X, "ts": [1.0, 0.5, 0.1]},
    {"x_init": "points", "ts": "grid"},
    out=_x,
)
row(
    "diffcore.flowmaps.consistency_sample",
    lambda x_init, t_min, rng: dfm.consistency_sample(_FM, VP, x_init, [1.0, 0.5], t_min=t_min, rng=rng),
    {"x_init": X, "t_min": 0.1, "rng": 0},
    {"x_init": "points", "t_min": "time", "rng": "rng"},
    out=_x,
)
for _kind in dfm.MAP_PARAMETRIZATIONS:
    _s = 1e-3 if _kind == "consistency" else 0.2
    row(
        f"diffcore.flowmaps.to_flow_map[{_kind}]",
        lambda x, t, _k=_kind, _s=_s: dfm.to_flow_map(_k, lambda x, *a: 0.5 * x, VP)(x, t, _s),
        {"x": X, "t": 0.6},
        {"x": "points", "t": "time"},
    )
    row(
        f"diffcore.flowmaps.from_flow_map[{_kind}]",
        lambda x, t, _k=_kind, _s=_s: dfm.from_flow_map(_k, _FM, VP)(x, t, *(() if _k == "consistency" else (_s,))),
        {"x": X, "t": 0.6},
        {"x": "points", "t": "time"},
    )

# conditioning: the posterior samplers (one row each; tiny budgets)
LM_SCORE, LM_COV = dc.exact_score(VP, LM), dcc.exact_posterior_covariance(VP, LM)
_METHODS = {
    "dps": (dcc.dps, {"covariance": LM_COV}),
    "pigdm": (dcc.pigdm, {"covariance": LM_COV}),
    "second_order_tweedie": (dcc.second_order_tweedie, {"covariance": LM_COV}),
    "exact_posterior_sampler": (dcc.exact_posterior_sampler, {"prior": LM}),
    "red_diff": (dcc.red_diff, {}),
    "twisted_diffusion_sampler": (dcc.twisted_diffusion_sampler, {"covariance": LM_COV}),
    "twisted_diffusion_run": (dcc.twisted_diffusion_run, {"covariance": LM_COV}),
    "ensemble_sampler": (dcc.ensemble_sampler, {}),
    "ensemble_run": (dcc.ensemble_run, {}),
    "flowchef": (dcc.flowchef, {}),
}
for _name, (_fn, _kw) in _METHODS.items():
    row(
        f"diffcore.conditional.{_name}",
        lambda x_init, score, steps, rng, _f=_fn, _k=_kw: _f(
            VP, score, INPAINT, Y1, x_init, steps=steps, rng=rng, **_k
        ),
        {"x_init": X, "score": LM_SCORE, "steps": 3, "rng": 0},
        {"x_init": "points", "score": "model", "steps": "count", "rng": "rng"},
        out=_x if not _name.endswith("_run") else (lambda r: r.solution.x),
        empty="error" if "twisted" in _name or "ensemble" in _name else "empty",
    )
row(
    "diffcore.conditional.posterior_score",
    lambda x, t, score: dcc.posterior_score(score, dcc.exact_likelihood_score(VP, LM, INPAINT, Y1))(x, t),
    {"x": X, "t": 0.5, "score": LM_SCORE},
    {"x": "points", "t": "time"},
    nan="rows",
)
row(
    "diffcore.conditional.denoiser_covariance",
    lambda x, t: dcc.denoiser_covariance(VP, LM_SCORE)(x, t),
    {"x": TX, "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
_NT_COND, _NT_UNCOND = dcc.exact_conditional_score(VP, LM, 1), LM_SCORE
row(
    "diffcore.conditional.null_text_inversion",
    lambda x0, steps, w: dcc.null_text_inversion(VP, _NT_COND, _NT_UNCOND, x0, w=w, steps=steps).reconstruction,
    {"x0": X, "steps": 3, "w": 2.0},
    {"x0": "points", "steps": "count", "w": "real"},
    empty="error",
)
row(
    "diffcore.conditional.ddim_pivot",
    lambda x0: dcc.ddim_pivot(VP, _NT_COND, x0, [1e-3, 0.5, 1.0])[-1],
    {"x0": X},
    {"x0": "points"},
)
row(
    "diffcore.conditional.null_text_sample",
    lambda x_init: dcc.null_text_sample(
        VP, _NT_COND, _NT_UNCOND, x_init, np.zeros((2, *np.shape(x_init))), [1.0, 0.5, 1e-3], w=1.0
    ),
    {"x_init": X},
    {"x_init": "points"},
)
_SL_MEAS = dcc.LinearGaussianMeasurement.inpainting(6, [0, 1], noise_std=0.2)
row(
    "diffcore.conditional.slice_posterior",
    lambda coupling, y: dcc.slice_posterior(np.zeros(2), np.eye(2), 3, coupling, _SL_MEAS, y).mean,
    {"coupling": 1.0, "y": np.array([0.3, -0.2])},
    {"coupling": "nonnegative", "y": "array"},
    out=None,
)
row(
    "diffcore.conditional.slice_prior",
    lambda n_slices, coupling: dcc.slice_prior(np.zeros(2), np.eye(2), n_slices, coupling).mean,
    {"n_slices": 3, "coupling": 1.0},
    {"n_slices": "count", "coupling": "nonnegative"},
    out=None,
)
row(
    "diffcore.conditional.slice_score",
    lambda x, t: dcc.slice_score(dc.exact_score(VP, G2), 3)(x, t),
    {"x": np.tile(X, (1, 3)), "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
row(
    "diffcore.conditional.slice_posterior_sampling",
    lambda x_init, steps, rng, coupling: dcc.slice_posterior_sampling(
        VP,
        dc.exact_score(VP, G2),
        _SL_MEAS,
        np.array([0.3, -0.2]),
        x_init,
        steps=steps,
        rng=rng,
        n_slices=3,
        coupling=coupling,
    ),
    {"x_init": np.tile(X, (1, 3)), "steps": 3, "rng": 0, "coupling": 1.0},
    {"x_init": "points", "steps": "count", "rng": "rng", "coupling": "nonnegative"},
    out=_x,
)

# converters
row(
    "diffcore.convert",
    lambda value, x, t, source: dc.convert(value, x, t, VP, source=source, target="x0"),
    {"value": X[::-1].copy(), "x": X, "t": 0.5, "source": "eps"},
    {"value": "points", "x": "points", "t": "time", "source": "choice"},
    nan="rows",
)
row(
    "diffcore.reparametrize",
    lambda x, model, source: dc.reparametrize(model, VP, source=source)(x, 0.5),
    {"x": X, "model": lambda x, t: -x, "source": "eps"},
    {"x": "points", "model": "model", "source": "choice"},
    nan="rows",
)
row(
    "diffcore.reverse_time",
    lambda x, field, kind: dc.reverse_time(field, kind)(x, 0.3),
    {"x": X, "field": FIELDS.velocity, "kind": "velocity"},
    {"x": "points", "field": "model", "kind": "choice"},
    nan="rows",
)
row(
    "diffcore.TimeReversed",
    lambda x, t: dc.TimeReversed(FIELDS.score, "score")(x, t),
    {"x": X, "t": 0.3},
    {"x": "points", "t": "time"},
    nan="rows",
)

# interpolants
for _it in (
    dc.LinearInterpolant(),
    dc.TrigonometricInterpolant(),
    dc.EncoderDecoderInterpolant(),
    dc.OneSidedInterpolant(),
):
    _in = f"diffcore.{type(_it).__name__}"
    row(f"{_in}.coef0", lambda t, _i=_it: _i.coef0(t), {"t": 0.5}, {"t": "time"}, out=None)
    row(f"{_in}.gamma", lambda t, _i=_it: _i.gamma(t), {"t": 0.5}, {"t": "time"}, out=None)
row(
    "diffcore.MirrorInterpolant",
    lambda gamma_scale: dc.MirrorInterpolant(gamma_scale),
    {"gamma_scale": 1.0},
    {"gamma_scale": "nonnegative"},
    out=None,
)
row(
    "diffcore.Interpolant",
    lambda t: dc.Interpolant(lambda t: 1 - t, lambda t: t, lambda t: 0 * t).coef1(t),
    {"t": 0.5},
    {"t": "time"},
    out=None,
)
for _field in ("velocity", "score", "denoiser", "log_prob"):
    row(
        f"diffcore.InterpolantFields.{_field}",
        lambda x, t, _f=_field: getattr(FIELDS, _f)(x, t),
        {"x": X, "t": 0.5},
        {"x": "points", "t": "time"},
        nan="rows",
    )
row(
    "diffcore.interpolant_fields",
    lambda t: dc.interpolant_fields(LINEAR, G2, GM).marginal(t),
    {"t": 0.4},
    {"t": "time"},
    out=None,
)
row(
    "diffcore.interpolant_from_process",
    lambda atol: dc.interpolant_from_process(RF, atol=atol),
    {"atol": 1e-12},
    {"atol": "nonnegative"},
    out=None,
)
row(
    "diffcore.process_from_interpolant",
    lambda t: dc.process_from_interpolant(dc.OneSidedInterpolant()).alpha(t),
    {"t": 0.5},
    {"t": "time"},
    out=None,
)
for _cp in (dc.independent_coupling, dc.minibatch_ot_coupling):
    row(
        f"diffcore.{_cp.__name__}",
        lambda x0, x1, rng, _c=_cp: _c(x0, x1, rng),
        {"x0": X, "x1": X[::-1].copy(), "rng": 0},
        {"x0": "points", "x1": "points", "rng": "rng"},
        out=lambda r: r[0],
    )

# likelihoods and densities
row(
    "diffcore.log_likelihood",
    lambda x, score, t_min, steps, divergence, method, batch_size: dc.log_likelihood(
        VP, score, x, t_min=t_min, steps=steps, divergence=divergence, method=method, batch_size=batch_size
    ),
    {"x": X, "score": SCORE, "t_min": 1e-2, "steps": 3, "divergence": "exact", "method": "rk4", "batch_size": 2},
    {
        "x": "points",
        "score": "model",
        "t_min": "time",
        "steps": "count",
        "divergence": "choice",
        "method": "choice",
        "batch_size": "count",
    },
    out=_value,
)
row(  # a flow-matching velocity (data at t = 1): the linear interpolant's exact velocity
    "diffcore.flow_log_likelihood",
    lambda x, velocity, steps, method, grid: dc.flow_log_likelihood(velocity, x, steps=steps, method=method, grid=grid),
    {"x": X, "velocity": FIELDS.velocity, "steps": 3, "method": "rk4", "grid": "uniform"},
    {"x": "points", "velocity": "model", "steps": "count", "method": "choice", "grid": "choice"},
    out=_value,
)
row(
    "diffcore.ito_log_density",
    lambda x_init, score, steps, prediction, rng: dc.ito_log_density(
        VP, score, x_init, steps=steps, prediction=prediction, rng=rng
    ),
    {"x_init": X, "score": SCORE, "steps": 3, "prediction": "score", "rng": 0},
    {"x_init": "points", "score": "model", "steps": "count", "prediction": "choice", "rng": "rng"},
    out=lambda r: r.log_density,
)
row(
    "diffcore.superpose",
    lambda x_init, score2, mode, steps, temperature: dc.superpose(
        VP, [SCORE, score2], x_init, mode=mode, steps=steps, temperature=temperature, rng=0
    ),
    {"x_init": X, "score2": dc.exact_score(VP, G2), "mode": "or", "steps": 3, "temperature": 1.0},
    {"x_init": "points", "score2": "model", "mode": "choice", "steps": "count", "temperature": "nonnegative"},
    names={"score2": "scores[1]"},
    out=lambda r: r.log_density,
)
row(
    "diffcore.superposition_weights",
    lambda log_densities, mode, temperature: dc.superposition_weights(log_densities, mode, temperature=temperature),
    {"log_densities": X, "mode": "or", "temperature": 1.0},
    {"log_densities": "points", "mode": "choice", "temperature": "nonnegative"},
)
row(
    "diffcore.and_weights",
    lambda scores, offsets, scale: dc.and_weights(scores, offsets, scale),
    {"scores": np.stack([X, X[::-1] + 1.0], axis=1), "offsets": X, "scale": 0.1},
    {"scores": "points", "offsets": "points", "scale": "positive"},
)
row(
    "diffcore.divergence",
    lambda x, score, t, fd_step: dc.divergence(score, x, t, fd_step=fd_step),
    {"x": X, "score": lambda x, t: -(x**3), "t": 0.5, "fd_step": 1e-4},
    {"x": "points", "score": "model", "t": "time", "fd_step": "positive"},
    nan="rows",
)
row(
    "diffcore.t_min_gap",
    lambda x, t_min: dc.t_min_gap(VP, GM, x, t_min),
    {"x": X, "t_min": 1e-2},
    {"x": "points", "t_min": "time"},
    out=lambda r: r.exact,
)
row(
    "diffcore.bits_per_dim",
    lambda log_likelihood, dim, n_bins: dc.bits_per_dim(log_likelihood, dim, n_bins=n_bins, low=-1.0, high=1.0),
    {"log_likelihood": -X[:, 0], "dim": 2, "n_bins": 256},
    {"log_likelihood": "values", "dim": "count", "n_bins": "count"},
)
row(
    "diffcore.dequantize",
    lambda n_bins, rng: dc.dequantize(np.array([[0, 3], [255, 17]]), n_bins, rng),
    {"n_bins": 256, "rng": 0},
    {"n_bins": "count", "rng": "rng"},
    out=None,
)
row(
    "diffcore.AugmentedFlow",
    lambda y, t: dc.AugmentedFlow(VP, SCORE, (2,), None, 1e-4, "closed_form").drift(y, t),
    {"y": np.concatenate([X, np.zeros((5, 1))], axis=1), "t": 0.5},
    {"y": "points", "t": "time"},
    nan="rows",
)

# Fokker-Planck
row(
    "diffcore.fp_residual",
    lambda x, score, t, method: dc.fp_residual(VP, score, x, t, method=method),
    {"x": X, "score": SCORE, "t": 0.5, "method": "fd"},
    {"x": "points", "score": "model", "t": "time", "method": "choice"},
)
row(
    "diffcore.fp_residual_log_density",
    lambda x, log_prob, t: dc.fp_residual_log_density(VP, log_prob, x, t),
    {"x": X, "log_prob": dc.exact_log_prob(VP, GM), "t": 0.5},
    {"x": "points", "log_prob": "density_model", "t": "time"},
)
row(
    "diffcore.fp_terms",
    lambda x, field, kind: dc.fp_terms(VP, field, x, 0.5, kind=kind),
    {"x": X, "field": SCORE, "kind": "score"},
    {"x": "points", "field": "model", "kind": "choice"},
    names={"field": "score"},
    out=lambda r: r.lhs,
)
row(
    "diffcore.fp_residual_norm",
    lambda ts, points, score: dc.fp_residual_norm(VP, score, ts, points),
    {"ts": [0.2, 0.5, 0.8], "points": X, "score": SCORE},
    {"ts": "times", "points": "points", "score": "model"},
    out=None,
    empty="error",
)
row(
    "diffcore.ode_sde_gap",
    lambda x_init, score, steps: dc.ode_sde_gap(VP, score, x_init, steps=steps, rng=0),
    {"x_init": X, "score": SCORE, "steps": 3},
    {"x_init": "points", "score": "model", "steps": "count"},
    out=None,
    empty="error",
)

# metrics
row(
    "diffcore.w2",
    lambda x, y, max_iter: dc.w2(x, y, max_iter=max_iter),
    {"x": X, "y": X[:4] + 0.5, "max_iter": 10_000},
    {"x": "points", "y": "points", "max_iter": "count"},
    out=None,
    empty="error",
)
row(
    "diffcore.sliced_w2",
    lambda x, y, n_projections, rng: dc.sliced_w2(x, y, n_projections, rng),
    {"x": X, "y": X[:4] + 0.5, "n_projections": 16, "rng": 0},
    {"x": "points", "y": "points", "n_projections": "count", "rng": "rng"},
    out=None,
    empty="error",
)
row(
    "diffcore.w2_gaussian",
    lambda mean1, cov1, mean2, cov2: dc.w2_gaussian(mean1, cov1, mean2, cov2),
    {"mean1": G2.mean, "cov1": G2.cov, "mean2": np.zeros(2), "cov2": np.eye(2)},
    {"mean1": "array", "cov1": "array", "mean2": "array", "cov2": "array"},
    out=None,
)
row(
    "diffcore.w2_floor",
    lambda n, repeats: dc.w2_floor(G2, n, repeats=repeats, rng=0),
    {"n": 8, "repeats": 2},
    {"n": "count", "repeats": "count"},
    out=None,
)
row(
    "diffcore.path_straightness",
    lambda path, ts: dc.path_straightness(path, ts),
    {"path": np.stack([X, 0.5 * X + 0.1, 0.1 * X - 0.3]), "ts": [1.0, 0.5, 0.1]},
    {"path": "array", "ts": "grid"},
    out=None,
)
row(
    "diffcore.EmpiricalModelStatistics",
    lambda lambdas: dc.EmpiricalModelStatistics(lambdas, np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2))),
    {"lambdas": [-1.0, 0.0, 1.0]},
    {"lambdas": "grid"},
    out=None,
)
row(
    "diffcore.model_statistics",
    lambda lambdas, rng: dc.model_statistics(VP, SCORE, X, lambdas, rng=rng),
    {"lambdas": [-1.0, 0.0, 1.0], "rng": 0},
    {"lambdas": "grid", "rng": "rng"},
    out=None,
)
row(
    "diffcore.exact_model_statistics",
    lambda lambdas, n, rng: dc.exact_model_statistics(VP, GM, lambdas, n=n, rng=rng),
    {"lambdas": [-1.0, 0.0, 1.0], "n": 8, "rng": 0},
    {"lambdas": "grid", "n": "size", "rng": "rng"},
    out=None,
)
row(
    "diffcore.time_grid",
    lambda steps, t_min, kind: dc.time_grid(VP, steps, t_min=t_min, kind=kind),
    {"steps": 4, "t_min": 1e-3, "kind": "log_snr"},
    {"steps": "count", "t_min": "time", "kind": "choice"},
    out=None,
)

# graphs
row(
    "diffcore.sample_graphs",
    lambda score, mask, steps, method, snr: dc.sample_graphs(
        SYSTEM, score, mask, n_features=LAB.n_features, steps=steps, method=method, snr=snr, rng=0
    ),
    {"score": GSCORE, "mask": GMASK, "steps": 2, "method": "pc", "snr": 0.1},
    {"score": "joint_model", "steps": "count", "method": "choice", "snr": "nonnegative"},
    out=None,
)
row(
    "diffcore.graphs.GraphReverseSDE",
    lambda x, t, score: dg.GraphReverseSDE(SYSTEM, score, np.ones((1, 5)), LAB.n_features).drift(x, t),
    {"x": dg.pack(GX, GA), "t": 0.5, "score": lambda X, A, t, mask: (-X, -A)},  # the score of N(0, I)
    {"x": "points", "t": "time", "score": "joint_model"},
    nan="rows",
)
row(
    "diffcore.graphs.PackedProcess",
    lambda x, t: dg.PackedProcess(SYSTEM, np.ones((1, 5)), LAB.n_features).drift(x, t),
    {"x": dg.pack(GX, GA), "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
row(
    "diffcore.GraphSDE",
    lambda X0, A0, t: SYSTEM.sample_marginal(X0, A0, t, rng=0, mask=GMASK),
    {"X0": GX, "A0": GA, "t": 0.5},
    {"X0": "graphs", "A0": "graphs", "t": "time"},
    names={"X0": "X", "A0": "A"},
    out=None,
)
row(
    "diffcore.GraphLaboratory",
    lambda tau: dg.GraphLaboratory(LAB_TEMPLATES, tau=tau),
    {"tau": 0.1},
    {"tau": "positive"},
    out=None,
)
row(
    "diffcore.graphs.GraphLaboratory.sample",
    lambda n, rng: LAB.sample(n, rng),
    {"n": 3, "rng": 0},
    {"n": "size", "rng": "rng"},
    out=None,
)
row(
    "diffcore.graphs.check_graphs",
    lambda X, A: dg.check_graphs(X, A, GMASK),
    {"X": GX, "A": GA},
    {"X": "graphs", "A": "graphs"},
    out=None,
)
row("diffcore.graphs.pack", lambda X, A: dg.pack(X, A), {"X": GX, "A": GA}, {"X": "graphs", "A": "graphs"}, nan="rows")
row(
    "diffcore.graphs.unpack",
    lambda z, n_nodes, n_features: dg.unpack(z, n_nodes, n_features),
    {"z": dg.pack(GX, GA), "n_nodes": LAB.n_nodes, "n_features": LAB.n_features},
    {"z": "points", "n_nodes": "count", "n_features": "size"},
    out=lambda r: r[0],
    nan="rows",
)
row(
    "diffcore.graphs.packed_mask",
    lambda n_features: dg.packed_mask(GMASK, n_features),
    {"n_features": LAB.n_features},
    {"n_features": "size"},
    out=None,
)
row(
    "diffcore.graphs.n_coordinates",
    lambda n_nodes, n_features: dg.n_coordinates(n_nodes, n_features),
    {"n_nodes": 4, "n_features": 1},
    {"n_nodes": "count", "n_features": "size"},
    out=None,
)
row(
    "diffcore.graphs.quantize",
    lambda A, threshold: dg.quantize(A, threshold, GMASK),
    {"A": GA, "threshold": 0.5},
    {"A": "graphs", "threshold": "real"},
    out=None,
)
row(
    "diffcore.graphs.symmetric_noise",
    lambda rng: dg.symmetric_noise((2, 4, 4), rng),
    {"rng": 0},
    {"rng": "rng"},
    out=None,
)
row(
    "diffcore.graphs.to_networkx",
    lambda A: [nx.to_numpy_array(g) for g in dg.to_networkx(GX, A, GMASK)],
    {"A": GA},
    {"A": "graphs"},
    out=None,
)
for _stat in (dg.laplacian_spectra, dg.degree_histograms, dg.clustering_histograms, dg.spectrum_histograms):
    row(
        f"diffcore.graphs.{_stat.__name__}",
        lambda graphs, _s=_stat: _s(graphs, GMASK),
        {"graphs": GA},
        {"graphs": "graphs"},
        out=None,
    )
row(
    "diffcore.graphs.graph_mmd2",
    lambda graphs_1, convention: dg.graph_mmd2(graphs_1, GA, mask_1=GMASK, mask_2=GMASK, convention=convention),
    {"graphs_1": GA, "convention": "gdss"},
    {"graphs_1": "graphs", "convention": "choice"},
    out=None,
)
row(
    "diffcore.graphs.graph_mmd2_floor",
    lambda n, repeats: dg.graph_mmd2_floor(_lab_graphs, n, repeats=repeats, rng=0),
    {"n": 3, "repeats": 2},
    {"n": "count", "repeats": "count"},
    out=None,
)
row(
    "diffcore.graphs.spectrum_w2",
    lambda graphs_1: dg.spectrum_w2(graphs_1, GA, mask_1=GMASK, mask_2=GMASK),
    {"graphs_1": GA},
    {"graphs_1": "graphs"},
    out=None,
)
_HIST = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
for _fn, _extra in ((dg.histogram_emd, {}), (dg.histogram_kernel, {"sigma": 1.0}), (dg.mmd2, {"sigma": 1.0})):
    row(
        f"diffcore.graphs.{_fn.__name__}",
        lambda samples_1, _f=_fn, **kw: _f(samples_1, _HIST, **kw),
        {"samples_1": _HIST[::-1].copy(), **_extra},
        {"samples_1": "values", **dict.fromkeys(_extra, "positive")},
        out=None,
    )
row("diffcore.graphs.S4", lambda snr: dg.S4(snr=snr), {"snr": 0.1}, {"snr": "nonnegative"}, out=None)
row(
    "diffcore.graphs.linear_half_step",
    lambda x, t1: dg.linear_half_step(VP, x, 0.5, t1, np.zeros(np.shape(x))),
    {"x": X, "t1": 0.4},
    {"x": "values", "t1": "time"},
    nan="rows",
)

# the correctness kit
row(
    "diffcore.testing.fit_order",
    lambda steps, errors: dt.fit_order(steps, errors),
    {"steps": np.array([10, 20, 40]), "errors": np.array([1e-2, 2.6e-3, 6e-4])},
    {"steps": "values", "errors": "values"},
    out=None,
)
row(
    "diffcore.testing.propagate_gaussian_law",
    lambda mean, cov, ts, solver: dt.propagate_gaussian_law(
        dc.ReverseSDE(VP, dc.exact_score(VP, G2)), solver, mean, cov, ts
    ),
    {"mean": G2.mean, "cov": G2.cov, "ts": [1.0, 0.5, 0.1], "solver": "euler_maruyama"},
    {"mean": "array", "cov": "array", "ts": "grid", "solver": "choice"},
    names={"solver": "method"},
    out=None,
)
row(
    "diffcore.testing.reference_ode_solution",
    lambda x_init, t_end: dt.reference_ode_solution(
        dc.ProbabilityFlowODE(VP, SCORE), x_init, 1.0, t_end, rtol=1e-6, atol=1e-6
    ),
    {"x_init": X, "t_end": 0.1},
    {"x_init": "points", "t_end": "time"},
)
row(
    "diffcore.testing.symmetrise",
    lambda x, k: dt.symmetrise(x, k),
    {"x": X, "k": 4},
    {"x": "points", "k": "count"},
    out=None,
)
row("diffcore.testing.rotations", lambda k: dt.rotations(k), {"k": 4}, {"k": "count"}, out=None)
row(
    "diffcore.testing.Symmetrised", lambda k: dt.Symmetrised(G2, k).sample(8, rng=0), {"k": 4}, {"k": "count"}, out=None
)
# the kit: a sampler is a "model" here (its output is checked like a model's); the model checks report a
# misbehaving model in their result instead of raising, so their models are not argument kinds
row(
    "diffcore.testing.check_sampler",
    lambda sampler, problem, declared_order, kind, n, rng, t_min: dt.check_sampler(
        sampler, problem, declared_order=declared_order, kind=kind, n=n, rng=rng, t_min=t_min, steps=(4, 8)
    ),
    {
        "sampler": dt.sampler_from_solver("ddim", VP),
        "problem": "P1",
        "declared_order": 1,
        "kind": "ode",
        "n": 4,
        "rng": 0,
        "t_min": 1e-2,
    },
    {
        "sampler": "model",
        "problem": "choice",
        "declared_order": "count",
        "kind": "choice",
        "n": "count",
        "rng": "rng",
        "t_min": "time",
    },
    out=None,
)
row(
    "diffcore.testing.check_score_model",
    lambda problem, times, n, tolerance, rng: dt.check_score_model(
        dt.Problem("P1").score, problem, times=times, n=n, tolerance=tolerance, rng=rng
    ),
    {"problem": "P1", "times": (0.2, 0.6), "n": 8, "tolerance": 0.05, "rng": 0},
    {"problem": "choice", "times": "times", "n": "count", "tolerance": "positive", "rng": "rng"},
    out=None,
)
row(
    "diffcore.testing.check_likelihood",
    lambda problem, t, n, tolerance, rng: dt.check_likelihood(
        lambda x: dt.Problem("P1").log_prob(x, t), problem, t=t, n=n, tolerance=tolerance, rng=rng
    ),
    {"problem": "P1", "t": 0.1, "n": 8, "tolerance": 0.01, "rng": 0},
    {"problem": "choice", "t": "time", "n": "count", "tolerance": "nonnegative", "rng": "rng"},
    out=None,
)
row(
    "diffcore.testing.check_schedule",
    lambda process, times, n, rng: dt.check_schedule(process, times=times, n=n, rng=rng),
    {"process": VP, "times": (0.2, 0.6), "n": 2, "rng": 0},
    {"process": "choice", "times": "times", "n": "count", "rng": "rng"},
    out=None,
)
row(
    "diffcore.testing.check_graph_score",
    lambda problem, times, n, rtol, rng: dt.check_graph_score(
        dt.Problem("graphs").graph_score, problem, times=times, n=n, rtol=rtol, rng=rng
    ),
    {"problem": "graphs", "times": (0.5,), "n": 3, "rtol": 1e-8, "rng": 0},
    {"problem": "choice", "times": "times", "n": "count", "rtol": "positive", "rng": "rng"},
    out=None,
)
row(
    "diffcore.testing.Problem",
    lambda name, n, t, rng: dt.Problem(name).sample_marginal(n, t, rng=rng),
    {"name": "P1", "n": 5, "t": 0.5, "rng": 0},
    {"name": "choice", "n": "size", "t": "time", "rng": "rng"},
    names={"name": "problem"},
    out=None,
)
row(
    "diffcore.testing.sampler_from_solver",
    lambda solver, x_init: dt.sampler_from_solver(solver, VP)(SCORE, x_init, [1.0, 0.5]),
    {"solver": "heun", "x_init": X},
    {"solver": "choice", "x_init": "points"},
    names={"solver": "method"},
)
row(
    "diffcore.testing.solver_from_step",
    lambda order, uses, name: dc.sample(
        VP,
        SCORE,
        X,
        method=dt.solver_from_step(lambda b, x, t0, t1: x + (t1 - t0) * b(x, t0), order=order, uses=uses, name=name),
        steps=2,
    ),
    {"order": 1, "uses": "drift", "name": "my_euler"},
    {"order": "count", "uses": "choice"},
    out=_x,
)
for _make, _counts in (
    (dt.circle_mixture, {"k": 4}),
    (dt.random_gaussian, {"d": 3}),
    (dt.anisotropic_mixture, {"d": 3, "k": 2}),
):
    row(
        f"diffcore.testing.{_make.__name__}",
        lambda _m=_make, **kw: _m(**kw).sample(4, rng=0),
        _counts,
        dict.fromkeys(_counts, "count"),
        out=None,
    )

# the adapters (diffusers, k-diffusion, flow_matching): the callables they return are the boundary
_ddim = __import__("diffusers").DDIMScheduler(num_train_timesteps=100, timestep_spacing="trailing", clip_sample=False)
_DVP = di.process_from_diffusers(_ddim)
_DSCORE = dc.exact_score(_DVP, GM)
_DMODEL = di.model_for_diffusers(_DSCORE, _DVP, _ddim)
_KSAMPLING = di.import_kdiffusion_sampling()
row(
    "diffcore.interop.timestep_to_time",
    lambda timestep, num_train_timesteps: di.timestep_to_time(timestep, num_train_timesteps),
    {"timestep": np.array([0.0, 3.5, 99.0]), "num_train_timesteps": 100},
    {"timestep": "values", "num_train_timesteps": "count"},
    out=None,
)
row(
    "diffcore.interop.time_to_timestep",
    lambda t, num_train_timesteps: di.time_to_timestep(t, num_train_timesteps),
    {"t": 0.5, "num_train_timesteps": 100},
    {"t": "time", "num_train_timesteps": "count"},
    out=None,
)
row(
    "diffcore.interop.process_from_diffusers",
    lambda alphas_cumprod: di.process_from_diffusers(alphas_cumprod).alpha(0.5),
    {"alphas_cumprod": np.cumprod(1 - np.linspace(1e-3, 0.1, 50))},
    {"alphas_cumprod": "array"},
    out=None,
)
row(
    "diffcore.interop.diffusers_betas",
    lambda num_train_timesteps: di.diffusers_betas(VP, num_train_timesteps),
    {"num_train_timesteps": 100},
    {"num_train_timesteps": "count"},
    out=None,
)
row(
    "diffcore.interop.score_from_diffusers",
    lambda x, t, model: di.score_from_diffusers(model, _ddim)(x, t),
    {"x": X, "t": 0.5, "model": _DMODEL},
    {"x": "points", "t": "time", "model": "model"},
    nan="rows",
)
row(
    "diffcore.interop.model_for_diffusers",
    lambda x, score: di.model_for_diffusers(score, _DVP, _ddim)(x, 49),
    {"x": X, "score": _DSCORE},
    {"x": "points", "score": "model"},
    nan="rows",
)
row(
    "diffcore.interop.denoise_from_diffusers",
    lambda x, model: di.denoise_from_diffusers(model, x, 9, _ddim),
    {"x": X, "model": _DMODEL},
    {"x": "points", "model": "model"},
)
row(
    "diffcore.interop.sampler_from_diffusers",
    lambda x_init, score, ts: di.sampler_from_diffusers(_ddim, _DVP)(score, x_init, ts),
    {"x_init": X, "score": _DSCORE, "ts": di.sampler_from_diffusers(_ddim, _DVP).time_grid(4)},
    {"x_init": "points", "score": "model", "ts": "grid"},
)
row(
    "diffcore.interop.score_from_kdiffusion",
    lambda x, t, denoiser: di.score_from_kdiffusion(denoiser, VP)(x, t),
    {"x": X, "t": 0.5, "denoiser": di.denoiser_for_kdiffusion(SCORE, VP)},
    {"x": "points", "t": "time", "denoiser": "model"},
    nan="rows",
)
row(
    "diffcore.interop.denoiser_for_kdiffusion",
    lambda x, score: di.denoiser_for_kdiffusion(score, VP)(x, 2.0),
    {"x": X, "score": SCORE},
    {"x": "points", "score": "model"},
    nan="rows",
)
row(
    "diffcore.interop.sampler_from_kdiffusion",
    lambda x_init, score, ts, rng: di.sampler_from_kdiffusion(_KSAMPLING.sample_heun, VP)(score, x_init, ts, rng=rng),
    {"x_init": X, "score": SCORE, "ts": [1.0, 0.5, 0.1], "rng": 0},
    {"x_init": "points", "score": "model", "ts": "grid", "rng": "rng"},
)
row(
    "diffcore.interop.velocity_from_flow_matching",
    lambda x, t, velocity: di.velocity_from_flow_matching(velocity)(x, t),
    {"x": X, "t": 0.5, "velocity": FIELDS.velocity},
    {"x": "points", "t": "time", "velocity": "model"},
    nan="rows",
)
row(
    "diffcore.interop.velocity_for_flow_matching",
    lambda x, t, velocity: di.velocity_for_flow_matching(velocity)(x=x, t=t),
    {"x": X, "t": 0.5, "velocity": FIELDS.velocity},
    {"x": "points", "t": "time", "velocity": "model"},
    nan="rows",
)
row(
    "diffcore.interop.sampler_from_flow_matching",
    lambda x_init, score, ts: di.sampler_from_flow_matching(VP, method="heun2")(score, x_init, ts),
    {"x_init": X, "score": SCORE, "ts": [1.0, 0.5, 0.1]},
    {"x_init": "points", "score": "model", "ts": "grid"},
)

# training (torch)
row(
    "diffcore.training.MLPField",
    lambda x, t: NET(x, t),
    {"x": X, "t": 0.5},
    {"x": "points", "t": "time"},
    nan="rows",
)
row(
    "diffcore.training.MLPField.__init__",
    lambda dim, width: dtr.MLPField(dim, width=width, depth=1),
    {"dim": 2, "width": 4},
    {"dim": "count", "width": "count"},
    out=None,
)
MAPNET = dtr.MLPMap(2, width=8, depth=1, rng=0, dtype=torch.float64)
row(
    "diffcore.training.MLPMap",
    lambda x, t, s: MAPNET(x, t, s),
    {"x": X, "t": 0.5, "s": 0.2},
    {"x": "points", "t": "time", "s": "real"},  # s may be the shortcut's negative step
    nan="rows",
)
row(
    "diffcore.training.MLPMap.__init__",
    lambda dim, width: dtr.MLPMap(dim, width=width, depth=1),
    {"dim": 2, "width": 4},
    {"dim": "count", "width": "count"},
    out=None,
)
row(
    "diffcore.training.GraphScoreNet",
    lambda X, A, t: GNET(X, A, t, GMASK),
    {"X": GX, "A": GA, "t": 0.5},
    {"X": "graphs", "A": "graphs", "t": "time"},
    out=lambda r: r[0],
    nan="rows",
)
for _loss in (dtr.denoising_loss, dtr.dsm_loss, dtr.dsm_fp_loss):
    row(
        f"diffcore.training.{_loss.__name__}",
        lambda model, x0, t_min, rng, _l=_loss: _l(model, x0, VP, rng, t_min=t_min),
        {"model": NET, "x0": X, "t_min": 1e-2, "rng": 0},
        {"model": "model", "x0": "points", "t_min": "time", "rng": "rng"},
        out=None,
        empty="error",
    )
row(
    "diffcore.training.fp_penalty",
    lambda model, x, t: dtr.fp_penalty(VP, model, x, t),
    {"model": NET, "x": TX, "t": 0.5},
    {"model": "model", "x": "points", "t": "time"},
    names={"model": "score"},
    out=None,
    empty="error",
)
for _loss in (
    dtr.flow_matching_loss,
    dtr.interpolant_velocity_loss,
    dtr.interpolant_score_loss,
    dtr.interpolant_denoiser_loss,
):
    row(
        f"diffcore.training.{_loss.__name__}",
        lambda model, batch, t_max, rng, _l=_loss: _l(model, batch, LINEAR, rng, t_max=t_max),
        {"model": NET, "batch": X, "t_max": 0.9, "rng": 0},
        {"model": "model", "batch": "points", "t_max": "time", "rng": "rng"},
        out=None,
        empty="error",
    )
_MAP = lambda x, t, s: 0.9 * x  # noqa: E731 - a flow-map family (x, t, s) -> (n, d)
_TEACHER = lambda x, t, s: 0.95 * x  # noqa: E731
for _name, _call in {
    "consistency_distillation_loss": lambda x0, steps, t_min, rng: dtr.consistency_distillation_loss(
        _MAP, x0, VP, _TEACHER, rng, steps=steps, t_min=t_min
    ),
    "consistency_training_loss": lambda x0, steps, t_min, rng: dtr.consistency_training_loss(
        _MAP, x0, VP, rng, steps=steps, t_min=t_min
    ),
}.items():
    row(
        f"diffcore.training.{_name}",
        _call,
        {"x0": X, "steps": 4, "t_min": 1e-2, "rng": 0},
        {"x0": "points", "steps": "count", "t_min": "time", "rng": "rng"},
        out=None,
        empty="error",
    )
row(
    "diffcore.training.progressive_distillation_loss",
    lambda x0, steps, t_min, rng: dtr.progressive_distillation_loss(
        lambda x, t: 0.5 * x, x0, VP, lambda x, t: 0.4 * x, rng, steps=steps, t_min=t_min
    ),
    {"x0": X, "steps": 3, "t_min": 1e-2, "rng": 0},
    {"x0": "points", "steps": "count", "t_min": "time", "rng": "rng"},
    out=None,
    empty="error",
)
row(
    "diffcore.training.guided_distillation_loss",
    lambda x0, w_max, t_min, rng: dtr.guided_distillation_loss(
        lambda x, t, w: 0.5 * x, x0, VP, lambda x, t: 0.4 * x, lambda x, t: 0.3 * x, rng, w_max=w_max, t_min=t_min
    ),
    {"x0": X, "w_max": 2.0, "t_min": 1e-2, "rng": 0},
    {"x0": "points", "w_max": "real", "t_min": "time", "rng": "rng"},
    out=None,
    empty="error",
)
row(
    "diffcore.training.eulerian_distillation_loss",
    lambda x0, t_min, rng: dtr.eulerian_distillation_loss(_MAP, x0, VP, lambda x, t: -x, rng, t_min=t_min),
    {"x0": X, "t_min": 1e-2, "rng": 0},
    {"x0": "points", "t_min": "time", "rng": "rng"},
    out=None,
    empty="error",
)
row(
    "diffcore.training.boot_loss",
    lambda eps, steps, t_min, rng: dtr.boot_loss(
        lambda e, t: 0.5 * e, eps, VP, _TEACHER, rng, steps=steps, t_min=t_min
    ),
    {"eps": X, "steps": 3, "t_min": 1e-2, "rng": 0},
    {"eps": "points", "steps": "count", "t_min": "time", "rng": "rng"},
    out=None,
    empty="error",
)
row(
    "diffcore.training.sde_teacher",
    lambda x, t, s, eta, substeps, rng: dtr.sde_teacher(VP, SCORE, eta, substeps=substeps, rng=rng)(x, t, s),
    {"x": X, "t": 0.8, "s": 0.5, "eta": 0.5, "substeps": 2, "rng": 0},
    {"x": "points", "t": "time", "s": "time", "eta": "nonnegative", "substeps": "count", "rng": "rng"},
    empty="error",
)
row(
    "diffcore.training.add_lora",
    lambda rank, alpha, rng: dtr.add_lora(torch.nn.Sequential(torch.nn.Linear(3, 3)), rank, alpha=alpha, rng=rng),
    {"rank": 2, "alpha": 1.0, "rng": 0},
    {"rank": "count", "alpha": "positive", "rng": "rng"},
    out=None,
)
row(
    "diffcore.training.shortcut_loss",
    lambda batch, consistency_fraction, doublings, rng: dtr.shortcut_loss(
        _MAP, batch, LINEAR, rng, consistency_fraction=consistency_fraction, doublings=doublings
    ),
    {"batch": X, "consistency_fraction": 0.5, "doublings": 3, "rng": 0},
    {"batch": "points", "consistency_fraction": "real", "doublings": "count", "rng": "rng"},
    out=None,
    empty="error",
)
row(
    "diffcore.training.meanflow_loss",
    lambda batch, t_max, equal_fraction, rng: dtr.meanflow_loss(
        _MAP, batch, LINEAR, rng, t_max=t_max, equal_fraction=equal_fraction
    ),
    {"batch": X, "t_max": 0.9, "equal_fraction": 0.5, "rng": 0},
    {"batch": "points", "t_max": "time", "equal_fraction": "real", "rng": "rng"},
    out=None,
    empty="error",
)
row(
    "diffcore.training.solver_teacher",
    lambda x, t, s: dtr.solver_teacher(VP, SCORE, "heun")(x, t, s),
    {"x": X, "t": 0.8, "s": 0.5},
    {"x": "points", "t": "time", "s": "time"},
)
row(
    "diffcore.training.graph_dsm_loss",
    lambda model, X0, A0: dtr.graph_dsm_loss(model, X0, A0, GMASK, SYSTEM, 0),
    {"model": GNET, "X0": GX, "A0": GA},
    {"model": "joint_model", "X0": "graphs", "A0": "graphs"},
    out=None,
)
row(
    "diffcore.training.field_error",
    lambda learned, n, times: dtr.field_error(learned, SCORE, VP, GM, times=times, n=n, rng=0),
    {"learned": SCORE, "n": 16, "times": (0.2, 0.6)},
    {"learned": "model", "n": "count", "times": "times"},
    out=None,
)
row(
    "diffcore.training.graph_score_error",
    lambda learned, n: dtr.graph_score_error(learned, GSCORE, lambda k, rng: LAB.sample(k, rng), SYSTEM, n=n, rng=0),
    {"learned": GSCORE, "n": 4},
    {"learned": "joint_model", "n": "count"},
    out=None,
)
row(
    "diffcore.training.fit",
    lambda steps, batch_size, lr, schedule: dtr.fit(
        dtr.MLPField(2, width=4, depth=1, rng=0),
        _dsm,
        X,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        rng=0,
        progress=False,
    ),
    {"steps": 2, "batch_size": 4, "lr": 1e-3, "schedule": "constant"},
    {"steps": "count", "batch_size": "count", "lr": "positive", "schedule": "choice"},
    out=None,
)


# -- what each kind of argument is given, and what must happen ---------------------------------------
def _lib(a: Any) -> Any:
    return torch if isinstance(a, torch.Tensor) else np


def _as(a: Any, dtype: str) -> Any:
    if isinstance(a, torch.Tensor):
        return a.to(getattr(torch, dtype))
    return np.asarray(a).astype(dtype)


def _with_nan(a: Any) -> Any:
    b = a.clone() if isinstance(a, torch.Tensor) else np.array(a, dtype=np.float64)
    b.reshape(-1)[1 if math.prod(b.shape) > 1 else 0] = math.nan  # in the first row; off the diagonal of an adjacency
    return b


def _other_library(a: Any) -> Any:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))


#: errors: ``("error", exception types)``; valid edge cases: ``("same", to_float)``, ``("empty",)``, ``("nan",)``
ERROR = (TypeError, ValueError)


def _bad_model(f: Callable, how: str) -> Callable:
    """``f`` made to return something a model must not: the wrong shape, a list, None, ..."""

    def bad(x: Any, *args: Any) -> Any:
        out = f(x, *args)
        if how == "wrong_shape":
            return out[..., :1] if out.ndim > 1 else out[:1]
        if how == "list":
            return np.asarray(out.detach() if isinstance(out, torch.Tensor) else out).tolist()
        if how == "none":
            return None
        if how == "other_library":
            return _other_library(out.detach() if isinstance(out, torch.Tensor) else out)
        if how == "complex":
            return out.to(torch.complex128) if isinstance(out, torch.Tensor) else out * (1 + 0j)
        return _as(out.detach() if isinstance(out, torch.Tensor) else out, "int64")  # "integer"

    return bad


def _bad_joint_model(f: Callable, how: str) -> Callable:
    def bad(X: Any, A: Any, *args: Any) -> Any:
        s_x, s_a = f(X, A, *args)
        if how == "not_a_pair":
            return s_x
        if how == "wrong_shape":
            return s_x, s_a[..., :1]
        if how == "none":
            return None
        if how == "other_library":
            return _other_library(s_x), _other_library(s_a)
        return _as(s_x, "int64"), _as(s_a, "int64")  # "integer"

    return bad


#: kind -> {variant: (how to make the bad value from the valid one, what must happen)}
VARIANTS: dict[str, dict[str, tuple[Callable[[Any], Any], str]]] = {
    "points": {
        "int": (lambda a: _as(_lib(a).round(3 * a), "int64"), "same"),
        "bool": (lambda a: a > 0, "same"),
        "complex": (lambda a: _as(a, "complex128"), "error"),
        "nan": (_with_nan, "nan"),
        "empty": (lambda a: a[:0], "empty"),
        "list": (lambda a: np.asarray(a).tolist(), "error"),
        "0-d": (lambda a: np.asarray(1.0), "error"),
        "mixed": (_other_library, "mixed"),
    },
    "graphs": {
        "int": (lambda a: _as(_lib(a).round(a), "int64"), "same"),
        "complex": (lambda a: _as(a, "complex128"), "error"),
        "nan": (_with_nan, "nan"),
        "list": (lambda a: np.asarray(a).tolist(), "error"),
        "mixed": (_other_library, "mixed"),
    },
    "array": {
        "complex": (lambda a: _as(a, "complex128"), "error"),
        "nan": (_with_nan, "error"),
        "mixed": (_other_library, "mixed"),
    },
    "values": {
        "complex": (lambda a: _as(a, "complex128"), "error"),
        "nan": (_with_nan, "nan"),
        "string": (lambda a: "1.0", "error"),
    },
    "model": {
        how: (lambda f, _h=how: _bad_model(f, _h), "model")
        for how in ("wrong_shape", "list", "none", "other_library", "complex", "integer")
    },
    "density_model": {
        how: (lambda f, _h=how: _bad_model(f, _h), "model")
        for how in ("list", "none", "other_library", "complex", "integer")
    },
    "joint_model": {
        how: (lambda f, _h=how: _bad_joint_model(f, _h), "model")
        for how in ("not_a_pair", "wrong_shape", "none", "other_library", "integer")
    },
    "time": {
        "above-one": (lambda a: 1.5, "error"),
        "negative": (lambda a: -0.1, "error"),
        "nan": (lambda a: math.nan, "error"),
        "bool": (lambda a: True, "error"),
        "matrix": (lambda a: np.full((2, 2), 0.5), "error"),
        "string": (lambda a: "0.5", "error"),
    },
    "times": {  # a set of times (not necessarily ordered)
        "nan": (lambda a: [0.5, math.nan], "error"),
        "outside": (lambda a: [0.5, 1.5], "error"),
        "string": (lambda a: ["0.5"], "error"),
    },
    "grid": {
        "not-monotone": (lambda a: [0.9, 0.3, 0.6], "error"),
        "nan": (lambda a: [0.9, math.nan, 0.2], "error"),
        "one-time": (lambda a: [0.5], "error"),
        "outside": (lambda a: [1.5, 0.5, 0.2], "error"),
    },
    "count": {
        "zero": (lambda a: 0, "error"),
        "negative": (lambda a: -2, "error"),
        "float": (lambda a: 2.5, "error"),
        "bool": (lambda a: True, "error"),
        "string": (lambda a: "3", "error"),
    },
    "size": {
        "negative": (lambda a: -1, "error"),
        "float": (lambda a: 2.5, "error"),
        "bool": (lambda a: True, "error"),
    },
    "positive": {
        "zero": (lambda a: 0.0, "error"),
        "negative": (lambda a: -1.0, "error"),
        "nan": (lambda a: math.nan, "error"),
        "inf": (lambda a: math.inf, "error"),
        "string": (lambda a: "1", "error"),
        "bool": (lambda a: True, "error"),
        "array": (lambda a: np.array([1.0, 2.0]), "error"),
    },
    "nonnegative": {
        "negative": (lambda a: -1.0, "error"),
        "nan": (lambda a: math.nan, "error"),
        "inf": (lambda a: math.inf, "error"),
        "string": (lambda a: "1", "error"),
        "bool": (lambda a: True, "error"),
    },
    "real": {
        "nan": (lambda a: math.nan, "error"),
        "inf": (lambda a: math.inf, "error"),
        "string": (lambda a: "1", "error"),
        "bool": (lambda a: True, "error"),
        "array": (lambda a: np.array([1.0, 2.0]), "error"),
    },
    "choice": {"unknown": (lambda a: "nope", "error"), "not-a-string": (lambda a: 3, "error")},
    "rng": {"string": (lambda a: "seed", "error"), "float": (lambda a: 1.5, "error")},
}

ARRAY_KINDS = {"points", "graphs", "array", "values"}


def _cases() -> list[Any]:
    cases = []
    for r in ROWS:
        arrays = [a for a, k in r.kinds.items() if k in ARRAY_KINDS]
        for arg, kind in r.kinds.items():
            for variant, (make, expect) in VARIANTS[kind].items():
                if expect == "mixed" and len(arrays) < 2:
                    continue  # one array argument: another library is simply another backend
                cases.append(pytest.param(r, arg, variant, make, expect, id=f"{r.id}-{arg}-{variant}"))
    return cases


def _leaves(obj: Any) -> list[np.ndarray]:
    """Every number in a result, as float64 NumPy arrays (dataclass fields and tuples unfolded)."""
    if isinstance(obj, torch.Tensor):
        return [obj.detach().cpu().numpy().astype(np.float64)]
    if isinstance(obj, (np.ndarray, np.generic, float, int)) and not isinstance(obj, bool):
        return [np.asarray(obj, dtype=np.float64)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [leaf for f in dataclasses.fields(obj) for leaf in _leaves(getattr(obj, f.name))]
    if isinstance(obj, (tuple, list)):
        return [leaf for item in obj for leaf in _leaves(item)]
    return []


def _assert_same(got: Any, ref: Any) -> None:
    a, b = _leaves(got), _leaves(ref)
    assert len(a) == len(b) and a, (got, ref)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=0)


def _raises_naming(r: Row, arg: str, thunk: Callable[[], Any], types: tuple = ERROR) -> str:
    with pytest.raises(types) as info:
        thunk()
    msg = str(info.value)
    word = r.names.get(arg, arg)
    assert re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", msg), f"the message does not name {word!r}: {msg}"
    return msg


@pytest.mark.parametrize(("r", "arg", "variant", "make", "expect"), _cases())
def test_malformed_input(r, arg, variant, make, expect):
    good = r.args[arg]
    bad = make(good)

    def call(value: Any) -> Any:
        return r.call(**{**r.args, arg: value})

    if expect == "error" or expect == "mixed":
        msg = _raises_naming(r, arg, lambda: call(bad))
        if expect == "mixed":
            assert "one library" in msg, msg
    elif expect == "model":
        msg = _raises_naming(r, arg, lambda: call(bad))
        assert "must return" in msg, msg
    elif expect == "same":  # integer or boolean points: what the same values as floats give
        _assert_same(call(bad), call(_as(bad, "float64")))
    elif expect == "empty":  # every batch of the row empty at once (they share the n axis)
        empty = {k: v[:0] for k, v in r.args.items() if r.kinds.get(k) == "points"}
        if r.empty == "error":  # the message names the first empty batch it met
            with pytest.raises(ValueError) as info:
                r.call(**{**r.args, **empty})
            msg = str(info.value)
            assert any(re.search(rf"(?<![\w.]){re.escape(r.names.get(k, k))}(?!\w)", msg) for k in empty), msg
            assert re.search(r"at least (one|\d+)", msg) or "n >= 1" in msg, msg
        else:
            out = r.call(**{**r.args, **empty})
            if r.out is not None:
                assert r.out(out).shape[0] == 0, r.out(out).shape
    elif expect == "nan":
        if r.nan == "error":
            msg = _raises_naming(r, arg, lambda: call(bad), ValueError)
            assert "finite" in msg, msg
        else:  # NaN in the first row: NaN in the first row of the output, every other row unchanged
            got, ref = (_leaves(r.out(call(v)))[0] for v in (bad, good))
            assert not np.all(np.isfinite(got[0])), got[0]
            np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-12, atol=0)
    else:  # pragma: no cover - a new expectation needs code here
        raise AssertionError(f"unknown expectation {expect!r}")


@pytest.mark.parametrize("r", ROWS, ids=[r.id for r in ROWS])
def test_valid_call_succeeds(r):
    """Every row's valid arguments give a result: the malformed cases differ from a working call in one argument."""
    out = r.call(**r.args)
    batches = [v for k, v in r.args.items() if r.kinds.get(k) == "points"]
    if r.out is not None and batches:
        assert r.out(out).shape[0] == batches[0].shape[0]


# -- solver requirements: declared, and exactly what the driver enforces --------------------------
def _representative_dynamics() -> dict[str, tuple[Any, Any, list[float]]]:
    """Dynamics of every kind a solver may meet: ``name -> (dynamics, x_init, ts)``."""
    decreasing, increasing = [0.9, 0.5, 0.2], [0.1, 0.5, 0.9]
    graph = dg.GraphReverseSDE(SYSTEM, lambda X, A, t, m: (-X, -A), np.ones((1, 5)), LAB.n_features)
    return {
        "probability-flow ODE": (dc.ProbabilityFlowODE(VP, SCORE), X, decreasing),
        "reverse SDE": (dc.ReverseSDE(VP, SCORE), X, decreasing),
        "reverse SDE, noise_scale 0.5": (dc.ReverseSDE(VP, SCORE, noise_scale=0.5), X, decreasing),
        "probability-flow ODE, mean shift": (dc.ProbabilityFlowODE(MR, MR_SCORE), X, decreasing),
        "reverse SDE, mean shift": (dc.ReverseSDE(MR, MR_SCORE), X, decreasing),
        "forward SDE": (dc.ForwardSDE(VP), X, increasing),
        "interpolant ODE": (dc.InterpolantODE(FIELDS.velocity), X, increasing),
        "graph reverse SDE": (graph, graph.initial_state(rng=0, n=3), decreasing),
    }


ALL_SOLVERS = {**dc.SOLVERS, "adaptive": dc.Adaptive, "s4": dg.S4}


@pytest.mark.parametrize("dynamics_name", list(_representative_dynamics()))
@pytest.mark.parametrize("method", list(ALL_SOLVERS))
def test_solvers_run_exactly_where_their_declared_requirements_are_met(method, dynamics_name):
    """``requires.unmet`` is the whole truth: where it objects the driver raises naming the solver,
    before any model evaluation; where it does not, the solver runs and returns a finite state."""
    solver = ALL_SOLVERS[method]()
    dynamics, x_init, ts = _representative_dynamics()[dynamics_name]
    problem = solver.requires.unmet(dynamics, solver.name)
    if problem is not None:
        exc, message = problem
        with pytest.raises(exc) as info:
            dc.integrate(dynamics, x_init, ts, solver, rng=0)
        assert str(info.value).startswith(message) and solver.name in message, (str(info.value), message)
        fits = [n for n, c in dc.SOLVERS.items() if c.requires.unmet(dynamics) is None]
        assert str(info.value).endswith(f"the solvers that apply here: {', '.join(fits)}"), str(info.value)
    else:
        out = dc.integrate(dynamics, x_init, ts, solver, rng=0)
        assert out.x.shape == x_init.shape and np.all(np.isfinite(out.x))


def test_every_solver_is_refused_somewhere_or_needs_only_a_drift():
    """The declarations are not vacuous: each solver either needs nothing beyond a drift (Runge-Kutta,
    Euler-Maruyama) or is refused by at least one representative dynamics."""
    dynamics = [d for d, _, _ in _representative_dynamics().values()]
    for name, cls in ALL_SOLVERS.items():
        refused = [d for d in dynamics if cls.requires.unmet(d) is not None]
        if cls.requires.dynamics is not dc.AbstractDynamics:
            assert refused, f"{name} declares {cls.requires} but no representative dynamics is refused"


# -- coverage: every public name has a row, or a reason not to --------------------------------------
#: public names that take no input of their own to check, with the reason
EXEMPT: dict[str, str] = {
    **dict.fromkeys(
        [
            "GRIDS",
            "PREDICTIONS",
            "SOLVERS",
            "WEIGHTINGS",
            "GRAPH_WEIGHTINGS",
            "KERNELS",
            "MMD_CONVENTIONS",
            "GRAPH_METHODS",
            "PROBLEMS",
        ],
        "a constant registry",
    ),
    **dict.fromkeys(
        [
            "AbstractDynamics",
            "AbstractInterpolant",
            "AbstractLinearSDE",
            "AbstractProcess",
            "AbstractReverseDynamics",
            "AbstractSolver",
        ],
        "an abstract base: its contract is exercised through every concrete class",
    ),
    **dict.fromkeys(
        [
            "Solution",
            "LogLikelihood",
            "LikelihoodSummary",
            "BitsPerDim",
            "Transition",
            "FPResidualNorm",
            "FPTerms",
            "FloorEstimate",
            "ODESDEGap",
            "PathStraightness",
            "TMinGap",
            "FieldError",
            "FitResult",
            "GraphMMD2",
            "GraphMMD2Floor",
            "GraphSample",
            "CheckReport",
            "SamplerReport",
            "SolverSampler",
        ],
        "a frozen result record that diffcore builds",
    ),
    **dict.fromkeys(
        ["DDIM", "RK4", "Euler", "Heun", "EulerMaruyama", "Ancestral"],
        "a solver without parameters: test_solvers_run_exactly_where_their_declared_requirements_are_met",
    ),
    "graphs": "the subpackage itself (its names are checked one by one)",
    "AbstractMeasurement": "an abstract base: its concrete measurements have rows",
    "GuidedScore": "what classifier_free_guidance and classifier_guidance return: checked through their rows",
    **dict.fromkeys(
        ["DenoiserCovariance", "PosteriorScore", "TweedieLikelihoodScore"],
        "what denoiser_covariance, posterior_score and the Tweedie samplers build: checked through their rows",
    ),
    **dict.fromkeys(
        [
            "ParticleRun",
            "NullTextInversion",
            "PosteriorReference",
            "PosteriorReport",
            "BoundaryOptimum",
            "BoundarySearch",
        ],
        "a frozen result record that diffcore builds",
    ),
    "PREDICTION_TYPES": "a constant registry",
    "ScoreErrorBound": "a frozen result record that diffcore builds",
    "DISCRETE_SOLVERS": "a constant registry",
    "DiscreteSolution": "a result record of discrete_sample: checked through its rows",
    **dict.fromkeys(
        ["EulerStep", "TauLeaping", "TweedieStep", "MaskedUnmasking"],
        "a discrete solver without arguments: exercised through the discrete_sample[...] rows",
    ),
    "EntropicCoupling": "the result record of diffcore.bridges.entropic_coupling: checked through that row",
    "BridgeIterations": "the result record of gaussian_ipf / gaussian_imf: checked through their rows",
    "BridgeMatchingResult": "the result record of diffcore.training.bridge_matching: checked through its row",
    "EarlyExitModel": "what early_exit_model builds: checked through its row",
    "ExitTerms": "the result record of early_exit_terms",
    "FeatureReuseModel": "what feature_reuse_model builds: checked through its row",
    "HeatGeodesicEmbedding": "a frozen result record, built only by heat_geodesic_embedding",
    "w2_1d": "takes two laws, not arrays (a law of dim != 1 raises ValueError, tests/test_theory.py)",
    "MAP_PARAMETRIZATIONS": "a constant registry",
    "LoRALinear": "what add_lora builds around a layer: checked through add_lora's row",
    "lora_parameters": "reads the adapters of a module (a non-module raises TypeError, tests/test_flowmap_training.py)",
    "import_kdiffusion_sampling": "takes no input: it loads k-diffusion's sampling module",
    **dict.fromkeys(
        [
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
        ],
        "what a diffcore.interop function returns: checked through that function's row",
    ),
    "skewed_mixture_2d": "a fixed example law: takes no arguments",
}


def _public_names() -> list[tuple[str, str]]:
    modules = {
        "diffcore": dc,
        "diffcore.training": dtr,
        "diffcore.testing": dt,
        "diffcore.graphs": dg,
        "diffcore.interop": di,
        "diffcore.conditional": dcc,
        "diffcore.flowmaps": dfm,
        "diffcore.bridges": dbr,
        "diffcore.theory": dct,
        "diffcore.geometry": dgeo,
        "diffcore.discrete": dd,
    }
    return [(m, name) for m, mod in modules.items() for name in mod.__all__]


@pytest.mark.parametrize(("module", "name"), _public_names(), ids=[f"{m}.{n}" for m, n in _public_names()])
def test_every_public_name_is_covered(module, name):
    covered = {part for r in ROWS for part in re.split(r"[.\[\]]", r.name)}
    assert name in covered or name in EXEMPT, (
        f"{module}.{name} has no row in tests/test_contracts.py: add one (its valid call and the kind of each "
        "argument it checks), or an EXEMPT entry that says why it takes no input to check"
    )


# -- the cases that prompted these contracts, one by one --------------------------------------------
def _non_diffusion() -> Any:
    return dc.AffineProcess(lambda t: 1.0 + 0 * t, lambda t: 1.0 - t / 2)  # sigma / alpha decreases: g^2 < 0


SPECIFIC = [
    pytest.param(
        lambda: dc.sample(VP, lambda x, t: x[:, :1], X, method="heun", steps=5),
        ValueError,
        r"score must return an array shaped like its input x \(5, 2\); got \(5, 1\)",
        id="wrong-shape-score-is-not-broadcast",
    ),
    pytest.param(
        lambda: _non_diffusion().diffusion(0.5), ValueError, r"g\(t\)\^2 = -0\.7.* < 0 at t = 0\.5", id="g2<0"
    ),
    pytest.param(
        lambda: dt.propagate_gaussian_law(dc.ReverseSDE(VP, SCORE), "pc", G2.mean, G2.cov, [1.0, 0.5]),
        ValueError,
        r"needs a solver whose step is affine.*pc",
        id="propagate-non-affine-solver",
    ),
    pytest.param(
        lambda: dt.propagate_gaussian_law(dc.ReverseSDE(VP, SCORE), "ancestral", G2.mean, -np.eye(2), [1.0, 0.5]),
        ValueError,
        r"cov must be positive semi-definite; its smallest eigenvalue is -1",
        id="propagate-non-psd",
    ),
    pytest.param(
        lambda: dt.propagate_gaussian_law(dc.ReverseSDE(VP, SCORE), "ancestral", G2.mean, G2.cov, [0.5, 1.0]),
        ValueError,
        r"ReverseSDE is integrated backwards in time; ts must be decreasing",
        id="propagate-increasing-grid",
    ),
    pytest.param(
        lambda: dc.convert(X, X[:, :1], 0.5, VP, source="eps", target="x0"),
        ValueError,
        r"value must have the shape of x \(5, 1\); got \(5, 2\)",
        id="convert-does-not-broadcast",
    ),
    pytest.param(lambda: dc.w2(1e200 * X, X), ValueError, r"w2 overflows", id="w2-overflow"),
    pytest.param(lambda: dc.sliced_w2(1e200 * X, X, rng=0), ValueError, r"sliced_w2 overflows", id="sliced-overflow"),
    pytest.param(
        lambda: dc.w2(X, torch.as_tensor(X)),
        TypeError,
        r"x and y must be arrays of one library on one device; got x: numpy.ndarray float64 \(5, 2\), y: torch.Tensor",
        id="mixed-names-both",
    ),
    pytest.param(
        lambda: dc.and_weights(X[:, None, :], X[:, :1], 0.0), ValueError, r"scale must be > 0", id="and-scale"
    ),
    *(
        pytest.param(
            lambda _s=solver: dc.sample_graphs(SYSTEM, GSCORE, GMASK, n_features=LAB.n_features, steps=2, method=_s),
            TypeError,
            rf"{solver.name} needs the scalar schedule alpha\(t\), sigma\(t\) of an AbstractProcess; the process of "
            r"GraphReverseSDE is PackedProcess \(coordinate-wise coefficients\)",
            id=f"graphs-{solver.name}",
        )
        for solver in (dc.DDIM(), dc.Ancestral(), dc.samplers.DPMSolverPP2M(), dc.samplers.EDMStochastic())
    ),
]


@pytest.mark.parametrize(("thunk", "exc", "match"), SPECIFIC)
def test_specific_case(thunk, exc, match):
    with pytest.raises(exc, match=match):
        thunk()


def test_rounding_negative_g2_is_zero_diffusion():
    """``AffineProcess(1 - t, t)`` has ``g(0) = 0``; its finite-difference ``g^2(0)`` is ~ -1e-18, which
    used to give ``diffusion(0) = NaN``.  Now 0, and the array form agrees."""
    rf = dc.AffineProcess(lambda t: 1 - t, lambda t: t)
    assert -1e-9 < rf.diffusion_squared(0.0) <= 1e-12  # the rounding the rule is for (measured -8.5e-19)
    assert rf.diffusion(0.0) == 0.0
    np.testing.assert_array_equal(rf.diffusion(np.array([0.0, 0.5])), [0.0, math.sqrt(rf.diffusion_squared(0.5))])
    assert np.isnan(_non_diffusion().diffusion(np.array([0.5]))[0])  # arrays: NaN in the bad entries, as documented


def test_model_output_check_costs_no_extra_evaluation():
    """The check reads the output the solver asked for: NFE is the number of calls, no probe call."""
    calls = []

    def score(x, t):
        calls.append(t)
        return SCORE(x, t)

    sol = dc.sample(VP, score, X, method="heun", steps=4)
    assert sol.nfe == len(calls) == 8
