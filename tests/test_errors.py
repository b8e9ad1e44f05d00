"""Bad input raises a clear error that states the rule and the value received; nothing passes silently.

Every case is a row of a table: an id, a thunk that calls the public API with one bad
argument, the exception type (``ValueError`` for a bad value, ``TypeError`` for a wrong type)
and a regular expression for the message, which names the rule and shows the value.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import diffcore as dc

NAN = float("nan")
VP = dc.VPSDE()
G = dc.Gaussian(np.zeros(2), np.eye(2))
GM = dc.GaussianMixture(np.array([0.5, 0.5]), np.array([[-1.0, 0.0], [1.0, 0.0]]), np.tile(np.eye(2), (2, 1, 1)))
SCORE = dc.exact_score(VP, G)
X3 = np.zeros((3, 2))
EYE2 = np.tile(np.eye(2), (2, 1, 1))


def _case(id_, thunk, exc, match):
    return pytest.param(thunk, exc, match, id=id_)


def _check(thunk, exc, match):
    with pytest.raises(exc, match=match):
        thunk()


# -- process parameters -------------------------------------------------------------------------

PROCESS_CASES = [
    _case("vp-negative", lambda: dc.VPSDE(beta_min=-1), ValueError, r"beta_min must be > 0; got -1"),
    _case("vp-zero-max", lambda: dc.VPSDE(beta_min=0.1, beta_max=0.0), ValueError, r"beta_max must be > 0; got 0"),
    _case(
        "vp-inverted",
        lambda: dc.VPSDE(beta_min=5, beta_max=1),
        ValueError,
        r"beta_max must be >= beta_min; got beta_min=5, beta_max=1",
    ),
    _case(
        "subvp-inverted",
        lambda: dc.SubVPSDE(beta_min=5, beta_max=1),
        ValueError,
        r"beta_max must be >= beta_min; got beta_min=5, beta_max=1",
    ),
    _case("vp-nan", lambda: dc.VPSDE(beta_min=NAN), ValueError, r"beta_min must be finite; got nan"),
    _case("vp-inf", lambda: dc.VPSDE(beta_max=float("inf")), ValueError, r"beta_max must be finite; got inf"),
    _case("vp-str", lambda: dc.VPSDE(beta_min="0.1"), TypeError, r"beta_min must be a real number; got str"),
    _case("vp-bool", lambda: dc.VPSDE(beta_min=True), TypeError, r"beta_min must be a real number; got bool"),
    _case(
        "ve-inverted",
        lambda: dc.VESDE(sigma_min=2, sigma_max=1),
        ValueError,
        r"sigma_max must be > sigma_min; got sigma_min=2, sigma_max=1",
    ),
    _case("ve-equal", lambda: dc.VESDE(sigma_min=1, sigma_max=1), ValueError, r"sigma_max must be > sigma_min"),
    _case("ve-negative", lambda: dc.VESDE(sigma_min=-1), ValueError, r"sigma_min must be > 0; got -1"),
    _case(
        "ve-variant", lambda: dc.VESDE(variant="nope"), ValueError, r"unknown variant 'nope'; known: exact, song2021"
    ),
    _case("cosine-end-above-1", lambda: dc.CosineVPSDE(end=1.5), ValueError, r"end must lie in \(0, 1\]; got 1.5"),
    _case("cosine-end-zero", lambda: dc.CosineVPSDE(end=0), ValueError, r"end must be > 0; got 0"),
    _case("cosine-s-negative", lambda: dc.CosineVPSDE(s=-0.1), ValueError, r"s must be > 0; got -0.1"),
    _case(
        "affine-not-callable",
        lambda: dc.AffineProcess(1.0, lambda t: t),
        TypeError,
        r"alpha_fn must be callable; got float",
    ),
    _case(
        "affine-fd-step",
        lambda: dc.AffineProcess(lambda t: 1 - t, lambda t: t, fd_step=0.1),
        ValueError,
        r"fd_step must be <= 0.05; got 0.1",
    ),
    _case(
        "reverse-sde-eta",
        lambda: dc.ReverseSDE(VP, SCORE, noise_scale=-1),
        ValueError,
        r"noise_scale must be >= 0; got -1",
    ),
    _case("reverse-sde-score", lambda: dc.ReverseSDE(VP, 3), TypeError, r"score must be callable .*; got int"),
    _case(
        "ode-process",
        lambda: dc.ProbabilityFlowODE("vp", SCORE),
        TypeError,
        r"process must be an AbstractProcess; got str",
    ),
]


@pytest.mark.parametrize(("thunk", "exc", "match"), PROCESS_CASES)
def test_bad_process_parameters(thunk, exc, match):
    _check(thunk, exc, match)


# -- times --------------------------------------------------------------------------------------

#: every public function of a time, as ``(name of the time argument, thunk of the time)``
TIME_FUNCTIONS = {
    "alpha": ("t", VP.alpha),
    "sigma": ("t", VP.sigma),
    "d_sigma": ("t", VP.d_sigma),
    "diffusion": ("t", VP.diffusion),
    "log_snr": ("t", VP.log_snr),
    "drift": ("t", lambda t: VP.drift(X3, t)),
    "marginal": ("t", lambda t: dc.marginal(VP, G, t)),
    "exact_score": ("t", lambda t: SCORE(X3, t)),
    "exact_denoiser": ("t", lambda t: dc.exact_denoiser(VP, GM)(X3, t)),
    "exact_log_prob": ("t", lambda t: dc.exact_log_prob(VP, GM)(X3, t)),
    "transition-t": ("t", lambda t: VP.transition(0.0, t)),
    "transition-s": ("s", lambda s: VP.transition(s, 1.0)),
    "sample_transition": ("t", lambda t: VP.sample_transition(X3, 0.0, t, rng=0)),
    "convert": ("t", lambda t: dc.convert(X3, X3, t, VP, source="eps", target="x0")),
}

#: bad times: (id, value, exception, message after "<name> ")
BAD_TIMES = [
    ("above-1", 1.5, ValueError, r"must lie in \[0, 1\]; got 1.5"),
    ("negative", -0.1, ValueError, r"must lie in \[0, 1\]; got -0.1"),
    ("nan", NAN, ValueError, r"must lie in \[0, 1\]; got nan"),
    ("np-float-above-1", np.float32(1.25), ValueError, r"must lie in \[0, 1\]; got 1.25"),
    ("array-above-1", np.array([0.1, 0.2, 1.2]), ValueError, r"must lie in \[0, 1\]; got 1.2"),
    ("array-negative", np.array([-0.3, 0.2, 0.5]), ValueError, r"must lie in \[0, 1\]; got -0.3"),
    ("array-nan", np.array([0.1, NAN, 0.5]), ValueError, r"must lie in \[0, 1\]; got nan"),
    ("array-2d", np.full((3, 1), 0.5), ValueError, r"must be a scalar or a 1-D array of shape \(n,\); got shape"),
    ("array-int", np.array([0, 1, 1]), TypeError, r"must have a real floating dtype; got int64"),
    ("bool", True, TypeError, r"must be a float or an array of times; got bool"),
    ("list", [0.5], TypeError, r"must be a float or an array of times; got list"),
    ("str", "0.5", TypeError, r"must be a float or an array of times; got str"),
]


@pytest.mark.parametrize("func", list(TIME_FUNCTIONS))
@pytest.mark.parametrize(("value", "exc", "match"), [pytest.param(*row[1:], id=row[0]) for row in BAD_TIMES])
def test_time_outside_unit_interval(func, value, exc, match):
    name, thunk = TIME_FUNCTIONS[func]
    with pytest.raises(exc, match=rf"^{name} {match}"):
        thunk(value)


TIME_SHAPE_CASES = [
    _case(
        "drift",
        lambda: VP.drift(X3, np.array([0.1, 0.2])),
        ValueError,
        r"t must be a float or an array of shape \(n,\) = \(3,\) matching the batch; got shape \(2,\)",
    ),
    _case(
        "exact_score",
        lambda: SCORE(X3, np.array([0.1, 0.2])),
        ValueError,
        r"t must be a float or have shape \(n,\) = \(3,\); got \(2,\)",
    ),
    _case(
        "marginal-array",
        lambda: dc.marginal(VP, G, np.array([0.5])),
        ValueError,
        r"marginal needs a scalar t; got an array of shape \(1,\)",
    ),
    _case(
        "transition-s-after-t",
        lambda: VP.transition(0.6, 0.5),
        ValueError,
        r"transition needs s <= t; got s=0.6, t=0.5",
    ),
    _case(
        "transition-s-after-t-arrays",
        lambda: VP.transition(np.array([0.1, 0.6]), np.array([0.5, 0.5])),
        ValueError,
        r"transition needs s <= t for every pair; got s=0.6, t=0.5",
    ),
    _case(
        "transition-s-after-t-mixed",
        lambda: VP.transition(0.7, np.array([0.9, 0.5])),
        ValueError,
        r"transition needs s <= t for every pair; got s=0.7, t=0.5",
    ),
    _case(
        "log_snr_inverse",
        lambda: dc.VESDE(sigma_min=0.1, sigma_max=10.0).log_snr_inverse(-50.0),
        ValueError,
        r"lam must lie in \[log_snr\(1\), log_snr\(0\)\] = .*; got -50.0",
    ),
    _case(
        "sample_transition-nan",
        lambda: VP.sample_transition(np.full((3, 2), NAN), 0.1, 0.5),
        ValueError,
        r"x_s must be finite; it contains NaN or infinity",
    ),
]


@pytest.mark.parametrize(("thunk", "exc", "match"), TIME_SHAPE_CASES)
def test_bad_time_shapes_and_orders(thunk, exc, match):
    _check(thunk, exc, match)


# -- analytic data ------------------------------------------------------------------------------

DATA_CASES = [
    _case(
        "weights-negative",
        lambda: dc.GaussianMixture([1.5, -0.5], np.zeros((2, 2)), EYE2),
        ValueError,
        r"weights must all be > 0; got \[1.5, -0.5\]",
    ),
    _case(
        "weights-zero",
        lambda: dc.GaussianMixture([1.0, 0.0], np.zeros((2, 2)), EYE2),
        ValueError,
        r"weights must all be > 0; got \[1, 0\]",
    ),
    _case(
        "weights-sum",
        lambda: dc.GaussianMixture([0.5, 0.6], np.zeros((2, 2)), EYE2),
        ValueError,
        r"weights must sum to 1 .*; got sum 1.1",
    ),
    _case(
        "weights-nan",
        lambda: dc.GaussianMixture([NAN, 0.5], np.zeros((2, 2)), EYE2),
        ValueError,
        r"weights must be finite",
    ),
    _case(
        "weights-2d",
        lambda: dc.GaussianMixture([[0.5, 0.5]], np.zeros((2, 2)), EYE2),
        ValueError,
        r"weights must have shape \(K,\) with K >= 1; got \(1, 2\)",
    ),
    _case(
        "weights-empty",
        lambda: dc.GaussianMixture(np.zeros(0), np.zeros((0, 2)), np.zeros((0, 2, 2))),
        ValueError,
        r"weights must have shape \(K,\) with K >= 1; got \(0,\)",
    ),
    _case(
        "weights-vs-means",
        lambda: dc.GaussianMixture([0.2, 0.3, 0.5], np.zeros((2, 2)), EYE2),
        ValueError,
        r"means must have shape \(K, d\) = \(3, d\); got \(2, 2\)",
    ),
    _case(
        "means-vs-covs",
        lambda: dc.GaussianMixture([0.5, 0.5], np.zeros((2, 3)), EYE2),
        ValueError,
        r"covs must have shape \(K, d, d\) = \(2, 3, 3\); got \(2, 2, 2\)",
    ),
    _case(
        "covs-2d",
        lambda: dc.GaussianMixture([0.5, 0.5], np.zeros((2, 2)), np.eye(2)),
        ValueError,
        r"covs must have shape \(K, d, d\) = \(2, 2, 2\); got \(2, 2\)",
    ),
    _case(
        "mixture-means-nan",
        lambda: dc.GaussianMixture([0.5, 0.5], np.full((2, 2), NAN), EYE2),
        ValueError,
        r"means must be finite",
    ),
    _case(
        "cov-asymmetric",
        lambda: dc.Gaussian(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]])),
        ValueError,
        r"covs must be symmetric; max \|C - C\^T\| = 5.000e-01",
    ),
    _case(
        "cov-indefinite",
        lambda: dc.Gaussian(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]])),
        ValueError,
        r"covs must be positive definite; smallest eigenvalue per component \[-1\]",
    ),
    _case(
        "cov-singular",
        lambda: dc.Gaussian(np.zeros(2), np.diag([1.0, 0.0])),
        ValueError,
        r"covs must be positive definite; smallest eigenvalue per component \[0\]",
    ),
    _case("cov-nan", lambda: dc.Gaussian(np.zeros(2), np.full((2, 2), NAN)), ValueError, r"cov must be finite"),
    _case(
        "cov-vs-mean",
        lambda: dc.Gaussian(np.zeros(2), np.eye(3)),
        ValueError,
        r"covs must have shape \(K, d, d\) = \(1, 2, 2\); got \(1, 3, 3\)",
    ),
    _case(
        "cov-1d",
        lambda: dc.Gaussian(np.zeros(2), np.ones(2)),
        ValueError,
        r"cov must have shape \(d, d\) = \(2, 2\); got \(2,\)",
    ),
    _case(
        "mean-2d",
        lambda: dc.Gaussian(np.zeros((1, 2)), np.eye(2)),
        ValueError,
        r"mean must have shape \(d,\); got \(1, 2\)",
    ),
    _case("mean-nan", lambda: dc.Gaussian(np.array([NAN, 0.0]), np.eye(2)), ValueError, r"mean must be finite"),
    _case("mean-str", lambda: dc.Gaussian("ab", np.eye(2)), TypeError, r"mean must have a real floating dtype"),
    _case("sample-n-negative", lambda: G.sample(-1), ValueError, r"n must be >= 0; got -1"),
    _case("sample-n-float", lambda: G.sample(2.5), TypeError, r"n must be an int; got float"),
    _case(
        "exact-score-process",
        lambda: dc.exact_score("vp", G),
        TypeError,
        r"process must be an AbstractProcess; got str",
    ),
    _case(
        "exact-score-data",
        lambda: dc.exact_score(VP, np.zeros(2)),
        TypeError,
        r"data must be a Gaussian or a GaussianMixture; got ndarray",
    ),
    _case(
        "marginal-data",
        lambda: dc.marginal(VP, None, 0.5),
        TypeError,
        r"data must be a Gaussian or a GaussianMixture; got NoneType",
    ),
    _case(
        "exact-field-kind",
        lambda: dc.ExactField(VP, G, "velocity"),
        ValueError,
        r"unknown kind 'velocity'; known: denoiser, log_prob, score",
    ),
]


@pytest.mark.parametrize(("thunk", "exc", "match"), DATA_CASES)
def test_bad_analytic_data(thunk, exc, match):
    _check(thunk, exc, match)


#: every public evaluation at points of a 2-D law
POINT_FUNCTIONS = {
    "gaussian.log_prob": G.log_prob,
    "gaussian.score": G.score,
    "mixture.log_prob": GM.log_prob,
    "mixture.score": GM.score,
    "mixture.responsibilities": GM.responsibilities,
    "exact_score": lambda x: SCORE(x, 0.5),
    "exact_denoiser": lambda x: dc.exact_denoiser(VP, GM)(x, 0.5),
    "exact_log_prob": lambda x: dc.exact_log_prob(VP, GM)(x, 0.5),
}

BAD_POINTS = [
    ("wrong-dim", np.zeros((3, 3)), ValueError, r"x must have shape \(n, 2\); got \(3, 3\)"),
    ("too-few-dims", np.zeros((3, 1)), ValueError, r"x must have shape \(n, 2\); got \(3, 1\)"),
    ("1d", np.zeros(2), ValueError, r"x must have shape \(n, 2\); got \(2,\)"),
    ("3d", np.zeros((3, 2, 1)), ValueError, r"x must have shape \(n, 2\); got \(3, 2, 1\)"),
    ("list", [[0.0, 0.0]], TypeError, r"x must be an array of shape \(n, 2\); got list"),
    ("complex-dtype", np.zeros((3, 2), dtype=complex), TypeError, r"x must be real; got complex dtype complex128"),
]


@pytest.mark.parametrize("func", list(POINT_FUNCTIONS))
@pytest.mark.parametrize(("x", "exc", "match"), [pytest.param(*row[1:], id=row[0]) for row in BAD_POINTS])
def test_points_of_the_wrong_shape(func, x, exc, match):
    with pytest.raises(exc, match=match):
        POINT_FUNCTIONS[func](x)


# -- samplers -----------------------------------------------------------------------------------


def _sample(**kwargs):
    args = {"method": "euler", "steps": 3} | kwargs
    x_init = args.pop("x_init", X3)
    return dc.sample(VP, SCORE, x_init, **args)


def _integrate(x_init=X3, ts=(1.0, 0.5), solver="euler", dynamics=None, **kwargs):
    return dc.integrate(dynamics or dc.ProbabilityFlowODE(VP, SCORE), x_init, list(ts), solver, **kwargs)


RNG_MESSAGE = r"rng must be None, an int seed, a numpy.random.Generator or a torch.Generator; got "
KNOWN_METHODS = re.escape(", ".join(dc.SOLVERS))

SAMPLER_CASES = [
    _case(
        "sample-nan",
        lambda: _sample(x_init=np.full((3, 2), NAN)),
        ValueError,
        r"x_init must be finite; it contains NaN or infinity",
    ),
    _case("sample-inf", lambda: _sample(x_init=np.array([[0.0, np.inf]])), ValueError, r"x_init must be finite"),
    _case(
        "sample-sde-nan",
        lambda: _sample(x_init=np.full((3, 2), NAN), method="pc"),
        ValueError,
        r"x_init must be finite",
    ),
    _case("integrate-nan", lambda: _integrate(x_init=np.full((3, 2), NAN)), ValueError, r"x_init must be finite"),
    _case(
        "integrate-scalar-init",
        lambda: _integrate(x_init=0.0),
        TypeError,
        r"x_init must be an array of shape \(n, ...\); got float",
    ),
    _case(
        "method-unknown", lambda: _sample(method="nope"), ValueError, rf"unknown method 'nope'; known: {KNOWN_METHODS}"
    ),
    _case("method-case", lambda: _sample(method="Euler"), ValueError, r"unknown method 'Euler'; known: euler, "),
    _case(
        "method-type",
        lambda: _sample(method=3),
        TypeError,
        r"method must be a solver name or an AbstractSolver; got int",
    ),
    _case("get-solver", lambda: dc.get_solver("rk45"), ValueError, rf"unknown method 'rk45'; known: {KNOWN_METHODS}"),
    _case("integrate-solver", lambda: _integrate(solver="nope"), ValueError, r"unknown method 'nope'; known: "),
    _case("steps-zero", lambda: _sample(steps=0), ValueError, r"steps must be >= 1; got 0"),
    _case("steps-negative", lambda: _sample(steps=-3), ValueError, r"steps must be >= 1; got -3"),
    _case("steps-float", lambda: _sample(steps=2.0), TypeError, r"steps must be an int; got float"),
    _case("steps-bool", lambda: _sample(steps=True), TypeError, r"steps must be an int; got bool"),
    _case("steps-str", lambda: _sample(steps="10"), TypeError, r"steps must be an int; got str"),
    _case(
        "grid-unknown",
        lambda: _sample(grid="cosine"),
        ValueError,
        r"unknown grid 'cosine'; known: edm, log_snr, uniform",
    ),
    _case(
        "time-grid-unknown",
        lambda: dc.time_grid(VP, 3, kind="nope"),
        ValueError,
        r"unknown kind 'nope'; known: edm, log_snr, uniform",
    ),
    _case("time-grid-steps", lambda: dc.time_grid(VP, 0), ValueError, r"steps must be >= 1; got 0"),
    _case("t-min-negative", lambda: _sample(t_min=-0.1), ValueError, r"t_min must lie in \[0, 1\]; got -0.1"),
    _case("t-max-above-1", lambda: _sample(t_max=1.5), ValueError, r"t_max must lie in \[0, 1\]; got 1.5"),
    _case(
        "t-min-above-t-max",
        lambda: _sample(t_min=0.9, t_max=0.5),
        ValueError,
        r"t_min must be < t_max; got t_min=0.9, t_max=0.5",
    ),
    _case("ts-not-monotone", lambda: _integrate(ts=(1.0, 0.5, 0.7)), ValueError, r"ts must be strictly monotone"),
    _case("ts-repeated", lambda: _integrate(ts=(1.0, 0.5, 0.5)), ValueError, r"ts must be strictly monotone"),
    _case(
        "ts-out-of-range",
        lambda: _integrate(ts=(1.5, 0.5)),
        ValueError,
        r"every time in ts must lie in \[0, 1\]; got range \[0.5, 1.5\]",
    ),
    _case("ts-one-time", lambda: _integrate(ts=(1.0,)), ValueError, r"ts must hold at least two times; got 1"),
    _case(
        "ode-solver-on-sde",
        lambda: _integrate(dynamics=dc.ReverseSDE(VP, SCORE)),
        ValueError,
        r"euler integrates ODEs \(zero diffusion\); got ReverseSDE, whose diffusion is non-zero \(noise_scale 1.0\)",
    ),
    _case(
        "ancestral-on-ode",
        lambda: _integrate(solver="ancestral"),
        ValueError,
        r"ancestral samples the reverse SDE with noise_scale 1; got noise_scale 0.0",
    ),
    _case(
        "dynamics-type",
        lambda: dc.integrate(SCORE, X3, [1.0, 0.5], "euler"),
        TypeError,
        r"dynamics must be an AbstractDynamics; got ExactField",
    ),
    _case(
        "sample-process-type",
        lambda: dc.sample("vp", SCORE, X3, method="euler", steps=3),
        TypeError,
        r"process must be an AbstractProcess; got str",
    ),
]


@pytest.mark.parametrize(("thunk", "exc", "match"), SAMPLER_CASES)
def test_bad_sampler_input(thunk, exc, match):
    _check(thunk, exc, match)


#: every public function that takes ``rng``
RNG_FUNCTIONS = {
    "sample-ode": lambda rng: _sample(rng=rng),
    "sample-sde": lambda rng: _sample(method="euler_maruyama", rng=rng),
    "integrate": lambda rng: _integrate(rng=rng),
    "prior_sample": lambda rng: VP.prior_sample((2, 2), rng=rng),
    "sample_transition": lambda rng: VP.sample_transition(X3, 0.1, 0.5, rng=rng),
    "gaussian.sample": lambda rng: G.sample(3, rng=rng),
    "mixture.sample": lambda rng: GM.sample(3, rng=rng),
    "sliced_w2": lambda rng: dc.sliced_w2(X3, X3, n_projections=2, rng=rng),
    "w2_floor": lambda rng: dc.w2_floor(G, 3, repeats=2, rng=rng),
}

BAD_RNGS = [
    ("str", "seed", "str"),
    ("float", 1.5, "float"),
    ("bool", True, "bool"),
    ("legacy-random-state", np.random.RandomState(0), "RandomState"),
    ("bit-generator", np.random.PCG64(0), "PCG64"),
]


@pytest.mark.parametrize("func", list(RNG_FUNCTIONS))
@pytest.mark.parametrize(("rng", "type_name"), [pytest.param(*row[1:], id=row[0]) for row in BAD_RNGS])
def test_rng_of_the_wrong_type(func, rng, type_name):
    with pytest.raises(TypeError, match=RNG_MESSAGE + type_name):
        RNG_FUNCTIONS[func](rng)


# -- prediction converters ----------------------------------------------------------------------

KNOWN_PREDICTIONS = r"known: eps, score, v, velocity, x0"

CONVERT_CASES = [
    _case(
        "convert-source",
        lambda: dc.convert(X3, X3, 0.5, VP, source="noise", target="eps"),
        ValueError,
        rf"unknown source 'noise'; {KNOWN_PREDICTIONS}",
    ),
    _case(
        "convert-target",
        lambda: dc.convert(X3, X3, 0.5, VP, source="eps", target="flow"),
        ValueError,
        rf"unknown target 'flow'; {KNOWN_PREDICTIONS}",
    ),
    _case(
        "reparametrize-source",
        lambda: dc.reparametrize(SCORE, VP, source="x_0"),
        ValueError,
        rf"unknown source 'x_0'; {KNOWN_PREDICTIONS}",
    ),
    _case(
        "reparametrize-target",
        lambda: dc.reparametrize(SCORE, VP, source="score", target="denoiser"),
        ValueError,
        rf"unknown target 'denoiser'; {KNOWN_PREDICTIONS}",
    ),
    _case(
        "reparametrize-model",
        lambda: dc.reparametrize(3, VP, source="eps"),
        TypeError,
        r"model must be callable \(x, t\) -> array; got int",
    ),
    _case(
        "convert-divides-by-sigma-0",
        lambda: dc.convert(X3, X3, 0.0, VP, source="x0", target="eps"),
        ValueError,
        r"converting x0 -> eps divides by sigma\(t\), which is zero or not finite at t = 0.0",
    ),
    _case(
        "convert-divides-by-alpha-0",
        lambda: dc.convert(X3, X3, 1.0, dc.CosineVPSDE(end=1.0), source="eps", target="x0"),
        ValueError,
        r"converting eps -> x0 divides by alpha\(t\), which is zero or not finite at t = 1.0",
    ),
]


@pytest.mark.parametrize(("thunk", "exc", "match"), CONVERT_CASES)
def test_bad_conversion(thunk, exc, match):
    _check(thunk, exc, match)


# -- Wasserstein --------------------------------------------------------------------------------

P3 = np.zeros((3, 2))

METRIC_CASES = [
    _case(
        "w2-dims", lambda: dc.w2(P3, np.zeros((3, 3))), ValueError, r"x and y must have the same dimension; got 2 and 3"
    ),
    _case(
        "w2-weight-shape",
        lambda: dc.w2(P3, P3, a=np.ones(2) / 2),
        ValueError,
        r"a must have shape \(3,\) to match the points; got \(2,\)",
    ),
    _case(
        "w2-weight-2d",
        lambda: dc.w2(P3, P3, b=np.ones((3, 1)) / 3),
        ValueError,
        r"b must have shape \(3,\) to match the points; got \(3, 1\)",
    ),
    _case("w2-weight-sum", lambda: dc.w2(P3, P3, a=np.ones(3) / 2), ValueError, r"a must sum to 1 .*; got sum 1.5"),
    _case(
        "w2-weight-negative",
        lambda: dc.w2(P3[:2], P3, a=np.array([1.5, -0.5])),
        ValueError,
        r"a must be positive; got minimum -0.5",
    ),
    _case(
        "w2-weight-zero",
        lambda: dc.w2(P3[:2], P3, a=np.array([1.0, 0.0])),
        ValueError,
        r"a must be positive; got minimum 0.0",
    ),
    _case(
        "w2-weight-nan",
        lambda: dc.w2(P3[:2], P3, a=np.array([NAN, 0.5])),
        ValueError,
        r"a must be positive; got minimum nan",
    ),
    _case(
        "w2-nan-x",
        lambda: dc.w2(np.full((3, 2), NAN), P3),
        ValueError,
        r"x must be finite; it contains NaN or infinity",
    ),
    _case("w2-inf-y", lambda: dc.w2(P3, np.array([[0.0, np.inf]])), ValueError, r"y must be finite"),
    _case(
        "w2-1d-points",
        lambda: dc.w2(np.zeros(3), np.zeros(3)),
        ValueError,
        r"x must have shape \(n, d\); got \(3,\)",
    ),
    _case(
        "w2-empty",
        lambda: dc.w2(np.zeros((0, 2)), P3),
        ValueError,
        r"x must hold at least one point; got shape \(0, 2\)",
    ),
    _case("w2-list", lambda: dc.w2([[0.0]], [[1.0]]), TypeError, r"x must be an array of shape \(n, d\); got list"),
    _case(
        "sliced-dims",
        lambda: dc.sliced_w2(P3, np.zeros((3, 3))),
        ValueError,
        r"x and y must have the same dimension; got 2 and 3",
    ),
    _case("sliced-nan", lambda: dc.sliced_w2(P3, np.full((3, 2), NAN)), ValueError, r"y must be finite"),
    _case(
        "sliced-projections-zero",
        lambda: dc.sliced_w2(P3, P3, n_projections=0),
        ValueError,
        r"n_projections must be >= 1; got 0",
    ),
    _case(
        "sliced-projections-float",
        lambda: dc.sliced_w2(P3, P3, n_projections=10.0),
        TypeError,
        r"n_projections must be an int; got float",
    ),
    _case(
        "w2-gaussian-dims",
        lambda: dc.w2_gaussian(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)),
        ValueError,
        r"mean2 must have shape \(2,\); got \(3,\)",
    ),
    _case(
        "w2-gaussian-cov-shape",
        lambda: dc.w2_gaussian(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)),
        ValueError,
        r"cov1 must have shape \(2, 2\); got \(3, 3\)",
    ),
    _case(
        "w2-gaussian-mean-2d",
        lambda: dc.w2_gaussian(np.zeros((1, 2)), np.eye(2), np.zeros(2), np.eye(2)),
        ValueError,
        r"mean1 must have shape \(d,\); got \(1, 2\)",
    ),
    _case(
        "w2-gaussian-asymmetric",
        lambda: dc.w2_gaussian(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2)),
        ValueError,
        r"cov1 must be symmetric; got max \|C - C\^T\| = 5.000e-01",
    ),
    _case(
        "w2-gaussian-indefinite",
        lambda: dc.w2_gaussian(np.zeros(2), np.eye(2), np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]])),
        ValueError,
        r"cov2 must be positive semi-definite; got smallest eigenvalue -1",
    ),
    _case(
        "w2-gaussian-nan-mean",
        lambda: dc.w2_gaussian(np.array([NAN, 0.0]), np.eye(2), np.zeros(2), np.eye(2)),
        ValueError,
        r"mean1 must be finite",
    ),
    _case(
        "w2-gaussian-nan-cov",
        lambda: dc.w2_gaussian(np.zeros(2), np.eye(2), np.zeros(2), np.full((2, 2), NAN)),
        ValueError,
        r"cov2 must be finite",
    ),
    _case("w2-floor-n", lambda: dc.w2_floor(G, 0), ValueError, r"n must be >= 1; got 0"),
    _case("w2-floor-repeats", lambda: dc.w2_floor(G, 10, repeats=0), ValueError, r"repeats must be >= 1; got 0"),
]


@pytest.mark.parametrize(("thunk", "exc", "match"), METRIC_CASES)
def test_bad_metric_input(thunk, exc, match):
    _check(thunk, exc, match)


def test_w2_gaussian_accepts_singular_covariances():
    """Positive *semi*-definite is the rule: a Dirac (zero covariance) is a valid Gaussian here."""
    assert float(dc.w2_gaussian(np.zeros(2), np.zeros((2, 2)), np.ones(2), np.zeros((2, 2)))) == pytest.approx(
        np.sqrt(2.0), rel=1e-12
    )


def test_w2_iteration_cap_raises_instead_of_returning_a_suboptimal_value():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 2)), rng.standard_normal((40, 2))
    with pytest.raises(RuntimeError, match=r"ot.emd2 did not reach optimality: .*\(raise max_iter\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # POT also warns; the error is what matters
            dc.w2(x, y, max_iter=3)
