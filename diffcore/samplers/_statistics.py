"""What a solver that takes internal steps between the grid times reports to the driver."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepStatistics"]


@dataclass(frozen=True)
class StepStatistics:
    """Step counts carried in a solver's ``state`` when its steps are not the grid's.

    A solver whose state is (a subclass of) this record keeps the counts of every step so far;
    :func:`~diffcore.integrate` then reports ``accepted_steps`` and ``rejected_steps`` from the
    final state instead of the grid's step count.  Used by the adaptive Runge–Kutta solver
    (internal steps between the grid times, rejected trial steps).  The number of evaluations
    is not kept here: the driver counts the model's calls for every solver.

    Attributes
    ----------
    accepted : accepted (internal) steps so far.
    rejected : rejected trial steps so far (each one cost evaluations, counted in the NFE).
    """

    accepted: int = 0
    rejected: int = 0
