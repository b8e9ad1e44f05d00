"""Training benchmark: wall time to learn P1's score (DSM) and velocity (flow matching) on a CPU.

Issue 3 asks that a learned score and a learned velocity on P1 each reach a relative field
error below 10 % at t in [0.1, 0.9] within 60 s of CPU training.  The test-suite checks the
errors with fixed step budgets (tests/test_training.py); this script measures the time those
budgets take, and the error reached after each fraction of the budget, with one torch thread.

Run: ``python benchmarks/bench_training.py`` (or ``make bench BENCH_ARGS=training``).
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch
from _report import Table, machine_lines, progress, write_markdown
from problems import PROCESS, circle_mixture

import diffcore as dc
from diffcore.training import MLPField, denoising_loss, field_error, fit, flow_matching_loss

TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)
BUDGETS = (2500, 5000, 10_000)  # Adam steps of 512 points, cosine decay over the whole budget


def _row(table: Table, name: str, steps: int, result, err) -> None:
    table.add(name, steps, f"{result.seconds:.1f}", *(f"{e:.3f}" for e in err.relative), f"{err.overall:.3f}")


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = circle_mixture()
    rho0 = dc.Gaussian(np.zeros(2), np.eye(2))
    interpolant = dc.OneSidedInterpolant("linear")
    fields = dc.interpolant_fields(interpolant, rho0, data)
    header = [
        "diffcore training benchmark on P1 (2-D, 8-component mixture), MLPField(width=128, depth=4), "
        "Adam lr 2e-3 with cosine decay, batches of 512, one torch thread.",
        *machine_lines(),
    ]
    print("\n".join(header), end="\n\n", flush=True)
    table = Table(
        "Training time and relative field error",
        [
            "DSM: eps prediction on the VP-SDE, converted to a score; error of the score against "
            "diffcore.exact_score.",
            "FM: conditional flow matching on the linear one-sided interpolant N(0, I) -> P1; error of "
            "the velocity against the exact interpolant velocity (its relative error at t = 0.1 "
            "divides by a nearly vanishing field, see tests/test_training.py).",
            "cells: sqrt(E|f - f*|^2 / E|f*|^2) at each t over 20 000 (DSM) / 8192 (FM) exact samples; "
            "'all t': the same over all times together.",
        ],
        ["field", "steps", "train s", *(f"t={t}" for t in TIMES), "all t"],
    )
    for steps in BUDGETS:
        progress(f"DSM, {steps} steps")
        model = MLPField(2, width=128, depth=4, rng=0)
        loss = functools.partial(denoising_loss, process=PROCESS, prediction="eps")
        result = fit(model, loss, data, steps=steps, batch_size=512, lr=2e-3, schedule="cosine", rng=1, progress=False)
        score = dc.reparametrize(model, PROCESS, source="eps", target="score")
        err = field_error(score, dc.exact_score(PROCESS, data), PROCESS, data, times=TIMES, n=20_000, rng=2)
        _row(table, "DSM score", steps, result, err)
    for steps in BUDGETS[:2]:
        progress(f"FM, {steps} steps")
        model = MLPField(2, width=128, depth=4, rng=0)
        loss = functools.partial(flow_matching_loss, interpolant=interpolant)
        result = fit(model, loss, data, steps=steps, batch_size=512, lr=2e-3, schedule="cosine", rng=1, progress=False)
        err = field_error(model, fields.velocity, fields, times=TIMES, n=8192, rng=2)
        _row(table, "FM velocity", steps, result, err)
    print(table.text(), flush=True)
    footer = f"bench_training finished in {time.perf_counter() - start:.0f} s"
    path = write_markdown("bench_training", [*header, footer], [table])
    print(footer)
    progress(f"markdown copy written to {path}")


if __name__ == "__main__":
    main()
