"""Input validation shared by the model, the training loop and the checkpoint reader."""

import math
import os

import numpy as np

_sum = np.add.reduce

DTYPES = (np.float32, np.float64)


def as_dtype(dtype):
    """np.float32 | np.float64 from anything numpy accepts as a dtype; otherwise a clear error."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype {dtype!r} is not a dtype; expected float32 or float64") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype {dt} is not supported; expected float32 or float64")
    return dt


def real_array(name, value, dtype):
    """A C-contiguous copy-if-needed of value as dtype; refuses complex, object, strings and non-finite."""
    if (type(value) is np.ndarray and value.ndim and value.dtype == dtype
            and value.flags.c_contiguous):
        out = value  # already what the kernels take: no conversion to ask for
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} could not be read as an array: {exc}") from exc
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} has dtype {arr.dtype}; expected real numbers (float, int or "
                            "bool)")
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not all_finite(out):
        raise ValueError(f"{name} contains NaN or Inf")
    return out


# from this many float32 values on, NumPy's max and min together beat its (pairwise) sum
_EXTREMES_FROM = 1 << 15


def _by_extremes(a):
    return a.dtype == np.float32 and a.size >= _EXTREMES_FROM


def _extremes_finite(a):
    """Whether every entry is finite, exactly: max and min carry any NaN, and any infinity."""
    return math.isfinite(np.maximum.reduce(a, None)) and math.isfinite(np.minimum.reduce(a, None))


try:  # the compiled tests, when the extension is built (the NumPy backend works without them)
    from ._build import all_finite as _compiled_finite
    from ._build import all_within as _compiled_within
    from ._build import each_finite as _compiled_each
except ImportError:
    _compiled_finite = _compiled_within = _compiled_each = None


def all_finite(a):
    """Whether every entry of a is finite: the compiled test for C-contiguous float arrays, else a
    sum (finite only when every entry is; one reduction costs less than a test per entry), with
    the exact test only when the sum is not."""
    if _compiled_finite is not None and type(a) is np.ndarray:
        ok = _compiled_finite(a)
        if ok is not None:
            return ok
    if _by_extremes(a):
        return _extremes_finite(a)
    return math.isfinite(_sum(a, None)) or bool(np.isfinite(a).all())


def all_within(a, lo, hi):
    """Whether every entry of a lies in [lo, hi] (a NaN does not): the compiled test for
    C-contiguous float arrays, else NumPy's minimum and maximum."""
    if _compiled_finite is not None and type(a) is np.ndarray:
        ok = _compiled_within(a, lo, hi)
        if ok is not None:
            return ok
    return not a.size or bool(lo <= np.minimum.reduce(a, None) and np.maximum.reduce(a, None) <= hi)


def compiled_finite():
    """Whether the compiled finiteness test is in use (then one test per array beats joining)."""
    return _compiled_finite is not None


def sum_finite(arrays):
    """Whether every entry of every array of a sequence is finite (as all_finite, one or two
    reductions each)."""
    if _compiled_finite is not None:
        ok = _compiled_each(arrays)  # one call for all: a call's parameters are checked each time
        if ok is not None:
            return ok
        return all(all_finite(a) for a in arrays)
    total = 0.0
    for a in arrays:
        if not _by_extremes(a):
            total += _sum(a, None)
        elif not _extremes_finite(a):
            return False
    return math.isfinite(total) or all(np.isfinite(a).all() for a in arrays)


def nonneg_float(name, value):
    """value as a float, refused unless it is a finite number >= 0."""
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return out


def positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# More threads than this is a mistake, not a machine: each OpenMP thread reserves a stack, and a
# team of thousands ends the process (libgomp aborts) instead of raising
MAX_THREADS = 256


def thread_count(value):
    """n_threads as a positive int no larger than MAX_THREADS; the kernels use at most one thread
    per block of work (a call on B sequences runs at most B)."""
    n = positive_int("n_threads", value)
    if n > MAX_THREADS:
        raise ValueError(f"n_threads must be at most {MAX_THREADS}, got {value!r}; the kernels run "
                         "at most one thread per sequence of a batch")
    return n


# gates per cell and bias vectors per layer (gru has bx and bh)
_GATES = {"tanh": (1, 1), "relu": (1, 1), "step": (1, 1), "lstm": (4, 1), "gru": (3, 2)}
# what a parameter array costs beside its data (the ndarray, its dict entries, the cell objects)
_OVERHEAD_PER_ARRAY = 2048


def param_bytes(cell, input_size, hidden_size, output_size, num_layers, directions, dtype):
    """Bytes the parameters of such a model take (estimated from the sizes alone, before anything
    is built): weights, biases and the output layer, plus a small fixed cost per array."""
    gates, biases = _GATES[cell]
    count, arrays = 0, 0
    for layer in range(min(num_layers, 2)):  # layers past the second all have the second's shapes
        n_in = input_size if layer == 0 else hidden_size * directions
        per = gates * hidden_size * (n_in + hidden_size + biases)
        times = 1 if layer == 0 else num_layers - 1
        count += per * directions * times
        arrays += (2 + biases) * directions * times
    if output_size is not None:
        count += output_size * (hidden_size * directions + 1)
        arrays += 2
    return count * np.dtype(dtype).itemsize + arrays * _OVERHEAD_PER_ARRAY


def memory_limit():
    """Bytes of physical memory (None where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_fits(nbytes, what):
    """Refuse, before allocating, `nbytes` that cannot fit in this machine's memory."""
    limit = memory_limit()
    if limit is not None and nbytes > limit:
        raise ValueError(f"{what} would take {nbytes / 2**30:.3g} GiB, more than this machine's "
                         f"{limit / 2**30:.3g} GiB of memory")
