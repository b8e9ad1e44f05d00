"""Every sampler on a GPU: same results as on the CPU, no host synchronisation, throughput.

Usage (one command on a machine with CUDA; about 2 minutes on an H200)::

    python benchmarks/gpu.py --device cuda          # full run, writes benchmarks/results/gpu.md
    python benchmarks/gpu.py --device cpu --quick   # the same code path end to end on a laptop

Not one of the ``bench_*.py`` scripts, so ``run_all.py`` (``make bench``) never runs it.

1. **Agreement.**  Every solver of ``diffcore.SOLVERS`` (and ``adaptive``) runs the same
   problem — the exact score of P1 (2-D mixture) and of P2 (64-D Gaussian) under the VP SDE
   (the mean-reverting solvers under a ``MeanRevertingSDE`` with the same data), 256 points,
   10 steps — from the same initial state with the same noise (a CPU ``torch.Generator`` with
   one seed: the draws are made on the host in float64 and copied, so both runs see identical
   numbers) on the CPU and on ``--device``.  Float64: the relative error
   ``max|x_dev - x_cpu| / max|x_cpu|`` must be below ``1e-10`` (the same formulas; kernels
   differ only in summation order and FMA, round-off ``~1e-16`` times the condition of 10
   steps).  Float32: the device result is compared with the CPU *float64* result, and must be
   within ``4x`` the CPU float32 error (or ``1e-4``, the float32 tolerance of
   ``tests/test_backends.py``, if that is larger): float32 round-off on this problem is what
   the CPU float32 run measures, and a device may reorder the sums, not lose more digits.
2. **No host synchronisation.**  Each solver but ``adaptive`` (which chooses its step sizes
   from an error norm on the host, by design) runs ``integrate`` on device tensors with a
   device ``torch.Generator`` under ``torch.cuda.set_sync_debug_mode("error")``: any
   synchronising call raises and is reported with the line that made it.  The two checks the
   driver makes on purpose — ``x_init`` finite before the loop, one finiteness check of all
   steps after it — run with the debug mode off.  A warm-up run first lets the exact score
   copy its parameters to the device once.
3. **Throughput** of ``euler``, ``heun``, ``dpm_solver_pp_2m``, ``ipndm`` and ``euler_maruyama`` in
   float32 for ``10^4 .. 10^7`` points in 2-D and 64-D (sizes that do not fit in free device
   memory are skipped and reported), with two models: ``-x`` (the exact score of
   ``N(0, I)`` under the VP SDE: the cheapest model there is, so the time is the solver's) and
   the exact score of P1 / P2.  Timed regions are bracketed by ``torch.cuda.synchronize()``
   after a warm-up.  The **bandwidth floor** of one step is ``bytes / peak``, with ``peak``
   measured by a large device-to-device copy and ``bytes`` the state-sized arrays one step
   must read and write if the solver's algebra were fused into one kernel and the model were
   a black box that reads ``x`` and writes its output (``b = n d`` bytes of the dtype):

   * euler: model (read x, write s) 2b; ``x1 = a x + c s`` reads 2b, writes b — **5b**;
   * heun: two models 4b; predictor ``x + h f0`` 3b; corrector reads x, f0, f1, writes x1 4b — **11b**;
   * dpm_solver_pp_2m: model 2b; reads x, s, the previous data prediction, writes x1 and the
     new data prediction (kept for the next step) 5b — **7b**;
   * ipndm: model 2b; reads x, s and the three previous noise predictions, writes x1 and the new
     noise prediction (kept for the next steps) 7b — **9b**;
   * euler_maruyama: noise written 1b; model 2b; reads x, s, noise, writes x1 4b — **7b**
     (diffcore draws the noise in float64 and casts it: 3 more passes in float32 units).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
import warnings
from contextlib import contextmanager

import numpy as np
from _report import DASH, Table, machine_lines, progress, write_markdown
from problems import PROBLEMS, PROCESS, T_MIN

import diffcore as dc
import diffcore.samplers._driver as driver

THROUGHPUT_SOLVERS = {"euler": 5, "heun": 11, "dpm_solver_pp_2m": 7, "ipndm": 9, "euler_maruyama": 7}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device to check (cuda, cuda:1, cpu)")
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke test)")
    return parser.parse_args(argv)


def synchronize(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


# -- the problems -----------------------------------------------------------------------------


def setting(method: str, problem: str):
    """``(process, data)`` for ``method`` on P1 or P2: the VP SDE, or a mean-reverting SDE for ``mrs_*``."""
    data = PROBLEMS[problem].data
    if dc.get_solver(method).requires.shift == "required":
        d = 2 if problem == "P1" else 64
        return dc.MeanRevertingSDE(mu=np.full(d, 0.5), lambda_=1.0), data
    return PROCESS, data


def run(method: str, problem: str, x, steps: int, rng, **options):
    process, data = setting(method, problem)
    solver = dc.get_solver(method, **options)
    dyn = dc.ReverseSDE(process, dc.exact_score(process, data)) if solver.stochastic else None
    dyn = dyn or dc.ProbabilityFlowODE(process, dc.exact_score(process, data))
    ts = dc.time_grid(process, steps, t_min=T_MIN, kind=solver.grid)  # the grid the solver declares
    return dc.integrate(dyn, x, ts, solver, rng)


def methods() -> list[tuple[str, dict]]:
    return [(m, {}) for m in dc.SOLVERS] + [("adaptive", {"rtol": 1e-6, "atol": 1e-6})]


# -- 1. agreement -----------------------------------------------------------------------------


def agreement(device, quick: bool) -> Table:
    import torch

    n, steps = (64, 5) if quick else (256, 10)
    table = Table(
        f"1. {device} vs CPU: relative error max|x_dev - x_ref| / max|x_ref| ({n} points, {steps} steps)",
        [
            "same initial state and noise (a CPU torch.Generator, seed 0) on both; ref = CPU float64",
            "float64: pass below 1e-10; float32: pass within max(4 x the CPU float32 error, 1e-4)",
        ],
        ["method", "problem", "f64 dev vs cpu", "f32 cpu", "f32 dev", "pass"],
    )
    cpu = torch.device("cpu")
    for method, options in methods():
        for problem in ("P1", "P2"):
            d = 2 if problem == "P1" else 64
            x0 = np.random.default_rng(1).standard_normal((n, d))

            def on(dev, dtype, x0=x0, method=method, problem=problem, options=options):
                x = torch.as_tensor(x0, dtype=dtype, device=dev)
                out = run(method, problem, x, steps, torch.Generator().manual_seed(0), **options).x
                if out.device.type != dev.type or out.dtype != dtype:
                    raise RuntimeError(f"{method}: result on {out.device} in {out.dtype}, expected {dev} {dtype}")
                return out.cpu().double().numpy()

            ref = on(cpu, torch.float64)
            scale = float(np.max(np.abs(ref)))
            err64 = float(np.max(np.abs(on(device, torch.float64) - ref))) / scale
            cpu32 = float(np.max(np.abs(on(cpu, torch.float32) - ref))) / scale
            dev32 = float(np.max(np.abs(on(device, torch.float32) - ref))) / scale
            ok = err64 <= 1e-10 and dev32 <= max(4 * cpu32, 1e-4)
            table.add(method, problem, f"{err64:.1e}", f"{cpu32:.1e}", f"{dev32:.1e}", "yes" if ok else "NO")
    return table


# -- 2. host synchronisation --------------------------------------------------------------------


@contextmanager
def sync_debug_error():
    """``set_sync_debug_mode("error")`` around the step loop; the driver's two deliberate checks run with it off."""
    import torch

    def allowed(check):
        def wrapped(*args, **kwargs):
            torch.cuda.set_sync_debug_mode(0)
            try:
                return check(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("error")

        return wrapped

    saved = driver.check_finite, driver._check_steps
    driver.check_finite, driver._check_steps = (allowed(f) for f in saved)
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)
        driver.check_finite, driver._check_steps = saved


def where(err: BaseException) -> str:
    """The innermost diffcore frame of a traceback (file:line function), or the last frame."""
    frames = traceback.extract_tb(err.__traceback__)
    mine = [f for f in frames if "diffcore" in f.filename] or frames
    f = mine[-1]
    return f"{f.filename.split('diffcore/')[-1]}:{f.lineno} {f.name}: {f.line}"


def sync_check(device, quick: bool) -> Table:
    import torch

    table = Table(
        f"2. host synchronisation in the step loop on {device}",
        [
            'torch.cuda.set_sync_debug_mode("error") around integrate (x_init check and the one check after '
            "the loop allowed); float32, device torch.Generator; adaptive excluded (it steers on the host)",
        ],
        ["method", "problem", "result"],
    )
    if device.type != "cuda":
        table.add("all", "P1, P2", f"not available on {device.type}: torch's sync debug mode needs CUDA")
        return table
    n, steps = 256, 4 if quick else 8
    for method in dc.SOLVERS:
        for problem in ("P1", "P2"):
            d = 2 if problem == "P1" else 64
            x = torch.randn(n, d, device=device)
            rng = torch.Generator(device=device).manual_seed(0)
            run(method, problem, x, 2, rng)  # warm-up: the exact score moves its parameters once
            try:
                with sync_debug_error():
                    out = run(method, problem, x, steps, rng)
                result = "no sync" if out.x.device == x.device else f"wrong device {out.x.device}"
            except RuntimeError as err:
                if "synchroniz" not in str(err):
                    raise
                result = f"SYNC at {where(err)}"
            table.add(method, problem, result)
    return table


# -- 3. throughput ----------------------------------------------------------------------------


def bandwidth(device, quick: bool) -> float:
    """Peak copy bandwidth in bytes/s: best of several device-to-device copies (read + write)."""
    import torch

    n = (2**25 if quick else 2**29) // 4  # 32 MiB or 512 MiB of float32 (1 GiB of traffic per copy)
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = math.inf
    for _ in range(3 if quick else 10):
        synchronize(device)
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best


def model(name: str, problem: str):
    if name == "-x":
        return lambda x, t: -x  # the exact score of N(0, I) under the VP SDE, at every t
    return dc.exact_score(PROCESS, PROBLEMS[problem].data)


def free_bytes(device) -> float:
    if device.type != "cuda":
        return math.inf
    import torch

    return torch.cuda.mem_get_info(device)[0]


#: peak memory of one step in state-sized arrays (the exact P1 score makes (n, 8, 2) temporaries)
FOOTPRINT = {"-x": 8, "P1": 48, "P2": 16}


def time_step(device, method: str, score, x, steps: int) -> float:
    """Seconds per step of ``integrate`` (warm-up first; synchronised before and after)."""
    import torch

    solver = dc.get_solver(method)
    dyn = (dc.ReverseSDE if solver.stochastic else dc.ProbabilityFlowODE)(PROCESS, score)
    ts = dc.time_grid(PROCESS, steps, t_min=T_MIN, kind=dc.get_solver(method).grid)
    rng = torch.Generator(device=device).manual_seed(0)
    dc.integrate(dyn, x, ts[:3], solver, rng)
    synchronize(device)
    start = time.perf_counter()
    dc.integrate(dyn, x, ts, solver, rng)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def throughput(device, quick: bool, peak: float) -> list[Table]:
    import torch

    sizes = [10**3, 10**4] if quick else [10**4, 10**5, 10**6, 10**7]
    tables = []
    for d, problem in ((2, "P1"), (64, "P2")):
        table = Table(
            f"3. throughput on {device}, {d}-D, float32",
            [
                f"peak copy bandwidth {peak / 1e9:.0f} GB/s; floor = bytes of one step (see the docstring) / peak;",
                "eff = floor / time with the model -x; pts*steps/s with the exact score of " + problem,
            ],
            ["method", "points", "floor ms", "-x ms/step", "eff", f"{problem} ms/step", f"{problem} pts*steps/s"],
        )
        for method, passes in THROUGHPUT_SOLVERS.items():
            for n in sizes:
                state = n * d * 4
                floor = passes * state / peak
                cells = []
                for name in ("-x", problem):
                    if FOOTPRINT[name] * state > 0.8 * free_bytes(device):
                        cells.append(None)
                        continue
                    x = torch.randn(n, d, device=device)
                    steps = max(4, min(50, int(2e-1 / max(floor, 1e-6))))  # 0.2 s of floor time, 4..50 steps
                    try:
                        cells.append(time_step(device, method, model(name, problem), x, steps))
                    except torch.cuda.OutOfMemoryError:
                        cells.append(None)
                    del x
                fast, exact = cells
                table.add(
                    method,
                    f"{n:.0e}",
                    f"{floor * 1e3:.3f}",
                    f"{fast * 1e3:.3f}" if fast else "skipped (memory)",
                    f"{floor / fast:.2f}" if fast else DASH,
                    f"{exact * 1e3:.3f}" if exact else "skipped (memory)",
                    f"{n / exact:.2e}" if exact else DASH,
                )
                progress(f"throughput {method} n={n:.0e} d={d}")
        tables.append(table)
    return tables


def main(argv: list[str]) -> int:
    args = parse(argv)
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available on this machine; run with --device cpu --quick for a smoke test")
        return 2
    header = machine_lines()
    if device.type == "cuda":
        header.append(f"device: {torch.cuda.get_device_name(device)}")
    header.append(f"mode: {'quick' if args.quick else 'full'}, device {device}")
    tables = []
    progress("agreement")
    tables.append(agreement(device, args.quick))
    progress("sync check")
    tables.append(sync_check(device, args.quick))
    progress("bandwidth")
    peak = bandwidth(device, args.quick)
    tables += throughput(device, args.quick, peak)
    for table in tables:
        print(table.text())
    path = write_markdown("gpu", header, tables)
    print(f"wrote {path}")
    failed = [r for r in tables[0].rows if r[-1] != "yes"] + [r for r in tables[1].rows if r[-1].startswith("SYNC")]
    return 1 if failed else 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        sys.exit(main(sys.argv[1:]))
