"""What a solver whose cost varies from step to step reports to the driver."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepStatistics"]


@dataclass(frozen=True)
class StepStatistics:
    """Counts carried in a solver's ``state`` when ``steps * nfe_per_step`` is not its true cost.

    A solver whose state is (a subclass of) this record keeps the counts of every step so far;
    :func:`~diffcore.integrate` then reports ``nfe``, ``accepted_steps`` and ``rejected_steps``
    from the final state instead of ``steps * nfe_per_step``.  Used by the adaptive
    Runge–Kutta solver (internal steps between the grid times, rejected trial steps) and by
    the EDM Heun step, which saves its second evaluation on a final step to ``sigma = 0``.

    Attributes
    ----------
    nfe : score evaluations so far.
    accepted : accepted (internal) steps so far.
    rejected : rejected trial steps so far (each one cost evaluations, counted in ``nfe``).
    """

    nfe: int = 0
    accepted: int = 0
    rejected: int = 0
