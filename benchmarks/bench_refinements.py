"""Sampler refinements: EVODiff against DPM-Solver++(2M) per NFE, and LML against plain Langevin per step.

1. EVODiff (``evodiff``, variance-optimal eta; ``evodiff`` with ``eta=0`` and ``eta=1`` =
   DPM-Solver++(2M) after the warm-up) against ``dpm_solver_pp_2m`` and ``ddim``: RMS pathwise
   error against DOP853 at NFE 5, 6, 8, 10, 15, 20, VP-SDE, exact score, log-SNR grid, P1 and P2.
   EVODiff's step is not affine in ``x`` (eta* is a ratio of inner products), so its exact output
   law cannot be propagated; the pathwise error is the measure for every method.
2. The Levenberg–Marquardt–Langevin corrector against plain Langevin at a fixed noise level, one
   score evaluation per move (equal NFE): W2 to ``p_t`` after k moves.  Gaussian target (the P2 law
   at t = 0.05, 64-D, condition number ~ 230): exact W2 by propagating the Gaussian law through the
   affine moves (exact Hessian); the rank-one estimate is not affine, its W2 is the Gaussian W2
   of the empirical moments of 4000 chains (floor: the same for exact samples).  Mixture target (P1
   at t = 0.05): W2 between 1000 chains and 1000 exact samples (POT), with its floor.

Run: ``python benchmarks/bench_refinements.py``; tables to stdout and
``benchmarks/results/bench_refinements.md``; progress to stderr.
"""

from __future__ import annotations

import time

import numpy as np
from _report import Table, machine_lines, progress, write_markdown
from problems import PROBLEMS, PROCESS, T_MAX, T_MIN
from threadpoolctl import threadpool_limits

import diffcore as dc
from diffcore.samplers import EVODiff, exact_log_density_hessian, lml_langevin_step
from diffcore.testing import reference_ode_solution

NFES = (5, 6, 8, 10, 15, 20)
N_POINTS = {"P1": 200, "P2": 50}
SEED = 1
METHODS = {
    "ddim": "ddim",
    "dpm_solver_pp_2m": "dpm_solver_pp_2m",
    "evodiff (eta*)": EVODiff(),
    "evodiff (eta=0)": EVODiff(eta=0.0),
    "evodiff (eta=1)": EVODiff(eta=1.0),
}
T_FIX = 0.05
MOVES = (1, 2, 5, 10, 20, 50)
PLAIN_FRACTIONS = (0.25, 0.5, 1.0, 1.9)  # plain step h = f * (smallest variance of p_t)
LML = {"eps": 0.5, "lam": 0.1}


def evodiff_table(name: str) -> Table:
    problem = PROBLEMS[name]
    x_init = problem.law(T_MAX).sample(N_POINTS[name], rng=SEED)
    progress(f"{name}: DOP853 reference")
    ref = reference_ode_solution(dc.ProbabilityFlowODE(PROCESS, problem.score), x_init, T_MAX, T_MIN)
    out = Table(
        f"{name}, log-SNR grid — RMS pathwise error vs NFE (one evaluation per step for all)",
        [
            f"data: {problem.description}; {len(x_init)} points x_1 ~ exact law at t = 1 (seed {SEED}).",
            "cell: RMS over points of |x - x_ref| at t_min = 1e-3; x_ref = DOP853 (rtol = atol = 1e-12).",
        ],
        ["method", *map(str, NFES)],
    )
    for label, method in METHODS.items():
        cells = []
        for nfe in NFES:
            x = dc.sample(PROCESS, problem.score, x_init, method=method, steps=nfe, t_min=T_MIN, grid="log_snr").x
            cells.append(f"{float(np.sqrt(np.mean(np.sum((x - ref) ** 2, axis=1)))):.2e}")
        out.add(label, *cells)
    return out


def _affine(step, d):
    zero = np.zeros((1, d))
    c = step(zero, zero)[0]
    return (step(np.eye(d), np.zeros((d, d))) - c).T, (step(np.zeros((d, d)), np.eye(d)) - c).T, c


def gaussian_table() -> Table:
    law = PROBLEMS["P2"].law(T_FIX)
    mean, cov = np.asarray(law.mean), np.asarray(law.cov)
    d, prec = len(mean), np.linalg.inv(cov)
    s_min = float(np.linalg.eigvalsh(cov)[0])
    score = lambda x: -(x - mean) @ prec  # noqa: E731
    hess = np.broadcast_to(-prec, (d, d, d))

    def exact_w2(step):
        a, b, c = _affine(step, d)
        m, s, row = np.zeros(d), np.eye(d), []
        for k in range(1, MOVES[-1] + 1):
            m, s = a @ m + c, a @ s @ a.T + b @ b.T
            if k in MOVES:
                row.append(dc.w2_gaussian(m, s, mean, cov))
        return row

    out = Table(
        f"Gaussian target p_t, P2 at t = {T_FIX} (64-D) — W2 after k moves from N(0, I), one score per move",
        [
            "plain Langevin: x + h s + sqrt(2h) z, h = f * (smallest variance of p_t); exact W2 (law propagation).",
            f"LML: eps = {LML['eps']}, lambda = {LML['lam']}; exact Hessian: exact W2; rank-one H = s s^T: "
            "Gaussian W2 of the moments of 4000 chains (floor in the last row).",
        ],
        ["method", *map(str, MOVES)],
    )
    for f in PLAIN_FRACTIONS:
        h = f * s_min
        out.add(
            f"plain, h = {f} s_min",
            *(f"{v:.3f}" for v in exact_w2(lambda x, z, h=h: x + h * score(x) + np.sqrt(2 * h) * z)),
        )
    for lam, tag in ((LML["lam"], str(LML["lam"])), (1 / s_min, "1/s_min")):

        def lml(x, z, lam=lam):
            return lml_langevin_step(x, score(x), z, step_size=LML["eps"], damping=lam, hessian=hess[: len(x)])

        out.add(f"LML exact H, lambda = {tag}", *(f"{v:.3f}" for v in exact_w2(lml)))
        rng = np.random.default_rng(SEED)
        x, row = rng.standard_normal((4000, d)), []
        for k in range(1, MOVES[-1] + 1):
            x = lml_langevin_step(x, score(x), rng.standard_normal(x.shape), step_size=LML["eps"], damping=lam)
            if k in MOVES:
                row.append(dc.w2_gaussian(x.mean(0), np.cov(x.T), mean, cov))
        out.add(f"LML s s^T, lambda = {tag}", *(f"{v:.3f}" for v in row))
    exact = law.sample(4000, rng=SEED + 1)
    floor = dc.w2_gaussian(exact.mean(0), np.cov(exact.T), mean, cov)
    out.add("floor (exact samples)", *([f"{floor:.3f}"] * len(MOVES)))
    return out


def mixture_table() -> Table:
    problem = PROBLEMS["P1"]
    law, n = problem.law(T_FIX), 1000
    hess = exact_log_density_hessian(PROCESS, problem.data)
    score = lambda x: problem.score(x, T_FIX)  # noqa: E731
    start = problem.law(0.3).sample(n, rng=SEED)  # a blurred law: the predictor's error to correct
    target = law.sample(n, rng=SEED + 2)
    s_min = 0.3**2 * float(PROCESS.alpha(T_FIX)) ** 2 + float(PROCESS.sigma(T_FIX)) ** 2
    out = Table(
        f"Mixture target p_t, P1 at t = {T_FIX} — W2 (POT, {n} vs {n} points) after k moves from the law at t = 0.3",
        [
            "plain Langevin: h = f * (component variance s_min of p_t); LML: eps = 0.5;"
            " lambda = 1/s_min ~ plain h = 0.5 s_min.",
            "floor: W2 between two independent exact samples of p_t.",
        ],
        ["method", *map(str, MOVES)],
    )
    movers = {f"plain, h = {f} s_min": (None, 0.0) for f in PLAIN_FRACTIONS}
    for lam, tag in ((LML["lam"], str(LML["lam"])), (1 / s_min, "1/s_min")):
        movers[f"LML exact H, lambda = {tag}"] = ("exact", lam)
        movers[f"LML s s^T, lambda = {tag}"] = ("rank", lam)
    for label, (kind, lam) in movers.items():
        progress(f"P1 corrector: {label}")
        rng = np.random.default_rng(SEED + 3)
        x, row = start.copy(), []
        for k in range(1, MOVES[-1] + 1):
            z = rng.standard_normal(x.shape)
            if kind is None:
                h = float(label.split("= ")[1].split(" ")[0]) * s_min
                x = x + h * score(x) + np.sqrt(2 * h) * z
            else:
                hh = hess(x, T_FIX) if kind == "exact" else None
                x = lml_langevin_step(x, score(x), z, step_size=LML["eps"], damping=lam, hessian=hh)
            if k in MOVES:
                row.append(dc.w2(x, target))
        out.add(label, *(f"{v:.3f}" for v in row))
    floor = dc.w2(law.sample(n, rng=SEED + 4), target)
    out.add("floor (exact samples)", *([f"{floor:.3f}"] * len(MOVES)))
    return out


def main() -> None:
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        header = [
            "diffcore sampler-refinement benchmark: VP-SDE, exact score.",
            *machine_lines(),
            "threads pinned to 1: threadpoolctl.threadpool_limits(limits=1).",
        ]
        print("\n".join(header), end="\n\n", flush=True)
        tables = []
        for make in (lambda: evodiff_table("P1"), lambda: evodiff_table("P2"), gaussian_table, mixture_table):
            tables.append(make())
            print(tables[-1].text(), flush=True)
    footer = f"bench_refinements finished in {time.perf_counter() - start:.0f} s"
    write_markdown("bench_refinements", [*header, footer], tables)
    print(footer)


if __name__ == "__main__":
    main()
