"""Input validation shared by the model, the training loop and the checkpoint reader."""

import math

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
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be read as an array: {exc}") from exc
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; expected real numbers (float, int or bool)")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not all_finite(out):
        raise ValueError(f"{name} contains NaN or Inf")
    return out


def all_finite(a):
    """Whether every entry of a is finite. A sum is finite only when every entry is, and one
    reduction costs less than a test per entry; the exact test runs only when the sum is not."""
    return math.isfinite(_sum(a, None)) or bool(np.isfinite(a).all())


def sum_finite(arrays):
    """Whether every entry of every array is finite (as all_finite, one reduction each)."""
    total = 0.0
    for a in arrays:
        total += _sum(a, None)
    return math.isfinite(total) or all(np.isfinite(a).all() for a in arrays)


def positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
