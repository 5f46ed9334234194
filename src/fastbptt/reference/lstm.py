"""NumPy twin of cython/_lstm.pyx: the LSTM recurrence (PyTorch's cell) and its backward pass.

    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of  A[t] + h_{t-1} Wh^T     (gate order i, f, g, o)
    c_t = f * c_{t-1} + i * g,    h_t = o * tanh(c_t)

Variable lengths: with batch_sizes (T,), non-increasing, step t advances only the rows
[0, batch_sizes[t]) and leaves the others' entries of the outputs as they were.
"""

import numpy as np
from scipy.special import expit

from .. import _kernel_args as _args
from .._kernel_args import check_head
from .._kernel_args import check_shape as _check


def check_batch_sizes(batch_sizes, T, B):
    """batch_sizes checked, as intp; all B (every row at every step) when it is None."""
    return _args.check_batch_sizes(batch_sizes, T, B, full_if_none=True)


def forward(Wh, A, h0, c0, H, C, G, n_threads=1, batch_sizes=None):
    """Fill H, C (T+1, B, Hn) with the states (row 0 = h0, c0) and G (T, B, 4Hn) with the activated
    gates. n_threads is unused (the Cython signature). With batch_sizes, step t fills only rows
    [0, batch_sizes[t]) of H[t+1], C[t+1] and G[t]."""
    n = Wh.shape[1]
    T, B = A.shape[:2]
    _check("Wh", Wh.shape, (4 * n, n))
    _check("A", A.shape, (T, B, 4 * n))
    _check("h0", h0.shape, (B, n))
    _check("c0", c0.shape, (B, n))
    _check("H", H.shape, (T + 1, B, n))
    _check("C", C.shape, (T + 1, B, n))
    _check("G", G.shape, (T, B, 4 * n))
    bs = check_batch_sizes(batch_sizes, T, B)
    H[0] = h0
    C[0] = c0
    for t in range(T):
        b = bs[t]
        z = A[t, :b] + H[t, :b] @ Wh.T
        i = expit(z[:, :n])
        f = expit(z[:, n:2 * n])
        g = np.tanh(z[:, 2 * n:3 * n])
        o = expit(z[:, 3 * n:])
        C[t + 1, :b] = f * C[t, :b] + i * g
        H[t + 1, :b] = o * np.tanh(C[t + 1, :b])
        G[t, :b] = np.concatenate([i, f, g, o], axis=1)
        if not (np.isfinite(C[t + 1, :b]).all() and np.isfinite(H[t + 1, :b]).all()):
            raise FloatingPointError(f"non-finite hidden or cell state at time step {t}")


def backward(Wh, H, C, G, dH, dh_T, dc_T, dA, dh0, dc0, n_threads=1, batch_sizes=None):
    """Fill dA (T, B, 4Hn), dh0 and dc0 (B, Hn) from dH (T, B, Hn), the gradient reaching each h_t,
    and dh_T, dc_T, the gradients arriving at the last state from a later chunk.

    With batch_sizes, step t fills only rows [0, batch_sizes[t]) of dA[t]; a row's running gradient
    waits (dh_T, dc_T as given) until its last valid step."""
    T, B, n = dH.shape
    _check("Wh", Wh.shape, (4 * n, n))
    _check("H", H.shape, (T + 1, B, n))
    _check("C", C.shape, (T + 1, B, n))
    _check("G", G.shape, (T, B, 4 * n))
    _check("dh_T", dh_T.shape, (B, n))
    _check("dc_T", dc_T.shape, (B, n))
    _check("dA", dA.shape, (T, B, 4 * n))
    _check("dh0", dh0.shape, (B, n))
    _check("dc0", dc0.shape, (B, n))
    bs = check_batch_sizes(batch_sizes, T, B)
    dh_all = dh_T.copy()
    dc_all = dc_T.copy()
    for t in range(T - 1, -1, -1):
        b = bs[t]
        i, f, g, o = (G[t, :b, k * n:(k + 1) * n] for k in range(4))
        tanh_c = np.tanh(C[t + 1, :b])
        dh = dH[t, :b] + dh_all[:b]
        dc = dc_all[:b] + dh * o * (1 - tanh_c**2)
        dA[t, :b, :n] = dc * g * i * (1 - i)
        dA[t, :b, n:2 * n] = dc * C[t, :b] * f * (1 - f)
        dA[t, :b, 2 * n:3 * n] = dc * i * (1 - g**2)
        dA[t, :b, 3 * n:] = dh * tanh_c * o * (1 - o)
        dc = dc * f
        dh = dA[t, :b] @ Wh
        dh_all[:b] = dh
        dc_all[:b] = dc
        if not (np.isfinite(dh).all() and np.isfinite(dc).all()):
            raise FloatingPointError(f"non-finite gradient at time step {t}")
    dh0[...] = dh_all
    dc0[...] = dc_all


def forward_fused(Wx, b, Wh, X, h0, c0, H, C, G, n_threads=1, batch_sizes=None, V=None, c=None,
                  out=None):
    """forward() from the inputs: the pre-activations X Wx^T + b are formed here (the Cython twin
    forms them step by step inside its loop). With V, c and out: out[t] = H[t + 1] V^T + c, at the
    valid rows only."""
    n = Wh.shape[1]
    T, B, I = X.shape
    _check("Wh", Wh.shape, (4 * n, n))
    _check("Wx", Wx.shape, (4 * n, I))
    _check("b", b.shape, (4 * n,))
    check_head(V, c, out, T, B, n)
    A = (X.reshape(T * B, I) @ Wx.T + b).reshape(T, B, 4 * n)
    forward(Wh, A, h0, c0, H, C, G, n_threads, batch_sizes)
    if V is not None:
        bs = check_batch_sizes(batch_sizes, T, B)
        for t in range(T):
            out[t, :bs[t]] = H[t + 1, :bs[t]] @ V.T + c


def backward_fused(Wh, X, H, C, G, dH, dh_T, dc_T, dh0, dc0, dWx, dWh, db, n_threads=1,
                   batch_sizes=None, dA=None, dO=None, V=None, dV=None):
    """backward() and the weight gradients over the valid steps: dWx = sum dA_t^T x_t,
    dWh = sum dA_t^T h_{t-1}, db = sum of dA_t's rows. dA (or None) receives the gate gradients
    at the valid rows. The loss gradient at the states is dH, or (dH None) dO @ V; with dV too,
    dV = sum dO_t^T h_t over the valid rows."""
    T, B, I = X.shape
    n = Wh.shape[1]
    if (dH is None) == (dO is None) or (dO is None) != (V is None):
        raise ValueError("give the loss gradient as dH, or as dO and V (dH = dO @ V), not both")
    if dO is not None:
        _check("V", V.shape, (V.shape[0], n))
        _check("dO", dO.shape, (T, B, V.shape[0]))
        dH = dO @ V
        if dV is not None:
            _check("dV", dV.shape, V.shape)
            bs = check_batch_sizes(batch_sizes, T, B)
            dV[...] = sum((dO[t, :bs[t]].T @ H[t + 1, :bs[t]] for t in range(T)),
                          np.zeros(V.shape, dtype=dO.dtype))
    elif dV is not None:
        raise ValueError("dV needs dO and V")
    _check("dH", dH.shape, (T, B, n))
    _check("dWx", dWx.shape, (4 * n, I))
    _check("dWh", dWh.shape, (4 * n, n))
    _check("db", db.shape, (4 * n,))
    if dA is not None:
        _check("dA", dA.shape, (T, B, 4 * n))
    gates = np.zeros((T, B, 4 * n), dtype=dH.dtype)
    backward(Wh, H, C, G, dH, dh_T, dc_T, gates, dh0, dc0, n_threads, batch_sizes)
    flat = gates.reshape(T * B, 4 * n)
    # rows past each sequence's end are zero in `gates`, so they add nothing
    dWx[...] = flat.T @ X.reshape(T * B, I)
    dWh[...] = flat.T @ H[:-1].reshape(T * B, n)
    db[...] = flat.sum(axis=0)
    if dA is not None:
        bs = check_batch_sizes(batch_sizes, T, B)
        for t in range(T):
            dA[t, :bs[t]] = gates[t, :bs[t]]
