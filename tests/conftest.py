"""Shared axes of variation: array backends, dtypes, processes; and the hypothesis profiles."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import diffcore as dc
from diffcore.testing import (  # noqa: F401 (re-exported to the tests)
    Problem,
    Symmetrised,
    circle_mixture,
    random_gaussian,
    rotations,
    symmetrise,
)

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is in the dev install
        return None
    return torch


BACKENDS = ["numpy", "torch-cpu"]
if (_t := _torch()) is not None and _t.cuda.is_available():  # pragma: no cover - GPU machines only
    BACKENDS.append("torch-cuda")


class Backend:
    """Make arrays of one library, dtype and device from NumPy data, and bring them back."""

    def __init__(self, name: str, dtype: str) -> None:
        self.name, self.dtype = name, dtype
        self.is_torch = name.startswith("torch")
        if self.is_torch:
            torch = _torch()
            self.torch = torch
            self.device = "cuda" if name == "torch-cuda" else "cpu"
            self.tdtype = getattr(torch, dtype)

    def __call__(self, a):
        a = np.asarray(a, dtype=self.dtype)
        if self.is_torch:
            return self.torch.as_tensor(a, dtype=self.tdtype, device=self.device)
        return a

    def to_numpy(self, a):
        if self.is_torch:
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def check_like(self, out, *, dtype: str | None = None) -> None:
        """Assert ``out`` has this backend's array type, dtype and device."""
        dtype = dtype or self.dtype
        if self.is_torch:
            assert isinstance(out, self.torch.Tensor), type(out)
            assert out.dtype == getattr(self.torch, dtype), out.dtype
            assert out.device.type == self.device, out.device
        else:
            assert isinstance(out, np.ndarray), type(out)
            assert out.dtype == np.dtype(dtype), out.dtype

    @property
    def rtol(self) -> float:
        """Agreement expected with float64 NumPy: 1e-10 in float64, 1e-4 in float32."""
        return 1e-10 if self.dtype == "float64" else 1e-4

    def __repr__(self) -> str:
        return f"{self.name}-{self.dtype}"


@pytest.fixture(params=[(b, d) for b in BACKENDS for d in ("float64", "float32")], ids=lambda p: f"{p[0]}-{p[1]}")
def backend(request) -> Backend:
    """Every array backend in float64 and float32."""
    return Backend(*request.param)


#: one instance of every process kind, used by every test that varies the process
PROCESSES = {
    "vp": dc.VPSDE(),
    "subvp": dc.SubVPSDE(),
    "cosine": dc.CosineVPSDE(),
    "ve": dc.VESDE(sigma_min=0.01, sigma_max=10.0),
    "ve-song2021": dc.VESDE(sigma_min=0.01, sigma_max=10.0, variant="song2021"),
    "affine-vp": dc.AffineProcess(
        lambda t: np.exp(-0.25 * 19.9 * t**2 - 0.05 * t),
        lambda t: np.sqrt(-np.expm1(-0.5 * 19.9 * t**2 - 0.1 * t)),
    ),
}


@pytest.fixture(params=list(PROCESSES), ids=list(PROCESSES))
def process(request) -> dc.AbstractProcess:
    """Every process kind."""
    return PROCESSES[request.param]


@pytest.fixture
def p1() -> dc.GaussianMixture:
    """P1, the 2-D circle mixture of the benchmarks (``Problem("P1").data``)."""
    return Problem("P1").data


@pytest.fixture
def p2() -> dc.Gaussian:
    """P2, the 64-D anisotropic Gaussian of the benchmarks (``Problem("P2").data``)."""
    return Problem("P2").data


#: P1's rotation group (see test_sampling_accuracy.py for why comparing symmetrised samples is the
#: honest way to reach a tight W2 floor on P1); the helpers live in diffcore.testing
K_ROTATIONS = 8
ROTATIONS = rotations(K_ROTATIONS)


#: the law behind :func:`p1_marginal_floor`: P1's marginal under the VP-SDE at t_min = 1e-3
P1_MARGINAL_T_MIN, P1_FLOOR_N = 1e-3, 4000


@pytest.fixture(scope="session")
def p1_marginal_floor() -> dc.FloorEstimate:
    """W2 floor of symmetrised 4000-point samples of P1's VP-SDE marginal at t = 1e-3 (5 repeats, seed 2024).

    The reference of test_sampling_accuracy.py and of the OR test of test_ito_density.py (the same
    law, size and seed in both): ten W2 problems of 4000 points, computed once per process."""
    target = dc.marginal(dc.VPSDE(), circle_mixture(), P1_MARGINAL_T_MIN)
    return dc.w2_floor(Symmetrised(target), P1_FLOOR_N, repeats=5, rng=2024)


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected
def pytest_collection_modifyitems(config, items) -> None:
    """Under pytest-xdist, hand the slow tests out first, one share to each worker; order only, nothing skipped.

    xdist's load scheduler (3.x) gives each of the ``n`` workers a first batch of ``N // n // 4``
    consecutive tests, then hands out the rest in consecutive batches as workers finish.  In
    collection order the long tests of test_training.py come last and start when the other
    worker has run dry (a minute of one busy core at the end of ``make test``).  So the modules
    with slow tests are dealt round-robin to the workers and put at the head of each worker's
    first batch (a module's slow tests stay together, so its module fixtures are built once, and
    slow tests of several modules that use one session fixture of this conftest, such as
    ``p1_marginal_floor``, go to the same worker); the fast tests fill the batches and balance
    the end.  Without xdist the order is untouched.  If xdist's batching changes, only the
    balance suffers: every test still runs.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    groups: dict[str, list] = {}  # module -> its slow tests; modules sharing a conftest session fixture merge
    alias: dict[str, str] = {}
    for item in slow:
        key = item.nodeid.split("::")[0]
        for name in item.fixturenames:  # e.g. p1_marginal_floor: computed once if its users share a worker
            info = getattr(item, "_fixtureinfo", None)  # pytest's (private) resolved fixtures of a test function
            defs = info.name2fixturedefs.get(name, ()) if info is not None else ()
            if defs and defs[-1].scope == "session" and defs[-1].baseid == "tests":
                key = alias.setdefault(name, key)
        groups.setdefault(key, []).append(item)
    shares: list[list] = [[] for _ in range(workers)]
    for k, group in enumerate(groups.values()):
        shares[k % workers] += group
    batch = max(len(items) // workers // 4, 2)  # xdist's first batch per worker
    ordered: list = []
    for w, share in enumerate(shares):
        ordered += share
        fill = max((w + 1) * batch - len(ordered), 0) if w < workers - 1 else 0
        ordered += fast[:fill]
        fast = fast[fill:]
    items[:] = ordered + fast
