"""Elman recurrence: h_t = f(a_t + W h_{t-1}) forward, and its backward pass through time.

Two pairs of entry points:
  - forward / backward, the kernel contract shared with the NumPy and pure-Python twins: the caller
    has formed a_t = U x_t + b for every step in one GEMM, and forms the weight gradients from dA;
  - forward_fused / backward_fused (used by fastbptt.cells when fused_ok): the projection is formed
    step by step inside the loop, and dU, dW, db are folded in while each block of dA is still in
    cache, so no (T, B, H) array of pre-activations or of their gradients is written and read back.
    backward_fused also takes the loss gradient unformed, as dO (T, B, O) at a linear head's
    outputs and its weights V (O, H) (the head's HeadGrad): dO_t V is formed inside the loop, and
    on request the head's dV = sum_t dO_t^T h_t is folded in beside dW. forward_fused, given the
    output layer (V, c), forms its logits h_t V^T + c in the loop while h_t is in cache: with both,
    the head never reads the (T, B, H) states back.

Layers, as in every kernel module:
  (a) `cdef inline ... noexcept nogil` helpers, and the C loops of cython/_tile.h (register tiles);
  (b) the `def` drivers over typed memoryviews, the whole time loop inside one `with nogil:`, no
      allocation inside it (packed or transposed copies of the weights are made before it);
  (c) the Python layer in src/fastbptt validates, allocates outputs with np.empty and dispatches.
The NumPy twins with the same signatures, the ground truth, are in src/fastbptt/reference/elman.py.

Paths, chosen per call from the shapes (results agree across them within rounding):
  - sequence: a batch of one to three sequences whose width n is a whole number of vector registers
    (up to 8 registers of the SIMD set in use): each sequence runs all its steps in one C call,
    threads split the batch;
  - tiled: every other shape: per step one register-tiled product against W packed once per call
    (no BLAS call per step, no repacking); threads split each step's rows as OpenMP tasks, so a
    helper thread parked by a busy machine delays nothing.
Every SIMD set (cython/_vec.h) has both; the table bound at import (fastbptt._simd) says so
(FASTBPTT_TILED), the BLAS branches below serving a table without them.

Variable lengths: every entry point takes batch_sizes (T,), non-increasing (the batch sorted by
decreasing length): step t advances only rows [0, batch_sizes[t]); rows beyond are neither read nor
written at that step, so H (forward) and dA (backward) keep what the caller put there, and the
running gradient of a finished row waits in dh0 until its last step comes round going backward. On
the sequence path each sequence simply runs its own number of steps; otherwise a loop over blocks of
rows (one per thread, cut so that each gets about the same number of valid steps) advances each step
the active rows of its block by one register-tiled product (by hand for one row per block). The
fused entries off the sequence path form the projection and the weight gradients around that loop.

Activations: 0 tanh, 1 relu, 2 step (Heaviside, h = 1 where a > 0; forward only).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from _blas cimport gemm, gemv
from _tile cimport (FASTBPTT_TILED, FB_NV_MAX, FB_TB, bind_set, elman_seq_backward,
                    elman_seq_forward, elman_tiled_backward, elman_tiled_forward, gemm_packed,
                    gemm_tn_cat_work, gemm_tn_work, lanes, pack, pack_size, tile_chunks)
from _vmath cimport all_finite, vtanh

import numpy as np
from fastbptt import _simd
from fastbptt._kernel_args import check_batch_sizes, check_shape as _check

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
# The fused projection forms U x_t inside the loop: I multiply-adds per unit, worth it for small I only.
cdef Py_ssize_t FUSED_MAX_I = 16


# ---------------------------------------------------------------------------------------------------
# (a) one step
# ---------------------------------------------------------------------------------------------------

cdef inline void _activate(int act, floating* h, Py_ssize_t n) noexcept nogil:
    """h <- f(h) in place."""
    cdef Py_ssize_t i
    if act == 0:
        vtanh(h, n)
    elif act == 1:
        for i in range(n):
            h[i] = h[i] if h[i] > 0 else 0
    else:
        for i in range(n):
            h[i] = 1 if h[i] > 0 else 0


cdef inline void _times_fprime(int act, const floating* h, floating* d, Py_ssize_t n) noexcept nogil:
    """d <- d * f'(a), with f' written through the output h = f(a)."""
    cdef Py_ssize_t i
    if act == 0:
        for i in range(n):
            d[i] = d[i] * (1 - h[i] * h[i])
    else:
        for i in range(n):
            d[i] = d[i] if h[i] > 0 else 0


cdef inline void _step_small(int act, const floating* wt, const floating* a, const floating* h_prev,
                             floating* h, Py_ssize_t n) noexcept nogil:
    """h = f(a + W h_prev) for one sequence, W given transposed so the inner loop is contiguous."""
    cdef Py_ssize_t i, j
    cdef floating hj
    cdef const floating* col
    for i in range(n):
        h[i] = a[i]
    for j in range(n):
        hj = h_prev[j]
        col = wt + j * n
        for i in range(n):
            h[i] += col[i] * hj
    _activate(act, h, n)


cdef inline void _back_small(int act, const floating* w, const floating* h, const floating* dh_out,
                             floating* da, floating* dh, Py_ssize_t n) noexcept nogil:
    """da = (dh_out + dh) * f'(a); then dh <- W^T da, for one sequence (dh is read, then rewritten)."""
    cdef Py_ssize_t i, j
    cdef floating dai
    cdef const floating* row
    for i in range(n):
        da[i] = dh_out[i] + dh[i]
    _times_fprime(act, h, da, n)
    memset(dh, 0, n * sizeof(floating))
    for i in range(n):
        dai = da[i]
        row = w + i * n
        for j in range(n):
            dh[j] += row[j] * dai


# ---------------------------------------------------------------------------------------------------
# time loops (serial in t; optionally parallel over the batch inside a step)
# ---------------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward_small(int act, const floating* wt, const floating* A, floating* H,
                               Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                               int n_threads) noexcept nogil:
    cdef Py_ssize_t t, b, step = B * n
    for t in range(T):
        if n_threads > 1 and B > 1:
            for b in prange(B, num_threads=n_threads, schedule="static"):
                _step_small(act, wt, A + t * step + b * n, H + t * step + b * n,
                            H + (t + 1) * step + b * n, n)
        else:
            for b in range(B):
                _step_small(act, wt, A + t * step + b * n, H + t * step + b * n,
                            H + (t + 1) * step + b * n, n)
        if not all_finite(H + (t + 1) * step, step):
            return t
    return -1


cdef Py_ssize_t _forward_blas(int act, const floating* W, const floating* A, floating* H,
                              Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                              int n_threads) noexcept nogil:
    cdef Py_ssize_t t, b, step = B * n
    cdef floating* h
    for t in range(T):
        h = H + (t + 1) * step
        memcpy(h, A + t * step, step * sizeof(floating))
        # h += h_prev @ W^T for the whole batch
        gemm(False, True, <int> B, <int> n, <int> n, 1, H + t * step, <int> n, W, <int> n,
             1, h, <int> n)
        if n_threads > 1 and B > 1:
            for b in prange(B, num_threads=n_threads, schedule="static"):
                _activate(act, h + b * n, n)
        else:
            _activate(act, h, step)
        if not all_finite(h, step):
            return t
    return -1


cdef Py_ssize_t _backward_small(int act, const floating* W, const floating* H, const floating* dH,
                                floating* dA, floating* dh, Py_ssize_t T, Py_ssize_t B,
                                Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t t, b, step = B * n
    for t in range(T - 1, -1, -1):
        if n_threads > 1 and B > 1:
            for b in prange(B, num_threads=n_threads, schedule="static"):
                _back_small(act, W, H + (t + 1) * step + b * n, dH + t * step + b * n,
                            dA + t * step + b * n, dh + b * n, n)
        else:
            for b in range(B):
                _back_small(act, W, H + (t + 1) * step + b * n, dH + t * step + b * n,
                            dA + t * step + b * n, dh + b * n, n)
        if not all_finite(dh, step):
            return t
    return -1


cdef Py_ssize_t _backward_blas(int act, const floating* W, const floating* H, const floating* dH,
                               floating* dA, floating* dh, Py_ssize_t T, Py_ssize_t B,
                               Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t t, k, step = B * n
    cdef floating* da
    for t in range(T - 1, -1, -1):
        da = dA + t * step
        for k in range(step):
            da[k] = dH[t * step + k] + dh[k]
        _times_fprime(act, H + (t + 1) * step, da, step)
        # dh = da @ W for the whole batch
        gemm(False, False, <int> B, <int> n, <int> n, 1, da, <int> n, W, <int> n, 0, dh, <int> n)
        if not all_finite(dh, step):
            return t
    return -1


cdef inline bint _small(Py_ssize_t B, Py_ssize_t n) noexcept nogil:
    return n <= SMALL_H and B * n * n <= SMALL_WORK


cdef inline bint _logits_by_dots(const floating* like, Py_ssize_t O) noexcept nogil:
    """Whether the tiled forward forms a head's O logits per row by dot products rather than by
    the register tile: up to O = lanes, where the tile's panel of 2 * lanes columns is half padding
    or more (measured in the loop at B=32, H=128: float32 O=1 0.4 against 1.7 us/step); from there
    on the tile, whose every load of V serves six rows, is as fast or faster (float64 O=10: 3.0-3.7
    against 4.3 us/step)."""
    return O <= lanes(like)


cdef inline Py_ssize_t _fold_steps(Py_ssize_t B, Py_ssize_t n) noexcept nogil:
    """Steps of dA folded into the weight gradients at once: at least 256 rows and at least n, so
    each product is long enough to run at full speed, and reading and writing dW (n x n) costs
    little beside it."""
    cdef Py_ssize_t rows = n if n > 256 else 256
    cdef Py_ssize_t steps = (rows + B - 1) // B
    return steps if steps < 64 else 64


cdef inline Py_ssize_t _fold_work(const floating* like, Py_ssize_t I, Py_ssize_t n) noexcept nogil:
    """Scratch elements one chunk of the weight-gradient fold needs."""
    return gemm_tn_work(like, n, n if n > I else I)


cdef Py_ssize_t _seq_nv(const floating* like, Py_ssize_t B, Py_ssize_t n) noexcept nogil:
    """Vector registers per state when the sequence path applies to this batch and width, else 0."""
    cdef Py_ssize_t w = lanes(like)
    if FASTBPTT_TILED and 1 <= B <= SEQ_MAX_B and n % w == 0 and n // w <= FB_NV_MAX:
        return n // w
    return 0


cdef Py_ssize_t _first_bad(Py_ssize_t* bad, Py_ssize_t B) noexcept nogil:
    """The earliest failing step over the sequences (-1 when none failed)."""
    cdef Py_ssize_t b, first = -1
    for b in range(B):
        if bad[b] >= 0 and (first < 0 or bad[b] < first):
            first = bad[b]
    return first


cdef Py_ssize_t _forward_seq(int act, int nv, const floating* Wt, const floating* A,
                             const floating* X, Py_ssize_t I, const floating* Ut,
                             const floating* bias, floating* H, Py_ssize_t T, Py_ssize_t B,
                             Py_ssize_t n, int n_threads, const Py_ssize_t* lengths,
                             Py_ssize_t O, const floating* V, const floating* c,
                             floating* out) noexcept nogil:
    """Each sequence through all its steps (lengths[b] of them when lengths is not NULL); a_t from
    A, or bias + U x_t when X is given; with out (T, B, O), the logits V h_t + c of its steps."""
    cdef Py_ssize_t b
    cdef Py_ssize_t bad[4]
    if n_threads > 1 and B > 1:
        for b in prange(B, num_threads=n_threads, schedule="static"):
            bad[b] = elman_seq_forward(nv, act, lengths[b] if lengths != NULL else T, Wt,
                                       A + b * n if A != NULL else A, B * n,
                                       X + b * I if X != NULL else X, B * I, I, Ut, bias,
                                       H + b * n, B * n, O, V, c,
                                       out + b * O if out != NULL else out, B * O)
    else:
        for b in range(B):
            bad[b] = elman_seq_forward(nv, act, lengths[b] if lengths != NULL else T, Wt,
                                       A + b * n if A != NULL else A, B * n,
                                       X + b * I if X != NULL else X, B * I, I, Ut, bias,
                                       H + b * n, B * n, O, V, c,
                                       out + b * O if out != NULL else out, B * O)
    return _first_bad(bad, B)


cdef Py_ssize_t _backward_seq(int act, int nv, const floating* W, const floating* H,
                              const floating* dH, const floating* dO, Py_ssize_t O,
                              const floating* V, floating* dA, floating* dh, const floating* X,
                              Py_ssize_t I, floating* G, floating* db, floating* ring,
                              floating* work, Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                              int n_threads, const Py_ssize_t* lengths) noexcept nogil:
    """Each sequence backward through all its steps (from step lengths[b] - 1 when lengths is not
    NULL), the loss gradient at h_t from dH (may be NULL) plus dO_t V (when dO is not NULL); with
    G, sequence b folds its weight gradients into its own slices of G, db (and ring), so the sum
    over the batch is the same for any threads."""
    cdef Py_ssize_t b
    cdef Py_ssize_t bad[4]
    if n_threads > 1 and B > 1:
        for b in prange(B, num_threads=n_threads, schedule="static"):
            bad[b] = _backward_one(act, nv, b, W, H, dH, dO, O, V, dA, dh, X, I, G, db, ring,
                                   work, T, B, n, lengths)
    else:
        for b in range(B):
            bad[b] = _backward_one(act, nv, b, W, H, dH, dO, O, V, dA, dh, X, I, G, db, ring,
                                   work, T, B, n, lengths)
    return _first_bad(bad, B)


cdef inline Py_ssize_t _backward_one(int act, int nv, Py_ssize_t b, const floating* W,
                                     const floating* H, const floating* dH, const floating* dO,
                                     Py_ssize_t O, const floating* V, floating* dA, floating* dh,
                                     const floating* X, Py_ssize_t I, floating* G, floating* db,
                                     floating* ring, floating* work, Py_ssize_t T, Py_ssize_t B,
                                     Py_ssize_t n, const Py_ssize_t* lengths) noexcept nogil:
    """Sequence b of _backward_seq: its rows of every array, its slices of the scratch."""
    cdef Py_ssize_t gsize = (I + n) * n, wsize = _fold_work(W, I, n)
    return elman_seq_backward(
        nv, act, lengths[b] if lengths != NULL else T, W, H + b * n, B * n,
        dH + b * n if dH != NULL else dH, B * n, dO + b * O if dO != NULL else dO, B * O, O, V,
        dA + b * n if dA != NULL else dA, B * n, dh + b * n,
        X + b * I if X != NULL else X, B * I, I,
        G + b * gsize if G != NULL else G, db + b * n if db != NULL else db,
        ring + b * FB_TB * n if ring != NULL else ring,
        work + b * wsize if work != NULL else work)


cdef inline Py_ssize_t _active(const Py_ssize_t* bs, Py_ssize_t t, Py_ssize_t b0,
                               Py_ssize_t rows) noexcept nogil:
    """Rows of the block starting at batch row b0 that step t advances."""
    cdef Py_ssize_t r = bs[t] - b0
    return 0 if r < 0 else (rows if r > rows else r)


cdef Py_ssize_t _forward_ragged(int act, const floating* P, const floating* wt, const floating* A,
                                floating* H, const Py_ssize_t* bs, Py_ssize_t b0, Py_ssize_t T,
                                Py_ssize_t B, Py_ssize_t block_rows, Py_ssize_t n) noexcept nogil:
    """Forward over the rows of one block (pointers at its first row b0) that each step keeps
    active: one tiled product over P (W^T packed), or by hand over wt (W^T) when P is NULL."""
    cdef Py_ssize_t t, b, rows, step = B * n
    cdef floating* h
    for t in range(T):
        rows = _active(bs, t, b0, block_rows)
        if rows == 0:
            # batch_sizes never grows: every row of the block is done
            break
        h = H + (t + 1) * step
        if P != NULL:
            gemm_packed(rows, n, n, H + t * step, n, P, NULL, A + t * step, n, h, n)
            _activate(act, h, rows * n)
        else:
            for b in range(rows):
                _step_small(act, wt, A + t * step + b * n, H + t * step + b * n, h + b * n, n)
        if not all_finite(h, rows * n):
            return t
    return -1


cdef Py_ssize_t _backward_ragged(int act, const floating* W, const floating* P, const floating* H,
                                 const floating* dH, floating* dA, floating* dh,
                                 const Py_ssize_t* bs, Py_ssize_t b0, Py_ssize_t T, Py_ssize_t B,
                                 Py_ssize_t block_rows, Py_ssize_t n) noexcept nogil:
    """Backward over the active rows of one block: one tiled product over P (W packed) per step, or
    by hand over W when P is NULL; an inactive row keeps its dh."""
    cdef Py_ssize_t t, b, k, rows, step = B * n
    cdef floating* da
    for t in range(T - 1, -1, -1):
        rows = _active(bs, t, b0, block_rows)
        if rows == 0:
            continue
        da = dA + t * step
        if P != NULL:
            for k in range(rows * n):
                da[k] = dH[t * step + k] + dh[k]
            _times_fprime(act, H + (t + 1) * step, da, rows * n)
            gemm_packed(rows, n, n, da, n, P, NULL, NULL, 0, dh, n)
        else:
            for b in range(rows):
                _back_small(act, W, H + (t + 1) * step + b * n, dH + t * step + b * n,
                            da + b * n, dh + b * n, n)
        if not all_finite(dh, rows * n):
            return t
    return -1


cdef Py_ssize_t _earliest(const Py_ssize_t* bad, Py_ssize_t k, bint forward) noexcept nogil:
    """The step a serial loop would have stopped at, from each block's first bad step (-1: none)."""
    cdef Py_ssize_t j, first = -1
    for j in range(k):
        if bad[j] >= 0 and (first < 0 or (bad[j] < first if forward else bad[j] > first)):
            first = bad[j]
    return first


cdef floating* _transposed(const floating* M, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """A malloc'd (cols, rows) copy of the (rows, cols) matrix M, or NULL when out of memory."""
    cdef Py_ssize_t i, j
    cdef floating* out = <floating*> malloc(rows * cols * sizeof(floating) + 1)
    if out != NULL:
        for i in range(rows):
            for j in range(cols):
                out[j * rows + i] = M[i * cols + j]
    return out


cdef floating* _packed(const floating* W, Py_ssize_t n, bint trans) noexcept nogil:
    """W (n, n) (trans: W^T) packed for gemm_packed, malloc'd, or NULL when out of memory."""
    return _packed_rect(W, n, n, trans)


cdef floating* _packed_rect(const floating* M, Py_ssize_t rows, Py_ssize_t cols,
                            bint trans) noexcept nogil:
    """op(M) packed for gemm_packed (op(M) = M^T, (cols, rows), when trans), malloc'd, or NULL."""
    cdef Py_ssize_t K = cols if trans else rows, N = rows if trans else cols
    cdef floating* P = <floating*> malloc(pack_size(M, K, N) * sizeof(floating) + 1)
    if P != NULL:
        pack(M, cols, trans, K, N, P)
    return P


# ---------------------------------------------------------------------------------------------------
# (b) drivers
# ---------------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward_lean(int act, const floating* W, const floating* U, const floating* bias,
                              const floating* X, floating* H, Py_ssize_t T, Py_ssize_t B,
                              Py_ssize_t I, Py_ssize_t n, Py_ssize_t O, const floating* V,
                              const floating* cv, floating* out) noexcept nogil:
    """forward_fused for a few rows in all (one step of generation): the products with W, U and V
    as given, where packing them would cost more than the call's arithmetic. Returns the first
    step with a non-finite state, or -1."""
    cdef Py_ssize_t t, r, k
    cdef floating* h
    for t in range(T):
        h = H + (t + 1) * B * n
        for r in range(B):
            memcpy(h + r * n, bias, n * sizeof(floating))
            if I > 0:
                gemv(False, <int> n, <int> I, 1, U, <int> I, X + (t * B + r) * I, 1, h + r * n)
            gemv(False, <int> n, <int> n, 1, W, <int> n, H + (t * B + r) * n, 1, h + r * n)
        if act == 1:  # relu; NaN kept, as the other paths keep it
            for k in range(B * n):
                if h[k] <= 0:
                    h[k] = 0
        else:
            _activate(act, h, B * n)
        if not all_finite(h, B * n):
            return t
        for r in range(B if out != NULL else 0):
            memcpy(out + (t * B + r) * O, cv, O * sizeof(floating))
            gemv(False, <int> O, <int> n, 1, V, <int> n, h + r * n, 1, out + (t * B + r) * O)
    return -1


cdef inline int _team(int n_threads, Py_ssize_t work) noexcept:
    """Threads for a call: at least one, at most one per block of work (a thread with no rows
    of its own only costs its start)."""
    return <int> max(1, min(<Py_ssize_t> n_threads, work))


def _lengths_of(bs, Py_ssize_t T, Py_ssize_t B):
    """Each row's number of steps: how many batch sizes exceed its index (intp, (B,))."""
    return (T - np.searchsorted(bs[::-1], np.arange(B), side="right")).astype(np.intp)


def _block_starts(bs, Py_ssize_t T, Py_ssize_t B, Py_ssize_t blocks):
    """First row of each block and B at the end (blocks + 1 entries, each block at least one row),
    with about equal numbers of valid steps: the longest sequences come first and would otherwise
    leave the first thread working alone."""
    starts = (np.arange(blocks + 1) * B // blocks).astype(np.intp)
    work = np.concatenate(([0], np.cumsum(_lengths_of(bs, T, B))))
    if blocks == 1 or work[B] == 0:
        return starts
    starts[1:blocks] = np.searchsorted(work, work[B] * np.arange(1, blocks) / blocks)
    for c in range(1, blocks):
        starts[c] = max(starts[c], starts[c - 1] + 1)
    for c in range(blocks - 1, 0, -1):
        starts[c] = min(starts[c], starts[c + 1] - 1)
    return starts


cdef _forward_lengths(int act, const floating[:, ::1] W, const floating[:, :, ::1] A,
                      floating[:, :, ::1] H, bs_arr, int n_threads):
    """forward() with batch_sizes (checked, T > 0, B > 0 and H[0] set by the caller)."""
    cdef Py_ssize_t T = A.shape[0], B = A.shape[1], n = A.shape[2]
    cdef Py_ssize_t nv = _seq_nv(&W[0, 0], B, n), c, b0, bad = -1
    cdef Py_ssize_t blocks = max(1, min(n_threads, B))
    cdef const Py_ssize_t[::1] bs = bs_arr
    cdef const Py_ssize_t[::1] lengths
    cdef const Py_ssize_t[::1] starts
    cdef floating* wt = NULL
    cdef floating* P = NULL
    cdef Py_ssize_t* bad_block = NULL
    if nv:
        lengths = _lengths_of(bs_arr, T, B)
        wt = _transposed(&W[0, 0], n, n)
        if wt == NULL:
            raise MemoryError()
        with nogil:
            bad = _forward_seq(act, nv, wt, &A[0, 0, 0], <floating*> NULL, 0, <floating*> NULL,
                               <floating*> NULL, &H[0, 0, 0], T, B, n, n_threads, &lengths[0],
                               0, <floating*> NULL, <floating*> NULL, <floating*> NULL)
            free(wt)
    else:
        starts_arr = _block_starts(bs_arr, T, B, blocks)
        starts = starts_arr
        # all blocks take the path of the largest: by hand for one row, else the tiled product
        if np.diff(starts_arr).max() == 1:
            wt = _transposed(&W[0, 0], n, n)
        else:
            P = _packed(&W[0, 0], n, True)
        bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
        if bad_block == NULL or (wt == NULL and P == NULL):
            free(wt)
            free(P)
            free(bad_block)
            raise MemoryError()
        with nogil:
            if blocks > 1:
                for c in prange(blocks, num_threads=blocks, schedule="static"):
                    b0 = starts[c]
                    bad_block[c] = _forward_ragged(act, P, wt, &A[0, 0, 0] + b0 * n,
                                                   &H[0, 0, 0] + b0 * n, &bs[0], b0, T, B,
                                                   starts[c + 1] - b0, n)
            else:
                bad_block[0] = _forward_ragged(act, P, wt, &A[0, 0, 0], &H[0, 0, 0], &bs[0], 0, T,
                                               B, B, n)
            bad = _earliest(bad_block, blocks, True)
            free(wt)
            free(P)
            free(bad_block)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden state at time step {bad}")


cdef _backward_lengths(int act, const floating[:, ::1] W, const floating[:, :, ::1] H,
                       const floating[:, :, ::1] dH, floating[:, :, ::1] dA, floating[:, ::1] dh0,
                       bs_arr, int n_threads):
    """backward() with batch_sizes (checked, T > 0, B > 0 and dh0 = dh_T set by the caller)."""
    cdef Py_ssize_t T = dH.shape[0], B = dH.shape[1], n = dH.shape[2]
    cdef Py_ssize_t nv = _seq_nv(&W[0, 0], B, n), c, b0, bad = -1
    cdef Py_ssize_t blocks = max(1, min(n_threads, B))
    cdef const Py_ssize_t[::1] bs = bs_arr
    cdef const Py_ssize_t[::1] lengths
    cdef const Py_ssize_t[::1] starts
    cdef floating* P = NULL
    cdef Py_ssize_t* bad_block = NULL
    if nv:
        lengths = _lengths_of(bs_arr, T, B)
        with nogil:
            bad = _backward_seq(act, nv, &W[0, 0], &H[0, 0, 0], &dH[0, 0, 0], <floating*> NULL, 0,
                                <floating*> NULL, &dA[0, 0, 0], &dh0[0, 0], <floating*> NULL, 0,
                                <floating*> NULL, <floating*> NULL, <floating*> NULL,
                                <floating*> NULL, T, B, n, n_threads, &lengths[0])
    else:
        starts_arr = _block_starts(bs_arr, T, B, blocks)
        starts = starts_arr
        if np.diff(starts_arr).max() > 1:
            P = _packed(&W[0, 0], n, False)  # op = W: dh = da W row by row
            if P == NULL:
                raise MemoryError()
        bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
        if bad_block == NULL:
            free(P)
            raise MemoryError()
        with nogil:
            if blocks > 1:
                for c in prange(blocks, num_threads=blocks, schedule="static"):
                    b0 = starts[c]
                    bad_block[c] = _backward_ragged(act, &W[0, 0], P, &H[0, 0, 0] + b0 * n,
                                                    &dH[0, 0, 0] + b0 * n, &dA[0, 0, 0] + b0 * n,
                                                    &dh0[0, 0] + b0 * n, &bs[0], b0, T, B,
                                                    starts[c + 1] - b0, n)
            else:
                bad_block[0] = _backward_ragged(act, &W[0, 0], P, &H[0, 0, 0], &dH[0, 0, 0],
                                                &dA[0, 0, 0], &dh0[0, 0], &bs[0], 0, T, B, B, n)
            bad = _earliest(bad_block, blocks, False)
            free(P)
            free(bad_block)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")


def _projection(X, U, b, bs):
    """A = X U^T + b, (T, B, H); with batch_sizes bs, at the valid steps only and zero elsewhere."""
    X = np.asarray(X)
    U = np.asarray(U)
    T, B, I = X.shape
    if bs is None:
        A = np.matmul(X.reshape(T * B, I), U.T).reshape(T, B, U.shape[0])
        A += np.asarray(b)
        return A
    mask = np.arange(B)[None, :] < bs[:, None]
    A = np.zeros((T, B, U.shape[0]), dtype=X.dtype)
    A[mask] = X[mask] @ U.T + np.asarray(b)
    return A


def _valid_weight_grads(dA, X, H, bs, dU, dW, db):
    """dU, dW, db from the valid rows only (what lies past a sequence's end is never read)."""
    T, B = dA.shape[:2]
    mask = np.arange(B)[None, :] < bs[:, None]
    dA_valid = dA[mask]
    np.matmul(dA_valid.T, np.asarray(X)[mask], out=np.asarray(dU))
    np.matmul(dA_valid.T, np.asarray(H)[:T][mask], out=np.asarray(dW))
    np.sum(dA_valid, axis=0, out=np.asarray(db))


def forward(int act,
            const floating[:, ::1] W,       # IN  (H, H) recurrent weights
            const floating[:, :, ::1] A,    # IN  (T, B, H) input projections U x_t + b
            const floating[:, ::1] h0,      # IN  (B, H) initial state
            floating[:, :, ::1] H,          # OUT (T+1, B, H) states, H[0] = h0
            int n_threads=1,
            batch_sizes=None):              # IN  (T,) intp or None: rows advanced at each step
    """Unroll h_t = f(A[t] + W h_{t-1}) over all T steps; raise FloatingPointError on a non-finite state."""
    cdef Py_ssize_t T = A.shape[0], B = A.shape[1], n = A.shape[2]
    cdef Py_ssize_t nv, bad = -1
    cdef floating* buf = NULL
    n_threads = _team(n_threads, B)
    if act not in (TANH, RELU, STEP):
        raise ValueError(f"unknown activation code {act}")
    _check("W", (W.shape[0], W.shape[1]), (n, n))
    _check("h0", (h0.shape[0], h0.shape[1]), (B, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    if B == 0 or n == 0:
        return
    memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
    if T == 0:
        return
    if bs_arr is not None:
        _forward_lengths(act, W, A, H, bs_arr, n_threads)
        return
    nv = _seq_nv(&W[0, 0], B, n)
    if nv or (not FASTBPTT_TILED and _small(B, n)):
        buf = _transposed(&W[0, 0], n, n)
    elif FASTBPTT_TILED:
        buf = _packed(&W[0, 0], n, True)  # op = W^T: h_t = h_{t-1} W^T + a_t row by row
    if buf == NULL and (FASTBPTT_TILED or _small(B, n)):
        raise MemoryError()
    with nogil:
        if nv:
            bad = _forward_seq(act, nv, buf, &A[0, 0, 0], <floating*> NULL, 0, <floating*> NULL,
                               <floating*> NULL, &H[0, 0, 0], T, B, n, n_threads, NULL,
                               0, <floating*> NULL, <floating*> NULL, <floating*> NULL)
        elif FASTBPTT_TILED:
            bad = elman_tiled_forward(act, buf, &A[0, 0, 0], <floating*> NULL, 0, <floating*> NULL,
                                      <floating*> NULL, &H[0, 0, 0], T, B, n, 0, <floating*> NULL,
                                      <floating*> NULL, <floating*> NULL, <floating*> NULL,
                                      n_threads)
        elif _small(B, n):
            bad = _forward_small(act, buf, &A[0, 0, 0], &H[0, 0, 0], T, B, n, n_threads)
        else:
            bad = _forward_blas(act, &W[0, 0], &A[0, 0, 0], &H[0, 0, 0], T, B, n, n_threads)
        free(buf)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden state at time step {bad}")


def backward(int act,
             const floating[:, ::1] W,       # IN  (H, H)
             const floating[:, :, ::1] H,    # IN  (T+1, B, H) states from forward
             const floating[:, :, ::1] dH,   # IN  (T, B, H) loss gradient reaching each h_t, t = 1..T
             const floating[:, ::1] dh_T,    # IN  (B, H) gradient arriving from a later chunk
             floating[:, :, ::1] dA,         # OUT (T, B, H) gradient at every pre-activation
             floating[:, ::1] dh0,           # OUT (B, H) gradient at the initial state
             int n_threads=1,
             batch_sizes=None):              # IN  (T,) intp or None: rows advanced at each step
    """Backpropagate through time; raise FloatingPointError on a non-finite gradient.

    With batch_sizes, dh_T of a row reaches back to its last valid step, t = length - 1.
    """
    cdef Py_ssize_t T = dH.shape[0], B = dH.shape[1], n = dH.shape[2]
    cdef Py_ssize_t nv, bad = -1
    cdef floating* P = NULL
    n_threads = _team(n_threads, B)
    if act == STEP:
        raise ValueError("the step cell is forward only: its derivative is zero almost everywhere")
    if act not in (TANH, RELU):
        raise ValueError(f"unknown activation code {act}")
    _check("W", (W.shape[0], W.shape[1]), (n, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    if B == 0 or n == 0:
        return
    if bs_arr is not None:
        # dh0 doubles as the running gradient; a row waits there until its last step
        memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
        if T > 0:
            _backward_lengths(act, W, H, dH, dA, dh0, bs_arr, n_threads)
        return
    nv = _seq_nv(&W[0, 0], B, n)
    if T > 0 and not nv and FASTBPTT_TILED:
        P = _packed(&W[0, 0], n, False)  # op = W: dh = da W row by row
        if P == NULL:
            raise MemoryError()
    with nogil:
        # dh0 doubles as the running gradient dL/dh_t, so the loop needs no buffer of its own
        memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
        if T > 0:
            if nv:
                bad = _backward_seq(act, nv, &W[0, 0], &H[0, 0, 0], &dH[0, 0, 0],
                                    <floating*> NULL, 0, <floating*> NULL, &dA[0, 0, 0],
                                    &dh0[0, 0], <floating*> NULL, 0, <floating*> NULL,
                                    <floating*> NULL, <floating*> NULL, <floating*> NULL, T, B, n,
                                    n_threads, NULL)
            elif FASTBPTT_TILED:
                bad = elman_tiled_backward(act, P, &H[0, 0, 0], &dH[0, 0, 0], <floating*> NULL, 0,
                                           <floating*> NULL, False, &dA[0, 0, 0], &dh0[0, 0],
                                           <floating*> NULL, 0, <floating*> NULL, 0,
                                           <floating*> NULL, <floating*> NULL, <floating*> NULL,
                                           1, T, B, n, n_threads)
                free(P)
            elif _small(B, n):
                bad = _backward_small(act, &W[0, 0], &H[0, 0, 0], &dH[0, 0, 0], &dA[0, 0, 0],
                                      &dh0[0, 0], T, B, n, n_threads)
            else:
                bad = _backward_blas(act, &W[0, 0], &H[0, 0, 0], &dH[0, 0, 0], &dA[0, 0, 0],
                                     &dh0[0, 0], T, B, n, n_threads)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")


def fused_ok(Py_ssize_t input_size, Py_ssize_t hidden_size, Py_ssize_t batch, dtype):
    """True when forward_fused / backward_fused beat the contract path plus separate GEMMs: whenever
    the SIMD set in use has the tiled kernels (every set does). Same results either way."""
    return bool(FASTBPTT_TILED)


def sequence_path(Py_ssize_t input_size, Py_ssize_t hidden_size, Py_ssize_t batch, dtype):
    """True when the fused entries run each sequence through all its steps in one call, with the
    projection and the weight gradients inside (small batch, whole registers, small input)."""
    cdef Py_ssize_t w = lanes(<float*> NULL) if np.dtype(dtype) == np.float32 else lanes(<double*> NULL)
    return bool(FASTBPTT_TILED and 1 <= batch <= SEQ_MAX_B and hidden_size % w == 0
                and hidden_size // w <= FB_NV_MAX and input_size <= FUSED_MAX_I)


def forward_fused(int act,
                  const floating[:, ::1] U,       # IN  (H, I) input weights
                  const floating[::1] b,          # IN  (H,) bias
                  const floating[:, ::1] W,       # IN  (H, H) recurrent weights
                  const floating[:, :, ::1] X,    # IN  (T, B, I) inputs
                  const floating[:, ::1] h0,      # IN  (B, H) initial state
                  floating[:, :, ::1] H,          # OUT (T+1, B, H) states, H[0] = h0
                  int n_threads=1,
                  batch_sizes=None,               # IN  (T,) intp or None: rows advanced at step t
                  const floating[:, ::1] V=None,  # IN  (O, H) output layer weights, or None
                  const floating[::1] c=None,     # IN  (O,) output layer bias, with V
                  floating[:, :, ::1] out=None):  # OUT (T, B, O) logits h_t V^T + c, with V
    """forward() with the projection a_t = U x_t + b formed step by step inside the time loop (no
    (T, B, H) array of pre-activations to write and read back); raise FloatingPointError on a
    non-finite state. With batch_sizes off the sequence path: the projection of the valid steps,
    then forward().

    With V, c and out, a linear output layer's logits out[t] = H[t + 1] V^T + c are formed in the
    same loop while each step's states are in cache (with batch_sizes at the valid rows only; the
    others keep what the caller put there)."""
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1], I = X.shape[2], n = W.shape[0]
    cdef Py_ssize_t nv, bad = -1, O = 0
    cdef floating* wt = NULL
    cdef floating* ut = NULL
    cdef floating* pv = NULL
    cdef floating* out_ptr = NULL
    cdef const floating* V_ptr = NULL
    cdef const floating* c_ptr = NULL
    cdef const Py_ssize_t[::1] lengths
    cdef const Py_ssize_t* lengths_ptr = NULL
    if act not in (TANH, RELU, STEP):
        raise ValueError(f"unknown activation code {act}")
    _check("W", (W.shape[0], W.shape[1]), (n, n))
    _check("U", (U.shape[0], U.shape[1]), (n, I))
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
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    n_threads = _team(n_threads, B)
    if not FASTBPTT_TILED or (bs_arr is not None and not sequence_path(
            I, n, B, np.float32 if floating is float else np.float64)):
        forward(act, W, _projection(X, U, b, bs_arr), h0, H, n_threads, bs_arr)
        if V is not None:
            _logits(H, V, c, out, bs_arr)
        return
    memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
    if T == 0 or B == 0 or n == 0:
        if V is not None and T > 0 and B > 0:
            _logits(H, V, c, out, bs_arr)  # no units: the logits are the bias
        return
    if V is not None and O > 0:
        out_ptr = &out[0, 0, 0]
        V_ptr = &V[0, 0]
        c_ptr = &c[0]
    if T * B <= LEAN_ROWS and bs_arr is None:
        with nogil:
            bad = _forward_lean(act, &W[0, 0], &U[0, 0] if I > 0 else NULL, &b[0],
                                &X[0, 0, 0] if I > 0 else NULL,
                                &H[0, 0, 0], T, B, I, n, O, V_ptr, c_ptr, out_ptr)
        if bad >= 0:
            raise FloatingPointError(f"non-finite hidden state at time step {bad}")
        return
    if bs_arr is not None:
        lengths = _lengths_of(bs_arr, T, B)
        lengths_ptr = &lengths[0]
    nv = _seq_nv(&W[0, 0], B, n) if I <= FUSED_MAX_I else 0
    if nv:
        wt = _transposed(&W[0, 0], n, n)
        ut = _transposed(&U[0, 0], n, I)
    else:
        wt = _packed(&W[0, 0], n, True)
        ut = _packed_rect(&U[0, 0], n, I, True)  # op = U^T: a_t = b + x_t U^T row by row
        if out_ptr != NULL and not _logits_by_dots(V_ptr, O):
            pv = _packed_rect(V_ptr, O, n, True)  # op = V^T: o_t = c + h_t V^T row by row
    if wt == NULL or ut == NULL or (out_ptr != NULL and not nv and pv == NULL
                                    and not _logits_by_dots(V_ptr, O)):
        free(wt)
        free(ut)
        free(pv)
        raise MemoryError()
    with nogil:
        if nv:
            bad = _forward_seq(act, nv, wt, <floating*> NULL, &X[0, 0, 0], I, ut, &b[0],
                               &H[0, 0, 0], T, B, n, n_threads, lengths_ptr, O, V_ptr, c_ptr,
                               out_ptr)
        else:
            bad = elman_tiled_forward(act, wt, <floating*> NULL, &X[0, 0, 0], I, ut, &b[0],
                                      &H[0, 0, 0], T, B, n, O, V_ptr, pv, c_ptr, out_ptr,
                                      n_threads)
        free(wt)
        free(ut)
        free(pv)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden state at time step {bad}")


def _logits(H, V, c, out, bs):
    """out[t] = H[t + 1] V^T + c for the paths that form no logits in their loop (with batch_sizes
    bs, at the valid rows only)."""
    H, V, out = np.asarray(H), np.asarray(V), np.asarray(out)
    T, B = out.shape[:2]
    if bs is None:
        # sizes spelled out: -1 cannot be inferred from an empty array (T = 0 or B = 0)
        np.matmul(H[1:].reshape(T * B, H.shape[2]), V.T, out=out.reshape(T * B, V.shape[0]))
        out += np.asarray(c)
        return
    mask = np.arange(B)[None, :] < bs[:, None]
    out[mask] = H[1:][mask] @ V.T + np.asarray(c)


def backward_fused(int act,
                   const floating[:, ::1] W,       # IN  (H, H)
                   const floating[:, :, ::1] X,    # IN  (T, B, I) inputs
                   const floating[:, :, ::1] H,    # IN  (T+1, B, H) states from forward
                   const floating[:, :, ::1] dH,   # IN  (T, B, H) or None: loss gradient reaching each h_t
                   const floating[:, ::1] dh_T,    # IN  (B, H) gradient arriving from a later chunk
                   floating[:, :, ::1] dA,         # OUT (T, B, H) or None: gradient at the pre-activations
                   floating[:, ::1] dh0,           # OUT (B, H) gradient at the initial state
                   floating[:, ::1] dU,            # OUT (H, I) = sum_t dA_t^T X_t
                   floating[:, ::1] dW,            # OUT (H, H) = sum_t dA_t^T H_t
                   floating[::1] db,               # OUT (H,) = sum_t dA_t
                   int n_threads=1,
                   batch_sizes=None,               # IN  (T,) intp or None: rows advanced at step t
                   const floating[:, :, ::1] dO=None,  # IN  (T, B, O) or None: gradient at the logits
                   const floating[:, ::1] V=None,      # IN  (O, H) the head's weights, given with dO
                   floating[:, ::1] dV=None):          # OUT (O, H) or None: sum_t dO_t^T h_t, with dO
    """backward() with the weight gradients folded in while each block of dA is still in cache;
    dA=None skips writing it. Raise FloatingPointError on a non-finite gradient. With batch_sizes
    off the sequence path: backward(), then the weight gradients of the valid steps.

    The loss gradient reaching h_t is dH[t] (dH=None: zero) plus, with dO and V, dO[t] @ V: a
    linear head o_t = V h_t + c hands over the gradient at its outputs instead of a (T, B, H) dH,
    and the kernels form dO_t V step by step (where they cannot, it is formed here once). With dV,
    the head's weight gradient sum_t dO_t^T h_t (h_t = H[t + 1]) is formed too: folded in beside
    dW on the tiled path, one product here on the others. With batch_sizes, dO's rows past a
    sequence's end must be zero (they are read as they are)."""
    cdef Py_ssize_t T = H.shape[0] - 1, B = H.shape[1], n = W.shape[0], I = X.shape[2]
    cdef Py_ssize_t O = 0
    cdef Py_ssize_t nv, bad = -1, i, k, s, gsize = (I + n) * n
    cdef floating* G = NULL
    cdef floating* gb = NULL
    cdef floating* ring = NULL
    cdef floating* work = NULL
    cdef floating* dA_ptr = NULL
    cdef const floating* dH_ptr = NULL
    cdef const floating* dO_ptr = NULL
    cdef const floating* V_ptr = NULL
    cdef floating acc
    cdef const Py_ssize_t[::1] lengths
    cdef const Py_ssize_t* lengths_ptr = NULL
    if act == STEP:
        raise ValueError("the step cell is forward only: its derivative is zero almost everywhere")
    if act not in (TANH, RELU):
        raise ValueError(f"unknown activation code {act}")
    _check("W", (W.shape[0], W.shape[1]), (n, n))
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
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    if dA is not None:
        _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    _check("dU", (dU.shape[0], dU.shape[1]), (n, I))
    _check("dW", (dW.shape[0], dW.shape[1]), (n, n))
    _check("db", (db.shape[0],), (n,))
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    # the weight-gradient fold is cut over its n + O rows too, not only over the batch
    n_threads = _team(n_threads, max(B, n + O))
    seq = FASTBPTT_TILED and B > 0 and n > 0 and sequence_path(
        I, n, B, np.float32 if floating is float else np.float64)
    if FASTBPTT_TILED and B > 0 and n > 0 and not seq and bs_arr is None:
        _backward_fused_tiled(act, W, X, H, dH, dO, V, dV, dh_T, dA, dh0, dU, dW, db, n_threads)
        return
    if dV is not None:
        np.matmul(np.asarray(dO).reshape(T * B, O).T, np.asarray(H)[1:].reshape(T * B, n),
                  out=np.asarray(dV))
    if not seq:
        dense = _dense_grad(dH, dO, V, T, B, n, np.asarray(dh0).dtype)
        dA_all = np.asarray(dA) if dA is not None else np.zeros((T, B, n),
                                                                dtype=np.asarray(dh0).dtype)
        backward(act, W, H, dense, dh_T, dA_all, dh0, n_threads, bs_arr)
        if bs_arr is not None:
            _valid_weight_grads(dA_all, X, H, bs_arr, dU, dW, db)
            return
        dA2 = dA_all.reshape(T * B, n)
        np.matmul(dA2.T, np.asarray(X).reshape(T * B, I), out=np.asarray(dU))
        np.matmul(dA2.T, np.asarray(H)[:T].reshape(T * B, n), out=np.asarray(dW))
        np.sum(dA2, axis=0, out=np.asarray(db))
        return
    nv = n // lanes(&W[0, 0])
    if T > 0:
        if dH is not None:
            dH_ptr = &dH[0, 0, 0]
        if dO is not None:
            dO_ptr = &dO[0, 0, 0] if O > 0 else NULL
            V_ptr = &V[0, 0] if O > 0 else NULL
    if bs_arr is not None and T > 0:
        lengths = _lengths_of(bs_arr, T, B)
        lengths_ptr = &lengths[0]
    G = <floating*> calloc(B * gsize, sizeof(floating))
    gb = <floating*> calloc(B * n, sizeof(floating))
    work = <floating*> malloc(B * _fold_work(&W[0, 0], I, n) * sizeof(floating))
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
            bad = _backward_seq(act, nv, &W[0, 0], &H[0, 0, 0], dH_ptr, dO_ptr, O, V_ptr, dA_ptr,
                                &dh0[0, 0], &X[0, 0, 0], I, G, gb, ring, work, T, B, n, n_threads,
                                lengths_ptr)
        # G holds dU^T over its first I rows and dW^T below; sum the sequences in a fixed order
        for i in range(n):
            for k in range(I):
                acc = 0
                for s in range(B):
                    acc = acc + G[s * gsize + k * n + i]
                dU[i, k] = acc
            for k in range(n):
                acc = 0
                for s in range(B):
                    acc = acc + G[s * gsize + (I + k) * n + i]
                dW[i, k] = acc
            acc = 0
            for s in range(B):
                acc = acc + gb[s * n + i]
            db[i] = acc
        free(G)
        free(gb)
        free(ring)
        free(work)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")


def _dense_grad(dH, dO, V, Py_ssize_t T, Py_ssize_t B, Py_ssize_t n, dtype):
    """The loss gradient reaching every h_t as one (T, B, H) array: dH (or zero) + dO @ V."""
    if dO is None:
        return dH if dH is not None else np.zeros((T, B, n), dtype=dtype)
    dense = np.matmul(np.asarray(dO), np.asarray(V))
    if dH is not None:
        dense += np.asarray(dH)
    return dense


cdef _backward_fused_tiled(int act, const floating[:, ::1] W, const floating[:, :, ::1] X,
                           const floating[:, :, ::1] H, const floating[:, :, ::1] dH,
                           const floating[:, :, ::1] dO, const floating[:, ::1] V,
                           floating[:, ::1] dV, const floating[:, ::1] dh_T,
                           floating[:, :, ::1] dA, floating[:, ::1] dh0, floating[:, ::1] dU,
                           floating[:, ::1] dW, floating[::1] db, int n_threads):
    """backward_fused for shapes off the sequence path: the tiled loop with the weight gradients
    folded in step by step (shapes checked by the caller; dH and dO may be None, dV needs dO)."""
    cdef Py_ssize_t T = H.shape[0] - 1, B = H.shape[1], n = W.shape[0], I = X.shape[2]
    cdef Py_ssize_t bad = -1, O = V.shape[0] if V is not None else 0
    cdef Py_ssize_t i, j, o, r
    # the fold accumulates G = [dW | dU] (and the O rows of dV below when asked), whole panels wide
    cdef Py_ssize_t nr = 2 * lanes(&W[0, 0])
    cdef Py_ssize_t ldg = (n + I + nr - 1) // nr * nr
    cdef bint fold_dO = dV is not None and O > 0 and T > 0
    cdef Py_ssize_t grows = n + (O if fold_dO else 0)
    cdef floating* P = _packed(&W[0, 0], n, False)
    cdef floating* PV = NULL
    cdef floating* ring = NULL
    cdef floating* dA_ptr = NULL
    cdef const floating* dH_ptr = &dH[0, 0, 0] if dH is not None and T > 0 else NULL
    cdef const floating* dO_ptr = &dO[0, 0, 0] if dO is not None and T > 0 and O > 0 else NULL
    cdef const floating* last
    cdef const floating* hT
    cdef Py_ssize_t chunks = tile_chunks(n_threads, grows)
    cdef floating* work = <floating*> malloc(chunks * gemm_tn_cat_work(&W[0, 0]) * sizeof(floating))
    cdef floating* G = <floating*> calloc(grows * ldg, sizeof(floating))
    cdef floating acc
    if dO_ptr != NULL:
        PV = _packed_rect(&V[0, 0], O, n, False)  # op = V: dh_t += dO_t V row by row
    if dA is None:
        ring = <floating*> malloc(_fold_steps(B, n) * B * n * sizeof(floating) + 1)
    elif T > 0:
        dA_ptr = &dA[0, 0, 0]
    if (P == NULL or work == NULL or G == NULL or (dA is None and ring == NULL)
            or (dO_ptr != NULL and PV == NULL)):
        free(P)
        free(PV)
        free(ring)
        free(work)
        free(G)
        raise MemoryError()
    with nogil:
        memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
        memset(&db[0], 0, n * sizeof(floating))
        if T > 0:
            bad = elman_tiled_backward(act, P, &H[0, 0, 0], dH_ptr, dO_ptr, O, PV, fold_dO, dA_ptr,
                                       &dh0[0, 0], &X[0, 0, 0], I, G, ldg, &db[0], ring, work,
                                       _fold_steps(B, n), T, B, n, n_threads)
        for i in range(n):
            for j in range(n):
                dW[i, j] = G[i * ldg + j]
            for j in range(I):
                dU[i, j] = G[i * ldg + n + j]
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
        free(ring)
        free(work)
        free(G)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")
