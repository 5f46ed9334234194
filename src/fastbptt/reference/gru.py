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
from ._pure import copy_valid, gru_weight_grads, logits, loss_grad, project
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
    """forward() from the inputs X (T, B, I): A = X Wx^T + bx, then the recurrence (the Cython
    twin forms each step's projection inside its loop); with V, c and out, the logits
    out[t] = H[t + 1] V^T + c too, at the valid rows only."""
    check_head(V, c, out, X.shape[0], X.shape[1], Wh.shape[1])
    A = project(Wx, bx, X, Wh.shape[0])
    forward(Wh, bh, A, h0, H, G, HN, n_threads, batch_sizes)
    logits(H, V, c, out, batch_sizes)


def backward_fused(Wh, X, H, G, HN, dH, dh_T, dh0, dWx, dWh, dbx, dbh, n_threads=1,
                   batch_sizes=None, dA=None, dO=None, V=None, dV=None):
    """backward(), then the weight gradients dWx, dbx (from the gradients at A) and dWh, dbh
    (from those at gh = Wh h + bh) over the valid steps; dA, when given, receives the gradients
    at A at the valid rows. The loss gradient at the states is dH, or dO @ V (dH None), and dV
    (with dO) the head's weight gradient over the valid rows."""
    check_head_grad(dH, dO, V, dV, H.shape[0] - 1, H.shape[1], H.shape[2])
    dH = loss_grad(dH, dO, V, dV, H, batch_sizes)
    T, B, n = dH.shape
    if dA is not None:
        _check("dA", dA.shape, (T, B, 3 * n))
    # zero past each sequence's end, so those rows add nothing to the weight gradients
    da = np.zeros((T, B, 3 * n), dtype=dH.dtype)
    dgh = np.zeros((T, B, 3 * n), dtype=dH.dtype)
    backward(Wh, H, G, HN, dH, dh_T, da, dgh, dh0, n_threads, batch_sizes)
    gru_weight_grads(da, dgh, X, H, dWx, dWh, dbx, dbh)
    if dA is not None:
        copy_valid(dA, da, batch_sizes)
