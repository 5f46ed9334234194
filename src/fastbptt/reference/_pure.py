"""What the pure-Python twins share: the scalar sigmoid, the finiteness test of a row, the product
W^T d accumulated row by row, and writing per-step lists back into the caller's arrays; and the
work around the time loops that their fused entries compose: the input projection, the logits, the
loss gradient at the states and the weight gradients. That work is parallel over time, done by
NumPy products exactly as cells.py forms it around the unfused entries, so the baseline times the
recurrence alone written plainly."""

import math

import numpy as np

from .._kernel_args import check_batch_sizes, check_head, check_shape


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


def project(Wx, b, X, rows):
    """The pre-activations A = X Wx^T + b, (T, B, rows), one product; Wx and b checked."""
    T, B, I = X.shape
    check_shape("Wx", Wx.shape, (rows, I))
    check_shape("b", b.shape, (rows,))
    return (X.reshape(T * B, I) @ Wx.T + b).reshape(T, B, rows)


def logits(H, V, c, out, batch_sizes):
    """out[t] = H[t + 1] V^T + c at the valid rows of each step, for a linear output layer."""
    T, B, n = H.shape[0] - 1, H.shape[1], H.shape[2]
    check_head(V, c, out, T, B, n)
    if V is None:
        return
    bs = check_batch_sizes(batch_sizes, T, B, full_if_none=True)
    for t in range(T):
        out[t, :bs[t]] = H[t + 1, :bs[t]] @ V.T + c


def loss_grad(dH, dO, V, dV, H, batch_sizes):
    """The loss gradient reaching every h_t: dH, or dO @ V from the gradient dO (T, B, O) at a
    linear head's outputs and its weights V (O, n); exactly one of the two. With dV (O, n), also
    the head's weight gradient sum_t dO_t^T h_t over the valid rows."""
    T, B, n = H.shape[0] - 1, H.shape[1], H.shape[2]
    if (dH is None) == (dO is None) or (dO is None) != (V is None):
        raise ValueError("give the loss gradient as dH, or as dO and V (dH = dO @ V), not both")
    if dV is not None and dO is None:
        raise ValueError("dV needs dO and V")
    if dO is None:
        check_shape("dH", dH.shape, (T, B, n))
        return dH
    check_shape("V", V.shape, (V.shape[0], n))
    check_shape("dO", dO.shape, (T, B, V.shape[0]))
    if dV is not None:
        check_shape("dV", dV.shape, V.shape)
        bs = check_batch_sizes(batch_sizes, T, B, full_if_none=True)
        dV[...] = sum((dO[t, :bs[t]].T @ H[t + 1, :bs[t]] for t in range(T)),
                      np.zeros(V.shape, dtype=dO.dtype))
    return dO @ V


def weight_grads(dA, X, H, dWx, dWh, db):
    """dWx = sum_t dA_t^T x_t, dWh = sum_t dA_t^T h_{t-1}, db = sum of dA's rows; one product each.
    Rows past a sequence's end must be zero in dA."""
    T, B, rows = dA.shape
    I, n = X.shape[2], H.shape[2]
    check_shape("X", X.shape, (T, B, I))
    check_shape("dWx", dWx.shape, (rows, I))
    check_shape("dWh", dWh.shape, (rows, n))
    check_shape("db", db.shape, (rows,))
    flat = dA.reshape(T * B, rows)
    dWx[...] = flat.T @ X.reshape(T * B, I)
    dWh[...] = flat.T @ H[:-1].reshape(T * B, n)
    db[...] = flat.sum(axis=0)


def gru_weight_grads(dA, dGh, X, H, dWx, dWh, dbx, dbh):
    """The GRU's: dWx = sum_t dA_t^T x_t, dbx = sum of dA's rows from the gradients at the input
    projection; dWh = sum_t dGh_t^T h_{t-1}, dbh = sum of dGh's rows from those at Wh h + bh.
    Rows past a sequence's end must be zero in dA and dGh."""
    T, B, rows = dA.shape
    I, n = X.shape[2], H.shape[2]
    check_shape("X", X.shape, (T, B, I))
    check_shape("dWx", dWx.shape, (rows, I))
    check_shape("dWh", dWh.shape, (rows, n))
    check_shape("dbx", dbx.shape, (rows,))
    check_shape("dbh", dbh.shape, (rows,))
    flat, flat_h = dA.reshape(T * B, rows), dGh.reshape(T * B, rows)
    dWx[...] = flat.T @ X.reshape(T * B, I)
    dWh[...] = flat_h.T @ H[:-1].reshape(T * B, n)
    dbx[...] = flat.sum(axis=0)
    dbh[...] = flat_h.sum(axis=0)


def copy_valid(dst, src, batch_sizes):
    """dst[t, :batch_sizes[t]] = src[t, :batch_sizes[t]] (every row when batch_sizes is None)."""
    if batch_sizes is None:
        dst[...] = src
        return
    for t, b in enumerate(batch_sizes):
        dst[t, :b] = src[t, :b]
