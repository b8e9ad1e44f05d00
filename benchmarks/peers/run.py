"""Side by side: diffcore's samplers against diffusers, torchdiffeq and torchsde on P1/P2 (issue 7).

Run with ``make bench-peers`` (it builds the separate environment ``.venv-bench`` with the peers;
this file lives in ``benchmarks/peers/`` so that ``benchmarks/run_all.py``, which globs
``benchmarks/bench_*.py`` only, never picks it up).  Tables to stdout and to
``benchmarks/results/bench_peers.md``.  Threads are pinned to 1 (``torch.set_num_threads(1)`` and
``threadpoolctl.threadpool_limits(1)``).

Common problem
--------------
VP-SDE(0.1, 20) (``benchmarks/problems.py``), P1 (2-D circle mixture) and P2 (64-D Gaussian), the
exact score of ``diffcore.exact_score``; every method integrates from ``t_s = 1`` to
``t_e = 1e-3`` (the interval of ``bench_fast_solvers``), starting from the same points
``x_1 ~`` the exact law at ``t = 1``.  Pathwise reference: ``diffcore.testing.reference_ode_solution``
(SciPy DOP853, rtol = atol = 1e-12) of the probability-flow ODE from those points.  w2: exact W2
(POT) between the method's points and as many independent exact samples of the law at ``t_e``;
the floor is W2 between two independent exact sample sets of that size.

Convention mapping (the heart of the comparison)
------------------------------------------------
*diffusers* (discrete DDPM time ``k = 0..999``, ``alphas_cumprod[k]``), through ``diffcore.interop``:

* the schedulers get ``trained_betas = diffusers_betas(PROCESS, 1000)``, the exact discretisation of
  VP-SDE(0.1, 20) on ``t_k = (k + 1)/1000``: ``beta_k = 1 - alpha(t_k)^2 / alpha(t_{k-1})^2``
  (``alpha(t_{-1}) = alpha(0) = 1``), so that ``alphas_cumprod[k] = alpha(t_k)^2``: timestep 999 is
  ``t = 1`` and timestep 0 is ``t = 1e-3`` exactly (up to diffusers' float32 cumprod).
  (``beta_schedule="linear"`` with 1e-4..0.02 is the same SDE to first order only: its
  ``alphas_cumprod[999] = e^{-10.117}`` corresponds to ``t = 1.0067 > 1``, outside diffcore's ``[0, 1]``.)
* the model given to a scheduler is ``model_for_diffusers(score, PROCESS, scheduler, "epsilon")``: the
  EXACT eps-prediction of the scheduler's *own* current noise level.  At each call it reads the level
  the scheduler is using at that moment (``alphas_cumprod[timestep]`` for DDIM, ``sigmas[step_index]``,
  ``abar = 1/(1 + sigma^2)``, for the sigma-based schedulers), finds the continuous ``t`` with
  ``log_snr(t) = log(abar/(1 - abar))`` (``VPSDE.log_snr_inverse``, clipped to ``[0, 1]``, which moves
  ``t`` by float32 rounding at most) and returns ``eps = -sigma(t) score(x, t)``.  Marginals depend on
  (alpha, sigma) only, so this is the exact model for whatever (rounded, interpolated, Karras...) grid
  the scheduler uses.
* level -> ``t``: ``sampler_from_diffusers(scheduler, PROCESS).time_grid(steps)`` is the grid of diffcore
  times (same log-SNR) of the levels the scheduler steps through; it refuses grids with a zero-length
  step.  Each run's first and last time must be ``t = 1`` (to 1e-5) and ``t = 1e-3`` (to 1e-6); a
  grid variant that ends elsewhere or has a zero-length step (the Karras grids with
  ``final_sigmas_type="sigma_min"``, which repeat their last sigma) is rejected and listed, not
  compared on another interval.  (Levels that share a rounded timestep, as ``use_lu_lambdas`` with
  50 steps gives at ``..., 1, 1, 0``, are distinct steps: the model reads the running sigma.)
  diffusers' float32 ``alphas_cumprod[0]`` is the level of ``t = 1.0002e-3``: that run's pathwise
  reference ends at that time.  Its
  ``alphas_cumprod[999]`` lies 7e-7 (relative) beyond ``alpha(1)^2``: ``t`` is clipped to 1 there,
  and the library maps states between the two scalings (``x_vp = x_t sqrt(abar)/alpha(t)``, a factor
  ``1 - 3.5e-7`` at that level, 1 to rounding elsewhere).
* the runs: ``sampler_from_diffusers(...)(score, x_1, ts)`` runs the scheduler's loop
  (``scale_model_input``, model, ``step``) from ``x_1`` on its grid ``ts``, with the variable
  mapping of the variance-exploding schedulers (Euler steps ``x_ve = x_vp/sqrt(abar)``: the library
  maps ``x_1`` in and the result back).  Heun alone is run by hand (its last step jumps to
  ``sigma = 0``, which the benchmark leaves out): the same scheduler and ``model_for_diffusers``,
  ``x_ve = x_vp/alpha(t)`` at both ends, stopped after ``2m`` model calls.

End points: DDIM with ``timestep_spacing="trailing"`` (starts at 999) and ``set_alpha_to_one=False``
(its last step lands on ``final_alpha_cumprod = alphas_cumprod[0]``, i.e. ``t = 1e-3``);
DPMSolverMultistep and UniPC with ``final_sigmas_type="sigma_min"`` (last sigma = that of
``alphas_cumprod[0]``); DEIS appends that sigma itself; Euler gets custom timesteps
``linspace(999, 0, n + 1)[:-1]`` and ``final_sigmas_type="sigma_min"`` (so ``n`` steps, none of zero
length); Heun (no ``final_sigmas_type``) gets custom timesteps ``linspace(999, 0, m + 1)`` and is
stopped after its ``2m`` model calls, before its extra step to ``sigma = 0``.  (Custom timesteps: a
subclass whose ``set_timesteps(n)`` sets them, so that ``sampler_from_diffusers`` runs that grid.)
NFE = counted model calls <= the budget.  Variants tried (best kept, named in the table): the default
spacing (uniform in ``k``, i.e. uniform in ``t``) and ``use_karras_sigmas`` / ``use_lu_lambdas``
where the scheduler has them.

*torchdiffeq* integrates ``du`` with ``u = 1 - t`` (increasing, ``u: 0 -> 1 - 1e-3``) the velocity
``velocity_for_flow_matching(v)(x, u) = -v(x, 1 - u)`` (``diffcore.interop``; flow matching's clock,
noise at ``u = 0``) of ``v = reparametrize(score, PROCESS, source="score", target="velocity")
= f(t) x - g(t)^2/2 score(x, t)``, the probability-flow ODE of diffcore's ``ProbabilityFlowODE``
with the same exact score (torch).  Fixed-grid ``euler``,
``midpoint``, ``rk4`` (torchdiffeq's 3/8-rule, 4 evaluations) with ``steps = NFE // evals`` on
the grid uniform in ``t`` and on the grid uniform in log-SNR (``grid_constructor``), best kept;
``dopri5`` over a sweep of ``rtol = atol``: per budget the most accurate run whose counted NFE is
within the budget (its actual NFE is printed).

*torchsde* integrates the reverse SDE ``dx = [f x - g^2 score] dt + g dW-bar`` in ``u = 1 - t``
(``drift = -(f x - g^2 score)``, diagonal noise ``g``), with ``euler`` (Itô) and
``reversible_heun`` (Stratonovich; the noise is additive, so both are the same SDE), fixed
``dt = (1 - 1e-3)/steps``.  SDE samplers have no pathwise reference against the ODE: they are
compared by w2 to exact samples only (pathwise column "—"), together with diffcore's
``euler_maruyama`` and ``ancestral`` at the same NFE.  reversible_heun spends one extra
evaluation at the start: ``steps = NFE - 1``.

*diffcore*: every deterministic affine-process solver of ``dc.SOLVERS`` on the grids
``uniform``, ``log_snr``, ``edm`` with ``steps = NFE // nfe_per_step``; the best (solver, grid)
per budget is the "best diffcore" of the ratio table.

Timing: 10 000 points, P1 (2-D) and P2 (64-D), torch float64 on the CPU for every library
(diffcore also with NumPy), NFE 20, median of repeats, 1 thread.  The model is timed alone (the
same exact score callable each library calls, at the same batch); per-step overhead = (time per
run - NFE * model time) / steps.  A peer's overhead includes the ``diffcore.interop`` adapter it
calls the score through (``model_for_diffusers``: a few scalar operations and one multiplication of
``x`` per call; ``velocity_for_flow_matching``: ``f x - g^2/2 score``).
"""

# ruff: noqa: B023  (closures are called inside the loop iteration that defines them)

from __future__ import annotations

import copy
import sys
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import DASH, Table, machine_lines, progress, write_markdown  # noqa: E402
from problems import PROBLEMS, PROCESS  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import diffcore as dc  # noqa: E402
from diffcore.interop import (  # noqa: E402
    diffusers_betas,
    model_for_diffusers,
    sampler_from_diffusers,
    velocity_for_flow_matching,
)
from diffcore.testing import reference_ode_solution  # noqa: E402

NFES = (5, 10, 20, 50)
N_ACC = {"P1": 1000, "P2": 500}
N_TIME = 10_000
SEED = 1
T_S, T_E = 1.0, 1e-3
N_TRAIN = 1000

DC_ODE = [
    n
    for n, c in dc.SOLVERS.items()
    if not c.stochastic and getattr(c, "processes", "affine") == "affine" and n not in ("hb", "ghvb", "bdia")
]
DC_SDE = ["euler_maruyama", "ancestral"]
DC_GRIDS = ("uniform", "log_snr", "edm")


class Counter:
    def __init__(self) -> None:
        self.n = 0


def counted(score, counter: Counter):
    """``score`` that counts its calls in ``counter.n`` (one call = one model evaluation of the peer)."""

    def f(x, t):
        counter.n += 1
        return score(x, t)

    return f


# ----------------------------------------------------------------------------------------------
# diffusers


def with_timesteps(cls, timesteps):
    """``cls`` whose ``set_timesteps(n)`` sets the custom timesteps ``timesteps(n)``.

    ``sampler_from_diffusers`` calls ``set_timesteps(steps)``: so it runs (and its ``time_grid`` maps)
    the custom grid.
    """

    class Custom(cls):
        def set_timesteps(self, num_inference_steps=None, device=None, *_, **__):
            # (HeunDiscreteScheduler's __init__ calls it too, with num_train_timesteps)
            super().set_timesteps(device=device, timesteps=timesteps(num_inference_steps))

    Custom.__name__ = Custom.__qualname__ = cls.__name__
    return Custom


def make_scheduler(name: str, variant: str):
    import diffusers as dfs

    betas = diffusers_betas(PROCESS, N_TRAIN).tolist()
    common = dict(num_train_timesteps=N_TRAIN, trained_betas=betas, prediction_type="epsilon")
    extra = {}
    if variant == "karras":
        extra["use_karras_sigmas"] = True
    if variant == "lu":
        extra["use_lu_lambdas"] = True
    if name == "ddim":
        return dfs.DDIMScheduler(
            **common, clip_sample=False, set_alpha_to_one=False, steps_offset=0, timestep_spacing="trailing"
        )
    if name.startswith("dpmsolver++"):
        order = int(name[-1])
        return dfs.DPMSolverMultistepScheduler(
            **common, solver_order=order, algorithm_type="dpmsolver++", final_sigmas_type="sigma_min", **extra
        )
    if name.startswith("unipc"):
        order = int(name[-1])
        return dfs.UniPCMultistepScheduler(**common, solver_order=order, final_sigmas_type="sigma_min", **extra)
    if name.startswith("deis"):
        order = int(name[-1])
        return dfs.DEISMultistepScheduler(**common, solver_order=order, **extra)
    if name == "euler":
        cls = dfs.EulerDiscreteScheduler
        if variant == "default":  # n steps, the last one to the level of timestep 0 (sigma_min)
            cls = with_timesteps(cls, lambda n: np.linspace(N_TRAIN - 1, 0, n + 1)[:-1].tolist())
        return cls(**common, final_sigmas_type="sigma_min", **extra)
    if name == "heun":
        cls = dfs.HeunDiscreteScheduler
        if variant == "default":  # n - 1 steps to timestep 0, then Heun's own step to sigma = 0
            cls = with_timesteps(cls, lambda n: np.linspace(N_TRAIN - 1, 0, n).tolist())
        return cls(**common, **extra)
    raise ValueError(name)


DIFFUSERS = ["ddim", "dpmsolver++2", "dpmsolver++3", "unipc2", "unipc3", "deis2", "deis3", "euler", "heun"]
VARIANTS = {
    "ddim": ["default"],
    "dpmsolver++2": ["default", "karras", "lu"],
    "dpmsolver++3": ["default", "karras", "lu"],
    "unipc2": ["default", "karras"],
    "unipc3": ["default", "karras"],
    "deis2": ["default", "karras"],
    "deis3": ["default", "karras"],
    "euler": ["default", "karras"],
    "heun": ["default", "karras"],
}


class DiffusersRun:
    """One scheduler run: ``x1`` (VP space, at t = 1) to its end point, with the exact eps model.

    ``sampler_from_diffusers`` gives the run's grid of diffcore times (``time_grid``: raises for a
    zero-length step) and runs it; Heun runs ``m + 1`` timesteps (the last to ``sigma = 0``) and is
    stopped after its ``2m`` model calls, at the level of timestep 0: that loop is written here.
    """

    def __init__(self, name: str, variant: str, nfe: int) -> None:
        self.name, self.variant, self.nfe = name, variant, nfe
        self.sampler = sampler_from_diffusers(make_scheduler(name, variant), PROCESS)
        self.heun = name == "heun"
        m = nfe // 2
        self.calls = 2 * m if self.heun else nfe
        self.ts = self.sampler.time_grid(m + 1 if self.heun else nfe)
        run_ts = self.ts[:-1] if self.heun else self.ts
        self.t_start, self.t_end = float(run_ts[0]), float(run_ts[-1])

    def ok(self) -> bool:
        return abs(self.t_start - T_S) < 1e-5 and abs(self.t_end - T_E) < 1e-3 * T_E

    def run(self, score, x1: torch.Tensor) -> tuple[torch.Tensor, int]:
        counter = Counter()
        if not self.heun:
            return self.sampler(counted(score, counter), x1, self.ts), counter.n
        s = copy.deepcopy(self.sampler.scheduler)
        s.set_timesteps(len(self.ts) - 1)
        model = model_for_diffusers(counted(score, counter), PROCESS, s, "epsilon")
        x = x1 / float(PROCESS.alpha(self.t_start))  # Heun steps x_ve = x_vp / alpha
        with torch.no_grad():
            for timestep in s.timesteps[: self.calls]:
                x = s.step(model(s.scale_model_input(x, timestep), timestep), timestep, x).prev_sample
        return x * float(PROCESS.alpha(self.t_end)), counter.n


# ----------------------------------------------------------------------------------------------
# torchdiffeq / torchsde


def u_grid(kind: str, steps: int) -> np.ndarray:
    return 1.0 - dc.time_grid(PROCESS, steps, t_min=T_E, t_max=T_S, kind=kind)


def torchdiffeq_run(method: str, score, x1: torch.Tensor, *, steps=None, grid="uniform", tol=None):
    from torchdiffeq import odeint

    counter = Counter()
    velocity = dc.reparametrize(counted(score, counter), PROCESS, source="score", target="velocity")
    u_field = velocity_for_flow_matching(velocity)  # u(x, u) = -v(x, 1 - u)

    def func(u, x):
        # dopri5's initial-step heuristic probes outside the interval: clip its time to [0, 1]
        # (the integration itself stays inside: jump_t ends the last step exactly at 1 - t_e)
        return u_field(x, min(max(float(u), 0.0), 1.0))

    span = torch.tensor([0.0, 1.0 - T_E], dtype=x1.dtype)
    if method == "dopri5":
        out = odeint(func, x1, span, method="dopri5", rtol=tol, atol=tol, options={"jump_t": span[1:]})
    else:
        g = torch.tensor(u_grid(grid, steps), dtype=x1.dtype)
        out = odeint(func, x1, span, method=method, options={"grid_constructor": lambda f, y0, t: g})
    return out[-1], counter.n


class ReverseVPSDE(torch.nn.Module):
    noise_type = "diagonal"

    def __init__(self, score, sde_type: str, counter: Counter) -> None:
        super().__init__()
        self.score, self.sde_type, self.counter = score, sde_type, counter

    def f(self, u, x):
        self.counter.n += 1
        t = 1.0 - float(u)
        f = float(PROCESS.drift(np.ones(1), t)[0])
        g2 = float(PROCESS.diffusion(t)) ** 2
        return -(f * x - g2 * self.score(x, t))

    def g(self, u, x):
        return torch.full_like(x, float(PROCESS.diffusion(1.0 - float(u))))


def torchsde_run(method: str, score, x1: torch.Tensor, steps: int, seed: int):
    import torchsde

    counter = Counter()
    sde_type = "stratonovich" if method == "reversible_heun" else "ito"
    sde = ReverseVPSDE(score, sde_type, counter)
    span = torch.tensor([0.0, 1.0 - T_E], dtype=x1.dtype)
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0 - T_E, size=x1.shape, dtype=x1.dtype, entropy=seed)
    dt = (1.0 - T_E) / steps
    out = torchsde.sdeint(sde, x1, span, method=method, dt=dt * (1 + 1e-9), bm=bm)
    return out[-1], counter.n


# ----------------------------------------------------------------------------------------------
# accuracy


def rms(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


def fmt(v) -> str:
    return DASH if v is None or not np.isfinite(v) else f"{v:.2e}"


def accuracy(pname: str, rejected: list[str]):
    """results[(library, method)][nfe] = (err, w2, nfe_used, variant)."""
    problem = PROBLEMS[pname]
    n = N_ACC[pname]
    x1 = problem.law(T_S).sample(n, rng=SEED)
    progress(f"{pname}: DOP853 reference ({n} points)")
    pf = dc.ProbabilityFlowODE(PROCESS, problem.score)
    ref0 = reference_ode_solution(pf, x1, T_S, T_E)
    refs: dict = {}

    def ref_at(t_end: float) -> np.ndarray:
        # diffusers' float32 alphas_cumprod puts its last noise level at t = 1.0002e-3, not 1e-3:
        # its pathwise reference ends at its own end point (DOP853 from the same x_1)
        key = round(t_end, 13)
        if key == round(T_E, 13):
            return ref0
        if key not in refs:
            refs[key] = reference_ode_solution(pf, x1, T_S, t_end)
        return refs[key]

    law_e = problem.law(T_E)
    exact = law_e.sample(n, rng=SEED + 1)
    floor = dc.w2(law_e.sample(n, rng=SEED + 2), exact)
    x1t = torch.as_tensor(x1)
    score = problem.score
    res: dict = {}

    def put(lib, method, nfe, x, used, variant, *, pathwise=True, t_end=T_E):
        xn = x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if not np.all(np.isfinite(xn)):
            rejected.append(f"{pname} {lib} {method} {variant} NFE {nfe}: non-finite output")
            return
        err = rms(xn, ref_at(t_end)) if pathwise else None
        key = err if pathwise else None
        cur = res.setdefault((lib, method), {}).get(nfe)
        if pathwise and cur is not None and cur[0] is not None and cur[0] <= key:
            return
        w = dc.w2(xn, exact)
        if not pathwise and cur is not None and cur[1] <= w:
            return
        res[(lib, method)][nfe] = (err, w, used, variant)

    progress(f"{pname}: diffusers")
    for name in DIFFUSERS:
        for variant in VARIANTS[name]:
            for nfe in NFES:
                try:
                    r = DiffusersRun(name, variant, nfe)
                except Exception as e:  # a variant the scheduler does not support at this NFE
                    why = str(e).split(":")[0] if "zero-length step" in str(e) else str(e)  # not the levels
                    rejected.append(f"{pname} diffusers {name} {variant} NFE {nfe}: {type(e).__name__}: {why}")
                    continue
                if r.calls < 1:
                    continue
                if not r.ok():
                    rejected.append(
                        f"{pname} diffusers {name} {variant} NFE {nfe}: runs t {r.t_start:.6g} -> {r.t_end:.6g}, "
                        f"not 1 -> 1e-3 (or a zero-length last step)"
                    )
                    continue
                try:
                    x, used = r.run(score, x1t)
                except Exception as e:
                    rejected.append(f"{pname} diffusers {name} {variant} NFE {nfe}: {type(e).__name__}: {e}")
                    continue
                assert used <= nfe, (name, used, nfe)
                put("diffusers", name, nfe, x, used, variant, t_end=r.t_end)

    progress(f"{pname}: torchdiffeq")
    for method, per in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        for grid in ("uniform", "log_snr"):
            for nfe in NFES:
                steps = nfe // per
                if steps < 1:
                    continue
                x, used = torchdiffeq_run(method, score, x1t, steps=steps, grid=grid)
                assert used <= nfe, (method, used, nfe)
                put("torchdiffeq", method, nfe, x, used, grid)
    dopri = []
    for k in np.arange(1.0, 10.5, 0.5):
        tol = 10.0 ** (-k)
        try:
            x, used = torchdiffeq_run("dopri5", score, x1t, tol=tol)
        except Exception as e:
            rejected.append(f"{pname} torchdiffeq dopri5 tol {tol:.0e}: {type(e).__name__}: {e}")
            continue
        dopri.append((used, tol, x))
    for nfe in NFES:
        for used, tol, x in dopri:
            if used <= nfe:
                put("torchdiffeq", "dopri5", nfe, x, used, f"tol {tol:.0e}")
        if nfe not in res.get(("torchdiffeq", "dopri5"), {}):
            rejected.append(
                f"{pname} torchdiffeq dopri5: no tolerance within NFE {nfe} "
                f"(fewest: {min(u for u, _, _ in dopri) if dopri else '?'})"
            )

    progress(f"{pname}: diffcore ODE")
    for name in DC_ODE:
        per = dc.get_solver(name).nfe_per_step
        for grid in DC_GRIDS:
            for nfe in NFES:
                steps = nfe // per
                if steps < 1:
                    continue
                try:
                    sol = dc.sample(PROCESS, score, x1, method=name, steps=steps, t_min=T_E, t_max=T_S, grid=grid)
                except ValueError as e:
                    rejected.append(f"{pname} diffcore {name} {grid} NFE {nfe}: {e}")
                    continue
                put("diffcore", name, nfe, sol.x, sol.nfe, grid)

    progress(f"{pname}: SDE samplers")
    for method in ("euler", "reversible_heun"):
        for nfe in NFES:
            steps = nfe - 1 if method == "reversible_heun" else nfe
            x, used = torchsde_run(method, score, x1t, steps, SEED)
            if used > nfe:
                rejected.append(f"{pname} torchsde {method} NFE {nfe}: used {used} evaluations")
            put("torchsde", method, nfe, x, used, "uniform dt", pathwise=False)
    for name in DC_SDE:
        for grid in ("uniform", "log_snr"):
            for nfe in NFES:
                sol = dc.sample(PROCESS, score, x1, method=name, steps=nfe, t_min=T_E, t_max=T_S, grid=grid, rng=SEED)
                put("diffcore", name, nfe, sol.x, sol.nfe, grid, pathwise=False)
    return res, floor, n


def accuracy_tables(pname: str, res: dict, floor: float, n: int) -> list[Table]:
    problem = PROBLEMS[pname]
    t1 = Table(
        f"{pname} — RMS pathwise error vs DOP853 at t = 1e-3 (best variant; actual NFE in brackets)",
        [
            f"data: {problem.description}; {n} points x_1 ~ exact law at t = 1 (seed {SEED}), VP-SDE(0.1, 20).",
            "cell: RMS |x - x_DOP853| over points [NFE used] variant. SDE samplers: —.",
        ],
        ["library", "method", *(f"NFE {k}" for k in NFES)],
    )
    t2 = Table(
        f"{pname} — W2 to exact samples of the law at t = 1e-3 (same runs as above)",
        [f"W2 (POT, exact) between {n} output points and {n} exact samples; floor (two exact sets): {floor:.3e}."],
        ["library", "method", *(f"NFE {k}" for k in NFES)],
    )
    for (lib, method), cells in res.items():
        row1, row2 = [], []
        for k in NFES:
            c = cells.get(k)
            if c is None:
                row1.append(DASH)
                row2.append(DASH)
                continue
            err, w, used, var = c
            row1.append(f"{fmt(err)} [{used}] {var}" if err is not None else DASH)
            row2.append(f"{fmt(w)} [{used}]")
        t1.add(lib, method, *row1)
        t2.add(lib, method, *row2)
    return [t1, t2]


def ratio_table(pname: str, res: dict, floor: float) -> Table:
    t = Table(
        f"{pname} — best diffcore vs best peer (ODE methods, pathwise error; and W2 of all methods)",
        [
            "ratio = diffcore / peer; < 1 means diffcore is more accurate.",
            f"W2 floor (two exact sample sets): {floor:.3e}; W2 differences below ~the floor are noise.",
        ],
        [
            "NFE",
            "best diffcore (err)",
            "best peer (err)",
            "err ratio",
            "best diffcore (W2)",
            "best peer (W2)",
            "W2 ratio",
        ],
    )
    for k in NFES:

        def best(libs, idx):
            cand = [
                (c[k][idx], f"{lib}:{m} {c[k][3]}")
                for (lib, m), c in res.items()
                if lib in libs and k in c and c[k][idx] is not None
            ]
            return min(cand) if cand else (float("nan"), DASH)

        de, dn = best({"diffcore"}, 0)
        pe, pn = best({"diffusers", "torchdiffeq"}, 0)
        dw, dwn = best({"diffcore"}, 1)
        pw, pwn = best({"diffusers", "torchdiffeq", "torchsde"}, 1)
        t.add(
            k,
            f"{de:.2e} {dn}",
            f"{pe:.2e} {pn}",
            f"{de / pe:.3f}",
            f"{dw:.3e} {dwn}",
            f"{pw:.3e} {pwn}",
            f"{dw / pw:.3f}",
        )
    return t


# ----------------------------------------------------------------------------------------------
# timing


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        s = time.perf_counter()
        fn()
        out.append(time.perf_counter() - s)
    return float(np.median(out))


def timing(nfe: int = 20, repeats: int = 5) -> Table:
    t = Table(
        f"Time per step, {N_TIME} points, NFE {nfe}, 1 thread (median of {repeats})",
        [
            "per step = run time / steps; model = the exact score called alone at the same batch "
            "(median over the run's times);",
            "overhead/step = (run time - NFE x model time) / steps; ratio = diffcore overhead / peer overhead.",
        ],
        ["dim", "library", "method", "steps", "NFE", "ms/step", "model ms/eval", "overhead ms/step", "vs diffcore"],
    )
    for pname, dim in (("P1", 2), ("P2", 64)):
        problem = PROBLEMS[pname]
        score = problem.score
        x1 = problem.law(T_S).sample(N_TIME, rng=SEED)
        x1t = torch.as_tensor(x1)
        ts_mid = np.linspace(T_S, T_E, nfe)

        def model_time(xs, ts=ts_mid):
            def f():
                for tt in ts:
                    score(xs, float(tt))

            return median_time(f, repeats) / len(ts)

        m_torch, m_np = model_time(x1t), model_time(x1)
        rows = []

        def add(lib, method, steps, fn, mtime):
            used = {}

            def f():
                used["n"] = fn()

            total = median_time(f, repeats)
            n_used = used["n"]
            over = (total - n_used * mtime) / steps
            rows.append([f"{dim}-D", lib, method, steps, n_used, total / steps * 1e3, mtime * 1e3, over * 1e3])

        progress(f"timing {pname}")
        for name in ("ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_3", "deis_3", "euler", "heun", "rk4"):
            per = dc.get_solver(name).nfe_per_step
            st = nfe // per

            def run_dc(name=name, st=st, x=x1t):
                return dc.sample(PROCESS, score, x, method=name, steps=st, t_min=T_E, grid="log_snr").nfe

            add("diffcore (torch)", name, st, run_dc, m_torch)
            if name in ("ddim", "dpm_solver_pp_3m", "unipc_3"):

                def run_np(name=name, st=st):
                    return dc.sample(PROCESS, score, x1, method=name, steps=st, t_min=T_E, grid="log_snr").nfe

                add("diffcore (numpy)", name, st, run_np, m_np)
        for name in ("ddim", "dpmsolver++2", "dpmsolver++3", "unipc3", "deis3", "euler", "heun"):

            def run_df(name=name):
                r = DiffusersRun(name, "default", nfe)
                return r.run(score, x1t)[1]

            steps = nfe // 2 if name == "heun" else nfe
            add("diffusers", name, steps, run_df, m_torch)
        for method, per in (("euler", 1), ("midpoint", 2), ("rk4", 4)):

            def run_td(method=method, per=per):
                return torchdiffeq_run(method, score, x1t, steps=nfe // per, grid="log_snr")[1]

            add("torchdiffeq", method, nfe // per, run_td, m_torch)
        for method in ("euler", "reversible_heun"):
            steps = nfe - 1 if method == "reversible_heun" else nfe

            def run_sde(method=method, steps=steps):
                return torchsde_run(method, score, x1t, steps, SEED)[1]

            add("torchsde", method, steps, run_sde, m_torch)
        dc_best = min(r[7] for r in rows if r[1] == "diffcore (torch)")
        for r in rows:
            ratio = DASH if r[1].startswith("diffcore") else f"{dc_best / r[7]:.3f}" if r[7] > 0 else DASH
            t.add(r[0], r[1], r[2], r[3], r[4], f"{r[5]:.3f}", f"{r[6]:.3f}", f"{r[7]:.3f}", ratio)
    t.notes.append("vs diffcore = (lowest diffcore-torch overhead/step of the same dim) / (this peer's overhead/step).")
    return t


def main() -> None:
    start = time.perf_counter()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        header = [
            "diffcore vs peers: VP-SDE(0.1, 20), exact score, t from 1 to 1e-3"
            " (convention map: diffcore.interop, as benchmarks/peers/run.py says).",
            *machine_lines(),
            "threads pinned to 1: torch.set_num_threads(1) and threadpoolctl.threadpool_limits(limits=1); float64.",
            "peers: " + ", ".join(f"{p} {version(p)}" for p in ("diffusers", "torchdiffeq", "torchsde")),
        ]
        print("\n".join(header), end="\n\n", flush=True)
        tables: list[Table] = []
        rejected: list[str] = []
        for pname in ("P1", "P2"):
            res, floor, n = accuracy(pname, rejected)
            for tab in [*accuracy_tables(pname, res, floor, n), ratio_table(pname, res, floor)]:
                tables.append(tab)
                print(tab.text(), flush=True)
        tab = timing()
        tables.append(tab)
        print(tab.text(), flush=True)
        rej = Table("Variants not compared", ["runs rejected by the end-point check or that failed"], ["run"])
        for r in rejected:
            rej.add(r)
        if not rejected:
            rej.add(DASH)
        tables.append(rej)
        print(rej.text(), flush=True)
    footer = f"bench_peers finished in {time.perf_counter() - start:.0f} s"
    write_markdown("bench_peers", [*header, footer], tables)
    print(footer)


if __name__ == "__main__":
    main()
