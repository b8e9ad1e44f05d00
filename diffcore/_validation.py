"""Validators for the public boundary: each returns the cleaned value or raises with the rule.

The input rules, written once here and applied at every public entry point:

* **Arrays** are NumPy arrays or torch tensors (anything with ``shape`` and ``dtype`` that
  ``array_api_compat`` knows); lists and scalars where a batch is expected are refused with a
  ``TypeError`` naming the argument (:func:`check_array`).
* **Integer and boolean points** are promoted to float (``float64``, on the input's device);
  a function that needs a float of its own (a torch network's parameter dtype) says so in its
  docstring.  **Complex** arrays are refused (``TypeError``): every quantity here is real.
* **NaN and infinity** are refused (``ValueError``) wherever the result would silently be
  NaN; the message names the argument.
* **Empty batches** (``n = 0``) are valid: the result is empty too (shape ``(0, ...)`` or ``(0,)``).
* **Mixed array types** (NumPy with torch, or tensors on two devices) are refused with a
  ``TypeError`` that names the arguments and what each one is (:func:`check_same_namespace`).
* **Times** go through :func:`check_time` (a float in ``[0, 1]`` or an ``(n,)`` array).
* **Model outputs**: every call of a user's score, velocity, denoiser or network goes through
  :class:`Model`, which checks the returned array's type, device, dtype and shape against the
  input (:func:`check_model_output`; metadata only, never values, so no host synchronisation).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj, is_torch_array

from diffcore._array import as_array, device_of, is_scalar_time, namespace, to_float_list

__all__ = [
    "Counter",
    "Model",
    "check_array",
    "check_batch",
    "check_choice",
    "check_finite",
    "check_grid",
    "check_model_output",
    "check_nonnegative",
    "check_points",
    "check_positive",
    "check_progress",
    "check_real",
    "check_same_namespace",
    "check_scalar_time",
    "check_size",
    "check_steps",
    "check_time",
    "check_time_for",
    "check_unshifted",
    "describe",
    "progress_bar",
]


def check_positive(name: str, value: Any) -> float:
    """A finite real number > 0."""
    v = _real(name, value)
    if not v > 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return v


def check_nonnegative(name: str, value: Any) -> float:
    """A finite real number >= 0."""
    v = _real(name, value)
    if not v >= 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")
    return v


def check_real(name: str, value: Any) -> float:
    """A finite real number (not a bool, not an array)."""
    return _real(name, value)


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return v


def check_time(t: Any, name: str = "t") -> Any:
    """A time in [0, 1]: a real scalar (returned as float) or a 1-D array (returned as is)."""
    if isinstance(t, (bool, np.bool_)):
        raise TypeError(f"{name} must be a float or an array of times; got {type(t).__name__}")
    if is_scalar_time(t):
        v = float(t)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]; got {v}")
        return v
    if not hasattr(t, "shape"):
        raise TypeError(f"{name} must be a float or an array of times; got {type(t).__name__}")
    if t.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array of shape (n,); got shape {tuple(t.shape)}")
    xp = namespace(t)
    if not xp.isdtype(t.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype; got {t.dtype}")
    bad = xp.logical_not((t >= 0) & (t <= 1))
    if bool(xp.any(bad)):
        first = t[bad][0] if t.ndim else t
        raise ValueError(f"{name} must lie in [0, 1]; got {float(first)}")
    return t


def check_scalar_time(t: Any, name: str = "t") -> float:
    """A time in [0, 1] given as one real number (not an array, a string or a bool); returned as float."""
    if not is_scalar_time(t) or isinstance(t, (bool, np.bool_)):
        what = f"an array of shape {tuple(t.shape)}" if hasattr(t, "shape") else type(t).__name__
        raise TypeError(f"{name} must be a float in [0, 1]; got {what}")
    return check_time(t, name)


def check_finite(name: str, x: Any) -> Any:
    """An array without NaN or infinity."""
    xp = namespace(x)
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    return x


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of a fixed set of names; the message lists them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; known: {', '.join(sorted(choices))}")
    return value


def check_steps(steps: Any, name: str = "steps") -> int:
    """A count (of steps, samples, projections, ...): an integer >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"{name} must be >= 1; got {steps}")
    return int(steps)


def check_size(value: Any, name: str) -> int:
    """A size that may be zero (a number of features, of points to draw): an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {value}")
    return int(value)


def check_points(x: Any, dim: int, name: str = "x") -> Any:
    """A batch of points of shape ``(n, dim)``, cleaned by :func:`check_array` (integers promoted).

    Values are not inspected (no finiteness check): this guards functions that are called at
    every step of a sampler, where reading values would synchronise a device.  NaN rows give
    NaN rows, and the driver reports a non-finite state with its step.
    """
    return check_array(name, x, ndim=2, dim=dim, finite=False)


def check_time_for(t: Any, x: Any, name: str = "t") -> Any:
    """A time for the batch ``x (n, ...)``: a float in [0, 1], or an ``(n,)`` array converted to ``x``'s type."""
    t = check_time(t, name)
    if is_scalar_time(t):
        return t
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"{name} must be a float or have shape (n,) = ({x.shape[0]},); got {tuple(t.shape)}")
    return as_array(t, x)


def check_grid(ts: Any, direction: int = 0, who: str = "the dynamics") -> list[float]:
    """A strictly monotone grid of at least two times in ``[0, 1]``, as floats; decreasing for
    ``direction = -1`` (reverse-time SDEs), increasing for ``+1``, either way for ``0``."""
    grid = to_float_list(ts)
    if len(grid) < 2:
        raise ValueError(f"ts must hold at least two times; got {len(grid)}")
    if any(not 0.0 <= t <= 1.0 for t in grid):  # NaN fails this too
        raise ValueError(f"every time in ts must lie in [0, 1]; got range [{min(grid)}, {max(grid)}]")
    diffs = np.diff(grid)
    if not (np.all(diffs < 0) or np.all(diffs > 0)):
        raise ValueError("ts must be strictly monotone")
    if direction * diffs[0] < 0:
        raise ValueError(
            f"{who} is integrated {'backwards' if direction < 0 else 'forwards'} in time; ts must be "
            f"{'decreasing' if direction < 0 else 'increasing'}, got {grid[0]} -> {grid[1]} -> ..."
        )
    return grid


def check_unshifted(process: Any, who: str) -> None:
    """Raise ``ValueError`` for a process with a mean shift ``mu`` (a mean-reverting SDE).

    Code that writes the forward drift as ``f(t) x``, or ``x_t`` as ``alpha x_0 + sigma eps``,
    is only right for processes without a shift; this check keeps it from silently computing
    the wrong thing on ``x_t = mu + alpha (x_0 - mu) + sigma eps``.
    """
    if getattr(process, "shift", None) is not None:
        raise ValueError(
            f"{who} assumes a process without a mean shift (drift f(t) x); {type(process).__name__} "
            f"has shift mu (drift f(t)(x - mu)): apply it to x - mu with a shift-free process of the same "
            f"alpha and sigma"
        )


# -- arrays ---------------------------------------------------------------------------------------
def describe(x: Any) -> str:
    """A short name for what ``x`` is: ``numpy.ndarray float64 (3, 2)``, ``torch.Tensor float32 (3,) on cuda:0``."""
    if not is_array_api_obj(x) or isinstance(x, (int, float, complex)):
        return type(x).__name__
    kind = "torch.Tensor" if is_torch_array(x) else f"{type(x).__module__.split('.')[0]}.{type(x).__name__}"
    dtype = str(x.dtype).removeprefix("torch.")
    where = f" on {x.device}" if is_torch_array(x) and x.device.type != "cpu" else ""
    return f"{kind} {dtype} {tuple(x.shape)}{where}"


def check_array(
    name: str,
    x: Any,
    *,
    ndim: int | None = None,
    min_ndim: int = 1,
    dim: int | None = None,
    finite: bool = True,
    promote: bool = True,
    shape: str | None = None,
) -> Any:
    """An array of real numbers: the rules of this module, applied to one argument.

    Refuses non-arrays and complex dtypes (``TypeError``), a wrong number of axes or a trailing
    axis other than ``dim`` (``ValueError``), NaN or infinity when ``finite`` (``ValueError``).
    Integer and boolean arrays are promoted to float64 on the same device (``promote``; with
    ``promote=False`` they are refused).  Empty batches pass.  ``shape`` describes the expected
    shape in the message for a non-array.  Returns the cleaned array.
    """
    if shape is None:
        shape = {None: "(n, ...)", 1: "(n,)", 2: f"(n, {dim or 'd'})"}.get(ndim, f"of {ndim} axes")
    if not _real_float_array(x):  # the fast path (a NumPy or torch float array) skips the namespace lookup
        if not is_array_api_obj(x) or isinstance(x, (int, float, complex, bool)) or not hasattr(x, "shape"):
            raise TypeError(f"{name} must be an array of shape {shape}; got {type(x).__name__}")
        xp = array_namespace(x)
        if xp.isdtype(x.dtype, "complex floating"):
            raise TypeError(f"{name} must be real; got complex dtype {x.dtype}")
        if not xp.isdtype(x.dtype, "real floating"):
            if not promote or not xp.isdtype(x.dtype, ("integral", "bool")):
                raise TypeError(f"{name} must have a real floating dtype; got {x.dtype}")
            x = as_array(x, x)
    if (ndim is not None and x.ndim != ndim) or (dim is not None and x.shape[-1:] != (dim,)):
        raise ValueError(f"{name} must have shape {shape}; got {tuple(x.shape)}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes (a batch first); got shape {tuple(x.shape)}")
    if finite and math.prod(x.shape):
        xp = array_namespace(x)
        if not bool(xp.all(xp.isfinite(x))):
            raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    return x


def _real_float_array(x: Any) -> bool:
    """Whether ``x`` is a NumPy array or torch tensor of a real floating dtype (from metadata alone)."""
    dtype = getattr(x, "dtype", None)
    if type(x) is np.ndarray:
        return dtype.kind == "f"
    return is_torch_array(x) and dtype.is_floating_point


def check_batch(name: str, x: Any) -> Any:
    """A batch ``(n, ...)`` of real numbers, for functions called at every step of a sampler.

    The fast path (a real floating array with a batch axis) reads only the dtype and the number
    of axes; anything else goes through :func:`check_array` (integers promoted, complex, lists and
    0-d arrays refused).  Values are not read: no device synchronisation.
    """
    if _real_float_array(x) and x.ndim >= 1:
        return x
    return check_array(name, x, finite=False)


def check_same_namespace(**arrays: Any) -> Any:
    """The namespace shared by the named arrays (``None`` values skipped); else ``TypeError`` naming them.

    NumPy arrays mixed with torch tensors, or tensors on two devices, are refused: convert them
    first (``torch.as_tensor(x, device=...)`` or ``t.cpu().numpy()``).
    """
    named = {k: v for k, v in arrays.items() if v is not None and is_array_api_obj(v) and hasattr(v, "shape")}
    kinds = {k: (is_torch_array(v), str(device_of(v)) if is_torch_array(v) else "cpu") for k, v in named.items()}
    if len(set(kinds.values())) > 1:
        listed = ", ".join(f"{k}: {describe(v)}" for k, v in named.items())
        names = list(named)
        raise TypeError(
            f"{', '.join(names[:-1])} and {names[-1]} must be arrays of one library on one device; got {listed} "
            f"(convert with torch.as_tensor(..., device=...) or .cpu().numpy())"
        )
    return namespace(*named.values())


# -- models ---------------------------------------------------------------------------------------
def check_model_output(
    name: str, out: Any, x: Any, *, what: str = "an array", input_name: str = "x", shape: tuple[int, ...] | None = None
) -> Any:
    """``out``, after checking it is what a model ``(x, t) -> array shaped like x`` must return.

    The rule: an array of ``x``'s library and device, with a real floating dtype and ``x``'s shape
    (or ``shape``, for models of another output shape, such as log-densities ``(n,)``).
    Only metadata is read (never values), so the check costs microseconds and never
    synchronises a device.  Raises ``TypeError`` (not an array, another library or device, a
    complex, integer or boolean dtype) or ``ValueError`` (another shape), naming the model and
    both shapes.
    """
    expected = tuple(x.shape) if shape is None else tuple(shape)
    if type(out) is type(x) and tuple(out.shape) == expected:  # the fast path: same array type and shape
        if is_torch_array(x):
            if out.device == x.device and out.dtype.is_floating_point:
                return out
        elif out.dtype.kind == "f":
            return out
    what = (
        f"{name} must return {what} shaped like its input {input_name} {expected}"
        if shape is None
        else f"{name} must return {what} of shape {expected}"
    )
    if not is_array_api_obj(out) or not hasattr(out, "shape") or isinstance(out, (int, float, complex)):
        raise TypeError(f"{what}; got {type(out).__name__}")
    if is_torch_array(out) != is_torch_array(x) or array_namespace(out) is not array_namespace(x):
        raise TypeError(f"{what} and of x's array type {describe(x)}; got {describe(out)}")
    if is_torch_array(x) and out.device != x.device:
        raise TypeError(f"{what} on x's device {x.device}; got {describe(out)}")
    if not array_namespace(x).isdtype(out.dtype, "real floating"):
        raise TypeError(f"{what} with a real floating dtype; got {describe(out)}")
    raise ValueError(f"{what}; got {tuple(out.shape)}")


class Counter:
    """A count of model evaluations, kept on the host (see :class:`Model`)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int = 1) -> None:
        self.n += k


class Model:
    """A user's model ``fn(x, t, ...) -> array``, called through the one output check.

    Every call returns ``fn``'s output after :func:`check_model_output` against the first
    argument (or after ``check(name, out, *args)`` for models of another signature, such as
    the joint graph score), and adds one to ``counter`` when there is one.  Dynamics wrap their
    models in this at construction; :func:`~diffcore.integrate` installs a counter for the
    number of function evaluations (NFE).  ``Model.of(fn, name)`` does not wrap twice.
    """

    __slots__ = ("check", "counter", "fn", "label", "name")

    def __init__(self, fn: Callable, name: str, *, check: Callable | None = None, counter: Counter | None = None):
        if not callable(fn):
            raise TypeError(f"{name} must be callable (x, t) -> array; got {type(fn).__name__}")
        self.fn, self.name, self.check, self.counter = fn, name, check, counter
        own = getattr(fn, "__name__", None)
        #: how errors name the model: its role and, when it has a name of its own, that name
        self.label = name if own in (None, "<lambda>", name) else f"{name} {own!r}"

    @classmethod
    def of(cls, fn: Any, name: str, *, check: Callable | None = None) -> Model:
        """``fn`` as a :class:`Model` (itself when it already is one)."""
        return fn if isinstance(fn, Model) else cls(fn, name, check=check)

    def counting(self, counter: Counter) -> Model:
        """The same model, counting its calls in ``counter``."""
        return Model(self.fn, self.name, check=self.check, counter=counter)

    def __call__(self, x: Any, *args: Any) -> Any:
        x = check_batch("x", x)  # integer points reach the model as floats
        out = self.fn(x, *args)
        if self.counter is not None:
            self.counter.n += 1
        if self.check is None:
            return check_model_output(self.label, out, x)
        return self.check(self.label, out, x, *args)

    def __repr__(self) -> str:
        return f"Model({self.fn!r}, {self.name!r})"


# -- progress bars ---------------------------------------------------------------------------------
#: seconds between redraws of a bar forced on (``progress=True``) while stderr is not a terminal:
#: a log file gets a line every half minute rather than one per step
LOG_REFRESH_SECONDS = 30.0


class _NoBar:
    """What :func:`progress_bar` returns when no bar is shown: every method does nothing."""

    def update(self, n: float = 1) -> None:
        """Nothing."""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _stderr_is_terminal() -> bool:
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def check_progress(progress: Any) -> Any:
    """``None``, ``True`` or ``False``: the ``progress`` keyword (see :func:`progress_bar`)."""
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be None (a bar when stderr is a terminal), True or False; got {progress!r}")
    return progress


def progress_bar(progress: Any, total: float, *, desc: str, unit: str = "step") -> Any:
    """A tqdm progress bar over ``total`` units, or a bar that does nothing; use it as a context manager.

    ``progress`` is the keyword of every long-running entry point (``sample``, ``integrate``,
    ``log_likelihood``, ``ito_log_density``, ``fit``):

    * ``None`` (the default): a bar only when ``sys.stderr`` is a terminal, i.e. someone
      watches; scripts whose output goes to a file or a CI log, and notebook kernels (whose
      stderr is not a terminal, and whose output a built book would keep), get none.  When
      tqdm is not installed there is silently no bar.
    * ``True``: always a bar (``ImportError`` naming the install command when tqdm is missing).
      When stderr is not a terminal it is redrawn at most every :data:`LOG_REFRESH_SECONDS`
      seconds, so a log gets a line per half minute, not one per step.
    * ``False``: never a bar.

    Anything else raises ``TypeError``.  The returned object has ``update(n)``,
    ``set_postfix(**values)`` and ``close()``.
    """
    check_progress(progress)
    terminal = _stderr_is_terminal()
    if not (terminal if progress is None else bool(progress)):
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError as err:
        if progress is None:
            return _NoBar()
        raise ImportError(
            "progress=True needs tqdm; install it with `pip install tqdm` (it comes with `pip install diffcore[torch]`)"
        ) from err
    return tqdm(total=total, desc=desc, unit=unit, mininterval=0.1 if terminal else LOG_REFRESH_SECONDS)
