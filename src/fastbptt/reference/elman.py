"""NumPy twin of cython/_elman.pyx: h_t = f(a_t + W h_{t-1}) and its backward pass through time.

Variable lengths: with batch_sizes (T,), non-increasing, step t advances only the rows
[0, batch_sizes[t]) and leaves the others' entries of the outputs as they were.
"""

import numpy as np

from .._kernel_args import check_head
from .._kernel_args import check_shape as _check
from .lstm import check_batch_sizes

TANH = 0
RELU = 1
STEP = 2


def _activate(act, a):
    if act == TANH:
        return np.tanh(a)
    if act == RELU:
        return np.maximum(a, 0)
    return (a > 0).astype(a.dtype)


def _fprime(act, h):
    """f'(a) written through the output h = f(a)."""
    if act == TANH:
        return 1 - h * h
    return (h > 0).astype(h.dtype)



def forward(act, W, A, h0, H, n_threads=1, batch_sizes=None):
    """Fill H (T+1, B, H) with the states; H[0] = h0. n_threads is unused (the Cython signature).
    With batch_sizes, step t fills only rows [0, batch_sizes[t]) of H[t+1]."""
    if act not in (TANH, RELU, STEP):
        raise ValueError(f"unknown activation code {act}")
    T, B, n = A.shape
    _check("W", W.shape, (n, n))
    _check("h0", h0.shape, (B, n))
    _check("H", H.shape, (T + 1, B, n))
    bs = check_batch_sizes(batch_sizes, T, B)
    H[0] = h0
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as an error below
        for t in range(T):
            b = bs[t]
            H[t + 1, :b] = _activate(act, A[t, :b] + H[t, :b] @ W.T)
            if not np.isfinite(H[t + 1, :b]).all():
                raise FloatingPointError(f"non-finite hidden state at time step {t}")


def backward(act, W, H, dH, dh_T, dA, dh0, n_threads=1, batch_sizes=None):
    """Fill dA (T, B, H) and dh0 (B, H) from dH (T, B, H), the gradient reaching each h_t, and dh_T.
    With batch_sizes, step t fills only rows [0, batch_sizes[t]) of dA[t]; a row's running
    gradient waits (dh_T as given) until its last valid step."""
    if act == STEP:
        raise ValueError("the step cell is forward only: its derivative is zero almost everywhere")
    if act not in (TANH, RELU):
        raise ValueError(f"unknown activation code {act}")
    T, B, n = dH.shape
    _check("W", W.shape, (n, n))
    _check("H", H.shape, (T + 1, B, n))
    _check("dh_T", dh_T.shape, (B, n))
    _check("dA", dA.shape, (T, B, n))
    _check("dh0", dh0.shape, (B, n))
    bs = check_batch_sizes(batch_sizes, T, B)
    dh = dh_T.copy()
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as an error below
        for t in range(T - 1, -1, -1):
            b = bs[t]
            dA[t, :b] = (dH[t, :b] + dh[:b]) * _fprime(act, H[t + 1, :b])
            dh[:b] = dA[t, :b] @ W
            if not np.isfinite(dh[:b]).all():
                raise FloatingPointError(f"non-finite gradient at time step {t}")
    dh0[...] = dh


def _valid(batch_sizes, T, B):
    """(T, B) mask of the steps batch_sizes keeps (all of them when None)."""
    return np.arange(B)[None, :] < check_batch_sizes(batch_sizes, T, B)[:, None]


def forward_fused(act, U, b, W, X, h0, H, n_threads=1, batch_sizes=None, V=None, c=None,
                  out=None):
    """forward() from the inputs: a_t = U x_t + b, then the recurrence (twin of the Cython entry that
    forms a_t inside its time loop). With V, c and out: the logits out[t] = H[t + 1] V^T + c of a
    linear output layer, at the valid rows only with batch_sizes."""
    T, B, I = X.shape
    n = W.shape[0]
    _check("U", U.shape, (n, I))
    _check("b", b.shape, (n,))
    check_head(V, c, out, T, B, n)
    if batch_sizes is None:
        A = (X.reshape(T * B, I) @ U.T + b).reshape(T, B, n)
    else:
        valid = _valid(batch_sizes, T, B)
        A = np.zeros((T, B, n), dtype=X.dtype)
        A[valid] = X[valid] @ U.T + b
    forward(act, W, A, h0, H, n_threads, batch_sizes)
    if V is not None:
        valid = _valid(batch_sizes, T, B)
        out[valid] = H[1:][valid] @ V.T + c


def head_grad(dH, dO, V, dV, shape):
    """The loss gradient reaching every h_t, (T, B, H): dH, or dO @ V when dO (T, B, O), the
    gradient at a linear head's outputs, and its weights V (O, H) are given; exactly one of the two."""
    if (dO is None) != (V is None):
        raise ValueError("dO and V go together: the gradient at the head's outputs and its weights")
    if dV is not None and dO is None:
        raise ValueError("dV is the head's weight gradient: it needs dO and V")
    if (dH is None) == (dO is None):
        raise ValueError("give the loss gradient as dH, or as dO and V (dH = dO @ V), not both")
    if dO is None:
        _check("dH", dH.shape, shape)
        return dH
    _check("V", V.shape, (V.shape[0], shape[2]))
    _check("dO", dO.shape, shape[:2] + (V.shape[0],))
    return dO @ V


def backward_fused(act, W, X, H, dH, dh_T, dh0, dU, dW, db, n_threads=1, batch_sizes=None,
                   dA=None, dO=None, V=None, dV=None):
    """backward() plus the weight gradients dU = sum_t dA_t^T X_t, dW = sum_t dA_t^T H_t,
    db = sum_t dA_t (over the valid steps with batch_sizes); dA may be None (then it is not
    returned). The loss gradient reaching h_t is dH[t], or dO[t] @ V when the gradient dO
    (T, B, O) at a linear head's outputs and the head's weights V (O, H) are given (dH None);
    dV (O, H), when given, receives the head's weight gradient sum_t dO_t^T h_t, h_t = H[t + 1]."""
    T, B, n = H.shape[0] - 1, H.shape[1], W.shape[0]
    I = X.shape[2]
    _check("X", X.shape[:2], (T, B))
    _check("dU", dU.shape, (n, I))
    _check("dW", dW.shape, (n, n))
    _check("db", db.shape, (n,))
    dH = head_grad(dH, dO, V, dV, (T, B, n))
    if dV is not None:
        _check("dV", dV.shape, V.shape)
        dV[...] = dO.reshape(T * B, dO.shape[2]).T @ H[1:].reshape(T * B, n)
    out = np.zeros((T, B, n), dtype=dH.dtype) if dA is None else dA
    backward(act, W, H, dH, dh_T, out, dh0, n_threads, batch_sizes)
    if batch_sizes is None:
        dA2, X2, H2 = out.reshape(T * B, n), X.reshape(T * B, I), H[:-1].reshape(T * B, n)
    else:
        valid = _valid(batch_sizes, T, B)
        dA2, X2, H2 = out[valid], X[valid], H[:-1][valid]
    dU[...] = dA2.T @ X2
    dW[...] = dA2.T @ H2
    db[...] = dA2.sum(axis=0)
