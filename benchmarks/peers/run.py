"""All the peers in one table: diffcore's ODE samplers against diffusers, k-diffusion, flow_matching,
torchdiffeq (also in log-SNR and sigma/alpha time) and torchsde (issues 7 and 14).

Run with ``make bench-peers`` (it builds the separate environment ``.venv-bench`` with the peers;
this file lives in ``benchmarks/peers/`` so that ``benchmarks/run_all.py``, which globs
``benchmarks/bench_*.py`` only, never picks it up).  Tables to stdout and to
``benchmarks/results/bench_peers.md``.  Threads are pinned to 1 (``torch.set_num_threads(1)`` and
``threadpoolctl.threadpool_limits(1)``).  ``python benchmarks/peers/run.py --quick`` runs P1 only at
NFE 5 and 10 without the timing (a smoke run, under a minute); ``--problems linear,mix32`` and
``--nfe 5,10`` choose problems and budgets (any option but ``--retune``: no timing, no markdown written).
The full run (NFE 5, 10, 20, 50 on five problems, and the loop overhead) takes about 8.5 minutes on 2
cores, of which the schedule tuning about 5 (none when cached).

Problems (``benchmarks/problems.py``; every one a :class:`diffcore.testing.Problem`, exact score,
velocity and DOP853 reference)
---------------------------------------------------------------------------------------------
* **P1** (2-D circle mixture) and **P2** (64-D anisotropic Gaussian) under VP-SDE(0.1, 20);
* **linear**: P1's data under the linear path ``alpha = 1 - t``, ``sigma = t`` (rectified flow,
  flow_matching's ``CondOTProbPath`` and torchcfm's ``ConditionalFlowMatcher(sigma=0)`` in the
  other clock).  ``alpha(1) = 0``: the log-SNR is infinite at ``t = 1`` and ``sigma/alpha`` too.
  Everyone starts at ``t = 1`` itself from the same points (``N(0, I)``, the exact law there): no
  shifted start.  diffcore runs its model ``Problem.flow_model()`` (the exact velocity
  ``alpha' E[x_0|x] - sigma sigma' score`` reparametrized as a score, which the probability-flow
  dynamics read back as the velocity: finite at ``alpha = 0``).  What cannot start at ``alpha = 0``
  is listed in "Variants not compared": the ``log_snr`` and ``edm`` grids (infinite log-SNR), the
  solvers whose step needs ``lambda(t_max)`` finite, k-diffusion (its ``x / alpha`` variable),
  torchdiffeq in log-SNR / sigma-over-alpha time, diffusers and torchsde (VP only here);
* held out, nobody tunes on them (``problems.held_out_problems()``): **mix32** (32-D mixture,
  weights 0.9 / 0.05 / 0.03 / 0.02, anisotropic components, VP) and **VE-P1** (P1's data under
  ``VESDE(0.01, 50)``).

Every method integrates from ``t_s = 1`` to ``t_e = 1e-3`` from the same points ``x_1 ~`` the exact
law at ``t = 1`` (seed 1).  Error: RMS over points of ``|x - x_ref|``, ``x_ref`` the DOP853
(rtol = atol = 1e-12) solution of the probability-flow ODE from those points (``Problem.reference``).
W2 (POT, exact) of the best run of each cell to as many exact samples at ``t_e``; floor = W2 between
two exact sample sets.  NFE = counted model calls ``<=`` the budget; per cell the best variant
(grid / integration variable / tolerance) is kept and named.

Convention mapping (the heart of the comparison)
------------------------------------------------
*diffusers* (VP problems only: the schedulers are built for ``PROCESS``; discrete DDPM time
``k = 0..999``, ``alphas_cumprod[k]``), through ``diffcore.interop``:

* the schedulers get ``trained_betas = diffusers_betas(PROCESS, 1000)``, the exact discretisation of
  VP-SDE(0.1, 20) on ``t_k = (k + 1)/1000`` (``alphas_cumprod[k] = alpha(t_k)^2``): timestep 999 is
  ``t = 1`` and timestep 0 is ``t = 1e-3`` (up to diffusers' float32 cumprod: its last level is
  ``t = 1.0002e-3``, and that run's reference ends there);
* the model is ``model_for_diffusers(score, PROCESS, scheduler, "epsilon")``: the exact eps-prediction
  of the level the scheduler is at (``alphas_cumprod[timestep]`` or ``sigmas[step_index]``, mapped to
  the continuous ``t`` of the same log-SNR), so it is exact on any grid the scheduler uses;
* the runs: ``sampler_from_diffusers(...)(score, x_1, ts)`` on the scheduler's own grid
  ``time_grid(steps)``, with the variance-exploding state mapping of the sigma-based schedulers; Heun
  by hand, stopped after its ``2m`` calls before its jump to ``sigma = 0``.  End points:
  DDIM ``timestep_spacing="trailing"``, ``set_alpha_to_one=False``; DPMSolverMultistep and UniPC
  ``final_sigmas_type="sigma_min"``; Euler custom timesteps ``linspace(999, 0, n + 1)[:-1]``; a variant
  whose grid does not run ``1 -> 1e-3`` or has a zero-length step is rejected and listed.  Variants:
  default spacing, ``use_karras_sigmas``, ``use_lu_lambdas`` where the scheduler has them.

*k-diffusion* (``sample_dpmpp_2m``, ``sample_heun``, ``sample_lms``, ``sample_dpm_adaptive``; loaded by
``diffcore.interop.import_kdiffusion_sampling``; problems with ``alpha(1) > 0``: VP and VE):
variance-exploding variable ``x_ve = x / alpha``, ``sigma_ve = sigma / alpha`` (Karras et al. 2022,
sec. 4); the model is ``denoiser_for_kdiffusion(score, process)``, ``D(x_ve, sigma_ve) = (x_t + sigma_t^2
score(x_t, t)) / alpha_t`` at the ``t`` with ``sigma_t / alpha_t = sigma_ve`` (exact).  Grids: k-diffusion's
own ``get_sigmas_karras(n, sigma_ve(1e-3), sigma_ve(1), rho=7)`` without its appended 0 (the run ends at
``t = 1e-3``, not at ``sigma = 0``), and diffcore's ``uniform`` / ``log_snr`` / ``edm`` grids mapped to
``sigma_ve`` (``sampler_from_kdiffusion``).  ``sample_heun`` takes Heun steps (2 calls) on every
interval (its Euler branch is only for a final ``sigma = 0``); ``sample_lms`` is 4th-order linear
multistep in ``sigma``.  ``sample_dpm_adaptive(model, x_1/alpha(1), sigma_ve(1e-3), sigma_ve(1))``
(order 3, ``eta = 0``: deterministic) over a sweep of ``rtol = atol``: per budget the most accurate
run within it.

*flow_matching* (``flow_matching.solver.ODESolver``; all problems): noise at ``s = 0``, data at
``s = 1``: ``s = 1 - t``, the model ``velocity_for_flow_matching(v)``, ``u(x, s) = -v(x, 1 - s)``
(``diffcore.interop``) of the exact probability-flow velocity ``v = Problem.velocity`` (for the linear
path the form that is finite at ``alpha = 0``), on ``time_grid = 1 - ts`` with ``step_size=None``:
the fixed-grid methods ``euler`` (1 call per step), ``midpoint`` (2), ``heun3`` (3), ``rk4`` (4, the
3/8 rule) step exactly on ``1 - ts`` for ``ts`` = diffcore's ``uniform`` / ``log_snr`` / ``edm`` grids
(where they exist); ``dopri5`` on ``[0, 1 - 1e-3]`` over a sweep of ``rtol = atol`` (its velocity clips
``s`` to ``[0, 1]``: the initial-step heuristic probes beyond the end).

*torchdiffeq* ``odeint`` fixed-grid ``euler``, ``midpoint``, ``rk4`` in three integration variables:

* ``t-time``: ``w = 1 - t`` and the model ``velocity_for_flow_matching(v)`` (as flow_matching), on the
  grids ``uniform`` / ``log_snr`` / ``edm`` (the old "log_snr" row was this: a grid uniform in lambda,
  but Runge-Kutta stages in ``t``);
* ``λ-time``: the change of variables ``w = lambda(t) = log(alpha^2/sigma^2)``, ``dx/dw = v(x, t(w)) /
  lambda'(t)``, ``lambda' = 2 (alpha'/alpha - sigma'/sigma)``, ``t(w) = process.log_snr_inverse(w)``: the
  stages sit at intermediate lambda, not intermediate t (the strongest peer of issue 14);
* ``ρ-time``: ``w = -rho(t)``, ``rho = sigma/alpha = e^{-lambda/2}`` (EDM's variable),
  ``dx/dw = v / (rho lambda'/2)``;

each on the same three grids (a grid is a set of times; the variable decides where the stages are);
and ``dopri5`` in ``t``-time over a sweep of ``rtol = atol``.

*torchsde* (VP problems P1, P2; SDE, so W2 only): the reverse SDE ``dx = [f x - g^2 score] dt + g dW``
in ``u = 1 - t``, ``euler`` (Itô) and ``reversible_heun`` (Stratonovich; additive noise: same SDE),
fixed ``dt``, beside diffcore's ``euler_maruyama`` and ``ancestral``.

*torchcfm* 1.0.7 has no sampler of its own: its ``ConditionalFlowMatcher`` (``sigma = 0``) is the linear
path above in flow matching's clock, and its examples integrate the learned velocity with
``torchdiffeq.odeint`` or ``torchdyn``'s ``NeuralODE``.  The torchdiffeq route is the ``t-time`` torchdiffeq
rows of the linear problem.  torchdyn 1.0.6 is not installed: it requires ``pytorch-lightning``,
``torchcde`` and ``torchvision`` (PyPI's torchvision pins its own torch build and would replace the
CPU ``torch==2.13.0`` of this environment), so torchcfm's torchdyn route is not measured.

*diffcore*: configurations a user can call, each a row named for exactly what it is
(``dc_configurations``), with ``steps = NFE // nfe_per_step``, run by ``dc.integrate`` on each grid of
``DC_GRIDS``; "best diffcore" is the best over all of them, named:

* ``name``: every solver of ``dc.SOLVERS`` that is not stochastic and whose declared requirements
  (``requires.unmet``) the problem's ``ProbabilityFlowODE`` meets, default-constructed;
* ``name (lof)``: lower-order final step, ``get_solver(name, first_order_below=f)`` built per grid with
  ``f`` halfway between the grid's last two times, so exactly the last step is first order (diffusers'
  ``lower_order_final``), for the solvers of order >= 2 whose constructor takes ``first_order_below``;
* ``dpm_solver_v3 (EMS)`` and ``dpm_solver_v3 (EMS, lof)``: DPM-Solver-v3 with its statistics estimated
  as a user would, ``dc.model_statistics(process, model, x0, lambdas)`` from ``N_EMS`` exact data samples
  ``x0`` and the exact model on ``EMS_NODES`` half-log-SNR values ``log(alpha/sigma)`` uniform on
  ``[lambda(1), lambda(1e-3)]`` (not on the linear path: its log-SNR is infinite at ``t = 1``); the
  one-off cost (seconds, model calls) is in the table "one-off costs".

``DC_GRIDS`` is a list of ``(label, function(solver, process, steps, t_min, t_max) -> ts or None)``:
``uniform``, ``log_snr``, ``edm``, ``default`` (the solver's declared ``grid``; skipped where it is the
same grid as one already run), and the schedules tuned on the training family only (``None``: not tuned
for this solver):

* ``ays``: ``optimize_schedule(training_family(6, rng=0), nfe=k, methods=(m,), n_points=32, rng=0)``
  for ``m`` in ``AYS_METHODS`` (ipndm, deis_3, unipc_3, dpm_solver_pp_2m) and ``k`` in 5, 10, 20, run
  only by the method it was tuned for at the NFE it was tuned at (not by its ``(lof)`` row), carried to
  every evaluation problem with a finite log-SNR by its log-SNR fractions (``GridSearchResult.grid(process,
  t_min=1e-3, t_max=1)``, i.e. ``grid_from_fractions``); nothing is ever tuned on P1, P2, mix32, VE-P1
  or linear;
* ``ays (NFE-20 schedule, interpolated)``: at an NFE above 20 (50) the NFE-20 schedule carried to the
  number of steps by Align Your Steps' log-linear interpolation (``steps=``).

The search's cost (seconds, family runs, batched model calls) is printed and tabulated.  The tuned
fractions are cached in ``benchmarks/results/peers_schedules.json`` keyed by a digest of diffcore's
source and the search settings (a changed diffcore retunes; ``--retune`` forces it).

Loop overhead per NFE: ``benchmarks/peers/overhead.py`` (trivial linear model, 10^4 points, 2-D and
64-D, torch float32 and float64, NumPy float64, 1 thread); its header says how.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import DASH, Table, machine_lines, progress, write_markdown  # noqa: E402
from problems import PROBLEMS, PROCESS, held_out_problems, linear_path_problem  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import diffcore as dc  # noqa: E402
from diffcore.interop import (  # noqa: E402
    denoiser_for_kdiffusion,
    diffusers_betas,
    import_kdiffusion_sampling,
    model_for_diffusers,
    sampler_from_diffusers,
    sampler_from_kdiffusion,
    velocity_for_flow_matching,
)

NFES = (5, 10, 20, 50)  # --nfe 5,10,20 leaves out 50
N_ACC = {"P1": 1000, "P2": 500, "linear": 1000, "mix32": 500, "VE-P1": 1000}
SEED = 1
T_S, T_E = 1.0, 1e-3
N_TRAIN = 1000
TOLS = [10.0 ** (-k) for k in np.arange(1.0, 4.5, 0.5)]  # the rtol = atol sweeps of the adaptive peers

#: the peers whose pathwise error "best peer" is taken over (torchsde is an SDE: W2 only)
ODE_PEERS = ("diffusers", "k-diffusion", "flow_matching", "torchdiffeq")


def _named_grid(kind: str):
    def grid(solver, process, steps: int, t_min: float, t_max: float) -> np.ndarray:
        return dc.time_grid(process, steps, t_min=t_min, t_max=t_max, kind=kind)

    return grid


def _default_grid(solver, process, steps: int, t_min: float, t_max: float) -> np.ndarray:
    return dc.time_grid(process, steps, t_min=t_min, t_max=t_max, kind=solver.grid)


#: diffcore's grid variants: (label, function(solver, process, steps, t_min, t_max) -> decreasing ts).
#: A searched schedule is one more pair (its function may ignore ``solver``).
DC_GRIDS: list[tuple[str, object]] = [
    ("uniform", _named_grid("uniform")),
    ("log_snr", _named_grid("log_snr")),
    ("edm", _named_grid("edm")),
    ("default", _default_grid),
]
#: the t-grids the peers that take a grid of times run on
PEER_GRIDS = ("uniform", "log_snr", "edm")

# -- schedules tuned on the training family only (Align Your Steps-style; never on an evaluation problem)

#: the methods a schedule is tuned for, the budgets it is tuned at, and the search's settings
AYS_METHODS = ("ipndm", "deis_3", "unipc_3", "dpm_solver_pp_2m")
AYS_NFES = (5, 10, 20)
AYS_FAMILY = {"n": 6, "rng": 0}  # training_family(6, rng=0): random 2-16-D mixtures under VP-SDE(0.1, 20)
AYS_SEARCH = {"n_points": 32, "rng": 0}
AYS_CACHE = HERE.parent / "results" / "peers_schedules.json"
#: (method, nfe) -> the tuned log-SNR fractions (filled by tune_schedules before the accuracy runs)
AYS: dict[tuple[str, int], np.ndarray] = {}


def _ays_tuned(solver, process, steps: int, t_min: float, t_max: float):
    """The schedule tuned for ``solver.name`` at exactly this NFE, carried to ``process`` (None: not tuned)."""
    fr = AYS.get((solver.name, steps * solver.nfe_per_step))
    if fr is None:
        return None
    from diffcore.search import grid_from_fractions

    return grid_from_fractions(process, fr, t_min=t_min, t_max=t_max)


def _ays_interpolated(solver, process, steps: int, t_min: float, t_max: float):
    """Where no schedule was tuned at this NFE: the largest tuned below it, carried to ``steps`` by the
    log-linear interpolation of Align Your Steps (``GridSearchResult.grid(..., steps=)``)."""
    nfe = steps * solver.nfe_per_step
    if (solver.name, nfe) in AYS:
        return None
    below = [k for (m, k) in AYS if m == solver.name and k < nfe]
    if not below:
        return None
    fr = AYS[(solver.name, max(below))]
    from diffcore.search import grid_from_fractions

    return grid_from_fractions(process, fr, t_min=t_min, t_max=t_max, steps=steps)


DC_GRIDS += [("ays", _ays_tuned), ("ays (NFE-20 schedule, interpolated)", _ays_interpolated)]


def _source_digest() -> str:
    """A digest of diffcore's source: a cached schedule is reused only by the code that tuned it."""
    import hashlib

    h = hashlib.sha256()
    root = Path(dc.__file__).resolve().parent
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def tune_schedules(nfes, *, retune: bool = False) -> list[str]:
    """Tune one schedule per (method of AYS_METHODS, NFE of AYS_NFES needed by ``nfes``) on the training
    family, fill :data:`AYS` and return the notes (cost of every search; what was cached).

    ``optimize_schedule(training_family(6, rng=0), nfe=k, methods=(m,), n_points=32, rng=0)``: the
    grid's log-SNR fractions, searched by Nelder-Mead from the log-SNR and EDM grids (the defaults of
    the search).  A budget above the largest tuned one is served by interpolation
    (``_ays_interpolated``).  The results are cached in ``AYS_CACHE`` keyed by the digest of diffcore's
    source and the settings; ``--retune`` ignores the cache.
    """
    import json

    from diffcore.search import optimize_schedule, training_family

    want = sorted({k for k in AYS_NFES if k in nfes} | ({max(AYS_NFES)} if max(nfes) > max(AYS_NFES) else set()))
    key = {"diffcore_source": _source_digest(), "family": AYS_FAMILY, "search": AYS_SEARCH}
    cache = {}
    if AYS_CACHE.exists() and not retune:
        stored = json.loads(AYS_CACHE.read_text())
        if stored.get("key") == key:
            cache = stored["schedules"]
    notes, fresh, total = [], [], [0.0, 0, 0]
    family = None
    for m in AYS_METHODS:
        for k in want:
            name = f"{m}@{k}"
            if name not in cache:
                if family is None:
                    family = training_family(AYS_FAMILY["n"], rng=AYS_FAMILY["rng"])
                progress(f"tuning the schedule of {m} at NFE {k} on the training family")
                r = optimize_schedule(family, nfe=k, methods=(m,), **AYS_SEARCH)
                cache[name] = {
                    "fractions": r.log_snr_fractions.tolist(),
                    "error": r.error,
                    "init_error": r.init_error,
                    "seconds": r.seconds,
                    "evaluations": r.evaluations,
                    "model_evaluations": r.model_evaluations,
                    "reference_evaluations": r.reference_evaluations,
                }
                fresh.append(name)
            c = cache[name]
            AYS[(m, k)] = np.asarray(c["fractions"])
            total[0] += c["seconds"]
            total[1] += c["model_evaluations"]
            total[2] += c["evaluations"]
            notes.append(
                f"{m} @ NFE {k}: training-family error {c['error']:.3e} (start, best screened grid: "
                f"{c['init_error']:.3e}); {c['seconds']:.1f} s, {c['evaluations']} family runs, "
                f"{c['model_evaluations']} batched model calls (+ {c['reference_evaluations']} for the DOP853 "
                f"references){'' if name in fresh else ' [cached]'}"
            )
    if fresh:
        AYS_CACHE.parent.mkdir(exist_ok=True)
        AYS_CACHE.write_text(json.dumps({"key": key, "schedules": cache}, indent=1))
    where = "all tuned in this run" if len(fresh) == len(notes) else f"{len(fresh)} of {len(notes)} tuned in this run, "
    where += "" if len(fresh) == len(notes) else f"the others read from {AYS_CACHE.name} (same diffcore source digest)"
    head = (
        f"schedule tuning (training_family({AYS_FAMILY['n']}, rng={AYS_FAMILY['rng']}) only, "
        f"n_points={AYS_SEARCH['n_points']}): {len(notes)} searches, {total[0]:.0f} s, {total[2]} family runs, "
        f"{total[1]} batched model calls; {where}"
    )
    return [head, *notes]


DC_SDE = ["euler_maruyama", "ancestral"]


def all_problems() -> dict:
    """name -> benchmarks.problems.Problem, in table order."""
    return {"P1": PROBLEMS["P1"], "P2": PROBLEMS["P2"], "linear": linear_path_problem(), **held_out_problems()}


def dc_ode_solvers(problem) -> list[str]:
    """The deterministic solvers of ``dc.SOLVERS`` whose declared requirements ``problem``'s PF-ODE meets."""
    dyn = dc.ProbabilityFlowODE(problem.process, problem.flow_model())
    out = []
    for name, cls in dc.SOLVERS.items():
        if cls.stochastic:
            continue
        try:
            solver = dc.get_solver(name)
        except Exception:  # a solver that needs options to be built: not a default-constructible row
            continue
        if solver.requires.unmet(dyn, name) is None:
            out.append(name)
    return out


#: data samples (x_0 ~ the data law, exact) and half-log-SNR nodes of DPM-Solver-v3's estimated statistics
N_EMS = 2000
EMS_NODES = 64


def _lower_order_final(name: str):
    """``get_solver(name, first_order_below=f)``, ``f`` halfway between the grid's last two times: exactly
    the final step is first order (DDIM), the ``lower_order_final`` of diffusers' multistep schedulers."""

    def make(ts: np.ndarray):
        return dc.get_solver(name, first_order_below=0.5 * (float(ts[-2]) + float(ts[-1])))

    return make


def dc_configurations(problem, lam_finite: bool) -> tuple[list, list[str]]:
    """The diffcore rows of one problem: ``[(row label, solver name, make(ts) -> solver)]`` and notes.

    * ``name``: every deterministic solver of ``dc_ode_solvers``, default-constructed;
    * ``name (lof)``: ``get_solver(name, first_order_below=f)`` built per grid with ``f`` between the
      last two grid times, for the solvers of order >= 2 that take ``first_order_below``;
    * ``dpm_solver_v3 (EMS)`` and ``dpm_solver_v3 (EMS, lof)`` (finite log-SNR only):
      ``get_solver("dpm_solver_v3", statistics=ems)`` with ``ems = dc.model_statistics(process, model,
      x0, lambdas)`` estimated as a user would, from ``N_EMS`` exact data samples ``x0`` and the model, on
      ``EMS_NODES`` half-log-SNR values uniform on ``[lambda(1), lambda(1e-3)]``; its one-off cost goes
      to the notes.
    """
    import inspect

    names = dc_ode_solvers(problem)
    out = [(name, name, lambda ts, name=name: dc.get_solver(name)) for name in names]
    for name in names:
        cls = dc.SOLVERS[name]
        if "first_order_below" in inspect.signature(cls.__init__).parameters and cls.order >= 2:
            out.append((f"{name} (lof)", name, _lower_order_final(name)))
    notes = []
    if lam_finite and "dpm_solver_v3" in names:
        process, model = problem.process, problem.flow_model()
        lam = 0.5 * np.asarray(process.log_snr(np.array([T_S, T_E])), dtype=np.float64)
        lambdas = np.linspace(lam[0], lam[1], EMS_NODES)
        x0 = np.asarray(problem.data.sample(N_EMS, rng=SEED + 3), dtype=np.float64)
        counter = Counter()
        clock = time.perf_counter()
        ems = dc.model_statistics(process, counted(model, counter), x0, lambdas, rng=SEED + 4)
        seconds = time.perf_counter() - clock
        notes.append(
            f"dpm_solver_v3 (EMS): dc.model_statistics from {N_EMS} exact data samples on {EMS_NODES} half-log-SNR "
            f"nodes in [{lam[0]:.3f}, {lam[1]:.3f}]: {seconds:.2f} s, {counter.n} batched model calls "
            f"({counter.n * N_EMS} point evaluations), once per problem"
        )
        out.append(("dpm_solver_v3 (EMS)", "dpm_solver_v3", lambda ts: dc.get_solver("dpm_solver_v3", statistics=ems)))

        def v3_lof(ts: np.ndarray):
            f = 0.5 * (float(ts[-2]) + float(ts[-1]))
            return dc.get_solver("dpm_solver_v3", statistics=ems, first_order_below=f)

        out.append(("dpm_solver_v3 (EMS, lof)", "dpm_solver_v3", v3_lof))
    return out, notes


class Counter:
    def __init__(self) -> None:
        self.n = 0


def counted(score, counter: Counter):
    """``score`` that counts its calls in ``counter.n`` (one call = one model evaluation of the peer)."""

    def f(x, t, *args, **kwargs):
        counter.n += 1
        return score(x, t, *args, **kwargs)

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
# torchsde


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
# torchdiffeq and flow_matching: the probability-flow velocity in an integration variable w


class Variable:
    """An increasing integration variable ``w(t)`` along the run ``t: 1 -> 1e-3``, and ``dx/dw = v / w'(t)``.

    ``"t"``: ``w = 1 - t`` (flow matching's clock; the model is ``velocity_for_flow_matching(v)``);
    ``"λ"``: ``w = lambda(t)``, ``w' = lambda' = 2 (alpha'/alpha - sigma'/sigma)``;
    ``"ρ"``: ``w = -rho(t) = -e^{-lambda/2}``, ``w' = rho lambda' / 2``.
    """

    def __init__(self, name: str, process, velocity) -> None:
        self.name, self.process = name, process
        self.u = velocity_for_flow_matching(velocity)  # u(x, s) = -v(x, 1 - s)
        self.v = velocity

    def w_of_t(self, ts: np.ndarray) -> np.ndarray:
        if self.name == "t":
            return 1.0 - ts
        lam = np.asarray(self.process.log_snr(ts), dtype=np.float64)
        return lam if self.name == "λ" else -np.exp(-lam / 2)

    def t_of_w(self, w: float) -> float:
        if self.name == "t":
            return min(max(1.0 - w, 0.0), 1.0)
        lam = w if self.name == "λ" else -2.0 * math.log(-w)
        return float(self.process.log_snr_inverse(lam))

    def dw_dt(self, t: float) -> float:
        p = self.process
        a, s = float(p.alpha(t)), float(p.sigma(t))
        dlam = 2.0 * (float(p.d_alpha(t)) / a - float(p.d_sigma(t)) / s)
        return dlam if self.name == "λ" else (s / a) * dlam / 2

    def field(self):
        if self.name == "t":
            # dopri5's initial-step heuristic probes beyond the end: clip s to [0, 1]
            return lambda w, x: self.u(x, min(max(float(w), 0.0), 1.0))

        def f(w, x):
            t = self.t_of_w(float(w))
            return self.v(x, t) / self.dw_dt(t)

        return f


def ode_peer_run(lib: str, method: str, var: Variable, x1: torch.Tensor, *, ts=None, tol=None):
    """One torchdiffeq ``odeint`` or flow_matching ``ODESolver.sample`` run; ``(x at t_e, counted calls)``."""
    counter = Counter()
    f = var.field()

    def func(w, x):
        counter.n += 1
        return f(w, x)

    if ts is None:  # adaptive, on [w(1), w(1e-3)]
        span = torch.tensor(var.w_of_t(np.array([T_S, T_E])), dtype=x1.dtype)
    else:
        span = torch.tensor(var.w_of_t(np.asarray(ts)), dtype=x1.dtype)
    if lib == "flow_matching":
        from flow_matching.solver import ODESolver

        class U(torch.nn.Module):
            def forward(self, x, t, **extras):
                return func(t, x)

        opts = {} if tol is None else {"atol": tol, "rtol": tol}
        out = ODESolver(velocity_model=U()).sample(x1, step_size=None, method=method, time_grid=span, **opts)
        return out, counter.n
    from torchdiffeq import odeint

    if tol is not None:
        out = odeint(func, x1, span, method=method, rtol=tol, atol=tol, options={"jump_t": span[1:]})
    else:
        out = odeint(func, x1, span, method=method)  # fixed-grid methods step exactly on span
    return out[-1], counter.n


PER_STEP = {"euler": 1, "midpoint": 2, "heun3": 3, "rk4": 4}
FM_METHODS = ("euler", "midpoint", "heun3", "rk4")
TD_METHODS = ("euler", "midpoint", "rk4")


# ----------------------------------------------------------------------------------------------
# k-diffusion

KD_FIXED = {"sample_dpmpp_2m": 1, "sample_heun": 2, "sample_lms": 1}


def kd_karras_ts(process, steps: int, den) -> np.ndarray:
    """k-diffusion's ``get_sigmas_karras`` between the levels of ``t = 1`` and ``t = 1e-3``, as times."""
    ks = import_kdiffusion_sampling()
    smax = float(process.sigma(T_S) / process.alpha(T_S))
    smin = float(process.sigma(T_E) / process.alpha(T_E))
    sig = ks.get_sigmas_karras(steps + 1, smin, smax, rho=7.0).double().numpy()[:-1]  # drop the appended 0
    # k-diffusion computes in float32: its ends are the two levels to float32 rounding; set them exactly
    sig[0], sig[-1] = smax, smin
    ts = np.array([den.time_of(float(s)) for s in sig[1:-1]])
    return np.concatenate([[T_S], ts, [T_E]])
    return ts


def kd_adaptive(process, score, x1: torch.Tensor, tol: float):
    ks = import_kdiffusion_sampling()
    counter = Counter()
    den = denoiser_for_kdiffusion(counted(score, counter), process)
    a1, a_e = float(process.alpha(T_S)), float(process.alpha(T_E))
    smax, smin = float(process.sigma(T_S)) / a1, float(process.sigma(T_E)) / a_e

    def model(x, sigma, **extra):
        # sample_dpm_adaptive takes its end levels through float32 (torch.tensor(sigma_max)): clamp the
        # levels to the process's range (a move of float32 rounding, ~1e-7 relative, at the two ends only)
        return den(x, sigma.clamp(smin, smax), **extra)

    out = ks.sample_dpm_adaptive(model, x1 / a1, smin, smax, rtol=tol, atol=tol, disable=True)
    return out * a_e, counter.n


# ----------------------------------------------------------------------------------------------
# accuracy


def rms(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


def fmt(v) -> str:
    return DASH if v is None or not np.isfinite(v) else f"{v:.2e}"


def short(e: Exception) -> str:
    msg = str(e).split("\n")[0]
    return f"{type(e).__name__}: {msg[:140]}"


class Results:
    """Every run of one problem: best per (library, method, NFE) with its variant; all diffcore runs too."""

    def __init__(self, pname: str, rejected: dict) -> None:
        self.pname, self.rejected = pname, rejected
        self.best: dict = {}  # (lib, method) -> {nfe: [err, w2, used, variant, x]}
        self.every: dict = {}  # (lib, method, variant, nfe) -> err  (diffcore's default-grid table)
        self.solvers: list[str] = []  # the diffcore rows that apply (solvers whose declared requirements are met)
        self.base: dict[str, str] = {}  # diffcore row -> its solver's name in dc.SOLVERS
        self.notes: list[str] = []  # one-off costs of the diffcore configurations (estimated statistics)

    def reject(self, lib: str, method: str, variant: str, nfe, why: str) -> None:
        nfes = self.rejected.setdefault((self.pname, lib, method, variant, why), [])
        if nfe not in nfes:
            nfes.append(nfe)

    def put(self, lib, method, nfe, x, used, variant, err) -> None:
        self.every[(lib, method, variant, nfe)] = err
        cur = self.best.setdefault((lib, method), {}).get(nfe)
        if cur is None or (err is not None and (cur[0] is None or err < cur[0])):
            self.best[(lib, method)][nfe] = [err, None, used, variant, x]


def accuracy(pname: str, problem, rejected: dict, nfes) -> tuple[Results, float, int]:
    process = problem.process
    n = N_ACC[pname]
    x1 = np.asarray(problem.law(T_S).sample(n, rng=SEED), dtype=np.float64)
    progress(f"{pname}: DOP853 reference ({n} points)")
    refs = {round(T_E, 13): problem.reference(x1, T_S, T_E)}

    def ref_at(t_end: float) -> np.ndarray:
        # diffusers' float32 alphas_cumprod puts its last level at t = 1.0002e-3: its reference ends there
        key = round(t_end, 13)
        if key not in refs:
            refs[key] = problem.reference(x1, T_S, t_end)
        return refs[key]

    law_e = problem.law(T_E)
    exact = law_e.sample(n, rng=SEED + 1)
    floor = dc.w2(law_e.sample(n, rng=SEED + 2), exact)
    x1t = torch.as_tensor(x1)
    score, model, velocity = problem.score, problem.flow_model(), problem.velocity
    is_vp = process is PROCESS
    alpha_pos = float(process.alpha(T_S)) > 0
    lam_finite = math.isfinite(process.log_snr(T_S))
    res = Results(pname, rejected)

    def put(lib, method, nfe, x, used, variant, *, t_end=T_E, pathwise=True):
        xn = x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if not np.all(np.isfinite(xn)):
            res.reject(lib, method, variant, nfe, "non-finite output")
            return
        if used > nfe:
            res.reject(lib, method, variant, nfe, f"used {used} calls > budget")
            return
        res.put(lib, method, nfe, xn, used, variant, rms(xn, ref_at(t_end)) if pathwise else None)

    def peer_ts(grid: str, steps: int):
        try:
            return dc.time_grid(process, steps, t_min=T_E, t_max=T_S, kind=grid)
        except ValueError as e:
            return e

    # -- diffusers (VP-SDE(0.1, 20) only)
    if is_vp:
        progress(f"{pname}: diffusers")
        for name in DIFFUSERS:
            for variant in VARIANTS[name]:
                for nfe in nfes:
                    try:
                        r = DiffusersRun(name, variant, nfe)
                    except Exception as e:  # a variant the scheduler does not support at this NFE
                        why = str(e).split(":")[0] if "zero-length step" in str(e) else short(e)
                        res.reject("diffusers", name, variant, nfe, why)
                        continue
                    if r.calls < 1:
                        continue
                    if not r.ok():
                        res.reject("diffusers", name, variant, nfe, "grid does not run 1 -> 1e-3")
                        continue
                    try:
                        x, used = r.run(score, x1t)
                    except Exception as e:
                        res.reject("diffusers", name, variant, nfe, short(e))
                        continue
                    put("diffusers", name, nfe, x, used, variant, t_end=r.t_end)

    # -- k-diffusion (alpha(1) > 0)
    if alpha_pos:
        progress(f"{pname}: k-diffusion")
        ks = import_kdiffusion_sampling()
        den = denoiser_for_kdiffusion(score, process)
        for fname, per in KD_FIXED.items():
            sampler = sampler_from_kdiffusion(getattr(ks, fname), process)
            for nfe in nfes:
                steps = nfe // per
                for grid in ("karras", *PEER_GRIDS):
                    ts = kd_karras_ts(process, steps, den) if grid == "karras" else peer_ts(grid, steps)
                    if isinstance(ts, Exception):
                        res.reject("k-diffusion", "(every method)", grid, nfe, short(ts))
                        continue
                    counter = Counter()
                    try:
                        x = sampler(counted(score, counter), x1, ts, rng=SEED)
                    except Exception as e:
                        res.reject("k-diffusion", fname, grid, nfe, short(e))
                        continue
                    put("k-diffusion", fname, nfe, x, counter.n, grid)
        runs = []
        for tol in TOLS:
            try:
                runs.append((tol, *kd_adaptive(process, score, x1t, tol)))
            except Exception as e:
                res.reject("k-diffusion", "sample_dpm_adaptive", f"tol {tol:.0e}", "-", short(e))
        for nfe in nfes:
            for tol, x, used in runs:
                if used <= nfe:
                    put("k-diffusion", "sample_dpm_adaptive", nfe, x, used, f"tol {tol:.0e}")
            if nfe not in res.best.get(("k-diffusion", "sample_dpm_adaptive"), {}):
                fewest = min((u for _, _, u in runs), default="?")
                res.reject("k-diffusion", "sample_dpm_adaptive", "all tolerances", nfe, f"fewest calls {fewest}")
    else:
        res.reject("k-diffusion", "all samplers", "-", "all", "alpha(1) = 0: no x / alpha variable at the start")

    # -- flow_matching ODESolver and torchdiffeq
    progress(f"{pname}: flow_matching, torchdiffeq")
    variables = ["t"] + (["λ", "ρ"] if lam_finite else [])
    if not lam_finite:
        res.reject("torchdiffeq", "λ-time, ρ-time", "-", "all", "log-SNR infinite at t = 1")
    for lib, methods, vars_ in (("flow_matching", FM_METHODS, ["t"]), ("torchdiffeq", TD_METHODS, variables)):
        for method in methods:
            for vname in vars_:
                var = Variable(vname, process, velocity)
                for grid in PEER_GRIDS:
                    for nfe in nfes:
                        steps = nfe // PER_STEP[method]
                        label = grid if lib == "flow_matching" else f"{vname}-time/{grid}"
                        if steps < 1:
                            continue
                        ts = peer_ts(grid, steps)
                        if isinstance(ts, Exception):
                            res.reject(lib, "(every method)", label, nfe, short(ts))
                            continue
                        try:
                            x, used = ode_peer_run(lib, method, var, x1t, ts=ts)
                        except Exception as e:
                            res.reject(lib, method, label, nfe, short(e))
                            continue
                        put(lib, method, nfe, x, used, label)
        runs = []
        var = Variable("t", process, velocity)
        for tol in TOLS:
            try:
                runs.append((tol, *ode_peer_run(lib, "dopri5", var, x1t, tol=tol)))
            except Exception as e:
                res.reject(lib, "dopri5", f"tol {tol:.0e}", "-", short(e))
        for nfe in nfes:
            for tol, x, used in runs:
                if used <= nfe:
                    put(lib, "dopri5", nfe, x, used, f"tol {tol:.0e}")
            if nfe not in res.best.get((lib, "dopri5"), {}):
                fewest = min((u for _, _, u in runs), default="?")
                res.reject(lib, "dopri5", "all tolerances", nfe, f"fewest calls {fewest}")

    # -- diffcore: every configuration of dc_configurations (plain solvers, lower-order final step, EMS)
    progress(f"{pname}: diffcore ODE")
    dyn = dc.ProbabilityFlowODE(process, model)
    configs, res.notes = dc_configurations(problem, lam_finite)
    res.solvers = [row for row, _, _ in configs]
    res.base = {row: base for row, base, _ in configs}
    for row, base, make in configs:
        base_solver = dc.get_solver(base)
        per = base_solver.nfe_per_step
        for nfe in nfes:
            steps = nfe // per
            if steps < 1:
                continue
            seen = []
            for label, grid_fn in DC_GRIDS:
                if label.startswith("ays") and row != base:  # a tuned schedule: only its own method's row
                    continue
                try:
                    ts = grid_fn(base_solver, process, steps, T_E, T_S)
                except ValueError as e:  # the grid itself cannot be built here: one line for every solver
                    if label.startswith("ays"):  # (a schedule that does not carry to this process)
                        res.reject("diffcore", f"({', '.join(AYS_METHODS)})", label, nfe, short(e))
                    elif label != "default":
                        res.reject("diffcore", "(every solver)", label, nfe, short(e))
                    elif base_solver.grid not in PEER_GRIDS:  # (a named default's failure is listed under its name)
                        res.reject("diffcore", row, f"default ({base_solver.grid})", nfe, short(e))
                    continue
                if ts is None:  # a searched schedule that was not tuned for this method / NFE
                    continue
                ts = np.asarray(ts, dtype=np.float64)
                same = next((lab for lab, g in seen if g.shape == ts.shape and np.array_equal(g, ts)), None)
                if same is not None:  # the default grid is one already run: record it under its name too
                    res.every[("diffcore", row, label, nfe)] = res.every.get(("diffcore", row, same, nfe))
                    continue
                seen.append((label, ts))
                try:
                    sol = dc.integrate(dyn, x1, ts, make(ts), progress=False)
                except (ValueError, TypeError, FloatingPointError, ZeroDivisionError) as e:
                    res.reject("diffcore", row, label, nfe, short(e))
                    continue
                put("diffcore", row, nfe, sol.x, sol.nfe, label)

    # -- SDE samplers (VP P1 / P2: W2 only)
    if is_vp and pname in ("P1", "P2"):
        progress(f"{pname}: SDE samplers")
        for method in ("euler", "reversible_heun"):
            for nfe in nfes:
                steps = nfe - 1 if method == "reversible_heun" else nfe
                x, used = torchsde_run(method, score, x1t, steps, SEED)
                if used > nfe:  # torchsde's extra first call: listed, and compared by W2 anyway
                    res.reject("torchsde", method, "uniform dt", nfe, f"used {used} calls (W2 compared anyway)")
                res.put("torchsde", method, nfe, x.numpy(), used, "uniform dt", None)
        for name in DC_SDE:
            for nfe in nfes:
                sol = dc.sample(process, score, x1, method=name, steps=nfe, t_min=T_E, grid="uniform", rng=SEED)
                res.put("diffcore", name, nfe, np.asarray(sol.x), sol.nfe, "uniform", None)

    # W2 (exact OT, the expensive part) only of the runs the summary names: per NFE the most accurate
    # diffcore and peer ODE runs, and every SDE run
    for k in nfes:
        for libs in ({"diffcore"}, set(ODE_PEERS)):
            cand = [c[k] for (lib, _), c in res.best.items() if lib in libs and k in c and c[k][0] is not None]
            if cand:
                c = min(cand, key=lambda c: c[0])
                c[1] = dc.w2(c[4], exact)
    for cells in res.best.values():
        for c in cells.values():
            if c[0] is None:
                c[1] = dc.w2(c[4], exact)
            c[4] = None
    return res, floor, n


def accuracy_table(pname: str, problem, res: Results, floor: float, n: int, nfes) -> Table:
    t = Table(
        f"{pname} — RMS pathwise error vs DOP853 at t = 1e-3 (best variant; actual NFE in brackets)",
        [
            f"data: {problem.description}; {n} points x_1 ~ exact law at t = 1 (seed {SEED}).",
            "cell: RMS |x - x_DOP853| [NFE used] variant (grid, integration variable or tolerance); "
            "SDE samplers (—): see the W2 column of the summary.",
        ],
        ["library", "method", *(f"NFE {k}" for k in nfes)],
    )
    for (lib, method), cells in res.best.items():
        row = []
        for k in nfes:
            c = cells.get(k)
            row.append(DASH if c is None or c[0] is None else f"{fmt(c[0])} [{c[2]}] {c[3]}")
        if any(r != DASH for r in row):
            t.add(lib, method, *row)
    return t


def default_grid_table(pname: str, res: Results, nfes) -> Table:
    t = Table(
        f"{pname} — diffcore on each solver's declared default grid (SOLVERS[name].grid) and on its best",
        ["cell: error on the default grid / best error over DC_GRIDS (x = default / best; x1.00: default is best)."],
        ["method", "default grid", *(f"NFE {k}" for k in nfes)],
    )
    for (lib, method), cells in res.best.items():
        if lib != "diffcore" or method in DC_SDE:
            continue
        row = []
        for k in nfes:
            d, b = res.every.get(("diffcore", method, "default", k)), cells.get(k)
            if d is None or b is None or b[0] is None:
                row.append(DASH)
            else:
                row.append(f"{d:.2e} / {b[0]:.2e} (x{d / b[0]:.2f})")
        t.add(method, dc.SOLVERS[res.base.get(method, method)].grid, *row)
    return t


def best_of(res: Results, libs, k: int, idx: int):
    cand = [
        (c[k][idx], f"{lib}:{m} [{c[k][2]}] {c[k][3]}")
        for (lib, m), c in res.best.items()
        if lib in libs and k in c and c[k][idx] is not None
    ]
    return min(cand) if cand else (float("nan"), DASH)


def ratio_table(pname: str, res: Results, floor: float, nfes, goal: list) -> Table:
    t = Table(
        f"{pname} — best diffcore vs best peer (ODE methods, pathwise error; W2 of those two runs; SDE samplers by W2)",
        [
            "ratio = diffcore / peer; < 1 means diffcore is more accurate. Peers (pathwise): " + ", ".join(ODE_PEERS),
            f"W2 floor (two exact sample sets): {floor:.3e}; W2 differences below ~the floor are noise.",
        ],
        [
            "NFE",
            "best diffcore (err)",
            "best peer (err)",
            "err ratio",
            "W2 diffcore / peer",
            "SDE: best diffcore W2",
            "SDE: best torchsde W2",
        ],
    )
    for k in nfes:
        de, dn = best_of(res, {"diffcore"}, k, 0)
        pe, pn = best_of(res, set(ODE_PEERS), k, 0)
        dw = next((c[k][1] for (lib, _), c in res.best.items() if lib == "diffcore" and k in c and c[k][0] == de), None)
        pw = next((c[k][1] for (lib, _), c in res.best.items() if lib in ODE_PEERS and k in c and c[k][0] == pe), None)
        sde_d = [(c[k][1], m) for (lib, m), c in res.best.items() if lib == "diffcore" and m in DC_SDE and k in c]
        sde_p = [(c[k][1], m) for (lib, m), c in res.best.items() if lib == "torchsde" and k in c]
        sd = f"{min(sde_d)[0]:.3e} {min(sde_d)[1]}" if sde_d else DASH
        sp = f"{min(sde_p)[0]:.3e} {min(sde_p)[1]}" if sde_p else DASH
        ratio = de / pe if pe > 0 else float("nan")
        w = f"{dw:.3e} / {pw:.3e}" if dw is not None and pw is not None else DASH
        t.add(k, f"{de:.2e} {dn}", f"{pe:.2e} {pn}", f"{ratio:.3f}", w, sd, sp)
        ran = sorted({m for (lib, m), c in res.best.items() if lib == "diffcore" and m not in DC_SDE and k in c})
        goal.append((pname, k, de, dn, pe, pn, ratio, f"{len(ran)} of {len(res.solvers)}"))
    return t


def goal_table(goal: list) -> Table:
    t = Table(
        "Goal check (issue 14): best diffcore pathwise error / best peer's, every (problem, NFE)",
        [
            "goal: ratio <= 0.5; minimum: ratio <= 1; tie: |ratio - 1| < 1e-9 (the same algorithm on the same "
            "grid, equal to rounding: meets the minimum, misses the goal); else MISS (the entry that beats diffcore "
            "is named).",
            "diffcore solvers that ran: of the diffcore rows (configurations: plain solvers whose declared "
            "requirements the problem meets, their '(lof)' lower-order-final versions, 'dpm_solver_v3 (EMS)' "
            "rows), those with at least one run at this NFE (the others: 'Variants not compared', e.g. a step "
            "that divides by alpha cannot start at alpha(1) = 0 on the linear path).",
            "best diffcore: the best over every row and grid (uniform, log_snr, edm, default, and 'ays': a schedule "
            "tuned on the training family only, for that method at that NFE); the winner is named.",
        ],
        ["problem", "NFE", "ratio", "verdict", "best diffcore", "best peer", "diffcore solvers that ran"],
    )
    for pname, k, de, dn, pe, pn, ratio, ran in goal:
        verdict = (
            "goal"
            if ratio <= 0.5
            else f"tie with {pn} (equal to rounding)"
            if abs(ratio - 1.0) < 1e-9
            else "minimum"
            if ratio <= 1.0
            else f"MISS (beaten by {pn})"
        )
        if not np.isfinite(ratio):
            verdict = "no comparison"
        t.add(pname, k, f"{ratio:.3f}", verdict, f"{de:.2e} {dn}", f"{pe:.2e} {pn}", ran)
    return t


def cost_table(costs: list[str]) -> Table:
    t = Table(
        "diffcore configurations: one-off costs (schedule tuning on the training family, estimated statistics)",
        [
            "rows 'name (lof)': get_solver(name, first_order_below=f), f halfway between the grid's last two times "
            "(only the final step is first order); no one-off cost.",
            "grid 'ays': the schedule optimize_schedule tuned for that method at that NFE on "
            f"training_family({AYS_FAMILY['n']}, rng={AYS_FAMILY['rng']}) only, carried to each problem by "
            "GridSearchResult.grid(process, t_min=1e-3, t_max=1) (log-SNR fractions); 'ays (NFE-20 schedule, "
            "interpolated)': the NFE-20 schedule carried to NFE 50 by AYS log-linear interpolation (steps=).",
        ],
        ["cost"],
    )
    for c in costs:
        t.add(c)
    return t


def rejected_table(rejected: dict) -> Table:
    t = Table(
        "Variants not compared",
        ["runs that could not start, failed, left the interval or had no budget (NFE listed)"],
        ["problem", "library", "method", "variant", "NFE", "why"],
    )
    for (pname, lib, method, variant, why), ks in rejected.items():
        t.add(pname, lib, method, variant, ", ".join(str(k) for k in ks), why)
    if not rejected:
        t.add(*(DASH,) * 6)
    return t


def main() -> None:
    import overhead

    quick = "--quick" in sys.argv
    full = all(a == "--retune" for a in sys.argv[1:])  # the full run (timing, markdown), retuned or not
    nfes = (5, 10) if quick else NFES
    if "--nfe" in sys.argv:
        nfes = tuple(int(v) for v in sys.argv[sys.argv.index("--nfe") + 1].split(","))
    start = time.perf_counter()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        peers = ("diffusers", "k-diffusion", "flow-matching", "torchdiffeq", "torchsde")
        header = [
            "diffcore vs peers: exact models, t from 1 to 1e-3 (convention map: diffcore.interop, as "
            "benchmarks/peers/run.py says); accuracy in float64.",
            *machine_lines(),
            "threads pinned to 1: torch.set_num_threads(1) and threadpoolctl.threadpool_limits(limits=1).",
            "peers: " + ", ".join(f"{p} {version(p)}" for p in peers),
            "torchcfm: no sampler of its own (ConditionalFlowMatcher(sigma=0) = the linear path; its examples "
            "integrate with torchdiffeq, i.e. the linear problem's torchdiffeq t-time rows, or with torchdyn, "
            "not installed: torchdyn 1.0.6 requires pytorch-lightning, torchcde and torchvision, whose PyPI "
            "build replaces the CPU torch).",
            "diffcore solvers present: " + ", ".join(dc.SOLVERS),
        ]
        print("\n".join(header), end="\n\n", flush=True)
        tables: list[Table] = []
        rejected: dict = {}
        goal: list = []
        problems = all_problems()
        if quick:
            problems = {"P1": problems["P1"]}
        if "--problems" in sys.argv:
            names = sys.argv[sys.argv.index("--problems") + 1].split(",")
            problems = {k: problems[k] for k in names}
        costs = tune_schedules(nfes, retune="--retune" in sys.argv)
        print("\n".join(costs), end="\n\n", flush=True)
        for pname, problem in problems.items():
            res, floor, n = accuracy(pname, problem, rejected, nfes)
            costs += [f"{pname}: {note}" for note in res.notes]
            for tab in (
                accuracy_table(pname, problem, res, floor, n, nfes),
                default_grid_table(pname, res, nfes),
                ratio_table(pname, res, floor, nfes, goal),
            ):
                tables.append(tab)
                print(tab.text(), flush=True)
        tab = goal_table(goal)
        tables.insert(0, tab)
        print(tab.text(), flush=True)
        tab = cost_table(costs)
        tables.insert(1, tab)
        print(tab.text(), flush=True)
        if full:
            for tab in overhead.tables():
                tables.append(tab)
                print(tab.text(), flush=True)
        tab = rejected_table(rejected)
        tables.append(tab)
        print(tab.text(), flush=True)
    footer = f"bench_peers finished in {time.perf_counter() - start:.0f} s"
    if full:  # the full run only
        write_markdown("bench_peers", [*header, footer], tables)
    print(footer)


if __name__ == "__main__":
    main()
