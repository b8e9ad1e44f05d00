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
