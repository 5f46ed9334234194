"""Argument checks shared by every kernel: the Cython drivers and their NumPy and pure-Python twins."""

import numpy as np


def check_shape(name, shape, expected):
    """A ValueError naming the array unless its shape is the expected one."""
    if tuple(shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(shape)}, expected {tuple(expected)}")


def check_batch_sizes(batch_sizes, T, B, full_if_none=False):
    """batch_sizes as a C-contiguous intp array after checking it (shape (T,), values in [0, B],
    non-increasing); None stays None, or becomes all B (every row at every step) with full_if_none."""
    if batch_sizes is None:
        return np.full(T, B, dtype=np.intp) if full_if_none else None
    bs = np.asarray(batch_sizes)
    if bs.dtype.kind not in "iu":
        raise ValueError(f"batch_sizes has dtype {bs.dtype}, expected integers (intp)")
    check_shape("batch_sizes", bs.shape, (T,))
    if T and (bs.min() < 0 or bs.max() > B):
        raise ValueError(f"batch_sizes must lie in [0, B={B}], got range [{bs.min()}, {bs.max()}]")
    if np.any(bs[1:] > bs[:-1]):
        raise ValueError("batch_sizes must be non-increasing "
                         "(the batch sorted by decreasing length)")
    return np.ascontiguousarray(bs, dtype=np.intp)
