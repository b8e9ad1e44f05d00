"""The step loop never copies a device value to the host.

On a GPU every conversion of a tensor value to a Python value (``bool(t)``, ``t.item()``,
``float(t)``, ``t.tolist()``, ``t.numpy()``, ``t.cpu()``), every data-dependent shape
(``nonzero``, boolean-mask indexing, ``unique``) and every tensor built from host data
(``torch.as_tensor(ndarray)``, ``torch.tensor(...)``) blocks the host until the device has
caught up: one such call per step serialises the launch queue with the kernels.  The real
check, ``torch.cuda.set_sync_debug_mode("error")``, needs CUDA (``benchmarks/gpu.py`` runs it).
Here, on CPU tensors, a :class:`torch.overrides.TorchFunctionMode` counts the calls that
*would* synchronise on a device while :func:`diffcore.integrate` runs, and the test asserts
that the count does not grow with the number of steps: the driver may synchronise a constant
number of times (the check of ``x_init`` before the loop, one finiteness check after it), a
solver step or the loop itself never.

Limits (what the CUDA check in ``benchmarks/gpu.py`` sees and this one cannot): syncs inside
torch's own C++ kernels (none in the operations diffcore uses), copies between devices (on
CPU there is one device: ``.to(device)`` is never counted), and host-to-device copies of
tensors that already exist on the host (``cpu_tensor.to("cuda")``; the noise of a CPU
generator).  Stochastic solvers are run here with a ``torch.Generator``, which draws with
``torch.randn`` on its own device; a NumPy generator or an int seed draws on the host and
converts each step's noise (counted below as the documented exception).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

import diffcore as dc
from diffcore._array import namespace
from tests.conftest import circle_mixture, random_gaussian

torch = pytest.importorskip("torch")

from torch.overrides import TorchFunctionMode  # noqa: E402  (after the importorskip)

#: Tensor methods that move a value to the host, or need its value on the host to shape a result
HOST_METHODS = frozenset(
    {
        "__bool__", "__float__", "__int__", "__index__", "__complex__", "__format__", "__array__",
        "item", "tolist", "numpy", "cpu", "nonzero", "argwhere", "masked_select", "unique",
        "unique_consecutive", "repeat_interleave",
    }
)  # fmt: skip
#: factories that copy host data (anything but a tensor) onto the target device
FROM_HOST = (torch.as_tensor, torch.tensor, torch.asarray)


class HostTransfers(TorchFunctionMode):
    """Count the torch calls that would synchronise the host with a device, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", repr(func))
        if name in HOST_METHODS or (func in FROM_HOST and not isinstance(args[0], torch.Tensor)):
            self.counts[name] += 1
        elif name in ("__getitem__", "__setitem__") and _has_bool_tensor(args[1]):
            self.counts["boolean mask"] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _has_bool_tensor(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


P1, P2 = circle_mixture(), random_gaussian(d=8)
MR = dc.MeanRevertingSDE(mu=np.array([1.0, -0.5]), lambda_=1.0, schedule="cosine")


def _problem(method: str, data_name: str):
    """``(process, score, x_init)`` for ``method`` on the mixture P1 or a Gaussian like P2."""
    mean_reverting = dc.SOLVERS[method].requires.shift == "required"
    data = P1 if data_name == "P1" else random_gaussian(d=2) if mean_reverting else P2
    process = MR if mean_reverting else dc.VPSDE()
    x = np.random.default_rng(0).standard_normal((16, 2 if data is P1 or mean_reverting else 8))
    return process, dc.exact_score(process, data), torch.as_tensor(x)


def _transfers(method: str, data_name: str, steps: int, *, rng_kind: str = "torch") -> collections.Counter:
    process, score, x = _problem(method, data_name)

    def run():
        rng = torch.Generator().manual_seed(0) if rng_kind == "torch" else 0
        return dc.sample(process, score, x, method=method, steps=steps, rng=rng)

    run()  # warm-up: the exact score caches its parameters on x's device and dtype at the first call
    with HostTransfers() as mode:
        run()
    return mode.counts


#: every solver, the mean-reverting ones included (MeanRevertingSDE caches mu per device and dtype)
LOOP_METHODS = list(dc.SOLVERS)


@pytest.mark.parametrize("data_name", ["P1", "P2"])
@pytest.mark.parametrize("method", LOOP_METHODS)
def test_step_loop_does_not_synchronise(method, data_name):
    """A constant number of host transfers, whatever the number of steps: none inside the loop."""
    few, many = _transfers(method, data_name, 3), _transfers(method, data_name, 7)
    assert few == many, f"{method}: host transfers grow with the steps: {dict(few)} at 3, {dict(many)} at 7"
    assert sum(many.values()) <= 2, f"{method}: more than the two driver checks: {dict(many)}"


@dataclass(frozen=True)
class _SyncingEuler(dc.AbstractSolver):
    """Euler with a per-step host read of the state: the pattern the test above must catch."""

    name: ClassVar[str] = "syncing_euler"
    order: ClassVar[int] = 1

    def step(self, dynamics, x, t0, t1, noise, state):
        xp = namespace(x)
        if float(xp.max(xp.abs(x))) > 1e6:  # a Python branch on a device value
            raise RuntimeError("unreachable")
        return x + (t1 - t0) * dynamics.drift(x, t0), state


@dataclass(frozen=True)
class _MaskingEuler(dc.AbstractSolver):
    """Euler that zeroes large entries through a boolean mask (a data-dependent shape)."""

    name: ClassVar[str] = "masking_euler"
    order: ClassVar[int] = 1

    def step(self, dynamics, x, t0, t1, noise, state):
        x = x + (t1 - t0) * dynamics.drift(x, t0)
        x[x > 1e6] = 0.0
        return x, state


@pytest.mark.parametrize("solver", [_SyncingEuler(), _MaskingEuler()], ids=["float", "mask"])
def test_the_counter_catches_a_syncing_step(solver):
    """The guard can fail: a step that reads a value on the host is counted once per step."""
    process, score, x = _problem("euler", "P1")
    dyn = dc.ProbabilityFlowODE(process, score)
    dc.integrate(dyn, x, dc.time_grid(process, 2), solver)  # warm-up: the score caches its parameters on x's device
    counts = []
    for steps in (3, 7):
        with HostTransfers() as mode:
            dc.integrate(dyn, x, dc.time_grid(process, steps), solver)
        counts.append(mode.total)
    assert counts[1] - counts[0] == 4, counts


def test_adaptive_synchronises_by_design():
    """``adaptive`` chooses its steps from an error norm on the host: it is the one syncing method."""
    process, score, x = _problem("euler", "P1")
    with HostTransfers() as mode:
        dc.sample(process, score, x, method="adaptive", steps=2, rtol=1e-4, atol=1e-4)
    assert mode.total > 2


def test_a_host_generator_copies_the_noise_each_step():
    """An int seed draws on the host: one host-to-device conversion per step (documented in ``integrate``)."""
    few, many = (_transfers("euler_maruyama", "P1", s, rng_kind="int") for s in (3, 7))
    assert many["as_tensor"] - few["as_tensor"] == 4, (few, many)


@pytest.mark.parametrize("step", [1, 3, 5])
def test_device_path_names_the_first_failing_step(step):
    """Torch tensors are checked once after the loop; the error still names the first bad step."""
    process, score, x = _problem("heun", "P1")
    calls = [0]

    def bad_score(x, t):
        calls[0] += 1
        out = score(x, t)
        # the state stays non-finite from the failing step on: NaN from then on (at a late step,
        # only the first failure must be named, not the last)
        return out * float("nan") if calls[0] >= 2 * step - 1 else out

    ts = dc.time_grid(process, 6)
    with pytest.raises(FloatingPointError) as info:
        dc.integrate(dc.ProbabilityFlowODE(process, bad_score), x, ts, "heun")
    assert f"step {step} of 6" in str(info.value) and f"{ts[step - 1]} -> {ts[step]}" in str(info.value)


def test_device_path_flags_a_state_that_recovers():
    """A step whose state is non-finite is reported even if later steps overwrite it with finite values."""

    @dataclass(frozen=True)
    class Reset(dc.AbstractSolver):
        name: ClassVar[str] = "reset"
        order: ClassVar[int] = 1

        def step(self, dynamics, x, t0, t1, noise, state):
            count = 0 if state is None else state
            return (x * float("inf") if count == 1 else namespace(x).zeros_like(x)), count + 1

    process, score, x = _problem("euler", "P1")
    with pytest.raises(FloatingPointError, match="step 2 of 4"):
        dc.integrate(dc.ProbabilityFlowODE(process, score), x, dc.time_grid(process, 4), Reset())


@pytest.mark.parametrize("entry", [float("inf"), float("-inf"), float("nan")])
def test_device_flag_is_exact_for_float32_states(entry):
    """The per-step probe of a float32 state is its max and min: huge finite float32 states (whose
    float32 sum would overflow) pass, and a single non-finite entry among them (NaN, +inf or -inf)
    is caught."""

    @dataclass(frozen=True)
    class Big(dc.AbstractSolver):
        name: ClassVar[str] = "big"
        order: ClassVar[int] = 1

        def step(self, dynamics, x, t0, t1, noise, state):
            return namespace(x).full_like(x, 3e38), state  # sum ~6e42 > float32 max, finite in float64

    process, score, _ = _problem("euler", "P1")
    x = torch.zeros((1000, 2), dtype=torch.float32)
    ode = dc.ProbabilityFlowODE(process, score)
    assert bool(torch.all(dc.integrate(ode, x, dc.time_grid(process, 3), Big()).x == 3e38))

    @dataclass(frozen=True)
    class BigWithOne(Big):
        name: ClassVar[str] = "big_with_one"

        def step(self, dynamics, x, t0, t1, noise, state):
            out = namespace(x).full_like(x, 3e38)
            out[7, 1] = entry
            return out, state

    with pytest.raises(FloatingPointError, match="step 1 of 3"):
        dc.integrate(ode, x, dc.time_grid(process, 3), BigWithOne())
