"""Schedule search: tune on a training family, report on held-out problems; and the older P1-tuned tables.

Default run (``python benchmarks/bench_grid_search.py``): a training family of 6 random Gaussian
mixtures in 2-16 D (:func:`diffcore.search.training_family`, seed 0, VP) is the only thing tuned on.
For each method (dpm_solver_pp_2m, unipc_3, deis_3, ipndm when registered) at NFE 5 and 10 it
compares the method's declared default grid, the GITS grid (:func:`diffcore.search.gits_grid_family`,
DDIM local-error DP), the Align-Your-Steps-style grid (:func:`diffcore.search.optimize_schedule`) and
the joint search (per-step method among the method / dpm_solver_2 and the score-scale
coefficients, with the grid); NFE 20 uses the NFE-10 schedules carried by log-linear interpolation.
Errors: geometric mean over fresh draws of the training family, and on P1, P2 (VP), the 32-D
unequal-weight mixture and P1 under the VE process (benchmarks/problems.held_out_problems).

``--p1``: also the older tables below (tuned on P1 alone).

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

import math
import sys
import time

import numpy as np
from _report import Table, machine_lines, progress, write_markdown
from problems import PROBLEMS, PROCESS, T_MAX, T_MIN
from threadpoolctl import threadpool_limits

import diffcore as dc
from diffcore.search import gits_grid_family, optimize_grid, optimize_schedule, training_family
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


FAMILY_METHODS = tuple(m for m in ("dpm_solver_pp_2m", "unipc_3", "deis_3", "ipndm") if m in dc.SOLVERS)
FAMILY_NFES = (5, 10)
JOINT_EXTRA = ("dpm_solver_2",)
N_TUNE = 16  # tuning points per training problem


class Eval:
    """A problem to report on: exact draws at ``T_MAX``, their DOP853 reference at ``T_MIN``."""

    def __init__(self, name: str, problem, n: int, seed: int) -> None:
        self.name, self.problem, self.process = name, problem, problem.process
        self.model = problem.flow_model()
        self.x = np.asarray(problem.sample_marginal(n, T_MAX, rng=seed), dtype=np.float64)
        self.ref = problem.reference(self.x, T_MAX, T_MIN)

    def error(self, ts, solver, model=None) -> float:
        ode = dc.ProbabilityFlowODE(self.process, self.model if model is None else model)
        try:
            x = dc.integrate(ode, self.x, ts, solver).x
        except (FloatingPointError, ValueError):
            return math.inf
        err = float(np.sqrt(np.mean(np.sum((x - self.ref) ** 2, axis=1))))
        return err if math.isfinite(err) else math.inf


def _held_out() -> tuple[dict, str]:
    try:
        from problems import held_out_problems

        return held_out_problems(), "benchmarks/problems.held_out_problems()"
    except ImportError:  # not there yet: our own two
        from diffcore.testing import Problem, anisotropic_mixture, circle_mixture

        return {
            "mix32": Problem("mix32", PROCESS, data=anisotropic_mixture(32, 4, seed=7)),
            "VE-P1": Problem("VE-P1", dc.VESDE(), data=circle_mixture()),
        }, "built in this benchmark (benchmarks/problems.held_out_problems missing)"


def family_tables() -> tuple[list[Table], list[str]]:
    family = training_family(6, rng=0)
    progress(f"training family dims {[p.dim for p in family]}")
    train = [Eval(p.name, p, 32, 100 + i) for i, p in enumerate(family)]
    held, source = _held_out()
    evals = [
        Eval("P1", PROBLEMS["P1"], 200, 2),
        Eval("P2", PROBLEMS["P2"], 50, 2),
        *(Eval(k, p, 100, 3) for k, p in held.items()),
    ]
    notes = [
        f"training family: 6 mixtures, dims {[p.dim for p in family]}, {N_TUNE} tuning points each (seed 0).",
        f"held-out problems: P1, P2 (VP), {', '.join(held)} -- {source}.",
    ]
    cols = ["method", "NFE", "grid", "search s", "evals", "model NFE", "train gmean", *(e.name for e in evals)]
    table = Table(
        "Schedules tuned on the training family only; RMS pathwise error vs DOP853 (t 1 -> 1e-3)",
        [
            "default: the method's declared grid; gits: gits_grid_family(steps=NFE, ddim cost, 40 candidates, 32 pts);",
            "ays: optimize_schedule(methods=m); joint: methods=(m, dpm_solver_2) + score_scale, starts=1, top_k=1;",
            "NFE 20: the NFE-10 ays/joint fractions interpolated log-linearly (AYS); gits re-solved at 20 steps.",
            "train gmean: exp(mean log error) over fresh draws (32/problem) of the 6 training problems.",
            "model NFE: batched model calls the search spent (DOP853 references excluded, listed in the notes).",
        ],
        cols,
    )
    gits = {}
    for nfe in (*FAMILY_NFES, 20):
        progress(f"GITS NFE {nfe}")
        gits[nfe] = gits_grid_family(family, nfe, method="ddim", candidates=40, n_calib=32, rng=0)
    summary = {"ays": [0, 0], "joint": [0, 0], "gits": [0, 0]}
    ref_calls = 0
    for method in FAMILY_METHODS:
        tuned = {}
        for nfe in (*FAMILY_NFES, 20):
            default = dc.time_grid  # the method's declared grid, at nfe steps
            kind = dc.get_solver(method).grid
            rows = {"default": (None, None, None)}
            rows["gits"] = (gits[nfe], None, None)
            if nfe in FAMILY_NFES:
                progress(f"{method} NFE {nfe}: ays")
                ays = optimize_schedule(family, nfe=nfe, methods=method, n_points=N_TUNE, rng=0)
                progress(f"{method} NFE {nfe}: joint")
                joint = optimize_schedule(
                    family,
                    nfe=nfe,
                    methods=(method, *JOINT_EXTRA),
                    coefficients="score_scale",
                    n_points=N_TUNE,
                    starts=1,
                    top_k=1,
                    rng=0,
                )
                tuned[nfe] = (ays, joint)
                ref_calls += ays.reference_evaluations + joint.reference_evaluations
            else:
                ays, joint = tuned[10]
            rows["ays"], rows["joint"] = (ays, None, None), (joint, None, None)
            for name, (res, _, _) in rows.items():
                errs = []
                for e in (*train, *evals):
                    if name == "default":
                        ts, solver, model = default(e.process, nfe, t_min=T_MIN, kind=kind), method, None
                    elif name == "gits":
                        ts, solver, model = res.grid(e.process, t_min=T_MIN, t_max=T_MAX), method, None
                    else:
                        steps = None if nfe in FAMILY_NFES else nfe
                        if steps is not None and len(set(res.methods)) > 1:
                            errs.append(math.nan)  # a per-step schedule has no other step count
                            continue
                        ts = res.grid(e.process, t_min=T_MIN, t_max=T_MAX, steps=steps)
                        solver = res.solver if steps is None else dc.get_solver(res.methods[0])
                        model = res.model(e.process, e.model, t_min=T_MIN, t_max=T_MAX)
                    errs.append(e.error(ts, solver, model))
                tr = errs[: len(train)]
                gmean = math.exp(np.mean(np.log(tr))) if all(math.isfinite(v) for v in tr) else math.nan
                held_errs = errs[len(train) :]
                if name == "default":
                    base = held_errs
                elif not any(math.isnan(v) for v in held_errs):
                    summary[name][0] += sum(h < b for h, b in zip(held_errs, base, strict=True))
                    summary[name][1] += len(held_errs)
                if name == "default":
                    search = ("-", "-", "-")
                elif name == "gits":
                    search = (f"{res.seconds:.1f}", "-", res.model_evaluations)
                elif nfe not in FAMILY_NFES:
                    search = ("interp.", "-", "-")
                else:
                    search = (f"{res.seconds:.1f}", res.evaluations, res.model_evaluations)
                label = name
                if name == "joint" and nfe in FAMILY_NFES:
                    short = "".join({method: "m", "dpm_solver_2": "2", "dpm_solver_3": "3"}[m] for m in res.methods)
                    a, b = res.coefficients
                    label = f"joint {short} a={a:+.3f} b={b:+.3f}"
                if math.isnan(held_errs[0]):
                    table.add(method, nfe, label, *search, "per-step: -", *("-" for _ in held_errs))
                    continue
                table.add(method, nfe, label, *search, f"{gmean:.3e}", *(f"{v:.3e}" for v in held_errs))
    notes.append(f"DOP853 references of the searches: {ref_calls} batched model calls.")
    for name, (won, total) in summary.items():
        notes.append(f"transfer: {name} beats the default grid on {won} of {total} (method, NFE, held-out) entries.")
    return [table], notes


def main() -> None:
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        header = [
            "diffcore grid-search benchmark: VP-SDE, exact score, t from 1 to t_min = 1e-3.",
            *machine_lines(),
            "threads pinned to 1: threadpoolctl.threadpool_limits(limits=1).",
        ]
        print("\n".join(header), end="\n\n", flush=True)
        tables, notes = family_tables()
        for t in tables:
            print(t.text(), flush=True)
        print("\n".join(notes), flush=True)
        header += notes
        if "--p1" in sys.argv:
            a = Case("P1", PROBLEMS["P1"].data, 200, 1)
            bs = [Case("skewed", skewed_mixture(), 200, 2), Case("P2", PROBLEMS["P2"].data, 50, 2)]
            tables.append(transfer_table(a, bs))
            print(tables[-1].text(), flush=True)
            tables.append(schedule_table(a, bs))
            print(tables[-1].text(), flush=True)
    footer = f"bench_grid_search finished in {time.perf_counter() - start:.0f} s"
    write_markdown("bench_grid_search", [*header, footer], tables)
    print(footer)


if __name__ == "__main__":
    main()
