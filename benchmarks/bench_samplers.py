"""Sampler benchmark: accuracy against exact answers versus NFE, and the cost of a step.

VP-SDE (``diffcore.VPSDE()``), integrated from ``t = 1`` down to ``t_min = 1e-3`` on a
uniform grid with the exact score (``diffcore.exact_score``), on P1 and P2
(``benchmarks/problems.py``), for every solver in ``diffcore.SOLVERS``.

Accuracy (fixed seeds, no timing):

* pathwise error of the ODE solvers against a DOP853 reference (rtol = atol = 1e-12) from
  the same initial points, with the measured order fitted in the asymptotic regime;
* on P2 the exact ``W_2`` between the law of the sampler's output (propagated exactly by
  ``propagate_gaussian_law``, no Monte Carlo error) and the exact marginal at ``t_min``;
* on P1 the sample ``W_2`` (POT's exact emd) against fresh exact samples, next to its
  finite-sample floor.

Speed: wall time of ``integrate`` per step and per NFE for 10 000 points, numpy float64
and torch CPU float32/float64, one thread.

Run: ``python benchmarks/bench_samplers.py`` (or ``make bench``); tables go to stdout and
to ``benchmarks/results/bench_samplers.md``; progress goes to stderr.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _report import DASH, Table, machine_lines, progress, write_markdown
from problems import PROBLEMS, PROCESS, T_MAX, T_MIN, Problem
from threadpoolctl import threadpool_limits

import diffcore as dc
from diffcore.testing import fit_order, propagate_gaussian_law, reference_ode_solution

NFES = (5, 10, 20, 50, 100, 200)
EXTRA_NFES = (400, 800)  # pathwise and exact-law tables only: they show where the orders become asymptotic
N_REF = {"P1": 200, "P2": 50}  # points integrated by the DOP853 reference
N_W2 = 2000  # sample size of the emd W2 on P1 (emd costs ~0.5 s at 2000 points, ~2-3 s at 4000)
N_FIT = 10_000  # sample size of the moment-matched (Gaussian-fit) W2 on P2
FLOOR_REPEATS = 5
N_TIME, TIME_STEPS, TIME_REPEATS = 10_000, 20, 3
SEED_INIT, SEED_TARGET, SEED_NOISE, SEED_FLOOR = 1, 2, 3, 4
ASYMPTOTIC_TOL = 0.1  # relative spread of local slopes accepted as "asymptotic"

ODE = [name for name, cls in dc.SOLVERS.items() if not cls.stochastic]
AFFINE = [name for name in dc.SOLVERS if name != "pc"]  # pc's Langevin step size depends on batch norms


# -- helpers ----------------------------------------------------------------------------------
def steps_for(name: str, nfe: int) -> int:
    """Steps a solver takes within an NFE budget; 0 means the budget is below one step."""
    return nfe // dc.get_solver(name).nfe_per_step


def dynamics_for(problem: Problem, name: str) -> dc.AbstractDynamics:
    if dc.SOLVERS[name].stochastic:
        return dc.ReverseSDE(PROCESS, problem.score)
    return dc.ProbabilityFlowODE(PROCESS, problem.score)


def run_sampler(problem: Problem, name: str, x_init: Any, steps: int, rng: Any = None) -> Any:
    return dc.sample(PROCESS, problem.score, x_init, method=name, steps=steps, t_min=T_MIN, t_max=T_MAX, rng=rng).x


def rms_distance(x: np.ndarray, y: np.ndarray) -> float:
    """``sqrt(mean_i |x_i - y_i|^2)`` over the points."""
    return float(np.sqrt(np.mean(np.sum((x - y) ** 2, axis=1))))


def gaussian_fit_w2(x: np.ndarray, law: dc.Gaussian) -> float:
    """W2 between the moment-matched Gaussian of the sample ``x`` and the Gaussian ``law``."""
    return float(dc.w2_gaussian(x.mean(axis=0), np.cov(x, rowvar=False), law.mean, law.cov))


def fmt(value: float | None, spec: str = ".2e") -> str:
    return DASH if value is None else format(value, spec)


def asymptotic_order(nfes: list[int], steps: list[int], errors: list[float]) -> tuple[float, list[int]]:
    """Fit the order on the trailing points whose local slopes agree with the finest one.

    Start from the two finest grids and walk back while the local slope
    ``log(e_i / e_{i+1}) / log(n_{i+1} / n_i)`` stays within ``ASYMPTOTIC_TOL`` (relative) of
    the finest local slope; return ``fit_order`` on those points and their NFE budgets.
    """
    slopes = [np.log(errors[i] / errors[i + 1]) / np.log(steps[i + 1] / steps[i]) for i in range(len(steps) - 1)]
    first = len(steps) - 2
    while first > 0 and abs(slopes[first - 1] - slopes[-1]) <= ASYMPTOTIC_TOL * abs(slopes[-1]):
        first -= 1
    return fit_order(steps[first:], errors[first:]), nfes[first:]


def order_cells(name: str, nfes: tuple[int, ...], errors: dict[int, float | None]) -> list[str]:
    """Declared order, fitted order, and the NFE budgets the fit used."""
    used = [n for n in nfes if errors.get(n) is not None and errors[n] > 0]
    steps = [steps_for(name, n) for n in used]
    order, fit_nfes = asymptotic_order(used, steps, [errors[n] for n in used])
    return [str(dc.SOLVERS[name].order), f"{order:.2f}", ",".join(map(str, fit_nfes))]


# -- accuracy ---------------------------------------------------------------------------------
def pathwise_table(problem: Problem) -> Table:
    """RMS distance to the DOP853 solution from the same initial points, every ODE solver and NFE."""
    n = N_REF[problem.name]
    x_init = problem.law(T_MAX).sample(n, rng=SEED_INIT)
    ode = dc.ProbabilityFlowODE(PROCESS, problem.score)
    progress(f"{problem.name}: DOP853 reference for {n} points")
    ref = reference_ode_solution(ode, x_init, T_MAX, T_MIN)
    check = rms_distance(ref, reference_ode_solution(ode, x_init, T_MAX, T_MIN, rtol=1e-10, atol=1e-10))
    nfes = NFES + EXTRA_NFES
    table = Table(
        f"{problem.name} — pathwise error of the probability-flow ODE solvers",
        [
            f"data: {problem.description}; {n} points x_1 ~ exact law at t = 1 (seed {SEED_INIT}).",
            "cell: RMS over points of |x_solver - x_ref| at t_min, x_ref = DOP853 (rtol = atol = 1e-12) from the "
            f"same x_1; reference self-check RMS|ref(1e-12) - ref(1e-10)| = {check:.1e}.",
            "columns: NFE budget (steps = NFE // nfe_per_step; — = below one step); 400 and 800 are extra "
            "budgets for the order fit only.",
            "order: declared (SOLVERS[...].order) vs fitted (fit_order, slope of log error vs log steps) on "
            f"the trailing budgets whose local slopes agree within {ASYMPTOTIC_TOL:.0%} of the finest one "
            "('fit over NFE').",
        ],
        ["solver", *map(str, nfes), "declared", "fitted", "fit over NFE"],
    )
    for name in ODE:
        progress(f"{problem.name}: pathwise {name}")
        errors: dict[int, float | None] = {}
        for nfe in nfes:
            steps = steps_for(name, nfe)
            errors[nfe] = rms_distance(run_sampler(problem, name, x_init, steps), ref) if steps else None
        table.add(name, *(fmt(errors[k]) for k in nfes), *order_cells(name, nfes, errors))
    return table


def sample_w2_table(problem: Problem) -> Table:
    """Exact emd W2 between n sampler outputs and n fresh exact samples at t_min, every solver."""
    law_end = problem.law(T_MIN)
    x_init = problem.law(T_MAX).sample(N_W2, rng=SEED_INIT)
    target = law_end.sample(N_W2, rng=SEED_TARGET)
    progress(f"{problem.name}: W2 floor at n = {N_W2}, and the exact flow of the same x_1")
    floor = dc.w2_floor(law_end, N_W2, repeats=FLOOR_REPEATS, rng=SEED_FLOOR)
    flow = reference_ode_solution(dc.ProbabilityFlowODE(PROCESS, problem.score), x_init, T_MAX, T_MIN)
    flow_w2 = float(dc.w2(flow, target))
    table = Table(
        f"{problem.name} — sample W2 (emd) to the exact marginal at t_min, n = {N_W2}",
        [
            f"data: {problem.description}.",
            f"cell: w2(sampler output from {N_W2} points x_1 ~ exact law at t = 1, {N_W2} exact samples at "
            f"t_min = {T_MIN}); the same x_1 (seed {SEED_INIT}), target (seed {SEED_TARGET}) and noise seed "
            f"({SEED_NOISE}) for every cell.",
            f"finite-sample floor w2_floor(n = {N_W2}) = {floor.mean:.3f} ± {floor.stderr:.3f} (mean ± s.e. of "
            f"{FLOOR_REPEATS} exact-vs-exact pairs): values within about ±{2 * floor.stderr:.3f} of it are at the "
            "floor and cannot rank solvers; this metric detects gross errors, not discretisation order.",
            f"exact flow row: w2 of the DOP853 solution from the same x_1 = {flow_w2:.3f}, the value every ODE row "
            "converges to (one realisation of the floor, paired with this x_1 and target); SDE rows draw fresh "
            "noise and scatter around the floor instead.",
            "columns: NFE budget (steps = NFE // nfe_per_step; — = below one step).",
        ],
        ["solver", "kind", *map(str, NFES)],
    )
    for name in dc.SOLVERS:
        progress(f"{problem.name}: sample W2 {name}")
        cells = []
        for nfe in NFES:
            steps = steps_for(name, nfe)
            if not steps:
                cells.append(DASH)
                continue
            x = run_sampler(problem, name, x_init, steps, rng=SEED_NOISE)
            cells.append(f"{float(dc.w2(x, target)):.3f}")
        table.add(name, "SDE" if dc.SOLVERS[name].stochastic else "ODE", *cells)
    table.add("exact flow of x_1", "DOP853", *[f"{flow_w2:.3f}"] * len(NFES))
    table.add("floor", "exact", *[f"{floor.mean:.3f}"] * len(NFES))
    return table


def gaussian_law_table(problem: Problem) -> Table:
    """Exact W2 between the propagated Gaussian law of the output and the exact marginal at t_min."""
    law_start, law_end = problem.law(T_MAX), problem.law(T_MIN)
    nfes = NFES + EXTRA_NFES
    # w2_gaussian forms W2^2 as a difference of traces, so it cannot resolve distances below ~sqrt(eps tr C)
    self_distance = float(dc.w2_gaussian(law_end.mean, law_end.cov, law_end.mean, law_end.cov))
    resolution = max(10 * self_distance, 1e-12)
    table = Table(
        f"{problem.name} — exact law error W2(law of the output, exact marginal at t_min)",
        [
            f"data: {problem.description}.",
            "cell: w2_gaussian between N(m, C) = propagate_gaussian_law(dynamics, solver, exact law at t = 1, grid) "
            "and the exact marginal at t_min: the sampler's own output law, no Monte Carlo error.",
            "ODE rows: probability-flow ODE; SDE rows: reverse SDE (eta = 1). pc is not affine (its Langevin step "
            "size depends on batch norms) and is measured by the Gaussian-fit table below.",
            "columns: NFE budget; 400 and 800 are extra budgets for the order fit only.",
            f"resolution: w2_gaussian(exact law, itself) = {self_distance:.1e}; "
            f"values below 10x that ({resolution:.0e}) are shown as '<res' and left out of the fit.",
            "order: declared (pathwise for ODE, weak for SDE) vs fitted as in the pathwise tables.",
        ],
        ["solver", "kind", *map(str, nfes), "declared", "fitted", "fit over NFE"],
    )
    for name in AFFINE:
        progress(f"{problem.name}: exact law {name}")
        dyn = dynamics_for(problem, name)
        errors: dict[int, float | None] = {}
        for nfe in nfes:
            steps = steps_for(name, nfe)
            if not steps:
                errors[nfe] = None
                continue
            ts = dc.time_grid(PROCESS, steps, t_min=T_MIN, t_max=T_MAX)
            m, c = propagate_gaussian_law(dyn, name, law_start.mean, law_start.cov, ts)
            errors[nfe] = float(dc.w2_gaussian(m, c, law_end.mean, law_end.cov))
        cells = [fmt(errors[k]) if errors[k] is None or errors[k] >= resolution else "<res" for k in nfes]
        resolved = {k: e for k, e in errors.items() if e is not None and e >= resolution}
        kind = "SDE" if dc.SOLVERS[name].stochastic else "ODE"
        table.add(name, kind, *cells, *order_cells(name, nfes, resolved))
    return table


def gaussian_fit_table(problem: Problem) -> Table:
    """Moment-matched W2 of n samples, for pc (not affine) and ancestral (a cross-check of the exact law)."""
    law_start, law_end = problem.law(T_MAX), problem.law(T_MIN)
    x_init = law_start.sample(N_FIT, rng=SEED_INIT)
    progress(f"{problem.name}: Gaussian-fit floor at n = {N_FIT}")
    rng = np.random.default_rng(SEED_FLOOR)
    floors = [gaussian_fit_w2(law_end.sample(N_FIT, rng=rng), law_end) for _ in range(FLOOR_REPEATS)]
    floor, floor_se = float(np.mean(floors)), float(np.std(floors, ddof=1) / np.sqrt(FLOOR_REPEATS))
    table = Table(
        f"{problem.name} — Gaussian-fit W2 of {N_FIT} samples (pc, and ancestral as a cross-check)",
        [
            "cell: w2_gaussian(sample mean and covariance of the sampler's output, exact marginal at t_min), "
            f"{N_FIT} points x_1 ~ exact law at t = 1 (seed {SEED_INIT}), noise seed {SEED_NOISE}.",
            f"floor: the same statistic for {N_FIT} exact samples = {floor:.4f} ± {floor_se:.4f} "
            f"(mean ± s.e., {FLOOR_REPEATS} repeats). An emd W2 in 64-D has a floor of order 1 at any feasible n, "
            "so the moment fit is the sample measure used here; it sees mean and covariance errors only.",
            "pc (snr = 0.16, one corrector step, NFE/step 2) keeps an O(snr^2) Langevin bias as steps grow "
            "(see its docstring); ancestral should track its exact-law row above.",
        ],
        ["solver", *map(str, NFES)],
    )
    for name in ("pc", "ancestral"):
        progress(f"{problem.name}: Gaussian-fit {name}")
        cells = []
        for nfe in NFES:
            steps = steps_for(name, nfe)
            x = run_sampler(problem, name, x_init, steps, rng=SEED_NOISE) if steps else None
            cells.append(DASH if x is None else f"{gaussian_fit_w2(x, law_end):.4f}")
        table.add(name, *cells)
    table.add("floor (exact samples)", *[f"{floor:.4f}"] * len(NFES))
    return table


def steps_table() -> Table:
    table = Table(
        "Steps taken within each NFE budget (actual NFE in brackets)",
        ["steps = NFE // nfe_per_step; the actual NFE can be below the budget."],
        ["solver", "NFE/step", *map(str, NFES)],
    )
    for name in dc.SOLVERS:
        per = dc.get_solver(name).nfe_per_step
        cells = [f"{nfe // per} ({nfe // per * per})" if nfe // per else DASH for nfe in NFES]
        table.add(name, str(per), *cells)
    return table


# -- speed ------------------------------------------------------------------------------------
def _backends() -> list[tuple[str, Callable[[np.ndarray], Any], Callable[[], Any]]]:
    """(label, convert points, fresh rng) for every CPU backend timed."""

    def torch_rng() -> torch.Generator:
        return torch.Generator().manual_seed(SEED_NOISE)

    return [
        ("numpy f64", lambda a: a, lambda: np.random.default_rng(SEED_NOISE)),
        ("torch f32", lambda a: torch.as_tensor(a, dtype=torch.float32), torch_rng),
        ("torch f64", lambda a: torch.as_tensor(a, dtype=torch.float64), torch_rng),
    ]


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _median_seconds(fn: Callable[[], Any], repeats: int = TIME_REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing_table(problem: Problem) -> Table:
    """Median wall time of ``integrate`` per step and per NFE, 10 000 points, one thread."""
    backends = _backends()
    x_np = problem.law(T_MAX).sample(N_TIME, rng=SEED_INIT)
    ts = dc.time_grid(PROCESS, TIME_STEPS, t_min=T_MIN, t_max=T_MAX)
    columns = ["solver", "NFE/step"]
    for label, _, _ in backends:
        columns += [f"{label} ms/step", f"{label} ms/NFE"]
    table = Table(
        f"{problem.name} — time per step of integrate, {N_TIME} points, 1 thread",
        [
            f"data: {problem.description}; exact score; VP-SDE on a uniform grid of {TIME_STEPS} steps.",
            f"cell: median of {TIME_REPEATS} timed runs of integrate over the {TIME_STEPS} steps (after one "
            "warm-up run), divided by the steps (ms/step) and by the NFE (ms/NFE). Stochastic solvers draw "
            "noise from a numpy Generator (numpy) or a torch.Generator (torch).",
            "score call: median time of one bare exact-score evaluation at t = 0.5 (the floor of ms/NFE).",
            f"load average when the table started (1, 5, 15 min): {_load()}; other processes on the machine "
            "inflate and scatter the times.",
        ],
        columns,
    )
    score = problem.score
    row = ["score call", "1"]
    for _, convert, _ in backends:
        x = convert(x_np)
        row += [f"{1e3 * _median_seconds(lambda x=x: score(x, 0.5)):.2f}", ""]
    table.add(*row)
    for name in dc.SOLVERS:
        progress(f"{problem.name}: timing {name}")
        dyn, per = dynamics_for(problem, name), dc.get_solver(name).nfe_per_step
        row = [name, str(per)]
        for _, convert, make_rng in backends:
            x = convert(x_np)
            seconds = _median_seconds(
                lambda x=x, dyn=dyn, name=name, make_rng=make_rng: dc.integrate(dyn, x, ts, name, make_rng())
            )
            ms = 1e3 * seconds / TIME_STEPS
            row += [f"{ms:.2f}", f"{ms / per:.2f}"]
        table.add(*row)
    return table


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    start = time.perf_counter()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        header = [
            f"diffcore {dc.__version__} sampler benchmark: VP-SDE (beta_min = {PROCESS.beta_min}, beta_max = "
            f"{PROCESS.beta_max}), t from {T_MAX} down to t_min = {T_MIN}, uniform grid, exact score.",
            *machine_lines(),
            "threads pinned to 1: threadpoolctl.threadpool_limits(limits=1) and torch.set_num_threads(1).",
            f"solvers: {', '.join(f'{n} (order {c.order})' for n, c in dc.SOLVERS.items())}.",
        ]
        print("\n".join(header), end="\n\n", flush=True)
        tables = [steps_table()]
        sections: list[Callable[[], Table]] = [
            lambda: pathwise_table(PROBLEMS["P1"]),
            lambda: pathwise_table(PROBLEMS["P2"]),
            lambda: gaussian_law_table(PROBLEMS["P2"]),
            lambda: gaussian_fit_table(PROBLEMS["P2"]),
            lambda: sample_w2_table(PROBLEMS["P1"]),
            lambda: timing_table(PROBLEMS["P1"]),
            lambda: timing_table(PROBLEMS["P2"]),
        ]
        print(tables[0].text(), flush=True)
        for section in sections:
            tables.append(section())
            print(tables[-1].text(), flush=True)
    elapsed = time.perf_counter() - start
    footer = f"bench_samplers finished in {elapsed:.0f} s"
    path = write_markdown("bench_samplers", [*header, footer], tables)
    print(footer)
    progress(f"markdown copy written to {path}")


if __name__ == "__main__":
    main()
