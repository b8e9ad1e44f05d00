"""diffcore.training on graphs: an equivariant score net, its DSM loss, and learning the laboratory's score.

Oracles.
* Equivariance and structure.  ``GraphScoreNet(P X, P A P^T, t, P m) = (P s_X, P s_A P^T)`` for
  random permutations ``P``, sizes and masks, up to round-off; ``s_A`` symmetric, zero diagonal,
  zero rows/columns (and features) at masked-out nodes.
* The loss's minimiser.  For fixed noise the loss is a quadratic in the field,
  ``L(s* + delta h) = L(s*) + 2 delta X(h) + delta^2 Q(h)``, so ``X = (L+ - L-) / (4 delta)``
  exactly for the Monte Carlo estimate; the exact laboratory score minimises the loss iff
  ``X(h) = 0`` for every direction ``h``.  We assert ``|X| <= 4.5`` standard errors over 16
  independent chunks (Student t with 15 degrees of freedom: two-sided false alarm 4e-4 per check)
  and, so that the check can fail, that the score in the full-matrix convention (``s_A / 2``,
  what differentiating a density of ``A`` with ``A_ij`` and ``A_ji`` as separate variables
  gives) has ``|X| > 10`` standard errors.
* Counting.  With a zero model the ``sigma2``-weighted loss of a graph is a chi-square variable
  with ``F k + k (k - 1) / 2`` degrees of freedom (``k`` present nodes; each pair once), so its
  batch mean must match the mean of those counts within 4.5 standard errors (variance ``2 dof``);
  counting both triangles would put it ~10 standard errors off.
* Invariance.  With the noise permuted along with the graphs (or padded with absent nodes) the
  loss is unchanged to round-off.
* Learning: a short training on the laboratory brings the score error well below the
  untrained net's.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch

import diffcore as dc
from diffcore.graphs import GraphLaboratory, GraphSDE, sample_graphs, symmetric_noise
from diffcore.training import GraphScoreNet, fit, graph_dsm_loss, graph_score_error
from diffcore.training import _graph as graph_module

F64 = torch.float64
SYSTEM = GraphSDE(dc.VPSDE(), dc.VPSDE())
Z_MAX = 4.5  # standard errors; t(15) two-sided tail 4e-4


@pytest.fixture
def one_thread():
    """Small tensors train fastest on one torch thread (two contend on a busy 2-core machine); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _lab() -> GraphLaboratory:
    return GraphLaboratory.small()


def _random_graphs(gen: torch.Generator, n: int, N: int, F: int, dtype: torch.dtype):
    """Random continuous graphs with random masks (at least one present node per graph)."""
    m = (torch.rand(n, N, generator=gen, dtype=F64) < 0.7).to(dtype)
    m[:, 0] = 1.0
    X = torch.randn(n, N, F, generator=gen, dtype=F64).to(dtype) * m[..., None]
    A = symmetric_noise((n, N, N), gen, mask=m, like=m)
    return X, A, m, torch.rand(n, generator=gen, dtype=F64).to(dtype)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


# Round-off bounds for the relative (Frobenius) error of a permuted evaluation: the permutation only
# reorders the masked sums over <= 8 nodes, whose error is a few units in the last place per layer
# (unit round-off 1.1e-16 / 6e-8) times the depth; measured ~1e-16 and ~1e-7.  The float32 bound is
# the 1e-6; any non-equivariant term (a positional input, an unmasked sum) is O(1) off.
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-6)])
def test_net_is_permutation_equivariant(dtype, tol):
    gen = torch.Generator().manual_seed(0)
    for trial in range(6):
        N, F = 3 + trial, 1 + trial % 3
        net = GraphScoreNet(SYSTEM, F, width=32, depth=3, rng=trial, dtype=dtype)
        X, A, m, t = _random_graphs(gen, 7, N, F, dtype)
        P = torch.randperm(N, generator=gen)
        with torch.no_grad():
            s_x, s_a = net(X, A, t, m)
            p_x, p_a = net(X[:, P], A[:, P][:, :, P], t, m[:, P])
        assert _relative(p_x, s_x[:, P]) <= tol
        assert _relative(p_a, s_a[:, P][:, :, P]) <= tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_net_outputs_are_symmetric_and_masked(dtype):
    gen = torch.Generator().manual_seed(1)
    net = GraphScoreNet(SYSTEM, 2, width=32, rng=0, dtype=dtype)
    X, A, m, t = _random_graphs(gen, 9, 6, 2, dtype)
    with torch.no_grad():
        s_x, s_a = net(X, A, t, m)
    pair = m[:, :, None] * m[:, None, :]
    assert s_x.dtype == dtype and s_a.dtype == dtype
    # symmetric by construction: h_i + h_j, h_i * h_j and a_ij are symmetric; allow round-off of a @ a
    assert float((s_a - s_a.transpose(1, 2)).abs().max()) <= 10 * torch.finfo(dtype).eps * float(s_a.abs().max())
    assert float(torch.diagonal(s_a, dim1=1, dim2=2).abs().max()) == 0.0  # multiplied by an exact 0
    assert float((s_a * (1 - pair)).abs().max()) == 0.0
    assert float((s_x * (1 - m[..., None])).abs().max()) == 0.0
    assert float(s_x.abs().max()) > 0 and float((s_a * pair).abs().max()) > 0  # not trivially zero


def test_net_numpy_call_matches_torch_and_plugs_into_the_sampler():
    lab = _lab()
    net = GraphScoreNet(SYSTEM, lab.n_features, width=16, depth=2, rng=0, dtype=F64)
    X, A, m = lab.sample(6, 0)
    s_x, s_a = net(X, A, 0.3, m)
    assert isinstance(s_x, np.ndarray) and s_x.dtype == np.float64 and s_a.shape == A.shape
    with torch.no_grad():
        t_x, t_a = net(torch.from_numpy(X), torch.from_numpy(A), torch.full((6,), 0.3, dtype=F64), torch.from_numpy(m))
    np.testing.assert_allclose(s_x, t_x.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s_a, t_a.detach().numpy(), rtol=1e-12, atol=1e-12)
    out = sample_graphs(SYSTEM, net, m, n_features=lab.n_features, method="s4", steps=3, rng=1)
    assert np.all(np.isfinite(out.A)) and np.array_equal(out.A, out.A.transpose(0, 2, 1))


def test_net_and_loss_reject_bad_input():
    net = GraphScoreNet(SYSTEM, 2, width=8, depth=1, rng=0)
    X, A, m = torch.zeros(3, 4, 2), torch.zeros(3, 4, 4), torch.ones(3, 4)
    with pytest.raises(TypeError, match="GraphSDE"):
        GraphScoreNet(dc.VPSDE(), 2)
    with pytest.raises(ValueError, match="X must have shape"):
        net(torch.zeros(3, 4, 3), A, 0.5, m)
    with pytest.raises(ValueError, match="A must have shape"):
        net(X, torch.zeros(2, 4, 4), 0.5, m)
    with pytest.raises(ValueError, match="mask must have shape"):
        net(X, A, 0.5, torch.ones(3, 5))
    with pytest.raises(ValueError, match="t must be"):
        net(X, A, torch.ones(2), m)
    with pytest.raises(ValueError, match="symmetric"):
        graph_dsm_loss(net, X, A + torch.triu(torch.ones(4, 4), 1), m, SYSTEM, rng=0)
    with pytest.raises(ValueError, match="weighting"):
        graph_dsm_loss(net, X, A, m, SYSTEM, rng=0, weighting="snr")
    with pytest.raises(ValueError, match="t_min"):
        graph_dsm_loss(net, X, A, m, SYSTEM, rng=0, t_min=0.0)


def _lab_batch(n: int, seed: int):
    return tuple(torch.from_numpy(a) for a in _lab().sample(n, seed))


class _Memo:
    """A field evaluated once per chunk: every loss call with one seed sees the same ``(X_t, A_t, t)`` (checked)."""

    def __init__(self, field):
        self.field, self.key, self.value = field, None, None

    def __call__(self, X, A, t, m):
        if self.key is None or not all(torch.equal(a, b) for a, b in zip(self.key, (X, A, t, m))):
            self.key, self.value = (X, A, t, m), self.field(X, A, t, m)
        return self.value


def test_exact_laboratory_score_minimises_the_loss(one_thread):
    """The cross term X(h) vanishes at the exact score and not at the full-matrix convention's score."""
    delta, chunks = 0.1, 16
    directions = {
        "smooth": lambda X, A, t, m, s: (torch.tanh(X) * m[..., None], torch.tanh(A) * t[:, None, None]),
        "s_X": lambda X, A, t, m, s: (s[0], torch.zeros_like(A)),
        "s_A": lambda X, A, t, m, s: (torch.zeros_like(X), s[1]),
    }
    fields = {"exact": lambda s: s, "half": lambda s: (s[0], 0.5 * s[1])}
    cross = {(name, which): [] for name in directions for which in fields}
    for c in range(chunks):
        exact = _Memo(_lab().exact_score(SYSTEM))
        X0, A0, m = _lab_batch(800, 100 + c)
        for (name, h), (which, field) in itertools.product(directions.items(), fields.items()):

            def moved(sign, h=h, field=field, exact=exact):
                def f(X, A, t, mask):
                    s = exact(X, A, t, mask)
                    (s_x, s_a), (h_x, h_a) = field(s), h(X, A, t, mask, s)
                    return s_x + sign * delta * h_x, s_a + sign * delta * h_a

                return f

            plus, minus = (graph_dsm_loss(moved(sign), X0, A0, m, SYSTEM, rng=c) for sign in (1, -1))
            cross[(name, which)].append(float(plus - minus) / (4 * delta))
    z = {k: np.mean(v) / (np.std(v, ddof=1) / np.sqrt(chunks)) for k, v in cross.items()}
    for name in directions:
        assert abs(z[(name, "exact")]) <= Z_MAX, (name, z)
    assert abs(z[("s_A", "half")]) > 10, z  # the factor-2 convention error is detected


def test_loss_counts_each_pair_once():
    """A zero model's loss is a chi-square with F k + k(k-1)/2 degrees of freedom per graph."""
    X0, A0, m = _lab_batch(20_000, 7)

    def zero(X, A, t, mask):
        return torch.zeros_like(X), torch.zeros_like(A)

    value = float(graph_dsm_loss(zero, X0, A0, m, SYSTEM, rng=8))
    k = m.sum(dim=1)
    dof = _lab().n_features * k + k * (k - 1) / 2
    se = float(torch.sqrt((2 * dof).mean() / len(k)))
    assert abs(value - float(dof.mean())) <= Z_MAX * se
    both = float((_lab().n_features * k + k * (k - 1)).mean())  # counting both triangles
    assert abs(value - both) > 10 * se  # the check can tell the two apart


def test_loss_is_invariant_to_node_permutations_and_padding(monkeypatch):
    """With the noise carried along, relabelling the nodes or padding with absent nodes leaves the loss unchanged."""
    gen = torch.Generator().manual_seed(3)
    X0, A0, m = _lab_batch(64, 3)
    _, N, F = X0.shape
    eps_x = torch.randn(X0.shape, generator=gen, dtype=F64) * m[..., None]
    eps_a = torch.from_numpy(symmetric_noise(tuple(A0.shape), 4, mask=m.numpy()))
    noise = {}

    def fixed_marginal(system, X, A, t, gen, mask):
        (ax, aa), (sx, sa) = system.alpha(t), system.sigma(t)
        e_x, e_a = noise["x"], noise["a"]
        X_t, A_t = ax[:, None, None] * X + sx[:, None, None] * e_x, aa[:, None, None] * A + sa[:, None, None] * e_a
        return X_t, A_t, e_x, e_a

    monkeypatch.setattr(graph_module, "_marginal", fixed_marginal)
    net = GraphScoreNet(SYSTEM, F, width=32, rng=0, dtype=F64)
    noise.update(x=eps_x, a=eps_a)
    base = float(graph_dsm_loss(net, X0, A0, m, SYSTEM, rng=5).detach())
    P = torch.randperm(N, generator=gen)
    noise.update(x=eps_x[:, P], a=eps_a[:, P][:, :, P])
    permuted = float(graph_dsm_loss(net, X0[:, P], A0[:, P][:, :, P], m[:, P], SYSTEM, rng=5).detach())
    pad = 3
    noise.update(x=torch.nn.functional.pad(eps_x, (0, 0, 0, pad)), a=torch.nn.functional.pad(eps_a, (0, pad, 0, pad)))
    padded = float(
        graph_dsm_loss(
            net,
            torch.nn.functional.pad(X0, (0, 0, 0, pad)),
            torch.nn.functional.pad(A0, (0, pad, 0, pad)),
            torch.nn.functional.pad(m, (0, pad)),
            SYSTEM,
            rng=5,
        ).detach()
    )
    assert base > 0
    assert abs(permuted - base) <= 1e-12 * base  # float64 round-off of reordered sums
    assert abs(padded - base) <= 1e-12 * base
    # and the fixed noise matters: another noise gives another value (the check can fail)
    noise.update(x=eps_x.flip(0), a=eps_a.flip(0))
    assert abs(float(graph_dsm_loss(net, X0, A0, m, SYSTEM, rng=5).detach()) - base) > 1e-3 * base


def test_short_training_learns_the_laboratory_score(one_thread):
    """A few seconds of Adam (300 steps of 128 graphs) bring the score error far below the untrained net's."""
    lab = _lab()
    net = GraphScoreNet(SYSTEM, lab.n_features, width=32, depth=3, rng=0)
    exact, times = lab.exact_score(SYSTEM), (0.2, 0.5, 0.8)
    before = graph_score_error(net, exact, lab.sample, SYSTEM, times=times, n=1000, rng=1)
    data = tuple(torch.from_numpy(a).float() for a in lab.sample(8192, 2))
    loss = functools.partial(_loss, system=SYSTEM)
    result = fit(net, loss, data, steps=300, batch_size=128, lr=2e-3, schedule="cosine", rng=3, progress=False)
    after = graph_score_error(net, exact, lab.sample, SYSTEM, times=times, n=1000, rng=1)
    assert np.all(before.relative > 0.7)  # an untrained net is about as far as the score's own size
    # measured 0.29, 0.07, 0.07 at t = 0.2, 0.5, 0.8 (overall 0.21) after 300 steps, from ~1.05; the bars
    # leave a clear margin above that and are missed by a net that learned nothing
    assert np.all(after.relative < 0.5 * before.relative), (before.relative, after.relative)
    assert after.overall < 0.35, after.relative
    assert np.mean(result.losses[-50:]) < 0.5 * np.mean(result.losses[:50])


def _loss(model, batch, rng, system):
    return graph_dsm_loss(model, *batch, system, rng)
