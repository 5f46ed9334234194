"""NumPy twin of cython/_gru.pyx: the GRU recurrence (PyTorch's cell) and its backward pass.

    gh = h_{t-1} Wh^T + bh                        (gate order r, z, n)
    r = sigmoid(A_r + gh_r),  z = sigmoid(A_z + gh_z),  n = tanh(A_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}

Variable lengths: with batch_sizes (T,), non-increasing, step t advances only the rows
[0, batch_sizes[t]) and leaves the others' entries of the outputs as they were.
"""

import numpy as np
from scipy.special import expit

from .._kernel_args import check_head, check_head_grad
from .._kernel_args import check_shape as _check
from .lstm import check_batch_sizes


def forward(Wh, bh, A, h0, H, G, HN, n_threads=1, batch_sizes=None):
    """Fill H (T+1, B, Hn) with the states (row 0 = h0), G (T, B, 3Hn) with the activated gates and
    HN (T, B, Hn) with gh_n. n_threads is unused (the Cython signature). With batch_sizes, step t
    fills only rows [0, batch_sizes[t]) of H[t+1], G[t] and HN[t]."""
    n = Wh.shape[1]
    T, B = A.shape[:2]
    _check("Wh", Wh.shape, (3 * n, n))
    _check("bh", bh.shape, (3 * n,))
    _check("A", A.shape, (T, B, 3 * n))
    _check("h0", h0.shape, (B, n))
    _check("H", H.shape, (T + 1, B, n))
    _check("G", G.shape, (T, B, 3 * n))
    _check("HN", HN.shape, (T, B, n))
    bs = check_batch_sizes(batch_sizes, T, B)
    H[0] = h0
    for t in range(T):
        b = bs[t]
        gh = H[t, :b] @ Wh.T + bh
        r = expit(A[t, :b, :n] + gh[:, :n])
        z = expit(A[t, :b, n:2 * n] + gh[:, n:2 * n])
        nn = np.tanh(A[t, :b, 2 * n:] + r * gh[:, 2 * n:])
        H[t + 1, :b] = (1 - z) * nn + z * H[t, :b]
        G[t, :b] = np.concatenate([r, z, nn], axis=1)
        HN[t, :b] = gh[:, 2 * n:]
        if not np.isfinite(H[t + 1, :b]).all():
            raise FloatingPointError(f"non-finite hidden state at time step {t}")


def backward(Wh, H, G, HN, dH, dh_T, dA, dGh, dh0, n_threads=1, batch_sizes=None):
    """Fill dA and dGh (T, B, 3Hn) and dh0 (B, Hn) from dH (T, B, Hn), the gradient reaching each
    h_t, and dh_T, the gradient arriving at the last state from a later chunk.

    dA is the gradient w.r.t. A, dGh w.r.t. the recurrent pre-activation gh = h_{t-1} Wh^T + bh: the
    same for r and z, dA_n * r for n (gh_n enters through r * gh_n).

    With batch_sizes, step t fills only rows [0, batch_sizes[t]) of dA[t] and dGh[t]; a row's
    running gradient waits (dh_T as given) until its last valid step.
    """
    T, B, n = dH.shape
    _check("Wh", Wh.shape, (3 * n, n))
    _check("H", H.shape, (T + 1, B, n))
    _check("G", G.shape, (T, B, 3 * n))
    _check("HN", HN.shape, (T, B, n))
    _check("dh_T", dh_T.shape, (B, n))
    _check("dA", dA.shape, (T, B, 3 * n))
    _check("dGh", dGh.shape, (T, B, 3 * n))
    _check("dh0", dh0.shape, (B, n))
    bs = check_batch_sizes(batch_sizes, T, B)
    dh_all = dh_T.copy()
    for t in range(T - 1, -1, -1):
        b = bs[t]
        r, z, nn = (G[t, :b, k * n:(k + 1) * n] for k in range(3))
        dh = dH[t, :b] + dh_all[:b]
        da_n = dh * (1 - z) * (1 - nn**2)
        da_r = da_n * HN[t, :b] * r * (1 - r)
        da_z = dh * (H[t, :b] - nn) * z * (1 - z)
        dA[t, :b] = np.concatenate([da_r, da_z, da_n], axis=1)
        dGh[t, :b] = np.concatenate([da_r, da_z, da_n * r], axis=1)
        dh = dh * z + dGh[t, :b] @ Wh
        dh_all[:b] = dh
        if not np.isfinite(dh).all():
            raise FloatingPointError(f"non-finite gradient at time step {t}")
    dh0[...] = dh_all


def forward_fused(Wx, bx, Wh, bh, X, h0, H, G, HN, n_threads=1, batch_sizes=None, V=None, c=None,
                  out=None):
    """forward() from the inputs: the projections X Wx^T + bx are formed here (the Cython twin
    forms them step by step inside its loop). With V, c and out: out[t] = H[t + 1] V^T + c, at the
    valid rows only."""
    n = Wh.shape[1]
    T, B, I = X.shape
    _check("Wh", Wh.shape, (3 * n, n))
    _check("Wx", Wx.shape, (3 * n, I))
    _check("bx", bx.shape, (3 * n,))
    check_head(V, c, out, T, B, n)
    A = (X.reshape(T * B, I) @ Wx.T + bx).reshape(T, B, 3 * n)
    forward(Wh, bh, A, h0, H, G, HN, n_threads, batch_sizes)
    if V is not None:
        bs = check_batch_sizes(batch_sizes, T, B)
        for t in range(T):
            out[t, :bs[t]] = H[t + 1, :bs[t]] @ V.T + c


def backward_fused(Wh, X, H, G, HN, dH, dh_T, dh0, dWx, dWh, dbx, dbh, n_threads=1,
                   batch_sizes=None, dA=None, dO=None, V=None, dV=None):
    """backward() and the weight gradients over the valid steps: dWx = sum dA_t^T x_t,
    dbx = sum of dA_t's rows, dWh = sum dGh_t^T h_{t-1}, dbh = sum of dGh_t's rows. dA (or None)
    receives the gradients at A at the valid rows. The loss gradient at the states is dH, or
    (dH None) dO @ V; with dV too, dV = sum dO_t^T h_t over the valid rows."""
    T, B, I = X.shape
    n = Wh.shape[1]
    check_head_grad(dH, dO, V, dV, T, B, n)
    bs = check_batch_sizes(batch_sizes, T, B)
    if dO is not None:
        dH = dO @ V
        if dV is not None:
            dV[...] = sum((dO[t, :bs[t]].T @ H[t + 1, :bs[t]] for t in range(T)),
                          np.zeros(V.shape, dtype=dO.dtype))
    _check("dWx", dWx.shape, (3 * n, I))
    _check("dWh", dWh.shape, (3 * n, n))
    _check("dbx", dbx.shape, (3 * n,))
    _check("dbh", dbh.shape, (3 * n,))
    if dA is not None:
        _check("dA", dA.shape, (T, B, 3 * n))
    da = np.zeros((T, B, 3 * n), dtype=dH.dtype)
    dgh = np.zeros((T, B, 3 * n), dtype=dH.dtype)
    backward(Wh, H, G, HN, dH, dh_T, da, dgh, dh0, n_threads, batch_sizes)
    # rows past each sequence's end are zero in da and dgh, so they add nothing
    da2, dgh2 = da.reshape(T * B, 3 * n), dgh.reshape(T * B, 3 * n)
    dWx[...] = da2.T @ X.reshape(T * B, I)
    dWh[...] = dgh2.T @ H[:-1].reshape(T * B, n)
    dbx[...] = da2.sum(axis=0)
    dbh[...] = dgh2.sum(axis=0)
    if dA is not None:
        for t in range(T):
            dA[t, :bs[t]] = da[t, :bs[t]]
