"""GRU recurrence (PyTorch's cell) forward through time, and its backward pass through time.

    gh = Wh h_{t-1} + bh                          (gate order r, z, n; formed inside the loop)
    r = sigmoid(A_r + gh_r),  z = sigmoid(A_z + gh_z),  n = tanh(A_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}

Two pairs of entries, the contract of docs/architecture.md ("Kernel contract"):
  forward / backward take A = X Wx^T + bx, formed by the caller for every step in one GEMM, and
    leave dWh = dGh^T H[:-1], dbh = sum dGh, dWx = dA^T X, dbx = sum dA to it (token inputs);
  forward_fused / backward_fused form each step's projection inside the loop and fold the weight
    gradients in blocks of rows while in cache (cython/_fused.pxd), and take the output layer's
    logits, dO_t V and dV into their loops when given.
HN = gh_n is kept from forward because r's gradient needs it.

Layers, as in every kernel module:
  (a) `cdef inline ... noexcept nogil` helpers for one step of a run of consecutive sequences,
      the time loops over one block of rows, and whole calls over raw pointers;
  (b) the `def` drivers over typed memoryviews, the whole time loop inside one `with nogil:`, no
      allocation inside it (workspaces are malloc'd before it);
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
from libc.string cimport memcpy, memset

from _blas cimport gemv
from _tile cimport bind_set, cols, gemm_packed, pack, pack_size
from _vmath cimport all_finite, vsigmoid, vtanh_fast
from _blocks cimport active_rows, add_rows, earliest_bad, widest
from _fused cimport fold, fold_cap, hand_path, head_grad, head_logits

from fastbptt import _simd
from fastbptt._kernel_args import (WORK, block_starts, check_batch_sizes, check_head,
                                   check_head_grad)
from _packcache cimport cache_give, cache_new, cache_panels, cache_take
from _workarea cimport area_start, big_alloc, lines_up

include "_argcheck.pxi"

_simd.register(__name__, lambda name: bind_set(name))

# calls of at most this many rows in all (T * B) skip the transposed / packed copy of Wh
cdef Py_ssize_t LEAN_ROWS = 2

# forward_fused takes `packed=`, a slot keeping the packed Wh and Wx between calls (see
# _packcache.pxd), as the LSTM's does; backward_fused packs Wh at every call, as the LSTM's
KEEPS_PACKED = True


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


cdef extern from "_dispatch.h" nogil:
    void fb_gru_bwd_d(const double* G, const double* hn, const double* hp, const double* dho,
                      double* dh, double* da, double* dg, Py_ssize_t rows, Py_ssize_t n) noexcept
    void fb_gru_bwd_f(const float* G, const float* hn, const float* hp, const float* dho,
                      float* dh, float* da, float* dg, Py_ssize_t rows, Py_ssize_t n) noexcept


cdef inline void _backward_rows(const floating* G, const floating* HN, const floating* h_prev,
                                const floating* dh_out, floating* dA, floating* dGh, floating* dh,
                                Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """dA and dGh of one step for `rows` sequences, one fused pass per row (the SIMD set's
    kernel, cython/_gru_pointwise.h).

    dh holds dL/dh_t from later steps (plus dh_out, the loss gradient at h_t, unless NULL) and
    leaves holding only its direct path z * dL/dh_t; the caller adds dGh @ Wh to make it
    dL/dh_{t-1}.
    """
    if floating is float:
        fb_gru_bwd_f(G, HN, h_prev, dh_out, dh, dA, dGh, rows, n)
    else:
        fb_gru_bwd_d(G, HN, h_prev, dh_out, dh, dA, dGh, rows, n)


# ---------------------------------------------------------------------------------------------------
# time loops over one block of `rows` consecutive sequences of a batch of B, serial in t; the
# pointers are set at the block's first row, and step t of a (T, B, k) array starts t * B * k later
# ---------------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward_block(const floating* P, const floating* wt, const floating* bh,
                               const floating* A, const floating* X, const floating* PX,
                               const floating* wxt, const floating* bx, Py_ssize_t I,
                               floating* AX, floating* H, floating* G, floating* HN,
                               floating* out, Py_ssize_t O, const floating* vt,
                               const floating* cv, const Py_ssize_t* bs, Py_ssize_t b0,
                               Py_ssize_t T, Py_ssize_t B, Py_ssize_t block_rows,
                               Py_ssize_t n) noexcept nogil:
    """Forward through all T steps: by hand when wt (Wh transposed) is given, else by the register
    tiles over P (Wh^T packed). The input projections come from A, or when A is NULL are formed
    here step by step into AX (rows, 3n) as bx + x_t Wx^T: by hand from wxt (Wx transposed), or
    on the tiles from PX (Wx^T packed). The input and recurrent parts stay two products, since
    the n gate takes r * (Wh_n h + bh_n) apart from Wx_n x + bx_n. bs (or NULL): batch_sizes;
    b0: the block's first batch row.
    With out (else NULL), the output layer's logits out_t = h_t V^T + cv (O of them per row) are
    formed too while h_t is in cache: vt is V^T (n, O) on the hand path, V^T packed on the tiles.

    Returns the first step with a non-finite state, or -1.
    """
    cdef Py_ssize_t t, b, rows, n3 = 3 * n, s = B * n, s3 = B * 3 * n, sx = B * I, so = B * O
    cdef floating* g
    cdef const floating* a
    for t in range(T):
        rows = active_rows(bs, t, b0, block_rows)
        if rows == 0:
            # batch_sizes never grows: every row of the block is done
            break
        g = G + t * s3
        if A != NULL:
            a = A + t * s3
        else:
            a = AX
            if wt != NULL:
                for b in range(rows):
                    add_rows(wxt, X + t * sx + b * I, bx, AX + b * n3, I, n3)
            elif I > 0:
                gemm_packed(rows, n3, I, X + t * sx, I, PX, bx, NULL, 0, AX, n3)
            else:
                for b in range(rows):
                    memcpy(AX + b * n3, bx, n3 * sizeof(floating))
        if wt != NULL:
            _step_small(wt, bh, a, H + t * s, g, HN + t * s, H + (t + 1) * s, rows, n)
        else:
            # g = h_{t-1} @ Wh^T + bh for all rows at once: the three gates in one product
            gemm_packed(rows, n3, n, H + t * s, n, P, bh, NULL, 0, g, n3)
            _finish(a, H + t * s, g, HN + t * s, H + (t + 1) * s, rows, n)
        if not all_finite(H + (t + 1) * s, rows * n):
            return t
        if out != NULL:
            head_logits(H + (t + 1) * s, rows, n, vt, cv, out + t * so, O, wt != NULL)
    return -1


cdef inline void _fold_both(const floating* ring_z, Py_ssize_t cap, const floating* ring_d,
                            Py_ssize_t fill, Py_ssize_t I, Py_ssize_t n, floating* Gt,
                            floating* panels, bint add) noexcept nogil:
    """Fold the gathered rows into Gt (add to it, or write it when not `add`): (x, 1) with the
    gradients at A into (dWx | dbx)^T, and (h_{t-1}, 1) with those at gh into (dWh | dbh)^T,
    which sit below it in Gt."""
    cdef Py_ssize_t n3 = 3 * n
    fold(ring_z, cap, ring_d, fill, I + 1, n3, Gt, panels, add)
    fold(ring_z + (I + 1) * cap, cap, ring_d + cap * n3, fill, n + 1, n3, Gt + (I + 1) * n3,
         panels, add)


cdef Py_ssize_t _backward_block(const floating* Wh, const floating* P, const floating* H,
                                const floating* G, const floating* HN, const floating* dH,
                                floating* dA, floating* dGh, floating* dh, const floating* X,
                                Py_ssize_t I, floating* ring_z, floating* ring_d, Py_ssize_t cap,
                                floating* Gt, floating* panels, const floating* dO, Py_ssize_t O,
                                const floating* V, const floating* PV, floating* dV,
                                const Py_ssize_t* bs, Py_ssize_t b0, Py_ssize_t T, Py_ssize_t B,
                                Py_ssize_t block_rows, Py_ssize_t n) noexcept nogil:
    """Backward through all T steps; dh (rows, n) carries dL/dh_t from T down to 0.

    By hand over Wh when P is NULL, else by the register tiles over P (Wh packed). bs (or NULL):
    batch_sizes; a row inactive at step t keeps its dh untouched.
    Without ring_d, the gradients at A and at gh go to dA and dGh. With ring_d, the weight
    gradients are folded in instead: each step's gradients at A go to ring_d's first (cap, 3n)
    rows, those at gh to its second, (x_t, 1) and (h_{t-1}, 1) to ring_z (I + 1 + n + 1, cap) as
    columns, and whenever the rings are full they are folded into Gt (I + 1 + n + 1, 3n), i.e.
    (dWx | dbx | dWh | dbh)^T, while still in cache; dA (or NULL) then only receives a copy.

    With dO (else NULL), the loss gradient at h_t is dO_t V, formed here (dO (T, B, O) at the
    block's first row, V (O, n), PV: V packed) instead of read from dH; with dV (else NULL) too,
    dV (O, n) += dO_t^T h_t, the output layer's weight gradient, while h_t is in cache.

    Returns the first step (counting down) with a non-finite gradient, or -1.
    """
    cdef Py_ssize_t t, b, rows, n3 = 3 * n, s = B * n, s3 = B * 3 * n, sx = B * I, so = B * O
    cdef Py_ssize_t fill = 0
    cdef bint folded = False
    cdef const floating* dho
    cdef floating* da
    cdef floating* dg
    for t in range(T - 1, -1, -1):
        rows = active_rows(bs, t, b0, block_rows)
        if rows == 0:
            continue
        if ring_d != NULL:
            if fill + rows > cap:
                _fold_both(ring_z, cap, ring_d, fill, I, n, Gt, panels, folded)
                folded = True
                fill = 0
            da = ring_d + fill * n3
            dg = ring_d + (cap + fill) * n3
            # the ring's columns fill..fill+rows: x_t, then h_{t-1} (row-contiguous per unit)
            cols(X + t * sx, I, rows, I, ring_z + fill, cap)
            cols(H + t * s, n, rows, n, ring_z + (I + 1) * cap + fill, cap)
            fill += rows
        else:
            da = dA + t * s3
            dg = dGh + t * s3
        if dO != NULL:
            head_grad(dO + t * so, O, V, PV, H + (t + 1) * s, dV, dh, rows, n)
            dho = NULL
        else:
            # neither: no output unit (O = 0), so no loss gradient reaches the states
            dho = dH + t * s if dH != NULL else NULL
        _backward_rows(G + t * s3, HN + t * s, H + t * s, dho, da, dg, dh, rows, n)
        if ring_d != NULL and dA != NULL:
            memcpy(dA + t * s3, da, rows * n3 * sizeof(floating))
        # dh_{t-1} = z * dh_t (already in dh) + dGh[t] @ Wh for all rows
        if P == NULL:
            for b in range(rows):
                add_rows(Wh, dg + b * n3, dh + b * n, dh + b * n, n3, n)
        else:
            gemm_packed(rows, n, n3, dg, n3, P, NULL, dh, n, dh, n)
        if not all_finite(dh, rows * n):
            return t
    if fill > 0:
        _fold_both(ring_z, cap, ring_d, fill, I, n, Gt, panels, folded)
    elif ring_d != NULL and not folded:
        # no row of the block ran: its share of the sums is zero
        memset(Gt, 0, (I + n + 2) * n3 * sizeof(floating))
    return -1


# ---------------------------------------------------------------------------------------------------
# whole calls over raw pointers, shared by the plain and the fused entries: the lean path for a few
# rows, else the weights transposed or packed once and one block of rows a thread
# ---------------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward_call(const floating* Wh, const floating* bh, const floating* A,
                              const floating* Wx, const floating* bx, const floating* X,
                              Py_ssize_t I, floating* H, floating* G, floating* HN,
                              floating* out, Py_ssize_t O, const floating* V, const floating* cv,
                              const Py_ssize_t* bs, const Py_ssize_t* starts, Py_ssize_t blocks,
                              bint hand, Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                              object packed=None) except -2:
    """Forward through T steps from A, or (A NULL) from X with Wx, bx; with out, the logits too.
    H[0] is set already. Returns the first step with a non-finite state, or -1. With `packed` (a
    slot, _packcache.pxd) the tiled path keeps its packed Wh and Wx there between calls."""
    cdef Py_ssize_t n3 = 3 * n, c, b0, t, r, bad = -1
    cdef bint fused = A == NULL
    cdef floating* wt = NULL
    cdef floating* wxt = NULL
    cdef floating* vt = NULL
    cdef floating* P = NULL
    cdef floating* PX = NULL
    cdef floating* AX = NULL
    cdef const floating* a
    cdef bint repack = True
    cdef size_t np_h, np_x
    kept = fresh = None
    cdef Py_ssize_t* bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
    if fused:
        AX = <floating*> malloc(B * n3 * sizeof(floating))
    if T * B <= LEAN_ROWS and bs == NULL:
        # a few rows in all (one step of generation): the products with the weights as given,
        # where transposing or packing them would cost more than the call's arithmetic
        if bad_block == NULL or (fused and AX == NULL):
            free(bad_block)
            free(AX)
            raise MemoryError()
        with nogil:
            for t in range(T):
                for r in range(B):
                    memcpy(G + (t * B + r) * n3, bh, n3 * sizeof(floating))
                    gemv(False, <int> n3, <int> n, 1, Wh, <int> n, H + (t * B + r) * n, 1,
                         G + (t * B + r) * n3)
                    if fused:
                        memcpy(AX + r * n3, bx, n3 * sizeof(floating))
                        if I > 0:
                            gemv(False, <int> n3, <int> I, 1, Wx, <int> I, X + (t * B + r) * I, 1,
                                 AX + r * n3)
                if fused:
                    a = AX
                else:
                    a = A + t * B * n3
                _finish(a, H + t * B * n, G + t * B * n3, HN + t * B * n, H + (t + 1) * B * n,
                        B, n)
                if not all_finite(H + (t + 1) * B * n, B * n):
                    bad = t
                    break
                for r in range(B if out != NULL else 0):
                    memcpy(out + (t * B + r) * O, cv, O * sizeof(floating))
                    gemv(False, <int> O, <int> n, 1, V, <int> n, H + ((t + 1) * B + r) * n, 1,
                         out + (t * B + r) * O)
        free(AX)
        free(bad_block)
        return bad
    if hand:
        wt = <floating*> malloc(n3 * n * sizeof(floating))
        if fused:
            wxt = <floating*> malloc((n3 * I + 1) * sizeof(floating))
        if out != NULL:
            vt = <floating*> malloc((n * O + 1) * sizeof(floating))
    elif fused and packed is not None:
        # Wh's panels, then Wx's, in one entry kept while the weights hold the bytes packed
        np_h = pack_size(Wh, n, n3)
        np_x = pack_size(Wh, I, n3) + 1
        key = ("forward", _simd.current(), sizeof(floating), I, n)
        kept = cache_take(packed, key, Wx, n3 * I * sizeof(floating), Wh, n3 * n * sizeof(floating))
        if kept is None:
            fresh = cache_new(key, Wx, n3 * I * sizeof(floating), Wh, n3 * n * sizeof(floating),
                              (np_h + np_x) * sizeof(floating))
        else:
            repack = False
        P = <floating*> cache_panels(kept if kept is not None else fresh)
        PX = P + np_h
        if out != NULL:
            vt = <floating*> malloc((pack_size(Wh, n, O) + 1) * sizeof(floating))
    else:
        P = <floating*> big_alloc(pack_size(Wh, n, n3) * sizeof(floating))
        if fused:
            PX = <floating*> big_alloc(pack_size(Wh, I, n3) * sizeof(floating))
        if out != NULL:
            vt = <floating*> malloc((pack_size(Wh, n, O) + 1) * sizeof(floating))
    if (bad_block == NULL or (hand and wt == NULL) or (not hand and P == NULL)
            or (fused and (AX == NULL or (hand and wxt == NULL) or (not hand and PX == NULL)))
            or (out != NULL and vt == NULL)):
        free(bad_block)
        free(AX)
        free(wt)
        free(wxt)
        free(vt)
        if packed is None or not fused:
            free(P)
            free(PX)
        raise MemoryError()
    with nogil:
        if hand:
            # transposes by register blocks: element by element, every write is strided
            cols(Wh, n, n3, n, wt, n3)
            if fused:
                cols(Wx, I, n3, I, wxt, n3)
            if out != NULL:
                cols(V, n, O, n, vt, O)
        else:
            if repack:
                pack(Wh, n, True, n, n3, P)
                if fused and I > 0:
                    pack(Wx, I, True, I, n3, PX)
            if out != NULL:
                pack(V, n, True, n, O, vt)
        if blocks > 1:
            for c in prange(blocks, num_threads=blocks, schedule="static"):
                b0 = starts[c]
                bad_block[c] = _forward_block(
                    P, wt, bh, A + b0 * n3 if A != NULL else NULL, X + b0 * I if fused else NULL,
                    PX, wxt, bx, I, AX + b0 * n3 if fused else NULL, H + b0 * n, G + b0 * n3,
                    HN + b0 * n, out + b0 * O if out != NULL else NULL, O, vt, cv, bs, b0, T, B,
                    starts[c + 1] - b0, n)
        else:
            bad_block[0] = _forward_block(P, wt, bh, A, X, PX, wxt, bx, I, AX, H, G, HN, out, O,
                                          vt, cv, bs, 0, T, B, B, n)
        bad = earliest_bad(bad_block, blocks, True)
        free(bad_block)
        free(AX)
        free(wt)
        free(wxt)
        free(vt)
        if packed is None or not fused or hand:
            free(P)
            free(PX)
    cache_give(packed, kept if kept is not None else fresh)
    return bad


cdef Py_ssize_t _backward_call(const floating* Wh, const floating* H, const floating* G,
                               const floating* HN, const floating* dH, floating* dA,
                               floating* dGh, floating* dh, const floating* X, Py_ssize_t I,
                               floating* dWx, floating* dbx, floating* dWh, floating* dbh,
                               const floating* dO, Py_ssize_t O, const floating* V, floating* dV,
                               const Py_ssize_t* bs, const Py_ssize_t* starts, Py_ssize_t blocks,
                               bint hand, Py_ssize_t T, Py_ssize_t B, Py_ssize_t n) except -2:
    """Backward through T steps from dh (holding dh_T); the weight gradients folded in when dWx is
    given (dA then optional, dGh unused), else dA and dGh written. Returns the first step
    (counting down) with a non-finite gradient, or -1."""
    cdef Py_ssize_t n3 = 3 * n, c, j, b0, bad = -1, kz = I + n + 2
    cdef bint fused = dWx != NULL
    cdef Py_ssize_t most = 0, cap = 0, per_block = 0, o_z = 0, o_d = 0, o_p = 0, o_v = 0
    cdef floating* P = NULL
    cdef floating* PV = NULL
    cdef floating* space = NULL
    cdef floating* Gt
    cdef floating* part
    cdef Py_ssize_t* bad_block = <Py_ssize_t*> malloc(blocks * sizeof(Py_ssize_t))
    if fused:
        for c in range(blocks):
            most = max(most, starts[c + 1] - starts[c])
        cap = fold_cap(most)
        # per block: its gradients Gt (kz, 3n), ring_z (kz, cap) with rows I and I + n + 1 all
        # ones, ring_d (2 cap, 3n), the packed panels of ring_d's rows, and its share of dV
        o_z = kz * n3
        o_d = o_z + kz * cap
        o_p = o_d + 2 * cap * n3
        o_v = o_p + pack_size(Wh, cap, n3)
        # each block's space and Wh's panels start on a cache line
        per_block = lines_up(o_v + (O * n if dV != NULL else 0), sizeof(floating))
    cdef Py_ssize_t o_wh = blocks * per_block
    # the hand path without the fold needs no area
    area = (WORK.take((o_wh + (0 if hand else pack_size(Wh, n3, n))) * sizeof(floating))
            if fused or not hand else None)
    if fused:
        space = <floating*> area_start(area)
    if not hand:
        P = <floating*> area_start(area) + o_wh
        if dO != NULL:
            PV = <floating*> malloc(pack_size(Wh, O, n) * sizeof(floating))
    if bad_block == NULL or (not hand and dO != NULL and PV == NULL):
        free(bad_block)
        free(PV)
        raise MemoryError()
    with nogil:
        if P != NULL:
            pack(Wh, n, False, n3, n, P)
        if PV != NULL:
            pack(V, n, False, O, n, PV)
        for c in range(blocks if fused else 0):
            # only dV's sums start from zero: the first fold writes Gt, and the rings and panels
            # are written before they are read
            if dV != NULL:
                memset(space + c * per_block + o_v, 0, O * n * sizeof(floating))
            for j in range(cap):
                space[c * per_block + o_z + I * cap + j] = 1
                space[c * per_block + o_z + (I + n + 1) * cap + j] = 1
        if blocks > 1:
            for c in prange(blocks, num_threads=blocks, schedule="static"):
                b0 = starts[c]
                Gt = space + c * per_block if fused else NULL
                bad_block[c] = _backward_block(
                    Wh, P, H + b0 * n, G + b0 * n3, HN + b0 * n,
                    dH + b0 * n if dH != NULL else NULL, dA + b0 * n3 if dA != NULL else NULL,
                    dGh + b0 * n3 if dGh != NULL else NULL, dh + b0 * n,
                    X + b0 * I if fused else NULL, I, Gt + o_z if fused else NULL,
                    Gt + o_d if fused else NULL, cap, Gt, Gt + o_p if fused else NULL,
                    dO + b0 * O if dO != NULL else NULL, O, V, PV,
                    Gt + o_v if fused and dV != NULL else NULL, bs, b0, T, B,
                    starts[c + 1] - b0, n)
        else:
            Gt = space
            bad_block[0] = _backward_block(
                Wh, P, H, G, HN, dH, dA, dGh, dh, X, I, Gt + o_z if fused else NULL,
                Gt + o_d if fused else NULL, cap, Gt, Gt + o_p if fused else NULL, dO, O, V, PV,
                Gt + o_v if fused and dV != NULL else NULL, bs, 0, T, B, B, n)
        bad = earliest_bad(bad_block, blocks, False)
        if bad < 0 and fused:
            # the blocks' partial sums, in block order, into the first, then transposed back
            # into dWx, dbx, dWh, dbh by register transposes
            Gt = space
            for c in range(1, blocks):
                part = space + c * per_block
                for j in range(kz * n3):
                    Gt[j] += part[j]
                if dV != NULL:
                    for j in range(O * n):
                        Gt[o_v + j] += part[o_v + j]
            if I > 0:
                cols(Gt, n3, I, n3, dWx, I)
            memcpy(dbx, Gt + I * n3, n3 * sizeof(floating))
            cols(Gt + (I + 1) * n3, n3, n, n3, dWh, n)
            memcpy(dbh, Gt + (I + 1 + n) * n3, n3 * sizeof(floating))
            if dV != NULL:
                memcpy(dV, Gt + o_v, O * n * sizeof(floating))
        free(PV)
        free(bad_block)
    if area is not None:
        WORK.give(area)
    return bad


# ---------------------------------------------------------------------------------------------------
# (b) drivers
# ---------------------------------------------------------------------------------------------------

cdef int _check_cache(const floating[:, :, ::1] H, const floating[:, :, ::1] G,
                      const floating[:, :, ::1] HN, Py_ssize_t T, Py_ssize_t B,
                      Py_ssize_t n) except -1:
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("G", (G.shape[0], G.shape[1], G.shape[2]), (T, B, 3 * n))
    _check("HN", (HN.shape[0], HN.shape[1], HN.shape[2]), (T, B, n))
    return 0


def _plan(batch_sizes, T, B, n, n_threads):
    """(batch_sizes checked or None, the blocks' first rows and B, the number of blocks, whether
    they take the hand path), or None when the call has no step to run."""
    bs_arr = check_batch_sizes(batch_sizes, T, B)
    if B == 0 or n == 0 or T == 0:
        return None
    blocks = max(1, min(n_threads, B))
    starts = block_starts(bs_arr, T, B, blocks)
    # all blocks take the path of the largest
    return bs_arr, starts, blocks, hand_path(widest(starts))


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
    cdef const Py_ssize_t[::1] starts
    cdef const Py_ssize_t[::1] bs_view
    cdef const Py_ssize_t* bs = NULL
    cdef floating* nul = NULL  # a typed NULL: the fused specialisation is read off every argument
    cdef Py_ssize_t blocks, bad
    cdef bint hand
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (3 * n, n))
    _check("bh", (bh.shape[0],), (3 * n,))
    _check("A", (A.shape[0], A.shape[1], A.shape[2]), (T, B, 3 * n))
    _check("h0", (h0.shape[0], h0.shape[1]), (B, n))
    _check_cache(H, G, HN, T, B, n)
    plan = _plan(batch_sizes, T, B, n, n_threads)
    if B > 0 and n > 0:
        memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
    if plan is None:
        return
    bs_arr, starts_arr, blocks, hand = plan
    starts = starts_arr
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    bad = _forward_call(&Wh[0, 0], &bh[0], &A[0, 0, 0], nul, nul, nul, 0, &H[0, 0, 0],
                        &G[0, 0, 0], &HN[0, 0, 0], nul, 0, nul, nul, bs, &starts[0], blocks,
                        hand, T, B, n)
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
    cdef const Py_ssize_t[::1] starts
    cdef const Py_ssize_t[::1] bs_view
    cdef const Py_ssize_t* bs = NULL
    cdef floating* nul = NULL  # a typed NULL: the fused specialisation is read off every argument
    cdef Py_ssize_t blocks, bad
    cdef bint hand
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (3 * n, n))
    _check_cache(H, G, HN, T, B, n)
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, 3 * n))
    _check("dGh", (dGh.shape[0], dGh.shape[1], dGh.shape[2]), (T, B, 3 * n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    plan = _plan(batch_sizes, T, B, n, n_threads)
    if B > 0 and n > 0:
        # dh0 doubles as the running gradient dL/dh_t, so the loop needs no buffer of its own
        memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
    if plan is None:
        return
    bs_arr, starts_arr, blocks, hand = plan
    starts = starts_arr
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    bad = _backward_call(&Wh[0, 0], &H[0, 0, 0], &G[0, 0, 0], &HN[0, 0, 0], &dH[0, 0, 0],
                         &dA[0, 0, 0], &dGh[0, 0, 0], &dh0[0, 0], nul, 0, nul, nul, nul, nul,
                         nul, 0, nul, nul, bs, &starts[0], blocks, hand, T, B, n)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")


# ---------------------------------------------------------------------------------------------------
# fused entries: the input projection and the weight gradients inside the time loops
# ---------------------------------------------------------------------------------------------------

def forward_fused(const floating[:, ::1] Wx,      # IN  (3Hn, I) input weights, gate rows r, z, n
                  const floating[::1] bx,         # IN  (3Hn,) input bias
                  const floating[:, ::1] Wh,      # IN  (3Hn, Hn) recurrent weights
                  const floating[::1] bh,         # IN  (3Hn,) recurrent bias
                  const floating[:, :, ::1] X,    # IN  (T, B, I) inputs
                  const floating[:, ::1] h0,      # IN  (B, Hn) initial state
                  floating[:, :, ::1] H,          # OUT (T+1, B, Hn) states, H[0] = h0
                  floating[:, :, ::1] G,          # OUT (T, B, 3Hn) activated gates r, z, n
                  floating[:, :, ::1] HN,         # OUT (T, B, Hn) Wh_n h_{t-1} + bh_n
                  int n_threads=1,
                  batch_sizes=None,               # IN  (T,) intp or None: rows advanced at step t
                  const floating[:, ::1] V=None,  # IN  (O, Hn) output layer weights, or None
                  const floating[::1] c=None,     # IN  (O,) output layer bias, with V
                  floating[:, :, ::1] out=None,   # OUT (T, B, O) logits h_t V^T + c, with V
                  packed=None):                   # IN/OUT slot of packed Wh and Wx, kept between calls
    """forward() with the input projections X Wx^T + bx formed step by step inside the time loop,
    so no (T, B, 3Hn) array of them is written and read back; raise FloatingPointError on a
    non-finite state. With V, c and out, the output layer's logits are formed in the same loop
    (out[t] from h_{t+1} = H[t + 1]; with batch_sizes at the valid rows only). With `packed` (a
    list the caller keeps, empty at first), the packed Wh and Wx of the last call are reused while
    Wx and Wh hold the same bytes (_packcache.pxd)."""
    cdef Py_ssize_t n = Wh.shape[1], I = X.shape[2]
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1], O = 0
    cdef const Py_ssize_t[::1] starts
    cdef const Py_ssize_t[::1] bs_view
    cdef const Py_ssize_t* bs = NULL
    cdef floating* nul = NULL  # a typed NULL: the fused specialisation is read off every argument
    cdef Py_ssize_t blocks, bad
    cdef bint hand
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (3 * n, n))
    _check("Wx", (Wx.shape[0], Wx.shape[1]), (3 * n, I))
    _check("bx", (bx.shape[0],), (3 * n,))
    _check("bh", (bh.shape[0],), (3 * n,))
    _check("h0", (h0.shape[0], h0.shape[1]), (B, n))
    _check_cache(H, G, HN, T, B, n)
    if V is not None or c is not None or out is not None:
        check_head(V, c, out, T, B, n)
        O = V.shape[0]
    plan = _plan(batch_sizes, T, B, n, n_threads)
    if B > 0 and n > 0:
        memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
    elif V is not None and B > 0 and T > 0:
        out[...] = c  # no units: the logits are the bias
    if plan is None:
        return
    bs_arr, starts_arr, blocks, hand = plan
    starts = starts_arr
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    bad = _forward_call(&Wh[0, 0], &bh[0], nul, &Wx[0, 0] if I > 0 else &bx[0], &bx[0],
                        &X[0, 0, 0] if I > 0 else &bx[0], I, &H[0, 0, 0], &G[0, 0, 0],
                        &HN[0, 0, 0], &out[0, 0, 0] if O > 0 else nul, O,
                        &V[0, 0] if O > 0 else nul, &c[0] if O > 0 else nul, bs, &starts[0],
                        blocks, hand, T, B, n, packed)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden state at time step {bad}")


def backward_fused(const floating[:, ::1] Wh,      # IN  (3Hn, Hn)
                   const floating[:, :, ::1] X,    # IN  (T, B, I) inputs
                   const floating[:, :, ::1] H,    # IN  (T+1, B, Hn) states from forward
                   const floating[:, :, ::1] G,    # IN  (T, B, 3Hn) activated gates from forward
                   const floating[:, :, ::1] HN,   # IN  (T, B, Hn) Wh_n h_{t-1} + bh_n
                   const floating[:, :, ::1] dH,   # IN  (T, B, Hn) loss gradient reaching h_t
                   const floating[:, ::1] dh_T,    # IN  (B, Hn) gradient at h_T from a later chunk
                   floating[:, ::1] dh0,           # OUT (B, Hn) gradient at h0
                   floating[:, ::1] dWx,           # OUT (3Hn, I) sum_t dA_t^T x_t
                   floating[:, ::1] dWh,           # OUT (3Hn, Hn) sum_t dGh_t^T h_{t-1}
                   floating[::1] dbx,              # OUT (3Hn,) sum_t of dA_t's rows
                   floating[::1] dbh,              # OUT (3Hn,) sum_t of dGh_t's rows
                   int n_threads=1,
                   batch_sizes=None,               # IN  (T,) intp or None: rows advanced at step t
                   floating[:, :, ::1] dA=None,    # OUT (T, B, 3Hn) or None: gradient at A
                   const floating[:, :, ::1] dO=None,  # IN (T, B, O) or None: gradient at the logits
                   const floating[:, ::1] V=None,      # IN (O, Hn) the head's weights, with dO
                   floating[:, ::1] dV=None):          # OUT (O, Hn) sum_t dO_t^T h_t, or None
    """backward() with the weight gradients folded in while each few steps of gate gradients are
    still in cache, so no (T, B, 3Hn) arrays of them are needed (dA, for the gradient at the
    inputs, is filled only when given; with batch_sizes only at the valid rows). Sums over the
    valid steps only; raise FloatingPointError on a non-finite gradient.

    The loss gradient at the states comes as dH, or (dH None) as dO and V, meaning dH = dO @ V:
    each step forms its rows of dO_t V inside the loop, so no (T, B, Hn) array is built. With dV
    as well, the output layer's weight gradient sum_t dO_t^T h_t is formed in the same loop."""
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1], n = Wh.shape[1], I = X.shape[2], O = 0
    cdef const Py_ssize_t[::1] starts
    cdef const Py_ssize_t[::1] bs_view
    cdef const Py_ssize_t* bs = NULL
    cdef floating* nul = NULL  # a typed NULL: the fused specialisation is read off every argument
    cdef Py_ssize_t blocks, bad
    cdef bint hand
    _check("Wh", (Wh.shape[0], Wh.shape[1]), (3 * n, n))
    _check_cache(H, G, HN, T, B, n)
    check_head_grad(dH, dO, V, dV, T, B, n)
    if dO is not None:
        O = V.shape[0]
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    _check("dWx", (dWx.shape[0], dWx.shape[1]), (3 * n, I))
    _check("dWh", (dWh.shape[0], dWh.shape[1]), (3 * n, n))
    _check("dbx", (dbx.shape[0],), (3 * n,))
    _check("dbh", (dbh.shape[0],), (3 * n,))
    if dA is not None:
        _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, 3 * n))
    plan = _plan(batch_sizes, T, B, n, n_threads)
    if B > 0 and n > 0:
        memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
    if plan is None:
        # no step: zero gradients (a run writes every entry at its end)
        dWx[...] = 0
        dWh[...] = 0
        dbx[...] = 0
        dbh[...] = 0
        if dV is not None:
            dV[...] = 0
        return
    bs_arr, starts_arr, blocks, hand = plan
    starts = starts_arr
    if bs_arr is not None:
        bs_view = bs_arr
        bs = &bs_view[0]
    bad = _backward_call(&Wh[0, 0], &H[0, 0, 0], &G[0, 0, 0], &HN[0, 0, 0],
                         &dH[0, 0, 0] if dH is not None else nul,
                         &dA[0, 0, 0] if dA is not None else nul, nul, &dh0[0, 0],
                         &X[0, 0, 0] if I > 0 else &dbx[0], I, &dWx[0, 0] if I > 0 else &dbx[0],
                         &dbx[0], &dWh[0, 0], &dbh[0], &dO[0, 0, 0] if O > 0 else nul, O,
                         &V[0, 0] if O > 0 else nul,
                         &dV[0, 0] if O > 0 and dV is not None else nul,
                         bs, &starts[0], blocks, hand, T, B, n)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")
