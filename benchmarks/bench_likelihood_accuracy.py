"""Accuracy of ``log_likelihood`` against the exact ``log p_{t_min}``: fixed steps, and per-point error control.

Two claims of the ``log_likelihood`` docstring are measured here, on 200 points of a 3-component
2-D mixture under the VP process with the exact score and the exact law at ``t = 1`` as prior
(so the only error is the ODE solver's), for three stiffnesses (the smallest component variance
``v``; the score near ``t_min`` varies on the scale ``sqrt(v)``):

* rk4 on a fixed grid: its error grows with the stiffness; 100 uniform steps are not "~1e-6
  nats" in general.
* adaptive solvers: SciPy's ``solve_ivp`` (``method="scipy_dop853"``) controls one RMS norm over
  the whole flattened batch, so its worst point may err far more than the same point integrated
  alone; diffcore's ``method="adaptive"`` controls each point's norm (the worst point of the
  batch), so batching does not loosen it.

Run: ``python benchmarks/bench_likelihood_accuracy.py`` (``make bench BENCH_ARGS=likelihood``).
"""

from __future__ import annotations

import time

import numpy as np
from _report import Table, machine_lines, progress, write_markdown
from threadpoolctl import threadpool_limits

import diffcore as dc

VARIANCES = (0.1, 0.01, 0.001)
N_POINTS, T_MIN, TOL = 200, 1e-3, 1e-8


def problem(v: float) -> dc.GaussianMixture:
    """Three unequal components; the first has variance ``v`` in both directions."""
    covs = np.stack([v * np.eye(2), 0.5 * np.eye(2), np.array([[0.5, -0.2], [-0.2, 0.2]])])
    return dc.GaussianMixture(np.array([0.3, 0.3, 0.4]), np.array([[-2.0, 0.0], [1.0, 1.5], [1.5, -1.0]]), covs)


def main() -> None:
    start = time.perf_counter()
    vp = dc.VPSDE()
    header = [
        f"log_likelihood against exact_log_prob at t_min = {T_MIN}: VP, exact score, exact prior law at t = 1, "
        f"{N_POINTS} points of the data; one BLAS thread.",
        *machine_lines(),
    ]
    fixed = Table(
        "Fixed-step rk4: error in nats (max / mean over the points)",
        ["v: the smallest component variance (stiffness of the score near t_min)."],
        ["v", "100 uniform", "400 uniform", "100 log-SNR"],
    )
    adaptive = Table(
        f"Adaptive solvers at rtol = atol = {TOL:g}: the worst point in the batch and alone",
        [
            "batch: max error over the 200 points integrated together; alone: the same worst point integrated "
            "by itself; ratio = batch / alone (above 1: batching loosened the control of that point).",
        ],
        ["v", "method", "batch max", "alone", "ratio", "NFE", "s"],
    )
    for v in VARIANCES:
        data = problem(v)
        score, prior = dc.exact_score(vp, data), dc.marginal(vp, data, 1.0).log_prob
        x = data.sample(N_POINTS, rng=1)
        exact = dc.exact_log_prob(vp, data)(x, T_MIN)

        progress(f"v = {v}: rk4")
        cells = [
            np.abs(dc.log_likelihood(vp, score, x, prior_log_prob=prior, t_min=T_MIN, **kw).value - exact)
            for kw in ({"steps": 100}, {"steps": 400}, {"steps": 100, "grid": "log_snr"})
        ]
        fixed.add(v, *(f"{e.max():.1e} / {e.mean():.1e}" for e in cells))
        for method in ("scipy_dop853", "adaptive"):
            progress(f"v = {v}: {method}")
            clock = time.perf_counter()
            res = dc.log_likelihood(vp, score, x, method=method, rtol=TOL, atol=TOL, prior_log_prob=prior, t_min=T_MIN)
            seconds = time.perf_counter() - clock
            e = np.abs(res.value - exact)
            w = int(np.argmax(e))
            alone = dc.log_likelihood(
                vp, score, x[w : w + 1], method=method, rtol=TOL, atol=TOL, prior_log_prob=prior, t_min=T_MIN
            )
            e_alone = abs(float(alone.value[0] - exact[w]))
            adaptive.add(v, method, f"{e.max():.1e}", f"{e_alone:.1e}", f"{e.max() / e_alone:.1f}", res.nfe,
                         f"{seconds:.2f}")  # fmt: skip
    tables = [fixed, adaptive]
    for t in tables:
        print(t.text())
    footer = f"bench_likelihood_accuracy finished in {time.perf_counter() - start:.0f} s"
    print(footer)
    write_markdown("bench_likelihood_accuracy", [*header, footer], tables)


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
