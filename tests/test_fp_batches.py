"""``dsm_fp_loss`` consumes the same randoms for every ``fp_weight``, so ``fit`` runs that differ only
in the weight see identical batches.

``fit`` draws the batches and the loss's noise from one ``torch.Generator``.  If the penalty drew its
times and noise only when ``fp_weight > 0``, the generator would be in a different state after the
first step of a ``fp_weight = 0`` run, and every later batch would differ: the book's comparison of
DSM with DSM + FP penalty ("same initial weights and batches", chapter "Fokker–Planck and the ODE–SDE
gap") would not compare like with like.  Oracle: exact equality of the batches and of the generator
states (the same seed, the same draws, bit for bit on the CPU).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from strategies import skewed_mixture_2d

import diffcore as dc
from diffcore.training import MLPField, dsm_fp_loss, dsm_loss, fit

F64 = torch.float64
WEIGHTS = (0.0, 0.01, 1.0)


def _recorded_fit(data, weight: float, steps: int) -> tuple[list[torch.Tensor], np.ndarray]:
    """Train a small net with ``dsm_fp_loss`` and return every batch it saw and the loss history."""
    seen: list[torch.Tensor] = []
    loss = functools.partial(dsm_fp_loss, process=dc.VPSDE(), fp_weight=weight)

    def recording(model, batch, rng):
        seen.append(batch.detach().clone())
        return loss(model, batch, rng=rng)

    model = MLPField(2, width=8, depth=1, rng=0, dtype=F64)
    result = fit(model, recording, data, steps=steps, batch_size=16, lr=1e-3, rng=7, progress=False)
    return seen, result.losses


@pytest.mark.parametrize("source", ["mixture", "array"])
def test_fits_with_and_without_the_penalty_see_the_same_batches(source):
    # a mixture draws a fresh batch from the generator every step; an array of 32 rows is
    # reshuffled by the generator every second step (batch 16): both depend on its state
    data = skewed_mixture_2d() if source == "mixture" else skewed_mixture_2d().sample(32, rng=3)
    runs = {w: _recorded_fit(data, w, steps=5) for w in WEIGHTS}
    batches0, losses0 = runs[0.0]
    for w in WEIGHTS[1:]:
        batches, losses = runs[w]
        assert len(batches) == len(batches0) == 5
        for k, (b0, b) in enumerate(zip(batches0, batches)):
            assert torch.equal(b0, b), f"fp_weight={w}: the batch of step {k + 1} differs from fp_weight=0"
        # not vacuous: the penalty is really added (the losses differ from the first step on)
        assert losses[0] > losses0[0], (w, losses[0], losses0[0])


def test_the_generator_state_after_the_loss_does_not_depend_on_the_weight():
    process, model = dc.VPSDE(), MLPField(2, width=8, depth=1, rng=0, dtype=F64)
    x0 = torch.as_tensor(skewed_mixture_2d().sample(16, rng=1))
    states, values = {}, {}
    for w in WEIGHTS:
        gen = torch.Generator().manual_seed(11)
        values[w] = float(dsm_fp_loss(model, x0, process, gen, fp_weight=w).detach())
        states[w] = gen.get_state()
    for w in WEIGHTS[1:]:
        assert torch.equal(states[w], states[0.0]), w
    # fp_weight = 0 is still exactly DSM of the same seed
    plain = float(dsm_loss(model, x0, process, torch.Generator().manual_seed(11)).detach())
    assert values[0.0] == plain
