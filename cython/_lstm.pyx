"""LSTM recurrence (PyTorch's cell) forward through time, and its backward pass through time.

    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of  A[t] + Wh h_{t-1}     (gate order i, f, g, o)
    c_t = f * c_{t-1} + i * g,    h_t = o * tanh(c_t)

The caller (fastbptt.cells) has already formed A = X Wx^T + b for every step in one GEMM, and forms
dWx = dA^T X, dWh = dA^T H[:-1], db = sum dA in single GEMMs afterwards; only the sequential
recurrence lives here.

Layers, as in every kernel module:
  (a) `cdef inline ... noexcept nogil` helpers for one step of a run of consecutive sequences;
  (b) the `def` drivers `forward` / `backward` over typed memoryviews, the whole time loop inside
      one `with nogil:`, no allocation inside it (workspaces are malloc'd before it);
  (c) the Python layer in src/fastbptt validates, allocates outputs with np.empty (np.zeros with
      batch_sizes) and dispatches.
The NumPy twin with the same signatures, the ground truth, is src/fastbptt/reference/lstm.py.

Each step makes one stacked recurrent product for all its sequences, (rows, Hn) x (Hn, 4Hn): by
the register tiles of _tile.pxd over Wh packed once per call (a BLAS call would pack it again at
every step), or by the hand-written loops below for a single sequence. All tanh / sigmoid go
through _vmath over the longest contiguous runs the layout allows.

Threads: the sequences of a batch never interact, so with n_threads > 1 the batch is cut into
n_threads blocks of rows and each thread runs the whole (serial) time loop for its block: one
fork/join per call instead of one per step, whose cost exceeds the work of a step at these sizes.

Variable lengths: with batch_sizes (T,), non-increasing (the batch sorted by decreasing length),
step t advances only rows [0, batch_sizes[t]); rows beyond are neither read nor written at that
step, so H, C, G (forward) and dA (backward) keep what the caller put there, and the running
gradient of a finished row waits in dh0 / dc0 until its last step comes round going backward. The
active batch just shrinks: no mask, no copy. With threads, the blocks are cut so that each gets
about the same number of valid steps, and a block stops its forward loop once all its rows are done.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from _blas cimport gemv
from _tile cimport bind_set, cols, gemm_packed, pack, pack_size
from _vmath cimport all_finite
from _blocks cimport active_rows, add_rows, earliest_bad, widest
from _fused cimport fold, fold_cap, hand_path, head_grad, head_logits

from fastbptt import _simd
from _packcache cimport cache_give, cache_new, cache_panels, cache_take
from _workarea cimport area_start, big_alloc, lines_up
from fastbptt._kernel_args import WORK, block_starts, check_batch_sizes

include "_argcheck.pxi"

_simd.register(__name__, lambda name: bind_set(name))

# calls of at most this many rows in all (T * B) skip the transposed / packed copies of the weights
cdef Py_ssize_t LEAN_ROWS = 2
# forward_fused takes `packed=`, a slot keeping the packed (Wx | Wh) between calls (see
# _packcache.pxd); fastbptt.cells passes one per cell. backward_fused packs Wh at every call:
# comparing Wh with a kept copy costs what packing it does (no join, no transpose there)
KEEPS_PACKED = True


# ---------------------------------------------------------------------------------------------------
# (a) one step for `rows` consecutive sequences (the whole batch or one thread's block)
# ---------------------------------------------------------------------------------------------------

cdef extern from "_dispatch.h" nogil:
    long fb_l2_bytes() noexcept
    void fb_lstm_fwd_d(double* z, const double* cp, double* c, double* h, Py_ssize_t rows,
                       Py_ssize_t n, double* gout) noexcept
    void fb_lstm_fwd_f(float* z, const float* cp, float* c, float* h, Py_ssize_t rows,
                       Py_ssize_t n, float* gout) noexcept
    void fb_lstm_bwd_d(const double* G, const double* cp, const double* c, const double* dho,
                       const double* dhn, double* dc, double* da, Py_ssize_t rows,
                       Py_ssize_t n) noexcept
    void fb_lstm_bwd_f(const float* G, const float* cp, const float* c, const float* dho,
                       const float* dhn, float* dc, float* da, Py_ssize_t rows,
                       Py_ssize_t n) noexcept


cdef inline void _cell(floating* G, const floating* c_prev, floating* c, floating* h,
                       Py_ssize_t rows, Py_ssize_t n, floating* gout=NULL) noexcept nogil:
    """Pre-activations G (rows, 4n) -> activated gates in place; c = f c_prev + i g and
    h = o tanh(c), two passes per row (cython/_lstm_pointwise.h). With gout, the gates are also
    written there (streamed past the caches when it is aligned)."""
    if floating is float:
        fb_lstm_fwd_f(G, c_prev, c, h, rows, n, gout)
    else:
        fb_lstm_fwd_d(G, c_prev, c, h, rows, n, gout)


cdef inline void _step_small(const floating* wt, const floating* A, const floating* h_prev,
                             const floating* c_prev, floating* G, floating* h, floating* c,
                             Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """One step for `rows` sequences by hand: G = act(A + h_prev Wh^T), then c and h.

    wt is Wh transposed, (n, 4n), so the inner loop runs contiguous over the 4n gates.
    """
    cdef Py_ssize_t b, n4 = 4 * n
    for b in range(rows):
        add_rows(wt, h_prev + b * n, A + b * n4, G + b * n4, n, n4)
    _cell(G, c_prev, c, h, rows, n)


cdef inline void _backward_rows(const floating* G, const floating* c_prev, const floating* c,
                                const floating* dh_out, floating* dA, const floating* dh,
                                floating* dc, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """Gate gradients dA (rows, 4n) of one step for `rows` sequences, one fused pass per row.

    dh holds dL/dh_t from later steps (read here; the caller then overwrites it with dL/dh_{t-1});
    dc holds dL/dc_t and leaves as dL/dc_{t-1}.
    """
    if floating is float:
        fb_lstm_bwd_f(G, c_prev, c, dh_out, dh, dc, dA, rows, n)
    else:
        fb_lstm_bwd_d(G, c_prev, c, dh_out, dh, dc, dA, rows, n)


cdef inline void _matvec_small(const floating* Wh, const floating* da, floating* dh,
                               Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """dh (n) = da (m) @ Wh (m, n) for one sequence."""
    memset(dh, 0, n * sizeof(floating))
    add_rows(Wh, da, dh, dh, m, n)


# ---------------------------------------------------------------------------------------------------
# time loops over one block of `rows` consecutive sequences of a batch of B, serial in t; the
# pointers are set at the block's first row, and step t of a (T, B, k) array starts t * B * k later
# ---------------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward_block(const floating* P, const floating* wt, const floating* A,
                               const floating* X, floating* Z, const floating* wxt,
                               const floating* bias, Py_ssize_t I, floating* H, floating* C,
                               floating* G, floating* out, Py_ssize_t O, const floating* vt,
                               const floating* cv, const Py_ssize_t* bs, Py_ssize_t b0,
                               Py_ssize_t T, Py_ssize_t B, Py_ssize_t block_rows,
                               Py_ssize_t n) noexcept nogil:
    """Forward through all T steps: by hand when wt (Wh transposed) is given, else by the register
    tiles over P. The pre-activations come from A (P: Wh^T packed), or when A is NULL are formed
    here as bias + x_t Wx^T: by hand from wxt (Wx transposed), or on the tiles in the same product
    as the recurrent one, bias + (x_t | h_{t-1}) (Wx | Wh)^T, with P that packed and Z a scratch
    for the joined rows (rows, I + n) and, after them on a 64-byte boundary, room for one step's
    gates (rows, 4n), used when the call's gates go to G past the caches. bs (or NULL):
    batch_sizes; b0: the block's first
    batch row.
    With out (else NULL), the output layer's logits out_t = h_t V^T + cv (O of them per row) are
    formed too while h_t is in cache: vt is V^T (n, O) on the hand path, V^T packed on the tiles.

    Returns the first step with a non-finite state, or -1.
    """
    cdef Py_ssize_t t, b, rows, m, s = B * n, s4 = B * 4 * n, sx = B * I, so = B * O
    cdef floating* g
    cdef floating* z
    # the product's hot scratch for the gates, after the joined rows, on a 64-byte boundary, when
    # the call's gates go to G past the caches: past 8 L2s of them, which the backward pass would
    # find gone from the caches anyway (fewer are written in place, and read back from cache)
    cdef floating* zg = NULL
    if Z != NULL and T * s4 * <Py_ssize_t> sizeof(floating) > 8 * fb_l2_bytes():
        zg = <floating*> ((<uintptr_t> (Z + block_rows * (I + n)) + 63) & ~(<uintptr_t> 63))
    for t in range(T):
        rows = active_rows(bs, t, b0, block_rows)
        if rows == 0:
            # batch_sizes never grows: every row of the block is done
            break
        m = rows * n
        g = G + t * s4
        if wt != NULL:
            if A != NULL:
                _step_small(wt, A + t * s4, H + t * s, C + t * s, g, H + (t + 1) * s,
                            C + (t + 1) * s, rows, n)
            else:
                for b in range(rows):
                    add_rows(wxt, X + t * sx + b * I, bias, g + b * 4 * n, I, 4 * n)
                _step_small(wt, g, H + t * s, C + t * s, g, H + (t + 1) * s, C + (t + 1) * s,
                            rows, n)
        else:
            # g = A[t] + h_{t-1} @ Wh^T for all rows at once: the four gates in one product
            if A != NULL:
                gemm_packed(rows, 4 * n, n, H + t * s, n, P, NULL, A + t * s4, 4 * n, g, 4 * n)
                _cell(g, C + t * s, C + (t + 1) * s, H + (t + 1) * s, rows, n)
            else:
                # one product over K = I + n: a second pass over g for the inputs' share would
                # read and write every gate again
                for b in range(rows):
                    memcpy(Z + b * (I + n), X + t * sx + b * I, I * sizeof(floating))
                    memcpy(Z + b * (I + n) + I, H + t * s + b * n, n * sizeof(floating))
                # with zg, the gates go on to G past the caches (read again only backward) from
                # zg, which the next step's product writes again while it is still in cache
                z = g if zg == NULL else zg
                gemm_packed(rows, 4 * n, I + n, Z, I + n, P, bias, NULL, 0, z, 4 * n)
                _cell(z, C + t * s, C + (t + 1) * s, H + (t + 1) * s, rows, n,
                      NULL if zg == NULL else g)
        if not (all_finite(C + (t + 1) * s, m) and all_finite(H + (t + 1) * s, m)):
            return t
        if out != NULL:
            head_logits(H + (t + 1) * s, rows, n, vt, cv, out + t * so, O, wt != NULL)
    return -1


cdef Py_ssize_t _backward_block(const floating* Wh, const floating* P, const floating* C,
                                const floating* G, const floating* dH, floating* dA, floating* dh,
                                floating* dc, const floating* X, const floating* H,
                                Py_ssize_t I, floating* ring_z, floating* ring_d, Py_ssize_t cap,
                                floating* Gt, floating* panels, const floating* dO, Py_ssize_t O,
                                const floating* V, const floating* PV, floating* dV,
                                const Py_ssize_t* bs,
                                Py_ssize_t b0, Py_ssize_t T, Py_ssize_t B, Py_ssize_t block_rows,
                                Py_ssize_t n) noexcept nogil:
    """Backward through all T steps; dh, dc (rows, n) carry dL/dh_t, dL/dc_t from T down to 0.

    By hand over Wh when P is NULL, else by the register tiles over P (Wh packed). bs (or NULL):
    batch_sizes; a row inactive at step t keeps its dh, dc untouched.
    With ring_d, the weight gradients are folded in as well: each step's gate gradients go to
    ring_d (cap, 4n) as rows and its (x_t, h_{t-1}, 1) to ring_z (I + n + 1, cap) as columns, and
    whenever the rings are full they are folded into Gt (I + n + 1, 4n), i.e. (dWx | dWh | db)^T,
    while still in cache; dA (or NULL) then only receives a copy. Without ring_d, the gate
    gradients are written to dA.

    With dO (else NULL), the loss gradient at h_t is dO_t V, formed here (dO (T, B, O) at the
    block's first row, V (O, n), PV: V packed) instead of read from dH; with dV (else NULL) too,
    dV (O, n) += dO_t^T h_t, the output layer's weight gradient, while h_t is in cache.

    Returns the first step (counting down) with a non-finite gradient, or -1.
    """
    cdef Py_ssize_t t, b, rows, m, s = B * n, s4 = B * 4 * n, sx = B * I, so = B * O
    cdef const floating* dho
    cdef Py_ssize_t kz = I + n + 1, fill = 0
    cdef bint folded = False
    cdef floating* da
    for t in range(T - 1, -1, -1):
        rows = active_rows(bs, t, b0, block_rows)
        if rows == 0:
            continue
        m = rows * n
        if ring_d != NULL:
            if fill + rows > cap:
                fold(ring_z, cap, ring_d, fill, kz, 4 * n, Gt, panels, folded)
                folded = True
                fill = 0
            da = ring_d + fill * 4 * n
            # the ring's columns fill..fill+rows: x_t, then h_{t-1} (row-contiguous per unit)
            cols(X + t * sx, I, rows, I, ring_z + fill, cap)
            cols(H + t * s, n, rows, n, ring_z + I * cap + fill, cap)
            fill += rows
        else:
            da = dA + t * s4
        if dO != NULL:
            head_grad(dO + t * so, O, V, PV, H + (t + 1) * s, dV, dh, rows, n)
            dho = NULL
        else:
            dho = dH + t * s
        _backward_rows(G + t * s4, C + t * s, C + (t + 1) * s, dho, da, dh, dc, rows, n)
        if ring_d != NULL and dA != NULL:
            memcpy(dA + t * s4, da, rows * 4 * n * sizeof(floating))
        # dh_{t-1} = dA[t] @ Wh for all rows (the cell path went into dc above)
        if P == NULL:
            for b in range(rows):
                _matvec_small(Wh, da + b * 4 * n, dh + b * n, 4 * n, n)
        else:
            gemm_packed(rows, n, 4 * n, da, 4 * n, P, NULL, NULL, 0, dh, n)
        if not (all_finite(dh, m) and all_finite(dc, m)):
            return t
    if fill > 0:
        fold(ring_z, cap, ring_d, fill, kz, 4 * n, Gt, panels, folded)
    elif ring_d != NULL and not folded:
        # no row of the block ran: its share of the sums is zero
        memset(Gt, 0, kz * 4 * n * sizeof(floating))
    return -1


# ---------------------------------------------------------------------------------------------------
# (b) drivers
# ---------------------------------------------------------------------------------------------------

def forward(const floating[:, ::1] Wh,       # IN  (4Hn, Hn) recurrent weights, gate rows i, f, g, o
            const floating[:, :, ::1] A,     # IN  (T, B, 4Hn) input projections X Wx^T + b
            const floating[:, ::1] h0,       # IN  (B, Hn) initial hidden state
            const floating[:, ::1] c0,       # IN  (B, Hn) initial cell state
            floating[:, :, ::1] H,           # OUT (T+1, B, Hn) hidden states, H[0] = h0
            floating[:, :, ::1] C,           # OUT (T+1, B, Hn) cell states, C[0] = c0
            floating[:, :, ::1] G,           # OUT (T, B, 4Hn) activated gates i, f, g, o
            int n_threads=1,
            batch_sizes=None):               # IN  (T,) intp or None: rows advanced at each step
    """Unroll the LSTM over all T steps; raise FloatingPointError on a non-finite state."""
    cdef Py_ssize_t n = Wh.shape[1]
    cdef Py_ssize_t T = A.shape[0], B = A.shape[1]
    cdef Py_ssize_t c, b0, bad = -1
    cdef Py_ssize_t blocks = max(1, min(n_threads, B))
    cdef floating* wt = NULL
    cdef floating* P = NULL
    cdef Py_ssize_t* bad_block
    cdef const Py_ssize_t[::1] bs_view
    cdef const Py_ssize_t* bs = NULL
    cdef const Py_ssize_t[::1] starts
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (4 * n, n))
    _check("A", (A.shape[0], A.shape[1], A.shape[2]), (T, B, 4 * n))
    _check("h0", (h0.shape[0], h0.shape[1]), (B, n))
    _check("c0", (c0.shape[0], c0.shape[1]), (B, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("C", (C.shape[0], C.shape[1], C.shape[2]), (T + 1, B, n))
    _check("G", (G.shape[0], G.shape[1], G.shape[2]), (T, B, 4 * n))
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    if B == 0 or n == 0:
        return
    memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
    memcpy(&C[0, 0, 0], &c0[0, 0], B * n * sizeof(floating))
    if T == 0:
        return
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    starts_arr = block_starts(bs_arr, T, B, blocks)
    starts = starts_arr
    cdef const floating* Wp = &Wh[0, 0]
    cdef const floating* Ap = &A[0, 0, 0]
    cdef floating* Hp = &H[0, 0, 0]
    cdef floating* Cp = &C[0, 0, 0]
    cdef floating* Gp = &G[0, 0, 0]
    bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
    if bad_block == NULL:
        raise MemoryError()
    # all blocks take the path of the largest
    if hand_path(widest(starts)):
        wt = <floating*> malloc(4 * n * n * sizeof(floating))
    else:
        P = <floating*> big_alloc(pack_size(Wp, n, 4 * n) * sizeof(floating))
    if wt == NULL and P == NULL:
        free(bad_block)
        raise MemoryError()
    with nogil:
        if wt != NULL:
            cols(Wp, n, 4 * n, n, wt, 4 * n)  # wt = Wh^T
        else:
            pack(Wp, n, True, n, 4 * n, P)
        if blocks > 1:
            for c in prange(blocks, num_threads=blocks, schedule="static"):
                b0 = starts[c]
                bad_block[c] = _forward_block(P, wt, Ap + b0 * 4 * n, NULL, NULL, NULL, NULL, 0,
                                              Hp + b0 * n, Cp + b0 * n, Gp + b0 * 4 * n, NULL, 0,
                                              NULL, NULL, bs, b0, T, B, starts[c + 1] - b0, n)
        else:
            bad_block[0] = _forward_block(P, wt, Ap, NULL, NULL, NULL, NULL, 0, Hp, Cp, Gp, NULL, 0,
                                          NULL, NULL, bs, 0, T, B, B, n)
        bad = earliest_bad(bad_block, blocks, True)
        free(wt)
        free(P)
        free(bad_block)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden or cell state at time step {bad}")


def backward(const floating[:, ::1] Wh,      # IN  (4Hn, Hn)
             const floating[:, :, ::1] H,    # IN  (T+1, B, Hn) states (shape-checked; unused here)
             const floating[:, :, ::1] C,    # IN  (T+1, B, Hn) cell states from forward
             const floating[:, :, ::1] G,    # IN  (T, B, 4Hn) activated gates from forward
             const floating[:, :, ::1] dH,   # IN  (T, B, Hn) loss gradient reaching h_t, t = 1..T
             const floating[:, ::1] dh_T,    # IN  (B, Hn) gradient at h_T from a later chunk
             const floating[:, ::1] dc_T,    # IN  (B, Hn) gradient at c_T from a later chunk
             floating[:, :, ::1] dA,         # OUT (T, B, 4Hn) gradient at the gate pre-activations
             floating[:, ::1] dh0,           # OUT (B, Hn) gradient at h0
             floating[:, ::1] dc0,           # OUT (B, Hn) gradient at c0
             int n_threads=1,
             batch_sizes=None):              # IN  (T,) intp or None: rows advanced at each step
    """Backpropagate through time; raise FloatingPointError on a non-finite gradient.

    With batch_sizes, dh_T / dc_T of a row reach back to its last valid step, t = length - 1.
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
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (4 * n, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("C", (C.shape[0], C.shape[1], C.shape[2]), (T + 1, B, n))
    _check("G", (G.shape[0], G.shape[1], G.shape[2]), (T, B, 4 * n))
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    _check("dc_T", (dc_T.shape[0], dc_T.shape[1]), (B, n))
    _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, 4 * n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    _check("dc0", (dc0.shape[0], dc0.shape[1]), (B, n))
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    if B == 0 or n == 0:
        return
    # dh0 and dc0 double as the running gradients dL/dh_t and dL/dc_t
    memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
    memcpy(&dc0[0, 0], &dc_T[0, 0], B * n * sizeof(floating))
    if T == 0:
        return
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    starts_arr = block_starts(bs_arr, T, B, blocks)
    starts = starts_arr
    small = hand_path(widest(starts))
    cdef const floating* Wp = &Wh[0, 0]
    cdef const floating* Cp = &C[0, 0, 0]
    cdef const floating* Gp = &G[0, 0, 0]
    cdef const floating* dHp = &dH[0, 0, 0]
    cdef floating* dAp = &dA[0, 0, 0]
    cdef floating* dhp = &dh0[0, 0]
    cdef floating* dcp = &dc0[0, 0]
    bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
    if not small:
        P = <floating*> big_alloc(pack_size(Wp, 4 * n, n) * sizeof(floating))
    if bad_block == NULL or (P == NULL and not small):
        free(bad_block)
        free(P)
        raise MemoryError()
    with nogil:
        if P != NULL:
            pack(Wp, n, False, 4 * n, n, P)
        if blocks > 1:
            for c in prange(blocks, num_threads=blocks, schedule="static"):
                b0 = starts[c]
                bad_block[c] = _backward_block(Wp, P, Cp + b0 * n, Gp + b0 * 4 * n,
                                               dHp + b0 * n, dAp + b0 * 4 * n, dhp + b0 * n,
                                               dcp + b0 * n, NULL, NULL, 0, NULL,
                                               NULL, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL,
                                               bs, b0, T, B,
                                               starts[c + 1] - b0, n)
        else:
            bad_block[0] = _backward_block(Wp, P, Cp, Gp, dHp, dAp, dhp, dcp, NULL, NULL, 0,
                                           NULL, NULL, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL,
                                           bs, 0, T, B, B, n)
        bad = earliest_bad(bad_block, blocks, False)
        free(P)
        free(bad_block)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")


# ---------------------------------------------------------------------------------------------------
# fused entries: the input projection and the weight gradients inside the time loops
# ---------------------------------------------------------------------------------------------------

def forward_fused(const floating[:, ::1] Wx,      # IN  (4Hn, I) input weights, gate rows i, f, g, o
                  const floating[::1] b,          # IN  (4Hn,) bias
                  const floating[:, ::1] Wh,      # IN  (4Hn, Hn) recurrent weights
                  const floating[:, :, ::1] X,    # IN  (T, B, I) inputs
                  const floating[:, ::1] h0,      # IN  (B, Hn) initial hidden state
                  const floating[:, ::1] c0,      # IN  (B, Hn) initial cell state
                  floating[:, :, ::1] H,          # OUT (T+1, B, Hn) hidden states, H[0] = h0
                  floating[:, :, ::1] C,          # OUT (T+1, B, Hn) cell states, C[0] = c0
                  floating[:, :, ::1] G,          # OUT (T, B, 4Hn) activated gates i, f, g, o
                  int n_threads=1,
                  batch_sizes=None,               # IN  (T,) intp or None: rows advanced at step t
                  const floating[:, ::1] V=None,  # IN  (O, Hn) output layer weights, or None
                  const floating[::1] c=None,     # IN  (O,) output layer bias, with V
                  floating[:, :, ::1] out=None,   # OUT (T, B, O) logits h_t V^T + c, with V
                  packed=None):                   # IN/OUT slot of packed (Wx | Wh), kept between calls
    """forward() with the pre-activations X Wx^T + b formed step by step inside the time loop, so
    no (T, B, 4Hn) array of them is written and read back; raise FloatingPointError on a
    non-finite state. With V, c and out, the output layer's logits are formed in the same loop
    (out[t] from h_{t+1} = H[t + 1]; with batch_sizes at the valid rows only). With `packed` (a
    list the caller keeps, empty at first), the packed (Wx | Wh) of the last call is reused while
    Wx and Wh hold the same bytes (_packcache.pxd)."""
    cdef Py_ssize_t n = Wh.shape[1], I = X.shape[2]
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1]
    cdef Py_ssize_t k, blk, b0, bad = -1, O = 0
    cdef Py_ssize_t blocks = max(1, min(n_threads, B))
    cdef floating* wt = NULL
    cdef floating* wxt = NULL
    cdef floating* vt = NULL
    cdef floating* P = NULL
    cdef floating* Z = NULL
    cdef floating* wcat = NULL
    cdef Py_ssize_t* bad_block
    cdef const Py_ssize_t[::1] bs_view
    cdef const Py_ssize_t* bs = NULL
    cdef const Py_ssize_t[::1] starts
    cdef Py_ssize_t t, r
    cdef floating* g
    kept = fresh = None
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (4 * n, n))
    _check("Wx", (Wx.shape[0], Wx.shape[1]), (4 * n, I))
    _check("b", (b.shape[0],), (4 * n,))
    _check("X", (X.shape[0], X.shape[1], X.shape[2]), (T, B, I))
    _check("h0", (h0.shape[0], h0.shape[1]), (B, n))
    _check("c0", (c0.shape[0], c0.shape[1]), (B, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("C", (C.shape[0], C.shape[1], C.shape[2]), (T + 1, B, n))
    _check("G", (G.shape[0], G.shape[1], G.shape[2]), (T, B, 4 * n))
    if (V is None) != (c is None) or (V is None) != (out is None):
        raise ValueError("the output layer needs V, c and out together")
    if V is not None:
        O = V.shape[0]
        _check("V", (V.shape[0], V.shape[1]), (O, n))
        _check("c", (c.shape[0],), (O,))
        _check("out", (out.shape[0], out.shape[1], out.shape[2]), (T, B, O))
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    if B == 0 or n == 0:
        if V is not None and B > 0:
            out[...] = c  # no units: the logits are the bias
        return
    memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
    memcpy(&C[0, 0, 0], &c0[0, 0], B * n * sizeof(floating))
    if T == 0:
        return
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    starts_arr = block_starts(bs_arr, T, B, blocks)
    starts = starts_arr
    cdef floating* outp = &out[0, 0, 0] if V is not None and O > 0 else NULL
    cdef const floating* Vp = &V[0, 0] if outp != NULL else NULL
    cdef const floating* cp = &c[0] if outp != NULL else NULL
    cdef const floating* Wp = &Wh[0, 0]
    # an empty input (I = 0) has no element to point at; nothing reads it then
    cdef const floating* Wxp = &Wx[0, 0] if I > 0 else NULL
    cdef const floating* Xp = &X[0, 0, 0] if I > 0 else &b[0]
    cdef const floating* bp = &b[0]
    cdef floating* Hp = &H[0, 0, 0]
    cdef floating* Cp = &C[0, 0, 0]
    cdef floating* Gp = &G[0, 0, 0]
    if T * B <= LEAN_ROWS and bs == NULL:
        # a few rows in all (one step of generation): products with the weights as given, where
        # transposing or packing them would cost more than the call's arithmetic
        with nogil:
            for t in range(T):
                for r in range(B):
                    g = Gp + (t * B + r) * 4 * n
                    memcpy(g, bp, 4 * n * sizeof(floating))
                    if I > 0:
                        gemv(False, <int> (4 * n), <int> I, 1, Wxp, <int> I, Xp + (t * B + r) * I, 1, g)
                    gemv(False, <int> (4 * n), <int> n, 1, Wp, <int> n, Hp + (t * B + r) * n, 1, g)
                _cell(Gp + t * B * 4 * n, Cp + t * B * n, Cp + (t + 1) * B * n, Hp + (t + 1) * B * n,
                      B, n)
                if not (all_finite(Cp + (t + 1) * B * n, B * n)
                        and all_finite(Hp + (t + 1) * B * n, B * n)):
                    bad = t
                    break
                for r in range(B if outp != NULL else 0):
                    memcpy(outp + (t * B + r) * O, cp, O * sizeof(floating))
                    gemv(False, <int> O, <int> n, 1, Vp, <int> n, Hp + ((t + 1) * B + r) * n, 1,
                         outp + (t * B + r) * O)
        if bad >= 0:
            raise FloatingPointError(f"non-finite hidden or cell state at time step {bad}")
        return
    bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
    if bad_block == NULL:
        raise MemoryError()
    if hand_path(widest(starts)):
        wt = <floating*> malloc(4 * n * n * sizeof(floating))
        wxt = <floating*> malloc((4 * n * I + 1) * sizeof(floating))
        vt = <floating*> malloc((n * O + 1) * sizeof(floating))
    else:
        # (Wx | Wh) joined, packed transposed for the one product per step
        key = ("forward", _simd.current(), sizeof(floating), I, n)
        kept = cache_take(packed, key, Wxp, 4 * n * I * sizeof(floating), Wp,
                          4 * n * n * sizeof(floating))
        if kept is None and packed is not None:
            fresh = cache_new(key, Wxp, 4 * n * I * sizeof(floating), Wp,
                              4 * n * n * sizeof(floating),
                              pack_size(Wp, I + n, 4 * n) * sizeof(floating))
            P = <floating*> cache_panels(fresh)
        elif kept is not None:
            P = <floating*> cache_panels(kept)
        else:
            P = <floating*> big_alloc(pack_size(Wp, I + n, 4 * n) * sizeof(floating))
        if kept is None:
            wcat = <floating*> malloc(4 * n * (I + n) * sizeof(floating))
        Z = <floating*> malloc((B * (I + 5 * n) + 16 * blocks) * sizeof(floating))
        vt = <floating*> malloc((pack_size(Wp, n, O) + 1) * sizeof(floating))
    if vt == NULL or ((wt == NULL or wxt == NULL) and (
            P == NULL or Z == NULL or (wcat == NULL and kept is None))):
        free(bad_block)
        free(wt)
        free(wxt)
        free(vt)
        if packed is None:
            free(P)
        free(Z)
        free(wcat)
        raise MemoryError()
    with nogil:
        if wt != NULL:
            # Wh^T, Wx^T, V^T by register transposes: element by element, every write is strided
            cols(Wp, n, 4 * n, n, wt, 4 * n)
            cols(Wxp, I, 4 * n, I, wxt, 4 * n)
            if outp != NULL:
                cols(Vp, n, O, n, vt, O)
        else:
            if wcat != NULL:
                for k in range(4 * n):
                    if I > 0:
                        memcpy(wcat + k * (I + n), Wxp + k * I, I * sizeof(floating))
                    memcpy(wcat + k * (I + n) + I, Wp + k * n, n * sizeof(floating))
                pack(wcat, I + n, True, I + n, 4 * n, P)
                free(wcat)
                wcat = NULL
            if outp != NULL:
                pack(Vp, n, True, n, O, vt)
        if blocks > 1:
            for blk in prange(blocks, num_threads=blocks, schedule="static"):
                b0 = starts[blk]
                bad_block[blk] = _forward_block(
                    P, wt, NULL, Xp + b0 * I, Z + b0 * (I + 5 * n) + 16 * blk if Z != NULL else NULL,
                    wxt, bp, I,
                    Hp + b0 * n, Cp + b0 * n,
                    Gp + b0 * 4 * n, outp + b0 * O if outp != NULL else NULL, O, vt, cp, bs, b0,
                    T, B, starts[blk + 1] - b0, n)
        else:
            bad_block[0] = _forward_block(P, wt, NULL, Xp, Z, wxt, bp, I, Hp, Cp, Gp, outp, O, vt,
                                          cp, bs, 0, T, B, B, n)
        bad = earliest_bad(bad_block, blocks, True)
        free(wt)
        free(wxt)
        free(vt)
        if packed is None:
            free(P)
        free(Z)
        free(bad_block)
    if P != NULL:
        cache_give(packed, kept if kept is not None else fresh)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden or cell state at time step {bad}")


def backward_fused(const floating[:, ::1] Wh,      # IN  (4Hn, Hn)
                   const floating[:, :, ::1] X,    # IN  (T, B, I) inputs
                   const floating[:, :, ::1] H,    # IN  (T+1, B, Hn) hidden states from forward
                   const floating[:, :, ::1] C,    # IN  (T+1, B, Hn) cell states from forward
                   const floating[:, :, ::1] G,    # IN  (T, B, 4Hn) activated gates from forward
                   const floating[:, :, ::1] dH,   # IN  (T, B, Hn) loss gradient reaching h_t
                   const floating[:, ::1] dh_T,    # IN  (B, Hn) gradient at h_T from a later chunk
                   const floating[:, ::1] dc_T,    # IN  (B, Hn) gradient at c_T from a later chunk
                   floating[:, ::1] dh0,           # OUT (B, Hn) gradient at h0
                   floating[:, ::1] dc0,           # OUT (B, Hn) gradient at c0
                   floating[:, ::1] dWx,           # OUT (4Hn, I) sum_t dA_t^T x_t
                   floating[:, ::1] dWh,           # OUT (4Hn, Hn) sum_t dA_t^T h_{t-1}
                   floating[::1] db,               # OUT (4Hn,) sum_t of dA_t's rows
                   int n_threads=1,
                   batch_sizes=None,               # IN  (T,) intp or None: rows advanced at step t
                   floating[:, :, ::1] dA=None,    # OUT (T, B, 4Hn) or None: gate gradients
                   const floating[:, :, ::1] dO=None,  # IN (T, B, O) or None: gradient at the logits
                   const floating[:, ::1] V=None,      # IN (O, Hn) the head's weights, with dO
                   floating[:, ::1] dV=None):          # OUT (O, Hn) sum_t dO_t^T h_t, or None
    """backward() with the weight gradients folded in while each few steps of gate gradients are
    still in cache, so no (T, B, 4Hn) array of them is needed (dA, for the gradient at the inputs,
    is filled only when given; with batch_sizes only at the valid rows). Sums over the valid steps
    only; raise FloatingPointError on a non-finite gradient.

    The loss gradient at the states comes as dH, or (dH None) as dO and V, meaning dH = dO @ V:
    each step forms its rows of dO_t V inside the loop, so no (T, B, Hn) array is built. With dV
    as well, the output layer's weight gradient sum_t dO_t^T h_t is formed in the same loop."""
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1], n = Wh.shape[1], I = X.shape[2]
    cdef Py_ssize_t c, b0, j, bad = -1, n4 = 4 * n, kz = I + n + 1
    cdef Py_ssize_t blocks = max(1, min(n_threads, B))
    cdef Py_ssize_t cap, most, per_block
    cdef bint small
    cdef floating* P = NULL
    cdef floating* space
    cdef floating* Gt
    cdef floating* part
    cdef Py_ssize_t* bad_block
    cdef const Py_ssize_t[::1] bs_view
    cdef const Py_ssize_t* bs = NULL
    cdef const Py_ssize_t[::1] starts
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (n4, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("C", (C.shape[0], C.shape[1], C.shape[2]), (T + 1, B, n))
    _check("G", (G.shape[0], G.shape[1], G.shape[2]), (T, B, n4))
    cdef Py_ssize_t O = 0
    if (dH is None) == (dO is None) or (dO is None) != (V is None):
        raise ValueError("give the loss gradient as dH, or as dO and V (dH = dO @ V), not both")
    if dO is not None:
        O = V.shape[0]
        _check("V", (V.shape[0], V.shape[1]), (O, n))
        _check("dO", (dO.shape[0], dO.shape[1], dO.shape[2]), (T, B, O))
        if dV is not None:
            _check("dV", (dV.shape[0], dV.shape[1]), (O, n))
            dV[...] = 0
    elif dV is not None:
        raise ValueError("dV needs dO and V")
    else:
        _check("dH", (dH.shape[0], dH.shape[1], dH.shape[2]), (T, B, n))
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    _check("dc_T", (dc_T.shape[0], dc_T.shape[1]), (B, n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    _check("dc0", (dc0.shape[0], dc0.shape[1]), (B, n))
    _check("dWx", (dWx.shape[0], dWx.shape[1]), (n4, I))
    _check("dWh", (dWh.shape[0], dWh.shape[1]), (n4, n))
    _check("db", (db.shape[0],), (n4,))
    if dA is not None:
        _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, n4))
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    if n == 0:
        return
    if B == 0 or T == 0:
        # no step: zero gradients (a run writes every entry at its end)
        dWx[...] = 0
        dWh[...] = 0
        db[...] = 0
    if B == 0:
        return
    memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
    memcpy(&dc0[0, 0], &dc_T[0, 0], B * n * sizeof(floating))
    if T == 0:
        return
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    starts_arr = block_starts(bs_arr, T, B, blocks)
    starts = starts_arr
    most = widest(starts)
    small = hand_path(most)
    cap = fold_cap(most)
    cdef const floating* Wp = &Wh[0, 0]
    cdef const floating* Xp = &X[0, 0, 0] if I > 0 else &db[0]
    cdef const floating* Hp = &H[0, 0, 0]
    cdef const floating* Cp = &C[0, 0, 0]
    cdef const floating* Gp = &G[0, 0, 0]
    cdef const floating* dHp = &dH[0, 0, 0] if dO is None else NULL
    cdef const floating* dOp = &dO[0, 0, 0] if dO is not None and O > 0 else NULL
    cdef const floating* Vp = &V[0, 0] if dOp != NULL else NULL
    cdef floating* PV = NULL
    cdef floating* zeros = NULL
    cdef floating* dAp = &dA[0, 0, 0] if dA is not None else NULL
    cdef floating* dhp = &dh0[0, 0]
    cdef floating* dcp = &dc0[0, 0]
    # per block: its gradients Gt (I + n + 1, 4n), ring_z (I + n + 1, cap) whose last row is all
    # ones, ring_d (cap, 4n) and the packed panels of ring_d
    cdef Py_ssize_t o_z = kz * n4, o_d = o_z + kz * cap, o_p = o_d + cap * n4
    cdef Py_ssize_t o_v = o_p + pack_size(Wp, cap, n4)
    cdef bint want_dv = dV is not None and O > 0
    # each block's space and Wh's panels start on a cache line
    per_block = lines_up(o_v + (O * n if want_dv else 0), sizeof(floating))
    cdef Py_ssize_t o_wh = blocks * per_block
    area = WORK.take((o_wh + (0 if small else pack_size(Wp, n4, n))) * sizeof(floating))
    space = <floating*> area_start(area)
    if not small:
        P = space + o_wh
    bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
    if dO is not None and dOp == NULL:
        # no output unit (O = 0): no loss gradient reaches the states
        zeros = <floating*> calloc(T * B * n, sizeof(floating))
        dHp = zeros
    if dOp != NULL and not small:
        PV = <floating*> malloc(pack_size(Wp, O, n) * sizeof(floating))
    if (bad_block == NULL or (dO is not None and dOp == NULL and zeros == NULL)
            or (dOp != NULL and not small and PV == NULL)):
        free(bad_block)
        free(PV)
        free(zeros)
        raise MemoryError()
    with nogil:
        if P != NULL:
            pack(Wp, n, False, n4, n, P)
        if PV != NULL:
            pack(Vp, n, False, O, n, PV)
        for c in range(blocks):
            # only dV's sums start from zero: the first fold writes Gt, and the rings and panels
            # are written before they are read
            if want_dv:
                memset(space + c * per_block + o_v, 0, O * n * sizeof(floating))
            for j in range(cap):
                space[c * per_block + o_z + (kz - 1) * cap + j] = 1
        if blocks > 1:
            for c in prange(blocks, num_threads=blocks, schedule="static"):
                b0 = starts[c]
                Gt = space + c * per_block
                bad_block[c] = _backward_block(
                    Wp, P, Cp + b0 * n, Gp + b0 * n4, dHp + b0 * n if dHp != NULL else NULL,
                    dAp + b0 * n4 if dAp != NULL else NULL, dhp + b0 * n, dcp + b0 * n,
                    Xp + b0 * I, Hp + b0 * n, I, Gt + o_z, Gt + o_d, cap, Gt, Gt + o_p,
                    dOp + b0 * O if dOp != NULL else NULL, O, Vp, PV,
                    Gt + o_v if want_dv else NULL, bs, b0, T, B, starts[c + 1] - b0, n)
        else:
            Gt = space
            bad_block[0] = _backward_block(
                Wp, P, Cp, Gp, dHp, dAp, dhp, dcp, Xp, Hp, I, Gt + o_z, Gt + o_d, cap,
                Gt, Gt + o_p, dOp, O, Vp, PV, Gt + o_v if want_dv else NULL, bs, 0, T, B, B, n)
        bad = earliest_bad(bad_block, blocks, False)
        if bad < 0:
            # the blocks' partial sums, in block order, into the first, then transposed back into
            # dWx | dWh | db by register transposes (element by element, every write is strided)
            Gt = space
            for c in range(1, blocks):
                part = space + c * per_block
                for j in range(kz * n4):
                    Gt[j] += part[j]
                if want_dv:
                    for j in range(O * n):
                        Gt[o_v + j] += part[o_v + j]
            if I > 0:
                cols(Gt, n4, I, n4, &dWx[0, 0], I)
            cols(Gt + I * n4, n4, n, n4, &dWh[0, 0], n)
            memcpy(&db[0], Gt + (I + n) * n4, n4 * sizeof(floating))
            if want_dv:
                memcpy(&dV[0, 0], Gt + o_v, O * n * sizeof(floating))
        free(PV)
        free(zeros)
        free(bad_block)
    WORK.give(area)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")
