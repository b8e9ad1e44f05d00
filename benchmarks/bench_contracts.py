"""What the boundary checks cost: the model-output check per evaluation, against a sampler step.

Every call of a user's model goes through ``diffcore._validation.Model`` (the input promoted if
it is not a float array, the output's type, device, dtype and shape checked: metadata only), and
the exact fields check their points the same way.  This script times those checks alone, per
call, and a whole ``sample`` step of Euler with the cheapest possible model (``-x``) and with
the exact score of a 4-component mixture, so that the checks' share of a step can be read off.

Run: ``python benchmarks/bench_contracts.py`` (``make bench BENCH_ARGS=contracts``); one thread.
"""

from __future__ import annotations

import time
import timeit

import numpy as np
import torch
from _report import Table, machine_lines, write_markdown
from threadpoolctl import threadpool_limits

import diffcore as dc
from diffcore._validation import Model, check_batch, check_points


def per_call_us(fn, number: int = 20_000, repeat: int = 5) -> float:
    """Best of ``repeat`` runs of ``number`` calls, in microseconds per call."""
    return 1e6 * min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def step_us(process, score, x, steps: int, repeat: int = 15) -> float:
    dc.sample(process, score, x, method="euler", steps=steps)
    best = min(
        timeit.repeat(lambda: dc.sample(process, score, x, method="euler", steps=steps), number=1, repeat=repeat)
    )
    return 1e6 * best / steps


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    vp = dc.VPSDE()
    data = dc.GaussianMixture(
        np.full(4, 0.25), np.array([[2.0, 0], [-2, 0], [0, 2], [0, -2]]), np.tile(0.1 * np.eye(2), (4, 1, 1))
    )
    exact = dc.exact_score(vp, data)
    checks = Table(
        "The checks alone, per call (microseconds)",
        ["minimum over 5 repeats of 20 000 calls; x of shape (16, 2)."],
        ["check", "numpy float64", "torch float64 (cpu)"],
    )
    steps = Table(
        "One Euler step of sample(), in microseconds (minimum over 15 runs)",
        [
            "'-x': the model lambda x, t: -x, so the step is almost all driver and checks; "
            "'exact': the exact score of a 4-component 2-D mixture.",
            "checks per step: one Model call (score) and, for 'exact', one check_points; their cost is the "
            "first table's.",
        ],
        ["array", "n", "model", "us / step"],
    )
    arrays = {"numpy": np.zeros((16, 2)), "torch": torch.zeros((16, 2), dtype=torch.float64)}
    wrapped = Model(lambda x, t: -x, "score")
    raw = {k: per_call_us(lambda a=a: -a) for k, a in arrays.items()}
    checks.add("the model itself, -x", *(f"{raw[k]:.2f}" for k in arrays))
    checks.add(
        "Model(-x): call + check",
        *(f"{per_call_us(lambda a=a: wrapped(a, 0.5)) - raw[k]:.2f} more" for k, a in arrays.items()),
    )
    checks.add("check_batch", *(f"{per_call_us(lambda a=a: check_batch('x', a)):.2f}" for a in arrays.values()))
    checks.add("check_points", *(f"{per_call_us(lambda a=a: check_points(a, 2)):.2f}" for a in arrays.values()))
    for lib in arrays:
        for n, k in ((16, 200), (10_000, 20)):
            x = vp.prior_sample((n, 2), rng=0)
            x = torch.as_tensor(x) if lib == "torch" else x
            for name, score in (("-x", lambda x, t: -x), ("exact", exact)):
                steps.add(lib, n, name, f"{step_us(vp, score, x, k):.1f}")
    tables = [checks, steps]
    header = ["diffcore boundary checks; one BLAS and one torch thread.", *machine_lines()]
    print("\n".join(header), end="\n\n")
    for t in tables:
        print(t.text())
    footer = f"bench_contracts finished in {time.perf_counter() - start:.0f} s"
    print(footer)
    write_markdown("bench_contracts", [*header, footer], tables)


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
