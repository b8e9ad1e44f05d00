r"""Low-rank adaptation (LoRA, Hu et al. 2022): train a rank-``r`` update of frozen linear layers.

``W x + b`` becomes ``W x + b + (alpha / r) B A x`` with ``A (r, in)``, ``B (out, r)``, ``B = 0`` at
the start (the adapted model equals the base model) and ``W``, ``b`` frozen.  LCM-LoRA (Luo et
al. 2023) distils a latent consistency model into such an adapter, so that one small set of
weights turns a base diffusion model into a few-step sampler; the laboratory's analogue is
consistency distillation (:func:`consistency_distillation_loss`) of a LoRA-adapted
:class:`MLPField`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diffcore._validation import check_positive, check_steps
from diffcore.training._torch import generator

__all__ = ["LoRALinear", "add_lora", "lora_parameters"]


class LoRALinear(torch.nn.Module):
    r"""A frozen ``torch.nn.Linear`` plus the trainable low-rank update ``(alpha / r) B A``.

    ``A`` is drawn uniform on ``+-1/sqrt(in)`` (PyTorch's law for linear weights) and ``B = 0``,
    as in Hu et al. (2022, sec. 4.1), so the output equals the base layer's until ``B`` is trained.
    """

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float, gen: torch.Generator) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.rank, self.scale = rank, alpha / rank
        bound = 1.0 / math.sqrt(base.in_features)
        a = (torch.rand(rank, base.in_features, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        self.lora_a = torch.nn.Parameter(a.to(dtype=w.dtype, device=w.device))
        self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank, dtype=w.dtype, device=w.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * (x @ self.lora_a.T) @ self.lora_b.T

    @property
    def weight(self) -> torch.Tensor:
        """``W + (alpha / r) B A``, the weight of the equivalent plain linear layer (on ``W``'s dtype and device)."""
        return self.base.weight + self.scale * self.lora_b @ self.lora_a

    @property
    def bias(self) -> torch.Tensor | None:
        """The frozen bias ``b``."""
        return self.base.bias


def add_lora(module: torch.nn.Module, rank: int, *, alpha: float | None = None, rng: Any = None) -> torch.nn.Module:
    r"""Replace every ``torch.nn.Linear`` inside ``module`` by a :class:`LoRALinear` of rank ``rank``, in place.

    Every other parameter of ``module`` is frozen, so an optimiser over ``module.parameters()``
    (e.g. :func:`fit`) trains only the adapters: ``r (in + out)`` numbers per layer
    (:func:`lora_parameters`), with ``r = min(rank, in, out)`` (a layer's update cannot have a
    larger rank; its scale ``alpha / rank`` is kept).  ``alpha`` defaults to ``rank`` (scale 1).
    Returns ``module``.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
    rank = check_steps(rank, "rank")
    alpha = float(rank) if alpha is None else check_positive("alpha", alpha)
    gen = generator(rng)
    for p in module.parameters():
        p.requires_grad_(False)
    found = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                r = min(rank, child.in_features, child.out_features)  # a larger rank adds nothing
                setattr(parent, name, LoRALinear(child, r, alpha * r / rank, gen))
                found += 1
    if isinstance(module, torch.nn.Linear) or found == 0:
        raise ValueError("module must contain torch.nn.Linear layers (as children) to adapt")
    return module


def lora_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable adapter parameters of a module adapted by :func:`add_lora`."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
    return [p for m in module.modules() if isinstance(m, LoRALinear) for p in (m.lora_a, m.lora_b)]
