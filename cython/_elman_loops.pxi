# The nogil loops of the Elman kernels and the scratch they use, included into _elman.pyx (one module:
# the entries there check the arguments, pick a path and call these). No Python objects below.

# The Elman kernels of the table bound at import (cython/_elman_impl.h, one copy per SIMD set).
cdef extern from "_dispatch.h" nogil:
    int FB_TB
    ctypedef struct fb_seq_args:
        int act
        Py_ssize_t T, n, n_in, n_out
        const void* Wh
        const void* Wx_t
        const void* b
        const void* A
        void* dA
        Py_ssize_t sa
        const void* X
        Py_ssize_t sx
        void* H
        Py_ssize_t sh
        const void* V
        const void* c
        void* out
        const void* dO
        Py_ssize_t so
        const void* dH
        Py_ssize_t sg
        void* dh
        void* G
        void* db
        void* ring
        void* work
    ctypedef struct fb_fold_args:
        const void* dA
        const void* H
        const void* X
        const void* dO
        int dO_first
        Py_ssize_t n, n_in, n_out, rows, per_step
        void* G
        Py_ssize_t ldg
        void* db
    int fb_elman_seq_ok_d(Py_ssize_t n) noexcept
    int fb_elman_seq_ok_f(Py_ssize_t n) noexcept
    size_t fb_elman_bwd_work_d(Py_ssize_t I, Py_ssize_t n) noexcept
    size_t fb_elman_bwd_work_f(Py_ssize_t I, Py_ssize_t n) noexcept
    Py_ssize_t fb_elman_fwd_d(const fb_seq_args* a) noexcept
    Py_ssize_t fb_elman_fwd_f(const fb_seq_args* a) noexcept
    Py_ssize_t fb_elman_bwd_d(const fb_seq_args* a) noexcept
    Py_ssize_t fb_elman_bwd_f(const fb_seq_args* a) noexcept
    void fb_elman_act_d(int act, double* h, Py_ssize_t m) noexcept
    void fb_elman_act_f(int act, float* h, Py_ssize_t m) noexcept
    void fb_elman_dact_d(int act, const double* g, const double* base, const double* h, double* a,
                         Py_ssize_t m) noexcept
    void fb_elman_dact_f(int act, const float* g, const float* base, const float* h, float* a,
                         Py_ssize_t m) noexcept
    void fb_logits_rows_d(Py_ssize_t rows, Py_ssize_t n, Py_ssize_t O, const double* h,
                          const double* V, const double* c, double* out) noexcept
    void fb_logits_rows_f(Py_ssize_t rows, Py_ssize_t n, Py_ssize_t O, const float* h,
                          const float* V, const float* c, float* out) noexcept
    size_t fb_elman_fold_work_d() noexcept
    size_t fb_elman_fold_work_f() noexcept
    void fb_elman_fold_d(const fb_fold_args* a, Py_ssize_t lo, Py_ssize_t hi, double* work) noexcept
    void fb_elman_fold_f(const fb_fold_args* a, Py_ssize_t lo, Py_ssize_t hi, float* work) noexcept


# ---------------------------------------------------------------------------------------------------
# the table's Elman kernels, fused over float / double (`like` only picks the type)
# ---------------------------------------------------------------------------------------------------

cdef inline bint seq_ok(const floating* like, Py_ssize_t n) noexcept nogil:
    """Whether the sequence kernels take a layer of n units."""
    if floating is float:
        return fb_elman_seq_ok_f(n)
    else:
        return fb_elman_seq_ok_d(n)


cdef inline Py_ssize_t seq_bwd_work(const floating* like, Py_ssize_t I, Py_ssize_t n) noexcept nogil:
    """Scratch elements one sequence's weight-gradient fold needs in seq_backward."""
    if floating is float:
        return fb_elman_bwd_work_f(I, n)
    else:
        return fb_elman_bwd_work_d(I, n)


cdef inline Py_ssize_t seq_forward(const floating* like, const fb_seq_args* a) noexcept nogil:
    """One sequence through all a.T steps (fb_seq_args in cython/_kernels.h); the first step with a
    non-finite state, or -1."""
    if floating is float:
        return fb_elman_fwd_f(a)
    else:
        return fb_elman_fwd_d(a)


cdef inline Py_ssize_t seq_backward(const floating* like, const fb_seq_args* a) noexcept nogil:
    """One sequence backward through all a.T steps; the first bad step (counting down), or -1."""
    if floating is float:
        return fb_elman_bwd_f(a)
    else:
        return fb_elman_bwd_d(a)


cdef inline void act_rows(int act, floating* h, Py_ssize_t m) noexcept nogil:
    """h <- f(h) over m values, at the SIMD set's width."""
    if floating is float:
        fb_elman_act_f(act, h, m)
    else:
        fb_elman_act_d(act, h, m)


cdef inline void dact_rows(int act, const floating* g, const floating* base, const floating* h,
                           floating* a, Py_ssize_t m) noexcept nogil:
    """a = (g + base) f'(a) over m values, f' through h = f(a); g may be NULL."""
    if floating is float:
        fb_elman_dact_f(act, g, base, h, a, m)
    else:
        fb_elman_dact_d(act, g, base, h, a, m)


cdef inline void logits_rows(Py_ssize_t rows, Py_ssize_t n, Py_ssize_t O, const floating* h,
                             const floating* V, const floating* c, floating* out) noexcept nogil:
    """out (rows, O) = c + h V^T by dot products (V (O, n) as given)."""
    if floating is float:
        fb_logits_rows_f(rows, n, O, h, V, c, out)
    else:
        fb_logits_rows_d(rows, n, O, h, V, c, out)


cdef inline Py_ssize_t fold_work(const floating* like) noexcept nogil:
    """Scratch elements one chunk of `fold` needs."""
    if floating is float:
        return fb_elman_fold_work_f()
    else:
        return fb_elman_fold_work_d()


cdef inline void fold(const fb_fold_args* a, Py_ssize_t lo, Py_ssize_t hi,
                      floating* work) noexcept nogil:
    """Rows lo..hi-1 of the weight gradients += one block of steps (fb_fold_args, cython/_kernels.h)."""
    if floating is float:
        fb_elman_fold_f(a, lo, hi, work)
    else:
        fb_elman_fold_d(a, lo, hi, work)


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
    """h = f(a + Wh h_prev) for one sequence, Wh given transposed so the inner loop is contiguous."""
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
    """da = (dh_out + dh) * f'(a); then dh <- Wh^T da, for one sequence (dh is read, then rewritten)."""
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


cdef Py_ssize_t _forward_blas(int act, const floating* Wh, const floating* A, floating* H,
                              Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                              int n_threads) noexcept nogil:
    cdef Py_ssize_t t, b, step = B * n
    cdef floating* h
    for t in range(T):
        h = H + (t + 1) * step
        memcpy(h, A + t * step, step * sizeof(floating))
        # h += h_prev @ Wh^T for the whole batch
        gemm(False, True, <int> B, <int> n, <int> n, 1, H + t * step, <int> n, Wh, <int> n,
             1, h, <int> n)
        if n_threads > 1 and B > 1:
            for b in prange(B, num_threads=n_threads, schedule="static"):
                _activate(act, h + b * n, n)
        else:
            _activate(act, h, step)
        if not all_finite(h, step):
            return t
    return -1


cdef Py_ssize_t _backward_small(int act, const floating* Wh, const floating* H, const floating* dH,
                                floating* dA, floating* dh, Py_ssize_t T, Py_ssize_t B,
                                Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t t, b, step = B * n
    for t in range(T - 1, -1, -1):
        if n_threads > 1 and B > 1:
            for b in prange(B, num_threads=n_threads, schedule="static"):
                _back_small(act, Wh, H + (t + 1) * step + b * n, dH + t * step + b * n,
                            dA + t * step + b * n, dh + b * n, n)
        else:
            for b in range(B):
                _back_small(act, Wh, H + (t + 1) * step + b * n, dH + t * step + b * n,
                            dA + t * step + b * n, dh + b * n, n)
        if not all_finite(dh, step):
            return t
    return -1


cdef Py_ssize_t _backward_blas(int act, const floating* Wh, const floating* H, const floating* dH,
                               floating* dA, floating* dh, Py_ssize_t T, Py_ssize_t B,
                               Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t t, k, step = B * n
    cdef floating* da
    for t in range(T - 1, -1, -1):
        da = dA + t * step
        for k in range(step):
            da[k] = dH[t * step + k] + dh[k]
        _times_fprime(act, H + (t + 1) * step, da, step)
        # dh = da @ Wh for the whole batch
        gemm(False, False, <int> B, <int> n, <int> n, 1, da, <int> n, Wh, <int> n, 0, dh, <int> n)
        if not all_finite(dh, step):
            return t
    return -1


cdef inline bint _small(Py_ssize_t B, Py_ssize_t n) noexcept nogil:
    return n <= SMALL_H and B * n * n <= SMALL_WORK


cdef inline bint _logits_by_dots(const floating* like, Py_ssize_t O) noexcept nogil:
    """Whether the tiled forward forms a head's O logits per row by dot products rather than by
    the register tile: up to O = lanes, where the tile's panel of 2 * lanes columns would be half
    padding or more; from there on the tile, whose every load of V serves a tile of rows, is as
    fast or faster (figures: bench/README.md, "Where the time goes")."""
    return O <= lanes(like)


cdef inline Py_ssize_t _fold_steps(Py_ssize_t B, Py_ssize_t n) noexcept nogil:
    """Steps of dA folded into the weight gradients at once: at least 256 rows and at least n, so
    each product is long enough to run at full speed, and reading and writing dWh (n x n) costs
    little beside it."""
    cdef Py_ssize_t rows = n if n > 256 else 256
    cdef Py_ssize_t steps = (rows + B - 1) // B
    return steps if steps < 64 else 64


cdef bint _seq(const floating* like, Py_ssize_t B, Py_ssize_t n) noexcept nogil:
    """Whether the sequence kernels run this batch: one to SEQ_MAX_B sequences of a width they take."""
    return FASTBPTT_TILED and 1 <= B <= SEQ_MAX_B and seq_ok(like, n)


cdef fb_seq_args _seq_args(int act, Py_ssize_t T, Py_ssize_t n, Py_ssize_t I, Py_ssize_t O,
                           Py_ssize_t B) noexcept nogil:
    """The sizes of one sequence of a batch of B, every array NULL; rows of (T, B, k) arrays are
    B * k apart."""
    cdef fb_seq_args a
    memset(&a, 0, sizeof(fb_seq_args))
    a.act = act
    a.T = T
    a.n = n
    a.n_in = I
    a.n_out = O
    a.sa = B * n
    a.sh = B * n
    a.sg = B * n
    a.sx = B * I
    a.so = B * O
    return a


cdef inline const floating* _row(const floating* p, Py_ssize_t offset) noexcept nogil:
    """p + offset, or NULL when p is NULL (an absent array stays absent)."""
    return p + offset if p != NULL else NULL


cdef Py_ssize_t _forward_seq(int act, const floating* Wt, const floating* A,
                             const floating* X, Py_ssize_t I, const floating* Ut,
                             const floating* bias, floating* H, Py_ssize_t T, Py_ssize_t B,
                             Py_ssize_t n, int n_threads, Py_ssize_t O, const floating* V,
                             const floating* c, floating* out) noexcept nogil:
    """Each sequence through all its steps; a_t from A, or bias + Wx x_t when X is given (Ut: Wx
    transposed); with out (T, B, O), the logits V h_t + c of its steps."""
    cdef Py_ssize_t b
    cdef Py_ssize_t bad[4]
    cdef fb_seq_args a[4]
    for b in range(B):
        a[b] = _seq_args(act, T, n, I, O, B)
        a[b].Wh = Wt
        a[b].Wx_t = Ut
        a[b].b = bias
        a[b].A = _row(A, b * n)
        a[b].X = _row(X, b * I)
        a[b].H = H + b * n
        a[b].V = V
        a[b].c = c
        a[b].out = <floating*> _row(out, b * O)
    if n_threads > 1 and B > 1:
        for b in prange(B, num_threads=n_threads, schedule="static"):
            bad[b] = seq_forward(Wt, &a[b])
    else:
        for b in range(B):
            bad[b] = seq_forward(Wt, &a[b])
    return earliest_bad(bad, B, True)


cdef Py_ssize_t _backward_seq(const fb_seq_args* like, const floating* Wh, const floating* H,
                              const floating* dH, const floating* dO, const floating* V,
                              floating* dA, floating* dh, const floating* X, floating* G,
                              floating* db, floating* ring, floating* work, Py_ssize_t B,
                              int n_threads) noexcept nogil:
    """Each sequence backward through all its steps (`like`: the sizes, from _seq_args), the loss
    gradient at h_t from dH (may be NULL) plus dO_t V (when dO is not NULL); with G, sequence b
    folds its weight gradients into its own slices of G, db (and ring, work), so the sum over the
    batch is the same for any threads."""
    cdef Py_ssize_t b, n = like.n, I = like.n_in, O = like.n_out
    cdef Py_ssize_t gsize = (I + n) * n, wsize = seq_bwd_work(Wh, I, n)
    cdef Py_ssize_t bad[4]
    cdef fb_seq_args a[4]
    for b in range(B):
        a[b] = like[0]
        a[b].Wh = Wh
        a[b].H = <floating*> H + b * n
        a[b].dH = _row(dH, b * n)
        a[b].dO = _row(dO, b * O)
        a[b].V = V
        a[b].dA = <floating*> _row(dA, b * n)
        a[b].dh = dh + b * n
        a[b].X = _row(X, b * I)
        a[b].G = <floating*> _row(G, b * gsize)
        a[b].db = <floating*> _row(db, b * n)
        a[b].ring = <floating*> _row(ring, b * FB_TB * n)
        a[b].work = <floating*> _row(work, b * wsize)
    if n_threads > 1 and B > 1:
        for b in prange(B, num_threads=n_threads, schedule="static"):
            bad[b] = seq_backward(Wh, &a[b])
    else:
        for b in range(B):
            bad[b] = seq_backward(Wh, &a[b])
    return earliest_bad(bad, B, False)


# ---------------------------------------------------------------------------------------------------
# the tiled path: per step one register-tiled product over the rows of a block of the batch
# ---------------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward_tiled_block(int act, const floating* PW, const floating* A,
                                     const floating* X, Py_ssize_t I, const floating* PU,
                                     const floating* bias, floating* H, Py_ssize_t T, Py_ssize_t B,
                                     Py_ssize_t rows, Py_ssize_t n, Py_ssize_t O,
                                     const floating* V, const floating* PV, const floating* c,
                                     floating* out) noexcept nogil:
    """All T steps of `rows` consecutive sequences of a batch of B (pointers at the block's first
    row): h_t = f(a_t + h_{t-1} Wh^T) over PW (Wh^T packed), a_t from A, or bias + x_t Wx^T over PU
    (Wx^T packed) when X is given. With out, the logits c + h_t V^T of the block's rows right after
    their states: over PV (V^T packed) when given, else by dot products with V. Returns the first
    step with a non-finite state, or -1."""
    cdef Py_ssize_t t, s = B * n, m = rows * n
    cdef floating* h
    for t in range(T):
        h = H + (t + 1) * s
        if X != NULL:
            gemm_packed(rows, n, I, X + t * B * I, I, PU, bias, NULL, 0, h, n)
            gemm_packed(rows, n, n, H + t * s, n, PW, NULL, h, n, h, n)
        else:
            gemm_packed(rows, n, n, H + t * s, n, PW, NULL, A + t * s, n, h, n)
        act_rows(act, h, m)
        if not all_finite(h, m):
            return t
        if out == NULL:
            continue
        if PV != NULL:
            gemm_packed(rows, O, n, h, n, PV, c, NULL, 0, out + t * B * O, O)
        else:
            logits_rows(rows, n, O, h, V, c, out + t * B * O)
    return -1


cdef Py_ssize_t _forward_tiled(int act, const floating* PW, const floating* A, const floating* X,
                               Py_ssize_t I, const floating* PU, const floating* bias, floating* H,
                               Py_ssize_t T, Py_ssize_t B, Py_ssize_t n, Py_ssize_t O,
                               const floating* V, const floating* PV, const floating* c,
                               floating* out, int n_threads) noexcept nogil:
    """_forward_tiled_block over the whole batch: with threads, the batch cut into blocks of rows,
    each block's whole time loop on one thread (rows never interact, and each is computed the same
    way in any block: results do not depend on the thread count). -1, or the first bad step."""
    cdef Py_ssize_t k, lo, blocks = tile_chunks(n_threads, B)
    cdef Py_ssize_t bad[64]
    if blocks > 64:
        blocks = 64
    if blocks == 1:
        return _forward_tiled_block(act, PW, A, X, I, PU, bias, H, T, B, B, n, O, V, PV, c, out)
    for k in prange(blocks, num_threads=blocks, schedule="static"):
        lo = k * B // blocks
        bad[k] = _forward_tiled_block(act, PW, _row(A, lo * n), _row(X, lo * I), I, PU, bias,
                                      H + lo * n, T, B, (k + 1) * B // blocks - lo, n, O, V, PV,
                                      c, <floating*> _row(out, lo * O))
    return earliest_bad(bad, blocks, True)


cdef Py_ssize_t _backward_tiled_block(int act, const floating* P, const floating* H,
                                      const floating* dH, const floating* dO, Py_ssize_t O,
                                      const floating* PV, bint fold_dO, floating* dA, floating* dh,
                                      const floating* X, Py_ssize_t I, floating* G, Py_ssize_t ldg,
                                      floating* db, floating* ring, floating* work, Py_ssize_t span,
                                      Py_ssize_t T, Py_ssize_t B, Py_ssize_t rows, Py_ssize_t n,
                                      bint part) noexcept nogil:
    """Backward through T steps for `rows` consecutive sequences of a batch of B (pointers at the
    block's first row): da_t = (g_t + dh) f'(a_t), g_t = dH_t (dH may be NULL) plus dO_t V (PV: V
    packed) when dO is given, then dh <- da_t Wh (P: Wh packed). With G, every `span` steps the
    block's gradients are folded into G = [dWh | dWx] (ldg columns) and db while in cache; with
    fold_dO, G's O rows below collect dV (but for its last step's term). Without `part` the block is
    the whole batch, whose rows the fold reads in place (dA's, or the ring's when dA is NULL:
    span * B * n). With `part` it is one of several: the block's rows of dA, H, X and dO one step
    late are gathered in the ring (span * rows * (2n + I + O)) so the fold reads them contiguous,
    and G, db are the block's own partial sums. Returns the first step (counting down) with a
    non-finite gradient, or -1."""
    cdef Py_ssize_t t, start, end = T, s = B * n, m = rows * n
    cdef floating* a
    cdef floating* ring_h = ring + span * m
    cdef floating* ring_x = ring_h + span * m
    cdef floating* ring_o = ring_x + span * rows * I
    cdef fb_fold_args f
    cdef Py_ssize_t grows = n + (O if fold_dO else 0)
    f.n = n
    f.n_in = I
    f.n_out = O
    f.per_step = rows
    f.G = G
    f.ldg = ldg
    f.db = db
    for t in range(T - 1, -1, -1):
        start = end - span if end - span > 0 else 0
        if G == NULL:
            a = dA + t * s  # nothing to fold: the plain backward, which always has dA
        elif part:
            a = ring + (t - start) * m
        else:
            a = dA + t * s if dA != NULL else ring + (t - start) * s
        # a = dh + dO_t V first (one small product, K = O), then g and f' in one pass
        if dO != NULL:
            gemm_packed(rows, n, O, dO + t * B * O, O, PV, NULL, dh, n, a, n)
        dact_rows(act, _row(dH, t * s), a if dO != NULL else dh, H + (t + 1) * s, a, m)
        gemm_packed(rows, n, n, a, n, P, NULL, NULL, 0, dh, n)
        if not all_finite(dh, m):
            return t
        if part and G != NULL:
            if dA != NULL:
                memcpy(dA + t * s, a, m * sizeof(floating))
            memcpy(ring_h + (t - start) * m, H + t * s, m * sizeof(floating))
            memcpy(ring_x + (t - start) * rows * I, X + t * B * I, rows * I * sizeof(floating))
            if fold_dO and t > 0:
                memcpy(ring_o + (t - start) * rows * O, dO + (t - 1) * B * O,
                       rows * O * sizeof(floating))
            elif fold_dO:
                memset(ring_o, 0, rows * O * sizeof(floating))
        if G == NULL or t != start:
            continue
        f.rows = (end - start) * rows
        if part:
            f.dA = ring
            f.H = ring_h
            f.X = ring_x
            f.dO = ring_o if fold_dO else NULL
            f.dO_first = False
        else:
            f.dA = a
            f.H = H + start * s
            f.X = X + start * B * I
            # dO one step late beside the states before each step: dO_{t-1} meets h_t
            f.dO = (dO + (start - 1) * B * O if start > 0 else dO) if fold_dO else NULL
            f.dO_first = start == 0
        fold(&f, 0, grows, work)
        end = start
    return -1


cdef inline Py_ssize_t _backward_ring(Py_ssize_t span, Py_ssize_t B, Py_ssize_t rows, Py_ssize_t n,
                                      Py_ssize_t I, Py_ssize_t O, bint part) noexcept nogil:
    """Elements of the ring _backward_tiled_block needs for a block of `rows` of B (see there)."""
    return span * rows * (2 * n + I + O) if part else span * B * n


cdef Py_ssize_t _backward_tiled(int act, const floating* P, const floating* H, const floating* dH,
                                const floating* dO, Py_ssize_t O, const floating* PV,
                                bint fold_dO, floating* dA, floating* dh, const floating* X,
                                Py_ssize_t I, floating* G, Py_ssize_t ldg, floating* db,
                                Py_ssize_t span, Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                                int n_threads) noexcept nogil:
    """_backward_tiled_block over the whole batch: with threads, the batch cut into blocks of rows,
    each block's whole time loop (and its share of the weight-gradient fold, into partial sums
    added in block order afterwards) on one thread, as in the LSTM: one fork and join per call.
    G (n [+ O] rows, ldg columns) and db are zeroed by the caller; the scratch is allocated here.
    Returns the first step (counting down) with a non-finite gradient, -1, or -2 when out of
    memory."""
    cdef Py_ssize_t k, lo, j, blocks = tile_chunks(n_threads, B), bad_step
    cdef Py_ssize_t grows = n + (O if fold_dO else 0), gsize = grows * ldg
    cdef Py_ssize_t most = B - (blocks - 1) * B // blocks
    cdef bint part = blocks > 1
    cdef Py_ssize_t rsize = (_backward_ring(span, B, most, n, I, O, part) if G != NULL else 0) + 1
    cdef Py_ssize_t wsize = fold_work(P)
    cdef Py_ssize_t bad[64]
    cdef floating* ring
    cdef floating* work
    cdef floating* parts = NULL
    if blocks > 64:
        blocks = 64
    fold_dO = fold_dO and dO != NULL
    ring = <floating*> big_alloc(blocks * rsize * sizeof(floating))
    work = <floating*> big_alloc(blocks * wsize * sizeof(floating))
    if part and G != NULL:
        # blocks after the first sum into their own G and db, added to the caller's afterwards
        parts = <floating*> big_alloc((blocks - 1) * (gsize + n) * sizeof(floating))
        if parts != NULL:
            memset(parts, 0, (blocks - 1) * (gsize + n) * sizeof(floating))
    if ring == NULL or work == NULL or (part and G != NULL and parts == NULL):
        free(ring)
        free(work)
        free(parts)
        return -2
    if not part:
        bad_step = _backward_tiled_block(act, P, H, dH, dO, O, PV, fold_dO, dA, dh, X, I, G, ldg,
                                         db, ring, work, span, T, B, B, n, False)
    else:
        for k in prange(blocks, num_threads=blocks, schedule="static"):
            lo = k * B // blocks
            bad[k] = _backward_tiled_block(
                act, P, H + lo * n, _row(dH, lo * n), _row(dO, lo * O), O, PV, fold_dO,
                <floating*> _row(dA, lo * n), dh + lo * n, _row(X, lo * I), I,
                (G if k == 0 else parts + (k - 1) * (gsize + n)) if G != NULL else NULL, ldg,
                (db if k == 0 else parts + (k - 1) * (gsize + n) + gsize) if G != NULL else NULL,
                ring + k * rsize, work + k * wsize, span, T, B, (k + 1) * B // blocks - lo, n, True)
        bad_step = earliest_bad(bad, blocks, False)
        if parts != NULL and bad_step < 0:
            for k in range(1, blocks):
                for j in range(gsize):
                    G[j] += parts[(k - 1) * (gsize + n) + j]
                for j in range(n):
                    db[j] += parts[(k - 1) * (gsize + n) + gsize + j]
    free(ring)
    free(work)
    free(parts)
    return bad_step


cdef floating* _transposed(const floating* M, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """A malloc'd (cols, rows) copy of the (rows, cols) matrix M, or NULL when out of memory."""
    cdef Py_ssize_t i, j
    cdef floating* out = <floating*> malloc(rows * cols * sizeof(floating) + 1)
    if out != NULL:
        for i in range(rows):
            for j in range(cols):
                out[j * rows + i] = M[i * cols + j]
    return out


cdef floating* _packed(const floating* Wh, Py_ssize_t n, bint trans) noexcept nogil:
    """Wh (n, n) (trans: Wh^T) packed for gemm_packed, from big_alloc, or NULL when out of memory."""
    return _packed_rect(Wh, n, n, trans)


cdef floating* _packed_rect(const floating* M, Py_ssize_t rows, Py_ssize_t cols,
                            bint trans) noexcept nogil:
    """op(M) packed for gemm_packed (op(M) = M^T, (cols, rows), when trans), from big_alloc (free
    with free()), or NULL."""
    cdef Py_ssize_t K = cols if trans else rows, N = rows if trans else cols
    cdef floating* P = <floating*> big_alloc(pack_size(M, K, N) * sizeof(floating))
    if P != NULL:
        pack(M, cols, trans, K, N, P)
    return P


# ---------------------------------------------------------------------------------------------------
# (b) drivers
# ---------------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward_lean(int act, const floating* Wh, const floating* Wx, const floating* bias,
                              const floating* X, floating* H, Py_ssize_t T, Py_ssize_t B,
                              Py_ssize_t I, Py_ssize_t n, Py_ssize_t O, const floating* V,
                              const floating* cv, floating* out) noexcept nogil:
    """forward_fused for a few rows in all (one step of generation): the products with Wh, Wx and V
    as given, where packing them would cost more than the call's arithmetic. Returns the first
    step with a non-finite state, or -1."""
    cdef Py_ssize_t t, r, k
    cdef floating* h
    for t in range(T):
        h = H + (t + 1) * B * n
        for r in range(B):
            memcpy(h + r * n, bias, n * sizeof(floating))
            if I > 0:
                gemv(False, <int> n, <int> I, 1, Wx, <int> I, X + (t * B + r) * I, 1, h + r * n)
            gemv(False, <int> n, <int> n, 1, Wh, <int> n, H + (t * B + r) * n, 1, h + r * n)
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
