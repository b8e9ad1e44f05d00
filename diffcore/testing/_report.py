"""The report every check of the kit returns: a verdict, the reasons, and the numbers behind them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckReport", "SamplerReport"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3g}"
    return str(v)


@dataclass(frozen=True, eq=False)
class CheckReport:
    """The verdict of a check of the kit (:func:`~diffcore.testing.check_score_model` and friends).

    Attributes
    ----------
    check : what was checked, e.g. ``"check_score_model on P1"``.
    passed : ``True`` when no symptom was found.
    messages : the symptoms found, one sentence each (empty when ``passed``); each names what
        was measured, the value and the bound it broke.
    notes : observations that are not failures (a quantity that could not be measured, what the
        check could not see).
    details : the numbers behind the verdict (per-time errors, tolerances, ...), by name.

    ``str(report)`` is a readable summary, so ``assert report.passed, report`` prints the reasons.
    Repeated messages are kept once, in their first place.
    """

    check: str
    passed: bool
    messages: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(dict.fromkeys(self.messages)))
        object.__setattr__(self, "notes", tuple(dict.fromkeys(self.notes)))

    def summary(self) -> str:
        """The verdict, the symptoms and the notes, one per line."""
        lines = [f"{self.check}: {'PASSED' if self.passed else 'FAILED'}"]
        lines += [f"  - {m}" for m in self.messages]
        lines += [f"  note: {m}" for m in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True, eq=False)
class SamplerReport(CheckReport):
    """The verdict of :func:`~diffcore.testing.check_sampler`, with its convergence table.

    Attributes (besides :class:`CheckReport`'s)
    ----------
    kind : ``"ode"`` (pathwise error against the reference flow) or ``"sde"`` (weak error of the
        output law).
    declared_order : the order the sampler was checked against.
    measured_order : the least-squares slope of ``log error`` on ``log(1/steps)`` over the
        asymptotic part of the sweep (``None`` when it could not be measured: errors at the
        reference's floor or below the Monte Carlo noise).
    table : one row per number of steps: ``(steps, nfe, error, stderr)`` with ``nfe`` the model
        evaluations per point counted by the kit and ``stderr`` the Monte Carlo standard error of
        ``error`` (0 for the pathwise error of an ODE sampler).
    comparison : diffcore's methods of the same declared order on the same grids:
        ``method -> ((steps, nfe, error), ...)`` and the ratio of the sampler's error to theirs
        at equal NFE (``details["ratio_to_diffcore"]``).
    """

    kind: str = "ode"
    declared_order: int = 1
    measured_order: float | None = None
    table: tuple[tuple[int, float, float, float], ...] = ()
    comparison: Mapping[str, tuple[tuple[int, float, float], ...]] = field(default_factory=dict)

    def summary(self) -> str:
        order = "not measured" if self.measured_order is None else f"{self.measured_order:.2f}"
        lines = [
            f"{self.check}: {'PASSED' if self.passed else 'FAILED'} "
            f"(kind {self.kind}, declared order {self.declared_order}, measured order {order})"
        ]
        what = "pathwise RMS error" if self.kind == "ode" else "weak error (max over eigendirections)"
        lines.append(f"  {'steps':>6} {'nfe':>8} {what:>24} {'std. error':>11}")
        lines += [f"  {s:>6} {_fmt(n):>8} {_fmt(e):>24} {_fmt(se):>11}" for s, n, e, se in self.table]
        if self.comparison:
            best = ", ".join(f"{m} {_fmt(rows[-1][2])}" for m, rows in self.comparison.items())
            lines.append(f"  diffcore at {self.table[-1][0] if self.table else '?'} steps: {best}")
        lines += [f"  - {m}" for m in self.messages]
        lines += [f"  note: {m}" for m in self.notes]
        return "\n".join(lines)
