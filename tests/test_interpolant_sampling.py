"""Sampling with the exact interpolant fields reaches the other end, in both directions, at the W2 floor.

The linear interpolant ``x_t = (1 - t) x_0 + t x_1 + sqrt(t (1 - t)) z`` bridges ``rho_0 = N(0, I)``
and ``rho_1 = P1`` (the 2-D mixture of 8 isotropic components of std 0.3 on a circle of radius 4).
With its exact fields we integrate

* the transport ODE ``dx = b dt`` (heun), and
* the SDEs ``dx = (b +- eps s) dt + sqrt(2 eps) dW`` (euler_maruyama, ``eps`` in {0.1, 1}),

forwards from ``rho_0`` on an increasing grid (``+ eps s``) and backwards from ``rho_1`` on a
decreasing grid (``- eps s``, ``way="backward"``), and compare the end points with fresh exact
samples of the other end by the exact sample ``W2``: it must be within 1.3x of the finite-sample
floor (the mean W2 between two independent exact samples, :func:`diffcore.w2_floor`).

0 -> 1 (target P1): symmetrised samples, as in ``test_sampling_accuracy.py`` (read its
docstring): a 4000-point sample is 500 draws with their 8 rotations by multiples of 45 degrees.
That removes the multinomial fluctuation of P1's component counts, and the floor drops to 0.079
with a standard deviation of 0.0067 (8 %, measured over 8 pairs), so 1.3x the floor is ~3
standard deviations above it.  The rotated copies are the sampler's own output because both ends
and the interpolant are invariant under these rotations, so the exact fields are equivariant,
``b(R x) = R b(x)`` and ``s(R x) = R s(x)``, and so is every heun and Euler–Maruyama step (a linear
combination of ``x``, the fields and the noise; ``R z`` is again standard normal).  Both premises
are checked below.

1 -> 0 (target N(0, I)): 4000 independent draws, not symmetrised.  The output of iid starts is an
iid sample of N(0, I), whose W2 floor has no component counts to fluctuate: 0.111 with a
standard deviation of 0.0057 (5 %, 16 pairs), so 1.3x is > 5 standard deviations above it.
Symmetrising would replicate every tail point 8 times and make the floor heavy-tailed (measured
0.108 +- 0.013 over 16 pairs, with single values up to 0.19).

Steps.  The ODE error of heun is far below the floor already at 25 steps (measured W2/floor 0.96
forwards, 1.11 backwards, unchanged at 100); we use 100.  Euler–Maruyama has weak order 1: near
``t = 1`` the score term pulls with rate ``eps / 0.09`` (the component variance of P1), and
the stationary variance of the scheme is off by the fraction ``h eps / (2 * 0.09)``, i.e. 0.6 % at
1000 steps for ``eps = 1`` and 0.1 % at 500 steps for ``eps = 0.1``: W2 changes of < 1e-3,
invisible next to the floor.  What this test detects is a gross error (a wrong sign, a wrong
direction, a wrong field), not discretisation error, which ``test_interpolants.py`` measures.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import diffcore as dc
from tests.conftest import K_ROTATIONS as K
from tests.conftest import ROTATIONS, Symmetrised, circle_mixture, symmetrise

pytestmark = pytest.mark.slow

N = 4000  # points, K rotations of N // K draws
RATIO = 1.3
RHO0, RHO1 = dc.Gaussian(np.zeros(2), np.eye(2)), circle_mixture()
INTERPOLANT = dc.LinearInterpolant(1.0)
FIELDS = dc.interpolant_fields(INTERPOLANT, RHO0, RHO1)

#: id -> (eps or None for the ODE, steps)
CONFIGS = {"ode-heun": (None, 100), "sde-eps0.1": (0.1, 500), "sde-eps1": (1.0, 1000)}
#: direction -> (start law, grid end points, target law, whether samples are symmetrised)
DIRECTIONS = {"forward": (RHO0, (0.0, 1.0), RHO1, True), "backward": (RHO1, (1.0, 0.0), RHO0, False)}


def _law(way):
    _, _, target, symmetrised = DIRECTIONS[way]
    return Symmetrised(target) if symmetrised else target


@functools.cache
def _floor(way) -> dc.FloorEstimate:
    """The floor of one direction, computed once per process and only when a test needs it (under
    xdist a worker may run the tests of one direction only; each floor is 10 W2 problems of 4000 points)."""
    return dc.w2_floor(_law(way), N, repeats=5, rng={"forward": 2024, "backward": 2025}[way])


def _start(way, seed):
    start, _, _, symmetrised = DIRECTIONS[way]
    return start.sample(N // K if symmetrised else N, rng=seed)


def _dynamics(fields, eps, way):
    if eps is None:
        return dc.InterpolantODE(fields.velocity), "heun"
    return dc.InterpolantSDE(fields.velocity, fields.score, eps=eps, way=way), "euler_maruyama"


def _run(fields, eps, steps, way, x_init, seed):
    dynamics, solver = _dynamics(fields, eps, way)
    ts = np.linspace(*DIRECTIONS[way][1], steps + 1)
    return dc.integrate(dynamics, x_init, ts, solver, rng=seed).x


def _w2_to_fresh_exact(x, way, seed):
    x = symmetrise(x) if DIRECTIONS[way][3] else x
    return float(dc.w2(x, _law(way).sample(N, rng=seed)))


def test_interpolant_ode_is_rotation_equivariant():
    """The premise of the symmetrisation (0 -> 1): rotate-then-integrate = integrate-then-rotate."""
    x_init = RHO0.sample(50, rng=0)
    out = _run(FIELDS, None, 20, "forward", x_init, seed=0)
    rotated_runs = _run(FIELDS, None, 20, "forward", symmetrise(x_init), seed=0)
    np.testing.assert_allclose(rotated_runs, symmetrise(out), rtol=0, atol=1e-10)


@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_interpolant_sde_drift_is_rotation_equivariant(eps):
    """With an equivariant drift, an Euler–Maruyama step maps (R x, R z) to R times the step of (x, z)."""
    sde = dc.InterpolantSDE(FIELDS.velocity, FIELDS.score, eps=eps, way="forward")
    x = RHO1.sample(40, rng=1) * 0.7
    for t in (0.0, 0.2, 0.5, 0.9, 1.0):
        drift = sde.drift(x, t)
        for r in ROTATIONS:
            np.testing.assert_allclose(sde.drift(x @ r.T, t), drift @ r.T, rtol=0, atol=1e-10 * np.abs(drift).max())


@pytest.mark.parametrize("way", list(DIRECTIONS))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_exact_fields_reach_the_other_end_at_the_w2_floor(way, config):
    eps, steps = CONFIGS[config]
    x = _run(FIELDS, eps, steps, way, _start(way, seed=10), seed=11)
    w = _w2_to_fresh_exact(x, way, seed=12)
    floor = _floor(way)
    assert w <= RATIO * floor.mean, f"{way} {config}: w2 {w:.4f} vs floor {floor.mean:.4f} +- {floor.stderr:.4f}"


#: wrong fields -> the direction they are run in: an end law that is off by W2 ~ 0.7 .. 1
WRONG = {
    "rho1-radius-3": (dc.interpolant_fields(INTERPOLANT, RHO0, circle_mixture(radius=3.0)), "forward"),
    "rho0-std-1.5": (dc.interpolant_fields(INTERPOLANT, dc.Gaussian(np.zeros(2), 2.25 * np.eye(2)), RHO1), "backward"),
}


@pytest.mark.parametrize(
    ("wrong", "config"), [("rho1-radius-3", "ode-heun"), ("rho1-radius-3", "sde-eps1"), ("rho0-std-1.5", "ode-heun")]
)
def test_fields_of_other_ends_are_far_above_the_floor(wrong, config):
    """The check can fail: the exact fields of a different end law carry the samples to that law.

    A circle of radius 3 instead of 4 is at W2 ~1 from P1 (measured 13x the floor); N(0, 1.5^2 I)
    is at W2 = sqrt(2) * 0.5 = 0.71 from N(0, I) (~6x the floor).  We ask for > 3x.  (Flipping the
    sign of the score term in the SDE gives ~100x.)
    """
    fields, way = WRONG[wrong]
    eps, steps = CONFIGS[config]
    x = _run(fields, eps, steps, way, _start(way, seed=20), seed=21)
    w = _w2_to_fresh_exact(x, way, seed=22)
    assert w > 3 * _floor(way).mean, (w, _floor(way).mean)
