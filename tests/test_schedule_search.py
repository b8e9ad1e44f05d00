"""Schedule search over a training family: AYS-style grids, GITS dynamic programming, joint coefficients."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import PROCESSES
from hypothesis import given, settings
from hypothesis import strategies as st

import diffcore as dc
from diffcore.search import (
    ScoreScale,
    fractions_of_grid,
    gits_grid,
    gits_grid_family,
    grid_from_fractions,
    optimize_schedule,
    training_family,
)
from diffcore.testing import Problem

VP = dc.VPSDE()
T_MIN = 1e-3
#: processes with a finite log-SNR on [T_MIN, 1]
SEARCHABLE = {k: PROCESSES[k] for k in ("vp", "subvp", "cosine", "ve", "affine-vp")}


@pytest.fixture(scope="module")
def family():
    return training_family(3, dims=(2, 4), rng=0)


def test_training_family_is_a_list_of_problems_in_the_asked_ranges():
    fam = training_family(5, dims=(3, 6), components=(2, 3), process=dc.VESDE(), rng=1)
    assert [p.name for p in fam] == [f"train{i}" for i in range(5)]
    assert all(isinstance(p, Problem) and 3 <= p.dim <= 6 and 2 <= p.data.n_components <= 3 for p in fam)
    assert all(isinstance(p.process, dc.VESDE) for p in fam)
    again = training_family(5, dims=(3, 6), components=(2, 3), rng=1)
    assert all(np.array_equal(a.data.means, b.data.means) for a, b in zip(fam, again, strict=True))


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(SEARCHABLE)),
    fractions=st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=12),
    steps=st.one_of(st.none(), st.integers(1, 25)),
    t_min=st.floats(1e-4, 0.3),
)
def test_fraction_grids_are_strictly_decreasing_and_end_exact(name, fractions, steps, t_min):
    ts = grid_from_fractions(SEARCHABLE[name], np.array(fractions), t_min=t_min, steps=steps)
    assert ts.shape == ((len(fractions) if steps is None else steps) + 1,)
    assert ts[0] == 1.0 and ts[-1] == t_min
    assert np.all(np.diff(ts) < 0), ts


def test_log_linear_interpolation_keeps_the_schedule_and_refines_it():
    frac = np.array([0.4, 0.1, 0.2, 0.3])
    ts = grid_from_fractions(VP, frac)
    # the interpolation is linear in log-SNR between the schedule's knots: doubling the steps keeps
    # every knot (up to the round trip through log_snr_inverse) and halves every increment
    fine = grid_from_fractions(VP, frac, steps=8)
    np.testing.assert_allclose(fine[::2], ts, rtol=1e-10)
    np.testing.assert_allclose(np.repeat(frac / 2, 2), fractions_of_grid(VP, fine), rtol=1e-8)
    # uniform fractions are the log-SNR grid at any number of steps
    np.testing.assert_allclose(
        grid_from_fractions(VP, np.full(3, 1 / 3), steps=7), dc.time_grid(VP, 7, kind="log_snr"), rtol=1e-10
    )


def test_score_scale_is_the_named_factor_along_log_snr_time():
    data = dc.Gaussian(np.zeros(2), np.eye(2))
    score = dc.exact_score(VP, data)
    x = np.ones((3, 2))
    a, b = 0.2, -0.5
    scaled = ScoreScale(VP, score, a, b, T_MIN, 1.0)
    np.testing.assert_allclose(scaled(x, 1.0), math.exp(a) * score(x, 1.0), rtol=1e-13)
    np.testing.assert_allclose(scaled(x, T_MIN), math.exp(a + b) * score(x, T_MIN), rtol=1e-12)
    t = np.array([1.0, 0.3, T_MIN])
    lam = VP.log_snr(t)
    u = (lam - lam[0]) / (lam[-1] - lam[0])
    np.testing.assert_allclose(scaled(x, t), np.exp(a + b * u)[:, None] * score(x, t), rtol=1e-12)


def test_family_search_never_loses_to_its_start_and_the_joint_search_never_loses_to_the_grid_search(family):
    kw = {"nfe": 4, "methods": ("dpm_solver_pp_2m", "dpm_solver_2"), "n_points": 12, "starts": 1, "maxiter": 25}
    grid = optimize_schedule(family, **kw, rng=0)
    joint = optimize_schedule(family, **kw, coefficients="score_scale", rng=0)
    for res in (grid, joint):
        assert res.error <= res.init_error
        assert res.problems == 3 and res.nfe == 4 and res.evaluations == len(res.history)
        assert np.all(np.diff(res.history) <= 0)
        assert res.model_evaluations == res.evaluations * 3 * 4  # every run: 3 problems x 4 evaluations
        assert res.reference_evaluations > 0 and res.seconds > 0
        assert res.ts[0] == 1.0 and res.ts[-1] == T_MIN and np.all(np.diff(res.ts) < 0)
        assert res.log_snr_fractions.sum() == pytest.approx(1.0, abs=1e-12)
    assert grid.coefficients == () and len(joint.coefficients) == 2
    # same seed, same screen, same grid-only stage: the joint stage can only improve on it
    assert joint.error <= grid.error


def test_transfer_to_another_process_interval_and_step_count(family):
    res = optimize_schedule(family, nfe=3, methods="ddim", n_points=8, starts=1, maxiter=15, rng=0)
    ve = dc.VESDE()
    ts = res.grid(ve, t_min=1e-2)
    assert ts[0] == 1.0 and ts[-1] == 1e-2 and np.all(np.diff(ts) < 0)
    np.testing.assert_allclose(fractions_of_grid(ve, ts), res.log_snr_fractions, rtol=1e-8)
    data = dc.testing.circle_mixture()
    x = ve.prior_sample((5, 2), rng=0)
    sol = res.integrate(ve, dc.exact_score(ve, data), x, t_min=1e-2, steps=6)
    assert sol.nfe == 6 and np.all(np.isfinite(sol.x))


def test_gits_dynamic_programme_finds_the_brute_force_optimum():
    data = dc.testing.circle_mixture()
    x = VP.prior_sample((16, 2), rng=0)
    steps, m = 3, 7
    res = gits_grid(VP, dc.exact_score(VP, data), x, steps, method="dpm_solver_2", candidates=m)
    c = res.cost_matrix
    brute = min(
        (sum(c[i, j] for i, j in itertools.pairwise((0, *mid, m))), (0, *mid, m))
        for mid in itertools.combinations(range(1, m), steps - 1)
    )
    assert res.cost == pytest.approx(brute[0], rel=1e-12) and res.path == brute[1]
    assert res.nfe == steps * 2 and res.ts[0] == 1.0 and res.ts[-1] == T_MIN and np.all(np.diff(res.ts) < 0)
    np.testing.assert_allclose(res.ts, dc.time_grid(VP, m, kind="log_snr")[list(res.path)], rtol=1e-10)
    # the cost of a step is the local error against the teacher: positive, finite above the diagonal
    upper = c[np.triu_indices(m + 1, 1)]
    assert np.all(np.isfinite(upper) & (upper > 0)) and np.all(np.isinf(np.tril(c)[np.tril_indices(m + 1)]))


def test_gits_on_a_family_gives_a_transferable_schedule(family):
    res = gits_grid_family(family, 3, candidates=6, n_calib=6, rng=0)
    assert res.log_snr_fractions.sum() == pytest.approx(1.0, abs=1e-12) and len(res.path) == 4
    assert res.model_evaluations == 6 * 7 // 2 * 3  # one-step DDIM runs: M (M + 1) / 2 per problem
    ts = res.grid(dc.VESDE(), steps=5)
    assert len(ts) == 6 and np.all(np.diff(ts) < 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"problems": [], "nfe": 4}, "problems .*empty"),
        ({"nfe": 2, "methods": "dpm_solver_pp_3m"}, "below the order 3"),
        ({"nfe": 1, "methods": "ddim"}, "fewer than 2 steps"),
        ({"nfe": 5, "methods": "dpm_solver_2"}, "not a multiple"),
        ({"nfe": 4, "methods": "nope"}, "known: .*ddim"),
        ({"nfe": 4, "coefficients": "gain"}, "known: none, score_scale"),
        ({"nfe": 4, "objective": "fid"}, "known: max, pathwise"),
        ({"nfe": 4, "t_min": 0.0}, r"t_min must lie in \(0, t_max\)"),
    ],
)
def test_schedule_search_bad_input(family, kwargs, match):
    kwargs = {"problems": family, **kwargs}
    with pytest.raises(ValueError, match=match):
        optimize_schedule(kwargs.pop("problems"), **kwargs)


def test_bad_schedules_and_gits_input():
    with pytest.raises(ValueError, match="strictly monotone"):
        grid_from_fractions(VP, [0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match="strictly monotone"):
        grid_from_fractions(VP, [0.5, -0.1, 0.6])
    with pytest.raises(ValueError, match="strictly decreasing"):
        fractions_of_grid(VP, [1.0, 0.5, 0.6, 1e-3])
    score = dc.exact_score(VP, dc.Gaussian(np.zeros(2), np.eye(2)))
    with pytest.raises(ValueError, match="candidates must be >= steps"):
        gits_grid(VP, score, np.zeros((2, 2)), 5, candidates=3)
    with pytest.raises(ValueError, match=r"known: .*ddim"):
        gits_grid(VP, score, np.zeros((2, 2)), 2, method="ancestral")
    with pytest.raises(TypeError, match="x_calib"):
        gits_grid(VP, score, [[0.0, 0.0]], 2)
    with pytest.raises(ValueError, match=r"problems .*empty"):
        gits_grid_family([], 3)
    with pytest.raises(ValueError, match="dims"):
        training_family(2, dims=(5, 2))
