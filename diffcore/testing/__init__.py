"""Reusable oracles for checking samplers, schedules and score models against exact answers."""

from diffcore.testing._oracles import fit_order, propagate_gaussian_law, reference_ode_solution
from diffcore.testing._symmetry import Symmetrised, rotations, symmetrise

__all__ = ["Symmetrised", "fit_order", "propagate_gaussian_law", "reference_ode_solution", "rotations", "symmetrise"]
