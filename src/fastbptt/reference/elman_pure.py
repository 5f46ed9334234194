"""Pure-Python twin of cython/_elman.pyx: lists and floats, no NumPy inside the time loop.

The benchmarks' baseline: what the recurrence costs written plainly in Python. `forward_fused` and
`backward_fused` keep the kernel contract (docs/architecture.md) as compositions: the projection,
then `forward`; `backward`, then the weight gradients (see _pure.py).
"""

import math

import numpy as np

from .._kernel_args import no_batch_sizes
from ._pure import add_transposed, finite, logits, loss_grad, project, store_steps, weight_grads
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


def forward_fused(act, Wx, b, Wh, X, h0, H, n_threads=1, batch_sizes=None, V=None, c=None,
                  out=None):
    """forward() from the inputs X (T, B, I): A = X Wx^T + b, then the recurrence; with V, c and
    out, the logits out[t] = H[t + 1] V^T + c too."""
    no_batch_sizes(batch_sizes)
    A = project(Wx, b, X, Wh.shape[0])
    forward(act, Wh, A, h0, H, n_threads)
    logits(H, V, c, out, None)


def backward_fused(act, Wh, X, H, dH, dh_T, dh0, dWx, dWh, db, n_threads=1, batch_sizes=None,
                   dA=None, dO=None, V=None, dV=None):
    """backward(), then the weight gradients dWx, dWh, db; dA, when given, receives the
    pre-activations' gradient. The loss gradient at the states is dH, or dO @ V (dH None), and
    dV (with dO) the head's weight gradient."""
    no_batch_sizes(batch_sizes)
    dH = loss_grad(dH, dO, V, dV, H, None)
    if dA is None:
        dA = np.empty(dH.shape, dtype=dH.dtype)
    backward(act, Wh, H, dH, dh_T, dA, dh0, n_threads)
    weight_grads(dA, X, H, dWx, dWh, db)
