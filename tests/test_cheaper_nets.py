"""Cheaper networks: DeeDiff early exiting, A-SDM model assembly and feature inheritance (diffcore.training).

Oracles: the exit rule read off the uncertainties of every exit (``net.exits``), the identity of a
residual network with all its blocks, the minimiser of a square loss (the conditional mean; on
a batch that an over-parametrised head can interpolate, the value at every point), and for feature
reuse the stale-feature formula recomputed from the network's hidden states and the closed-form
count of block evaluations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import diffcore as dc
from diffcore.training._assembly import assemble, assembly_distillation_loss, feature_reuse_model
from diffcore.training._early_exit import (
    MultiExitMLP,
    _noisy_batch,
    early_exit_loss,
    early_exit_model,
    early_exit_terms,
)

VP = dc.VPSDE()
GM = dc.GaussianMixture(np.array([0.5, 0.5]), np.array([[-1.5, 0.0], [1.5, 0.0]]), np.stack([0.2 * np.eye(2)] * 2))


def _net(n_blocks: int = 4, width: int = 16, seed: int = 7, **kw) -> MultiExitMLP:
    return MultiExitMLP(2, width=width, n_blocks=n_blocks, rng=seed, **kw)


def _points(n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 2))


def _spread_uems(net: MultiExitMLP) -> None:
    """Give the random uncertainty heads a wide spread (so that a threshold splits the batch)."""
    with torch.no_grad():
        for uem in net.uems:
            uem.weight.mul_(8.0)


# -- the network -----------------------------------------------------------------------------------
def test_shapes_and_backends() -> None:
    net = _net(3)
    x = _points(5)
    g, u = net.exits(x, 0.3)
    assert net(x, 0.3).shape == (5, 2) and g.shape == (3, 5, 2) and u.shape == (3, 5)
    assert net.features(x, 0.3).shape == (3, 5, 16) and net.n_blocks == 3
    assert np.all((u > 0) & (u < 1))
    # torch in, differentiable tensor out; the last exit is net(x, t); an (n,) array of times works
    xt = torch.as_tensor(x, dtype=torch.float32)
    out = net(xt, torch.full((5,), 0.3))
    assert isinstance(out, torch.Tensor) and out.requires_grad
    np.testing.assert_array_equal(out.detach().numpy(), net(x.astype(np.float32), 0.3))
    np.testing.assert_allclose(g[-1], net(x, 0.3), rtol=0, atol=0)
    # integer points give what the same points as floats give
    xi = np.round(3 * x).astype(np.int64)
    np.testing.assert_array_equal(net(xi, 0.3), net(xi.astype(np.float64), 0.3))
    # one seed, one network
    np.testing.assert_array_equal(_net(3)(x, 0.3), net(x, 0.3))


def test_full_network_samples_with_diffcore() -> None:
    net = _net(2, width=8)
    for model in (net, early_exit_model(net, 0.5)):
        sol = dc.sample(VP, dc.reparametrize(model, VP, source="eps"), _points(4), method="heun", steps=3)
        assert sol.x.shape == (4, 2) and np.all(np.isfinite(sol.x))


# -- early exiting ---------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.3, "array"])
def test_threshold_zero_is_the_full_network_exactly(t) -> None:
    net = _net(4)
    x = _points(50)
    t = np.linspace(0.05, 0.95, 50) if t == "array" else t
    model = early_exit_model(net, 0.0)
    np.testing.assert_array_equal(model(x, t), net(x, t))  # bit for bit: the same operations
    assert model.compute_fraction == 1.0 and model.mean_blocks == 4.0 and model.calls == 1


def test_threshold_infinity_uses_one_block() -> None:
    net = _net(4)
    x = _points(50)
    model = early_exit_model(net, math.inf)
    out = model(x, 0.6)
    np.testing.assert_array_equal(out, net.exits(x, 0.6)[0][0])
    assert model.compute_fraction == 0.25 and model.mean_blocks == 1.0
    assert model.exit_counts.tolist() == [50, 0, 0, 0]


def test_compute_accounting_matches_the_exit_rule() -> None:
    """The blocks counted over several calls equal those read off every exit's uncertainty."""
    net = _net(5)
    _spread_uems(net)
    x = _points(400)
    times = (0.2, 0.7, np.linspace(0.1, 0.9, 400))
    us = [net.exits(x, t)[1] for t in times]
    threshold = float(np.quantile(np.concatenate(us), 0.25))
    model = early_exit_model(net, threshold)
    expected_blocks = []
    for t, u in zip(times, us, strict=True):
        below = u[:-1] < threshold  # the last block always exits
        depth = np.where(below.any(axis=0), below.argmax(axis=0), 4)  # first block below the threshold
        expected_blocks.append(depth + 1)
        out = model(x, t)
        g = net.exits(x, t)[0]
        # each point gets its exit's prediction (float32 rounding of a sub-batch product: 1e-6)
        np.testing.assert_allclose(out, g[depth, np.arange(400)], rtol=1e-5, atol=1e-6)
    blocks = np.concatenate(expected_blocks)
    # the threshold splits the points over at least three depths: a real test of the counting
    assert np.count_nonzero(np.bincount(blocks, minlength=6)) >= 3, np.bincount(blocks)
    assert model.mean_blocks == pytest.approx(blocks.mean(), rel=1e-12)
    assert model.compute_fraction == pytest.approx(blocks.mean() / 5, rel=1e-12)
    assert model.exit_counts.tolist() == np.bincount(blocks - 1, minlength=5).tolist()
    assert model.points == 1200 and model.calls == 3
    model.reset()
    assert model.points == 0 and math.isnan(model.compute_fraction)


def test_nan_point_stays_in_its_row() -> None:
    net = _net(3)
    _spread_uems(net)
    x = _points(20)
    x[3] = np.nan
    out = early_exit_model(net, 0.5)(x, 0.4)
    assert np.all(np.isnan(out[3])) and np.all(np.isfinite(np.delete(out, 3, axis=0)))


# -- the loss --------------------------------------------------------------------------------------
def test_terms_follow_their_definitions() -> None:
    net = _net(3, dtype=torch.float64)
    gen = np.random.default_rng(1)
    x_t, y = torch.as_tensor(gen.standard_normal((32, 2))), torch.as_tensor(gen.standard_normal((32, 2)))
    terms = early_exit_terms(net, x_t, 0.4, y)
    g, u = net.exits(x_t.numpy(), 0.4)
    err = g - y.numpy()[None]
    np.testing.assert_allclose(terms.errors.detach(), np.sum(err**2, axis=2), rtol=1e-12)
    np.testing.assert_allclose(terms.targets, np.tanh(np.mean(np.abs(err), axis=2)), rtol=1e-12)
    np.testing.assert_allclose(terms.simple.item(), np.mean(np.sum(err[-1] ** 2, axis=1)), rtol=1e-12)
    ual = np.mean(np.sum((1 - u[:-1]) * np.sum(err[:-1] ** 2, axis=2), axis=0))
    np.testing.assert_allclose(terms.layerwise.item(), ual, rtol=1e-12)
    # the combination, with the draws of denoising_loss (t first, eps second) for the same seed
    x0 = GM.sample(32, 0)
    loss = early_exit_loss(net, x0, VP, 3, uncertainty_weight=0.5, layer_weight=2.0)
    gen_t = torch.Generator().manual_seed(3)
    t = torch.rand(32, generator=gen_t, dtype=torch.float64) * (1 - 1e-3) + 1e-3
    eps = torch.randn((32, 2), generator=gen_t, dtype=torch.float64)
    a, s = VP.alpha(t)[:, None], VP.sigma(t)[:, None]
    ref = early_exit_terms(net, a * torch.as_tensor(x0) + s * eps, t, eps)
    expected = ref.simple + 0.5 * ref.uncertainty_loss + 2.0 * ref.layerwise
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-10)


def test_uncertainty_loss_minimiser_is_the_exit_error() -> None:
    """Trained alone on a frozen net and a fixed batch, each head predicts its exit's measured error.

    The square loss is minimised by the conditional mean of the target; on 12 points a head with
    16 + 32 input features can interpolate, so the minimiser is the target itself at every point:
    ``u_l(x_i) = tanh(mean_j |g_l(x_i) - y_i|)``.  The target is recomputed here from ``exits``.
    """
    net = _net(3, width=16, dtype=torch.float64)
    net.requires_grad_(False)
    params = net.uem_parameters()
    for p in params:
        p.requires_grad_(True)
    gen = np.random.default_rng(2)
    x_t = torch.as_tensor(gen.standard_normal((12, 2)))
    t = torch.as_tensor(gen.uniform(0.1, 0.9, 12))
    y = 0.4 * torch.as_tensor(gen.standard_normal((12, 2)))
    g, _ = net.exits(x_t.numpy(), t.numpy())
    measured = np.tanh(np.mean(np.abs(g - y.numpy()[None]), axis=2))
    assert measured.std() > 0.05  # distinct errors per point and exit: the heads must tell them apart
    opt = torch.optim.LBFGS(
        params, lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = early_exit_terms(net, x_t, t, y).uncertainty_loss
        loss.backward()
        return loss

    for _ in range(4):
        opt.step(closure)
    _, u = net.exits(x_t.numpy(), t.numpy())
    # interpolation is exact at the minimum; 1e-4 allows for the optimiser's stopping tolerance
    np.testing.assert_allclose(u, measured, atol=1e-4)


# -- assembly --------------------------------------------------------------------------------------
def test_assemble_all_blocks_is_the_teacher() -> None:
    teacher = _net(4)
    x = _points(30)
    student = assemble(teacher, range(4))
    np.testing.assert_array_equal(student(x, 0.4), teacher(x, 0.4))
    for a, b in zip(student.exits(x, 0.4), teacher.exits(x, 0.4), strict=True):
        np.testing.assert_array_equal(a, b)
    # a prefix is the teacher's early exit; weights are copies, not shared
    prefix = assemble(teacher, [0, 1])
    np.testing.assert_array_equal(prefix(x, 0.4), teacher.exits(x, 0.4)[0][1])
    with torch.no_grad():
        prefix.blocks[0].inner.weight.add_(1.0)
    np.testing.assert_array_equal(student(x, 0.4), teacher(x, 0.4))
    assert prefix.source_blocks == (0, 1) and assemble(teacher, [1, 3]).source_blocks == (1, 3)


def test_inheritance_starts_closer_than_random_init() -> None:
    teacher = _net(4, width=16, dtype=torch.float64)
    x0 = GM.sample(256, 0)
    for keep in ([0, 1], [0, 2, 3], [1, 3]):
        inherited = assembly_distillation_loss(assemble(teacher, keep), teacher, x0, VP, 0).item()
        randoms = [
            assembly_distillation_loss(assemble(teacher, keep, inherit=False, rng=s), teacher, x0, VP, 0).item()
            for s in (11, 12, 13)
        ]
        assert inherited < min(randoms) / 2, (keep, inherited, randoms)
    # all blocks kept: zero output and feature loss
    assert assembly_distillation_loss(assemble(teacher, range(4)), teacher, x0, VP, 0).item() == 0.0


def test_distillation_terms_follow_their_definitions() -> None:
    """Output, feature (paired by source block) and task terms, recomputed from ``features`` and the same draws."""
    teacher = _net(4, width=16, dtype=torch.float64)
    student = assemble(teacher, [1, 3], inherit=False, rng=3)
    x0 = GM.sample(64, 0)
    x_t, t, eps = _noisy_batch(x0, VP, 5, prediction="eps", t_min=1e-3, t_max=1.0)
    x_np, t_np = x_t.numpy(), t.numpy()
    out_gap = np.mean(np.sum((student(x_np, t_np) - teacher(x_np, t_np)) ** 2, axis=1))
    hs, ht = student.features(x_np, t_np), teacher.features(x_np, t_np)
    feat_gap = np.mean(np.sum((hs - ht[[1, 3]]) ** 2, axis=2), axis=1).sum() / 16
    task_gap = np.mean(np.sum((student(x_np, t_np) - eps.numpy()) ** 2, axis=1))
    got = assembly_distillation_loss(
        student, teacher, x0, VP, 5, output_weight=0.5, feature_weight=2.0, task_weight=3.0
    )
    np.testing.assert_allclose(got.item(), 0.5 * out_gap + 2.0 * feat_gap + 3.0 * task_gap, rtol=1e-10)


# -- feature reuse (A-SDM feature inheritance) -------------------------------------------------------
def test_refresh_every_one_is_the_network_exactly() -> None:
    net = _net(4)
    model = feature_reuse_model(net, [0, 1, 2, 3], refresh_every=1)
    for k, t in enumerate((0.9, 0.7, np.linspace(0.1, 0.5, 40))):
        x = _points(40, seed=k)
        np.testing.assert_array_equal(model(x, t), net(x, t))  # bit for bit: the same operations
    assert model.compute_fraction == 1.0 and model.calls == model.refreshes == 3


def _stale_reference(net: MultiExitMLP, reuse, x_old, t_old, x_new, t_new) -> np.ndarray:
    """``h_l = h_{l-1} + r_l`` with ``r_l = h^old_l - h^old_{l-1}`` (the old call's states) for reused blocks."""

    def tensor(t):  # a float time stays a float (as in net(x, t)); arrays become float64 tensors
        return torch.from_numpy(t) if isinstance(t, np.ndarray) else t

    def start(x, t):
        flat, emb = net._inputs(torch.as_tensor(x), tensor(t))
        return net.embed(torch.cat([flat, emb], dim=1))

    with torch.no_grad():
        old = [start(x_old, t_old), *net._states(torch.as_tensor(x_old), tensor(t_old))[0]]
        h = start(x_new, t_new)
        for k, block in enumerate(net.blocks):
            h = h + (old[k + 1] - old[k]) if k in reuse else block(h)
        return net._exit(net.n_blocks - 1, h).numpy()


def test_stale_calls_follow_the_stale_feature_formula() -> None:
    net = _net(4, dtype=torch.float64)
    model = feature_reuse_model(net, [1, 2], refresh_every=3)
    xs = [_points(30, seed=k) for k in range(4)]
    ts = [0.8, 0.75, np.linspace(0.3, 0.7, 30), 0.6]
    outs = [model(x, t) for x, t in zip(xs, ts, strict=True)]
    np.testing.assert_array_equal(outs[0], net(xs[0], ts[0]))  # call 0 refreshes
    np.testing.assert_array_equal(outs[3], net(xs[3], ts[3]))  # call 3 refreshes
    for j in (1, 2):  # stale: the updates of blocks 1, 2 come from call 0
        expected = _stale_reference(net, (1, 2), xs[0], ts[0], xs[j], ts[j])
        # float64; the reference takes the update as a difference of states: rounding ~1e-15
        np.testing.assert_allclose(outs[j], expected, rtol=0, atol=1e-12)
        # and the stale output is not the network's: the check above can tell them apart
        assert np.abs(outs[j] - net(xs[j], ts[j])).max() > 1e-3


@pytest.mark.parametrize(("reuse", "k", "calls"), [((1, 2), 2, 7), ((0, 1, 2), 3, 10), ((3,), 4, 4), ((), 2, 5)])
def test_compute_fraction_counts_block_evaluations(reuse, k, calls) -> None:
    """``1 - (|S| / L)(1 - ceil(N / k) / N)`` for ``N`` calls of one batch size; a new batch size refreshes."""
    net = _net(4)
    model = feature_reuse_model(net, reuse, refresh_every=k)
    for j in range(calls):
        model(_points(8, seed=j), 1.0 - j / calls)
    refreshes = math.ceil(calls / k)
    assert model.refreshes == refreshes and model.calls == calls
    assert model.compute_fraction == pytest.approx(1 - len(reuse) / 4 * (1 - refreshes / calls), rel=1e-12)
    model(_points(5), 0.1)  # another batch shape: a refresh whatever the call count, counted per point
    work = (8 * (4 * refreshes + (4 - len(reuse)) * (calls - refreshes)) + 5 * 4) / (4 * (8 * calls + 5))
    assert model.refreshes == refreshes + 1 and model.compute_fraction == pytest.approx(work, rel=1e-12)
    model.reset()
    assert model.calls == 0 and math.isnan(model.compute_fraction)


def test_feature_reuse_samples_with_diffcore() -> None:
    """One model call per NFE; with k = 2 every other call refreshes."""
    net = _net(4, width=8)
    model = feature_reuse_model(net, [1, 2], refresh_every=2)
    sol = dc.sample(VP, dc.reparametrize(model, VP, source="eps"), _points(6), method="heun", steps=3)
    assert np.all(np.isfinite(sol.x)) and model.calls == sol.nfe >= 5
    refreshes = math.ceil(sol.nfe / 2)
    assert model.compute_fraction == pytest.approx(1 - 0.5 * (1 - refreshes / sol.nfe), rel=1e-12)


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "error", "word"),
    [
        (lambda n: early_exit_model(lambda x, t: x, 0.1), TypeError, "net"),
        (lambda n: early_exit_model(n, -0.1), ValueError, "threshold"),
        (lambda n: early_exit_model(n, math.nan), ValueError, "threshold"),
        (lambda n: early_exit_model(n, -math.inf), ValueError, "threshold"),
        (lambda n: early_exit_model(n, "0.1"), TypeError, "threshold"),
        (lambda n: early_exit_model(n, True), TypeError, "threshold"),
        (lambda n: assemble(n, []), ValueError, "keep"),
        (lambda n: assemble(n, [2, 1]), ValueError, "keep"),
        (lambda n: assemble(n, [0, 0]), ValueError, "keep"),
        (lambda n: assemble(n, [4]), ValueError, "keep"),
        (lambda n: assemble(n, [0.5]), TypeError, "keep"),
        (lambda n: assemble(n, 2), TypeError, "keep"),
        (lambda n: assemble(n, [0], inherit="yes"), TypeError, "inherit"),
        (lambda n: assemble(torch.nn.Linear(2, 2), [0]), TypeError, "net"),
        (lambda n: feature_reuse_model(lambda x, t: x, [0]), TypeError, "net"),
        (lambda n: feature_reuse_model(n, [4]), ValueError, "reuse_blocks"),
        (lambda n: feature_reuse_model(n, [-1]), ValueError, "reuse_blocks"),
        (lambda n: feature_reuse_model(n, [1, 1]), ValueError, "reuse_blocks"),
        (lambda n: feature_reuse_model(n, [0.5]), TypeError, "reuse_blocks"),
        (lambda n: feature_reuse_model(n, 2), TypeError, "reuse_blocks"),
        (lambda n: feature_reuse_model(n, [1], refresh_every=0), ValueError, "refresh_every"),
        (lambda n: feature_reuse_model(n, [1], refresh_every=2.0), TypeError, "refresh_every"),
        (lambda n: feature_reuse_model(n, [1])(np.zeros((3, 3)), 0.5), ValueError, "x"),
        (lambda n: MultiExitMLP(2, prediction="noise"), ValueError, "prediction"),
        (lambda n: MultiExitMLP(2, n_blocks=0), ValueError, "n_blocks"),
        (lambda n: n(np.zeros((3, 3)), 0.5), ValueError, "x"),
        (lambda n: n(np.zeros((3, 2)), 1.5), ValueError, "t"),
        (lambda n: n([[0.0, 0.0]], 0.5), TypeError, "x"),
        (lambda n: early_exit_terms(n, torch.zeros(3, 2), 0.5, torch.zeros(4, 2)), ValueError, "target"),
        (lambda n: early_exit_loss(n, GM.sample(8, 0), VP, 0, layer_weight=-1.0), ValueError, "layer_weight"),
        (lambda n: early_exit_loss(n, np.full((8, 2), np.nan), VP, 0), ValueError, "x0"),
        (lambda n: early_exit_loss(n, np.zeros((0, 2)), VP, 0), ValueError, "x0"),
        (lambda n: early_exit_loss(n, GM.sample(8, 0), "vp", 0), TypeError, "process"),
        (lambda n: assembly_distillation_loss(_net(2, width=8), n, GM.sample(8, 0), VP), ValueError, "width"),
        (
            lambda n: assembly_distillation_loss(assemble(_net(5), [4]), n, GM.sample(8, 0), VP),
            ValueError,
            "source_blocks",
        ),
        (
            lambda n: assembly_distillation_loss(n, n, GM.sample(8, 0), VP, feature_weight=math.inf),
            ValueError,
            "feature_weight",
        ),
    ],
)
def test_bad_input(call, error, word) -> None:
    with pytest.raises(error, match=word):
        call(_net(4))
