"""Few-step generation: every flow-map method of diffcore against the fast ODE solvers at 1, 2, 4 NFE.

Two laboratories, the same methods: P1 (2-D, 8 Gaussians on a circle) and P2 (a 64-D Gaussian,
where every map is affine and known in closed form).  Each student is trained on the CPU (one
torch thread) with its loss from ``diffcore.training`` and the exact teacher of the laboratory
where the method has one, so the table isolates the distillation error; one row distils a
wrong teacher (the exact score of data moved by 0.3) to show what a teacher passes on.

Columns: the distance of 1-, 2- and 4-step generation to the exact law (P1: ``W2`` to ``n = 2000``
exact samples; P2: ``W2`` between the Gaussians with the samples' and the exact moments, ``n =
4000``), the relative map error ``E|Phi_theta(x) - Phi(x)| / E|Phi(x) - E Phi|`` over a grid of
``(t, s)`` against the exact map (adaptive reference on P1, closed form on P2), and the training
time.  Where a student is worse than the best fast solver at equal NFE, the table shows it.

Run: ``python benchmarks/bench_flowmaps.py [--steps 1500] [--problems P1 P2]``
(about 10 minutes on 2 cores at the default budget).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from _report import DASH, Table, machine_lines, progress, write_markdown
from problems import circle_mixture

import diffcore as dc
from diffcore.flowmaps import consistency_sample, exact_flow_map, flow_map_sample, to_flow_map
from diffcore.testing import Problem
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
    shortcut_loss,
    solver_teacher,
)

T_MIN, NFES = 2e-3, (1, 2, 4)
VP = dc.VPSDE()
RE_NOISE = {1: [1.0], 2: [1.0, 0.5], 4: [1.0, 0.5, 0.25, 0.12]}
#: the (t, s) pairs of the map error: VP time for the diffusion students, interpolant time for MeanFlow
VP_PAIRS = ((1.0, T_MIN), (0.5, T_MIN), (0.25, T_MIN))
FM_PAIRS = ((0.0, 1.0), (0.0, 0.5), (0.5, 1.0))


def _numpy(fn: Callable) -> Callable:
    """A torch callable ``(x, *times)`` as a NumPy one (float32 inside, float64 out)."""

    def call(x, *times):
        with torch.no_grad():
            return fn(torch.as_tensor(np.asarray(x), dtype=torch.float32), *times).double().numpy()

    return call


@dataclass
class Lab:
    """One laboratory: the data, its exact fields, the exact laws and how to compare samples with them."""

    name: str
    data: object
    n: int
    width: int

    def __post_init__(self) -> None:
        self.dim = self.data.dim
        self.score = dc.exact_score(VP, self.data)
        self.target = dc.marginal(VP, self.data, T_MIN)
        self.x1 = VP.prior_sample((self.n, self.dim), rng=3)
        self.noise = np.random.default_rng(3).normal(size=(self.n, self.dim))  # MeanFlow starts at N(0, I)
        self.path = dc.OneSidedInterpolant("linear")
        self.ends = (dc.Gaussian(np.zeros(self.dim), np.eye(self.dim)), self.data)
        self.gaussian = isinstance(self.data, dc.Gaussian)
        self.exact = {"vp": self.target.sample(self.n, rng=1), "fm": self.data.sample(self.n, rng=1)}

    def distance(self, x, clock: str) -> float:
        x = np.asarray(x, dtype=np.float64)
        if self.gaussian:  # moment W2: samples' mean and covariance against the exact law's
            law = self.target if clock == "vp" else self.data
            return float(dc.w2_gaussian(x.mean(axis=0), np.cov(x.T), np.asarray(law.mean), np.asarray(law.cov)))
        return float(dc.w2(x, self.exact[clock]))

    def floor(self) -> str:
        if self.gaussian:
            return f"{self.distance(self.target.sample(self.n, rng=9), 'vp'):.3f}"
        est = dc.w2_floor(self.target, self.n, repeats=3, rng=2)
        return f"{est.mean:.3f} ± {est.stderr:.3f}"

    def map_error(self, student_map: Callable, clock: str) -> float:
        """Mean relative error of a map ``(x, t, s)`` over the (t, s) pairs, on 300 points of p_t each."""
        errs = []
        for t, s in VP_PAIRS if clock == "vp" else FM_PAIRS:
            if clock == "vp":
                x, ref = (
                    dc.marginal(VP, self.data, t).sample(300, rng=10),
                    exact_flow_map(VP, self.data, t, s, rtol=1e-9, atol=1e-9),
                )
            else:
                fields = dc.interpolant_fields(self.path, *self.ends)
                x, ref = (
                    fields.marginal(t).sample(300, rng=10),
                    exact_flow_map(self.path, self.ends, t, s, rtol=1e-9, atol=1e-9),
                )
            y = ref(x)
            errs.append(
                np.mean(np.linalg.norm(student_map(x, t, s) - y, axis=1))
                / np.mean(np.linalg.norm(y - y.mean(0), axis=1))
            )
        return float(np.mean(errs))


def _fit(net, loss, data, steps: int) -> float:
    start = time.perf_counter()
    fit(net, loss, data, steps=steps, batch_size=256, lr=1e-3, schedule="cosine", rng=0, progress=False)
    return time.perf_counter() - start


def consistency(lab: Lab, steps: int, loss: Callable) -> tuple[list[float], float, float]:
    net = MLPField(lab.dim, width=lab.width, depth=3, rng=0)
    phi = to_flow_map("consistency", net, VP, t_min=T_MIN, sigma_data=1.0)
    seconds = _fit(net, lambda m, b, rng=None: loss(phi, b, rng), lab.data, steps)
    call = _numpy(phi)
    dists = [lab.distance(consistency_sample(call, VP, lab.x1, RE_NOISE[k], t_min=T_MIN, rng=4).x, "vp") for k in NFES]
    return dists, lab.map_error(call, "vp"), seconds


def meanflow(lab: Lab, steps: int) -> tuple[list[float], float, float]:
    net = MLPMap(lab.dim, width=lab.width, depth=3, rng=0)
    seconds = _fit(net, lambda m, b, rng=None: meanflow_loss(m, b, lab.path, rng, t_max=0.999), lab.data, steps)
    call = _numpy(to_flow_map("mean_velocity", net))
    dists = [lab.distance(flow_map_sample(call, lab.noise, np.linspace(0.0, 1.0, k + 1)).x, "fm") for k in NFES]
    return dists, lab.map_error(call, "fm"), seconds


def shortcut(lab: Lab, steps: int) -> tuple[list[float], float, float]:
    net = MLPMap(lab.dim, width=lab.width, depth=3, rng=0)  # (x, t, d): the step d as the second time
    seconds = _fit(net, lambda m, b, rng=None: shortcut_loss(m, b, lab.path, rng), lab.data, steps)
    call = _numpy(to_flow_map("shortcut", net))
    dists = [lab.distance(flow_map_sample(call, lab.noise, np.linspace(0.0, 1.0, k + 1)).x, "fm") for k in NFES]
    return dists, lab.map_error(call, "fm"), seconds


def progressive(lab: Lab, steps: int) -> tuple[list[float], float, float]:
    teacher, students, k, seconds = dc.exact_denoiser(VP, lab.data), {}, 8, 0.0
    while k >= 1:  # 16 -> 8 -> 4 -> 2 -> 1 DDIM steps, each round a new student of the previous one
        student = MLPField(lab.dim, width=lab.width, depth=3, rng=k)
        seconds += _fit(
            student,
            lambda m, b, rng=None, tch=teacher, n=k: progressive_distillation_loss(
                m, b, VP, tch, rng, steps=n, t_min=T_MIN
            ),
            lab.data,
            max(steps // 3, 1),
        )
        students[k] = student
        teacher = _frozen(student)
        k //= 2
    dists = []
    for k in NFES:
        score = dc.reparametrize(_numpy(students[k]), VP, source="x0", target="score")
        dists.append(
            lab.distance(dc.sample(VP, score, lab.x1, method="ddim", steps=k, t_min=T_MIN, grid="uniform").x, "vp")
        )
    return dists, float("nan"), seconds


def boot(lab: Lab, steps: int) -> tuple[list[float], float, float]:
    net = MLPField(lab.dim, width=lab.width, depth=3, rng=0)
    ddim = solver_teacher(VP, lab.score, "ddim")
    noise = dc.Gaussian(np.zeros(lab.dim), np.eye(lab.dim))
    seconds = _fit(net, lambda m, e, rng=None: boot_loss(m, e, VP, ddim, rng, t_min=T_MIN), noise, steps)
    g = _numpy(net)
    one_step = VP.alpha(T_MIN) * g(lab.x1, T_MIN) + VP.sigma(T_MIN) * lab.x1

    y = exact_flow_map(VP, lab.data, 1.0, T_MIN, rtol=1e-9, atol=1e-9)(lab.x1[:300])
    spread = np.mean(np.linalg.norm(y - y.mean(0), axis=1))
    err = np.mean(np.linalg.norm(one_step[:300] - y, axis=1)) / spread
    return [lab.distance(one_step, "vp"), float("nan"), float("nan")], float(err), seconds


def _frozen(model):
    def den(x, t):
        with torch.no_grad():
            return model(x, t)

    return den


def _shifted(data, shift: float):
    if isinstance(data, dc.Gaussian):
        return dc.Gaussian(np.asarray(data.mean) + shift, data.cov)
    return dc.GaussianMixture(data.weights, np.asarray(data.means) + shift, data.covs)


def run(lab: Lab, steps: int) -> Table:
    table = Table(
        f"{lab.name}: distance to the exact law at 1 / 2 / 4 network evaluations",
        [
            f"n = {lab.n}; floor (two exact samples): {lab.floor()}; "
            + ("moment W2 (Gaussians with the samples' moments)." if lab.gaussian else "W2 between samples."),
            "consistency students: denoise / re-noise at t = 1, 0.5, 0.25, 0.12 (Song et al. 2023, alg. 1); "
            "MeanFlow and shortcut: 1/2/4 jumps on the linear interpolant N(0, I) -> data (compared with the data); "
            "progressive: DDIM on the halved grids;",
            "map err: relative, mean over (t, s) in {(1, t_min), (0.5, t_min), (0.25, t_min)} "
            "(MeanFlow, shortcut: {(0, 1), (0, 0.5), (0.5, 1)}; BOOT: (1, t_min));",
            "fast solvers: the exact score, exactly k evaluations (nfe=k), the best of the default, uniform and "
            "EDM grids.",
        ],
        ["method", "@1", "@2", "@4", "map err", "train s"],
    )
    progress(f"{lab.name}: fast solvers")
    best = {k: (np.inf, "") for k in NFES}
    for method in ("ddim", "dpm_solver_pp_2m", "deis_2", "unipc_2", "ipndm"):
        cells = []
        for k in NFES:
            values = []
            for grid in (None, "uniform", "edm"):  # None: the solver's own default grid
                try:
                    x = dc.sample(VP, lab.score, lab.x1, method=method, nfe=k, t_min=T_MIN, grid=grid).x
                except ValueError:  # a multistep or two-stage method cannot spend exactly k evaluations
                    continue
                values.append((lab.distance(x, "vp"), grid or "default"))
            if not values:
                cells.append(DASH)
                continue
            value, grid = min(values)
            cells.append(f"{value:.3f}")
            if value < best[k][0]:
                best[k] = (value, f"{method}/{grid}")
        table.add(f"{method} (exact score; best grid)", *cells, DASH, DASH)
    table.add("best fast solver", *(f"{best[k][0]:.3f}" for k in NFES), DASH, DASH)
    table.notes.append("best fast solver (method/grid): " + ", ".join(f"{k} NFE: {best[k][1]}" for k in NFES) + ".")
    heun = solver_teacher(VP, lab.score, "heun")
    velocity = dc.ProbabilityFlowODE(VP, lab.score).drift
    wrong = solver_teacher(VP, dc.exact_score(VP, _shifted(lab.data, 0.3)), "heun")
    students = {
        "CD (Heun teacher, 18 steps)": lambda: consistency(
            lab, steps, lambda phi, b, rng: consistency_distillation_loss(phi, b, VP, heun, rng, t_min=T_MIN)
        ),
        "CD, skip 3 (LCM's skipping step)": lambda: consistency(
            lab, steps, lambda phi, b, rng: consistency_distillation_loss(phi, b, VP, heun, rng, t_min=T_MIN, skip=3)
        ),
        "CT (no teacher, 18 steps)": lambda: consistency(
            lab, steps, lambda phi, b, rng: consistency_training_loss(phi, b, VP, rng, t_min=T_MIN)
        ),
        "continuous CD (Eulerian residual)": lambda: consistency(
            lab, steps, lambda phi, b, rng: eulerian_distillation_loss(phi, b, VP, velocity, rng, s=T_MIN, t_min=T_MIN)
        ),
        "MeanFlow (linear interpolant)": lambda: meanflow(lab, steps),
        "shortcut model (linear interpolant)": lambda: shortcut(lab, steps),
        "progressive (16 -> 8 -> 4 -> 2 -> 1 DDIM steps)": lambda: progressive(lab, steps),
        "BOOT (data-free, DDIM teacher)": lambda: boot(lab, steps),
        "CD, teacher of data shifted by 0.3": lambda: consistency(
            lab, steps, lambda phi, b, rng: consistency_distillation_loss(phi, b, VP, wrong, rng, t_min=T_MIN)
        ),
    }
    for name, train in students.items():
        progress(f"{lab.name}: {name}")
        dists, err, seconds = train()
        table.add(
            name,
            *(f"{v:.3f}" if np.isfinite(v) else DASH for v in dists),
            f"{err:.3f}" if np.isfinite(err) else DASH,
            f"{seconds:.0f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps per student")
    parser.add_argument("--problems", nargs="*", default=["P1", "P2"], choices=["P1", "P2"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    labs = {
        "P1": lambda: Lab("P1 (2-D, 8 Gaussians on a circle)", circle_mixture(), 2000, 128),
        "P2": lambda: Lab("P2 (64-D Gaussian)", Problem("P2").data, 4000, 256),
    }
    header = [
        f"VP-SDE, t_min = {T_MIN}. Students: MLPField / MLPMap (depth 3, width 128 on P1 and 256 on P2, float32), "
        f"Adam lr 1e-3 cosine, {args.steps} steps of 256 points (progressive: a third per round), one torch thread.",
        *machine_lines(),
    ]
    print("\n".join(header), end="\n\n", flush=True)
    tables = []
    for name in args.problems:
        tables.append(run(labs[name](), args.steps))
        print(tables[-1].text(), flush=True)
    print(f"written to {write_markdown('flowmaps', header, tables)}")


if __name__ == "__main__":
    main()
