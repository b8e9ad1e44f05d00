r"""The log-likelihood of the probability-flow ODE by the instantaneous change of variables."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcore._array import as_array, device_of, namespace, normal, resolve_rng, uniform
from diffcore._validation import (
    Counter,
    Model,
    check_array,
    check_batch,
    check_choice,
    check_finite,
    check_nonnegative,
    check_positive,
    check_progress,
    check_scalar_time,
    check_steps,
    check_unshifted,
    progress_bar,
)
from diffcore.dynamics import AbstractDynamics
from diffcore.dynamics._reverse import velocity_of
from diffcore.likelihood._divergence import check_batch_size, divergence_kind, evaluate
from diffcore.likelihood._summary import LikelihoodSummary, summarize
from diffcore.processes import AbstractProcess
from diffcore.samplers import GRIDS, SOLVERS, Adaptive, get_solver, integrate, time_grid

__all__ = [
    "AUTO_EXACT_MAX_DIM",
    "HUTCHINSON_PROBES",
    "LIKELIHOOD_METHODS",
    "AugmentedFlow",
    "LogLikelihood",
    "log_likelihood",
]

Array = Any

_DIVERGENCES = ("auto", "exact", "hutchinson")
#: ``divergence="auto"`` takes the exact divergence up to this dimension ``D`` (at most 16 backward
#: passes, or 33 shifted batches, per evaluation: 4x the cost of the default Hutchinson estimate,
#: the price of no Monte Carlo error), and Hutchinson above it
AUTO_EXACT_MAX_DIM = 16
#: the number of Hutchinson probes when ``probes`` is not given: enough for a per-point standard
#: error (3 degrees of freedom), 16x cheaper than the exact trace in 64 dimensions
HUTCHINSON_PROBES = 4
_NOISES = ("rademacher", "gaussian")
#: the fixed-step solvers of :data:`~diffcore.SOLVERS` that integrate the augmented ODE: those that
#: need only its drift (no process, no score, no noise), read from their declared requirements
LIKELIHOOD_METHODS: tuple[str, ...] = tuple(
    name
    for name, cls in SOLVERS.items()
    if cls.requires.dynamics is AbstractDynamics and cls.requires.noise == "none"
)

#: SciPy's ``solve_ivp`` integrators, by method name (on the host, error control over the whole batch)
_SCIPY = {"scipy_dop853": "DOP853", "scipy_rk45": "RK45"}


@dataclass(frozen=True, eq=False)
class LogLikelihood:
    r"""The result of :func:`log_likelihood`; every per-point array has shape ``(n,)``.

    Attributes
    ----------
    value : ``log p_{t_min}(x) = prior_term + divergence_integral`` (the mean over the probes
        for Hutchinson).
    stderr : the Monte Carlo standard error of ``value``: the sample standard deviation of the
        per-probe integrals over ``sqrt(probes)`` for Hutchinson (NaN when ``probes = 1``, where
        one draw has no spread to measure); zeros for the exact divergence, which has no Monte
        Carlo error.  Neither includes the ODE discretisation error nor the prior mismatch.
    nfe : score evaluations on a batch of ``n`` points (central differences count their ``2d``
        or ``2 probes`` shifted batches).
    prior_term : ``log p_1(x_1)`` from ``prior_log_prob``.
    divergence_integral : ``int_{t_min}^1 div v(x_t, t) dt`` (mean over the probes).
    probe_integrals : the per-probe integrals, shape ``(probes, n)`` for Hutchinson, else ``None``.
    x_end : ``x_1``, the end of the flow, shaped like ``x``.
    t_min, method : what was asked for.
    divergence : the divergence used, ``"exact"`` or ``"hutchinson"`` (what ``"auto"`` chose).
    probes : the number of Hutchinson probes per point (1 for the exact divergence).

    :meth:`summary` gives the dataset-level mean and its standard error.
    """

    value: Any
    stderr: Any
    nfe: int
    prior_term: Any
    divergence_integral: Any
    probe_integrals: Any
    x_end: Any
    t_min: float
    divergence: str
    method: str
    probes: int = 1

    def summary(self) -> LikelihoodSummary:
        r"""The mean log-likelihood over the points and its standard errors, in nats.

        ``mean = (1/n) sum_i value_i``; ``stderr = s / sqrt(n)`` with ``s`` the sample standard
        deviation of ``value`` over the points: the error of ``mean`` as an estimate of the
        data's expected log-likelihood, covering both the choice of points and the Hutchinson
        noise (which the spread already contains); ``estimator_stderr = sqrt(sum_i stderr_i^2) / n``:
        the Hutchinson part alone, for these points (0 for the exact divergence).  Neither
        includes the solver's error, the prior mismatch or the ``t_min`` gap; see
        :class:`~diffcore.likelihood.LikelihoodSummary`.

        Example
        -------
        >>> import numpy as np
        >>> from diffcore import VPSDE, Gaussian, exact_score
        >>> p, data = VPSDE(), Gaussian(np.zeros(2), np.eye(2))
        >>> s = log_likelihood(p, exact_score(p, data), data.sample(100, rng=0), steps=20).summary()
        >>> s.n, s.estimator_stderr, bool(abs(s.stderr - s.std / 10) < 1e-12)
        (100, 0.0, True)
        """
        return summarize(self.value, self.stderr, "nats")


class AugmentedFlow(AbstractDynamics):
    r"""The probability-flow ODE augmented with its log-determinant, on states ``(n, D + m)``.

    .. math:: \frac{d}{dt}\begin{bmatrix} x \\ \ell \end{bmatrix}
              = \begin{bmatrix} v(x, t) \\ \nabla\cdot v(x, t) \end{bmatrix}, \qquad
              v = f(t) x - \tfrac12 g(t)^2 s(x, t), \quad
              \nabla\cdot v = D f(t) - \tfrac12 g(t)^2 \nabla\cdot s(x, t),

    with ``x`` flattened to ``D`` columns and ``m = 1`` log-determinant column (exact divergence)
    or one per Hutchinson probe, ``eps_j^T (ds/dx) eps_j`` in place of ``div s``.  The linear
    part ``D f(t)`` is exact in every column: only the score part is estimated.  An ODE, so
    any solver of :data:`diffcore.SOLVERS` without noise integrates it, either way in time.
    Its NFE (:meth:`counted`) is in batches of ``n`` points, so a central-difference
    divergence counts its ``1 + 2m`` shifted batches.  When ``score`` is a velocity model
    reparametrized as a score of ``process`` (:func:`~diffcore.reparametrize` with
    ``source="velocity"``), ``v`` and its divergence are taken from that model directly, as in
    :class:`~diffcore.ProbabilityFlowODE`: no division by ``alpha`` or ``g^2``, so schedules whose
    signal coefficient reaches 0 at ``t = 1`` (rectified flow) are integrated to the end.
    With ``batch_size`` the score sees at most that many points per call (the drift, and so every result, is unchanged).
    """

    def __init__(
        self,
        process: AbstractProcess,
        score: Callable,
        event_shape: tuple[int, ...],
        probes: Array | None,
        fd_step: float,
        kind: str,
        batch_size: int | None = None,
    ) -> None:
        self.process, self.score, self.event_shape = process, score, event_shape
        self.model = Model.of(score, "score")
        self.velocity = velocity_of(score, process)
        self.probes, self.fd_step, self.kind = probes, fd_step, kind
        self.batch_size = check_batch_size(batch_size)
        self.dim = math.prod(event_shape)
        self.counter: Counter | None = None

    def counted(self, counter: Counter) -> AugmentedFlow:
        """A copy that adds its score evaluations (in batches of ``n`` points) to ``counter``."""
        new = copy.copy(self)
        new.counter = counter
        return new

    def _flat_score(self, x: Array, t: float) -> Array:
        return self._flat(self.model, x, t)

    def _flat_velocity(self, x: Array, t: float) -> Array:
        return self._flat(self.velocity, x, t)

    def _flat(self, field: Callable, x: Array, t: float) -> Array:
        xp = namespace(x)
        out = field(xp.reshape(x, (x.shape[0], *self.event_shape)), t)
        return xp.reshape(out, (x.shape[0], self.dim))

    def drift(self, y: Array, t: Any) -> Array:
        y, t = check_batch("y", y), check_scalar_time(t)
        xp = namespace(y)
        x = y[:, : self.dim]
        if self.velocity is not None:
            u, div_u, cost = evaluate(self._flat_velocity, self.kind, x, t, self.probes, self.fd_step, self.batch_size)
            if self.counter is not None:
                self.counter.add(cost)
            return xp.concat([u, div_u], axis=1)
        field = self.score if self.kind == "closed_form" else self._flat_score
        s, div_s, cost = evaluate(field, self.kind, x, t, self.probes, self.fd_step, self.batch_size)
        if self.counter is not None:
            self.counter.add(cost)
        f, g2 = self.process.drift_coef(t), self.process.diffusion_squared(t)
        return xp.concat([f * x - (0.5 * g2) * s, (self.dim * f) - (0.5 * g2) * div_s], axis=1)

    def diffusion(self, t: Any) -> Any:
        return 0.0

    @property
    def stochastic(self) -> bool:
        return False

    @property
    def direction(self) -> int:
        return 0


def log_likelihood(
    process: AbstractProcess,
    score: Callable[[Array, Any], Array],
    x: Array,
    *,
    divergence: str = "auto",
    probes: int | None = None,
    t_min: float = 1e-3,
    rng: Any = None,
    method: str = "rk4",
    steps: int = 100,
    grid: str | None = None,
    prior_log_prob: Callable[[Array], Array] | None = None,
    noise: str = "rademacher",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    fd_step: float = 1e-4,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> LogLikelihood:
    r"""``log p_{t_min}(x)`` of the probability-flow ODE by the instantaneous change of variables.

    Integrates ``x`` from ``t_min`` up to ``1`` along ``dx/dt = v(x, t) = f(t) x - g(t)^2 s(x, t) / 2``
    together with ``d ell/dt = div v`` (see :class:`AugmentedFlow`) and returns

    .. math:: \log p_{t_{min}}(x) = \log p_1(x_1) + \int_{t_{min}}^1 \nabla\cdot v(x_t, t)\, dt

    (Chen et al. 2018, thm. 1; Song et al. 2021, app. D.2).  With the exact score and
    ``prior_log_prob`` the exact law at ``t = 1`` the only error is the ODE solver's; with the
    default prior ``process.prior_log_prob`` (``N(0, prior_std^2 I)``) the result carries the
    prior mismatch ``log p_1(x_1) - log N(x_1)`` too.  The result is ``log p`` at ``t_min``, not
    at 0: :func:`~diffcore.likelihood.t_min_gap` measures the difference.

    Parameters
    ----------
    process : the forward process (gives ``f`` and ``g^2``).
    score : ``(x, t) -> array`` shaped like ``x``, ``t`` a float; points must not interact.
    x : array ``(n, ...)`` (NumPy or torch), finite; ``D`` = the product of the trailing axes.
    divergence : how ``div s`` is taken.

        * ``"auto"`` (default): ``"exact"`` where it is cheap, i.e. for an
          :class:`~diffcore.ExactField` score (closed form) or ``D <= 16``
          (:data:`AUTO_EXACT_MAX_DIM`), and ``"hutchinson"`` with ``probes`` probes (default
          :data:`HUTCHINSON_PROBES` = 4) above.  The result's ``divergence`` and ``probes`` say
          which was used.  Why: the exact trace of a network costs ``D`` backward passes per
          evaluation against ``probes`` vector-Jacobian products (1000 points of an untrained
          64-D :class:`~diffcore.training.MLPField`, float32, 100 rk4 steps, one thread: 36 s
          exact, 3.6 s with 4 probes, means equal within the reported standard error), and the
          Hutchinson estimate is unbiased with a reported standard error.  Pass ``rng`` for
          reproducible probes.
        * ``"exact"``: the Jacobian trace: closed form for an :class:`~diffcore.ExactField`
          score, ``D`` backward passes of autograd for torch tensors, central differences with
          step ``fd_step`` (``2D`` shifted batches) for other NumPy callables.  No Monte Carlo
          error; the cost grows with ``D``.
        * ``"hutchinson"``: the unbiased estimate ``E[eps^T (ds/dx) eps] = div s`` (Hutchinson
          1990; Grathwohl et al. 2019, eq. 7) with ``probes`` independent probes per point,
          drawn once and held fixed along the trajectory as in FFJORD (so each probe's integral
          is an unbiased estimate of the whole integral and ``stderr`` is their spread over
          ``sqrt(probes)``).  For torch each probe costs one vector-Jacobian product; for exact
          fields the quadratic form is closed form.
    probes : the number of Hutchinson probes (``>= 1``); ``None``: 1 for the exact divergence,
        :data:`HUTCHINSON_PROBES` for Hutchinson.  Must be ``None`` or 1 for ``"exact"``; with
        ``"auto"`` it applies only where Hutchinson is chosen.
    t_min : the start of the flow, in ``(0, 1)``; ``[0, 1)`` for a velocity model (see
        :class:`AugmentedFlow`), which needs no division by ``sigma(0) = 0``.
    rng : ``None``, an int seed, a ``numpy.random.Generator`` or ``torch.Generator`` (probes only).
    method : an ODE solver that needs only the drift (``"euler"``, ``"heun"``, ``"rk4"``; see
        :data:`LIKELIHOOD_METHODS`), integrated over ``time_grid(process, steps, kind=grid)`` run
        upwards; ``"adaptive"``: diffcore's Dormand–Prince 5(4) (:class:`~diffcore.Adaptive`)
        at ``rtol``, ``atol``, whose error control holds for *every point* (the worst point's
        RMS error norm, NumPy or torch, on the input's device); or ``"scipy_dop853"`` /
        ``"scipy_rk45"``: SciPy's ``solve_ivp`` (Hairer et al. 1993) on the host in float64,
        which controls one RMS norm over the whole flattened batch, so single points may err
        more than the tolerance suggests (measured at ``rtol = atol = 1e-8`` on 200 points of a
        3-component mixture: the worst point errs 7-78x more than when integrated alone, while
        with ``"adaptive"`` it errs 0.3-0.4x as much: ``benchmarks/bench_likelihood_accuracy.py``).
    steps, grid : the number of solver steps and the grid kind of :func:`~diffcore.time_grid`
        (``"uniform"``, ``"log_snr"``, ``"edm"``; ``None``, the default: the grid ``method``
        declares, :attr:`~diffcore.AbstractSolver.grid`).  The error of a fixed grid depends on how
        stiff the score is near ``t_min``: on 200 points of a 3-component 2-D mixture whose
        sharpest component has variance ``v``, rk4 with 100 uniform steps errs by at most
        2.4e-5 nats (mean 2.6e-7) for ``v = 0.1``, 1.6e-4 (6.6e-6) for ``v = 0.01`` and 1.1e-2
        (7.2e-4) for ``v = 0.001``; 400 steps give 7.5e-8, 3.1e-7 and 4.2e-5, and the log-SNR
        grid helps the stiffest case most (2.8e-4 with 100 steps).  The error falls as
        ``steps^-4`` once the steps resolve the data's scale; check a result against twice the
        steps, or use ``"adaptive"``.
    prior_log_prob : ``(x_1) -> (n,)``; default ``process.prior_log_prob``.
    noise : the probe law, ``"rademacher"`` (``+-1``, lower variance) or ``"gaussian"``.
    rtol, atol : tolerances of ``"adaptive"`` and the SciPy methods.
    fd_step : the central-difference step for NumPy callables without a closed form.
    batch_size : ``None`` (all points in one call of the score) or the most points per call:
        the state is integrated as one batch (same grid, same adaptive steps, same probes) and
        only the evaluations are split, so the result equals the unbatched one to rounding for
        every method while the memory of the divergence (``D`` or ``probes`` backward passes
        through a network, ``2D`` shifted copies) is bounded by one chunk.
    progress : a tqdm bar over the solver steps (a percentage of ``[t_min, 1]`` for the SciPy
        methods; one step for ``"adaptive"``): ``None`` (default) only when stderr is a
        terminal, ``True`` always (needs tqdm), ``False`` never; see :func:`~diffcore.integrate`.

    Returns
    -------
    LogLikelihood with ``.value``, ``.stderr``, ``.nfe``, the parts of the sum, and
    ``.summary()`` for the dataset-level mean and standard error.

    Raises
    ------
    ValueError / TypeError for bad arguments, a score returning the wrong shape (checked once at
    ``t_min``) or a prior log density that is not finite or not of shape ``(n,)``;
    FloatingPointError when the state becomes non-finite (with the step and times).

    Example
    -------
    >>> import numpy as np
    >>> from diffcore import VPSDE, Gaussian, exact_log_prob, exact_score, marginal
    >>> p, data = VPSDE(), Gaussian(np.zeros(2), np.eye(2))
    >>> x = np.array([[0.5, -1.0]])
    >>> res = log_likelihood(p, exact_score(p, data), x, prior_log_prob=marginal(p, data, 1.0).log_prob)
    >>> bool(abs(res.value[0] - exact_log_prob(p, data)(x, 1e-3)[0]) < 1e-8)
    True
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, "log_likelihood")
    if not callable(score):
        raise TypeError(f"score must be callable (x, t) -> array; got {type(score).__name__}")
    x = check_array("x", x, min_ndim=2)
    check_choice("divergence", divergence, _DIVERGENCES)
    check_choice("noise", noise, _NOISES)
    if probes is not None:
        probes = check_steps(probes, "probes")
    if divergence == "exact" and probes not in (None, 1):
        raise ValueError(f"probes applies to divergence='hutchinson'; with 'exact' it must be None or 1, got {probes}")
    batch_size = check_batch_size(batch_size)
    check_progress(progress)
    # a score is singular at t = 0 (sigma = 0); a velocity model (the drift itself) is not
    from_velocity = velocity_of(score, process) is not None
    t_min = (check_nonnegative if from_velocity else check_positive)("t_min", t_min)
    if not t_min < 1.0:
        raise ValueError(f"t_min must lie in {'[0' if from_velocity else '(0'}, 1); got {t_min}")
    check_positive("fd_step", fd_step)
    solver = _check_method(method, steps, rtol, atol)
    if grid is not None:
        check_choice("grid", grid, GRIDS)
    prior = process.prior_log_prob if prior_log_prob is None else prior_log_prob
    if not callable(prior):
        raise TypeError(f"prior_log_prob must be callable (x) -> (n,); got {type(prior).__name__}")

    xp = namespace(x)
    n, event = x.shape[0], tuple(x.shape[1:])
    kind = divergence_kind(score, x)
    divergence, probes = _resolve_divergence(divergence, probes, kind, math.prod(event))
    rng = resolve_rng(rng)
    if n == 0:
        empty = xp.zeros((0,), dtype=x.dtype, device=device_of(x))
        integrals = None if divergence == "exact" else xp.zeros((probes, 0), dtype=x.dtype, device=device_of(x))
        name = method if isinstance(method, str) else solver.name
        return LogLikelihood(empty, empty, 0, empty, empty, integrals, x, t_min, divergence, name, probes)
    eps = None
    if divergence == "hutchinson":
        eps = _draw_probes(rng, probes, (n, math.prod(event)), x, noise)
    flow = AugmentedFlow(process, score, event, eps, fd_step, kind, batch_size)
    m = 1 if eps is None else probes
    y0 = xp.concat([xp.reshape(x, (n, flow.dim)), xp.zeros((n, m), dtype=x.dtype, device=device_of(x))], axis=1)
    if isinstance(solver, str):  # SciPy: the flow counts its evaluations itself
        counter = Counter()
        y1 = _solve_ivp(flow.counted(counter), y0, t_min, _SCIPY[solver], rtol, atol, progress)
        nfe = counter.n
    else:
        kind = solver.grid if grid is None else grid
        ts = [t_min, 1.0] if isinstance(solver, Adaptive) else time_grid(process, steps, t_min=t_min, kind=kind)[::-1]
        sol = integrate(flow, y0, ts, solver, progress=progress)
        y1, nfe = sol.x, sol.nfe
    x_end = xp.reshape(y1[:, : flow.dim], x.shape)
    integrals = xp.permute_dims(y1[:, flow.dim :], (1, 0))  # (m, n)
    prior_term = _check_prior(prior(x_end), n)
    integral = xp.mean(integrals, axis=0)
    value = prior_term + integral
    if eps is None:
        stderr = xp.zeros_like(value)
    elif probes == 1:
        stderr = xp.full_like(value, float("nan"))
    else:
        stderr = xp.std(integrals, axis=0, correction=1) / math.sqrt(probes)
    check_finite("the log-likelihood", value)
    return LogLikelihood(
        value=value,
        stderr=stderr,
        nfe=nfe,
        prior_term=prior_term,
        divergence_integral=integral,
        probe_integrals=None if eps is None else integrals,
        x_end=x_end,
        t_min=t_min,
        divergence=divergence,
        method=solver if isinstance(solver, str) else solver.name,
        probes=probes,
    )


def _resolve_divergence(divergence: str, probes: int | None, kind: str, dim: int) -> tuple[str, int]:
    """``(divergence, probes)`` after ``"auto"`` and the default number of probes."""
    if divergence == "auto":
        divergence = "exact" if kind == "closed_form" or dim <= AUTO_EXACT_MAX_DIM else "hutchinson"
    if divergence == "exact":
        return "exact", 1
    return "hutchinson", HUTCHINSON_PROBES if probes is None else probes


def _check_method(method: Any, steps: Any, rtol: float, atol: float) -> Any:
    """A SciPy method name, or the solver object (with ``rtol``, ``atol`` for ``"adaptive"``), after checks."""
    if isinstance(method, str) and method in _SCIPY:
        check_positive("rtol", rtol)
        check_positive("atol", atol)
        return method
    if isinstance(method, str) and method == "adaptive":
        return Adaptive(rtol=rtol, atol=atol)
    solver = get_solver(method)
    if solver.name not in LIKELIHOOD_METHODS and not isinstance(solver, Adaptive):
        known = ", ".join([*LIKELIHOOD_METHODS, "adaptive", *_SCIPY])
        raise ValueError(
            f"method must be an ODE solver that needs only the drift of the augmented ODE ({known}); got {method!r}"
        )
    check_steps(steps)
    return solver


def _check_prior(log_p: Any, n: int) -> Array:
    shape = getattr(log_p, "shape", None)
    if shape is None or tuple(shape) != (n,):
        got = tuple(shape) if shape is not None else type(log_p).__name__
        raise ValueError(f"prior_log_prob must return shape (n,) = ({n},); got {got}")
    xp = namespace(log_p)
    bad = xp.logical_not(xp.isfinite(log_p))
    if bool(xp.any(bad)):
        idx = int(xp.argmax(xp.astype(bad, xp.int32)))
        raise ValueError(
            f"prior_log_prob must be finite at x_1; got {float(log_p[idx])} at point {idx} "
            f"({int(xp.sum(xp.astype(bad, xp.int32)))} of {n} non-finite)"
        )
    return log_p


def _draw_probes(rng: Any, probes: int, shape: tuple[int, int], like: Array, noise: str) -> Array:
    """``(probes, n, D)`` probes with ``E[eps eps^T] = I``: Rademacher signs or standard normals."""
    full = (probes, *shape)
    if noise == "gaussian":
        return normal(rng, full, like)
    return as_array(np.where(uniform(rng, full) < 0.5, -1.0, 1.0), like)


def _solve_ivp(
    flow: AugmentedFlow, y0: Array, t_min: float, method: str, rtol: float, atol: float, progress: bool | None
) -> Array:
    """``solve_ivp`` on the flattened host copy of the state; the drift sees arrays like ``y0``."""
    from scipy.integrate import solve_ivp

    shape = tuple(y0.shape)
    host = np.asarray(y0.detach().cpu().numpy() if hasattr(y0, "detach") else y0, dtype=np.float64)
    done = [0]  # percent of [t_min, 1] reached by the furthest evaluation so far

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        out = flow.drift(as_array(y.reshape(shape), y0), float(t))
        out = np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise FloatingPointError(f"{method}: non-finite drift of the augmented ODE at t = {t}")
        reached = int(100 * (t - t_min) / (1.0 - t_min))
        if reached > done[0]:
            bar.update(reached - done[0])
            done[0] = reached
        return out.reshape(-1)

    with progress_bar(progress, 100, desc=method, unit="%") as bar:
        sol = solve_ivp(rhs, (t_min, 1.0), host.reshape(-1), method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"{method} failed between t = {t_min} and 1: {sol.message}")
    return as_array(sol.y[:, -1].reshape(shape), y0)
