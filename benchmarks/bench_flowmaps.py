"""Few-step generation on P1: every flow-map method of diffcore against the fast ODE solvers at 1, 2, 4 NFE.

Each student is trained on the CPU (one torch thread) with its loss from ``diffcore.training``
and the exact teacher of the laboratory where the method has one (the exact score of P1 under
the VP-SDE; the exact denoiser for progressive distillation), so the table isolates the
distillation error.  Columns: ``W2`` of 1-, 2- and 4-step generation to as many exact samples
(``n = 2000``; the floor, ``W2`` between two exact samples, is in the header), the map error
``E|Phi_theta(x) - Phi(x)|`` from ``t = 1`` to ``t_min`` on 500 prior points against the exact
(adaptive reference) map, and the training time.  Where a student is worse than DPM-Solver++(2M)
at equal NFE, the table shows it.

Run: ``python benchmarks/bench_flowmaps.py [--steps 1500]`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _report import DASH, Table, machine_lines, progress, write_markdown
from problems import circle_mixture

import diffcore as dc
from diffcore.flowmaps import consistency_sample, exact_flow_map, flow_map_sample, to_flow_map
from diffcore.training import (
    MLPField,
    MLPMap,
    boot_loss,
    consistency_distillation_loss,
    consistency_training_loss,
    eulerian_distillation_loss,
    fit,
    meanflow_loss,
    progressive_distillation_loss,
    solver_teacher,
)

N, T_MIN, NFES = 2000, 2e-3, (1, 2, 4)
VP = dc.VPSDE()


def _numpy_map(phi):
    def call(x, t, s):
        with torch.no_grad():
            return phi(torch.as_tensor(x, dtype=torch.float32), t, s).double().numpy()

    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps per student")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = circle_mixture()
    score = dc.exact_score(VP, data)
    target_law = dc.marginal(VP, data, T_MIN)
    exact = target_law.sample(N, rng=1)
    floor = dc.w2_floor(target_law, N, repeats=3, rng=2)
    x1 = VP.prior_sample((N, 2), rng=3)
    probe = x1[:500]
    true_map = exact_flow_map(VP, data, 1.0, T_MIN, rtol=1e-9, atol=1e-9)(probe)
    header = [
        f"P1 (2-D, 8 Gaussians on a circle) under the VP-SDE, t_min = {T_MIN}; n = {N} samples; "
        f"W2 floor {floor.mean:.3f} ± {floor.stderr:.3f}.",
        f"Students: MLPField / MLPMap (width 128, depth 3, float32), Adam lr 1e-3 cosine, {args.steps} "
        "steps of 256 points, one torch thread.",
        *machine_lines(),
    ]
    print("\n".join(header), end="\n\n", flush=True)
    table = Table(
        "W2 to exact samples at 1 / 2 / 4 network evaluations",
        [
            "consistency students sample by denoise/re-noise (Song et al. 2023, alg. 1) at t = 1, 0.5, 0.25, 0.12;",
            "MeanFlow chains 1/2/4 jumps of its average velocity on the linear interpolant N(0, I) -> P1 "
            "(compared with P1 itself); progressive students run DDIM on the halved grids;",
            "map error: mean |Phi_theta(x) - Phi(x)| from t = 1 to t_min (consistency, BOOT) on 500 prior points;",
            "fast solvers: the exact score, exactly k evaluations (nfe=k), the best of the default, uniform and "
            "EDM grids.",
        ],
        ["method", "W2 @1", "W2 @2", "W2 @4", "map err", "train s"],
    )

    def w2(x, ref=exact):
        return f"{dc.w2(np.asarray(x, dtype=np.float64), ref):.3f}"

    progress("fast solvers")
    best = {k: (np.inf, "") for k in NFES}
    for method in ("ddim", "dpm_solver_pp_2m", "deis_2", "unipc_2", "ipndm"):
        cells = []
        for k in NFES:
            values = []
            for grid in (None, "uniform", "edm"):  # None: the solver's own default grid
                try:
                    x = dc.sample(VP, score, x1, method=method, nfe=k, t_min=T_MIN, grid=grid).x
                except ValueError:  # a multistep or two-stage method cannot spend exactly k evaluations
                    continue
                values.append((dc.w2(x, exact), grid or "default"))
            if not values:
                cells.append(DASH)
                continue
            value, grid = min(values)
            cells.append(f"{value:.3f}")
            if value < best[k][0]:
                best[k] = (value, f"{method}/{grid}")
        table.add(f"{method} (exact score; best grid)", *cells, DASH, DASH)
    table.add("best fast solver", *(f"{best[k][0]:.3f}" for k in NFES), DASH, DASH)
    winners = ", ".join(f"{k} NFE: {best[k][1]}" for k in NFES)
    re_noise = {1: [1.0], 2: [1.0, 0.5], 4: [1.0, 0.5, 0.25, 0.12]}

    def consistency_row(name, loss):
        progress(name)
        net = MLPField(2, width=128, depth=3, rng=0)
        phi = to_flow_map("consistency", net, VP, t_min=T_MIN, sigma_data=1.0)
        start = time.perf_counter()
        fit(
            net,
            lambda m, b, rng=None: loss(phi, b, rng),
            data,
            steps=args.steps,
            batch_size=256,
            lr=1e-3,
            schedule="cosine",
            rng=0,
            progress=False,
        )
        seconds = time.perf_counter() - start
        call = _numpy_map(phi)
        cells = [w2(consistency_sample(call, VP, x1, re_noise[k], t_min=T_MIN, rng=4).x) for k in NFES]
        err = np.mean(np.linalg.norm(call(probe, 1.0, T_MIN) - true_map, axis=1))
        table.add(name, *cells, f"{err:.3f}", f"{seconds:.0f}")

    heun = solver_teacher(VP, score, "heun")
    consistency_row(
        "CD (Heun teacher, 18 steps)",
        lambda phi, b, rng: consistency_distillation_loss(phi, b, VP, heun, rng, t_min=T_MIN),
    )
    consistency_row(
        "CD, skip 3 (LCM's skipping step)",
        lambda phi, b, rng: consistency_distillation_loss(phi, b, VP, heun, rng, t_min=T_MIN, skip=3),
    )
    consistency_row(
        "CT (no teacher, 18 steps)", lambda phi, b, rng: consistency_training_loss(phi, b, VP, rng, t_min=T_MIN)
    )
    velocity = dc.ProbabilityFlowODE(VP, score).drift
    consistency_row(
        "continuous CD (Eulerian residual)",
        lambda phi, b, rng: eulerian_distillation_loss(phi, b, VP, velocity, rng, s=T_MIN, t_min=T_MIN),
    )

    progress("MeanFlow")
    path = dc.OneSidedInterpolant("linear")
    net = MLPMap(2, width=128, depth=3, rng=0)
    start = time.perf_counter()
    fit(
        net,
        lambda m, b, rng=None: meanflow_loss(m, b, path, rng, t_max=0.999),
        data,
        steps=args.steps,
        batch_size=256,
        lr=1e-3,
        schedule="cosine",
        rng=0,
        progress=False,
    )
    seconds = time.perf_counter() - start
    call = _numpy_map(to_flow_map("mean_velocity", net))
    z = np.random.default_rng(3).normal(size=(N, 2))
    p1 = data.sample(N, rng=1)
    cells = [w2(flow_map_sample(call, z, np.linspace(0.0, 1.0, k + 1)).x, p1) for k in NFES]
    table.add("MeanFlow (linear interpolant)", *cells, DASH, f"{seconds:.0f}")

    progress("progressive distillation")
    teacher = dc.exact_denoiser(VP, data)
    start, students, n_steps = time.perf_counter(), {}, 8
    while n_steps >= 1:
        student = MLPField(2, width=128, depth=3, rng=n_steps)
        fit(
            student,
            lambda m, b, rng=None, tch=teacher, k=n_steps: progressive_distillation_loss(
                m, b, VP, tch, rng, steps=k, t_min=T_MIN
            ),
            data,
            steps=args.steps // 3,
            batch_size=256,
            lr=1e-3,
            schedule="cosine",
            rng=0,
            progress=False,
        )
        students[n_steps] = student
        teacher = _torch_denoiser(student)
        n_steps //= 2
    seconds = time.perf_counter() - start
    cells = []
    for k in NFES:
        den = students[k]
        score_k = dc.reparametrize(lambda x, t, d=den: d(x, t), VP, source="x0", target="score")
        cells.append(w2(dc.sample(VP, score_k, x1, method="ddim", steps=k, t_min=T_MIN, grid="uniform").x))
    table.add("progressive (16 -> 8 -> 4 -> 2 -> 1 DDIM steps)", *cells, DASH, f"{seconds:.0f}")

    progress("BOOT")
    net = MLPField(2, width=128, depth=3, rng=0)
    ddim = solver_teacher(VP, score, "ddim")
    start = time.perf_counter()
    noise = dc.Gaussian(np.zeros(2), np.eye(2))
    fit(
        net,
        lambda m, e, rng=None: boot_loss(m, e, VP, ddim, rng, t_min=T_MIN),
        noise,
        steps=args.steps,
        batch_size=256,
        lr=1e-3,
        schedule="cosine",
        rng=0,
        progress=False,
    )
    seconds = time.perf_counter() - start
    with torch.no_grad():
        g = net(torch.as_tensor(x1, dtype=torch.float32), T_MIN).double().numpy()
    one_step = VP.alpha(T_MIN) * g + VP.sigma(T_MIN) * x1
    err = np.mean(np.linalg.norm(one_step[:500] - true_map, axis=1))
    table.add("BOOT (data-free, DDIM teacher)", w2(one_step), DASH, DASH, f"{err:.3f}", f"{seconds:.0f}")

    progress("teacher error: CD from a wrong score")
    wrong = dc.exact_score(VP, _shifted(data, 0.3))  # the exact score of P1 moved by 0.3: a teacher 0.3 off
    consistency_row(
        "CD, teacher of a shifted P1 (mean +0.3)",
        lambda phi, b, rng: consistency_distillation_loss(
            phi, b, VP, solver_teacher(VP, wrong, "heun"), rng, t_min=T_MIN
        ),
    )
    table.notes.append(f"best fast solver (method/grid): {winners}.")
    tables = [table, _gaussian_table(args.steps)]
    for t in tables:
        print(t.text())
    print(f"written to {write_markdown('flowmaps', header, tables)}")


def _shifted(mixture, shift):
    return dc.GaussianMixture(mixture.weights, np.asarray(mixture.means) + shift, mixture.covs)


def _gaussian_table(steps: int) -> Table:
    """P2 (64-D Gaussian): every map is affine, so the map error is exact at any (t, s)."""
    from diffcore.testing import Problem

    data = Problem("P2").data
    d = data.dim
    law = dc.marginal(VP, data, T_MIN)
    table = Table(
        "P2 (64-D Gaussian): map error over (t, s) and Gaussian W2 of the samples",
        [
            "map error: mean |Phi_theta(x) - Phi(x)| / mean |Phi(x)| on 500 points of p_t, against the affine "
            "closed form;",
            "W2: between Gaussians with the samples' mean and covariance (n = 4000) and the exact law; floor: the same "
            "for exact samples.",
        ],
        ["method", "t -> s", "rel. map err", "W2 (moments)", "floor", "train s"],
    )
    n = 4000
    floor = _moment_w2(law.sample(n, rng=9), law)
    x1 = VP.prior_sample((n, d), rng=8)
    progress("P2: CD")
    score = dc.exact_score(VP, data)
    net = MLPField(d, width=256, depth=3, rng=0)
    phi = to_flow_map("consistency", net, VP, t_min=T_MIN, sigma_data=1.0)
    start = time.perf_counter()
    heun = solver_teacher(VP, score, "heun")
    fit(
        net,
        lambda m, b, rng=None: consistency_distillation_loss(phi, b, VP, heun, rng, t_min=T_MIN),
        data,
        steps=steps,
        batch_size=256,
        lr=1e-3,
        schedule="cosine",
        rng=0,
        progress=False,
    )
    seconds = time.perf_counter() - start
    call = _numpy_map(phi)
    for t in (1.0, 0.5, 0.25):
        x = dc.marginal(VP, data, t).sample(500, rng=10)
        exact_map = exact_flow_map(VP, data, t, T_MIN)(x)
        err = np.mean(np.linalg.norm(call(x, t, T_MIN) - exact_map, axis=1)) / np.mean(
            np.linalg.norm(exact_map, axis=1)
        )
        w2 = _moment_w2(call(x1, 1.0, T_MIN), law) if t == 1.0 else None
        table.add(
            "CD (Heun teacher)",
            f"{t} -> {T_MIN}",
            f"{err:.3f}",
            f"{w2:.3f}" if w2 else DASH,
            f"{floor:.3f}" if w2 else DASH,
            f"{seconds:.0f}" if t == 1.0 else DASH,
        )
    progress("P2: MeanFlow")
    path = dc.OneSidedInterpolant("linear")
    ends = (dc.Gaussian(np.zeros(d), np.eye(d)), data)
    net = MLPMap(d, width=256, depth=3, rng=0)
    start = time.perf_counter()
    fit(
        net,
        lambda m, b, rng=None: meanflow_loss(m, b, path, rng, t_max=0.999),
        data,
        steps=steps,
        batch_size=256,
        lr=1e-3,
        schedule="cosine",
        rng=0,
        progress=False,
    )
    seconds = time.perf_counter() - start
    call = _numpy_map(to_flow_map("mean_velocity", net))
    fields = dc.interpolant_fields(path, *ends)
    for t, s in ((0.0, 1.0), (0.0, 0.5), (0.5, 1.0)):
        x = fields.marginal(t).sample(500, rng=11)
        exact_map = exact_flow_map(path, ends, t, s)(x)
        err = np.mean(np.linalg.norm(call(x, t, s) - exact_map, axis=1)) / np.mean(np.linalg.norm(exact_map, axis=1))
        w2 = (
            _moment_w2(call(np.random.default_rng(12).normal(size=(n, d)), 0.0, 1.0), data)
            if (t, s) == (0.0, 1.0)
            else None
        )
        table.add(
            "MeanFlow",
            f"{t} -> {s}",
            f"{err:.3f}",
            f"{w2:.3f}" if w2 else DASH,
            f"{_moment_w2(data.sample(n, rng=13), data):.3f}" if w2 else DASH,
            f"{seconds:.0f}" if w2 else DASH,
        )
    return table


def _moment_w2(x, law) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(dc.w2_gaussian(x.mean(axis=0), np.cov(x.T), np.asarray(law.mean), np.asarray(law.cov)))


def _torch_denoiser(model):
    """A trained student as the next round's teacher: (x, t) -> x0 without gradients."""

    def den(x, t):
        with torch.no_grad():
            return model(x, t)

    return den


if __name__ == "__main__":
    main()
