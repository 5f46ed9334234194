"""NumPy twin of cython/_elman.pyx: h_t = f(a_t + Wh h_{t-1}) and its backward pass through time.

batch_sizes: the contract's slot, None only (ElmanCell runs each run of one batch size as its own
call; see cells.py and docs/architecture.md).
"""

import numpy as np

from .._kernel_args import check_head, no_batch_sizes
from .._kernel_args import check_shape as _check

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



def forward(act, Wh, A, h0, H, n_threads=1, batch_sizes=None):
    """Fill H (T+1, B, H) with the states; H[0] = h0. n_threads is unused (the Cython signature)."""
    if act not in (TANH, RELU, STEP):
        raise ValueError(f"unknown activation code {act}")
    T, B, n = A.shape
    _check("Wh", Wh.shape, (n, n))
    _check("h0", h0.shape, (B, n))
    _check("H", H.shape, (T + 1, B, n))
    no_batch_sizes(batch_sizes)
    H[0] = h0
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as an error below
        for t in range(T):
            H[t + 1] = _activate(act, A[t] + H[t] @ Wh.T)
            if not np.isfinite(H[t + 1]).all():
                raise FloatingPointError(f"non-finite hidden state at time step {t}")


def backward(act, Wh, H, dH, dh_T, dA, dh0, n_threads=1, batch_sizes=None):
    """Fill dA (T, B, H) and dh0 (B, H) from dH (T, B, H), the gradient reaching each h_t, and dh_T."""
    if act == STEP:
        raise ValueError("the step cell is forward only: its derivative is zero almost everywhere")
    if act not in (TANH, RELU):
        raise ValueError(f"unknown activation code {act}")
    T, B, n = dH.shape
    _check("Wh", Wh.shape, (n, n))
    _check("H", H.shape, (T + 1, B, n))
    _check("dh_T", dh_T.shape, (B, n))
    _check("dA", dA.shape, (T, B, n))
    _check("dh0", dh0.shape, (B, n))
    no_batch_sizes(batch_sizes)
    dh = dh_T.copy()
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as an error below
        for t in range(T - 1, -1, -1):
            dA[t] = (dH[t] + dh) * _fprime(act, H[t + 1])
            dh = dA[t] @ Wh
            if not np.isfinite(dh).all():
                raise FloatingPointError(f"non-finite gradient at time step {t}")
    dh0[...] = dh


def forward_fused(act, Wx, b, Wh, X, h0, H, n_threads=1, batch_sizes=None, V=None, c=None,
                  out=None):
    """forward() from the inputs: a_t = Wx x_t + b, then the recurrence (twin of the Cython entry that
    forms a_t inside its time loop). With V, c and out: the logits out[t] = H[t + 1] V^T + c of a
    linear output layer."""
    T, B, I = X.shape
    n = Wh.shape[0]
    _check("Wx", Wx.shape, (n, I))
    _check("b", b.shape, (n,))
    check_head(V, c, out, T, B, n)
    no_batch_sizes(batch_sizes)
    A = (X.reshape(T * B, I) @ Wx.T + b).reshape(T, B, n)
    forward(act, Wh, A, h0, H, n_threads)
    if V is not None:
        out[...] = H[1:] @ V.T + c


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


def backward_fused(act, Wh, X, H, dH, dh_T, dh0, dWx, dWh, db, n_threads=1, batch_sizes=None,
                   dA=None, dO=None, V=None, dV=None):
    """backward() plus the weight gradients dWx = sum_t dA_t^T X_t, dWh = sum_t dA_t^T H_t,
    db = sum_t dA_t; dA may be None (then it is not
    returned). The loss gradient reaching h_t is dH[t], or dO[t] @ V when the gradient dO
    (T, B, O) at a linear head's outputs and the head's weights V (O, H) are given (dH None);
    dV (O, H), when given, receives the head's weight gradient sum_t dO_t^T h_t, h_t = H[t + 1]."""
    T, B, n = H.shape[0] - 1, H.shape[1], Wh.shape[0]
    I = X.shape[2]
    _check("X", X.shape[:2], (T, B))
    _check("dWx", dWx.shape, (n, I))
    _check("dWh", dWh.shape, (n, n))
    _check("db", db.shape, (n,))
    dH = head_grad(dH, dO, V, dV, (T, B, n))
    if dV is not None:
        _check("dV", dV.shape, V.shape)
        dV[...] = dO.reshape(T * B, dO.shape[2]).T @ H[1:].reshape(T * B, n)
    out = np.zeros((T, B, n), dtype=dH.dtype) if dA is None else dA
    backward(act, Wh, H, dH, dh_T, out, dh0, n_threads, batch_sizes)
    dA2, X2, H2 = out.reshape(T * B, n), X.reshape(T * B, I), H[:-1].reshape(T * B, n)
    dWx[...] = dA2.T @ X2
    dWh[...] = dA2.T @ H2
    db[...] = dA2.sum(axis=0)
