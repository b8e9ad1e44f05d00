r"""``check_sampler``: run someone's sampler on an analytic problem with the exact model and judge it.

Pathwise (``kind="ode"``).  From the same ``x_init`` over the same interval, the sampler's output
is compared with the DOP853 solution of the probability-flow ODE (error ``~1e-11``), on a sweep
of grids.  Three independent looks, because the measured order alone misses real bugs (a model
evaluated at the next grid time keeps order 1; a dropped last step on a uniform grid too):

1. the error and its measured order against the declared order, and against diffcore's
   methods of that order on the same grids at equal NFE;
2. the times the model is evaluated at (the kit's score records them): an explicit method
   evaluates at ``ts[0]`` first and at the start ``ts[-2]`` of the last step, never outside
   ``[ts[-1], ts[0]]``;
3. an endpoint probe: four steps of ``h = 0.0025`` from ``t = 0.5``, where one step moves the
   solution ~20x more than a first-order method errs over all four (measured below), so the
   output is classified as the solution at ``ts[-1]``, at ``ts[-2]`` (last step dropped), the
   denoised ``E[x_0 | x_{ts[-1]}]`` (a final denoising step) or ``x_init`` (no step at all).

Weak (``kind="sde"``, Gaussian problems).  The output law is compared with the exact marginal at
``ts[-1]`` through its mean and variance along the eigendirections of the target covariance,
with Monte Carlo standard errors, and with the exact output laws of diffcore's methods of that
order (:func:`~diffcore.testing.propagate_gaussian_law`, no Monte Carlo).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from diffcore._array import resolve_rng
from diffcore._validation import check_choice, check_scalar_time, check_steps
from diffcore.dynamics import ProbabilityFlowODE, ReverseSDE
from diffcore.samplers import GRIDS, SOLVERS, get_solver, integrate, time_grid
from diffcore.testing._instrument import Recorder, check_sampler_output, host
from diffcore.testing._oracles import fit_order, propagate_gaussian_law
from diffcore.testing._problems import Problem
from diffcore.testing._report import SamplerReport

__all__ = ["check_sampler"]

Array = Any

#: a measured order may fall this far below the declared one: the slope over the three finest grids
#: of a correct method is within 0.15 of its order on the kit's problems (measured for every diffcore
#: method, tests/test_kit_sampler.py), and the planted bugs that keep converging lose a whole order
ORDER_SLACK = 0.3
#: "far above every diffcore method": the error per NFE may be this many times that of the least
#: accurate diffcore method of the declared order; the diffcore methods of one order differ by at
#: most ~4x among themselves on the kit's problems, a bug that does not converge by 100x or more
RATIO_LIMIT = 10.0
#: errors at or below this multiple of the points' RMS size are at the DOP853 reference's floor
#: (rtol = atol = 1e-12 gives ~1e-11): no order is fitted through them
FLOOR = 1e-8
#: significance of a Monte Carlo comparison: max over 2 d statistics of |z|; P(|z| > 6) = 2e-9 per
#: statistic, 3e-5 for 128 statistics on 40 grids: the SDE check does not fail by chance
Z_SIGMA = 6.0
#: an SDE weak error enters the order fit only when it is this many standard errors (log error within 0.1)
Z_FIT = 10.0
#: the endpoint probe: k steps of h from t = PROBE_START
PROBE_START, PROBE_STEP, PROBE_STEPS = 0.5, 0.0025, 4


def _problem(problem: Any) -> Problem:
    if isinstance(problem, Problem):
        return problem
    if isinstance(problem, str):
        return Problem(problem)
    raise TypeError(f"problem must be a Problem or a problem name; got {type(problem).__name__}")


def _steps(steps: Any) -> tuple[int, ...]:
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise TypeError(f"steps must be a sequence of step counts, e.g. (16, 32, 64, 128); got {type(steps).__name__}")
    out = tuple(check_steps(s, "steps") for s in steps)
    if len(out) < 2 or any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"steps must hold at least two strictly increasing step counts; got {steps!r}")
    return out


def _grid(sampler: Any, process: Any, steps: int, t_min: float, t_max: float, grid: str) -> np.ndarray:
    """The sampler's own grid (``sampler.time_grid``) or the kit's."""
    if not hasattr(sampler, "time_grid"):
        return time_grid(process, steps, t_min=t_min, t_max=t_max, kind=grid)
    ts = np.asarray(host(sampler.time_grid(steps)), dtype=np.float64).reshape(-1)
    if ts.size < 2 or not np.all(np.diff(ts) < 0) or ts[-1] < 0 or ts[0] > 1:
        raise ValueError(f"sampler.time_grid({steps}) must be a decreasing grid in [0, 1]; got {ts}")
    return ts


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


def _at_nfe(rows: Sequence[tuple[int, float, float]], nfe: float) -> float:
    """A method's error at ``nfe``, interpolated (extrapolated at the ends) linearly in log-log."""
    x = np.log([r[1] for r in rows])
    y = np.log([max(r[2], 1e-300) for r in rows])
    i = int(np.clip(np.searchsorted(x, math.log(nfe)) - 1, 0, len(x) - 2))
    slope = (y[i + 1] - y[i]) / (x[i + 1] - x[i])
    return float(math.exp(y[i] + slope * (math.log(nfe) - x[i])))


def _time_symptoms(rec: Recorder, ts: np.ndarray) -> list[str]:
    """What the evaluation times say about the loop: off-by-one, dropped last step, out-of-range times."""
    if not rec.times:
        return [f"the model was never evaluated on the grid of {len(ts) - 1} steps"]
    times = rec.all_times()
    tol = 1e-3 * float(np.min(np.abs(np.diff(ts))))  # user code may rebuild t from other units
    out = []
    above, below = times[times > ts[0] + tol], times[times < ts[-1] - tol]
    if above.size or below.size:
        bad = float(above[-1]) if above.size else float(below[0])
        out.append(
            f"the model is evaluated at t = {bad:.6g}, outside the integration interval [ts[-1], ts[0]] = "
            f"[{ts[-1]:.6g}, {ts[0]:.6g}] (grid of {len(ts) - 1} steps)"
        )
    first = rec.first_time
    if abs(first - ts[0]) > tol:
        if abs(first - ts[1]) <= tol:
            out.append(
                f"the first model evaluation is at ts[1] = {ts[1]:.6g}, not at the start ts[0] = {ts[0]:.6g}: the "
                f"model is evaluated at the next grid time (time index off by one)"
            )
        else:
            out.append(
                f"the first model evaluation is at t = {first:.6g}, not at the start ts[0] = {ts[0]:.6g}: an "
                f"explicit method evaluates the model where the step starts"
            )
    if np.min(np.abs(times - ts[-2])) > tol:
        out.append(
            f"the model is never evaluated at ts[-2] = {ts[-2]:.6g}, where the last step starts (grid of "
            f"{len(ts) - 1} steps; last evaluation at t = {float(times[0]):.6g}): the last step is dropped"
        )
    return out


def _same_order(problem: Problem, order: int, stochastic: bool) -> list[str]:
    """diffcore's fixed-step methods of ``order`` that apply to the problem's ODE (or reverse SDE)."""
    dyn = (ReverseSDE if stochastic else ProbabilityFlowODE)(problem.process, problem.score)
    names = []
    for name, cls in SOLVERS.items():
        if cls.order != order or cls.stochastic != stochastic or cls.requires.unmet(dyn) is not None:
            continue
        if stochastic and not get_solver(name).affine_step:
            continue  # its output law is not Gaussian-exact (pc's batch-dependent corrector)
        names.append(name)
    return names


def check_sampler(
    sampler: Callable[..., Array],
    problem: Any,
    *,
    declared_order: int,
    kind: str = "ode",
    steps: Sequence[int] | None = None,
    n: int | None = None,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    grid: str = "log_snr",
    rng: Any = 0,
    like: Array = None,
) -> SamplerReport:
    r"""Check a sampler against an analytic problem with its exact model; a report with a verdict and reasons.

    The sampler follows the kit's protocol ``sampler(score, x_init, ts, rng=None) -> x``: it
    integrates from ``ts[0]`` down to ``ts[-1]`` with the diffcore-convention score ``(x, t) ->
    grad log p_t(x)`` (a per-step function becomes one through
    :func:`~diffcore.testing.solver_from_step` and :func:`~diffcore.testing.sampler_from_solver`;
    other libraries' conventions through :mod:`diffcore.interop`).  It is run on grids of
    ``steps`` steps from ``t_max`` to ``t_min`` (``time_grid(process, s, kind=grid)``, or
    ``sampler.time_grid(s)`` when the sampler chooses its own times), with the problem's exact score,
    instrumented to count the calls (NFE per point) and record the times they are made at.  On a
    problem whose process reaches pure noise (``alpha(1) = 0``, e.g. rectified flow), the sampler
    gets the exact *velocity* reparametrized as a score (:meth:`Problem.flow_model`): velocity
    samplers (:mod:`diffcore.interop`'s, :func:`~diffcore.dynamics.velocity_of`) then run from
    ``t = 1``; a score there does not determine the velocity (``f`` is infinite), so a sampler that
    asks for the score at ``t = 1`` gets a ``ValueError`` saying so.

    ``kind="ode"`` (a deterministic sampler of the probability-flow ODE, Song et al. 2021, eq. 13)
    fails when one of these holds:

    * the measured order — the least-squares slope of ``log error`` on ``log(1/steps)`` over the
      three finest grids, errors above the reference's floor — is below
      ``declared_order - 0.3`` (:data:`ORDER_SLACK`); the pathwise error is the RMS over ``n``
      points of ``|x - x_ref|``, ``x_ref`` the DOP853 solution from the same ``x_init`` at ``ts[0]``
      to ``ts[-1]`` (:meth:`Problem.reference`);
    * the error at the finest grid is more than 10x (:data:`RATIO_LIMIT`) that of *every* diffcore
      method of the declared order at the same NFE (log-log interpolation of their sweeps on the
      same grids);
    * the evaluation times show an off-by-one time index (first evaluation at ``ts[1]``), a dropped
      last step (no evaluation at ``ts[-2]``) or times outside ``[ts[-1], ts[0]]``;
    * on the endpoint probe (4 steps of 0.0025 from ``t = 0.5``) the output is not the solution at
      ``ts[-1]`` but at ``ts[-2]``, or the denoised ``E[x_0 | x_{ts[-1]}]``, or ``x_init``.

    ``kind="sde"`` (a stochastic sampler of the reverse SDE with ``noise_scale = 1``, Song et al.
    2021, eq. 6) needs a Gaussian problem (``"P2"``), whose output laws are exact: the sampler
    draws its own noise, so there is no pathwise reference.  Started from ``n`` exact draws at
    ``ts[0]``, its output is compared with the exact marginal ``N(m, C)`` at ``ts[-1]`` along the
    eigenvectors ``u_i`` of ``C``: ``b_i = u_i . (mean - m) / sqrt(lam_i)`` and
    ``v_i = u_i^T Cov u_i / lam_i - 1``, each with its Monte Carlo standard error (from the sample's
    own second and fourth moments); the weak error is ``max_i max(|b_i|, |v_i|)``.  It fails when

    * some ``|b_i|`` or ``|v_i|`` exceeds 10x the largest of diffcore's methods of that order
      (exact laws by :func:`~diffcore.testing.propagate_gaussian_law`, no Monte Carlo) by more than
      6 standard errors (:data:`Z_SIGMA`); or
    * the order fitted over the errors that are at least 10 standard errors (log error within
      0.1), with its standard error ``s`` from those, is below ``declared_order - 0.3`` by more
      than ``5 s``; and the evaluation-time checks above.

    Why it cannot fail by chance: with ``2 d`` statistics per grid, each ``P(|z| > 6) = 2e-9``, so
    a correct sampler fails the 6-sigma test with probability ``< 1e-4`` on 64-D problems; the order
    test allows 5 standard errors.  With the defaults (``n = 4000``) it sees law errors of
    ``~0.1`` per eigendirection (what Euler–Maruyama makes at 64 steps on P2); smaller ones need a
    larger ``n``.  The ODE check has no randomness beyond ``x_init`` (fixed by ``rng``).

    Parameters
    ----------
    sampler : the callable to check (see above).
    problem : a :class:`Problem` or its name (``"P1"``, ``"P2"``, ``"skewed"``, ``"mixture16"``, ``"graphs"``).
    declared_order : the global order the sampler claims (weak order for ``kind="sde"``), an int >= 1.
    kind : ``"ode"`` or ``"sde"``.
    steps : the sweep of step counts, increasing (default ``(16, 32, 64, 128)`` for ODEs — from 16
        log-SNR steps on, every diffcore method is in its asymptotic range on the kit's problems —
        and ``(16, 32, 64)`` for SDEs).
    n : points per run (default 64 for ``"ode"``, 4000 for ``"sde"``).
    t_min, t_max : the ends of the kit's grids (ignored when the sampler has ``time_grid``).
    grid : the kind of the kit's grids: ``"log_snr"`` (default), ``"uniform"`` or ``"edm"``.
    rng : seed or generator for ``x_init`` and the sampler's noise; the same ``rng`` gives the same report.
    like : an array whose type, dtype and device ``x_init`` takes (e.g. a torch tensor for a torch
        sampler); NumPy float64 by default.

    Returns
    -------
    :class:`SamplerReport` — ``.passed``, ``.messages`` (each symptom in a sentence),
    ``.measured_order``, ``.table`` (steps, NFE, error, standard error), ``.comparison`` and
    ``.details``; ``print(report)`` shows them.

    Raises
    ------
    TypeError, ValueError
        for a bad argument (an unknown problem name, ``declared_order`` not a positive int, ``kind``
        not ``"ode"``/``"sde"``, ``kind="sde"`` on a non-Gaussian problem), and for a sampler whose
        output has another array type or shape than ``x_init``, or NaN or infinity.

    Example
    -------
    >>> import diffcore as dc
    >>> from diffcore.testing import sampler_from_solver
    >>> report = check_sampler(sampler_from_solver("heun", dc.VPSDE()), "P1", declared_order=2)
    >>> report.passed, round(report.measured_order)
    (True, 2)
    """
    if not callable(sampler):
        raise TypeError(f"sampler must be callable (score, x_init, ts, rng=None) -> x; got {type(sampler).__name__}")
    problem = _problem(problem)
    declared_order = check_steps(declared_order, "declared_order")
    check_choice("kind", kind, ("ode", "sde"))
    check_choice("grid", grid, GRIDS)
    t_min, t_max = check_scalar_time(t_min, "t_min"), check_scalar_time(t_max, "t_max")
    sde = kind == "sde"
    steps = _steps(((16, 32, 64) if sde else (16, 32, 64, 128)) if steps is None else steps)
    n = check_steps(4000 if sde else 64, "n") if n is None else check_steps(n, "n")
    if sde and not problem.is_gaussian:
        raise ValueError(
            f"kind='sde' needs a Gaussian problem, whose output laws are exact (e.g. 'P2'); {problem.name!r} is a "
            f"{type(problem.data).__name__}"
        )
    gen = resolve_rng(rng)
    seed = int(gen.integers(2**62)) if isinstance(gen, np.random.Generator) else int(gen.initial_seed())
    grids = [_grid(sampler, problem.process, s, t_min, t_max, grid) for s in steps]
    run = _run_sde if sde else _run_ode
    return run(sampler, problem, declared_order, steps, grids, n, seed, like)


def _sample_run(sampler, problem, ts, n, seed, like, sampler_seed=None):
    """One run: ``x_init`` (exact draws at ``ts[0]``), the recorder and the checked output (NumPy)."""
    x_init = problem.sample_marginal(n, float(ts[0]), rng=seed, like=like)
    # the exact score behind a counter; for a process that reaches pure noise, the exact velocity behind the
    # counter, reparametrized as a score (Problem.flow_model): a velocity sampler then never needs f at alpha = 0
    rec = Recorder(problem.velocity if problem.reaches_pure_noise else problem.score, n)
    model = problem.flow_model(rec) if problem.reaches_pure_noise else rec
    # an ODE sampler is called without rng (the protocol's default None): it may not take one at all
    out = sampler(model, x_init, ts) if sampler_seed is None else sampler(model, x_init, ts, rng=sampler_seed)
    return x_init, rec, check_sampler_output(out, x_init, len(ts) - 1)


def _verdict(problem, kind, order, messages, notes, **kw) -> SamplerReport:
    return SamplerReport(
        check=f"check_sampler on {problem.name} ({kind})",
        passed=not messages,
        messages=tuple(messages),
        notes=tuple(notes),
        kind=kind,
        declared_order=order,
        **kw,
    )


# -- ODE ---------------------------------------------------------------------------------------------
def _window_order(steps: Sequence[int], errors: Sequence[float], floor: float) -> tuple[float | None, list[int]]:
    """The order fitted over the three finest grids whose errors are above ``floor`` (``None`` if fewer than 2)."""
    pairs = [(s, e) for s, e in list(zip(steps, errors))[-3:] if e > floor]
    if len(pairs) < 2:
        return None, [s for s, _ in pairs]
    return fit_order([s for s, _ in pairs], [e for _, e in pairs]), [s for s, _ in pairs]


def _order_symptoms(measured, used, order, attained, stderr=None) -> tuple[list[str], list[str]]:
    """Compare the measured order with the declared one, calibrated by what diffcore's methods attain.

    ``stderr``: the Monte Carlo standard error of a weak order; it is allowed 5 of them.
    """
    if measured is None:
        return [], [
            "errors at the reference's floor on the finest grids: the sampler agrees with the DOP853 solution to "
            "its accuracy; no order measured"
        ]
    allowed = order - ORDER_SLACK
    notes = []
    if attained is not None and attained - ORDER_SLACK / 2 < allowed:
        # the sweep is pre-asymptotic on this problem: hold the sampler to what a method of its order attains
        allowed = attained - ORDER_SLACK / 2
        notes.append(
            f"diffcore's order-{order} methods measure down to {attained:.2f} on these grids (pre-asymptotic): the "
            f"sampler's order is held to {allowed:.2f} instead of {order - ORDER_SLACK:.1f}; a finer steps sweep "
            "tightens it"
        )
    if measured + 5 * (stderr or 0.0) >= allowed:
        return [], notes
    if stderr is not None:
        why = ": the law error does not shrink as the grid is refined" if measured < ORDER_SLACK else ""
        return [
            f"measured weak order {measured:.2f} +- {stderr:.2g} over steps {used} is below the declared order "
            f"{order} by more than 5 standard errors (allowed: {allowed:.2f}){why}"
        ], notes
    why = (
        ": the error does not decrease as the grid is refined, so the sampler converges to something other than the "
        "probability-flow ODE (a wrong sign or factor in the score term, eps and x0 or sigma and sigma^2 confused)"
        if measured < ORDER_SLACK
        else ""
    )
    return [
        f"measured order {measured:.2f} over steps {used} is below the declared order {order} (allowed: "
        f"{allowed:.2f}){why}"
    ], notes


def _run_ode(sampler, problem, order, steps, grids, n, seed, like) -> SamplerReport:
    messages, notes, refs, table, runs = [], [], {}, [], []
    for s, ts in zip(steps, grids):
        x_init, rec, y = _sample_run(sampler, problem, ts, n, seed, like)
        key = (float(ts[0]), float(ts[-1]))
        if key not in refs:
            refs[key] = problem.reference(x_init, *key)
        table.append((s, rec.nfe, _rms(y, refs[key]), 0.0))
        runs.append((x_init, rec, y, ts))
    for _, rec, _, ts in runs:
        found = _time_symptoms(rec, ts)
        if found:
            messages += found
            break
    first_ref = next(iter(refs.values()))
    scale = max(1.0, _rms(first_ref, np.zeros_like(first_ref)))  # the size of the points
    floor = FLOOR * scale
    comparison, distance = _compare_ode(problem, order, steps, grids, runs, refs)
    measured, used = _window_order(steps, [r[2] for r in table], floor)
    theirs = [_window_order(steps, [r[2] for r in rows], floor)[0] for rows in comparison.values()]
    attained = min((o for o in theirs if o is not None), default=None)
    found, said = _order_symptoms(measured, used, order, attained)
    messages, notes = messages + found, notes + said
    details: dict[str, Any] = {
        "grids": [ts.tolist() for ts in grids],
        "floor": floor,
        "diffcore_orders": dict(zip(comparison, theirs)),
    }
    if comparison:
        nfe_u, err_u = table[-1][1], table[-1][2]
        at = {m: _at_nfe(rows, nfe_u) for m, rows in comparison.items()}
        worst = max(at, key=at.get)
        ratio = {m: err_u / e for m, e in at.items()}
        details["ratio_to_diffcore"] = ratio
        if err_u > floor and err_u > RATIO_LIMIT * at[worst]:
            messages.append(
                f"the error {err_u:.3g} at {nfe_u:.3g} NFE is {ratio[worst]:.3g}x that of {worst}, the least accurate "
                f"diffcore method of order {order} at that NFE (allowed: {RATIO_LIMIT:g}x)"
            )
        twins = [m for m, far in distance.items() if far < 1e-10 * scale]
        if twins:
            notes.append(
                f"the output equals diffcore's {', '.join(twins)} to rounding on every grid (the same algorithm)"
            )
    else:
        notes.append(f"no diffcore method of order {order} applies to this problem: no error-per-NFE comparison")
    if not hasattr(sampler, "time_grid"):
        probe_messages, probe_details = _probe(sampler, problem, order, n, seed, like)
        messages += probe_messages
        details["probe"] = probe_details
    else:
        notes.append("the sampler chooses its own times (time_grid): no endpoint probe; see the evaluation times")
    return _verdict(
        problem,
        "ode",
        order,
        messages,
        notes,
        measured_order=measured,
        table=tuple(table),
        comparison=comparison,
        details=details,
    )


#: diffcore's comparison runs, shared by the checks of one session: (key) -> (x at the end, nfe)
_RUNS: dict[tuple, tuple[np.ndarray, int]] = {}
_RUNS_MAX = 1024


def _law_key(problem: Problem) -> tuple | None:
    """A key for the problem's law and process, or ``None`` when they cannot be keyed by value."""
    data, process = problem.data, problem.process
    arrays = [getattr(data, a, None) for a in ("weights", "means", "covs", "mean", "cov")]
    if not all(a is None or isinstance(a, np.ndarray) for a in arrays):
        return None
    key = repr(process)
    if " at 0x" in key:  # a process whose parameters are functions: only the same object is the same process
        key = f"{key}#{id(process)}"
    return (type(data).__name__, key, *(None if a is None else (a.shape, a.tobytes()) for a in arrays))


def _diffcore_ode(problem, method, x_init, ts):
    """``(x at ts[-1] on the host, nfe)`` of diffcore's ``method`` on the problem's ODE.

    The comparison of :func:`check_sampler` runs every diffcore method of the declared order on the
    same points and grids for every sampler it checks; the runs are deterministic, so they are kept
    (NumPy points, a law and process keyed by value; at most ``_RUNS_MAX``) and shared.
    """
    law = _law_key(problem) if isinstance(x_init, np.ndarray) else None
    key = None if law is None else (law, method, x_init.shape, x_init.tobytes(), np.asarray(ts).tobytes())
    if key is not None and key in _RUNS:
        return _RUNS[key]
    sol = integrate(ProbabilityFlowODE(problem.process, problem.flow_model()), x_init, ts, method)
    out = (host(sol.x), sol.nfe)
    if key is not None and len(_RUNS) < _RUNS_MAX:
        _RUNS[key] = out
    return out


def _compare_ode(problem, order, steps, grids, runs, refs):
    """diffcore's methods of ``order`` on the same grids and ``x_init``: their sweeps, and how far from the sampler.

    A method that cannot run on a grid (the exponential integrators need a finite log-SNR, so no
    ``ts[-1] = 0``) is left out of the comparison.
    """
    comparison, distance = {}, {}
    for m in _same_order(problem, order, stochastic=False):
        rows, far = [], 0.0
        try:
            for s, ts, (x_init, _, y, _) in zip(steps, grids, runs):
                x, nfe = _diffcore_ode(problem, m, x_init, ts)
                rows.append((s, float(nfe), _rms(x, refs[(float(ts[0]), float(ts[-1]))])))
                far = max(far, float(np.max(np.abs(x - y))))
        except (ValueError, FloatingPointError, ZeroDivisionError):
            continue
        comparison[m], distance[m] = tuple(rows), far
    return comparison, distance


def _probe(sampler, problem, order, n, seed, like):
    """The endpoint probe: k short steps from PROBE_START; which time is the output the solution at?"""
    ts = PROBE_START - PROBE_STEP * np.arange(PROBE_STEPS + 1)
    x_init, _, y = _sample_run(sampler, problem, ts, n, seed + 1, like)
    x0 = host(x_init)
    last, prev = problem.reference(x0, ts[0], ts[-1]), problem.reference(x0, ts[0], ts[-2])
    candidates = {
        "last": _rms(y, last),
        "prev": _rms(y, prev),
        "denoised": _rms(y, host(problem.x0(last, float(ts[-1])))),
        "start": _rms(y, x0),
    }
    gap = _rms(last, prev)
    dc_err = {m: _rms(_diffcore_ode(problem, m, x0, ts)[0], last) for m in _same_order(problem, order, False)}
    details = {"ts": ts.tolist(), "distances": candidates, "step_gap": gap, "diffcore_errors": dc_err}

    def clear(k: str) -> bool:  # k is 4x nearer than every other candidate
        return candidates[k] <= 0.25 * min(v for j, v in candidates.items() if j != k)

    if clear("last"):
        return [], details
    head = (
        f"endpoint probe ({PROBE_STEPS} steps of {PROBE_STEP} from t = {ts[0]} to {ts[-1]:.4g}): the output is "
        f"{candidates['last']:.3g} (RMS) from the solution at ts[-1]"
    )
    tails = {
        "prev": f" but {candidates['prev']:.3g} from the solution at ts[-2] = {ts[-2]:.4g}: the last step is dropped",
        "denoised": f" but {candidates['denoised']:.3g} from the denoised E[x_0 | x_ts[-1]]: the sampler ends with a "
        "denoising step (the protocol returns x at ts[-1])",
        "start": f" but {candidates['start']:.3g} from x_init: the sampler does not move the state",
    }
    for k, tail in tails.items():
        if clear(k):
            return [head + tail], details
    worst = max(dc_err.values(), default=math.nan)
    return [
        head + f", {candidates['last'] / gap:.2g}x what one step moves it ({gap:.3g}; diffcore's order-{order} "
        f"methods err {worst:.2g} here): over this short interval the sampler does not follow the probability-flow "
        f"ODE"
    ], details


# -- SDE ---------------------------------------------------------------------------------------------
def _law_errors(mean, cov, target) -> np.ndarray:
    """Exact per-direction errors ``(b_1..b_d, v_1..v_d)`` of ``N(mean, cov)`` against the target law."""
    lam, u = np.linalg.eigh(np.asarray(target.cov))
    b = (u.T @ (mean - np.asarray(target.mean))) / np.sqrt(lam)
    v = np.einsum("ji,jk,ki->i", u, cov, u) / lam - 1.0
    return np.concatenate([b, v])


def _sample_errors(y, target) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo per-direction errors of a sample ``y (n, d)`` and their standard errors."""
    lam, u = np.linalg.eigh(np.asarray(target.cov))
    z = ((y - np.asarray(target.mean)) @ u) / np.sqrt(lam)
    nn = z.shape[0]
    zc = z - z.mean(axis=0)
    sq = zc**2
    est = np.concatenate([z.mean(axis=0), sq.sum(axis=0) / (nn - 1) - 1.0])
    se = np.concatenate([z.std(axis=0, ddof=1), sq.std(axis=0, ddof=1)]) / math.sqrt(nn)
    return est, se


def _run_sde(sampler, problem, order, steps, grids, n, seed, like) -> SamplerReport:
    messages, notes, table, stats = [], [], [], []
    rng = np.random.default_rng(seed)
    methods = _same_order(problem, order, stochastic=True)
    comparison: dict[str, list[tuple[int, float, float]]] = {m: [] for m in methods}
    for s, ts in zip(steps, grids):
        _, rec, y = _sample_run(sampler, problem, ts, n, seed, like, sampler_seed=int(rng.integers(2**62)))
        if not messages:
            messages += _time_symptoms(rec, ts)
        target, start = problem.marginal(float(ts[-1])), problem.marginal(float(ts[0]))
        est, se = _sample_errors(y, target)
        k = int(np.argmax(np.abs(est)))
        table.append((s, rec.nfe, float(abs(est[k])), float(se[k])))
        stats.append((est, se))
        dyn = ReverseSDE(problem.process, problem.score)
        for m in methods:
            mean, cov = propagate_gaussian_law(dyn, m, np.asarray(start.mean), np.asarray(start.cov), ts)
            nfe = float(s * get_solver(m).nfe_per_step)
            comparison[m].append((s, nfe, float(np.max(np.abs(_law_errors(mean, cov, target))))))
    details: dict[str, Any] = {"grids": [ts.tolist() for ts in grids]}
    if methods:
        ratios = []
        for (s, nfe, err, _), (est, se) in zip(table, stats):
            ref = max(_at_nfe(rows, nfe) for rows in comparison.values())
            excess = np.abs(est) - Z_SIGMA * se - RATIO_LIMIT * ref
            ratios.append(err / ref if ref > 0 else math.inf)
            if np.max(excess) > 0 and not any("law" in m for m in messages):
                k = int(np.argmax(excess))
                d = est.size // 2
                what = f"{'mean' if k < d else 'variance'} along eigendirection {k % d}"
                messages.append(
                    f"the output law at {s} steps is off the exact marginal in its {what} by {abs(est[k]):.3g} "
                    f"(+- {se[k]:.2g}), more than {RATIO_LIMIT:g}x the largest error of diffcore's order-{order} "
                    f"methods ({', '.join(methods)}: {ref:.3g}) beyond {Z_SIGMA:g} standard errors"
                )
        details["ratio_to_diffcore"] = dict(zip(steps, ratios))
    else:
        notes.append(f"no affine diffcore SDE method of order {order}: no comparison of output laws")
    usable = [(s, e, se) for s, _, e, se in table if e > Z_FIT * se]
    measured = None
    if len(usable) >= 2:
        used = [u[0] for u in usable]
        x = np.log(1.0 / np.array(used, dtype=float))
        w = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
        measured = fit_order(used, [u[1] for u in usable])
        se_slope = float(np.sqrt(np.sum((w * np.array([u[2] / u[1] for u in usable])) ** 2)))
        details["order_stderr"] = se_slope
        # what diffcore's methods of the order attain over the same grids (exact laws: no noise)
        theirs = [fit_order(used, [r[2] for r in rows if r[0] in used]) for rows in comparison.values()]
        attained = min(theirs, default=None)
        details["diffcore_orders"] = dict(zip(comparison, theirs))
        found, said = _order_symptoms(measured, used, order, attained, stderr=se_slope)
        messages, notes = messages + found, notes + said
    else:
        notes.append(
            f"fewer than two weak errors exceed {Z_FIT:g} standard errors (n = {n}): the law is within Monte Carlo "
            "noise of the exact marginal; no order measured (a larger n resolves smaller errors)"
        )
    notes.append(
        "stochastic sampler: no pathwise endpoint probe; the last step is checked through the evaluation times"
    )
    return _verdict(
        problem,
        "sde",
        order,
        messages,
        notes,
        measured_order=measured,
        table=tuple(table),
        comparison={m: tuple(r) for m, r in comparison.items()},
        details=details,
    )
