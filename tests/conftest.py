"""Shared axes of variation: array backends, dtypes, processes; and the hypothesis profiles."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import diffcore as dc
from diffcore.testing import Symmetrised, rotations, symmetrise  # noqa: F401 (re-exported to the tests)

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


def circle_mixture(k: int = 8, radius: float = 4.0, std: float = 0.3) -> dc.GaussianMixture:
    """P1: ``k`` isotropic components of std ``std`` evenly spaced on a circle (the benchmark mixture)."""
    ang = 2 * np.pi * np.arange(k) / k
    means = radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    return dc.GaussianMixture(np.full(k, 1.0 / k), means, np.tile(std**2 * np.eye(2), (k, 1, 1)))


def random_gaussian(d: int = 64, seed: int = 0, lo: float = 0.01, hi: float = 4.0) -> dc.Gaussian:
    """P2: a ``d``-dim Gaussian with random rotation and eigenvalues log-uniform in [lo, hi]."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.exp(rng.uniform(np.log(lo), np.log(hi), size=d))
    return dc.Gaussian(rng.standard_normal(d) * 0.5, (q * lam) @ q.T)


@pytest.fixture
def p1() -> dc.GaussianMixture:
    return circle_mixture()


@pytest.fixture
def p2() -> dc.Gaussian:
    return random_gaussian()


#: P1's rotation group (see test_sampling_accuracy.py for why comparing symmetrised samples is the
#: honest way to reach a tight W2 floor on P1); the helpers live in diffcore.testing
K_ROTATIONS = 8
ROTATIONS = rotations(K_ROTATIONS)
