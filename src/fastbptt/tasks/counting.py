"""Counting the ones seen so far (seed 003).

Each step reads one bit; the target at step t is the number of ones in steps 0..t. Seed 003 solves
it with a single ReLU unit and no output layer (h_t = relu(w_rec h_{t-1} + w_x x_t); the exact
solution is w_rec = w_x = 1), sequences of length 5 (and 10, where training struggled), bits from
round(uniform), i.e. p = 0.5, and loss 0.5 * (h_t - target)^2.
"""

from __future__ import annotations

import numpy as np

from ._common import SeedLike, as_rng, float_dtype, positive_int

__all__ = ["counting_accuracy", "running_sum"]


def running_sum(
    n_samples: int,
    T: int,
    seed: SeedLike = 0,
    *,
    p: float = 0.5,
    dtype=np.float64,
    normalise: bool = False,
):
    """Random bit sequences and their running counts, time-major.

    Parameters
    ----------
    n_samples : number of sequences B.
    T : sequence length.
    seed : int, None or numpy.random.Generator; the same int gives the same data bit for bit.
    p : probability that a bit is 1.
    dtype : float32 or float64.
    normalise : if True, targets are divided by T so they lie in [0, 1] whatever the length (useful
        when comparing lengths or with a bounded output); pass `scale=T` to `counting_accuracy`
        then.

    Returns
    -------
    X : (T, B, 1) bits 0/1.
    Y : (T, B, 1) count of ones in steps 0..t (divided by T if `normalise`).
    """
    n_samples = positive_int("n_samples", n_samples)
    T = positive_int("T", T)
    dt = float_dtype(dtype)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    rng = as_rng(seed)
    bits = rng.random((T, n_samples, 1)) < p
    # Counts are integers, exact in either dtype (float32 is exact up to 2**24 steps).
    counts = np.cumsum(bits, axis=0, dtype=np.int64)
    Y = counts.astype(dt)
    if normalise:
        Y /= dt.type(T)
    return bits.astype(dt), Y


def counting_accuracy(Y_hat, Y, *, scale: float = 1.0) -> float:
    """Fraction of steps (over all sequences) where round(Y_hat * scale) equals Y * scale.

    Use scale = T with targets made by `running_sum(..., normalise=True)`; with raw counts keep 1.
    Y_hat and Y are (T, B, 1) or (T, B); either may carry the trailing axis of size 1.
    """
    Y_hat = np.asarray(Y_hat, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if Y_hat.shape == Y.shape + (1,):
        Y_hat = Y_hat[..., 0]
    elif Y.shape == Y_hat.shape + (1,):
        Y = Y[..., 0]
    if Y_hat.shape != Y.shape:
        raise ValueError(f"predictions of shape {Y_hat.shape} do not match targets {Y.shape}")
    # Normalised targets times T may be off by one ulp: round them too (they are counts).
    return float(np.mean(np.rint(Y_hat * scale) == np.rint(Y * scale)))
