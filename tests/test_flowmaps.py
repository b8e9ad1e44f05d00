"""The exact flow map and the residuals that define a flow map (diffcore.flowmaps).

Oracles: the affine closed form against the adaptive reference (independent: one is linear
algebra on the marginals, the other integrates the ODE); the pushforward identity
``A Sigma_t A^T = Sigma_s``; the Jacobian against finite differences of the reference; the
change-of-variables log-determinant against the closed form and against finite differences;
the reference's error against its tolerance; and both residuals: ~0 for the exact map, far from
0 for the map of another process.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PROCESSES

import diffcore as dc
from diffcore.flowmaps import exact_flow_map, flow_map_residual, semigroup_residual

GAUSS = dc.Gaussian(np.array([1.0, -0.5]), np.array([[0.6, 0.2], [0.2, 0.3]]))
MIX = dc.GaussianMixture([0.3, 0.7], [[-1.5, 0.5], [1.0, -1.0]], [[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.1], [-0.1, 0.4]]])
SOURCES = {
    **PROCESSES,
    "mean-reverting": dc.MeanRevertingSDE(mu=np.array([0.5, -0.5])),
}
INTERPOLANTS = {
    "one-sided linear": (dc.OneSidedInterpolant("linear"), (dc.Gaussian(np.zeros(2), np.eye(2)), GAUSS)),
    "one-sided trig": (dc.OneSidedInterpolant("trigonometric"), (dc.Gaussian(np.zeros(2), np.eye(2)), GAUSS)),
    # two Gaussian ends with commuting covariances, and latent noise
    "linear, gamma": (
        dc.LinearInterpolant(gamma_scale=0.5),
        (dc.Gaussian(np.array([2.0, 0.0]), 0.5 * np.eye(2)), GAUSS),
    ),
}
X = np.random.default_rng(0).normal(size=(64, 2))
TIMES = [(1.0, 0.0), (0.9, 0.2), (0.3, 0.8), (0.05, 1.0)]


def _pairs():
    for name, src in SOURCES.items():
        yield pytest.param(src, GAUSS, id=name)
    for name, (src, ends) in INTERPOLANTS.items():
        yield pytest.param(src, ends, id=name)


@pytest.mark.parametrize(("source", "data"), list(_pairs()))
@pytest.mark.parametrize(("t", "s"), TIMES, ids=[f"{t}->{s}" for t, s in TIMES])
def test_closed_form_equals_the_adaptive_reference(source, data, t, s):
    """Affine closed form vs Dormand-Prince at rtol = atol = 1e-11: agreement to 1e-8."""
    closed = exact_flow_map(source, data, t, s)
    assert closed.affine
    ref = exact_flow_map(source, data, t, s, rtol=1e-11, atol=1e-11, reference=True)
    assert not ref.affine
    x = closed._law_t.sample(64, rng=1)  # points where the marginal lives
    value, err = ref.with_error(x)
    assert err < 1e-8
    np.testing.assert_allclose(closed(x), value, atol=1e-8, rtol=0)
    # it pushes p_t to p_s exactly: A Sigma_t A^T = Sigma_s, A mu_t + b = mu_s
    a, law_t, law_s = closed.matrix, closed._law_t, closed._law_s
    np.testing.assert_allclose(a @ law_t.covs[0] @ a.T, law_s.covs[0], atol=1e-12)
    np.testing.assert_allclose(a @ law_t.means[0] + closed.offset, law_s.means[0], atol=1e-12)


@pytest.mark.parametrize(("source", "data"), list(_pairs()))
def test_jacobian_and_log_determinant(source, data):
    """The closed-form Jacobian equals central differences of the reference (h = 1e-3, error
    h^2 |Phi'''| + tol / h < 1e-6); the change-of-variables log-determinant of the reference
    equals the closed form to 1e-8."""
    t, s = 0.9, 0.1
    closed = exact_flow_map(source, data, t, s)
    ref = exact_flow_map(source, data, t, s, rtol=1e-12, atol=1e-12, reference=True)
    x, h = X[:4], 1e-3
    fd = np.stack([(ref(x + h * e) - ref(x - h * e)) / (2 * h) for e in np.eye(2)], axis=-1)
    np.testing.assert_allclose(closed.jacobian(x), fd, atol=1e-6)
    logdet = closed.log_det_jacobian(x)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(closed.matrix)[1], atol=1e-14)
    np.testing.assert_allclose(ref.log_det_jacobian(x), logdet, atol=1e-8)


def test_mixture_log_determinant_matches_finite_differences():
    """No closed form for a mixture: the change-of-variables log-det against slogdet of the FD Jacobian."""
    ref = exact_flow_map(dc.VPSDE(), MIX, 0.8, 0.05, rtol=1e-12, atol=1e-12)
    assert not ref.affine
    x, h = X[:6], 1e-4
    fd = np.stack([(ref(x + h * e) - ref(x - h * e)) / (2 * h) for e in np.eye(2)], axis=-1)
    np.testing.assert_allclose(ref.log_det_jacobian(x), np.linalg.slogdet(fd)[1], atol=1e-6)
    with pytest.raises(ValueError, match="jacobian is the closed form of an affine flow map"):
        ref.jacobian(x)


def test_reference_error_follows_its_tolerance_and_bounds_rk4():
    """The mixture reference: its error (against a 1e-13 solution) is proportional to the tolerance
    (slope 1 in log-log within 0.25: error control per step), and RK4 on a uniform grid converges
    to it at order 4 (slope within 0.3 of 4) while staying far above the reference's own error."""
    p, t, s = dc.VPSDE(), 0.9, 0.1
    x = dc.marginal(p, MIX, t).sample(32, rng=2)
    best = exact_flow_map(p, MIX, t, s, rtol=1e-13, atol=1e-13)(x)
    tols = np.array([1e-5, 1e-6, 1e-7, 1e-8])
    errs = np.array([np.abs(exact_flow_map(p, MIX, t, s, rtol=r, atol=r)(x) - best).max() for r in tols])
    slope = np.polyfit(np.log(tols), np.log(errs), 1)[0]
    assert abs(slope - 1) < 0.25, (slope, errs)
    ode = dc.ProbabilityFlowODE(p, dc.exact_score(p, MIX))
    steps = np.array([8, 16, 32, 64])
    rk = np.array([np.abs(dc.integrate(ode, x, np.linspace(t, s, k + 1), "rk4").x - best).max() for k in steps])
    order = -np.polyfit(np.log(steps), np.log(rk), 1)[0]
    assert abs(order - 4) < 0.3, (order, rk)
    assert rk.min() > 1e3 * np.abs(exact_flow_map(p, MIX, t, s)(x) - best).max()


@pytest.mark.parametrize("data", [GAUSS, MIX], ids=["gaussian", "mixture"])
def test_semigroup_and_identity(data):
    """Phi_{s->u} o Phi_{t->s} = Phi_{t->u} to rounding (affine) or to the tolerance (reference),
    and Phi_{t->t} = id; a map of another process breaks the law by far more."""
    p = dc.VPSDE()
    tol = 1e-12 if data is GAUSS else 1e-7

    def fam(x, t, s, proc=p):
        return exact_flow_map(proc, data, t, s, rtol=1e-11, atol=1e-11)(x)

    x = X[:16]
    for t, s, u in [(1.0, 0.5, 0.0), (0.2, 0.9, 0.4), (0.7, 0.7, 0.1)]:
        assert np.abs(semigroup_residual(fam, x, t, s, u)).max() < tol
    np.testing.assert_array_equal(fam(x, 0.3, 0.3), x)
    other = dc.VPSDE(beta_max=15.0)

    def mixed(x, t, s):  # the first leg of the other process: no longer a semigroup
        return fam(x, t, s, other if (t, s) == (1.0, 0.5) else p)

    assert np.abs(semigroup_residual(mixed, x, 1.0, 0.5, 0.0)).max() > 1e-2


@pytest.mark.parametrize("data", [GAUSS, MIX], ids=["gaussian", "mixture"])
def test_eulerian_residual_vanishes_for_the_exact_map_only(data):
    """d_t Phi + (grad Phi) v = 0 for the exact map (central differences, h = 1e-4: O(h^2) ~ 1e-8
    plus the reference's tolerance over h); the map of another process has a residual of O(1)."""
    p = dc.VPSDE()
    v = dc.ProbabilityFlowODE(p, dc.exact_score(p, data)).drift

    def fam(x, t, s, proc=p):
        return exact_flow_map(proc, data, t, s, rtol=1e-13, atol=1e-13)(x)

    x = X[:16]
    for t, s in [(0.8, 0.0), (0.3, 0.9)]:
        r = flow_map_residual(fam, v, x, t, s)
        assert np.abs(r).max() < 1e-6, np.abs(r).max()
        wrong = flow_map_residual(lambda x, t, s: fam(x, t, s, dc.VPSDE(beta_max=15.0)), v, x, t, s)
        assert np.abs(wrong).max() > 1e-2


def test_eulerian_residual_by_autograd_on_a_torch_map():
    """A differentiable torch flow map (the closed form written with torch ops, per-point times):
    the forward-mode residual is ~0, equals the finite-difference one, and flags a wrong map."""
    torch = pytest.importorskip("torch")
    p = dc.VPSDE()
    m, c = torch.tensor([1.0, -0.5], dtype=torch.float64), torch.tensor([0.6, 0.3], dtype=torch.float64)
    data = dc.Gaussian(m.numpy(), np.diag(c.numpy()))

    def fam(x, t, s, start=p):
        def moments(u, proc):
            u = torch.as_tensor(u, dtype=x.dtype).reshape(-1)
            a, sg = proc.alpha(u).reshape(-1, 1), proc.sigma(u).reshape(-1, 1)
            return a * m, a**2 * c + sg**2

        (mt, vt), (ms, vs) = moments(t, start), moments(s, p)
        return ms + torch.sqrt(vs / vt) * (x - mt)

    v = dc.ProbabilityFlowODE(p, dc.exact_score(p, data)).drift
    x = torch.as_tensor(X[:16])
    r = flow_map_residual(fam, v, x, 0.7, 0.1)
    assert isinstance(r, torch.Tensor) and r.shape == x.shape
    assert float(r.abs().max()) < 1e-12
    fd = flow_map_residual(fam, v, x, 0.7, 0.1, method="fd")
    assert float((fd - r).abs().max()) < 1e-7
    # (scaling the map's deviation term would not do: any function of the trajectory invariant
    # solves the equation, only Phi(x, s, s) = x pins the map down) -- the start clock of another process:
    wrong = flow_map_residual(lambda x, t, s: fam(x, t, s, start=dc.VPSDE(beta_max=15.0)), v, x, 0.7, 0.1)
    assert float(wrong.abs().max()) > 1e-2


def test_torch_inputs_keep_their_type(backend):
    """The map follows x's library, dtype and device (NumPy float64 agreement to the backend's rtol)."""
    phi = exact_flow_map(dc.VPSDE(), GAUSS, 1.0, 0.2)
    x = backend(X)
    out = phi(x)
    backend.check_like(out)
    np.testing.assert_allclose(backend.to_numpy(out), phi(X), rtol=10 * backend.rtol, atol=10 * backend.rtol)
    backend.check_like(phi.log_det_jacobian(x))
    backend.check_like(phi.jacobian(x))


def test_bad_input():
    p = dc.VPSDE()
    with pytest.raises(TypeError, match="source must be an AbstractProcess or an AbstractInterpolant"):
        exact_flow_map("vp", GAUSS, 1.0, 0.0)
    with pytest.raises(TypeError, match="data must be a Gaussian or a GaussianMixture"):
        exact_flow_map(p, np.zeros(2), 1.0, 0.0)
    with pytest.raises(TypeError, match=r"data must be the pair \(rho0, rho1\)"):
        exact_flow_map(dc.OneSidedInterpolant(), GAUSS, 1.0, 0.0)
    with pytest.raises(ValueError, match="t must"):
        exact_flow_map(p, GAUSS, 1.5, 0.0)
    with pytest.raises(ValueError, match="rtol must be > 0"):
        exact_flow_map(p, GAUSS, 1.0, 0.0, rtol=0.0)
    with pytest.raises(TypeError, match="reference must be a bool"):
        exact_flow_map(p, GAUSS, 1.0, 0.0, reference="yes")
    phi = exact_flow_map(p, GAUSS, 1.0, 0.0)
    with pytest.raises(ValueError, match="x must"):
        phi(np.zeros((3, 3)))
    fam = lambda x, t, s: exact_flow_map(p, GAUSS, t, s)(x)  # noqa: E731
    v = dc.ProbabilityFlowODE(p, dc.exact_score(p, GAUSS)).drift
    with pytest.raises(TypeError, match="flow_map must be a callable"):
        flow_map_residual(None, v, X, 0.5, 0.0)
    with pytest.raises(TypeError, match="velocity must be a callable"):
        flow_map_residual(fam, None, X, 0.5, 0.0)
    with pytest.raises(ValueError, match="unknown method 'spectral'"):
        flow_map_residual(fam, v, X, 0.5, 0.0, method="spectral")
    with pytest.raises(TypeError, match="method='autograd' needs x as a torch tensor"):
        flow_map_residual(fam, v, X, 0.5, 0.0, method="autograd")
    with pytest.raises(ValueError, match="fd_step <= t <= 1 - fd_step"):
        flow_map_residual(fam, v, X, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"flow_map must return an array shaped like its input x \(64, 2\)"):
        semigroup_residual(lambda x, t, s: x[:, :1], X, 1.0, 0.5, 0.0)


# -- parametrisations -------------------------------------------------------------------------------
from diffcore.flowmaps import MAP_PARAMETRIZATIONS, from_flow_map, to_flow_map  # noqa: E402

VP = dc.VPSDE()
T_MIN = 1e-3


def _exact_family(x, t, s, proc=VP, data=MIX):
    """The exact map of the mixture at per-point times: one reference solve per distinct (t, s)."""
    if np.ndim(t) == 0 and np.ndim(s) == 0:
        return exact_flow_map(proc, data, float(t), float(s), rtol=1e-12, atol=1e-12)(x)
    t, s = np.broadcast_to(t, (x.shape[0],)), np.broadcast_to(s, (x.shape[0],))
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = exact_flow_map(proc, data, float(t[i]), float(s[i]), rtol=1e-12, atol=1e-12)(x[i : i + 1])[0]
    return out


def _net_times(kind, t, s):
    """The times a network of ``kind`` is called with."""
    return {"consistency": (t,), "shortcut": (t, s - t)}.get(kind, (t, s))


@pytest.mark.parametrize("kind", MAP_PARAMETRIZATIONS)
def test_parametrisations_round_trip_the_exact_map(kind):
    """from_flow_map then to_flow_map gives back the exact mixture map (to rounding), at scalar and
    per-point times."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 2))
    t = rng.uniform(0.3, 0.9, size=6)
    s = np.full(6, T_MIN) if kind == "consistency" else t * rng.uniform(0.1, 0.9, size=6)
    net = from_flow_map(kind, _exact_family, VP, t_min=T_MIN)
    phi = to_flow_map(kind, net, VP, t_min=T_MIN)
    np.testing.assert_allclose(phi(x, t, s), _exact_family(x, t, s), atol=1e-12)
    np.testing.assert_allclose(
        phi(x, 0.7, s[0] if kind != "consistency" else T_MIN),
        _exact_family(x, 0.7, s[0] if kind != "consistency" else T_MIN),
        atol=1e-12,
    )


@pytest.mark.parametrize("kind", MAP_PARAMETRIZATIONS)
def test_the_boundary_condition_holds_for_any_network(kind):
    """Phi(x, t, t) = x exactly whatever the network says (consistency: at t_min)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 2))

    def net(x, *times):
        return np.tanh(x[:, ::-1] * 3.0) + 7.0

    phi = to_flow_map(kind, net, VP, t_min=T_MIN)
    t = T_MIN if kind == "consistency" else np.array([0.2, 0.5, 0.5, 0.9, 1.0 - 1e-9])
    np.testing.assert_array_equal(phi(x, t, t), x)
    assert np.abs(phi(x, 0.5, T_MIN if kind == "consistency" else 0.3) - x).max() > 1.0  # the net matters elsewhere


def test_the_limits_are_the_velocity_and_the_denoiser():
    """As s -> t the mean velocity tends to v(x, t) and CTM's g to E[x_0 | x_t], both at rate O(h)
    (slope 1 within 0.2), and from_flow_map returns the given limit at s = t."""
    x = X[:8]
    t = 0.6
    v = dc.ProbabilityFlowODE(VP, dc.exact_score(VP, MIX)).drift
    den = dc.exact_denoiser(VP, MIX)
    hs = np.array([1e-2, 5e-3, 2.5e-3])
    for kind, field in (("mean_velocity", v), ("ctm", den)):
        target = from_flow_map(kind, _exact_family, VP, limit=field)
        errs = np.array([np.abs(target(x, t, t - h) - field(x, t)).max() for h in hs])
        slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
        assert abs(slope - 1) < 0.2, (kind, slope, errs)
        np.testing.assert_array_equal(target(x, t, t), field(x, t))
        per_point = target(x, np.full(8, t), np.r_[np.full(4, t), np.full(4, t - hs[0])])
        np.testing.assert_array_equal(per_point[:4], field(x[:4], t))
    shortcut = from_flow_map("shortcut", _exact_family, limit=v)
    np.testing.assert_allclose(
        shortcut(x, t, -hs[0]), from_flow_map("mean_velocity", _exact_family)(x, t, t - hs[0]), atol=1e-13
    )


def test_parametrisation_bad_input():
    net = lambda x, t, s: x  # noqa: E731
    with pytest.raises(ValueError, match="unknown kind 'euler'"):
        to_flow_map("euler", net, VP)
    with pytest.raises(TypeError, match="the ctm parametrisation is defined through a process"):
        to_flow_map("ctm", net)
    with pytest.raises(TypeError, match="net must be a callable"):
        to_flow_map("mean_velocity", None)
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        to_flow_map("consistency", net, VP, sigma_data=0.0)
    with pytest.raises(ValueError, match=r"the ctm parametrisation maps backwards in time \(s <= t\)"):
        to_flow_map("ctm", net, VP)(X, 0.3, 0.5)
    with pytest.raises(ValueError, match=r"a consistency model maps to t_min = 0\.001 only"):
        to_flow_map("consistency", lambda x, t: x, VP)(X, 0.5, 0.2)
    with pytest.raises(ValueError, match=r"starts at times t >= t_min = 0\.001"):
        to_flow_map("consistency", lambda x, t: x, VP)(X, 0.0, 1e-3)
    with pytest.raises(ValueError, match="kappa = sigma / alpha is infinite where alpha"):
        to_flow_map("ctm", net, dc.AffineProcess(lambda t: 1 - t, lambda t: t))(X, 1.0, 0.5)
    with pytest.raises(ValueError, match=r"net must return an array shaped like its input x \(64, 2\)"):
        to_flow_map("mean_velocity", lambda x, t, s: x[:, 0])(X, 0.5, 0.2)
    with pytest.raises(ValueError, match="pass limit="):
        from_flow_map("mean_velocity", _exact_family)(X[:2], 0.5, 0.5)
    with pytest.raises(ValueError, match="s must lie in"):
        to_flow_map("mean_velocity", net)(X, 0.5, 1.2)


# -- few-step sampling --------------------------------------------------------------------------------
from diffcore.flowmaps import consistency_sample, flow_map_sample  # noqa: E402


def _gauss_family(x, t, s):
    return exact_flow_map(VP, GAUSS, t, s)(x)


def test_chained_jumps_of_the_exact_map_do_not_depend_on_the_grid():
    x = VP.prior_sample((32, 2), rng=5)
    one = flow_map_sample(_gauss_family, x, [1.0, T_MIN])
    assert one.nfe == 1 and one.solver is None
    for k in (2, 4):
        sol = flow_map_sample(_gauss_family, x, np.linspace(1.0, T_MIN, k + 1))
        assert sol.nfe == k
        np.testing.assert_allclose(sol.x, one.x, atol=1e-12)
    # a map that is not a semigroup (the first jump of another schedule) depends on the grid
    other = lambda x, t, s: exact_flow_map(dc.VPSDE(beta_max=15.0) if t == 1.0 else VP, GAUSS, t, s)(x)  # noqa: E731
    two = flow_map_sample(other, x, [1.0, 0.5, T_MIN])
    assert np.abs(two.x - flow_map_sample(other, x, [1.0, T_MIN]).x).max() > 1e-2


def test_consistency_sampling_with_the_exact_map_samples_the_marginal():
    """Three denoise/re-noise rounds keep the exact law: the sample mean is within 4.5 standard
    errors of the marginal mean at t_min, and each covariance entry within 4.5 of its SE."""
    n = 20_000
    x = VP.prior_sample((n, 2), rng=6)
    sol = consistency_sample(_gauss_family, VP, x, [1.0, 0.6, 0.3], t_min=T_MIN, rng=7)
    assert sol.nfe == 3
    law = dc.marginal(VP, GAUSS, T_MIN)
    se = np.sqrt(np.diag(law.cov) / n)
    assert np.all(np.abs(sol.x.mean(axis=0) - law.mean) < 4.5 * se)
    cov = np.cov(sol.x.T)
    cov_se = np.sqrt((law.cov**2 + np.outer(np.diag(law.cov), np.diag(law.cov))) / n)  # Gaussian Var of S_ij
    assert np.all(np.abs(cov - law.cov) < 4.5 * cov_se), (cov, law.cov)


def test_few_step_sampling_bad_input():
    x = VP.prior_sample((4, 2), rng=0)
    with pytest.raises(TypeError, match="flow_map must be a callable"):
        flow_map_sample(None, x, [1.0, 0.0])
    with pytest.raises(ValueError, match="ts must hold at least two times"):
        flow_map_sample(_gauss_family, x, [1.0])
    with pytest.raises(FloatingPointError, match=r"non-finite at step 1 \(t = 0.5 -> 0.0\)"):
        flow_map_sample(lambda x, t, s: x + (np.inf if s == 0 else 0.0), x, [1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="ts must be decreasing"):
        consistency_sample(_gauss_family, VP, x, [0.3, 0.6])
    with pytest.raises(ValueError, match=r"every time in ts above t_min = 0\.002"):
        consistency_sample(_gauss_family, VP, x, [1.0, 0.001])
    with pytest.raises(TypeError, match="process must be an AbstractProcess"):
        consistency_sample(_gauss_family, None, x, [1.0])
