"""GRU recurrence (PyTorch's cell) forward through time, and its backward pass through time.

    gh = Wh h_{t-1} + bh                          (gate order r, z, n; formed inside the loop)
    r = sigmoid(A_r + gh_r),  z = sigmoid(A_z + gh_z),  n = tanh(A_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}

The caller (fastbptt.cells) has already formed A = X Wx^T + bx for every step in one GEMM, and forms
dWh = dGh^T H[:-1], dbh = sum dGh, dWx = dA^T X, dbx = sum dA in single GEMMs afterwards; only the
sequential recurrence lives here. HN = gh_n is kept from forward because r's gradient needs it.

Layers, as in every kernel module:
  (a) `cdef inline ... noexcept nogil` helpers for one step of a run of consecutive sequences;
  (b) the `def` drivers `forward` / `backward` over typed memoryviews, the whole time loop inside
      one `with nogil:`, no allocation inside it (workspaces are malloc'd before it);
  (c) the Python layer in src/fastbptt validates, allocates outputs with np.empty (np.zeros with
      batch_sizes) and dispatches.
The NumPy twin with the same signatures, the ground truth, is src/fastbptt/reference/gru.py.

Each step makes one stacked recurrent product for all its sequences, (rows, Hn) x (Hn, 3Hn): by
the register tiles of _tile.pxd over Wh packed once per call (a BLAS call would pack it again at
every step), or by the hand-written loops below for a single sequence. All tanh / sigmoid go
through _vmath over the longest contiguous runs the layout allows.

Threads: the sequences of a batch never interact, so with n_threads > 1 the batch is cut into
n_threads blocks of rows and each thread runs the whole (serial) time loop for its block: one
fork/join per call instead of one per step, whose cost exceeds the work of a step at these sizes.

Variable lengths: with batch_sizes (T,), non-increasing (the batch sorted by decreasing length),
step t advances only rows [0, batch_sizes[t]); rows beyond are neither read nor written at that
step, so H, G, HN (forward) and dA, dGh (backward) keep what the caller put there, and the running
gradient of a finished row waits in dh0 until its last step comes round going backward. The active
batch just shrinks: no mask, no copy. With threads, the blocks are cut so that each gets about the
same number of valid steps, and a block stops its forward loop once all its rows are done.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from _blas cimport gemv
from _tile cimport bind_set, cols, gemm_packed, pack, pack_size
from _vmath cimport all_finite, vsigmoid, vtanh_fast
from _blocks cimport active_rows, add_rows, earliest_bad

import numpy as np
from fastbptt import _simd
from fastbptt._kernel_args import block_starts, check_batch_sizes, check_shape as _check

_simd.register(__name__, lambda name: bind_set(name))

# calls of at most this many rows in all (T * B) skip the transposed / packed copy of Wh
cdef Py_ssize_t LEAN_ROWS = 2

# The hand-written path (Wh transposed, contiguous axpy over the gates) beats the register tiles for
# one sequence per block, where a tile row runs latency-bound; from two rows on the tiles win
# (measured on AVX2: up to 2x at Hn=256 B=4, 1.2-1.4x slower than by hand at B=1).


# ---------------------------------------------------------------------------------------------------
# (a) one step for `rows` consecutive sequences (the whole batch or one thread's block)
# ---------------------------------------------------------------------------------------------------

cdef inline void _finish(const floating* A, const floating* h_prev, floating* G, floating* HN,
                         floating* h, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """From G = Wh h_prev + bh (rows, 3n): activated gates into G, gh_n into HN, states into h."""
    cdef Py_ssize_t b, k, m
    cdef floating nk
    cdef floating* gb
    cdef const floating* ab
    for b in range(rows):
        gb = G + b * 3 * n
        ab = A + b * 3 * n
        for k in range(2 * n):
            gb[k] += ab[k]
        memcpy(HN + b * n, gb + 2 * n, n * sizeof(floating))
        vsigmoid(gb, 2 * n)
        # n's pre-activation goes to h's storage so tanh runs once over the whole (rows, n) block
        for k in range(n):
            h[b * n + k] = ab[2 * n + k] + gb[k] * gb[2 * n + k]
    vtanh_fast(h, rows * n)
    for b in range(rows):
        gb = G + b * 3 * n
        for k in range(n):
            m = b * n + k
            nk = h[m]
            gb[2 * n + k] = nk
            h[m] = nk + gb[n + k] * (h_prev[m] - nk)


cdef inline void _step_small(const floating* wt, const floating* bh, const floating* A,
                             const floating* h_prev, floating* G, floating* HN, floating* h,
                             Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """One step for `rows` sequences by hand; wt is Wh transposed (n, 3n): contiguous inner loop."""
    cdef Py_ssize_t b, n3 = 3 * n
    cdef floating* z
    for b in range(rows):
        z = G + b * n3
        add_rows(wt, h_prev + b * n, bh, z, n, n3)
    _finish(A, h_prev, G, HN, h, rows, n)


cdef inline void _backward_rows(const floating* G, const floating* HN, const floating* h_prev,
                                const floating* dh_out, floating* dA, floating* dGh, floating* dh,
                                Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """dA and dGh of one step for `rows` sequences, in one fused pass.

    dh holds dL/dh_t from later steps and leaves holding only its direct path z * dL/dh_t; the
    caller adds dGh @ Wh to make it dL/dh_{t-1}.
    """
    cdef Py_ssize_t b, k, m
    cdef floating r, z, nk, dhk, dan, dar, daz
    # a bare literal 1 becomes the C double 1.0 and would drag float32 arithmetic into double
    cdef floating one = 1
    cdef const floating* gb
    cdef floating* da
    cdef floating* dg
    for b in range(rows):
        gb = G + b * 3 * n
        da = dA + b * 3 * n
        dg = dGh + b * 3 * n
        for k in range(n):
            m = b * n + k
            r = gb[k]
            z = gb[n + k]
            nk = gb[2 * n + k]
            dhk = dh_out[m] + dh[m]
            dan = dhk * (one - z) * (one - nk * nk)
            dar = dan * HN[m] * r * (one - r)
            daz = dhk * (h_prev[m] - nk) * z * (one - z)
            da[k] = dar
            da[n + k] = daz
            da[2 * n + k] = dan
            dg[k] = dar
            dg[n + k] = daz
            dg[2 * n + k] = dan * r
            dh[m] = dhk * z


# ---------------------------------------------------------------------------------------------------
# time loops over one block of `rows` consecutive sequences of a batch of B, serial in t; the
# pointers are set at the block's first row, and step t of a (T, B, k) array starts t * B * k later
# ---------------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward_block(const floating* P, const floating* wt, const floating* bh,
                               const floating* A, floating* H, floating* G, floating* HN,
                               const Py_ssize_t* bs, Py_ssize_t b0, Py_ssize_t T, Py_ssize_t B,
                               Py_ssize_t block_rows, Py_ssize_t n) noexcept nogil:
    """Forward through all T steps: by hand when wt (Wh transposed) is given, else by the register
    tiles over P (Wh^T packed). bs (or NULL): batch_sizes; b0: the block's first batch row.

    Returns the first step with a non-finite state, or -1.
    """
    cdef Py_ssize_t t, rows, s = B * n, s3 = B * 3 * n
    cdef floating* g
    for t in range(T):
        rows = active_rows(bs, t, b0, block_rows)
        if rows == 0:
            # batch_sizes never grows: every row of the block is done
            break
        g = G + t * s3
        if wt != NULL:
            _step_small(wt, bh, A + t * s3, H + t * s, g, HN + t * s, H + (t + 1) * s, rows, n)
        else:
            # g = h_{t-1} @ Wh^T + bh for all rows at once: the three gates in one product
            gemm_packed(rows, 3 * n, n, H + t * s, n, P, bh, NULL, 0, g, 3 * n)
            _finish(A + t * s3, H + t * s, g, HN + t * s, H + (t + 1) * s, rows, n)
        if not all_finite(H + (t + 1) * s, rows * n):
            return t
    return -1


cdef Py_ssize_t _backward_block(const floating* Wh, const floating* P, const floating* H,
                                const floating* G, const floating* HN, const floating* dH,
                                floating* dA, floating* dGh, floating* dh, const Py_ssize_t* bs,
                                Py_ssize_t b0, Py_ssize_t T, Py_ssize_t B, Py_ssize_t block_rows,
                                Py_ssize_t n) noexcept nogil:
    """Backward through all T steps; dh (rows, n) carries dL/dh_t from T down to 0.

    By hand over Wh when P is NULL, else by the register tiles over P (Wh packed). bs (or NULL):
    batch_sizes; a row inactive at step t keeps its dh untouched.

    Returns the first step (counting down) with a non-finite gradient, or -1.
    """
    cdef Py_ssize_t t, b, rows, s = B * n, s3 = B * 3 * n
    cdef floating* dg
    for t in range(T - 1, -1, -1):
        rows = active_rows(bs, t, b0, block_rows)
        if rows == 0:
            continue
        dg = dGh + t * s3
        _backward_rows(G + t * s3, HN + t * s, H + t * s, dH + t * s, dA + t * s3, dg, dh,
                       rows, n)
        # dh_{t-1} = z * dh_t (already in dh) + dGh[t] @ Wh for all rows
        if P == NULL:
            for b in range(rows):
                add_rows(Wh, dg + b * 3 * n, dh + b * n, dh + b * n, 3 * n, n)
        else:
            gemm_packed(rows, n, 3 * n, dg, 3 * n, P, NULL, dh, n, dh, n)
        if not all_finite(dh, rows * n):
            return t
    return -1


cdef inline bint _small(Py_ssize_t rows) noexcept nogil:
    """Whether a block of `rows` sequences takes the hand-written path."""
    return rows == 1


# ---------------------------------------------------------------------------------------------------
# (b) drivers
# ---------------------------------------------------------------------------------------------------

def forward(const floating[:, ::1] Wh,       # IN  (3Hn, Hn) recurrent weights, gate rows r, z, n
            const floating[::1] bh,          # IN  (3Hn,) recurrent bias
            const floating[:, :, ::1] A,     # IN  (T, B, 3Hn) input projections X Wx^T + bx
            const floating[:, ::1] h0,       # IN  (B, Hn) initial state
            floating[:, :, ::1] H,           # OUT (T+1, B, Hn) states, H[0] = h0
            floating[:, :, ::1] G,           # OUT (T, B, 3Hn) activated gates r, z, n
            floating[:, :, ::1] HN,          # OUT (T, B, Hn) Wh_n h_{t-1} + bh_n
            int n_threads=1,
            batch_sizes=None):               # IN  (T,) intp or None: rows advanced at each step
    """Unroll the GRU over all T steps; raise FloatingPointError on a non-finite state."""
    cdef Py_ssize_t n = Wh.shape[1]
    cdef Py_ssize_t T = A.shape[0], B = A.shape[1]
    cdef Py_ssize_t j, k, c, b0, bad = -1
    cdef Py_ssize_t blocks = max(1, min(n_threads, B))
    cdef floating* wt = NULL
    cdef floating* P = NULL
    cdef Py_ssize_t* bad_block
    cdef const Py_ssize_t[::1] bs_view
    cdef const Py_ssize_t* bs = NULL
    cdef const Py_ssize_t[::1] starts
    cdef Py_ssize_t t, r
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (3 * n, n))
    _check("bh", (bh.shape[0],), (3 * n,))
    _check("A", (A.shape[0], A.shape[1], A.shape[2]), (T, B, 3 * n))
    _check("h0", (h0.shape[0], h0.shape[1]), (B, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("G", (G.shape[0], G.shape[1], G.shape[2]), (T, B, 3 * n))
    _check("HN", (HN.shape[0], HN.shape[1], HN.shape[2]), (T, B, n))
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    if B == 0 or n == 0:
        return
    memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
    if T == 0:
        return
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    starts_arr = block_starts(bs_arr, T, B, blocks)
    starts = starts_arr
    cdef const floating* Wp = &Wh[0, 0]
    cdef const floating* bp = &bh[0]
    cdef const floating* Ap = &A[0, 0, 0]
    cdef floating* Hp = &H[0, 0, 0]
    cdef floating* Gp = &G[0, 0, 0]
    cdef floating* HNp = &HN[0, 0, 0]
    if T * B <= LEAN_ROWS and bs == NULL:
        # a few rows in all (one step of generation): the product with Wh as given, where
        # transposing or packing it would cost more than the call's arithmetic
        with nogil:
            for t in range(T):
                for r in range(B):
                    memcpy(Gp + (t * B + r) * 3 * n, bp, 3 * n * sizeof(floating))
                    gemv(False, <int> (3 * n), <int> n, 1, Wp, <int> n, Hp + (t * B + r) * n, 1,
                         Gp + (t * B + r) * 3 * n)
                _finish(Ap + t * B * 3 * n, Hp + t * B * n, Gp + t * B * 3 * n, HNp + t * B * n,
                        Hp + (t + 1) * B * n, B, n)
                if not all_finite(Hp + (t + 1) * B * n, B * n):
                    bad = t
                    break
        if bad >= 0:
            raise FloatingPointError(f"non-finite hidden state at time step {bad}")
        return
    bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
    if bad_block == NULL:
        raise MemoryError()
    # all blocks take the path of the largest
    if _small(np.diff(starts_arr).max()):
        wt = <floating*> malloc(3 * n * n * sizeof(floating))
    else:
        P = <floating*> malloc(pack_size(Wp, n, 3 * n) * sizeof(floating))
    if wt == NULL and P == NULL:
        free(bad_block)
        raise MemoryError()
    with nogil:
        if wt != NULL:
            cols(Wp, n, 3 * n, n, wt, 3 * n)  # wt = Wh^T by register transposes
        else:
            pack(Wp, n, True, n, 3 * n, P)
        if blocks > 1:
            for c in prange(blocks, num_threads=blocks, schedule="static"):
                b0 = starts[c]
                bad_block[c] = _forward_block(P, wt, bp, Ap + b0 * 3 * n, Hp + b0 * n,
                                              Gp + b0 * 3 * n, HNp + b0 * n, bs, b0, T, B,
                                              starts[c + 1] - b0, n)
        else:
            bad_block[0] = _forward_block(P, wt, bp, Ap, Hp, Gp, HNp, bs, 0, T, B, B, n)
        bad = earliest_bad(bad_block, blocks, True)
        free(wt)
        free(P)
        free(bad_block)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden state at time step {bad}")


def backward(const floating[:, ::1] Wh,      # IN  (3Hn, Hn)
             const floating[:, :, ::1] H,    # IN  (T+1, B, Hn) states from forward
             const floating[:, :, ::1] G,    # IN  (T, B, 3Hn) activated gates from forward
             const floating[:, :, ::1] HN,   # IN  (T, B, Hn) Wh_n h_{t-1} + bh_n from forward
             const floating[:, :, ::1] dH,   # IN  (T, B, Hn) loss gradient reaching h_t, t = 1..T
             const floating[:, ::1] dh_T,    # IN  (B, Hn) gradient at h_T from a later chunk
             floating[:, :, ::1] dA,         # OUT (T, B, 3Hn) gradient w.r.t. A
             floating[:, :, ::1] dGh,        # OUT (T, B, 3Hn) gradient w.r.t. Wh h_{t-1} + bh
             floating[:, ::1] dh0,           # OUT (B, Hn) gradient at h0
             int n_threads=1,
             batch_sizes=None):              # IN  (T,) intp or None: rows advanced at each step
    """Backpropagate through time; raise FloatingPointError on a non-finite gradient.

    With batch_sizes, dh_T of a row reaches back to its last valid step, t = length - 1.
    """
    cdef Py_ssize_t T = dH.shape[0], B = dH.shape[1], n = dH.shape[2]
    cdef Py_ssize_t c, b0, bad = -1
    cdef Py_ssize_t blocks = max(1, min(n_threads, B))
    cdef bint small
    cdef floating* P = NULL
    cdef Py_ssize_t* bad_block
    cdef const Py_ssize_t[::1] bs_view
    cdef const Py_ssize_t* bs = NULL
    cdef const Py_ssize_t[::1] starts
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (3 * n, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("G", (G.shape[0], G.shape[1], G.shape[2]), (T, B, 3 * n))
    _check("HN", (HN.shape[0], HN.shape[1], HN.shape[2]), (T, B, n))
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, 3 * n))
    _check("dGh", (dGh.shape[0], dGh.shape[1], dGh.shape[2]), (T, B, 3 * n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    if B == 0 or n == 0:
        return
    # dh0 doubles as the running gradient dL/dh_t, so the loop needs no buffer of its own
    memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
    if T == 0:
        return
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    starts_arr = block_starts(bs_arr, T, B, blocks)
    starts = starts_arr
    small = _small(np.diff(starts_arr).max())
    cdef const floating* Wp = &Wh[0, 0]
    cdef const floating* Hp = &H[0, 0, 0]
    cdef const floating* Gp = &G[0, 0, 0]
    cdef const floating* HNp = &HN[0, 0, 0]
    cdef const floating* dHp = &dH[0, 0, 0]
    cdef floating* dAp = &dA[0, 0, 0]
    cdef floating* dGp = &dGh[0, 0, 0]
    cdef floating* dhp = &dh0[0, 0]
    bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
    if not small:
        P = <floating*> malloc(pack_size(Wp, 3 * n, n) * sizeof(floating))
    if bad_block == NULL or (P == NULL and not small):
        free(bad_block)
        free(P)
        raise MemoryError()
    with nogil:
        if P != NULL:
            pack(Wp, n, False, 3 * n, n, P)
        if blocks > 1:
            for c in prange(blocks, num_threads=blocks, schedule="static"):
                b0 = starts[c]
                bad_block[c] = _backward_block(Wp, P, Hp + b0 * n, Gp + b0 * 3 * n,
                                               HNp + b0 * n, dHp + b0 * n, dAp + b0 * 3 * n,
                                               dGp + b0 * 3 * n, dhp + b0 * n, bs, b0, T, B,
                                               starts[c + 1] - b0, n)
        else:
            bad_block[0] = _backward_block(Wp, P, Hp, Gp, HNp, dHp, dAp, dGp, dhp, bs, 0, T, B, B,
                                           n)
        bad = earliest_bad(bad_block, blocks, False)
        free(P)
        free(bad_block)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")
