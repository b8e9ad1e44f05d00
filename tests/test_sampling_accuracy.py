"""End-to-end sampling accuracy on P1 against the finite-sample floor of W2.

P1 is the 2-D mixture of 8 isotropic components (std 0.3) on a circle of radius 4, under the
VP-SDE with its exact score.  A sampler run from the prior to ``t_min = 1e-3`` is compared with
fresh exact samples of the marginal at ``t_min`` by the exact sample ``W2`` (POT), and the
distance must be within 1.3x of the floor: ``w2 <= 1.3 * floor.mean``, where ``floor.mean`` is the
mean W2 between two independent exact samples of the same size (:func:`diffcore.w2_floor`).
This detects gross errors of a sampler, not discretisation error (that is measured exactly in
``test_samplers.py``).

Why the samples are symmetrised.  Between two iid 4000-point samples of P1, W2 is dominated by
the multinomial fluctuation of the component counts (about 21 of the 500 points per component,
each moved a distance ~3): measured over 16 draws it is 0.38 with a standard deviation of 0.085,
so one exact sampler's W2 exceeds 1.3x the floor mean about 15 % of the time, and only an error
of W2 size ~0.3 would be noticed.  We therefore use the 8-fold rotation symmetry of P1: a
4000-point sample is 500 draws together with their rotations by multiples of 45 degrees, both for
the exact samples and for the sampler.  That leaves the component counts exactly balanced; the
floor drops to 0.08 with a standard deviation of ~0.008 (10 %), so 1.3x the floor mean is about
3 standard deviations above it (false-alarm rate < 1 % per test; the 5-repeat floor mean has a
standard error of ~4 %), and a sampler error of W2 size >= ~0.065 fails the test.

Why that is the sampler's own output.  The exact score of P1 is rotation-equivariant,
``s(R x, t) = R s(x, t)``, and so is every solver step (a linear combination of ``x``, the score
and the noise; the ``pc`` step size uses batch norms, which rotations keep).  Hence rotating the
output of a run from ``x_init`` with noise ``z`` is exactly the run from ``R x_init`` with noise
``R z``, and ``R z`` is again standard normal: the 8 rotated copies of 500 sampler outputs are
4000 outputs of the sampler with rotation-coupled inputs and noise.  For the deterministic heun
sampler this is checked directly below.  What the symmetrisation cannot see, a sampler that
breaks the symmetry, is covered exactly by the Gaussian-law tests with non-diagonal covariances
in ``test_samplers.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import diffcore as dc
from tests.conftest import K_ROTATIONS as K
from tests.conftest import P1_FLOOR_N, P1_MARGINAL_T_MIN, Symmetrised, circle_mixture, symmetrise

pytestmark = pytest.mark.slow

N = 4000  # points; K rotations (P1 has 8 components)
T_MIN = 1e-3
PROCESS, DATA = dc.VPSDE(), circle_mixture()
TARGET = dc.marginal(PROCESS, DATA, T_MIN)
RATIO = 1.3


@pytest.fixture(scope="module")
def floor(p1_marginal_floor) -> dc.FloorEstimate:
    """``w2_floor(Symmetrised(TARGET), N, repeats=5, rng=2024)``, shared with test_ito_density.py (conftest)."""
    assert (T_MIN, N) == (P1_MARGINAL_T_MIN, P1_FLOOR_N)
    return p1_marginal_floor


def _w2_to_fresh_exact(x: np.ndarray, seed: int) -> float:
    return float(dc.w2(symmetrise(x), Symmetrised(TARGET).sample(N, rng=seed)))


def test_heun_is_rotation_equivariant():
    """The premise of the symmetrisation, for the deterministic sampler: rotate-then-sample = sample-then-rotate."""
    x_init = PROCESS.prior_sample((50, 2), rng=0)
    score = dc.exact_score(PROCESS, DATA)
    out = dc.sample(PROCESS, score, x_init, method="heun", steps=20).x
    rotated_runs = dc.sample(PROCESS, score, symmetrise(x_init), method="heun", steps=20).x
    np.testing.assert_allclose(rotated_runs, symmetrise(out), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("method", "steps"), [("heun", 200), ("euler_maruyama", 1000), ("pc", 1000), ("ancestral", 1000)]
)
def test_sampler_reaches_the_w2_floor(floor, method, steps):
    x_init = PROCESS.prior_sample((N // K, 2), rng=10)
    x = dc.sample(PROCESS, dc.exact_score(PROCESS, DATA), x_init, method=method, steps=steps, t_min=T_MIN, rng=11).x
    w = _w2_to_fresh_exact(x, seed=12)
    assert w <= RATIO * floor.mean, f"{method}: w2 {w:.4f} vs floor {floor.mean:.4f} +- {floor.stderr:.4f}"


def test_wrong_score_is_far_above_the_floor(floor):
    """The check can fail: the exact score of the mixture on a circle of radius 3 (not 4).

    The sampler then produces the radius-3 mixture, at W2 distance ~1 from the target (the floor
    is ~0.08); measured 12x the floor, and we ask for > 3x.
    """
    wrong = dc.exact_score(PROCESS, circle_mixture(radius=3.0))
    x = dc.sample(PROCESS, wrong, PROCESS.prior_sample((N // K, 2), rng=20), method="heun", steps=200).x
    w = _w2_to_fresh_exact(x, seed=21)
    assert w > 3 * floor.mean, (w, floor.mean)
