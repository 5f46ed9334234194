"""Pure-Python twin of cython/_gru.pyx: lists and floats, no NumPy inside the time loop.

The benchmarks' baseline: what the GRU recurrence costs written plainly in Python. `forward_fused`
and `backward_fused` keep the kernel contract (docs/architecture.md) as compositions: the
projection, then `forward`; `backward`, then the weight gradients (see _pure.py).
"""

import math

import numpy as np

from .._kernel_args import check_head, check_head_grad
from ._pure import (
    add_transposed,
    copy_valid,
    finite,
    gru_weight_grads,
    logits,
    loss_grad,
    project,
    sigmoid,
    store_steps,
)
from .gru import _check
from .lstm import check_batch_sizes


def forward(Wh, bh, A, h0, H, G, HN, n_threads=1, batch_sizes=None):
    """Fill H (T+1, B, Hn) with the states, G (T, B, 3Hn) with the gates, HN (T, B, Hn) = gh_n;
    with batch_sizes, only rows [0, batch_sizes[t]) at step t."""
    n = Wh.shape[1]
    T, B = A.shape[:2]
    _check("Wh", Wh.shape, (3 * n, n))
    _check("bh", bh.shape, (3 * n,))
    _check("A", A.shape, (T, B, 3 * n))
    _check("h0", h0.shape, (B, n))
    _check("H", H.shape, (T + 1, B, n))
    _check("G", G.shape, (T, B, 3 * n))
    _check("HN", HN.shape, (T, B, n))
    bs = check_batch_sizes(batch_sizes, T, B).tolist()
    if B == 0:  # every array is empty
        return
    w = Wh.tolist()
    bias = bh.tolist()
    a_all = A.tolist()
    hs = [h0.tolist()]
    gates, hns = [], []
    for t in range(T):
        h_step, g_step, hn_step = [], [], []
        for b in range(bs[t]):
            h_prev = hs[t][b]
            a = a_all[t][b]
            gh = []
            for k in range(3 * n):
                s = bias[k]
                row = w[k]
                for j in range(n):
                    s += row[j] * h_prev[j]
                gh.append(s)
            r = [sigmoid(a[k] + gh[k]) for k in range(n)]
            z = [sigmoid(a[n + k] + gh[n + k]) for k in range(n)]
            hn = gh[2 * n:]
            nn = [math.tanh(a[2 * n + k] + r[k] * hn[k]) for k in range(n)]
            h = [(1.0 - z[k]) * nn[k] + z[k] * h_prev[k] for k in range(n)]
            if not finite(h):
                raise FloatingPointError(f"non-finite hidden state at time step {t}")
            h_step.append(h)
            g_step.append(r + z + nn)
            hn_step.append(hn)
        hs.append(h_step)
        gates.append(g_step)
        hns.append(hn_step)
    if batch_sizes is None:
        H[...] = hs
        if T:
            G[...] = gates
            HN[...] = hns
        return
    H[0] = hs[0]
    for t in range(T):
        b = bs[t]
        if b:
            H[t + 1, :b] = hs[t + 1]
            G[t, :b] = gates[t]
            HN[t, :b] = hns[t]


def backward(Wh, H, G, HN, dH, dh_T, dA, dGh, dh0, n_threads=1, batch_sizes=None):
    """Fill dA and dGh (T, B, 3Hn) and dh0 (B, Hn); with batch_sizes, only rows [0, batch_sizes[t])
    of dA[t] and dGh[t], a row's running gradient waiting until its last valid step."""
    T, B, n = dH.shape
    _check("Wh", Wh.shape, (3 * n, n))
    _check("H", H.shape, (T + 1, B, n))
    _check("G", G.shape, (T, B, 3 * n))
    _check("HN", HN.shape, (T, B, n))
    _check("dh_T", dh_T.shape, (B, n))
    _check("dA", dA.shape, (T, B, 3 * n))
    _check("dGh", dGh.shape, (T, B, 3 * n))
    _check("dh0", dh0.shape, (B, n))
    bs = check_batch_sizes(batch_sizes, T, B).tolist()
    if B == 0:
        return
    w = Wh.tolist()
    h_all = H.tolist()
    g_all = G.tolist()
    hn_all = HN.tolist()
    out_all = dH.tolist()
    dh = dh_T.tolist()
    da_all = [None] * T
    dgh_all = [None] * T
    for t in range(T - 1, -1, -1):
        da_step, dgh_step = [], []
        for b in range(bs[t]):
            gates = g_all[t][b]
            hn = hn_all[t][b]
            h_prev = h_all[t][b]
            d_out = out_all[t][b]
            da = [0.0] * (3 * n)
            dgh = [0.0] * (3 * n)
            new = [0.0] * n
            for k in range(n):
                r, z, nk = gates[k], gates[n + k], gates[2 * n + k]
                dhk = d_out[k] + dh[b][k]
                dan = dhk * (1.0 - z) * (1.0 - nk * nk)
                dar = dan * hn[k] * r * (1.0 - r)
                daz = dhk * (h_prev[k] - nk) * z * (1.0 - z)
                da[k], da[n + k], da[2 * n + k] = dar, daz, dan
                dgh[k], dgh[n + k], dgh[2 * n + k] = dar, daz, dan * r
                new[k] = dhk * z
            add_transposed(new, w, dgh)
            if not finite(new):
                raise FloatingPointError(f"non-finite gradient at time step {t}")
            dh[b] = new
            da_step.append(da)
            dgh_step.append(dgh)
        da_all[t] = da_step
        dgh_all[t] = dgh_step
    store_steps(dA, da_all, None if batch_sizes is None else bs)
    store_steps(dGh, dgh_all, None if batch_sizes is None else bs)
    dh0[...] = dh


def forward_fused(Wx, bx, Wh, bh, X, h0, H, G, HN, n_threads=1, batch_sizes=None, V=None, c=None,
                  out=None):
    """forward() from the inputs X (T, B, I): A = X Wx^T + bx, then the recurrence; with V, c
    and out, the logits out[t] = H[t + 1] V^T + c too, at the valid rows only."""
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
