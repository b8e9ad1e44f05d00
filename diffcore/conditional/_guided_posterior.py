r"""Likelihood-guided posterior samplers: DPS, Pi-GDM, second-order Tweedie and the exact oracle.

Each is a *score callable* ``(x, t) -> (n, d)``: the prior score plus an approximation of the
noisy-level likelihood score ``grad log p_t(y | x_t)``, so it runs with every sampler of
:func:`diffcore.sample`.  All approximations go through the Tweedie denoiser
``x0_hat(x) = (x + sigma^2 s(x, t)) / alpha`` and its Jacobian ``J = d x0_hat / dx``, obtained
from one mechanism, a *covariance callable* ``(x, t) -> Cov[x_0 | x_t = x]`` ``(n, d, d)``:
second-order Tweedie gives ``Cov = (sigma^2 / alpha) J``, so ``J^T v = (alpha / sigma^2) Cov v``
(``J`` is symmetric for an exact score).  In the laboratory the covariance is
:func:`~diffcore.conditional.exact_posterior_covariance`; for a learned score
:func:`denoiser_covariance` differentiates the denoiser with torch autograd (and takes the
vector-Jacobian products by one backward pass each).  Book chapter "Inverse problems".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffcore._array import as_array, broadcast_time, is_scalar_time, namespace
from diffcore._parametrization import convert
from diffcore._validation import Model, check_array, check_choice, check_positive, check_unshifted
from diffcore.conditional._measurements import AbstractMeasurement, check_observation
from diffcore.conditional._posterior import exact_likelihood_score
from diffcore.processes import AbstractProcess
from diffcore.samplers import Solution, sample

__all__ = [
    "DenoiserCovariance",
    "PosteriorScore",
    "TweedieLikelihoodScore",
    "denoiser_covariance",
    "dps",
    "exact_posterior_sampler",
    "pigdm",
    "posterior_score",
    "second_order_tweedie",
]

Array = Any
Field = Callable[[Array, Any], Array]
RULES = ("dps", "pigdm", "second_order")
DPS_STEPS = ("likelihood", "normalised")


def _check_process(process: Any, who: str) -> None:
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess; got {type(process).__name__}")
    check_unshifted(process, who)


def _matrix_coef(coef: Any, x: Array) -> Any:
    """A float, or an ``(n,)`` coefficient shaped ``(n, 1, 1)`` to scale ``(n, d, d)`` matrices."""
    return coef if is_scalar_time(coef) else namespace(x).reshape(as_array(coef, x), (-1, 1, 1))


@dataclass(frozen=True, eq=False)
class DenoiserCovariance:
    r"""``Cov[x_0 | x_t = x] = (sigma^2 / alpha) J(x)``, ``J = d x0_hat / dx`` by torch autograd, ``(n, d, d)``.

    ``x0_hat = (x + sigma^2 s(x, t)) / alpha`` (Tweedie); the second-order Tweedie identity
    (Meng et al. 2021; Boys et al. 2024, eq. 9) turns its Jacobian into the posterior
    covariance.  The full Jacobian costs one score evaluation and ``d`` backward passes;
    :meth:`denoise_vjp` gives ``J^T v`` with one.  Needs torch tensors (``TypeError`` otherwise).
    """

    process: AbstractProcess
    score: Field

    def _torch_x(self, x: Array) -> Any:
        try:
            import torch
        except ImportError as err:  # pragma: no cover - torch is a test dependency
            raise TypeError("denoiser_covariance differentiates the score with torch autograd: install torch") from err
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                "denoiser_covariance differentiates a learned score with torch autograd and needs x as a torch "
                f"tensor; got {type(x).__name__} (in NumPy pass an exact covariance, e.g. exact_posterior_covariance)"
            )
        return torch, x.detach().requires_grad_(True)

    def _denoise(self, x: Array, t: Any) -> Array:
        return convert(self.score(x, t), x, t, self.process, source="score", target="x0")

    def jacobian(self, x: Array, t: Any) -> tuple[Array, Array]:
        """``(x0_hat (n, d), J (n, d, d))`` with ``J[i, a, b] = d x0_hat[i, a] / d x[i, b]``."""
        torch, xg = self._torch_x(check_array("x", x, ndim=2, finite=False))
        with torch.enable_grad():
            x0 = self._denoise(xg, t)
            rows = [torch.autograd.grad(x0[:, a].sum(), xg, retain_graph=True)[0] for a in range(x0.shape[1])]
        return x0.detach(), torch.stack(rows, dim=1)

    def denoise_vjp(self, x: Array, t: Any, vector: Callable[[Array], Array]) -> tuple[Array, Array]:
        """``(x0_hat, J^T v)`` with ``v = vector(x0_hat)`` ``(n, d)``: one score call, one backward pass."""
        torch, xg = self._torch_x(check_array("x", x, ndim=2, finite=False))
        with torch.enable_grad():
            x0 = self._denoise(xg, t)
            v = vector(x0.detach())
            vjp = torch.autograd.grad((x0 * v).sum(), xg)[0]
        return x0.detach(), vjp

    def __call__(self, x: Array, t: Any) -> Array:
        _, J = self.jacobian(x, t)
        a, s = self.process.alpha(t), self.process.sigma(t)
        return _matrix_coef(s**2 / a, J) * J


def denoiser_covariance(process: AbstractProcess, score: Field) -> DenoiserCovariance:
    """``(x, t) -> Cov[x_0 | x_t = x]`` from a learned score by autograd; see :class:`DenoiserCovariance`."""
    _check_process(process, "denoiser_covariance")
    if not callable(score):
        raise TypeError(f"score must be callable (x, t) -> (n, d); got {type(score).__name__}")
    return DenoiserCovariance(process, score)


@dataclass(frozen=True, eq=False)
class PosteriorScore:
    """``s(x, t) + likelihood_score(x, t)``: the score of ``p_t(x | y)`` when the likelihood score is exact."""

    score: Field
    likelihood_score: Field

    def __call__(self, x: Array, t: Any) -> Array:
        return self.score(x, t) + self.likelihood_score(x, t)


def posterior_score(score: Field, likelihood_score: Field) -> PosteriorScore:
    r"""``grad log p_t(x) + grad log p_t(y | x)``, a score callable for every sampler (Bayes' rule at time ``t``).

    With :func:`~diffcore.conditional.exact_likelihood_score` this is the exact posterior
    score: sampling with it has no error but the sampler's discretisation (the oracle).
    """
    for name, fn in (("score", score), ("likelihood_score", likelihood_score)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable (x, t) -> (n, d); got {type(fn).__name__}")
    return PosteriorScore(score, likelihood_score)


@dataclass(frozen=True, eq=False)
class TweedieLikelihoodScore:
    r"""An approximation of ``grad_x log p_t(y | x_t = x)`` through the Tweedie denoiser, ``(n, d)``.

    With ``x0_hat`` the denoiser, ``J`` its Jacobian and ``r = y - H x0_hat``:

    * ``"dps"`` (Chung et al. 2023, eq. 16 / alg. 1): ``p_t(y | x_t) ≈ p(y | x0_hat)``;
      ``step="likelihood"``: ``zeta J^T grad_{x0} log p(y | x0)|_{x0_hat}`` (any measurement);
      ``step="normalised"``: ``-zeta grad_x ||y - H x0_hat|| = zeta J^T H^T r / ||r||``, the
      reference code's rule (the paper's ``zeta_i = zeta' / ||r||`` on ``||r||^2``, ``zeta' = zeta / 2``).
    * ``"pigdm"`` (Song et al. 2023): ``N(H x0_hat, r_t^2 H H^T + s^2 I)``,
      ``r_t^2 = sigma^2 c / (alpha^2 c + sigma^2)`` (``c = data_var``): ``J^T H^T (r_t^2 H H^T + s^2 I)^{-1} r``.
    * ``"second_order"`` (Boys et al. 2024, TMPD; second-order Tweedie as in Rout et al. 2024):
      ``N(H x0_hat, H Cov H^T + s^2 I)``: ``J^T H^T (H Cov H^T + s^2 I)^{-1} r``, the derivative of
      ``Cov`` in ``x`` dropped (as TMPD does).

    ``J^T v`` is ``(alpha / sigma^2) Cov v`` for an array-API covariance callable and one
    autograd backward pass for a :class:`DenoiserCovariance`.
    """

    process: AbstractProcess
    score: Field
    measurement: AbstractMeasurement
    y: Any
    rule: str
    covariance: Field
    zeta: float = 1.0
    step: str = "likelihood"
    data_var: float = 1.0

    def _vector(self, x0: Array, cov: Array | None, t: Any) -> Array:
        """``grad_{x0}`` of the Gaussian (or DPS) log-likelihood at ``x0_hat``, ``(n, d)``."""
        m = self.measurement
        if self.rule == "dps":
            g = m.likelihood_score(x0, as_array(self.y, x0))
            if self.step == "likelihood":
                return self.zeta * g
            xp = namespace(g)
            r = as_array(self.y, x0)[None, :] - m.forward(x0)
            return (self.zeta * m.noise_std**2) * g / xp.sqrt(xp.sum(r**2, axis=1, keepdims=True))
        xp = namespace(x0)
        H = as_array(m.H, x0)
        r = as_array(self.y, x0)[None, :] - x0 @ H.T
        eye = xp.eye(H.shape[0], dtype=H.dtype)
        if self.rule == "pigdm":
            a, s = self.process.alpha(t), self.process.sigma(t)
            r2 = _matrix_coef(s**2 * self.data_var / (a**2 * self.data_var + s**2), x0)
            S = r2 * (H @ H.T)[None] + m.noise_std**2 * eye[None]
        else:
            S = H[None] @ cov @ H.T[None] + m.noise_std**2 * eye[None]
        S = S if S.shape[0] == x0.shape[0] else xp.broadcast_to(S, (x0.shape[0], *S.shape[1:]))
        return xp.linalg.solve(S, r[:, :, None])[:, :, 0] @ H

    def prior_and_likelihood(self, x: Array, t: Any) -> tuple[Array, Array]:
        """``(s(x, t), the likelihood-score approximation)`` from ONE evaluation of the score."""
        if isinstance(self.covariance, DenoiserCovariance):
            if self.rule == "second_order":
                x0, J = self.covariance.jacobian(x, t)
                a, s = self.process.alpha(t), self.process.sigma(t)
                v = self._vector(x0, _matrix_coef(s**2 / a, J) * J, t)
                g = (v[:, None, :] @ J)[:, 0, :]  # J^T v
            else:
                x0, g = self.covariance.denoise_vjp(x, t, lambda x0: self._vector(x0, None, t))
            return convert(x0, x, t, self.process, source="x0", target="score"), g
        score = self.score(x, t)
        x0 = convert(score, x, t, self.process, source="score", target="x0")
        cov = self.covariance(x, t)
        v = self._vector(x0, cov, t)
        a, s = self.process.alpha(t), self.process.sigma(t)
        return score, broadcast_time(a / s**2, x) * (cov @ v[:, :, None])[:, :, 0]

    def __call__(self, x: Array, t: Any) -> Array:
        return self.prior_and_likelihood(x, t)[1]


@dataclass(frozen=True, eq=False)
class _TweediePosterior:
    """``s(x, t) + g(x, t)`` with the prior score evaluated once (one NFE per call, as counted)."""

    likelihood: TweedieLikelihoodScore

    def __call__(self, x: Array, t: Any) -> Array:
        score, g = self.likelihood.prior_and_likelihood(x, t)
        return score + g


def _likelihood(
    process: Any, score: Any, measurement: Any, y: Any, rule: str, covariance: Any, **kw: Any
) -> TweedieLikelihoodScore:
    _check_process(process, rule)
    score = Model.of(score, "score")  # every call's output checked, errors name the prior score
    y = check_observation(measurement, y)
    if rule != "dps" and not measurement.linear_gaussian:
        raise ValueError(
            f"{rule} conditions a Gaussian p(x_0 | x_t) on a linear-Gaussian measurement y = H x + s n; "
            f"got {type(measurement).__name__} (use dps, red_diff or a particle method)"
        )
    if covariance is None:
        covariance = DenoiserCovariance(process, score)
    elif not callable(covariance):
        raise TypeError(f"covariance must be None or callable (x, t) -> (n, d, d); got {type(covariance).__name__}")
    return TweedieLikelihoodScore(process, score, measurement, y, rule, covariance, **kw)


def _run(
    process: Any,
    score: Field,
    lik: TweedieLikelihoodScore,
    x_init: Array,
    method: str,
    steps: Any,
    nfe: Any,
    rng: Any,
    options: dict,
) -> Solution:
    x_init = check_array("x_init", x_init, ndim=2, dim=lik.measurement.dim)
    return sample(process, _TweediePosterior(lik), x_init, method=method, steps=steps, nfe=nfe, rng=rng, **options)


_SAMPLER_DOC = """
    Runs :func:`diffcore.sample` with ``posterior_score(score, likelihood)`` and ``method``
    (default ``"ancestral"``: the DDPM step of DPS alg. 1 and TMPD's DDPM sampler, valid for
    every unshifted affine process; any name of ``diffcore.SOLVERS`` works).  ``x_init (n, d)``
    are prior draws at ``t = 1``; ``steps``/``nfe`` as in :func:`diffcore.sample` (each
    evaluation also costs one vector-Jacobian product, or ``d`` for a second-order autograd
    covariance).  ``covariance``: ``None`` (autograd through ``score``: torch tensors) or a
    callable ``(x, t) -> (n, d, d)`` such as ``exact_posterior_covariance(process, prior)``.
    Returns a :class:`~diffcore.Solution`.  Book chapter "Inverse problems".
"""


def dps(
    process: AbstractProcess,
    score: Field,
    measurement: AbstractMeasurement,
    y: Array,
    x_init: Array,
    *,
    steps: int | None = None,
    nfe: int | None = None,
    rng: Any = None,
    zeta: float = 1.0,
    step: str = "likelihood",
    covariance: Field | None = None,
    method: str = "ancestral",
    **options: Any,
) -> Solution:
    """Diffusion posterior sampling (Chung et al. 2023): ``s(x, t) + zeta J^T grad log p(y | x0_hat(x))``.

    ``step="likelihood"`` (default, any measurement) or ``"normalised"`` (linear-Gaussian:
    ``-zeta grad_x ||y - H x0_hat||``, the reference code's rule; the paper's ``zeta'`` is
    ``zeta / 2``).  Note the papers apply ``zeta`` once per step of a 1000-step chain, while
    here it weights a score, which the sampler multiplies by ``g^2 dt``: the numbers differ.
    """
    zeta = check_positive("zeta", zeta)
    check_choice("step", step, DPS_STEPS)
    if step == "normalised" and not getattr(measurement, "linear_gaussian", True):
        raise ValueError("dps step='normalised' divides by ||y - H x0_hat|| and needs a linear-Gaussian measurement")
    lik = _likelihood(process, score, measurement, y, "dps", covariance, zeta=zeta, step=step)
    return _run(process, score, lik, x_init, method, steps, nfe, rng, options)


def pigdm(
    process: AbstractProcess,
    score: Field,
    measurement: AbstractMeasurement,
    y: Array,
    x_init: Array,
    *,
    steps: int | None = None,
    nfe: int | None = None,
    rng: Any = None,
    data_var: float = 1.0,
    covariance: Field | None = None,
    method: str = "ancestral",
    **options: Any,
) -> Solution:
    """Pseudoinverse-guided diffusion (Song et al. 2023): ``p(x_0 | x_t) ≈ N(x0_hat, r_t^2 I)``.

    ``r_t^2 = sigma^2 c / (alpha^2 c + sigma^2)``, ``c = data_var`` (the posterior variance
    were the data ``N(0, c I)``; exact then).  Linear-Gaussian measurements only (``ValueError``).
    """
    data_var = check_positive("data_var", data_var)
    lik = _likelihood(process, score, measurement, y, "pigdm", covariance, data_var=data_var)
    return _run(process, score, lik, x_init, method, steps, nfe, rng, options)


def second_order_tweedie(
    process: AbstractProcess,
    score: Field,
    measurement: AbstractMeasurement,
    y: Array,
    x_init: Array,
    *,
    steps: int | None = None,
    nfe: int | None = None,
    rng: Any = None,
    covariance: Field | None = None,
    method: str = "ancestral",
    **options: Any,
) -> Solution:
    """Moment-matched likelihood ``N(H x0_hat, H Cov[x_0|x_t] H^T + s^2 I)`` (TMPD, Boys et al. 2024, eq. 11).

    Exact when the prior is Gaussian.  Rout et al. (2024, STSL) start from the same
    second-order Tweedie covariance but replace ``tr(H Cov H^T)`` by a trace-of-Hessian lower
    bound estimated stochastically in latent space; this is the full-covariance (TMPD) form,
    not STSL's surrogate.  The gradient treats ``Cov`` as fixed in ``x``, as TMPD does.
    """
    lik = _likelihood(process, score, measurement, y, "second_order", covariance)
    return _run(process, score, lik, x_init, method, steps, nfe, rng, options)


def exact_posterior_sampler(
    process: AbstractProcess,
    score: Field,
    measurement: AbstractMeasurement,
    y: Array,
    x_init: Array,
    *,
    prior: Any,
    steps: int | None = None,
    nfe: int | None = None,
    rng: Any = None,
    method: str = "ancestral",
    **options: Any,
) -> Solution:
    """The oracle: ``s(x, t) + grad log p_t(y | x)`` exact (:func:`~diffcore.conditional.exact_likelihood_score`).

    ``prior`` is the Gaussian(-mixture) prior whose exact score ``score`` should be; the only
    error left is the sampler's discretisation.
    """
    _check_process(process, "exact_posterior_sampler")
    lik = exact_likelihood_score(process, prior, measurement, y)
    x_init = check_array("x_init", x_init, ndim=2, dim=measurement.dim)
    score = posterior_score(Model.of(score, "score"), lik)
    return sample(process, score, x_init, method=method, steps=steps, nfe=nfe, rng=rng, **options)


for _f in (dps, pigdm, second_order_tweedie, exact_posterior_sampler):
    _f.__doc__ = (_f.__doc__ or "") + _SAMPLER_DOC
