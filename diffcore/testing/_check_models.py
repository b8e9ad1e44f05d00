r"""Checks of models and schedules against the kit's exact answers: scores, likelihoods, schedules, graph scores.

Each returns a :class:`~diffcore.testing.CheckReport`: ``passed``, the symptoms in ``messages``
and the numbers in ``details``.  A model that raises, or returns something that is not an array
of its input's type, dtype and shape, is a symptom (reported, not raised): the point of the check
is to list what is wrong with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from diffcore._array import as_array, namespace, resolve_rng
from diffcore._validation import (
    check_model_output,
    check_nonnegative,
    check_positive,
    check_scalar_time,
    check_steps,
    describe,
)
from diffcore.distributions import Gaussian, exact_log_prob, marginal
from diffcore.fokker_planck import fp_terms
from diffcore.processes import AbstractProcess
from diffcore.processes._base import G2_ROUNDING
from diffcore.testing._check_sampler import _problem
from diffcore.testing._instrument import host
from diffcore.testing._report import CheckReport

__all__ = ["check_graph_score", "check_likelihood", "check_schedule", "check_score_model"]

Array = Any

#: the times at which a score model is compared with the exact score: small t (sharp scores) to the prior
SCORE_TIMES = (0.01, 0.05, 0.2, 0.5, 0.9)


def _times(times: Any, name: str = "times") -> tuple[float, ...]:
    if isinstance(times, (str, bytes)) or not isinstance(times, Sequence):
        raise TypeError(f"{name} must be a sequence of times in [0, 1]; got {type(times).__name__}")
    out = tuple(check_scalar_time(t, name) for t in times)
    if not out:
        raise ValueError(f"{name} must hold at least one time")
    return out


def _seed(rng: Any) -> int:
    gen = resolve_rng(rng)
    return int(gen.integers(2**62)) if isinstance(gen, np.random.Generator) else int(gen.initial_seed())


def _call(fn: Callable, name: str, messages: list[str], *args: Any) -> Any:
    """``fn(*args)``, or ``None`` with the exception as a symptom."""
    try:
        return fn(*args)
    except Exception as err:  # the user's model failing is what the report is for
        messages.append(f"{name} raised {type(err).__name__}: {err}")
        return None


def _as_output(name: str, out: Any, x: Array, messages: list[str], shape: tuple[int, ...] | None = None) -> Any:
    """``out`` when it is an array of ``x``'s library, device, real dtype and shape; else a symptom and ``None``."""
    try:
        check_model_output(name, out, x, shape=shape)
    except (TypeError, ValueError) as err:
        messages.append(str(err))
        return None
    if out.dtype != x.dtype:
        messages.append(f"{name} returned dtype {out.dtype} for input dtype {x.dtype}: it must keep the input's dtype")
    return out


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _exact_tol(x: Array) -> float:
    """Agreement expected between two evaluations of one model that differ only in bookkeeping.

    ``sqrt(eps)`` of the dtype (1.5e-8 in float64, 3.5e-4 in float32): a reordered sum or a
    broadcast time changes a result by a few ulps times the depth of the computation, far below
    this, while a model that mixes rows or ignores per-row times is off by O(1).
    """
    return math.sqrt(float(np.finfo(np.dtype(str(x.dtype).removeprefix("torch."))).eps))


def check_score_model(
    score: Callable[[Array, Any], Array],
    problem: Any,
    *,
    times: Sequence[float] = SCORE_TIMES,
    n: int = 512,
    tolerance: float = 0.05,
    rng: Any = 0,
    like: Array = None,
) -> CheckReport:
    r"""A user's score model against the problem's exact score, and its array contract.

    At each ``t`` in ``times``, ``n`` exact draws ``x ~ p_t`` (:meth:`Problem.sample_marginal`) give
    the relative ``L^2(p_t)`` error

    .. math:: e(t) = \Big(\sum_i \|s(x_i, t) - \nabla\log p_t(x_i)\|^2 \big/
              \sum_i \|\nabla\log p_t(x_i)\|^2\Big)^{1/2},

    the quantity that bounds the distance of generated samples (Chen et al. 2023, thm. 2), which
    must not exceed ``tolerance`` (your accuracy target: 5 % by default; with ``n = 512`` draws
    its Monte Carlo spread is a few per cent of ``e`` itself).  It also checks that the model

    * returns an array of its input's library, device, dtype and shape;
    * accepts a float ``t`` and an ``(n,)`` array of times with the same result, and evaluates a
      batch that mixes all the times row by row (no interaction between rows): both to within
      ``sqrt(eps)`` of the dtype.

    ``like`` gives the array type of ``x`` (e.g. a float32 torch tensor for a network); NumPy
    float64 by default.  Returns a :class:`CheckReport` with ``details["errors"]`` (``t -> e(t)``).

    Example
    -------
    >>> from diffcore.testing import Problem
    >>> p = Problem("P1")
    >>> check_score_model(p.score, p).passed
    True
    >>> too_long = lambda x, t: 1.1 * p.score(x, t)  # 10 % too long
    >>> print(check_score_model(too_long, p).messages[0])
    relative L2 error 0.1 at t = 0.01 exceeds the tolerance 0.05
    """
    problem = _problem(problem)
    if not callable(score):
        raise TypeError(f"score must be callable (x, t) -> array; got {type(score).__name__}")
    times = _times(times)
    n = check_steps(n, "n")
    tolerance = check_positive("tolerance", tolerance)
    seed = _seed(rng)
    messages: list[str] = []
    errors, xs, outs = {}, [], []
    for k, t in enumerate(times):
        x = problem.sample_marginal(n, t, rng=seed + k, like=like)
        out = _call(score, f"score(x, t={t:g})", messages, x, t)
        out = None if out is None else _as_output("score", out, x, messages)
        if out is None:
            break
        ref = host(problem.score(x, t))
        errors[t] = _rel(host(out), ref)
        xs.append(x)
        outs.append(out)
        tol = _exact_tol(x)
        vec = _call(score, "score(x, t) with t an (n,) array", messages, x, as_array(np.full(n, t), x))
        vec = None if vec is None else _as_output("score with (n,) times", vec, x, messages)
        if vec is not None and _rel(host(vec), host(out)) > tol:
            messages.append(
                f"score(x, t) with t an (n,) array of {t:g} differs from t = {t:g} as a float by "
                f"{_rel(host(vec), host(out)):.2g} (relative; allowed {tol:.1g})"
            )
    for t, e in errors.items():
        if e > tolerance:
            messages.append(f"relative L2 error {e:.2g} at t = {t:g} exceeds the tolerance {tolerance:g}")
    if len(outs) == len(times) > 1:
        xp_all = _concat(xs)
        t_all = as_array(np.repeat(np.asarray(times), n), xs[0])
        mixed = _call(score, "score on a batch mixing all times", messages, xp_all, t_all)
        mixed = None if mixed is None else _as_output("score on a batch mixing all times", mixed, xp_all, messages)
        if mixed is not None:
            gap = _rel(host(mixed), np.concatenate([host(o) for o in outs]))
            if gap > _exact_tol(xp_all):
                messages.append(
                    f"score on one batch mixing the times {list(times)} (an (n,) t) differs from one time per call by "
                    f"{gap:.2g} (relative): rows interact, or per-row times are not applied row by row"
                )
    return CheckReport(
        check=f"check_score_model on {problem.name}",
        passed=not messages,
        messages=tuple(messages),
        details={"errors": errors, "tolerance": tolerance, "n": n},
    )


def _concat(arrays: list[Array]) -> Array:
    return namespace(arrays[0]).concat(arrays, axis=0)


def check_likelihood(
    log_likelihood: Callable[[Array], Any],
    problem: Any,
    *,
    t: float = 1e-3,
    n: int = 64,
    tolerance: float = 0.01,
    rng: Any = 0,
    like: Array = None,
) -> CheckReport:
    r"""A user's log-density estimator against the problem's exact ``log p_t``.

    ``log_likelihood(x)`` is called once on ``n`` exact draws ``x ~ p_t`` (``t = 1e-3`` by
    default: the data end of a probability-flow ODE likelihood, which estimates ``log p_{t_min}``,
    Song et al. 2021, app. D.2) and returns ``(n,)`` log-densities in nats, or an object with
    ``.value`` ``(n,)`` and optionally ``.stderr`` ``(n,)`` (a :class:`~diffcore.LogLikelihood`:
    Hutchinson estimates carry one).  Each point must satisfy

    .. math:: |\hat\ell_i - \log p_t(x_i)| \le \text{tolerance} + 5\, \mathrm{se}_i,

    (a point of a stochastic estimator fails by chance with probability ``< 6e-7``; a NaN standard
    error counts as 0).  The mean error over the points is reported as the bias.  Symptoms: an
    output that is not an ``(n,)`` array of ``x``'s library, NaN, or errors beyond the bound —
    a missing ``-d/2 log(2 pi)``, a divergence with the wrong sign or an ODE run the wrong way.

    Example
    -------
    >>> from diffcore.testing import Problem
    >>> p = Problem("P1")
    >>> check_likelihood(lambda x: p.log_prob(x, 1e-3), p).passed
    True
    """
    problem = _problem(problem)
    if not callable(log_likelihood):
        raise TypeError(f"log_likelihood must be callable x -> (n,) log-densities; got {type(log_likelihood).__name__}")
    t = check_scalar_time(t, "t")
    n = check_steps(n, "n")
    tolerance = check_nonnegative("tolerance", tolerance)
    messages: list[str] = []
    x = problem.sample_marginal(n, t, rng=_seed(rng), like=like)
    out = _call(log_likelihood, "log_likelihood(x)", messages, x)
    details: dict[str, Any] = {"t": t, "tolerance": tolerance}
    if out is not None:
        value = getattr(out, "value", out)
        stderr = getattr(out, "stderr", None)
        value = _as_output("log_likelihood", value, x, messages, shape=(n,))
        if value is not None:
            v = host(value)
            se = np.zeros(n) if stderr is None else np.nan_to_num(host(stderr).reshape(-1), nan=0.0)
            exact = host(problem.log_prob(x, t))
            err = v - exact
            details.update(errors=err, stderr=se, bias=float(np.mean(err)), max_error=float(np.max(np.abs(err))))
            if not np.all(np.isfinite(v)):
                messages.append(
                    f"log_likelihood returned NaN or infinity at {int(np.sum(~np.isfinite(v)))} of {n} points"
                )
            else:
                excess = np.abs(err) - tolerance - 5 * se
                if np.max(excess) > 0:
                    i = int(np.argmax(excess))
                    messages.append(
                        f"log-likelihood error {err[i]:.3g} nats at point {i} (stderr {se[i]:.2g}) exceeds the "
                        f"tolerance {tolerance:g} + 5 stderr; mean error over the {n} points {np.mean(err):.3g}"
                    )
    return CheckReport(
        check=f"check_likelihood on {problem.name}", passed=not messages, messages=tuple(messages), details=details
    )


#: the Gaussian data of the schedule check, and the agreement of the Fokker-Planck sides it requires
_FP_DATA = Gaussian(np.array([0.5, -0.3]), np.array([[1.0, 0.3], [0.3, 0.5]]))
#: with the data scaled to the noise level, fourth-order differences leave at most ~3e-9 of the terms on
#: every process kind (closed-form and numerically differentiated schedules, VE with sigma_max = 2 sigma_min;
#: tests/test_kit_models.py); a drift that misses d log alpha/dt by 1 % leaves ~1e-2 or more
FP_TOLERANCE = 1e-6
#: the time step of the differences: eps^(1/3) min(t, 0.1), not fokker_planck's default eps^(1/5) min(t, 0.1).
#: A schedule interpolated from a table (process_from_diffusers: monotone cubic, C^1 in t) has a jump in its
#: second derivative at every level t_k = (k + 1)/T, so a stencil that straddles one errs by O(k) times the
#: jump (measured 2e-5 of the terms at T = 1000 with the default step, 1.5e-7 with this one); on smooth
#: schedules the fourth-order truncation (k^4) stays far below rounding (eps/k ~ 4e-10 of the terms)
FP_TIME_STEP = float(np.finfo(np.float64).eps) ** (1 / 3)


def check_schedule(
    process: AbstractProcess,
    *,
    times: Sequence[float] | None = None,
    data_at_zero: bool = True,
    n: int = 8,
    rng: Any = 0,
) -> CheckReport:
    r"""Is a forward process consistent with itself?  Its ``alpha``, ``sigma`` against its drift and diffusion.

    A process ``dx = f(t) x dt + g(t) dW`` has the marginals ``x_t = alpha x_0 + sigma eps`` only if
    ``f = d log alpha / dt`` and ``g^2 = d sigma^2/dt - 2 f sigma^2`` (Song et al. 2021, eq. 29;
    Kingma et al. 2021, app. A).  Checked at ``times`` (default 50 points in ``[0.01, 0.99]``):

    * every coefficient (``alpha``, ``sigma``, their derivatives, ``f``, ``g^2``, ``log_snr``) is finite;
    * ``g^2 >= 0`` and the log-SNR ``log(alpha^2 / sigma^2)`` strictly decreases;
    * the density Fokker–Planck equation holds for the exact marginal of a 2-D Gaussian under
      the schedule: the residual of :func:`~diffcore.fp_residual_log_density` (``exact_log_prob``
      uses ``alpha`` and ``sigma``, the equation ``f`` and ``g^2``) is at most ``1e-6`` of its
      terms at ``n`` exact draws per time, the data scaled by ``sigma(t)/alpha(t)`` so that the
      terms are of one size (fourth-order differences in ``t`` with the step
      ``eps^(1/3) min(t, 0.1)`` then err below ``1e-8`` of the terms on smooth schedules and below
      ``2e-7`` on schedules interpolated from a diffusers table, whose second derivative jumps at
      every level; a drift 1 % off its ``alpha`` leaves ``1e-2`` or more);
    * with ``data_at_zero``, ``alpha(0) = 1`` and ``sigma(0) = 0`` (to ``1e-8``): the law at
      ``t = 0`` is the data (``VESDE(variant="song2021")`` is a documented exception).

    A process with a mean shift (mean-reverting) skips the Fokker–Planck step (noted).

    Example
    -------
    >>> import diffcore as dc
    >>> check_schedule(dc.VPSDE()).passed
    True
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    ts = np.linspace(0.01, 0.99, 50) if times is None else np.asarray(_times(times))
    if not isinstance(data_at_zero, bool):
        raise TypeError(f"data_at_zero must be a bool; got {type(data_at_zero).__name__}")
    n = check_steps(n, "n")
    seed = _seed(rng)
    messages: list[str] = []
    notes: list[str] = []
    values: dict[str, np.ndarray] = {}
    for name in ("alpha", "sigma", "d_alpha", "d_sigma", "drift_coef", "diffusion_squared", "log_snr"):
        coefficient = getattr(process, name)
        v = _call(lambda f=coefficient: np.asarray(f(ts), dtype=np.float64), f"{name}(t)", messages)
        if v is None:
            continue
        bad = ~np.isfinite(v)
        if np.any(bad):
            messages.append(f"{name}(t) is not finite at t = {ts[bad][0]:.4g}")
        values[name] = v
    g2, lam = values.get("diffusion_squared"), values.get("log_snr")
    if g2 is not None and np.any(g2 < -G2_ROUNDING):
        messages.append(f"g(t)^2 = {g2.min():.3g} < 0 at t = {ts[np.argmin(g2)]:.4g}: sigma/alpha must not decrease")
    if lam is not None and np.all(np.isfinite(lam)) and not np.all(np.diff(lam) < 0):
        i = int(np.argmax(np.diff(lam) >= 0))
        messages.append(
            f"log-SNR is not strictly decreasing: {lam[i]:.6g} at t = {ts[i]:.4g}, "
            f"{lam[i + 1]:.6g} at t = {ts[i + 1]:.4g}"
        )
    residuals = {}
    if process.shift is not None:
        notes.append("the process has a mean shift: the Fokker–Planck consistency step is skipped")
    elif not messages:
        for k, t in enumerate(ts[:: max(1, len(ts) // 8)]):
            # the data scaled to the noise level, r = sigma/alpha: the marginal's covariance is then sigma^2 (C + I),
            # so the equation's terms are of one size and the differences do not cancel (a fixed data law under a
            # tiny sigma, e.g. VE with sigma_max = 2 sigma_min, leaves rounding of 1e-4 of the terms)
            a, sg = float(process.alpha(float(t))), float(process.sigma(float(t)))
            r = sg / a if a > 0 and sg > 0 else 1.0
            data = Gaussian(r * np.asarray(_FP_DATA.mean), r**2 * np.asarray(_FP_DATA.cov))
            x = marginal(process, data, float(t)).sample(n, rng=seed + k)
            log_prob = exact_log_prob(process, data)
            terms = _call(
                lambda x=x, t=float(t), lp=log_prob: fp_terms(
                    process, lp, x, t, kind="log_density", k=FP_TIME_STEP * min(t, 0.1)
                ),
                f"the Fokker–Planck terms at t = {t:.4g}",
                messages,
            )
            if terms is None:
                break
            scale = max(float(np.max(np.abs(terms.lhs))), float(np.max(np.abs(terms.rhs))), 1e-12)
            residuals[float(t)] = float(np.max(np.abs(terms.residual))) / scale
        bad = {t: r for t, r in residuals.items() if r > FP_TOLERANCE}
        if bad:
            t = max(bad, key=bad.get)
            messages.append(
                f"the density Fokker–Planck residual of the exact marginal is {bad[t]:.2g} of its terms at t = {t:.4g} "
                f"(allowed {FP_TOLERANCE:g}): drift_coef and diffusion_squared do not match alpha and sigma "
                "(f = d log alpha/dt, g^2 = d sigma^2/dt - 2 f sigma^2)"
            )
    if data_at_zero:
        a0 = _call(lambda: float(process.alpha(0.0)), "alpha(0)", messages)
        s0 = _call(lambda: float(process.sigma(0.0)), "sigma(0)", messages)
        if a0 is not None and s0 is not None and not (abs(a0 - 1.0) <= 1e-8 and abs(s0) <= 1e-8):
            messages.append(
                f"alpha(0) = {a0:.6g} and sigma(0) = {s0:.6g}; the law at t = 0 is the data only with alpha(0) = 1 "
                f"and sigma(0) = 0 (pass data_at_zero=False for a schedule that starts from noised data)"
            )
    return CheckReport(
        check=f"check_schedule of {type(process).__name__}",
        passed=not messages,
        messages=tuple(messages),
        notes=tuple(notes),
        details={"times": ts, "fp_residual": residuals, **values},
    )


def check_graph_score(
    score: Callable[..., tuple[Array, Array]],
    problem: Any = "graphs",
    *,
    times: Sequence[float] = (0.1, 0.5, 0.9),
    n: int = 16,
    rtol: float | None = None,
    rng: Any = 0,
    like: Array = None,
) -> CheckReport:
    r"""Permutation equivariance of a joint graph score ``(X, A, t, mask) -> (s_X, s_A)``.

    A law of graphs that does not depend on the order of the nodes has an equivariant score
    (Niu et al. 2020; Jo et al. 2022):

    .. math:: s_X(P X, P A P^T) = P\, s_X(X, A), \qquad s_A(P X, P A P^T) = P\, s_A(X, A)\, P^T

    for every permutation ``P`` (masks permuted with the nodes).  On ``n`` noised graphs of the
    problem's laboratory (``"graphs"``: :meth:`~diffcore.graphs.GraphLaboratory.small`, 4 or 5
    present nodes of 5, noised by the problem's system at each of ``times``), with a random
    permutation per graph, the relative (Frobenius) error of both identities must not exceed
    ``rtol`` (default ``sqrt(eps)`` of the dtype: 1.5e-8 in float64, 3.5e-4 in float32 — a
    permutation only reorders sums, so an equivariant net differs by a few ulps; a positional
    input or an unmasked sum is off by O(1)).  Also: ``s_A`` symmetric and both outputs zero on
    absent nodes (same ``rtol``, relative to the output's size), outputs of the inputs' shapes.

    Example
    -------
    >>> from diffcore.testing import Problem
    >>> p = Problem("graphs")
    >>> check_graph_score(p.graph_score, p).passed
    True
    """
    problem = _problem(problem)
    if problem.laboratory is None:
        raise ValueError(f"check_graph_score needs a graph problem ('graphs'); got {problem.name!r}")
    if not callable(score):
        raise TypeError(f"score must be callable (X, A, t, mask) -> (s_X, s_A); got {type(score).__name__}")
    times = _times(times)
    n = check_steps(n, "n")
    if rtol is not None:
        rtol = check_positive("rtol", rtol)
    gen = np.random.default_rng(_seed(rng))
    lab, system = problem.laboratory, problem.system
    messages: list[str] = []
    worst: dict[str, float] = {}
    for t in times:
        X0, A0, mask = lab.sample(n, gen)
        Xt, At, _, _ = system.sample_marginal(X0, A0, t, gen, mask=mask)
        P = np.eye(lab.n_nodes)[np.stack([gen.permutation(lab.n_nodes) for _ in range(n)])]
        PX, PA, Pm = P @ Xt, P @ At @ P.transpose(0, 2, 1), (P @ mask[:, :, None])[:, :, 0]
        args = [Xt, At, mask, PX, PA, Pm]
        if like is not None:
            args = [as_array(a, like) for a in args]
        tol = rtol if rtol is not None else _exact_tol(args[0])
        base = _graph_call(score, args[0], args[1], t, args[2], messages)
        perm = _graph_call(score, args[3], args[4], t, args[5], messages)
        if base is None or perm is None:
            break
        (s_x, s_a), (p_x, p_a) = base, perm
        checks = {
            "s_X(P X, P A P^T) vs P s_X": _rel(p_x, P @ s_x),
            "s_A(P X, P A P^T) vs P s_A P^T": _rel(p_a, P @ s_a @ P.transpose(0, 2, 1)),
            "s_A - s_A^T": _rel(s_a, s_a.transpose(0, 2, 1)),
            "s_X on absent nodes": float(
                np.linalg.norm(s_x * (1 - mask[:, :, None])) / max(np.linalg.norm(s_x), 1e-300)
            ),
            "s_A on absent nodes": float(
                np.linalg.norm(s_a * (1 - mask[:, :, None] * mask[:, None, :])) / max(np.linalg.norm(s_a), 1e-300)
            ),
        }
        for what, e in checks.items():
            worst[what] = max(worst.get(what, 0.0), e)
            if e > tol and not any(m.startswith(what) for m in messages):
                messages.append(
                    f"{what}: relative error {e:.2g} at t = {t:g} (allowed {tol:.1g}): not permutation equivariant"
                    if "P" in what
                    else f"{what}: relative size {e:.2g} at t = {t:g} (allowed {tol:.1g})"
                )
    return CheckReport(
        check=f"check_graph_score on {problem.name}", passed=not messages, messages=tuple(messages), details=worst
    )


def _graph_call(score, X, A, t, mask, messages) -> tuple[np.ndarray, np.ndarray] | None:
    out = _call(score, "score(X, A, t, mask)", messages, X, A, t, mask)
    if out is None:
        return None
    if not (isinstance(out, tuple) and len(out) == 2):
        messages.append(f"score(X, A, t, mask) must return a pair (s_X, s_A); got {describe(out)}")
        return None
    s_x = _as_output("s_X", out[0], X, messages)
    s_a = _as_output("s_A", out[1], A, messages)
    if s_x is None or s_a is None:
        return None
    return host(s_x), host(s_a)
