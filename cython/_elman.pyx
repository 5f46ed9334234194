"""Elman recurrence: h_t = f(a_t + Wh h_{t-1}) forward, and its backward pass through time.

Two pairs of entry points:
  - forward / backward, the kernel contract shared with the NumPy and pure-Python twins: the caller
    has formed a_t = Wx x_t + b for every step in one GEMM, and forms the weight gradients from dA;
  - forward_fused / backward_fused (used by fastbptt.cells when fused_ok): the projection is formed
    step by step inside the loop, and dWx, dWh, db are folded in while each block of dA is still in
    cache, so no (T, B, H) array of pre-activations or of their gradients is written and read back.
    backward_fused also takes the loss gradient unformed, as dO (T, B, O) at a linear head's
    outputs and its weights V (O, H) (the head's HeadGrad): dO_t V is formed inside the loop, and
    on request the head's dV = sum_t dO_t^T h_t is folded in beside dWh. forward_fused, given the
    output layer (V, c), forms its logits h_t V^T + c in the loop while h_t is in cache: with both,
    the head never reads the (T, B, H) states back.

Layers, as in every kernel module:
  (a) `cdef inline ... noexcept nogil` helpers and the time loops (cython/_elman_loops.pxi, included
      below), calling the per-step kernels of the table bound at import (products, activations,
      the weight-gradient fold: cython/_tile_impl.h, cython/_elman_impl.h);
  (b) the `def` drivers over typed memoryviews, the whole time loop inside one `with nogil:`, no
      allocation inside it (packed or transposed copies of the weights are made before it);
  (c) the Python layer in src/fastbptt validates, allocates outputs with np.empty and dispatches.
The NumPy twins with the same signatures, the ground truth, are in src/fastbptt/reference/elman.py.

Paths, chosen per call from the shapes (results agree across them within rounding):
  - sequence: a batch of one to three sequences of a width the table's sequence kernels take (a
    whole number of vector registers, up to 8; under AVX-512 layers of up to 16 units take 256-bit
    registers): each sequence runs all its steps in one C call with its state in registers, the
    one place where the loop over t stays in C (bench/README.md has the figure); threads split
    the batch;
  - tiled: every other shape: per step one register-tiled product against Wh packed once per call
    (no BLAS call per step, no repacking). Threads cut the batch into blocks of rows, each running
    the whole time loop for its block as in the LSTM: states and dA do not depend on the thread
    count; the weight gradients are each block's partial sums added in block order, so they
    differ by rounding between thread counts that cut the batch differently.
Every SIMD set (cython/_vec.h) has both; the table bound at import (fastbptt._simd) says so
(FASTBPTT_TILED), the BLAS branches below serving a table without them.

Variable lengths: every entry keeps the batch_sizes slot of the kernel contract
(docs/architecture.md) but takes only None: ElmanCell (cells.py) runs each run of steps with one
batch size as its own call, which measured faster here than a ragged loop inside the kernels.

Activations: 0 tanh, 1 relu, 2 step (Heaviside, h = 1 where a > 0; forward only).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from _blas cimport gemm, gemv
from _blocks cimport earliest_bad
from _tile cimport (FASTBPTT_TILED, bind_set, gemm_packed, lanes, pack, pack_size, tile_chunks)
from _vmath cimport all_finite, vtanh
from _workarea cimport big_alloc

import numpy as np
from fastbptt import _simd
from fastbptt._kernel_args import no_batch_sizes

include "_argcheck.pxi"

_simd.register(__name__, lambda name: bind_set(name))

# forward_fused calls of at most this many rows in all (T * B) skip the packed copies of the weights
cdef Py_ssize_t LEAN_ROWS = 2

TANH = 0
RELU = 1
STEP = 2

# Below this much work per step (B * H * H multiply-adds) and H <= 64 the hand-written loops beat a
# BLAS call per step: the call's fixed cost is larger than the arithmetic.
cdef Py_ssize_t SMALL_WORK = 32768
cdef Py_ssize_t SMALL_H = 64
# Up to this batch the sequences run one after another, each through all its steps in registers; from
# here on one tiled product per step over the whole batch does more work per load.
cdef Py_ssize_t SEQ_MAX_B = 3
# The fused projection forms Wx x_t inside the loop: I multiply-adds per unit, worth it for small I only.
cdef Py_ssize_t FUSED_MAX_I = 16


include "_elman_loops.pxi"


def _projection(X, Wx, b):
    """A = X Wx^T + b, (T, B, H)."""
    X = np.asarray(X)
    Wx = np.asarray(Wx)
    T, B, I = X.shape
    A = np.matmul(X.reshape(T * B, I), Wx.T).reshape(T, B, Wx.shape[0])
    A += np.asarray(b)
    return A


def forward(int act,
            const floating[:, ::1] Wh,       # IN  (H, H) recurrent weights
            const floating[:, :, ::1] A,    # IN  (T, B, H) input projections Wx x_t + b
            const floating[:, ::1] h0,      # IN  (B, H) initial state
            floating[:, :, ::1] H,          # OUT (T+1, B, H) states, H[0] = h0
            int n_threads=1,
            batch_sizes=None):              # IN  None only (the contract's slot)
    """Unroll h_t = f(A[t] + Wh h_{t-1}) over all T steps; raise FloatingPointError on a non-finite state."""
    cdef Py_ssize_t T = A.shape[0], B = A.shape[1], n = A.shape[2]
    cdef Py_ssize_t bad = -1
    cdef bint seq
    cdef floating* buf = NULL
    n_threads = _team(n_threads, B)
    if act not in (TANH, RELU, STEP):
        raise ValueError(f"unknown activation code {act}")
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (n, n))
    _check("h0", (h0.shape[0], h0.shape[1]), (B, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    no_batch_sizes(batch_sizes)
    if B == 0 or n == 0:
        return
    memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
    if T == 0:
        return
    seq = _seq(&Wh[0, 0], B, n)
    if seq or (not FASTBPTT_TILED and _small(B, n)):
        buf = _transposed(&Wh[0, 0], n, n)
    elif FASTBPTT_TILED:
        buf = _packed(&Wh[0, 0], n, True)  # op = Wh^T: h_t = h_{t-1} Wh^T + a_t row by row
    if buf == NULL and (FASTBPTT_TILED or _small(B, n)):
        raise MemoryError()
    with nogil:
        if seq:
            bad = _forward_seq(act, buf, &A[0, 0, 0], <floating*> NULL, 0, <floating*> NULL,
                               <floating*> NULL, &H[0, 0, 0], T, B, n, n_threads,
                               0, <floating*> NULL, <floating*> NULL, <floating*> NULL)
        elif FASTBPTT_TILED:
            bad = _forward_tiled(act, buf, &A[0, 0, 0], <floating*> NULL, 0, <floating*> NULL,
                                 <floating*> NULL, &H[0, 0, 0], T, B, n, 0, <floating*> NULL,
                                 <floating*> NULL, <floating*> NULL, <floating*> NULL, n_threads)
        elif _small(B, n):
            bad = _forward_small(act, buf, &A[0, 0, 0], &H[0, 0, 0], T, B, n, n_threads)
        else:
            bad = _forward_blas(act, &Wh[0, 0], &A[0, 0, 0], &H[0, 0, 0], T, B, n, n_threads)
        free(buf)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden state at time step {bad}")


def backward(int act,
             const floating[:, ::1] Wh,       # IN  (H, H)
             const floating[:, :, ::1] H,    # IN  (T+1, B, H) states from forward
             const floating[:, :, ::1] dH,   # IN  (T, B, H) loss gradient reaching each h_t, t = 1..T
             const floating[:, ::1] dh_T,    # IN  (B, H) gradient arriving from a later chunk
             floating[:, :, ::1] dA,         # OUT (T, B, H) gradient at every pre-activation
             floating[:, ::1] dh0,           # OUT (B, H) gradient at the initial state
             int n_threads=1,
             batch_sizes=None):              # IN  None only (the contract's slot)
    """Backpropagate through time; raise FloatingPointError on a non-finite gradient."""
    cdef Py_ssize_t T = dH.shape[0], B = dH.shape[1], n = dH.shape[2]
    cdef Py_ssize_t bad = -1
    cdef bint seq
    cdef fb_seq_args sizes
    cdef floating* P = NULL
    n_threads = _team(n_threads, B)
    if act == STEP:
        raise ValueError("the step cell is forward only: its derivative is zero almost everywhere")
    if act not in (TANH, RELU):
        raise ValueError(f"unknown activation code {act}")
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (n, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    no_batch_sizes(batch_sizes)
    if B == 0 or n == 0:
        return
    seq = _seq(&Wh[0, 0], B, n)
    sizes = _seq_args(act, T, n, 0, 0, B)
    if T > 0 and not seq and FASTBPTT_TILED:
        P = _packed(&Wh[0, 0], n, False)  # op = Wh: dh = da Wh row by row
        if P == NULL:
            raise MemoryError()
    with nogil:
        # dh0 doubles as the running gradient dL/dh_t, so the loop needs no buffer of its own
        memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
        if T > 0:
            if seq:
                bad = _backward_seq(&sizes, &Wh[0, 0], &H[0, 0, 0], &dH[0, 0, 0], <floating*> NULL,
                                    <floating*> NULL, &dA[0, 0, 0], &dh0[0, 0], <floating*> NULL,
                                    <floating*> NULL, <floating*> NULL, <floating*> NULL,
                                    <floating*> NULL, B, n_threads)
            elif FASTBPTT_TILED:
                bad = _backward_tiled(act, P, &H[0, 0, 0], &dH[0, 0, 0], <floating*> NULL, 0,
                                      <floating*> NULL, False, &dA[0, 0, 0], &dh0[0, 0],
                                      <floating*> NULL, 0, <floating*> NULL, 0, <floating*> NULL,
                                      T, T, B, n, n_threads)
                free(P)
            elif _small(B, n):
                bad = _backward_small(act, &Wh[0, 0], &H[0, 0, 0], &dH[0, 0, 0], &dA[0, 0, 0],
                                      &dh0[0, 0], T, B, n, n_threads)
            else:
                bad = _backward_blas(act, &Wh[0, 0], &H[0, 0, 0], &dH[0, 0, 0], &dA[0, 0, 0],
                                     &dh0[0, 0], T, B, n, n_threads)
    if bad == -2:
        raise MemoryError()
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")


def fused_ok(Py_ssize_t input_size, Py_ssize_t hidden_size, Py_ssize_t batch, dtype):
    """True when forward_fused / backward_fused beat the contract path plus separate GEMMs: whenever
    the SIMD set in use has the tiled kernels (every set does). Same results either way."""
    return bool(FASTBPTT_TILED)


def sequence_path(Py_ssize_t input_size, Py_ssize_t hidden_size, Py_ssize_t batch, dtype):
    """True when the fused entries run each sequence through all its steps in one call, with the
    projection and the weight gradients inside (small batch, whole registers, small input)."""
    ok = _seq(<float*> NULL, batch, hidden_size) if np.dtype(dtype) == np.float32 else _seq(
        <double*> NULL, batch, hidden_size)
    return bool(ok and input_size <= FUSED_MAX_I)


def forward_fused(int act,
                  const floating[:, ::1] Wx,       # IN  (H, I) input weights
                  const floating[::1] b,          # IN  (H,) bias
                  const floating[:, ::1] Wh,       # IN  (H, H) recurrent weights
                  const floating[:, :, ::1] X,    # IN  (T, B, I) inputs
                  const floating[:, ::1] h0,      # IN  (B, H) initial state
                  floating[:, :, ::1] H,          # OUT (T+1, B, H) states, H[0] = h0
                  int n_threads=1,
                  batch_sizes=None,               # IN  None only (the contract's slot)
                  const floating[:, ::1] V=None,  # IN  (O, H) output layer weights, or None
                  const floating[::1] c=None,     # IN  (O,) output layer bias, with V
                  floating[:, :, ::1] out=None):  # OUT (T, B, O) logits h_t V^T + c, with V
    """forward() with the projection a_t = Wx x_t + b formed step by step inside the time loop (no
    (T, B, H) array of pre-activations to write and read back); raise FloatingPointError on a
    non-finite state.

    With V, c and out, a linear output layer's logits out[t] = H[t + 1] V^T + c are formed in the
    same loop while each step's states are in cache."""
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1], I = X.shape[2], n = Wh.shape[0]
    cdef Py_ssize_t bad = -1, O = 0
    cdef bint seq
    cdef floating* wt = NULL
    cdef floating* ut = NULL
    cdef floating* pv = NULL
    cdef floating* out_ptr = NULL
    cdef const floating* V_ptr = NULL
    cdef const floating* c_ptr = NULL
    if act not in (TANH, RELU, STEP):
        raise ValueError(f"unknown activation code {act}")
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (n, n))
    _check("Wx", (Wx.shape[0], Wx.shape[1]), (n, I))
    _check("b", (b.shape[0],), (n,))
    _check("h0", (h0.shape[0], h0.shape[1]), (B, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    if (V is None) != (c is None) or (V is None) != (out is None):
        raise ValueError("the output layer needs V, c and out together")
    if V is not None:
        O = V.shape[0]
        _check("V", (V.shape[0], V.shape[1]), (O, n))
        _check("c", (c.shape[0],), (O,))
        _check("out", (out.shape[0], out.shape[1], out.shape[2]), (T, B, O))
    no_batch_sizes(batch_sizes)
    n_threads = _team(n_threads, B)
    if not FASTBPTT_TILED:
        forward(act, Wh, _projection(X, Wx, b), h0, H, n_threads)
        if V is not None:
            _logits(H, V, c, out)
        return
    memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
    if T == 0 or B == 0 or n == 0:
        if V is not None and T > 0 and B > 0:
            _logits(H, V, c, out)  # no units: the logits are the bias
        return
    if V is not None and O > 0:
        out_ptr = &out[0, 0, 0]
        V_ptr = &V[0, 0]
        c_ptr = &c[0]
    if T * B <= LEAN_ROWS:
        with nogil:
            bad = _forward_lean(act, &Wh[0, 0], &Wx[0, 0] if I > 0 else NULL, &b[0],
                                &X[0, 0, 0] if I > 0 else NULL,
                                &H[0, 0, 0], T, B, I, n, O, V_ptr, c_ptr, out_ptr)
        if bad >= 0:
            raise FloatingPointError(f"non-finite hidden state at time step {bad}")
        return
    seq = _seq(&Wh[0, 0], B, n) and I <= FUSED_MAX_I
    if seq:
        wt = _transposed(&Wh[0, 0], n, n)
        ut = _transposed(&Wx[0, 0], n, I)
    else:
        wt = _packed(&Wh[0, 0], n, True)
        ut = _packed_rect(&Wx[0, 0], n, I, True)  # op = Wx^T: a_t = b + x_t Wx^T row by row
        if out_ptr != NULL and not _logits_by_dots(V_ptr, O):
            pv = _packed_rect(V_ptr, O, n, True)  # op = V^T: o_t = c + h_t V^T row by row
    if wt == NULL or ut == NULL or (out_ptr != NULL and not seq and pv == NULL
                                    and not _logits_by_dots(V_ptr, O)):
        free(wt)
        free(ut)
        free(pv)
        raise MemoryError()
    with nogil:
        if seq:
            bad = _forward_seq(act, wt, <floating*> NULL, &X[0, 0, 0], I, ut, &b[0],
                               &H[0, 0, 0], T, B, n, n_threads, O, V_ptr, c_ptr, out_ptr)
        else:
            bad = _forward_tiled(act, wt, <floating*> NULL, &X[0, 0, 0], I, ut, &b[0],
                                 &H[0, 0, 0], T, B, n, O, V_ptr, pv, c_ptr, out_ptr, n_threads)
        free(wt)
        free(ut)
        free(pv)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden state at time step {bad}")


def _logits(H, V, c, out):
    """out[t] = H[t + 1] V^T + c for the paths that form no logits in their loop."""
    H, V, out = np.asarray(H), np.asarray(V), np.asarray(out)
    T, B = out.shape[:2]
    # sizes spelled out: -1 cannot be inferred from an empty array (T = 0 or B = 0)
    np.matmul(H[1:].reshape(T * B, H.shape[2]), V.T, out=out.reshape(T * B, V.shape[0]))
    out += np.asarray(c)


def backward_fused(int act,
                   const floating[:, ::1] Wh,       # IN  (H, H)
                   const floating[:, :, ::1] X,    # IN  (T, B, I) inputs
                   const floating[:, :, ::1] H,    # IN  (T+1, B, H) states from forward
                   const floating[:, :, ::1] dH,   # IN  (T, B, H) or None: loss gradient reaching each h_t
                   const floating[:, ::1] dh_T,    # IN  (B, H) gradient arriving from a later chunk
                   floating[:, ::1] dh0,           # OUT (B, H) gradient at the initial state
                   floating[:, ::1] dWx,            # OUT (H, I) = sum_t dA_t^T X_t
                   floating[:, ::1] dWh,            # OUT (H, H) = sum_t dA_t^T H_t
                   floating[::1] db,               # OUT (H,) = sum_t dA_t
                   int n_threads=1,
                   batch_sizes=None,               # IN  None only (the contract's slot)
                   floating[:, :, ::1] dA=None,    # OUT (T, B, H) or None: gradient at the pre-activations
                   const floating[:, :, ::1] dO=None,  # IN  (T, B, O) or None: gradient at the logits
                   const floating[:, ::1] V=None,      # IN  (O, H) the head's weights, given with dO
                   floating[:, ::1] dV=None):          # OUT (O, H) or None: sum_t dO_t^T h_t, with dO
    """backward() with the weight gradients folded in while each block of dA is still in cache;
    dA=None skips writing it. Raise FloatingPointError on a non-finite gradient.

    The loss gradient reaching h_t is dH[t], or (dH None) dO[t] @ V: a linear head
    o_t = V h_t + c hands over the gradient at its outputs instead of a (T, B, H) dH, and the
    kernels form dO_t V step by step (where they cannot, it is formed here once). With dV,
    the head's weight gradient sum_t dO_t^T h_t (h_t = H[t + 1]) is formed too: folded in beside
    dWh on the tiled path, one product here on the others."""
    cdef Py_ssize_t T = H.shape[0] - 1, B = H.shape[1], n = Wh.shape[0], I = X.shape[2]
    cdef Py_ssize_t O = 0
    cdef Py_ssize_t bad = -1, i, k, s, gsize = (I + n) * n
    cdef fb_seq_args sizes
    cdef floating* G = NULL
    cdef floating* gb = NULL
    cdef floating* ring = NULL
    cdef floating* work = NULL
    cdef floating* dA_ptr = NULL
    cdef const floating* dH_ptr = NULL
    cdef const floating* dO_ptr = NULL
    cdef const floating* V_ptr = NULL
    cdef floating acc
    if act == STEP:
        raise ValueError("the step cell is forward only: its derivative is zero almost everywhere")
    if act not in (TANH, RELU):
        raise ValueError(f"unknown activation code {act}")
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (n, n))
    _check("X", (X.shape[0], X.shape[1]), (T, B))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    if dH is not None:
        _check("dH", (dH.shape[0], dH.shape[1], dH.shape[2]), (T, B, n))
    if (dO is None) != (V is None):
        raise ValueError("dO and V go together: the gradient at the head's outputs and its weights")
    if dO is not None:
        O = V.shape[0]
        _check("V", (V.shape[0], V.shape[1]), (O, n))
        _check("dO", (dO.shape[0], dO.shape[1], dO.shape[2]), (T, B, O))
    if dV is not None:
        if dO is None:
            raise ValueError("dV is the head's weight gradient: it needs dO and V")
        _check("dV", (dV.shape[0], dV.shape[1]), (O, n))
    if (dH is None) == (dO is None):
        raise ValueError("give the loss gradient as dH, or as dO and V (dH = dO @ V), not both")
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    if dA is not None:
        _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    _check("dWx", (dWx.shape[0], dWx.shape[1]), (n, I))
    _check("dWh", (dWh.shape[0], dWh.shape[1]), (n, n))
    _check("db", (db.shape[0],), (n,))
    no_batch_sizes(batch_sizes)
    # the weight-gradient fold is cut over its n + O rows too, not only over the batch
    n_threads = _team(n_threads, max(B, n + O))
    seq = n > 0 and I <= FUSED_MAX_I and _seq(&Wh[0, 0], B, n)
    if FASTBPTT_TILED and B > 0 and n > 0 and not seq:
        _backward_fused_tiled(act, Wh, X, H, dH, dO, V, dV, dh_T, dA, dh0, dWx, dWh, db, n_threads)
        return
    if dV is not None and not seq:
        np.matmul(np.asarray(dO).reshape(T * B, O).T, np.asarray(H)[1:].reshape(T * B, n),
                  out=np.asarray(dV))
    if not seq:
        dense = _dense_grad(dH, dO, V)
        dA_all = np.asarray(dA) if dA is not None else np.zeros((T, B, n),
                                                                dtype=np.asarray(dh0).dtype)
        backward(act, Wh, H, dense, dh_T, dA_all, dh0, n_threads)
        dA2 = dA_all.reshape(T * B, n)
        np.matmul(dA2.T, np.asarray(X).reshape(T * B, I), out=np.asarray(dWx))
        np.matmul(dA2.T, np.asarray(H)[:T].reshape(T * B, n), out=np.asarray(dWh))
        np.sum(dA2, axis=0, out=np.asarray(db))
        return
    sizes = _seq_args(act, T, n, I, O, B)
    if T > 0:
        if dH is not None:
            dH_ptr = &dH[0, 0, 0]
        if dO is not None:
            dO_ptr = &dO[0, 0, 0] if O > 0 else NULL
            V_ptr = &V[0, 0] if O > 0 else NULL
    G = <floating*> calloc(B * gsize, sizeof(floating))
    gb = <floating*> calloc(B * n, sizeof(floating))
    work = <floating*> malloc(B * seq_bwd_work(&Wh[0, 0], I, n) * sizeof(floating))
    if dA is None:
        ring = <floating*> malloc(B * FB_TB * n * sizeof(floating))
    else:
        dA_ptr = &dA[0, 0, 0] if T > 0 else NULL
    if G == NULL or gb == NULL or work == NULL or (dA is None and ring == NULL):
        free(G)
        free(gb)
        free(ring)
        free(work)
        raise MemoryError()
    with nogil:
        memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
        if T > 0:
            bad = _backward_seq(&sizes, &Wh[0, 0], &H[0, 0, 0], dH_ptr, dO_ptr, V_ptr, dA_ptr,
                                &dh0[0, 0], &X[0, 0, 0], G, gb, ring, work, B, n_threads)
        # G holds dWx^T over its first I rows and dWh^T below; sum the sequences in a fixed order
        for i in range(n):
            for k in range(I):
                acc = 0
                for s in range(B):
                    acc = acc + G[s * gsize + k * n + i]
                dWx[i, k] = acc
            for k in range(n):
                acc = 0
                for s in range(B):
                    acc = acc + G[s * gsize + (I + k) * n + i]
                dWh[i, k] = acc
            acc = 0
            for s in range(B):
                acc = acc + gb[s * n + i]
            db[i] = acc
        if dV is not None:
            _head_weight_grad(&dO[0, 0, 0] if T > 0 and O > 0 else NULL, &H[1, 0, 0] if T > 0 else NULL,
                              &dV[0, 0] if O > 0 else NULL, T * B, O, n)
        free(G)
        free(gb)
        free(ring)
        free(work)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")


cdef void _head_weight_grad(const floating* dO, const floating* Hs, floating* dV, Py_ssize_t rows,
                            Py_ssize_t O, Py_ssize_t n) noexcept nogil:
    """dV (O, n) = dO^T Hs over `rows` rows of dO (rows, O) and Hs (rows, n): the sequence path's
    calls are short, where a loop costs less than a product through NumPy."""
    cdef Py_ssize_t o, j, r
    if O == 0 or n == 0:
        return
    memset(dV, 0, O * n * sizeof(floating))
    for r in range(rows):
        for o in range(O):
            for j in range(n):
                dV[o * n + j] += dO[r * O + o] * Hs[r * n + j]


def _dense_grad(dH, dO, V):
    """The loss gradient reaching every h_t as one (T, B, H) array: dH, or dO @ V."""
    return dH if dO is None else np.matmul(np.asarray(dO), np.asarray(V))


cdef _backward_fused_tiled(int act, const floating[:, ::1] Wh, const floating[:, :, ::1] X,
                           const floating[:, :, ::1] H, const floating[:, :, ::1] dH,
                           const floating[:, :, ::1] dO, const floating[:, ::1] V,
                           floating[:, ::1] dV, const floating[:, ::1] dh_T,
                           floating[:, :, ::1] dA, floating[:, ::1] dh0, floating[:, ::1] dWx,
                           floating[:, ::1] dWh, floating[::1] db, int n_threads):
    """backward_fused for shapes off the sequence path: the tiled loop with the weight gradients
    folded in step by step (shapes checked by the caller; dH and dO may be None, dV needs dO)."""
    cdef Py_ssize_t T = H.shape[0] - 1, B = H.shape[1], n = Wh.shape[0], I = X.shape[2]
    cdef Py_ssize_t bad = -1, O = V.shape[0] if V is not None else 0
    cdef Py_ssize_t i, j, o, r
    # the fold accumulates G = [dWh | dWx] (and the O rows of dV below when asked), whole panels wide
    cdef Py_ssize_t nr = 2 * lanes(&Wh[0, 0])
    cdef Py_ssize_t ldg = (n + I + nr - 1) // nr * nr
    cdef bint fold_dO = dV is not None and O > 0 and T > 0
    cdef Py_ssize_t grows = n + (O if fold_dO else 0)
    cdef floating* P = _packed(&Wh[0, 0], n, False)
    cdef floating* PV = NULL
    cdef floating* dA_ptr = &dA[0, 0, 0] if dA is not None and T > 0 else NULL
    cdef const floating* dH_ptr = &dH[0, 0, 0] if dH is not None and T > 0 else NULL
    cdef const floating* dO_ptr = &dO[0, 0, 0] if dO is not None and T > 0 and O > 0 else NULL
    cdef const floating* last
    cdef const floating* hT
    cdef floating* G = <floating*> big_alloc(grows * ldg * sizeof(floating))
    cdef floating acc
    if dO_ptr != NULL:
        PV = _packed_rect(&V[0, 0], O, n, False)  # op = V: dh_t += dO_t V row by row
    if P == NULL or G == NULL or (dO_ptr != NULL and PV == NULL):
        free(P)
        free(PV)
        free(G)
        raise MemoryError()
    with nogil:
        memset(G, 0, grows * ldg * sizeof(floating))
        memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
        memset(&db[0], 0, n * sizeof(floating))
        if T > 0:
            bad = _backward_tiled(act, P, &H[0, 0, 0], dH_ptr, dO_ptr, O, PV, fold_dO, dA_ptr,
                                  &dh0[0, 0], &X[0, 0, 0], I, G, ldg, &db[0],
                                  _fold_steps(B, n), T, B, n, n_threads)
        for i in range(n):
            for j in range(n):
                dWh[i, j] = G[i * ldg + j]
            for j in range(I):
                dWx[i, j] = G[i * ldg + n + j]
        if dV is not None:
            # the fold met dO_{t-1} with h_t for t < T; the last step's dO_{T-1}^T h_T remains
            last = dO_ptr + (T - 1) * B * O
            hT = &H[T, 0, 0]
            for o in range(O):
                for j in range(n):
                    acc = G[(n + o) * ldg + j] if fold_dO else 0
                    if fold_dO:
                        for r in range(B):
                            acc = acc + last[r * O + o] * hT[r * n + j]
                    dV[o, j] = acc
        free(P)
        free(PV)
        free(G)
    if bad == -2:
        raise MemoryError()
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")
