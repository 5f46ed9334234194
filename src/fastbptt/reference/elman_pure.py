"""Pure-Python twin of cython/_elman.pyx: lists and floats, no NumPy inside the time loop.

The benchmarks' baseline: what the recurrence costs written plainly in Python.
"""

import math

from .._kernel_args import no_batch_sizes
from ._pure import add_transposed, finite, store_steps
from .elman import RELU, STEP, TANH, _check


def forward(act, Wh, A, h0, H, n_threads=1, batch_sizes=None):
    """Fill H (T+1, B, H) with the states; H[0] = h0."""
    if act not in (TANH, RELU, STEP):
        raise ValueError(f"unknown activation code {act}")
    T, B, n = A.shape
    _check("Wh", Wh.shape, (n, n))
    _check("h0", h0.shape, (B, n))
    _check("H", H.shape, (T + 1, B, n))
    no_batch_sizes(batch_sizes)
    w = Wh.tolist()
    a_all = A.tolist()
    states = [h0.tolist()]
    for t in range(T):
        step = []
        for b in range(B):
            h_prev = states[t][b]
            a = a_all[t][b]
            h = []
            for i in range(n):
                s = a[i]
                row = w[i]
                for j in range(n):
                    s += row[j] * h_prev[j]
                if act == TANH:
                    h.append(math.tanh(s))
                elif act == RELU:
                    h.append(s if s > 0.0 else 0.0)
                else:
                    h.append(1.0 if s > 0.0 else 0.0)
            if not finite(h):
                raise FloatingPointError(f"non-finite hidden state at time step {t}")
            step.append(h)
        states.append(step)
    H[...] = states


def backward(act, Wh, H, dH, dh_T, dA, dh0, n_threads=1, batch_sizes=None):
    """Fill dA (T, B, H) and dh0 (B, H)."""
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
    w = Wh.tolist()
    h_all = H.tolist()
    g_all = dH.tolist()
    dh = dh_T.tolist()
    da_all = [None] * T
    for t in range(T - 1, -1, -1):
        da_step = []
        for b in range(B):
            h = h_all[t + 1][b]
            g = g_all[t][b]
            d = dh[b]
            if act == TANH:
                da = [(g[i] + d[i]) * (1.0 - h[i] * h[i]) for i in range(n)]
            else:
                da = [(g[i] + d[i]) if h[i] > 0.0 else 0.0 for i in range(n)]
            new = [0.0] * n
            add_transposed(new, w, da)
            if not finite(new):
                raise FloatingPointError(f"non-finite gradient at time step {t}")
            dh[b] = new
            da_step.append(da)
        da_all[t] = da_step
    store_steps(dA, da_all, None)
    dh0[...] = dh
