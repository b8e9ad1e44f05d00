"""Graph SDE systems (GDSS): symmetry, masks, equivariance, exact laws, the S4 solver, frequencies.

The analytic laboratory (all labellings of P4, C4, K_{1,3}, paw and P5 as a Gaussian mixture on
packed coordinates) has an exact score, so sampling it must recover the template frequencies,
and a single-template laboratory is Gaussian, so the S4 solver's output law can be propagated
exactly (``propagate_gaussian_law``) to measure its weak order without Monte Carlo noise.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.integrate import solve_ivp
from strategies import graph_batches

import diffcore as dc
from diffcore.graphs import (
    S4,
    GraphLaboratory,
    GraphReverseSDE,
    GraphSDE,
    check_graphs,
    graph_mmd2,
    graph_mmd2_floor,
    linear_half_step,
    pack,
    packed_mask,
    quantize,
    sample_graphs,
    symmetric_noise,
    to_networkx,
    unpack,
)
from diffcore.testing import fit_order, propagate_gaussian_law

#: different processes for X and A, so that the packed coefficients are not isotropic
SYSTEM = GraphSDE(dc.VPSDE(), dc.VESDE(sigma_min=0.01, sigma_max=5.0))
LAB = GraphLaboratory.small(tau=0.1)
METHODS = ("pc", "s4", "euler_maruyama")


def _sym_masked(A, mask):
    """A is exactly symmetric, has an exactly zero diagonal and is exactly zero at masked-out nodes."""
    pair = mask[:, :, None] * mask[:, None, :]
    assert np.array_equal(A, A.transpose(0, 2, 1))
    assert np.all(np.diagonal(A, axis1=1, axis2=2) == 0)
    assert np.all(A[pair == 0] == 0)


def _standard_score(X, A, t, mask):
    """The exact score of N(0, I) data under a VP system (the law is N(0, I) at every t)."""
    return -X * mask[:, :, None], -A


# -- packing, noise, prior, marginals: symmetry and masks -----------------------------------
@given(graph_batches())
def test_pack_round_trip_and_mask(batch):
    X, A, mask = batch
    X2, A2 = unpack(pack(X, A), mask.shape[1], X.shape[2])
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(A2, A)
    assert np.all(pack(X, A)[packed_mask(mask, X.shape[2]) == 0] == 0)


@given(graph_batches(), st.integers(0, 2**31 - 1))
def test_noise_prior_and_marginal_are_symmetric_and_masked(batch, seed):
    X, A, mask = batch
    n, N, F = X.shape
    _sym_masked(symmetric_noise((n, N, N), seed, mask=mask), mask)
    Xp, Ap = SYSTEM.prior_sample(n, N, F, seed, mask=mask)
    _sym_masked(Ap, mask)
    assert np.all(Xp[mask == 0] == 0)
    Xt, At, eps_x, eps_a = SYSTEM.sample_marginal(X, A, 0.4, seed, mask=mask)
    _sym_masked(At, mask)
    _sym_masked(eps_a, mask)
    assert np.all(Xt[mask == 0] == 0)
    # the returned noises are the ones used: X_t = alpha X_0 + sigma eps exactly (to rounding)
    (ax, aa), (sx, sa) = SYSTEM.alpha(0.4), SYSTEM.sigma(0.4)
    np.testing.assert_allclose(Xt, ax * X + sx * eps_x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(At, aa * A + sa * eps_a, rtol=0, atol=1e-12)


def test_symmetric_noise_law():
    """Upper entries are i.i.d. N(0, 1): mean 0 and variance 1 within 5 standard errors."""
    Z = symmetric_noise((4000, 4, 4), 0)
    iu, ju = np.triu_indices(4, 1)
    upper = Z[:, iu, ju]
    se_mean, se_var = 1 / np.sqrt(upper.shape[0]), np.sqrt(2 / upper.shape[0])
    assert np.all(np.abs(upper.mean(axis=0)) < 5 * se_mean)
    assert np.all(np.abs(upper.var(axis=0) - 1) < 5 * se_var)
    corr = np.corrcoef(upper.T) - np.eye(upper.shape[1])
    assert np.abs(corr).max() < 5 * se_mean  # independent pairs


@settings(max_examples=15)
@given(graph_batches(n_max=3, nodes_max=5), st.sampled_from(METHODS), st.integers(0, 2**31 - 1))
def test_samplers_keep_symmetry_and_masks(batch, method, seed):
    _, _, mask = batch
    mask[0, 0] = 1.0  # pc's corrector needs a non-zero score somewhere in the batch (batch-averaged norms)
    sde = GraphSDE(dc.VPSDE(), dc.VPSDE())
    out = sample_graphs(sde, _standard_score, mask, n_features=2, method=method, steps=4, rng=seed)
    _sym_masked(out.A, mask)
    assert np.all(out.X[mask == 0] == 0)


@settings(max_examples=20)
@given(st.permutations(range(5)), st.integers(4, 5), st.floats(0.01, 1.0), st.integers(0, 2**31 - 1))
def test_laboratory_score_is_symmetric_and_masked(perm, count, t, seed):
    mask = np.zeros((3, 5))
    mask[:, list(perm)[:count]] = 1.0  # any set of present nodes, not only the first
    Xt, At = SYSTEM.prior_sample(3, 5, 1, seed, mask=mask)
    s_x, s_a = LAB.exact_score(SYSTEM)(Xt, At, t, mask)
    _sym_masked(s_a, mask)
    assert np.all(s_x[mask == 0] == 0)


# -- equivariance --------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["numpy", "torch"])
def test_laboratory_score_is_permutation_equivariant(backend_name):
    """score(P X, P A P^T) = (P s_X, P s_A P^T); float64, so agreement to 1e-10 (rounding only)."""
    rng = np.random.default_rng(3)
    X0, A0, mask = LAB.sample(64, rng)
    Xt, At, _, _ = SYSTEM.sample_marginal(X0, A0, 0.3, rng, mask=mask)
    perms = np.stack([rng.permutation(5) for _ in range(64)])
    P = np.eye(5)[perms]  # (n, N, N), rows of the identity
    args = (Xt, At, P @ Xt, P @ At @ P.transpose(0, 2, 1), mask, (P @ mask[:, :, None])[:, :, 0])
    if backend_name == "torch":
        torch = pytest.importorskip("torch")
        args = tuple(torch.as_tensor(a) for a in args)
    score = LAB.exact_score(SYSTEM)
    s_x, s_a = score(args[0], args[1], 0.3, args[4])
    p_x, p_a = score(args[2], args[3], 0.3, args[5])
    s_x, s_a, p_x, p_a = (np.asarray(a) for a in (s_x, s_a, p_x, p_a))
    np.testing.assert_allclose(p_x, P @ s_x, atol=1e-10)
    np.testing.assert_allclose(p_a, P @ s_a @ P.transpose(0, 2, 1), atol=1e-10)
    assert np.abs(s_a).max() > 1  # not trivially zero


def test_laboratory_score_torch_matches_numpy(backend):
    X0, A0, mask = LAB.sample(16, 0)
    Xt, At, _, _ = SYSTEM.sample_marginal(X0, A0, np.linspace(0.05, 0.9, 16), 1, mask=mask)
    t = np.linspace(0.05, 0.9, 16)
    ref = LAB.exact_score(SYSTEM)(Xt, At, t, mask)
    out = LAB.exact_score(SYSTEM)(backend(Xt), backend(At), backend(t), backend(mask))
    for r, o in zip(ref, out, strict=True):
        backend.check_like(o)
        # float32: logits of size ~D / tau^2 ~ 1e3 lose ~1e-4 relative in the responsibilities
        np.testing.assert_allclose(backend.to_numpy(o), r, rtol=backend.rtol, atol=1e3 * backend.rtol)


# -- exactness ------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.0, 0.05, 0.5])
def test_laboratory_score_is_the_gradient_of_its_log_density(t):
    """Central differences (h = 1e-5) of log p_t on packed coordinates: error ~h^2 |d^3 log p| + eps/h ~ 1e-6."""
    rng = np.random.default_rng(4)
    X0, A0, mask = LAB.sample(6, rng)
    Xt, At, _, _ = SYSTEM.sample_marginal(X0, A0, max(t, 0.02), rng, mask=mask)
    system = SYSTEM if t > 0 else None
    x = pack(Xt, At)
    s = pack(*LAB.exact_score(SYSTEM)(Xt, At, t, mask)) if t > 0 else None
    h = 1e-5
    cm = packed_mask(mask, 1)
    fd = np.zeros_like(x)
    for d in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[d] = h
        up, dn = (unpack((x + sgn * e) * cm, 5, 1) for sgn in (1, -1))
        fd[:, d] = (LAB.log_prob(*up, mask, t=t, system=system) - LAB.log_prob(*dn, mask, t=t, system=system)) / (2 * h)
    fd *= cm
    if s is None:  # t = 0: compare with the t -> 0 limit of the VE-exact system (sigma(0) = 0)
        s = pack(*LAB.exact_score(SYSTEM)(Xt, At, 0.0, mask))
    np.testing.assert_allclose(s, fd, rtol=1e-5, atol=1e-4)


def test_laboratory_log_density_is_normalised_in_one_dimension():
    """A one-pair template family (N = 2, F = 1): the density integrates to 1 over (x_1, x_2, a_12)."""
    lab = GraphLaboratory([(np.array([[0.0], [1.0]]), np.array([[0.0, 1.0], [1.0, 0.0]]))], tau=0.3)
    g = np.linspace(-1.5, 2.5, 41)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    X, A = unpack(pts, 2, 1)
    dens = np.exp(lab.log_prob(X, A))
    assert abs(dens.sum() * (g[1] - g[0]) ** 3 - 1) < 1e-3  # Riemann sum of a smooth density, 4 std wide


@pytest.mark.parametrize("proc", [dc.VPSDE(), dc.VESDE(0.01, 5.0), dc.CosineVPSDE()], ids=["vp", "ve", "cosine"])
def test_half_step_is_the_exact_transition_of_the_linear_part(proc):
    """Closed form against the moment ODEs dm/dt = f m, dV/dt = 2 f V - g^2, integrated backwards by DOP853."""
    t0, t1 = 0.7, 0.45
    mean = float(linear_half_step(proc, 1.0, t0, t1, 0.0))
    std = float(linear_half_step(proc, 0.0, t0, t1, 1.0))

    def rhs(t, y):
        f, g2 = proc.drift_coef(t), proc.diffusion_squared(t)
        return [f * y[0], 2 * f * y[1] - g2]

    sol = solve_ivp(rhs, (t0, t1), [1.0, 0.0], method="DOP853", rtol=1e-12, atol=1e-14)
    assert mean == pytest.approx(sol.y[0, -1], rel=1e-9)
    assert std**2 == pytest.approx(sol.y[1, -1], rel=1e-8)


def test_packed_half_step_law_by_sampling():
    """The packed half-step on a graph (VP features, VE pairs, one node masked out): sample mean and
    variance per coordinate agree with x / a and (b / a)^2 within 5 standard errors; masked ones stay 0."""
    mask = np.array([[1.0, 1.0, 1.0, 0.0]])
    dyn = GraphReverseSDE(SYSTEM, _standard_score, mask, 2)
    rng = np.random.default_rng(5)
    x = pack(*SYSTEM.prior_sample(1, 4, 2, rng, mask=mask))
    n = 20000
    out = linear_half_step(dyn.process, np.repeat(x, n, axis=0), 0.6, 0.5, rng.standard_normal((n, x.shape[1])))
    (ax, aa) = (SYSTEM.x_process.transition(0.5, 0.6), SYSTEM.a_process.transition(0.5, 0.6))
    cm = packed_mask(mask, 2)[0] == 1
    is_x = np.arange(x.shape[1]) < 8
    a = np.where(is_x, ax.scale, aa.scale)
    b = np.where(is_x, ax.std, aa.std) * cm
    m_exp, v_exp = x[0] / a, (b / a) ** 2
    se = np.sqrt(v_exp / n)
    assert np.all(np.abs(out.mean(axis=0) - m_exp) <= 5 * se + 1e-15)
    assert np.all(np.abs(out.var(axis=0) - v_exp) <= 5 * v_exp * np.sqrt(2 / n) + 1e-15)
    assert np.all(out[:, ~cm] == 0)


def _single_template():
    """K4 with identical node features: one labelling, so the laboratory is a single Gaussian."""
    A = np.ones((4, 4)) - np.eye(4)
    return GraphLaboratory([(np.full((4, 1), 3.0), A)], tau=0.2)


@pytest.mark.parametrize(
    "solver",
    [S4(snr=0.0), dc.EulerMaruyama(), dc.PredictorCorrector(snr=0.0)],
    ids=["s4", "euler_maruyama", "pc-predictor"],
)
def test_weak_order_on_the_gaussian_laboratory(solver, capsys):
    """Exact law of the output (the score is affine, every step affine in state and noise) against the
    exact marginal at t_min; the slope of the error over 64..512 steps must be within 0.25 of the
    declared order (the asymptotic regime; higher-order terms bend the fit by < 0.1 in practice)."""
    lab = _single_template()
    mask = np.ones((1, 4))
    dyn = GraphReverseSDE(SYSTEM, lab.exact_score(SYSTEM), mask, 1)
    mu = lab._means[0]
    D = mu.shape[0]
    t_min = 1e-3
    a_end, v_end = lab._coefficients(SYSTEM, t_min, np.zeros((1, D)))
    a1, v1 = lab._coefficients(SYSTEM, 1.0, np.zeros((1, D)))
    steps = np.array([64, 128, 256, 512])
    errors = []
    for k in steps:
        ts = np.linspace(1.0, t_min, k + 1)
        m, c = propagate_gaussian_law(dyn, solver, (a1 * mu)[0], np.diag(v1[0]), ts)
        errors.append(np.linalg.norm(m - (a_end * mu)[0]) + np.linalg.norm(c - np.diag(v_end[0])))
    slope = fit_order(steps, errors)
    with capsys.disabled():
        print(f"\n{solver.name}: weak errors {np.array(errors)} slope {slope:.3f} (declared {solver.order})")
    assert abs(slope - solver.order) < 0.25


# -- sampling the laboratory: template frequencies --------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_sampling_recovers_template_frequencies(method, capsys):
    """Template frequencies and graph statistics of exact-score samples, for every sampler.

    Pearson chi-square on the five template counts at level 0.001 (df = 4).  Expected counts are
    n * P(template | node count of the mask).  Misclassified graphs (off every template after
    quantisation) must be under 1%: with tau = 0.1 a 0.5 rounding margin is 5 std."""
    rng = np.random.default_rng(11)
    n = 1500
    _, _, mask = LAB.sample(n, rng)
    out = sample_graphs(SYSTEM, LAB.exact_score(SYSTEM), mask, n_features=1, method=method, steps=100, rng=rng)
    labels = LAB.classify(out.X, out.A, out.mask)
    off = np.mean(labels < 0)
    counts = np.bincount(labels[labels >= 0], minlength=5)
    expected = LAB.template_probabilities(mask)[labels >= 0].sum(axis=0)
    chi2 = stats.chisquare(counts, expected)
    with capsys.disabled():
        print(
            f"\n{method}: counts {counts.tolist()} expected {np.round(expected, 1).tolist()} "
            f"chi2 {chi2.statistic:.2f} p {chi2.pvalue:.3f} off-template {off:.4f}"
        )
    assert off < 0.01
    assert chi2.pvalue > 1e-3
    # graph statistics at the data-vs-data floor: MMD^2 of 300 sampled graphs to 300 fresh data
    # graphs against 40 data-vs-data MMD^2 values.  A biased MMD^2 between samples of one law is a
    # weighted sum of chi-square variables, at worst as skewed as chi^2_1, whose mean + 5 sd is its
    # 99.5 % point; so "below mean + 5 sd" fails for a sampler at the floor with probability
    # ~0.5 % per statistic, while a biased sampler lies many sd above.
    m = 300
    data = _quantized_lab_graphs(m, rng)
    mmd = graph_mmd2(quantize(out.A[:m], mask=out.mask[:m]), data[0], mask_1=out.mask[:m], mask_2=data[1])
    floor = _lab_mmd_floor(m)
    table = np.array([[v.degree, v.clustering, v.spectrum] for v in floor.values])
    limit = table.mean(axis=0) + 5 * table.std(axis=0, ddof=1)
    with capsys.disabled():
        print(f"{method}: MMD^2 {mmd} limit {np.round(limit, 5).tolist()}")
    assert np.all(np.array([mmd.degree, mmd.clustering, mmd.spectrum]) < limit), (mmd, limit)


def _quantized_lab_graphs(n, rng):
    _, A, mask = LAB.sample(n, rng)
    return quantize(A, mask=mask), mask


@functools.cache
def _lab_mmd_floor(n):
    return graph_mmd2_floor(lambda k, r: _quantized_lab_graphs(k, r), n, repeats=40, rng=5)


def test_laboratory_samples_and_classification_agree_with_networkx():
    """The data itself: classification recovers the drawn templates; networkx agrees up to isomorphism."""
    import networkx as nx

    X, A, mask = LAB.sample(300, 2)
    labels = LAB.classify(X, A, mask)
    assert np.all(labels >= 0)
    assert stats.chisquare(np.bincount(labels, minlength=5), LAB.template_probabilities(mask).sum(0)).pvalue > 1e-3
    graphs = to_networkx(np.round(X), quantize(A), mask)
    templates = [
        to_networkx(np.round(X[labels == k][:1]), quantize(A[labels == k][:1]), mask[labels == k][:1])[0]
        for k in range(5)
    ]
    for g, k in zip(graphs, labels, strict=True):
        assert nx.is_isomorphic(g, templates[k])
        assert not any(nx.is_isomorphic(g, templates[j]) for j in range(5) if j != k)


# -- bad input ------------------------------------------------------------------------------
def test_bad_graphs_are_rejected_with_the_rule():
    X, A = np.zeros((2, 3, 1)), np.zeros((2, 3, 3))
    asym = A.copy()
    asym[0, 0, 1] = 1.0
    with pytest.raises(ValueError, match="symmetric"):
        check_graphs(X, asym)
    diag = A.copy()
    diag[1, 2, 2] = 0.5
    with pytest.raises(ValueError, match="zero diagonal"):
        check_graphs(X, diag)
    with pytest.raises(ValueError, match="mask must have shape"):
        check_graphs(X, A, np.ones((2, 4)))
    with pytest.raises(ValueError, match="same batch size"):
        check_graphs(np.zeros((3, 3, 1)), A)
    with pytest.raises(ValueError, match="same number of nodes"):
        check_graphs(np.zeros((2, 4, 1)), A)
    with pytest.raises(ValueError, match="only 0 and 1"):
        check_graphs(X, A, np.full((2, 3), 0.5))
    edge = A.copy()
    edge[0, 0, 2] = edge[0, 2, 0] = 1.0
    with pytest.raises(ValueError, match="masked-out nodes must be zero"):
        check_graphs(X, edge, np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"X must have shape \(n, N, F\); got \(3, 1\)"):
        check_graphs(X[0], A)


def test_bad_scores_and_dynamics_are_rejected():
    mask = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"score must return s_A shaped like its input A \(2, 3, 3\); got \(2, 2, 3\)"):
        sample_graphs(SYSTEM, lambda X, A, t, m: (X, A[:, :2]), mask, n_features=1, steps=2, rng=0)
    with pytest.raises(TypeError, match="pair"):
        sample_graphs(SYSTEM, lambda X, A, t, m: X, mask, n_features=1, steps=2, rng=0)
    with pytest.raises(ValueError, match="unknown graph sampling method"):
        sample_graphs(SYSTEM, _standard_score, mask, n_features=1, steps=2, method="heun")
    with pytest.raises(TypeError, match="GraphSDE"):
        GraphReverseSDE(dc.VPSDE(), _standard_score, mask, 1)
    with pytest.raises(TypeError, match="GraphReverseSDE"):
        dc.integrate(dc.ReverseSDE(dc.VPSDE(), lambda x, t: -x), np.zeros((2, 2)), [1.0, 0.5], S4())
    with pytest.raises(ValueError, match="t1 < t0"):
        linear_half_step(dc.VPSDE(), 1.0, 0.3, 0.5, 0.0)
    lab = GraphLaboratory.small()  # templates of 4 and 5 nodes: a 2-node mask has no component
    X, A, _ = lab.sample(2, rng=0)
    two = np.zeros((2, lab.n_nodes))
    two[:, :2] = 1.0
    with pytest.raises(ValueError, match=r"as many nodes as some template has \(\[4, 5\]\); got graphs with \[2\]"):
        lab.exact_score(SYSTEM)(X * two[:, :, None], A * two[:, :, None] * two[:, None, :], 0.5, two)
