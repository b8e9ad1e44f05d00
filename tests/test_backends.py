"""Every public function accepts torch tensors and keeps their type, dtype and device.

Contract (DESIGN.md §2, "Arrays"): given arrays of one backend (NumPy, torch CPU, torch CUDA
when present) in float64 or float32, a public function returns arrays of the same library,
dtype and device; in float64 the numbers agree with the NumPy float64 result to ``1e-10``.

Tolerances.  ``backend.rtol`` is ``1e-10`` in float64 (the two libraries run the same
formulas; differences are round-off of order ``1e-15`` times small condition numbers) and
``1e-4`` in float32: float32 has ``eps = 6e-8``, and the inputs are rounded to it before the
computation, so a result with condition number up to ~``10^3`` (exp/log of schedules, an
eigendecomposition of a well-conditioned covariance, ten solver steps) is accurate to about
``10^3 eps ~ 1e-4``.  Errors are measured relative to the scale of the whole array
(``atol = rtol * max|ref|``) so that entries that are zero in exact arithmetic do not demand
an impossible relative accuracy.  Two computations are looser in float32 and say why below.
"""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

import diffcore as dc
from tests.conftest import PROCESSES, circle_mixture

TIMES = np.array([0.05, 0.3, 0.5, 0.7, 0.95])
SCHEDULE_METHODS = ("alpha", "sigma", "d_alpha", "d_sigma", "drift_coef", "diffusion_squared", "diffusion", "log_snr")


def _affine_generic() -> dc.AffineProcess:
    """An affine VP schedule written with the array-API namespace of ``t`` (NumPy or torch)."""

    def alpha(t):
        xp = array_namespace(t)
        return xp.exp(-0.25 * 19.9 * t**2 - 0.05 * t)

    def sigma(t):
        xp = array_namespace(t)
        return xp.sqrt(-xp.expm1(-0.5 * 19.9 * t**2 - 0.1 * t))

    return dc.AffineProcess(alpha, sigma)


# The shared "affine-vp" writes its schedule with np.exp, which is a NumPy-only callable (on a
# torch tensor it works only through NumPy's deprecated ``__array_wrap__`` path): the user owns
# the callables' backend, so here it is replaced by the same schedule written for any namespace.
BACKEND_PROCESSES = {**{k: v for k, v in PROCESSES.items() if k != "affine-vp"}, "affine-vp": _affine_generic()}


@pytest.fixture(params=list(BACKEND_PROCESSES), ids=list(BACKEND_PROCESSES))
def any_process(request) -> dc.AbstractProcess:
    """Every process kind of the shared list, the affine one with array-API callables."""
    return BACKEND_PROCESSES[request.param]


def _rtol(backend, process=None) -> float:
    # The affine process differentiates alpha and sigma by a 4th-order finite difference with
    # step h = 1e-3: in float32 its round-off is about eps / h = 6e-5 times the stencil weights
    # (sum |w| = 1.5), i.e. ~1e-4 on d_alpha, d_sigma and everything derived from them.
    if process is not None and isinstance(process, dc.AffineProcess) and backend.dtype == "float32":
        return 1e-3
    return backend.rtol


def assert_agrees(backend, out, ref, *, rtol: float | None = None, dtype: str | None = None) -> None:
    """``out`` has the backend's type/dtype/device and matches the NumPy float64 ``ref``."""
    backend.check_like(out, dtype=dtype)
    rtol = backend.rtol if rtol is None else rtol
    got = backend.to_numpy(out).astype(np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


def assert_scalar_agrees(backend, out, ref: float, *, rtol: float | None = None) -> None:
    """A 0-d result: a torch 0-d tensor, or a NumPy scalar/0-d array, of the backend's dtype."""
    if backend.is_torch:
        backend.check_like(out)
        assert out.ndim == 0
    else:
        assert isinstance(out, (np.ndarray, np.floating)), type(out)
        assert np.asarray(out).ndim == 0
        assert out.dtype == np.dtype(backend.dtype), out.dtype
    rtol = backend.rtol if rtol is None else rtol
    np.testing.assert_allclose(float(out), ref, rtol=rtol, atol=1e-300)


def _torch_generator(seed: int):
    import torch
    return torch.Generator().manual_seed(seed)


# -- processes -------------------------------------------------------------------------------


def test_schedule_methods_keep_backend(backend, any_process):
    t = backend(TIMES)
    rtol = _rtol(backend, any_process)
    for name in SCHEDULE_METHODS:
        out = getattr(any_process, name)(t)
        assert_agrees(backend, out, getattr(any_process, name)(TIMES), rtol=rtol)
    lam_ref = any_process.log_snr(TIMES)
    inv = any_process.log_snr_inverse(backend(lam_ref))
    # the inverse of the log-SNR is evaluated on float32-rounded lambdas: the error in t is
    # |d lambda| / |lambda'(t)| ~ eps |lambda| / |lambda'|, below 1e-5 for these schedules
    assert_agrees(backend, inv, TIMES, rtol=max(backend.rtol, 1e-5 if backend.dtype == "float32" else 1e-9))


def test_drift_keeps_backend(backend, any_process):
    x = np.random.default_rng(0).standard_normal((TIMES.size, 3))
    out = any_process.drift(backend(x), backend(TIMES))
    assert_agrees(backend, out, any_process.drift(x, TIMES), rtol=_rtol(backend, any_process))
    out = any_process.drift(backend(x), 0.4)
    assert_agrees(backend, out, any_process.drift(x, 0.4), rtol=_rtol(backend, any_process))


def test_transition_keeps_backend(backend, any_process):
    s, t = 0.5 * TIMES, TIMES
    tr = any_process.transition(backend(s), backend(t))
    ref = any_process.transition(s, t)
    rtol = _rtol(backend, any_process)
    assert_agrees(backend, tr.scale, ref.scale, rtol=rtol)
    assert_agrees(backend, tr.std, ref.std, rtol=rtol)
    tr = any_process.transition(0.01, backend(t))  # scalar s, array t
    ref = any_process.transition(0.01, t)
    assert_agrees(backend, tr.scale, ref.scale, rtol=rtol)
    assert_agrees(backend, tr.std, ref.std, rtol=rtol)


@pytest.mark.parametrize("rng_kind", ["int", "torch.Generator"])
def test_sample_transition_keeps_backend(backend, rng_kind):
    process = dc.VPSDE()
    x_s = np.random.default_rng(1).standard_normal((TIMES.size, 2))
    s, t = 0.5 * TIMES, TIMES

    def rng():
        return 7 if rng_kind == "int" else _torch_generator(7)

    # the same seed gives the same float64 normal draws whatever the array backend
    out = process.sample_transition(backend(x_s), backend(s), backend(t), rng=rng())
    ref = process.sample_transition(x_s, s, t, rng=rng())
    assert_agrees(backend, out, ref)


@pytest.mark.parametrize("rng_kind", ["int", "torch.Generator"])
def test_prior_keeps_backend(backend, any_process, rng_kind):
    like = backend(np.zeros((1, 3)))

    def rng():
        return 3 if rng_kind == "int" else _torch_generator(3)

    out = any_process.prior_sample((6, 3), rng=rng(), like=like)
    ref = any_process.prior_sample((6, 3), rng=rng(), like=np.zeros(0))
    assert_agrees(backend, out, ref)
    x = np.random.default_rng(2).standard_normal((6, 3))
    assert_agrees(backend, any_process.prior_log_prob(backend(x)), any_process.prior_log_prob(x))


def test_prior_from_a_torch_generator_alone():
    """Without ``like``, a torch generator gives a torch tensor on its device, in torch's default dtype."""
    import torch
    out = dc.VPSDE().prior_sample((4, 2), rng=torch.Generator().manual_seed(0))
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.get_default_dtype() and out.device.type == "cpu" and out.shape == (4, 2)


# -- distributions and exact marginals -----------------------------------------------------


def _mixture_arrays():
    ref = circle_mixture(k=3, radius=2.0, std=0.6)
    covs = np.array(ref.covs)
    covs[1] = [[0.5, 0.2], [0.2, 0.3]]  # one non-isotropic component
    return np.array([0.2, 0.3, 0.5]), np.array(ref.means), covs  # unequal weights: non-zero mean


def _points(n: int = 7, d: int = 2, seed: int = 3) -> np.ndarray:
    return 1.5 * np.random.default_rng(seed).standard_normal((n, d))


def test_gaussian_from_backend_arrays(backend):
    mean, cov = np.array([0.5, -1.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
    g, ref = dc.Gaussian(backend(mean), backend(cov)), dc.Gaussian(mean, cov)
    backend.check_like(g.mean)
    backend.check_like(g.cov)
    x = _points()
    assert_agrees(backend, g.log_prob(backend(x)), ref.log_prob(x))
    assert_agrees(backend, g.score(backend(x)), ref.score(x))
    out = g.sample(5, rng=11, like=backend(np.zeros((1, 2))))
    assert_agrees(backend, out, ref.sample(5, rng=11))
    assert_agrees(backend, g.sample(5, rng=11), ref.sample(5, rng=11))  # default: the mean's backend


def test_mixture_from_backend_arrays(backend):
    w, m, c = _mixture_arrays()
    gm, ref = dc.GaussianMixture(backend(w), backend(m), backend(c)), dc.GaussianMixture(w, m, c)
    x = _points()
    assert_agrees(backend, gm.log_prob(backend(x)), ref.log_prob(x))
    assert_agrees(backend, gm.score(backend(x)), ref.score(x))
    assert_agrees(backend, gm.responsibilities(backend(x)), ref.responsibilities(x))
    assert_agrees(backend, gm.mean, ref.mean)
    assert_agrees(backend, gm.cov, ref.cov)
    out = gm.sample(9, rng=5, like=backend(np.zeros((1, 2))))
    assert_agrees(backend, out, ref.sample(9, rng=5))


def test_marginal_of_backend_data(backend, any_process):
    w, m, c = _mixture_arrays()
    gm, ref = dc.GaussianMixture(backend(w), backend(m), backend(c)), dc.GaussianMixture(w, m, c)
    rtol = _rtol(backend, any_process)
    law, law_ref = dc.marginal(any_process, gm, 0.4), dc.marginal(any_process, ref, 0.4)
    assert_agrees(backend, law.weights, law_ref.weights, rtol=rtol)
    assert_agrees(backend, law.means, law_ref.means, rtol=rtol)
    assert_agrees(backend, law.covs, law_ref.covs, rtol=rtol)
    g = dc.Gaussian(backend(m[1]), backend(c[1]))
    law = dc.marginal(any_process, g, 0.4)
    law_ref = dc.marginal(any_process, dc.Gaussian(m[1], c[1]), 0.4)
    assert_agrees(backend, law.mean, law_ref.mean, rtol=rtol)
    assert_agrees(backend, law.cov, law_ref.cov, rtol=rtol)


@pytest.mark.parametrize("field", [dc.exact_score, dc.exact_denoiser, dc.exact_log_prob])
@pytest.mark.parametrize("data_from", ["backend", "numpy"])
def test_exact_fields_keep_backend(backend, any_process, field, data_from):
    w, m, c = _mixture_arrays()
    ref = dc.GaussianMixture(w, m, c)
    gm = ref if data_from == "numpy" else dc.GaussianMixture(backend(w), backend(m), backend(c))
    f, f_ref = field(any_process, gm), field(any_process, ref)
    x = _points(n=TIMES.size)
    rtol = _rtol(backend, any_process)
    assert_agrees(backend, f(backend(x), 0.4), f_ref(x, 0.4), rtol=rtol)
    assert_agrees(backend, f(backend(x), backend(TIMES)), f_ref(x, TIMES), rtol=rtol)
    if data_from == "numpy":  # parameters converted once per (library, device, dtype) and cached
        comps = gm._components
        assert comps.like(backend(x)) is comps.like(backend(x))


@pytest.mark.parametrize(("source", "target"), [("eps", "score"), ("score", "x0"), ("v", "eps"), ("x0", "velocity")])
def test_convert_keeps_backend(backend, source, target):
    process = dc.VPSDE()
    rng = np.random.default_rng(4)
    x, value = rng.standard_normal((TIMES.size, 2)), rng.standard_normal((TIMES.size, 2))
    for t_ref, t in ((TIMES, backend(TIMES)), (0.3, 0.3)):
        out = dc.convert(backend(value), backend(x), t, process, source=source, target=target)
        assert_agrees(backend, out, dc.convert(value, x, t_ref, process, source=source, target=target))


def test_reparametrize_keeps_backend(backend):
    process, data = dc.VPSDE(), circle_mixture(k=4)
    eps_model = dc.reparametrize(dc.exact_score(process, data), process, source="score", target="eps")
    score_again = dc.reparametrize(eps_model, process, source="eps", target="score")
    x = _points(n=TIMES.size)
    out = score_again(backend(x), backend(TIMES))
    assert_agrees(backend, out, dc.exact_score(process, data)(x, TIMES))


# -- metrics ---------------------------------------------------------------------------------


def test_w2_keeps_backend(backend):
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((30, 2)), rng.standard_normal((40, 2)) + 0.5
    assert_scalar_agrees(backend, dc.w2(backend(x), backend(y)), float(dc.w2(x, y)))
    a = rng.uniform(0.5, 1.0, 30)
    a /= a.sum()
    assert_scalar_agrees(backend, dc.w2(backend(x), backend(y), a=backend(a)), float(dc.w2(x, y, a=a)))


def test_sliced_w2_keeps_backend(backend):
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((30, 3)), rng.standard_normal((40, 3)) + 0.5
    # same seed -> same float64 directions on every backend, so the estimates agree
    out = dc.sliced_w2(backend(x), backend(y), n_projections=16, rng=2)
    assert_scalar_agrees(backend, out, float(dc.sliced_w2(x, y, n_projections=16, rng=2)))
    out = dc.sliced_w2(backend(x), backend(y), n_projections=16, rng=_torch_generator(2))
    ref = dc.sliced_w2(x, y, n_projections=16, rng=_torch_generator(2))
    assert_scalar_agrees(backend, out, float(ref))


def test_w2_gaussian_keeps_backend(backend):
    m1, c1 = np.array([0.0, 1.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
    m2, c2 = np.array([1.0, -0.5]), np.array([[2.0, -0.4], [-0.4, 0.8]])
    out = dc.w2_gaussian(backend(m1), backend(c1), backend(m2), backend(c2))
    assert_scalar_agrees(backend, out, float(dc.w2_gaussian(m1, c1, m2, c2)))


# -- samplers --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["heun", "euler_maruyama"])
def test_sample_keeps_backend(backend, method):
    process, data = dc.VPSDE(), circle_mixture(k=4, radius=2.0, std=0.5)
    score = dc.exact_score(process, data)
    x_init = process.prior_sample((16, 2), rng=0)
    # the noise of the SDE comes from the same int seed, drawn in float64 on every backend
    sol = dc.sample(process, score, backend(x_init), method=method, steps=10, rng=1, t_min=0.05, save_path=True)
    ref = dc.sample(process, score, x_init, method=method, steps=10, rng=1, t_min=0.05, save_path=True)
    assert_agrees(backend, sol.x, ref.x)
    assert_agrees(backend, sol.path, ref.path)
    assert sol.nfe == ref.nfe
    assert isinstance(sol.ts, np.ndarray)
    np.testing.assert_array_equal(sol.ts, ref.ts)


@pytest.mark.parametrize("method", ["rk4", "ancestral"])
def test_integrate_keeps_backend(backend, method):
    process, data = dc.VESDE(sigma_min=0.01, sigma_max=10.0), circle_mixture(k=4, radius=2.0, std=0.5)
    score = dc.exact_score(process, data)
    solver = dc.get_solver(method)
    dyn = (dc.ReverseSDE if solver.stochastic else dc.ProbabilityFlowODE)(process, score)
    ts = dc.time_grid(process, 8, t_min=0.05)
    x_init = process.prior_sample((16, 2), rng=0)
    sol = dc.integrate(dyn, backend(x_init), backend(ts), solver, rng=_torch_generator(4))
    ref = dc.integrate(dyn, x_init, ts, solver, rng=_torch_generator(4))
    assert_agrees(backend, sol.x, ref.x)
