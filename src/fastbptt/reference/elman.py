"""NumPy twin of cython/_elman.pyx: h_t = f(a_t + W h_{t-1}) and its backward pass through time."""

import numpy as np

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


def _check(name, shape, expected):
    if tuple(shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(shape)}, expected {tuple(expected)}")


def forward(act, W, A, h0, H, n_threads=1):
    """Fill H (T+1, B, H) with the states; H[0] = h0. n_threads is unused (the Cython signature)."""
    if act not in (TANH, RELU, STEP):
        raise ValueError(f"unknown activation code {act}")
    T, B, n = A.shape
    _check("W", W.shape, (n, n))
    _check("h0", h0.shape, (B, n))
    _check("H", H.shape, (T + 1, B, n))
    H[0] = h0
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as an error below
        for t in range(T):
            H[t + 1] = _activate(act, A[t] + H[t] @ W.T)
            if not np.isfinite(H[t + 1]).all():
                raise FloatingPointError(f"non-finite hidden state at time step {t}")


def backward(act, W, H, dH, dh_T, dA, dh0, n_threads=1):
    """Fill dA (T, B, H) and dh0 (B, H) from dH (T, B, H), the gradient reaching each h_t, and dh_T."""
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
    dh = dh_T.copy()
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as an error below
        for t in range(T - 1, -1, -1):
            dA[t] = (dH[t] + dh) * _fprime(act, H[t + 1])
            dh = dA[t] @ W
            if not np.isfinite(dh).all():
                raise FloatingPointError(f"non-finite gradient at time step {t}")
    dh0[...] = dh


def forward_fused(act, U, b, W, X, h0, H, n_threads=1):
    """forward() from the inputs: a_t = U x_t + b, then the recurrence (twin of the Cython entry that
    forms a_t inside its time loop)."""
    T, B, I = X.shape
    n = W.shape[0]
    _check("U", U.shape, (n, I))
    _check("b", b.shape, (n,))
    A = (X.reshape(T * B, I) @ U.T + b).reshape(T, B, n)
    forward(act, W, A, h0, H, n_threads)


def backward_fused(act, W, X, H, dH, dh_T, dA, dh0, dU, dW, db, n_threads=1):
    """backward() plus the weight gradients dU = sum_t dA_t^T X_t, dW = sum_t dA_t^T H_t,
    db = sum_t dA_t; dA may be None (then it is not returned)."""
    T, B, n = dH.shape
    I = X.shape[2]
    _check("X", X.shape[:2], (T, B))
    _check("dU", dU.shape, (n, I))
    _check("dW", dW.shape, (n, n))
    _check("db", db.shape, (n,))
    out = np.empty((T, B, n), dtype=dH.dtype) if dA is None else dA
    backward(act, W, H, dH, dh_T, out, dh0, n_threads)
    dA2 = out.reshape(T * B, n)
    dU[...] = dA2.T @ X.reshape(T * B, I)
    dW[...] = dA2.T @ H[:-1].reshape(T * B, n)
    db[...] = dA2.sum(axis=0)
