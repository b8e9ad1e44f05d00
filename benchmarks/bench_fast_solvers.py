"""Fast-solver accuracy: pathwise error against DOP853 at NFE 5, 10, 20, 50, every ODE solver.

VP-SDE, ``t`` from 1 down to ``t_min = 1e-3``, exact score, on P1 and P2
(``benchmarks/problems.py``), on the grid uniform in ``t`` and the grid uniform in log-SNR.
Steps = NFE // nfe_per_step (so single-step DPM-Solver-2/3 and Heun/RK4 take fewer steps).

Run: ``python benchmarks/bench_fast_solvers.py``; tables to stdout and
``benchmarks/results/bench_fast_solvers.md``; progress to stderr.
"""

from __future__ import annotations

import time

import numpy as np
from _report import DASH, Table, machine_lines, progress, write_markdown
from problems import PROBLEMS, PROCESS, T_MAX, T_MIN
from threadpoolctl import threadpool_limits

import diffcore as dc
from diffcore.testing import reference_ode_solution

NFES = (5, 10, 20, 50)
N_POINTS = {"P1": 200, "P2": 50}
SEED = 1
ODE = [n for n, c in dc.SOLVERS.items() if not c.stochastic and getattr(c, "processes", "affine") == "affine"]


def table(problem_name: str, grid: str) -> Table:
    problem = PROBLEMS[problem_name]
    x_init = problem.law(T_MAX).sample(N_POINTS[problem_name], rng=SEED)
    progress(f"{problem_name}: DOP853 reference")
    ref = reference_ode_solution(dc.ProbabilityFlowODE(PROCESS, problem.score), x_init, T_MAX, T_MIN)
    out = Table(
        f"{problem_name}, {grid} grid — RMS pathwise error vs NFE",
        [
            f"data: {problem.description}; {len(x_init)} points x_1 ~ exact law at t = 1 (seed {SEED}).",
            "cell: RMS over points of |x_solver - x_ref| at t_min; x_ref = DOP853 (rtol = atol = 1e-12), same x_1.",
            "steps = NFE // nfe_per_step; — = budget below one step.",
        ],
        ["solver", "order", "NFE/step", *map(str, NFES)],
    )
    for name in ODE:
        per = dc.get_solver(name).nfe_per_step
        cells = []
        for nfe in NFES:
            steps = nfe // per
            if not steps:
                cells.append(DASH)
                continue
            x = dc.sample(PROCESS, problem.score, x_init, method=name, steps=steps, t_min=T_MIN, grid=grid).x
            cells.append(f"{float(np.sqrt(np.mean(np.sum((x - ref) ** 2, axis=1)))):.2e}")
        out.add(name, dc.SOLVERS[name].order, per, *cells)
    return out


def main() -> None:
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        header = [
            "diffcore fast-solver benchmark: VP-SDE, exact score, t from 1 to t_min = 1e-3.",
            *machine_lines(),
            "threads pinned to 1: threadpoolctl.threadpool_limits(limits=1).",
        ]
        print("\n".join(header), end="\n\n", flush=True)
        tables = []
        for problem in ("P1", "P2"):
            for grid in ("log_snr", "uniform"):
                tables.append(table(problem, grid))
                print(tables[-1].text(), flush=True)
    footer = f"bench_fast_solvers finished in {time.perf_counter() - start:.0f} s"
    write_markdown("bench_fast_solvers", [*header, footer], tables)
    print(footer)


if __name__ == "__main__":
    main()
