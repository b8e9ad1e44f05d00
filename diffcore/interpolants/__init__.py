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
    "interpolant_fields",
    "interpolant_from_process",
    "process_from_interpolant",
    "reverse_time",
]
