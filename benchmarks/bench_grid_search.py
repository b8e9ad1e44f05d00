"""Time-grid search: tune on problem A (P1), evaluate on problems B it never saw, at NFE 5 and 10.

VP-SDE, exact scores, ``t`` from 1 to ``t_min = 1e-3``.  A = P1 (200 prior points, pathwise RMS
error against DOP853).  B = a skewed 3-component anisotropic 2-D mixture (200 points) and P2
(64-D Gaussian, 50 points).  For each method the grid is tuned by
:func:`diffcore.search.optimize_grid` in both families (``free``: N-1 softmax logits;
``beta``: a 2-parameter Beta warp of the log-SNR grid) and compared on B with the standard grids
(uniform, log_snr, edm) at the same method and NFE.  A last table searches the method of each step
among ddim / dpm_solver_2 / dpm_solver_3 (costs 1/2/3) at exactly the same NFE.

Run: ``python benchmarks/bench_grid_search.py``; tables to stdout and
``benchmarks/results/bench_grid_search.md``; progress to stderr.
"""

from __future__ import annotations

import time

import numpy as np
from _report import Table, machine_lines, progress, write_markdown
from problems import PROBLEMS, PROCESS, T_MAX, T_MIN
from threadpoolctl import threadpool_limits

import diffcore as dc
from diffcore.search import optimize_grid
from diffcore.testing import reference_ode_solution

NFES = (5, 10)
METHODS = ("ddim", "dpm_solver_pp_2m")
FAMILIES = ("beta", "free")
SCHEDULE_METHODS = ("ddim", "dpm_solver_2", "dpm_solver_3")


def skewed_mixture() -> dc.GaussianMixture:
    """B1: weights 0.6/0.3/0.1, rotated anisotropic covariances (std 0.1 to 1), no symmetry."""

    def cov(s1: float, s2: float, angle: float) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        return rot @ np.diag([s1**2, s2**2]) @ rot.T

    means = np.array([[-2.0, 0.0], [3.0, 1.5], [0.5, -4.0]])
    covs = np.stack([cov(1.0, 0.15, 0.3), cov(0.25, 0.6, 1.2), cov(0.1, 0.1, 0.0)])
    return dc.GaussianMixture(np.array([0.6, 0.3, 0.1]), means, covs)


class Case:
    """A problem with its points at ``t = 1`` and their DOP853 reference at ``t_min``."""

    def __init__(self, name: str, data, n: int, seed: int) -> None:
        self.name, self.score = name, dc.exact_score(PROCESS, data)
        self.ode = dc.ProbabilityFlowODE(PROCESS, self.score)
        self.x = dc.marginal(PROCESS, data, T_MAX).sample(n, rng=seed)
        progress(f"{name}: DOP853 reference")
        self.ref = reference_ode_solution(self.ode, self.x, T_MAX, T_MIN)

    def error(self, ts, solver) -> float:
        x = dc.integrate(self.ode, self.x, ts, solver).x
        return float(np.sqrt(np.mean(np.sum((x - self.ref) ** 2, axis=1))))

    def standard(self, method: str, nfe: int) -> dict[str, float]:
        steps = nfe // dc.get_solver(method).nfe_per_step
        return {k: self.error(dc.time_grid(PROCESS, steps, t_min=T_MIN, kind=k), method) for k in dc.GRIDS}


def transfer_table(a: Case, bs: list[Case]) -> Table:
    out = Table(
        "Grid tuned on A = P1, evaluated on B — RMS pathwise error",
        [
            "tuned: optimize_grid(nfe, method, family, starts=3, rng=0) on A; best std = best of uniform/log_snr/edm.",
            "ratio = best standard error / tuned error on that problem (> 1: the tuned grid wins).",
        ],
        [
            "method",
            "NFE",
            "family",
            "tune s",
            "evals",
            "A best std",
            "A tuned",
            "A ratio",
            *(f"{b.name} {c}" for b in bs for c in ("best std", "tuned", "ratio")),
        ],
    )
    for method in METHODS:
        for nfe in NFES:
            for family in FAMILIES:
                progress(f"tuning {method} NFE {nfe} ({family})")
                res = optimize_grid(
                    PROCESS, a.score, a.x, nfe=nfe, methods=method, family=family, reference=a.ref, rng=0
                )
                a_std = min(a.standard(method, nfe).values())
                cells = []
                for b in bs:
                    b_std, b_tuned = min(b.standard(method, nfe).values()), b.error(res.ts, res.solver)
                    cells += [f"{b_std:.3e}", f"{b_tuned:.3e}", f"{b_std / b_tuned:.2f}"]
                out.add(
                    method,
                    nfe,
                    family,
                    f"{res.seconds:.1f}",
                    res.evaluations,
                    f"{a_std:.3e}",
                    f"{res.error:.3e}",
                    f"{a_std / res.error:.2f}",
                    *cells,
                )
    return out


def schedule_table(a: Case, bs: list[Case]) -> Table:
    out = Table(
        "Per-step method search (ddim / dpm_solver_2 / dpm_solver_3, costs 1/2/3) vs ddim alone, tuned on P1",
        [
            "schedule: all method sequences of total cost NFE screened on the log-SNR grid; best 3 grids tuned.",
            "ddim tuned: the ddim grid tuned alone (same family). Errors on A and on B with the tuned grid/schedule.",
        ],
        ["NFE", "family", "schedule", "tune s", *(f"{c.name} {k}" for c in (a, *bs) for k in ("ddim tuned", "sched"))],
    )
    for nfe in NFES:
        for family in FAMILIES:
            progress(f"schedule search NFE {nfe} ({family})")
            single = optimize_grid(
                PROCESS, a.score, a.x, nfe=nfe, methods="ddim", family=family, reference=a.ref, rng=0
            )
            sched = optimize_grid(
                PROCESS,
                a.score,
                a.x,
                nfe=nfe,
                methods=SCHEDULE_METHODS,
                family=family,
                reference=a.ref,
                rng=0,
                starts=2,
            )
            cells = []
            for c in (a, *bs):
                cells += [f"{c.error(single.ts, single.solver):.3e}", f"{c.error(sched.ts, sched.solver):.3e}"]
            short = "/".join({"ddim": "1", "dpm_solver_2": "2", "dpm_solver_3": "3"}[m] for m in sched.methods)
            out.add(nfe, family, short, f"{sched.seconds:.1f}", *cells)
    return out


def main() -> None:
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        header = [
            "diffcore grid-search benchmark: VP-SDE, exact score, t from 1 to t_min = 1e-3.",
            *machine_lines(),
            "threads pinned to 1: threadpoolctl.threadpool_limits(limits=1).",
        ]
        print("\n".join(header), end="\n\n", flush=True)
        a = Case("P1", PROBLEMS["P1"].data, 200, 1)
        bs = [Case("skewed", skewed_mixture(), 200, 2), Case("P2", PROBLEMS["P2"].data, 50, 2)]
        tables = [transfer_table(a, bs)]
        print(tables[-1].text(), flush=True)
        tables.append(schedule_table(a, bs))
        print(tables[-1].text(), flush=True)
    footer = f"bench_grid_search finished in {time.perf_counter() - start:.0f} s"
    write_markdown("bench_grid_search", [*header, footer], tables)
    print(footer)


if __name__ == "__main__":
    main()
