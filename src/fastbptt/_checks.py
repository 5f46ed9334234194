"""Input validation shared by the model, the training loop and the checkpoint reader."""

import numpy as np

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
    if out.size and not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return out


def positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
