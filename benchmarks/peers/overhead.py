"""Loop overhead per model evaluation: diffcore's driver against every peer's loop (issue 14, part 4).

What is timed: one run of 20 model evaluations on 10^4 points, 2-D and 64-D, with a TRIVIAL model,
1 thread.  The model is a fixed linear map, ``x -> c x`` (one multiplication, microseconds), given to
each library in its own native form with no adapter between (a diffcore score ``f(x, t)``, a diffusers
eps-model ``f(x, timestep)``, a k-diffusion denoiser ``D(x, sigma)``, a flow_matching velocity
``u(x=, t=)``, torchdiffeq's ``f(t, x)``, torchsde's ``f`` and ``g``), so that the loop's own cost
dominates.  The numbers the runs produce are meaningless; only their time is measured (every run's
output is checked finite, so no run times a loop over NaNs).

``overhead ms / NFE = (median run time - NFE x median model time) / NFE``, the model timed alone on the
same batch.  Median of 7 repeats after one warm-up; the minimum over the repeats is shown too.
dtypes: torch float32 (what a GPU model would use) and float64 (the accuracy tables' dtype) for every
torch loop; diffcore also on NumPy float64.  Each peer's loop is run as its users run it:

* diffusers: ``set_timesteps(20)``, then per timestep ``scale_model_input``, model, ``step`` (with the
  schedulers' own default spacing and ``trained_betas`` of VP-SDE(0.1, 20));
* k-diffusion: ``sample_euler``, ``sample_dpmpp_2m``, ``sample_heun`` (10 steps), ``sample_lms`` on
  ``get_sigmas_karras`` (its last sigma replaced by sigma_min, so every step is a full one);
* flow_matching: ``ODESolver.sample(step_size=None, time_grid=...)`` with ``euler``, ``midpoint``, ``rk4``;
* torchdiffeq: ``odeint`` fixed-grid ``euler``, ``midpoint``, ``rk4``;
* torchsde: ``sdeint`` ``euler`` (Itô, diagonal noise; the Brownian interval's cost included);
* diffcore: ``dc.sample(process, score, x, method=..., steps=20 // nfe_per_step, grid="log_snr")``.

``python benchmarks/peers/overhead.py --profile`` prints a cProfile breakdown of diffcore's driver
(euler and dpm_solver_pp_2m, 10^4 points, 2-D, torch and NumPy, the trivial model).
"""

# ruff: noqa: B023  (closures are called inside the loop iteration that defines them)

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import DASH, Table, progress  # noqa: E402
from problems import PROCESS  # noqa: E402

import diffcore as dc  # noqa: E402

N = 10_000
NFE = 20
REPEATS = 7
C = 0.5  # the trivial model's coefficient: x -> C x
DC_METHODS = ("euler", "ddim", "dpm_solver_pp_2m", "unipc_3", "deis_3", "rk4", "ipndm")


def _timed(fn, repeats: int = REPEATS) -> tuple[float, float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        s = time.perf_counter()
        fn()
        out.append(time.perf_counter() - s)
    return float(np.median(out)), float(np.min(out))


class _Count:
    n = 0


def _check(x) -> None:
    a = x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if not np.all(np.isfinite(a)):
        raise FloatingPointError("a timing run produced non-finite numbers: change the trivial model")


def _runs(x, dtype):
    """(library, method, run() -> (output, model calls)) for every loop, on the torch tensor ``x``."""
    cnt = _Count()
    runs = []

    # diffcore (torch); the numpy runs are added by the caller
    def dc_score(x, t):
        cnt.n += 1
        return x * C

    for name in DC_METHODS:
        if name not in dc.SOLVERS:
            continue
        per = dc.get_solver(name).nfe_per_step

        def run(name=name, per=per):
            sol = dc.sample(PROCESS, dc_score, x, method=name, steps=NFE // per, grid="log_snr", progress=False)
            return sol.x, sol.nfe

        runs.append(("diffcore (torch)", name, run))

    # diffusers
    import diffusers as dfs

    from diffcore.interop import diffusers_betas

    betas = diffusers_betas(PROCESS, 1000).tolist()
    common = dict(num_train_timesteps=1000, trained_betas=betas, prediction_type="epsilon")
    scheds = {
        "ddim": lambda: dfs.DDIMScheduler(**common, timestep_spacing="trailing"),
        "dpmsolver++2": lambda: dfs.DPMSolverMultistepScheduler(**common, solver_order=2),
        "unipc3": lambda: dfs.UniPCMultistepScheduler(**common, solver_order=3),
        "deis3": lambda: dfs.DEISMultistepScheduler(**common, solver_order=3),
        "euler": lambda: dfs.EulerDiscreteScheduler(**common),
    }
    for name, make in scheds.items():
        sched = make()

        def run(sched=sched):
            sched.set_timesteps(NFE)
            y, n = x, 0
            for k in sched.timesteps:
                inp = sched.scale_model_input(y, k)
                n += 1
                y = sched.step(inp * C, k, y).prev_sample
            return y, n

        runs.append(("diffusers", name, run))

    # k-diffusion
    from diffcore.interop import import_kdiffusion_sampling

    ks = import_kdiffusion_sampling()

    def den(x, sigma, **_):
        cnt.n += 1
        return x * C

    for fname, per in (("sample_euler", 1), ("sample_dpmpp_2m", 1), ("sample_heun", 2), ("sample_lms", 1)):
        sig = ks.get_sigmas_karras(NFE // per + 1, 0.03, 80.0, rho=7.0).to(dtype)[:-1]  # NFE // per steps

        def run(fname=fname, sig=sig):
            cnt.n = 0
            return getattr(ks, fname)(den, x, sig, disable=True), cnt.n

        runs.append(("k-diffusion", fname, run))

    # flow_matching and torchdiffeq
    from flow_matching.solver import ODESolver
    from torchdiffeq import odeint

    class U(torch.nn.Module):
        def forward(self, x, t, **extras):
            cnt.n += 1
            return x * C

    def f(t, x):
        cnt.n += 1
        return x * C

    solver = ODESolver(velocity_model=U())
    for method, per in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        grid = torch.linspace(0.0, 0.999, NFE // per + 1, dtype=dtype)

        def run_fm(method=method, grid=grid):
            cnt.n = 0
            return solver.sample(x, step_size=None, method=method, time_grid=grid), cnt.n

        def run_td(method=method, grid=grid):
            cnt.n = 0
            return odeint(f, x, grid, method=method)[-1], cnt.n

        runs.append(("flow_matching", method, run_fm))
        runs.append(("torchdiffeq", method, run_td))

    # torchsde
    import torchsde

    class SDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            cnt.n += 1
            return y * C

        def g(self, t, y):
            return torch.full_like(y, 0.1)

    def run_sde():
        cnt.n = 0
        span = torch.tensor([0.0, 0.999], dtype=dtype)
        bm = torchsde.BrownianInterval(t0=0.0, t1=float(span[1]), size=x.shape, dtype=dtype, entropy=0)
        return torchsde.sdeint(SDE(), x, span, method="euler", dt=0.999 / NFE * (1 + 1e-9), bm=bm)[-1], cnt.n

    runs.append(("torchsde", "euler", run_sde))
    return runs


def tables() -> list[Table]:
    t = Table(
        f"Loop overhead per NFE: {N} points, trivial model x -> {C} x, {NFE} model calls per run, 1 thread",
        [
            f"overhead ms/NFE = (run time - NFE x model time) / NFE; median (and min) of {REPEATS} runs "
            "after a warm-up; the model (one multiplication) timed alone on the same batch.",
            "each library gets the model in its own native signature, no diffcore.interop adapter "
            "(see benchmarks/peers/overhead.py).",
            "vs lowest peer = this diffcore row's overhead / the lowest peer overhead of the same dim and dtype, "
            "median / min (target <= 1).",
        ],
        [
            "dim",
            "dtype",
            "library",
            "method",
            "NFE",
            "run ms (median)",
            "run ms (min)",
            "model ms",
            "overhead ms/NFE (median)",
            "overhead ms/NFE (min)",
            "vs lowest peer",
        ],
    )
    summary = Table(
        "Loop overhead summary: lowest diffcore vs lowest peer (ms per NFE; median and min over the repeats)",
        [
            "target (issue 14): diffcore's per-NFE overhead <= the lowest peer's.  On a loaded machine the min "
            "is the steadier estimate (a run preempted by another process only lengthens it).",
        ],
        [
            "dim",
            "dtype",
            "lowest diffcore (median)",
            "lowest peer (median)",
            "ratio (median)",
            "lowest diffcore (min)",
            "lowest peer (min)",
            "ratio (min)",
        ],
    )
    for dim in (2, 64):
        for dtype in (torch.float32, torch.float64):
            progress(f"overhead: {dim}-D {dtype}")
            x = torch.randn(N, dim, dtype=dtype, generator=torch.Generator().manual_seed(0))
            m_med, _ = _timed(lambda: x * C, 21)
            rows = []
            runs = _runs(x, dtype)
            if dtype == torch.float64:
                xn = x.numpy()
                m_np, _ = _timed(lambda: xn * C, 21)
                for name in DC_METHODS:
                    if name not in dc.SOLVERS:
                        continue
                    per = dc.get_solver(name).nfe_per_step

                    def run(name=name, per=per):
                        sol = dc.sample(
                            PROCESS,
                            lambda x, t: x * C,
                            xn,
                            method=name,
                            steps=NFE // per,
                            grid="log_snr",
                            progress=False,
                        )
                        return sol.x, sol.nfe

                    runs.append(("diffcore (numpy)", name, run))
            for lib, method, run in runs:
                box = {}

                def once(run=run):
                    box["out"] = run()

                try:
                    med, mn = _timed(once)
                except Exception as e:  # a loop that cannot run here: listed, not timed
                    rows.append((lib, method, None, None, None, f"{type(e).__name__}: {str(e)[:80]}"))
                    continue
                y, used = box["out"]
                _check(y)
                model = m_np if lib == "diffcore (numpy)" else m_med
                rows.append((lib, method, used, med, mn, model))
            name_dt = str(dtype).replace("torch.", "")
            over = {}  # (lib, method) -> (median, min) overhead per NFE
            for lib, method, used, med, mn, model in rows:
                if med is not None:
                    over[(lib, method)] = ((med - used * model) / used, (mn - used * model) / used)
            low = [min((v[i], k) for k, v in over.items() if not k[0].startswith("diffcore")) for i in (0, 1)]
            for lib, method, used, med, mn, model in rows:
                if med is None:
                    t.add(f"{dim}-D", name_dt, lib, method, DASH, DASH, DASH, DASH, DASH, DASH, model)
                    continue
                o_med, o_min = over[(lib, method)]
                vs = f"{o_med / low[0][0]:.2f} / {o_min / low[1][0]:.2f}" if lib.startswith("diffcore") else DASH
                t.add(
                    f"{dim}-D",
                    name_dt,
                    lib,
                    method,
                    used,
                    f"{med * 1e3:.2f}",
                    f"{mn * 1e3:.2f}",
                    f"{model * 1e3:.4f}",
                    f"{o_med * 1e3:.4f}",
                    f"{o_min * 1e3:.4f}",
                    vs,
                )
            for lib in ("diffcore (torch)", "diffcore (numpy)"):
                mine = [(v, k) for k, v in over.items() if k[0] == lib]
                if not mine:
                    continue
                cells = []
                for i in (0, 1):
                    (v, (_, m)), (pv, (pl, pm)) = min((v[i], k) for v, k in mine), low[i]
                    cells += [f"{v * 1e3:.4f} {lib} {m}", f"{pv * 1e3:.4f} {pl} {pm}", f"{v / pv:.2f}"]
                summary.add(f"{dim}-D", name_dt, *cells)
    return [summary, t]


def profile() -> None:
    """cProfile of diffcore's driver, euler and dpm_solver_pp_2m, 10^4 points 2-D, torch and NumPy, trivial model."""
    import cProfile
    import pstats

    for lib in ("torch", "numpy"):
        x = torch.randn(N, 2, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
        if lib == "numpy":
            x = x.double().numpy()
        for name in ("euler", "dpm_solver_pp_2m"):

            def run(name=name, x=x):
                for _ in range(50):
                    dc.sample(PROCESS, lambda x, t: x * C, x, method=name, steps=NFE, grid="log_snr", progress=False)

            run()
            prof = cProfile.Profile()
            prof.enable()
            run()
            prof.disable()
            print(f"\n===== {name} on {lib} ({'float32' if lib == 'torch' else 'float64'}), 50 runs x {NFE} steps")
            pstats.Stats(prof).sort_stats("tottime").print_stats(22)


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        if "--profile" in sys.argv:
            profile()
        else:
            for tab in tables():
                print(tab.text(), flush=True)
