"""Time grids from ``t_max`` down to ``t_min``: uniform in t, uniform in log-SNR, and the EDM grid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diffcore._validation import check_choice, check_positive, check_scalar_time, check_steps

__all__ = ["GRIDS", "time_grid"]

GRIDS = ("uniform", "log_snr", "edm")


def time_grid(
    process: Any, steps: int, *, t_min: float = 1e-3, t_max: float = 1.0, kind: str = "uniform", rho: float = 7.0
) -> np.ndarray:
    r"""A decreasing grid ``t_0 = t_max > t_1 > ... > t_steps = t_min`` (NumPy float64).

    * ``"uniform"``: equal steps in ``t``.
    * ``"log_snr"``: equal steps in ``lambda = log_snr(t)`` (Lu et al. 2022, sec. 3.3), mapped
      back through the process's exact ``log_snr_inverse``.
    * ``"edm"``: Karras et al. (2022, eq. 5) on the noise level ``sigma/alpha = e^{-lambda/2}``,
      ``s_i = (s_max^{1/rho} + i/N (s_min^{1/rho} - s_max^{1/rho}))^rho``, mapped back to ``t``;
      for the VE process this is the EDM grid itself.

    The two ends are exactly ``t_max`` and ``t_min``.
    """
    steps = check_steps(steps)
    t_min, t_max = check_scalar_time(t_min, "t_min"), check_scalar_time(t_max, "t_max")
    if not t_min < t_max:
        raise ValueError(f"t_min must be < t_max; got t_min={t_min}, t_max={t_max}")
    check_choice("kind", kind, GRIDS)
    if kind == "uniform":
        return np.linspace(t_max, t_min, steps + 1)
    lam_lo, lam_hi = process.log_snr(t_max), process.log_snr(t_min)
    if not (math.isfinite(lam_lo) and math.isfinite(lam_hi)):
        raise ValueError(f"the {kind!r} grid needs a finite log-SNR at t_min and t_max; got {lam_hi} and {lam_lo}")
    if kind == "log_snr":
        lam = np.linspace(lam_lo, lam_hi, steps + 1)
    else:
        check_positive("rho", rho)
        s_max, s_min = math.exp(-lam_lo / 2) ** (1 / rho), math.exp(-lam_hi / 2) ** (1 / rho)
        lam = -2 * rho * np.log(s_max + np.linspace(0.0, 1.0, steps + 1) * (s_min - s_max))
        lam[0], lam[-1] = lam_lo, lam_hi  # the exp/log round trip can leave the range by an ulp
    ts = np.asarray(process.log_snr_inverse(lam), dtype=np.float64)
    ts[0], ts[-1] = t_max, t_min
    if not np.all(np.diff(ts) < 0):
        raise ValueError(f"the {kind!r} grid with {steps} steps is not strictly decreasing; use fewer steps")
    return ts
