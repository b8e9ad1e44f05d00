"""Stochastic interpolants, their exact fields between Gaussian mixtures, and flow-matching paths."""

from diffcore.interpolants._base import (
    AbstractInterpolant,
    EncoderDecoderInterpolant,
    Interpolant,
    LinearInterpolant,
    MirrorInterpolant,
    OneSidedInterpolant,
    TrigonometricInterpolant,
)
from diffcore.interpolants._convert import (
    TimeReversed,
    interpolant_from_process,
    process_from_interpolant,
    reverse_time,
)
from diffcore.interpolants._couplings import independent_coupling, minibatch_ot_coupling
from diffcore.interpolants._fields import InterpolantFields, interpolant_fields

__all__ = [
    "AbstractInterpolant",
    "EncoderDecoderInterpolant",
    "Interpolant",
    "InterpolantFields",
    "LinearInterpolant",
    "MirrorInterpolant",
    "OneSidedInterpolant",
    "TimeReversed",
    "TrigonometricInterpolant",
    "independent_coupling",
    "interpolant_fields",
    "interpolant_from_process",
    "minibatch_ot_coupling",
    "process_from_interpolant",
    "reverse_time",
]
