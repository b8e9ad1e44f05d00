"""The variance-exploding process, in its exact form and in the form of Song et al. (2021)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffcore._validation import check_choice, check_positive
from diffcore.processes._base import AbstractProcess

__all__ = ["VESDE"]

_VARIANTS = ("exact", "song2021")


@dataclass(frozen=True)
class VESDE(AbstractProcess):
    r"""The variance-exploding SDE ``dx = sqrt(d sigma_ve(t)^2 / dt) dW`` (``alpha = 1``).

    ``sigma_ve(t) = sigma_min (sigma_max / sigma_min)^t`` is the geometric noise schedule of
    Song et al. (2021, eq. 9 and 30).  Started from the data at ``t = 0``, this SDE has
    marginal std

    .. math:: \sigma(t) = \sqrt{\sigma_{ve}(t)^2 - \sigma_{min}^2}
              = \sigma_{min} \sqrt{(\sigma_{max}/\sigma_{min})^{2t} - 1},

    which is what ``variant="exact"`` (the default) uses, so that ``sigma(0) = 0`` and the
    time-0 law is the data.  ``variant="song2021"`` is the convention of the paper's code:
    ``sigma(t) = sigma_ve(t)``, i.e. the law at ``t = 0`` is the data convolved with
    ``N(0, sigma_min^2 I)``; the same SDE, so both variants are self-consistent, they
    differ only in what they call the time-0 law.  Prior ``N(0, sigma(1)^2 I)``.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    variant: str = "exact"

    def __post_init__(self) -> None:
        check_positive("sigma_min", self.sigma_min)
        check_positive("sigma_max", self.sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(
                f"sigma_max must be > sigma_min; got sigma_min={self.sigma_min}, sigma_max={self.sigma_max}"
            )
        check_choice("variant", self.variant, _VARIANTS)

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    @property
    def prior_std(self) -> float:  # type: ignore[override]
        return self.sigma(1.0)

    @property
    def _exact(self) -> bool:
        return self.variant == "exact"

    def _alpha(self, t, xp):
        return xp.ones_like(t)

    def _d_alpha(self, t, xp):
        return xp.zeros_like(t)

    def _f(self, t, xp):
        return xp.zeros_like(t)

    def _sigma(self, t, xp):
        if self._exact:
            return self.sigma_min * xp.sqrt(xp.expm1(2 * self._log_ratio * t))
        return self.sigma_min * xp.exp(self._log_ratio * t)

    def _d_sigma(self, t, xp):
        ve2 = self.sigma_min**2 * xp.exp(2 * self._log_ratio * t)
        return self._log_ratio * ve2 / self._sigma(t, xp)

    def _g2(self, t, xp):
        return 2 * self._log_ratio * self.sigma_min**2 * xp.exp(2 * self._log_ratio * t)

    def _log_snr(self, t, xp):
        if self._exact:
            return -2 * math.log(self.sigma_min) - xp.log(xp.expm1(2 * self._log_ratio * t))
        return -2 * math.log(self.sigma_min) - 2 * self._log_ratio * t

    def _log_snr_inverse(self, lam, xp):
        y = -lam - 2 * math.log(self.sigma_min)
        if self._exact:
            return xp.logaddexp(xp.zeros_like(lam), y) / (2 * self._log_ratio)
        return y / (2 * self._log_ratio)

    def _transition_var(self, s, t, xp):
        return self.sigma_min**2 * (xp.exp(2 * self._log_ratio * t) - xp.exp(2 * self._log_ratio * s))
