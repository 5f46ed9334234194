# The nogil loops of the Elman kernels and the scratch they use, included into _elman.pyx (one module:
# the entries there check the arguments, pick a path and call these). No Python objects below.

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
                             Py_ssize_t n, int n_threads, Py_ssize_t O, const floating* V, const floating* c,
                             floating* out) noexcept nogil:
    """Each sequence through all its steps; a_t from A, or bias + U x_t when X is given; with out (T, B, O), the logits V h_t + c of its steps."""
    cdef Py_ssize_t b
    cdef Py_ssize_t bad[4]
    if n_threads > 1 and B > 1:
        for b in prange(B, num_threads=n_threads, schedule="static"):
            bad[b] = elman_seq_forward(nv, act, T, Wt,
                                       A + b * n if A != NULL else A, B * n,
                                       X + b * I if X != NULL else X, B * I, I, Ut, bias,
                                       H + b * n, B * n, O, V, c,
                                       out + b * O if out != NULL else out, B * O)
    else:
        for b in range(B):
            bad[b] = elman_seq_forward(nv, act, T, Wt,
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
                              int n_threads) noexcept nogil:
    """Each sequence backward through all its steps, the loss gradient at h_t from dH (may be NULL) plus dO_t V (when dO is not NULL); with
    G, sequence b folds its weight gradients into its own slices of G, db (and ring), so the sum
    over the batch is the same for any threads."""
    cdef Py_ssize_t b
    cdef Py_ssize_t bad[4]
    if n_threads > 1 and B > 1:
        for b in prange(B, num_threads=n_threads, schedule="static"):
            bad[b] = _backward_one(act, nv, b, W, H, dH, dO, O, V, dA, dh, X, I, G, db, ring,
                                   work, T, B, n)
    else:
        for b in range(B):
            bad[b] = _backward_one(act, nv, b, W, H, dH, dO, O, V, dA, dh, X, I, G, db, ring,
                                   work, T, B, n)
    return _first_bad(bad, B)


cdef inline Py_ssize_t _backward_one(int act, int nv, Py_ssize_t b, const floating* W,
                                     const floating* H, const floating* dH, const floating* dO,
                                     Py_ssize_t O, const floating* V, floating* dA, floating* dh,
                                     const floating* X, Py_ssize_t I, floating* G, floating* db,
                                     floating* ring, floating* work, Py_ssize_t T, Py_ssize_t B,
                                     Py_ssize_t n) noexcept nogil:
    """Sequence b of _backward_seq: its rows of every array, its slices of the scratch."""
    cdef Py_ssize_t gsize = (I + n) * n, wsize = _fold_work(W, I, n)
    return elman_seq_backward(
        nv, act, T, W, H + b * n, B * n,
        dH + b * n if dH != NULL else dH, B * n, dO + b * O if dO != NULL else dO, B * O, O, V,
        dA + b * n if dA != NULL else dA, B * n, dh + b * n,
        X + b * I if X != NULL else X, B * I, I,
        G + b * gsize if G != NULL else G, db + b * n if db != NULL else db,
        ring + b * FB_TB * n if ring != NULL else ring,
        work + b * wsize if work != NULL else work)


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
