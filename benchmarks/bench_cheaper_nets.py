"""Cheaper networks on a 2-D mixture: DeeDiff early exiting and A-SDM assembled students (issue 17).

A :class:`MultiExitMLP` (4 residual blocks of width 48, an exit and an uncertainty head after
each) is trained with DeeDiff's loss on a 4-component Gaussian mixture under the VP-SDE; the
probability-flow ODE (Heun) is then sampled from the same initial noise with

* early exiting at a range of thresholds (the fraction of blocks evaluated is counted by the model);
* fixed depths (always leave at block l: the static baseline at equal compute);
* feature inheritance (A-SDM, training-free): the residual updates of chosen blocks reused for k - 1 calls;
* students assembled from 2 and 3 of the 4 blocks, with inherited or random weights, distilled
  from the teacher by output + feature matching (their loss against steps shows what inheritance buys).

Columns: W2 of the samples against fresh exact samples of the same size (its floor: W2 between two
exact samples, mean +- standard error over 5 pairs), the pathwise RMS distance to the full
network's ODE samples from the same noise, and to the exact-score ODE samples.  The mixture's W2
floor at 2000 points is large (mode weights fluctuate), so the pathwise columns resolve what W2
cannot.  Threads pinned to 1; about a minute on an idle 2-core CPU.

Run: ``python benchmarks/bench_cheaper_nets.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import functools
import math
import time

import numpy as np
import torch
from _report import Table, machine_lines, progress, write_markdown

import diffcore as dc
from diffcore.training import (
    MultiExitMLP,
    assemble,
    assembly_distillation_loss,
    early_exit_loss,
    early_exit_model,
    feature_reuse_model,
    fit,
)

PROCESS = dc.VPSDE()
N, STEPS, T_MIN = 2000, 25, 1e-3
TEACHER_STEPS, STUDENT_STEPS = 1500, 400
THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, math.inf)
STUDENTS = {"1/2": (0, 3), "3/4": (0, 2, 3)}  # the middle blocks removed, the teacher's last head kept
WINDOWS = ((0, 10), (40, 60), (190, 210), (390, 400))


def mixture() -> dc.GaussianMixture:
    angles = np.arange(4) * np.pi / 2
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return dc.GaussianMixture(np.full(4, 0.25), means, np.stack([0.1 * np.eye(2)] * 4))


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = mixture()
    header = [
        "diffcore cheaper-networks benchmark: 2-D mixture of 4 Gaussians (std 0.32, radius 2), VP-SDE, "
        f"probability-flow ODE by Heun with {STEPS} steps from t = 1 to {T_MIN}, {N} points, one torch thread.",
        *machine_lines(),
    ]
    print("\n".join(header), end="\n\n", flush=True)
    progress(f"training the teacher ({TEACHER_STEPS} Adam steps)")
    teacher = MultiExitMLP(2, width=48, n_blocks=4, rng=0)
    loss = functools.partial(early_exit_loss, process=PROCESS)
    trained = fit(teacher, loss, data, steps=TEACHER_STEPS, batch_size=256, lr=2e-3, schedule="cosine", rng=0)
    progress(f"teacher trained in {trained.seconds:.1f} s")
    x1 = np.random.default_rng(1).standard_normal((N, 2))
    fresh = data.sample(N, np.random.default_rng(2))
    floor = dc.w2_floor(data, N, rng=3)

    def run(model) -> np.ndarray:
        score = dc.reparametrize(model, PROCESS, source="eps")
        return dc.sample(PROCESS, score, x1, method="heun", steps=STEPS, t_min=T_MIN).x

    exact = dc.sample(PROCESS, dc.exact_score(PROCESS, data), x1, method="heun", steps=STEPS, t_min=T_MIN).x
    full = run(teacher)

    def cells(x: np.ndarray) -> list[str]:
        return [f"{dc.w2(x, fresh):.3f}", f"{rms(x, full):.4f}", f"{rms(x, exact):.4f}"]

    notes = [
        f"W2 floor at {N} points: {floor.mean:.3f} +- {floor.stderr:.3f}; exact-score ODE samples: "
        f"W2 {dc.w2(exact, fresh):.3f}; full teacher: W2 {dc.w2(full, fresh):.3f}, "
        f"pathwise RMS to the exact ODE {rms(full, exact):.4f}.",
        "compute: blocks evaluated / 4, averaged over all points and all 2 x 25 - 1 = 49 evaluations.",
    ]
    columns = ["model", "compute", "W2", "RMS to full net", "RMS to exact ODE"]
    table = Table("Early exiting (DeeDiff) against fixed depth", notes, columns)
    progress("early-exit sweep")
    for threshold in THRESHOLDS:
        model = early_exit_model(teacher, threshold)
        x = run(model)
        table.add(f"threshold {threshold:g}", f"{model.compute_fraction:.3f}", *cells(x))
    for depth in range(1, 5):
        x = run(assemble(teacher, range(depth)))  # a prefix: always leave at block `depth`
        table.add(f"fixed depth {depth}", f"{depth / 4:.3f}", *cells(x))
    print(table.text(), flush=True)

    progress("feature reuse")
    notes = [
        "the residual updates of the reused blocks are recomputed every k network calls and reused in between;",
        "compute: blocks evaluated / 4 over all calls (closed form 1 - (|S|/4)(1 - ceil(N/k)/N), N calls).",
    ]
    reuse = Table("Feature inheritance (A-SDM) against refresh period", notes, ["reused blocks", "k", *columns[1:]])
    for blocks in ((1, 2), (1, 2, 3)):
        for k in (1, 2, 3, 4):
            model = feature_reuse_model(teacher, blocks, refresh_every=k)
            x = run(model)
            reuse.add(str(blocks), k, f"{model.compute_fraction:.3f}", *cells(x))
    print(reuse.text(), flush=True)

    progress("assembled students")
    notes = [
        "students keep blocks (0, 3) (1/2) and (0, 2, 3) (3/4) of the teacher with the teacher's last exit; "
        f"distilled {STUDENT_STEPS} Adam steps (lr 2e-3, batches of 256) on output + feature matching.",
        "loss columns: the mean distillation loss over steps [a, b) of training (the same noise for every student).",
    ]
    loss_columns = [f"loss {a}-{b}" for a, b in WINDOWS]
    students = Table(
        "Assembled students (A-SDM): inherited vs random initial weights",
        notes,
        ["student", "init", *loss_columns, "W2", "RMS to full net", "RMS to exact ODE"],
    )
    for name, keep in STUDENTS.items():
        for inherit in (True, False):
            student = assemble(teacher, keep, inherit=inherit, rng=1)
            distil = functools.partial(assembly_distillation_loss, teacher=teacher, process=PROCESS)
            result = fit(
                student,
                lambda s, b, rng, _d=distil: _d(s, x0=b, rng=rng),
                data,
                steps=STUDENT_STEPS,
                batch_size=256,
                lr=2e-3,
                schedule="cosine",
                rng=5,
                progress=False,
            )
            windows = [f"{np.mean(result.losses[a:b]):.4f}" for a, b in WINDOWS]
            students.add(name, "inherited" if inherit else "random", *windows, *cells(run(student)))
    print(students.text(), flush=True)
    path = write_markdown("cheaper_nets", header, [table, reuse, students])
    progress(f"done in {time.perf_counter() - start:.1f} s; markdown copy in {path}")


if __name__ == "__main__":
    main()
