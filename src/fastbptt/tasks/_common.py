"""Helpers shared by the task generators: seeds, dtypes and prediction decoding."""

from __future__ import annotations

import numpy as np

SeedLike = int | np.random.Generator | None

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_rng(seed: SeedLike) -> np.random.Generator:
    """Return `seed` itself if it is a Generator, else a fresh PCG64 Generator seeded with it."""
    if isinstance(seed, np.random.Generator):
        return seed
    # A legacy RandomState or a float seed would silently give a different stream: refuse them.
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be an int, None or a numpy.random.Generator, not {type(seed).__name__}"
        )
    return np.random.default_rng(seed)


def float_dtype(dtype) -> np.dtype:
    """Validate that `dtype` is float32 or float64 (the two the kernels are built for)."""
    dt = np.dtype(dtype)
    if dt not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, not {dt}")
    return dt


def positive_int(name: str, value) -> int:
    """Validate a count argument (an integer >= 1) and return it as a Python int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def decode_predictions(Y_hat, Y, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Hard predictions and integer targets of one common shape, for the accuracy helpers.

    Y_hat may have Y's shape (one score per target: `> threshold`), or Y's shape plus a trailing
    axis of size 1 (same), or of size >= 2 (class scores: argmax). Y may also carry a trailing axis
    of size 1 that Y_hat lacks.
    """
    Y_hat = np.asarray(Y_hat)
    Y_true = np.asarray(Y)
    if Y_hat.shape == Y_true.shape:
        pred = Y_hat > threshold
    elif Y_hat.ndim == Y_true.ndim + 1 and Y_hat.shape[:-1] == Y_true.shape:
        if Y_hat.shape[-1] == 1:
            pred = Y_hat[..., 0] > threshold
        else:
            pred = np.argmax(Y_hat, axis=-1)
    elif Y_true.ndim == Y_hat.ndim + 1 and Y_true.shape == Y_hat.shape + (1,):
        pred = Y_hat > threshold
        Y_true = Y_true[..., 0]
    else:
        raise ValueError(
            f"predictions of shape {Y_hat.shape} do not match targets of shape {Y_true.shape}"
        )
    Y_int = np.rint(Y_true).astype(np.int64)
    if not np.array_equal(Y_int, Y_true):
        raise ValueError("targets must hold integer values (0/1 bits or class ids)")
    return pred.astype(np.int64), Y_int
