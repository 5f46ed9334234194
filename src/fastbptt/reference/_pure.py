"""What the pure-Python twins share: the scalar sigmoid, the finiteness test of a row, the product
W^T d accumulated row by row, and writing per-step lists back into the caller's arrays."""

import math


def sigmoid(x):
    # the two branches keep exp's argument <= 0, so it never overflows
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def finite(row):
    return all(math.isfinite(v) for v in row)


def add_transposed(new, w, d):
    """new += W^T d, W given as its rows w (one per entry of d)."""
    n = len(new)
    for k, dk in enumerate(d):
        row = w[k]
        for j in range(n):
            new[j] += row[j] * dk


def store_steps(out, steps, bs):
    """out[t, :bs[t]] = steps[t] for every step t (every row when bs is None)."""
    if bs is None:
        if len(steps):
            out[...] = steps
        return
    for t, rows in enumerate(steps):
        if bs[t]:
            out[t, :bs[t]] = rows
