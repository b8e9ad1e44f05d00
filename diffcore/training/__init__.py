"""Learning scores, denoisers and velocities with torch: small nets, losses, ``fit`` and ``field_error``.

This subpackage needs torch (``pip install diffcore[torch]``) and is not imported by
``import diffcore``; use ``from diffcore.training import MLPField, dsm_loss, fit, field_error``.
Every loss is a function ``loss(model, batch, process_or_interpolant, rng=None, ...)`` returning
a 0-d tensor whose minimiser is an exact field of :mod:`diffcore`; :func:`field_error` measures
how far a learned field is from that exact field.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as err:  # pragma: no cover - torch is part of the dev install
    raise ImportError("diffcore.training needs torch; install it with `pip install diffcore[torch]`") from err

from diffcore.training._assembly import FeatureReuseModel, assemble, assembly_distillation_loss, feature_reuse_model
from diffcore.training._bridge_matching import (
    BridgeMatchingResult,
    bridge_matching,
    bridge_matching_loss,
    simulate_bridge,
)
from diffcore.training._discrete_losses import (
    d3pm_loss,
    masked_diffusion_loss,
    masked_diffusion_nelbo,
    score_entropy_loss,
)
from diffcore.training._discrete_net import DiscreteDenoiser
from diffcore.training._early_exit import (
    EarlyExitModel,
    ExitTerms,
    MultiExitMLP,
    early_exit_loss,
    early_exit_model,
    early_exit_terms,
)
from diffcore.training._error import FieldError, field_error
from diffcore.training._fit import FitResult, fit
from diffcore.training._flowmap_losses import (
    boot_loss,
    consistency_distillation_loss,
    consistency_training_loss,
    eulerian_distillation_loss,
    guided_distillation_loss,
    meanflow_loss,
    progressive_distillation_loss,
    sde_teacher,
    shortcut_loss,
    solver_teacher,
)
from diffcore.training._fp import dsm_fp_loss, fp_penalty
from diffcore.training._graph import GRAPH_WEIGHTINGS, GraphScoreNet, graph_dsm_loss, graph_score_error
from diffcore.training._interpolant_losses import (
    flow_matching_loss,
    interpolant_denoiser_loss,
    interpolant_score_loss,
    interpolant_velocity_loss,
)
from diffcore.training._lora import LoRALinear, add_lora, lora_parameters
from diffcore.training._losses import WEIGHTINGS, denoising_loss, dsm_loss
from diffcore.training._net import MLPField, MLPMap

__all__ = [
    "GRAPH_WEIGHTINGS",
    "WEIGHTINGS",
    "BridgeMatchingResult",
    "DiscreteDenoiser",
    "EarlyExitModel",
    "ExitTerms",
    "FeatureReuseModel",
    "FieldError",
    "FitResult",
    "GraphScoreNet",
    "LoRALinear",
    "MLPField",
    "MLPMap",
    "MultiExitMLP",
    "add_lora",
    "assemble",
    "assembly_distillation_loss",
    "boot_loss",
    "bridge_matching",
    "bridge_matching_loss",
    "consistency_distillation_loss",
    "consistency_training_loss",
    "d3pm_loss",
    "denoising_loss",
    "dsm_fp_loss",
    "dsm_loss",
    "early_exit_loss",
    "early_exit_model",
    "early_exit_terms",
    "eulerian_distillation_loss",
    "feature_reuse_model",
    "field_error",
    "fit",
    "flow_matching_loss",
    "fp_penalty",
    "graph_dsm_loss",
    "graph_score_error",
    "guided_distillation_loss",
    "interpolant_denoiser_loss",
    "interpolant_score_loss",
    "interpolant_velocity_loss",
    "lora_parameters",
    "masked_diffusion_loss",
    "masked_diffusion_nelbo",
    "meanflow_loss",
    "progressive_distillation_loss",
    "score_entropy_loss",
    "sde_teacher",
    "shortcut_loss",
    "simulate_bridge",
    "solver_teacher",
]
