"""Pure-Python twin of cython/_lstm.pyx: lists and floats, no NumPy inside the time loop.

The benchmarks' baseline: what the LSTM recurrence costs written plainly in Python. `forward_fused`
and `backward_fused` keep the kernel contract (docs/architecture.md) as compositions: the
projection, then `forward`; `backward`, then the weight gradients (see _pure.py).
"""

import math

import numpy as np

from ._pure import (
    add_transposed,
    copy_valid,
    finite,
    logits,
    loss_grad,
    project,
    sigmoid,
    store_steps,
    weight_grads,
)
from .lstm import _check, check_batch_sizes


def forward(Wh, A, h0, c0, H, C, G, n_threads=1, batch_sizes=None):
    """Fill H, C (T+1, B, Hn) with the states and G (T, B, 4Hn) with the activated gates; with
    batch_sizes, only rows [0, batch_sizes[t]) at step t."""
    n = Wh.shape[1]
    T, B = A.shape[:2]
    _check("Wh", Wh.shape, (4 * n, n))
    _check("A", A.shape, (T, B, 4 * n))
    _check("h0", h0.shape, (B, n))
    _check("c0", c0.shape, (B, n))
    _check("H", H.shape, (T + 1, B, n))
    _check("C", C.shape, (T + 1, B, n))
    _check("G", G.shape, (T, B, 4 * n))
    bs = check_batch_sizes(batch_sizes, T, B).tolist()
    if B == 0:  # every array is empty
        return
    w = Wh.tolist()
    a_all = A.tolist()
    hs = [h0.tolist()]
    cs = [c0.tolist()]
    gates = []
    for t in range(T):
        h_step, c_step, g_step = [], [], []
        for b in range(bs[t]):
            h_prev = hs[t][b]
            c_prev = cs[t][b]
            a = a_all[t][b]
            z = []
            for k in range(4 * n):
                s = a[k]
                row = w[k]
                for j in range(n):
                    s += row[j] * h_prev[j]
                z.append(s)
            i = [sigmoid(v) for v in z[:n]]
            f = [sigmoid(v) for v in z[n:2 * n]]
            g = [math.tanh(v) for v in z[2 * n:3 * n]]
            o = [sigmoid(v) for v in z[3 * n:]]
            c = [f[k] * c_prev[k] + i[k] * g[k] for k in range(n)]
            h = [o[k] * math.tanh(c[k]) for k in range(n)]
            if not (finite(c) and finite(h)):
                raise FloatingPointError(f"non-finite hidden or cell state at time step {t}")
            h_step.append(h)
            c_step.append(c)
            g_step.append(i + f + g + o)
        hs.append(h_step)
        cs.append(c_step)
        gates.append(g_step)
    if batch_sizes is None:
        H[...] = hs
        C[...] = cs
        if T:
            G[...] = gates
        return
    H[0] = hs[0]
    C[0] = cs[0]
    for t in range(T):
        b = bs[t]
        if b:
            H[t + 1, :b] = hs[t + 1]
            C[t + 1, :b] = cs[t + 1]
            G[t, :b] = gates[t]


def backward(Wh, H, C, G, dH, dh_T, dc_T, dA, dh0, dc0, n_threads=1, batch_sizes=None):
    """Fill dA (T, B, 4Hn), dh0 and dc0 (B, Hn); with batch_sizes, only rows [0, batch_sizes[t])
    of dA[t], a row's running gradient waiting until its last valid step."""
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
    bs = check_batch_sizes(batch_sizes, T, B).tolist()
    if B == 0:
        return
    w = Wh.tolist()
    c_all = C.tolist()
    g_all = G.tolist()
    out_all = dH.tolist()
    dh = dh_T.tolist()
    dc = dc_T.tolist()
    da_all = [None] * T
    for t in range(T - 1, -1, -1):
        da_step = []
        for b in range(bs[t]):
            gates = g_all[t][b]
            c = c_all[t + 1][b]
            c_prev = c_all[t][b]
            d_out = out_all[t][b]
            da = [0.0] * (4 * n)
            for k in range(n):
                i, f, g, o = gates[k], gates[n + k], gates[2 * n + k], gates[3 * n + k]
                th = math.tanh(c[k])
                dhk = d_out[k] + dh[b][k]
                dck = dc[b][k] + dhk * o * (1.0 - th * th)
                da[k] = dck * g * i * (1.0 - i)
                da[n + k] = dck * c_prev[k] * f * (1.0 - f)
                da[2 * n + k] = dck * i * (1.0 - g * g)
                da[3 * n + k] = dhk * th * o * (1.0 - o)
                dc[b][k] = dck * f
            new = [0.0] * n
            add_transposed(new, w, da)
            if not (finite(new) and finite(dc[b])):
                raise FloatingPointError(f"non-finite gradient at time step {t}")
            dh[b] = new
            da_step.append(da)
        da_all[t] = da_step
    store_steps(dA, da_all, None if batch_sizes is None else bs)
    dh0[...] = dh
    dc0[...] = dc


def forward_fused(Wx, b, Wh, X, h0, c0, H, C, G, n_threads=1, batch_sizes=None, V=None, c=None,
                  out=None):
    """forward() from the inputs X (T, B, I): A = X Wx^T + b, then the recurrence; with V, c and
    out, the logits out[t] = H[t + 1] V^T + c too, at the valid rows only."""
    A = project(Wx, b, X, Wh.shape[0])
    forward(Wh, A, h0, c0, H, C, G, n_threads, batch_sizes)
    logits(H, V, c, out, batch_sizes)


def backward_fused(Wh, X, H, C, G, dH, dh_T, dc_T, dh0, dc0, dWx, dWh, db, n_threads=1,
                   batch_sizes=None, dA=None, dO=None, V=None, dV=None):
    """backward(), then the weight gradients dWx, dWh, db over the valid steps; dA, when given,
    receives the gate gradients at the valid rows. The loss gradient at the states is dH, or
    dO @ V (dH None), and dV (with dO) the head's weight gradient over the valid rows."""
    dH = loss_grad(dH, dO, V, dV, H, batch_sizes)
    T, B, n = dH.shape
    if dA is not None:
        _check("dA", dA.shape, (T, B, 4 * n))
    # zero past each sequence's end, so those rows add nothing to the weight gradients
    gates = np.zeros((T, B, 4 * n), dtype=dH.dtype)
    backward(Wh, H, C, G, dH, dh_T, dc_T, gates, dh0, dc0, n_threads, batch_sizes)
    weight_grads(gates, X, H, dWx, dWh, db)
    if dA is not None:
        copy_valid(dA, gates, batch_sizes)
